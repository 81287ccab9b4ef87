/**
 * Domain death at every stage (issue 19, docs/verification.md §2): a swarm
 * seed may draw one stage at which a domain dies — in the middle of a Map,
 * a Revoke, a Steal or a Return, while its grant is being mapped, with a
 * foreign map of its page just placed, with an ioreq in flight. A stage is
 * a hook point (hypervisor/xen/hooks.ts): at the occurrence the seed drew,
 * the domain named there crashes — domain_crash, a change of state Xen makes
 * from any context, locks held or not — and the toolstack destroys it
 * (on_crash=destroy) while the primitive and the device model go on: at
 * the simulator's next top-level decision, at the host's next periodic
 * check on real threads. dom0 never dies: the machine is its device model's.
 *
 * The same function runs in the simulator (its racer, at every hook point)
 * and on real threads (each vCPU thread's preempter, vcpu-worker.ts); the
 * occurrences are counted in the control region, across threads.
 */
import { CTL } from '../layout/control.js';
import { DS } from '../layout/domains.js';
import { domainCrash } from '../xen/domain-crash.js';
import type { HookName } from '../xen/hooks.js';
import type { Machine } from '../xen/machine.js';

/**
 * Each stage: the hook point where it strikes, and who dies there — the
 * domain the point names (hooks.ts: the frontend of a Map, Revoke, Steal or
 * Return, the granter, the source of a foreign map, the domain whose ioreq
 * waits), or the caller: the backend whose vCPU makes the call, when it is
 * not dom0 (the compositor, which Maps into and Revokes from its viewer).
 */
export const DEATH_STAGES = {
  'die-mid-map': { at: 'map.after_checks', who: 'named' },
  'die-backend-mid-map': { at: 'map.after_checks', who: 'caller' },
  'die-mid-revoke': { at: 'revoke.before_remove', who: 'named' },
  'die-backend-mid-revoke': { at: 'revoke.before_remove', who: 'caller' },
  'die-mid-steal': { at: 'steal.after_checks', who: 'named' },
  'die-mid-return': { at: 'return.after_checks', who: 'named' },
  'die-mid-grant-map': { at: 'grant.after_validate', who: 'named' },
  'die-foreign-mapped': { at: 'foreign_map.placed', who: 'named' },
  'die-ioreq-in-flight': { at: 'ioreq.wait', who: 'named' },
} as const satisfies Record<string, { at: HookName; who: 'named' | 'caller' }>;
export type DeathStage = keyof typeof DEATH_STAGES;
export const DEATH_STAGE_NAMES = Object.keys(DEATH_STAGES) as DeathStage[];

/** A seed's death: its stage, and how many of the stage's occurrences (with a domain to kill) go by before it strikes. */
export interface Death {
  stage: DeathStage;
  after: number;
}

/**
 * Occurrences let by: uniform in 0 … this − 1. A 20 000-decision run of the
 * default topology has hundreds to thousands of Maps, Revokes, Steals,
 * Returns, grant maps and ioreq waits, and about a hundred foreign maps:
 * the death comes early, and the rest of the run goes on without the domain.
 */
export const DEATH_AFTER_MAX = 64;

export function isDeathStage(s: string): s is DeathStage {
  return Object.hasOwn(DEATH_STAGES, s);
}

/** Arm the machine's death stage (the host, before any vCPU runs). */
export function armDeath(m: Machine, d: Death): void {
  Atomics.store(m.control.w, CTL.DEATH_AFTER, d.after);
  Atomics.store(m.control.w, CTL.DEATH_STAGE, DEATH_STAGE_NAMES.indexOf(d.stage) + 1);
}

/** Whether a death stage waits to strike (a vCPU thread watches the hook points only then). */
export function deathArmed(m: Machine): boolean {
  return Atomics.load(m.control.w, CTL.DEATH_STAGE) > 0;
}

/**
 * At hook point `name` (its first argument `a`, hooks.ts; `caller`: the
 * domain whose vCPU is in the hypercall, −1 for none): strike if this is
 * the drawn occurrence of the armed stage. Returns the domain that died,
 * or −1.
 */
export function deathAt(m: Machine, name: HookName, a: number, caller: number): number {
  const w = m.control.w;
  const s = Atomics.load(w, CTL.DEATH_STAGE);
  if (s <= 0) return -1;
  const stage = DEATH_STAGE_NAMES[s - 1]!;
  const { at, who } = DEATH_STAGES[stage];
  if (at !== name) return -1;
  const victim = who === 'named' ? a : caller;
  if (victim <= 0 || victim >= m.nd || m.dom.state(victim) !== DS.RUNNING) return -1;
  if (Atomics.sub(w, CTL.DEATH_AFTER, 1) > 0) return -1;
  if (Atomics.compareExchange(w, CTL.DEATH_STAGE, s, -s) !== s) return -1;
  if (!domainCrash(m, victim, stage)) return -1;
  m.log.event(`death ${stage}: d${victim} crashed at ${name}`);
  return victim;
}
