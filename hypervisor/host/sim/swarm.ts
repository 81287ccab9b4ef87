/**
 * Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012; issue 19): each
 * seed runs a random subset of the behaviours and attacks its topology
 * offers, for each guest and for dom0, instead of all of them at once. A
 * behaviour that a full mix runs one turn in ten runs every turn in the
 * seeds that drew it, and one behaviour can no longer mask another (an
 * eviction that always comes first, an attack that uses up what another
 * needs). The catalogue is docs/verification.md's, each entry with what
 * guards it.
 *
 * The draw has its own generator from the seed, so the same seed draws the
 * same subset; a replay file records `swarm:` and the subset drawn.
 */
import { SimRng } from './sim-sched.js';
import type { HostSpec } from '../host.js';
import { DEATH_AFTER_MAX, DEATH_STAGE_NAMES, isDeathStage, type Death } from '../death.js';

/**
 * dom0's behaviours (domains/gpu/device-model.ts: gpuKernel's, and the
 * device model's return-with-maps): each can be left out for a seed. The
 * device model itself (vCPU 0) always runs: every ioreq needs it.
 */
export const DOM0_BEHAVIOURS = ['evictions', 'dma-peek', 'toolstack', 'return-with-maps'] as const;
export type Dom0Behaviour = (typeof DOM0_BEHAVIOURS)[number];

/** Odds that a catalogue entry is in a seed's subset. */
const SWARM_P = 0.5;

/**
 * Odds that a seed draws a death stage (hypervisor/host/death.ts), listed
 * with dom0's behaviours — the toolstack's. One at most: a domain dies
 * once, and a run with several gone has little left to run.
 */
const DEATH_P = 0.5;

/** What one seed runs: per domain name, the behaviours and attacks drawn. */
export type SwarmDraw = Record<string, string[]>;

/** Draw each of `all` with even odds, at least one. */
function subset(rng: SimRng, all: readonly string[]): string[] {
  const out = all.filter(() => rng.chance(SWARM_P));
  if (out.length === 0 && all.length > 0) out.push(all[rng.below(all.length)]!);
  return out;
}

/**
 * The subset of `spec` one seed runs, and the spec that runs it: an
 * adversary's attacks, dom0's kernel behaviours. Workloads with nothing to
 * choose from (render, compute-svm, viewer, grant-ping) run as they are.
 */
export function drawSwarm(seed: number, spec: HostSpec, given?: SwarmDraw): { spec: HostSpec; draw: SwarmDraw } {
  const rng = new SimRng(seed ^ 0x5a3a4d);
  // Its own generator: the subsets drawn before death stages joined the catalogue stay what they were.
  const deathRng = new SimRng(seed ^ 0xdea7);
  const drawnDeath = deathRng.chance(DEATH_P) ? DEATH_STAGE_NAMES[deathRng.below(DEATH_STAGE_NAMES.length)] : undefined;
  const after = deathRng.below(DEATH_AFTER_MAX);
  let death: Death | undefined;
  let deathListed = false;
  const draw: SwarmDraw = {};
  // A replay file's draw wins over the seed's (the catalogue may have changed since it was written).
  const pick = (name: string, all: readonly string[]): string[] => {
    const drawn = subset(rng, all);
    return given?.[name]?.filter((b) => all.includes(b)) ?? drawn;
  };
  const domains = spec.domains.map((d) => {
    const w = d.workload as Record<string, unknown> & { kind: string };
    if (w.kind === 'adversary' && Array.isArray(w['attacks']) && (w['attacks'] as unknown[]).length > 0) {
      const attacks = pick(d.name, w['attacks'] as string[]);
      draw[d.name] = attacks;
      return { ...d, workload: { ...w, attacks } };
    }
    if (d.role === 'backend' && d.devices.length > 0) {
      const on = pick(d.name, DOM0_BEHAVIOURS);
      // The death stage is listed with the first such domain's behaviours (dom0's: the toolstack's); a replay file's list wins.
      const stage = deathListed ? undefined : given?.[d.name] !== undefined ? given[d.name]!.find(isDeathStage) : drawnDeath;
      deathListed = true;
      if (stage !== undefined) death = { stage, after };
      draw[d.name] = stage === undefined ? on : [...on, stage];
      return { ...d, workload: { ...w, swarm_off: DOM0_BEHAVIOURS.filter((b) => !on.includes(b)) } };
    }
    return d;
  });
  return { spec: { ...spec, domains, ...(death !== undefined ? { death } : {}) } as HostSpec, draw };
}
