/**
 * The lock classes of the simulated hypervisor and their documented order
 * (docs/locks.md). Every thread that touches a LockSpace imports this module
 * (locks.ts does), so every thread defines the same classes with the same ids
 * in the same order; LockSpace checks that with a fingerprint kept in shared
 * memory, because the lockdep edge matrix is indexed by class id.
 *
 * Rank ascending = acquisition order: while holding a class of rank r, only
 * classes of rank > r may be taken. This is the rule Xen enforces for its mm
 * locks with a per-CPU lock level (xen/arch/x86/mm/mm-locks.h,
 * _check_lock_level: "mm locking order violation"); xgsim applies it to every
 * lock and adds lockdep-style cycle detection on top.
 */
import { MAX_LOCK_CLASSES } from '../layout/constants.js';

export type LockClass = number & { readonly __brand: 'LockClass' };

/**
 * Whether two locks of one class may be held at once by one thread:
 * 'ordered' — yes, in strictly increasing key order (the key is the domid);
 * 'never'   — no, any nesting is a lock-order violation.
 */
export type LockNest = 'ordered' | 'never';

/** How many instances a class has: one per host, per domain, per entry. */
export type LockScope = 'global' | 'domain' | 'entry' | 'test';

export interface LockClassSpec {
  name: string;
  rank: number;
  /** Default 'never': an unordered pair of same-class locks is an ABBA waiting to happen. */
  nest?: LockNest;
  scope?: LockScope;
  /** Test-only classes may be allocated only by a LockSpace built with `testClasses: true`. */
  testOnly?: boolean;
}

export interface LockClassInfo {
  readonly id: LockClass;
  readonly name: string;
  readonly rank: number;
  readonly nest: LockNest;
  readonly scope: LockScope;
  readonly testOnly: boolean;
}

const classes: LockClassInfo[] = [];
let frozen = false;

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;

/**
 * Define a lock class. Only at module load, before any LockSpace exists, and
 * identically in every thread: define classes in a module every thread
 * imports (this one), never conditionally.
 */
export function defineLockClass(spec: LockClassSpec): LockClass {
  if (frozen) {
    throw new Error(`defineLockClass(${spec.name}): classes are frozen once a LockSpace exists — define them at module load`);
  }
  if (!NAME_RE.test(spec.name)) throw new Error(`defineLockClass: name '${spec.name}' must match ${NAME_RE}`);
  if (!Number.isSafeInteger(spec.rank) || spec.rank < 0) {
    throw new Error(`defineLockClass(${spec.name}): rank ${spec.rank} must be a non-negative integer`);
  }
  for (const c of classes) {
    if (c.name === spec.name) throw new Error(`defineLockClass: name '${spec.name}' already defined`);
    // Equal ranks would leave a pair of classes unordered, which the rank
    // check could not judge; the hierarchy is a total order.
    if (c.rank === spec.rank) throw new Error(`defineLockClass(${spec.name}): rank ${spec.rank} already used by ${c.name}`);
  }
  if (classes.length >= MAX_LOCK_CLASSES) {
    throw new Error(`defineLockClass(${spec.name}): more than MAX_LOCK_CLASSES (${MAX_LOCK_CLASSES}) classes`);
  }
  const info: LockClassInfo = Object.freeze({
    id: classes.length as LockClass,
    name: spec.name,
    rank: spec.rank,
    nest: spec.nest ?? 'never',
    scope: spec.scope ?? (spec.testOnly === true ? 'test' : 'global'),
    testOnly: spec.testOnly ?? false,
  });
  classes.push(info);
  return info.id;
}

export function lockClassInfo(cls: LockClass): LockClassInfo {
  const info = classes[cls];
  if (info === undefined) throw new Error(`unknown lock class ${cls}`);
  return info;
}

export function lockClassCount(): number {
  return classes.length;
}

export function allLockClasses(): readonly LockClassInfo[] {
  return classes;
}

/**
 * Freeze the class table and return its fingerprint (non-zero Int32), which
 * LockSpace compares across threads. Called by LockSpace's constructor.
 */
export function freezeLockClasses(): number {
  frozen = true;
  // FNV-1a over the table; a collision only weakens a consistency check.
  let h = 0x811c9dc5;
  for (const c of classes) {
    const s = `${c.id}:${c.name}:${c.rank}:${c.nest}:${c.testOnly ? 1 : 0};`;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  }
  return h === 0 ? 1 : h | 0;
}

/**
 * The hierarchy. Ranks are spaced by 10 so a class can be slotted in later
 * without renumbering.
 */
export const LOCK_CLASS = Object.freeze({
  /** Xen's global domctl_lock (common/domctl.c): do_domctl takes it before anything per domain. */
  domctl: defineLockClass({ name: 'domctl', rank: 10, scope: 'global' }),
  /** Host mapping registry of Map/Steal records (new in xgsim): a primitive finds its records before touching either domain. */
  registry: defineLockClass({ name: 'registry', rank: 20, scope: 'global' }),
  /** Xen's d->ioreq_server.lock (common/ioreq.c): held across range/type changes that then update the p2m. */
  ioreq_server: defineLockClass({ name: 'ioreq_server', rank: 30, scope: 'domain' }),
  /** Xen's grant_table->lock (common/grant_table.c); never two domains' at once (docs/semantics.md §3, docs/locks.md). */
  grant: defineLockClass({ name: 'grant', rank: 40, scope: 'domain', nest: 'never' }),
  /** Xen's active_grant_entry->lock, taken under the table lock (active_entry_acquire); one entry at a time. */
  active: defineLockClass({ name: 'active', rank: 50, scope: 'entry', nest: 'never' }),
  /** Xen's grant_table->maptrack_lock: handle allocation happens inside the grant path, so it ranks below it. */
  maptrack: defineLockClass({ name: 'maptrack', rank: 60, scope: 'domain', nest: 'never' }),
  /** Xen's p2m lock (mm-locks.h); two domains' by ascending domid, as get_two_gfns sorts by domain. */
  p2m: defineLockClass({ name: 'p2m', rank: 70, scope: 'domain', nest: 'ordered' }),
  /** Xen's d->page_alloc_lock (assign_pages, steal_page); Steal/Return lock two domains', by ascending domid (Xen's double_gt_lock idea). */
  page_alloc: defineLockClass({ name: 'page_alloc', rank: 80, scope: 'domain', nest: 'ordered' }),
  /** Xen's global heap_lock (common/page_alloc.c): innermost of the allocator, taken under page_alloc_lock by free_domheap_pages. */
  heap: defineLockClass({ name: 'heap', rank: 90, scope: 'global' }),
  /**
   * The p2m pool's free list (layout/p2m.ts): Xen's paging lock, which
   * p2m_alloc_ptp/p2m_free_ptp take (paging_lock, mm-locks.h) under the p2m
   * lock. One pool per host here, so the lock is global; it takes nothing,
   * and ranks above heap because a domain's last page (freed under
   * page_alloc or heap by some callers' callers) frees its tables (reapDomain).
   */
  p2m_pool: defineLockClass({ name: 'p2m_pool', rank: 92, scope: 'global' }),
  /** Xen's ioreq_server->bufioreq_lock (ioreq_send_buffered): a vCPU puts one posted write into a buffered ring under it; takes nothing but the log. */
  bufioreq: defineLockClass({ name: 'bufioreq', rank: 95, scope: 'domain' }),
  /** Leaf (console/trace buffers, Xen's console_lock): may be taken under anything, takes nothing. */
  log: defineLockClass({ name: 'log', rank: 100, scope: 'global' }),
});

/** Test-only classes: for checker tests that must not disturb the real hierarchy. */
export const TEST_A = defineLockClass({ name: 'TEST_A', rank: 1000, testOnly: true });
export const TEST_B = defineLockClass({ name: 'TEST_B', rank: 1001, testOnly: true });
