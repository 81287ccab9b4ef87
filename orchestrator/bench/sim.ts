/**
 * The simulator rows of `xgsim bench`: `xgsim sim` as users run it (the
 * default topology, mixed strategy, nemeses and swarm drawn per seed, the
 * liveness tail), over fixed seeds, against the floor of a bare scheduling
 * decision measured in the same run.
 */
import { NO_BUGS } from '../../hypervisor/xen/buggify.js';
import { fnv, FNV_OFFSET, SimRng } from '../../hypervisor/host/sim/sim-sched.js';
import { simOnce } from '../sim/sim.js';

export interface SimThroughput {
  decisions_per_s: number;
  /** Seeds of `steps` decisions (the quiet tail included) per hour, one core. */
  seeds_per_hour: number;
  /** Simulated time over real time. */
  sim_ratio: number;
  seeds: number;
  steps: number;
  problems: string[];
}

/** `seeds` seeds (1…seeds) of `steps` decisions each on the default sim topology, one after the other. */
export async function simThroughput(seeds: number, steps: number): Promise<SimThroughput> {
  let decisions = 0;
  let real_ms = 0;
  let sim_us = 0;
  const problems: string[] = [];
  for (let seed = 1; seed <= seeds; seed++) {
    const t0 = performance.now();
    const r = await simOnce({ seed, steps, buggify: NO_BUGS });
    real_ms += performance.now() - t0;
    decisions += r.steps;
    sim_us += r.sim_us;
    // A failing seed was still simulated (the figure counts it); a stuck one stopped early.
    if (r.verdict === 'stuck') problems.push(`seed ${seed} stuck at step ${r.steps}`);
  }
  return { decisions_per_s: decisions / (real_ms / 1000), seeds_per_hour: (seeds * 3_600_000) / real_ms, sim_ratio: sim_us / 1000 / real_ms, seeds, steps, problems };
}

/**
 * The floor: the least a scheduling decision can cost — draw one of 8
 * actors with the simulator's RNG, fold the choice into the run's hash,
 * call the actor's (empty) step. Decisions per second.
 */
export function bareDecisionRate(n: number): number {
  const rng = new SimRng(1);
  let calls = 0;
  const actors: Array<() => void> = Array.from({ length: 8 }, (_, i) => () => void (calls += i));
  let h = FNV_OFFSET;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const a = rng.below(actors.length);
    h = fnv(h, a);
    actors[a]!();
  }
  const dt = performance.now() - t0;
  if (h === 0 && calls === -1) throw new Error('unreachable');
  return n / (dt / 1000);
}
