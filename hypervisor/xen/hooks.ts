/**
 * xgsim's own, no Xen counterpart. Interposition points: named places in hypervisor code where a scenario
 * (the `on_hook` step, docs/xsa.md) makes other guests act in the middle of
 * a hypercall — deterministically, on the same thread, instead of hoping a
 * racing vCPU lands in a window a few instructions wide.
 *
 * Each point sits where a racing vCPU's operation would take effect, in the
 * correct code as well as in the buggy variant that opens a window: in the
 * correct code that is where the locks let the racer in (before the
 * critical section, or after it), so the same scenario shows the fix
 * holding and the bug breaking. A point holds no lock that the operations
 * documented for it need (a nested operation that does take a held lock is
 * a recursive-lock fault, reported, never a hang).
 *
 * Hooks are per thread (module state) and one-shot: only the thread that
 * armed a point sees it, and it fires at most once. Unarmed, a point costs
 * one load of a module variable.
 */
export const HOOKS = {
  /** get_maptrack_handle, before it pops the free list's head (buggy: between reading the head and popping it). No lock held. */
  'maptrack.pop': 'get_maptrack_handle, at the pop of the maptrack free list',
  /**
   * map_grant_ref / acquire_grant_for_copy, right after the granted frame was
   * validated and referenced, before it is recorded and mapped. The granter's
   * grant-table and active-entry locks are held: only guest-side steps of the
   * granter (grant, end_grant, write…) belong here.
   */
  'grant.after_validate': 'map_grant_ref, between validating the granted frame and mapping it',
  /** Steal, the first moment another hypercall may touch the frontend's pages (correct: after Steal; buggy: between check and transfer). */
  'steal.window': 'Steal, where a racing hypercall on the frontend page gets in',
  /**
   * Revoke of a mapping's live pages, before their entries are removed and
   * flushed: a vCPU of the frontend may still reach them here, and must
   * still have the right to (buggy: revoke-put-before-flush dropped the
   * references and rights already). The registry lock is held: only
   * accesses of the frontend (read, write) belong here.
   */
  'revoke.before_remove': 'Revoke, before the entries are removed and flushed',
  /**
   * Map, Steal and Return, their authority checks passed, before they take
   * any lock: where a teardown of either side (the toolstack destroying it
   * on another pCPU) may run whole, and the rest of the primitive must see
   * it (primitives/common.ts notDying). No lock held.
   */
  'map.after_checks': 'Map, after the authority checks, before any lock',
  'steal.after_checks': 'Steal, after the authority checks, before any lock',
  'return.after_checks': 'Return, after the authority checks, before any lock',
  /**
   * A foreign map (p2m_add_foreign) is in the caller's p2m with its page
   * reference; the p2m locks are released, the source's domain reference
   * still held.
   */
  'foreign_map.placed': 'a foreign map placed, before the hypercall returns',
  /**
   * sendIoreq (Xen's wait_for_io), each time the vCPU is about to wait for
   * its ioreq's answer: where its device model stores into the ioreq page.
   * The vCPU is blocked and holds no lock.
   */
  'ioreq.wait': "wait_for_io, each time the vCPU waits for its ioreq's answer",
} as const;
export type HookName = keyof typeof HOOKS;
export const HOOK_NAMES = Object.keys(HOOKS) as HookName[];

let armed: Map<HookName, () => void> | null = null;

/**
 * The deterministic simulator's view of the same points: where another vCPU
 * may act in the middle of this hypercall (hypervisor/sim); on real
 * threads, where a swarm seed's death stage strikes
 * (hypervisor/host/death.ts). `a`, `b` say on what (maptrack.pop: the
 * domain; grant.after_validate: granter and ref; steal.window: frontend and
 * first gfn; revoke.before_remove: frontend and the first gfn revoked;
 * ioreq.wait: domain and vCPU slot; map.after_checks, steal.after_checks:
 * frontend and its first gfn; return.after_checks: frontend and the
 * backend's first gfn; foreign_map.placed: the source domain and its gfn).
 */
export type Preempter = (name: HookName, a: number, b: number) => void;
let preempter: Preempter | null = null;

export function setPreempter(f: Preempter | null, onExit: (() => void) | null = null): void {
  preempter = f;
  exitHook = onExit;
}

/**
 * Called by the hypercall gate (guest-cpu.ts) as every hypercall returns,
 * when the simulator asked for it: what a racer changed for the length of
 * one hypercall is undone there.
 */
export let exitHook: (() => void) | null = null;

/** A point in hypervisor code: runs (once) what is armed here, if anything. */
export function hookPoint(name: HookName, a = -1, b = -1): void {
  if (preempter !== null) preempter(name, a, b);
  if (armed === null) return;
  const f = armed.get(name);
  if (f === undefined) return;
  armed.delete(name);
  if (armed.size === 0) armed = null;
  f();
}

/** Run `f` the next time this thread reaches point `name`. */
export function armHook(name: HookName, f: () => void): void {
  (armed ??= new Map()).set(name, f);
}

/** Forget every armed point of this thread; true if `name` was still armed (never reached). */
export function disarmHooks(name?: HookName): boolean {
  const was = name !== undefined && armed !== null && armed.has(name);
  armed = null;
  return was;
}
