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

/**
 * dom0's behaviours (domains/gpu/device-model.ts: gpuKernel's, and the
 * device model's return-with-maps): each can be left out for a seed. The
 * device model itself (vCPU 0) always runs: every ioreq needs it.
 */
export const DOM0_BEHAVIOURS = ['evictions', 'dma-peek', 'toolstack', 'return-with-maps'] as const;
export type Dom0Behaviour = (typeof DOM0_BEHAVIOURS)[number];

/** Odds that a catalogue entry is in a seed's subset. */
const SWARM_P = 0.5;

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
      draw[d.name] = on;
      return { ...d, workload: { ...w, swarm_off: DOM0_BEHAVIOURS.filter((b) => !on.includes(b)) } };
    }
    return d;
  });
  return { spec: { ...spec, domains } as HostSpec, draw };
}
