/**
 * Swarm testing on real threads (docs/verification.md §2): a run of `up` or
 * `chaos` in a campaign, like a `xgsim sim` seed, runs a subset of its
 * topology's behaviours and attacks per domain, drawn from the seed
 * (hypervisor/host/sim/swarm.ts, the same draw the simulator makes); `xgsim
 * stress revoke --adversary mix` draws its subset of frontend modes here.
 * The draw is printed at start; the record says `swarm: true` (or
 * `full-mix: true`), and the seed gives the same draw again.
 */
import { drawSwarm, type SwarmDraw } from '../../hypervisor/host/sim/swarm.js';
import { SimRng } from '../../hypervisor/host/sim/sim-sched.js';
import type { HostSpec } from '../../hypervisor/host/host.js';

/** The spec a swarm seed runs, and what it drew (null: the full mix, or nothing to draw from). */
export function swarmSpec<S extends HostSpec>(spec: S, seed: number, on: boolean): { spec: S; draw: SwarmDraw | null } {
  if (!on) return { spec, draw: null };
  const { spec: drawn, draw } = drawSwarm(seed, spec);
  if (Object.keys(draw).length === 0) return { spec, draw: null };
  return { spec: { ...spec, domains: drawn.domains, ...(drawn.death !== undefined ? { death: drawn.death } : {}) }, draw };
}

/** `evil: a,b; dom0: x` — for a start line. */
export function describeDraw(draw: SwarmDraw | null): string {
  if (draw === null) return 'full mix';
  return `swarm ${Object.entries(draw).map(([d, b]) => `${d}: ${b.join(',')}`).join('; ')}`;
}

/** Odds that a stress frontend mode is in a seed's subset, as the simulator's catalogue entries. */
const MODE_P = 0.5;

/** `stress revoke --adversary mix`: the modes a seed's frontends take turns in (each with even odds, at least one). */
export function drawModes<M extends string>(seed: number, all: readonly M[]): M[] {
  const rng = new SimRng(seed ^ 0x5a3a4d);
  const out = all.filter(() => rng.chance(MODE_P));
  if (out.length === 0) out.push(all[rng.below(all.length)]!);
  return out;
}
