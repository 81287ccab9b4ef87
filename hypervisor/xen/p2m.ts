/**
 * The p2m's walks and updates (xen/arch/x86/mm/p2m.c, p2m-ept.c) and the
 * TLB shootdown (flush_tlb_mask, ept_sync_domain). The table's layout and
 * who writes which word: layout/p2m.ts.
 *
 * Adding an entry where there was a hole needs no flush (no TLB caches a
 * hole; ept_set_entry: "No need to flush if the old entry wasn't valid").
 * Removing or downgrading one is a three-step protocol, all under the
 * domain's p2m lock:
 *   1. GEN += 1 (odd: removal in flight — a racing TLB fill won't cache)
 *   2. Atomics.store the new entry
 *   3. tlbShootdown: FLUSH_EPOCH += 1, then wait until every vCPU of the
 *      domain either acknowledged the new epoch or is outside guest mode
 *   4. GEN += 1 (even: the removal is complete) — from here on the old
 *      frame may be reused, and an access through a stale TLB entry is a
 *      use after unmap (invariant 1).
 * A change of one 4 KiB gfn inside a superpage first splits it
 * (ept_split_super_page: the new table is built whole, then linked by one
 * store), and ept_set_entry then syncs the domain whatever it stores: the
 * split superpage entry's GEN goes odd before the link and even after
 * that one shootdown, with the changed entry's.
 * The wait is bounded: a vCPU acknowledges at every TLB_BATCH_ACCESSES
 * accesses in the MMU itself, so guest code cannot withhold it; a vCPU that
 * is blocked, paused or in the hypervisor acknowledges implicitly.
 */
import { P2M_SUPERPAGE_MAX_LEVEL, P2M_TABLE_ENTRIES, TLB_SHOOTDOWN_BOUND_MS } from '../layout/constants.js';
import { BUGS } from './buggify.js';
import { atomicMax, CTL } from '../layout/control.js';
import { DOM } from '../layout/domains.js';
import { entryMfn, entryPage, entryType, isTableEntry, LEVEL_SPAN, levelIndex, P2M_HOLE, P2M_REVOKED, PAGE_GEN, POOL, p2mEntry, slotWord, tableEntry } from '../layout/p2m.js';
import { BUG, HypervisorBug } from '../layout/region.js';
import { VC } from '../layout/vcpus.js';
import { EEXIST, EINVAL, ENOMEM } from '../public/errno.js';
import { P2M } from '../public/types.js';
import { GLOBAL_LOCK, type Machine } from './machine.js';
import { COST, sched } from './platform.js';
import { tracer } from './trace.js';
import { P2M_EV } from '../layout/trace.js';
import { VS } from './vcpu.js';

/**
 * What this thread's p2m work cost so far (each thread runs its own copy of
 * this module): hypercalls run on the calling vCPU's thread, so the
 * difference across one call is that call's own cost, whatever other
 * threads did meanwhile.
 */
interface LocalCosts {
  removed: number;
  shootdowns: number;
  paused: number;
  pause_us: number;
  pause_max_us: number;
  splits: number;
}
const local: LocalCosts = { removed: 0, shootdowns: 0, paused: 0, pause_us: 0, pause_max_us: 0, splits: 0 };

/** Where the last walk ended (one per thread): the entry's word and its table's level. */
export interface Walk {
  idx: number;
  level: number;
}
const walked: Walk = { idx: -1, level: 0 };

/** One past d's highest gfn: 2^(paddr_bits − 12); 0 once d's p2m is gone. */
export function p2mGfnLimit(m: Machine, d: number): number {
  if (m.dom.at(d, DOM.P2M_LEVELS) === 0) return 0;
  const bits = m.dom.at(d, DOM.P2M_PADDR_BITS) - 12;
  // A shift where it fits in an int (every p2m below 2^43 bytes): `**` is a call to pow, on every p2mGet.
  return bits >= 0 && bits <= 30 ? 1 << bits : 2 ** bits;
}

/** Whether gfn names a frame of d's guest physical space (ept_set_entry's "gfn not exceeding guest physical address width"). */
export function p2mInRange(m: Machine, d: number, gfn: number): boolean {
  return Number.isInteger(gfn) && gfn >= 0 && gfn < p2mGfnLimit(m, d);
}

/**
 * ept_next_level from the root down (lock-free, Atomics.load at each
 * level): `out` gets the word of the entry that decides gfn — a level-1
 * entry, or a hole or superpage higher up — and its level. gfn must be in
 * range for a p2m of `levels` levels rooted at pool page `root`.
 */
export function p2mWalkFrom(w: Int32Array, root: number, levels: number, gfn: number, out: Walk): void {
  let page = root;
  for (let k = levels; ; k--) {
    const idx = slotWord(page, levelIndex(gfn, k));
    if (k === 1) {
      out.idx = idx;
      out.level = 1;
      return;
    }
    const e = Atomics.load(w, idx);
    if (!isTableEntry(e)) {
      out.idx = idx;
      out.level = k;
      return;
    }
    page = entryPage(e);
  }
}

/** The 4 KiB view of a leaf entry `e` of level `level` for gfn: a superpage's frame for that gfn (ept_get_entry). */
export function leafFor(e: number, level: number, gfn: number): number {
  if (level === 1 || e === P2M_HOLE) return e;
  return p2mEntry(entryMfn(e) + (gfn % LEVEL_SPAN[level]!), entryType(e));
}

/** The entry word for (d, gfn) as a 4 KiB entry; a hole when out of range. Lock-free (ept_get_entry). */
export function p2mGet(m: Machine, d: number, gfn: number): number {
  if (!p2mInRange(m, d, gfn)) return P2M_HOLE;
  p2mWalkFrom(m.p2m.w, m.dom.at(d, DOM.P2M_ROOT), m.dom.at(d, DOM.P2M_LEVELS), gfn, walked);
  const e = Atomics.load(m.p2m.w, walked.idx);
  // A split may have linked a table there since the walk; walk again.
  return isTableEntry(e) ? p2mGet(m, d, gfn) : leafFor(e, walked.level, gfn);
}

/** The word of gfn's 4 KiB entry when it has one (not a hole above level 1, not in a superpage), else −1. Lock-free. */
export function p2mLeafWord(m: Machine, d: number, gfn: number): number {
  if (!p2mInRange(m, d, gfn)) return -1;
  p2mWalkFrom(m.p2m.w, m.dom.at(d, DOM.P2M_ROOT), m.dom.at(d, DOM.P2M_LEVELS), gfn, walked);
  return walked.level === 1 ? walked.idx : -1;
}

export function p2mLock(m: Machine, d: number, site: string): void {
  m.lock(m.dom.at(d, DOM.LOCK_P2M), site, d);
}
export function p2mUnlock(m: Machine, d: number): void {
  m.unlock(m.dom.at(d, DOM.LOCK_P2M));
}

// ---------------------------------------------------------------- table pages

/**
 * p2m_alloc_ptp: a cleared page charged to d, or −1 past d's share (caller
 * holds d's p2m lock). `reserved`: the page a Map superpage's split was
 * promised (P2M_RESERVED), charged already.
 */
function tableAlloc(m: Machine, d: number, reserved = false): number {
  if (reserved) {
    if (m.dom.at(d, DOM.P2M_RESERVED) <= 0) BUG(`p2m: d${d} splits a Map superpage with no page reserved for it`);
  } else if (m.dom.at(d, DOM.P2M_PAGES) >= m.dom.at(d, DOM.P2M_PAGES_MAX)) return -1;
  m.lock(GLOBAL_LOCK.P2M_POOL, 'p2m.alloc_ptp');
  try {
    const page = m.p2m.popLocked();
    if (reserved) m.dom.add(d, DOM.P2M_RESERVED, -1);
    else m.dom.add(d, DOM.P2M_PAGES, 1);
    return page;
  } finally {
    m.unlock(GLOBAL_LOCK.P2M_POOL);
  }
}

/** A superpage a BAR Map installed (MMIO mapped direct or to the device model): its split has a page reserved. */
function isMapSuper(e: number, level: number): boolean {
  const t = entryType(e);
  return level === 2 && e !== P2M_HOLE && !isTableEntry(e) && (t === P2M.mmio_direct || t === P2M.mmio_dm);
}

/**
 * Table pages the 4 KiB updates of `gfns` (at level `target`, 1 by
 * default) would add to d's p2m: tables missing on their paths and
 * superpages to split. The caller holds d's p2m lock, so the answer holds
 * until it drops it.
 */
export function p2mPagesNeeded(m: Machine, d: number, gfns: readonly number[], target = 1): number {
  const root = m.dom.at(d, DOM.P2M_ROOT);
  const levels = m.dom.at(d, DOM.P2M_LEVELS);
  let missing: Set<string> | null = null;
  const w: Walk = { idx: 0, level: 0 };
  for (const g of gfns) {
    if (!p2mInRange(m, d, g)) BUG(`p2m: gfn ${g} out of range for d${d}`);
    p2mWalkFrom(m.p2m.w, root, levels, g, w);
    // Levels w.level − 1 … target have no table of their own on g's path
    // (the common case, a path that is there, costs no set). A Map
    // superpage's split has its page reserved.
    if (w.level - 1 < target || (target === 1 && isMapSuper(Atomics.load(m.p2m.w, w.idx), w.level))) continue;
    missing ??= new Set<string>();
    for (let k = w.level - 1; k >= target; k--) missing.add(`${k}:${Math.floor(g / LEVEL_SPAN[k + 1]!)}`);
  }
  return missing === null ? 0 : missing.size;
}

/** 0 if the 4 KiB updates of `gfns` fit in d's share of the pool, else −ENOMEM (p2m_alloc_ptp failing in p2m_set_entry). */
export function p2mRoomLocked(m: Machine, d: number, gfns: readonly number[], target = 1): number {
  const need = p2mPagesNeeded(m, d, gfns, target);
  return m.dom.at(d, DOM.P2M_PAGES) + need <= m.dom.at(d, DOM.P2M_PAGES_MAX) ? 0 : -ENOMEM;
}

/**
 * ept_split_super_page one level: a table of 512 entries of the next level
 * down (superpages, or 4 KiB leaves at level 1) on the same frames and
 * type, built whole, then linked at `idx` by one store. The superpage
 * entry's GEN goes odd first: the caller's shootdown ends the split, and
 * `split` collects the word for the even bump after it.
 */
function splitSuper(m: Machine, d: number, idx: number, level: number, split: number[]): number {
  const e = Atomics.load(m.p2m.w, idx);
  if (level < 2 || level > P2M_SUPERPAGE_MAX_LEVEL || isTableEntry(e) || e === P2M_HOLE) BUG(`p2m split: d${d} word ${idx} level ${level} holds ${e}, not a superpage`);
  const page = tableAlloc(m, d, isMapSuper(e, level));
  if (page < 0) BUG(`p2m split: d${d} has no room (p2mRoomLocked not asked)`);
  const span = LEVEL_SPAN[level - 1]!;
  const mfn = entryMfn(e);
  const type = entryType(e);
  for (let i = 0; i < P2M_TABLE_ENTRIES; i++) Atomics.store(m.p2m.w, slotWord(page, i), p2mEntry(mfn + i * span, type));
  Atomics.add(m.p2m.w, idx + PAGE_GEN, 1);
  Atomics.store(m.p2m.w, idx, tableEntry(page));
  split.push(idx);
  Atomics.add(m.control.w, CTL.P2M_SPLITS, 1);
  local.splits++;
  const tw = tracer;
  if (tw !== null) tw.p2m(P2M_EV.SPLIT, d, level);
  return page;
}

/**
 * The word of gfn's entry at level `target`, making the path down to it
 * (ept_next_level with tables allocated; superpages above it split). The
 * caller holds d's p2m lock and asked p2mRoomLocked first.
 */
function ensureLocked(m: Machine, d: number, gfn: number, target: number, split: number[]): number {
  if (!p2mInRange(m, d, gfn)) BUG(`p2m: gfn ${gfn} out of range for d${d}`);
  let page = m.dom.at(d, DOM.P2M_ROOT);
  for (let k = m.dom.at(d, DOM.P2M_LEVELS); ; k--) {
    const idx = slotWord(page, levelIndex(gfn, k));
    if (k === target) return idx;
    const e = Atomics.load(m.p2m.w, idx);
    if (isTableEntry(e)) page = entryPage(e);
    else if (e === P2M_HOLE) {
      page = tableAlloc(m, d);
      if (page < 0) BUG(`p2m: d${d} has no room for a table (p2mRoomLocked not asked)`);
      Atomics.store(m.p2m.w, idx, tableEntry(page)); // a cleared table: the same holes
    } else page = splitSuper(m, d, idx, k, split);
  }
}

/** After splits made by a change that needs no flush of its own: ept_set_entry's sync, and the split entries' GEN even. */
function endSplits(m: Machine, d: number, split: readonly number[]): void {
  if (split.length === 0) return;
  tlbShootdown(m, d);
  for (const i of split) Atomics.add(m.p2m.w, i + PAGE_GEN, 1);
}

// ---------------------------------------------------------------- updates

/** Fill a hole (caller holds d's p2m lock): 0, −EINVAL past d's width, −EEXIST if gfn is not a hole, −ENOMEM if a table would not fit. */
export function p2mInsert(m: Machine, d: number, gfn: number, entry: number): number {
  if (!p2mInRange(m, d, gfn)) return -EINVAL;
  if (p2mGet(m, d, gfn) !== P2M_HOLE) return -EEXIST;
  if (p2mRoomLocked(m, d, [gfn]) < 0) return -ENOMEM;
  const split: number[] = [];
  const idx = ensureLocked(m, d, gfn, 1, split);
  if (split.length !== 0) BUG(`p2m insert: d${d} gfn ${gfn} was a hole inside a superpage`);
  if (Atomics.compareExchange(m.p2m.w, idx, P2M_HOLE, entry) !== P2M_HOLE) BUG(`p2m insert: d${d} gfn ${gfn} changed under the p2m lock`);
  return 0;
}

/**
 * Map `gfn` … gfn + 512^(level−1) − 1 with one superpage entry (caller
 * holds d's p2m lock; gfn and the entry's frame aligned to it): what
 * p2m_set_entry does for populate_physmap's extent_order 9 or 18. 0, or
 * −EEXIST when anything is mapped in the range (a table already there
 * counts: xgsim never unlinks a table while the domain lives, where
 * ept_set_entry would replace it and free it after the sync), or −ENOMEM.
 */
export function p2mInsertSuper(m: Machine, d: number, gfn: number, level: number, entry: number): number {
  const span = LEVEL_SPAN[level]!;
  if (level < 2 || level > P2M_SUPERPAGE_MAX_LEVEL || gfn % span !== 0 || entryMfn(entry) % span !== 0) BUG(`p2m superpage: d${d} gfn ${gfn} level ${level} mfn ${entryMfn(entry)} misaligned`);
  if (!p2mInRange(m, d, gfn) || !p2mInRange(m, d, gfn + span - 1)) return -EEXIST;
  const w: Walk = { idx: 0, level: 0 };
  p2mWalkFrom(m.p2m.w, m.dom.at(d, DOM.P2M_ROOT), m.dom.at(d, DOM.P2M_LEVELS), gfn, w);
  if (w.level < level || Atomics.load(m.p2m.w, w.idx) !== P2M_HOLE) return -EEXIST;
  if (p2mRoomLocked(m, d, [gfn], level) < 0) return -ENOMEM;
  const idx = ensureLocked(m, d, gfn, level, []);
  if (Atomics.compareExchange(m.p2m.w, idx, P2M_HOLE, entry) !== P2M_HOLE) BUG(`p2m superpage: d${d} gfn ${gfn} changed under the p2m lock`);
  return 0;
}

/**
 * A BAR Map's 2 MiB superpage (map_mmio_regions with mmio_order's 2 MiB,
 * caller holds d's p2m lock and asked p2mMapSuperRoom): one entry, and one
 * page charged and reserved for the table its split will take, so that a
 * Revoke of part of it cannot fail. 0 or −EEXIST (something is mapped in
 * the range, a table included).
 */
export function p2mMapSuperLocked(m: Machine, d: number, gfn: number, entry: number): number {
  if (m.dom.at(d, DOM.P2M_PAGES) + p2mPagesNeeded(m, d, [gfn], 2) + 1 > m.dom.at(d, DOM.P2M_PAGES_MAX)) BUG(`p2m: d${d} has no room for a Map superpage (p2mMapSuperRoom not asked)`);
  const rc = p2mInsertSuper(m, d, gfn, 2, entry);
  if (rc === 0) {
    m.dom.add(d, DOM.P2M_PAGES, 1);
    m.dom.add(d, DOM.P2M_RESERVED, 1);
  }
  return rc;
}

/** Whether 512 gfns from `gfn` (aligned) are one hole at level 2 or above: where a Map superpage fits. Lock-free. */
export function p2mSuperFits(m: Machine, d: number, gfn: number): boolean {
  if (gfn % LEVEL_SPAN[2]! !== 0 || !p2mInRange(m, d, gfn + LEVEL_SPAN[2]! - 1)) return false;
  const w: Walk = { idx: 0, level: 0 };
  p2mWalkFrom(m.p2m.w, m.dom.at(d, DOM.P2M_ROOT), m.dom.at(d, DOM.P2M_LEVELS), gfn, w);
  return w.level >= 2 && Atomics.load(m.p2m.w, w.idx) === P2M_HOLE;
}

/** Pages Map superpages at `bases` and 4 KiB entries at `gfns` need (an upper bound): 0 if they fit d's share, else −ENOMEM. */
export function p2mMapRoomLocked(m: Machine, d: number, bases: readonly number[], gfns: readonly number[]): number {
  const need = p2mPagesNeeded(m, d, bases, 2) + bases.length + p2mPagesNeeded(m, d, gfns, 1);
  return m.dom.at(d, DOM.P2M_PAGES) + need <= m.dom.at(d, DOM.P2M_PAGES_MAX) ? 0 : -ENOMEM;
}

/** A hole or a revoked gfn: what a Map, Steal or Return may fill. */
export function p2mIsEmpty(e: number): boolean {
  return e === P2M_HOLE || e === P2M_REVOKED;
}

/**
 * Replace an entry without a flush of its own (caller holds d's p2m lock
 * and asked p2mRoomLocked): only for changes that take no access right
 * away from a cached translation — filling an empty gfn, or re-typing a
 * frame the vCPU may keep reaching (Steal turns fe's ram_rw into
 * mmio_direct on the same frame). A superpage it lands in is split, and
 * that split is synced (ept_set_entry's needs_sync).
 */
export function p2mSetLocked(m: Machine, d: number, gfn: number, entry: number): void {
  const split: number[] = [];
  Atomics.store(m.p2m.w, ensureLocked(m, d, gfn, 1, split), entry);
  endSplits(m, d, split);
}

export interface RemoveOptions {
  /** Deliberate bug: skip the shootdown (skip-tlb-flush-on-unmap etc.). */
  skipFlushBug?: number;
  /** Called with each gfn's 4 KiB word once any split is done, before the entry changes (Revoke records the fault owner there). */
  onLeaf?: (gfn: number, idx: number) => void;
}

/**
 * Replace entries with `replacement` (a hole by default) and make the old
 * translations unreachable before returning. Caller holds d's p2m lock and,
 * where a gfn may lie in a superpage, asked p2mRoomLocked. Returns the old
 * (4 KiB) entries.
 */
export function p2mRemoveLocked(m: Machine, d: number, gfns: readonly number[], replacement = P2M_HOLE, opts: RemoveOptions = {}): number[] {
  const split: number[] = [];
  const idx = gfns.map((g) => ensureLocked(m, d, g, 1, split));
  Atomics.add(m.control.w, CTL.P2M_REMOVED, gfns.length);
  local.removed += gfns.length;
  if (opts.onLeaf !== undefined) gfns.forEach((g, k) => opts.onLeaf!(g, idx[k]!));
  for (const i of idx) Atomics.add(m.p2m.w, i + PAGE_GEN, 1);
  const old = idx.map((i) => Atomics.exchange(m.p2m.w, i, replacement));
  const skip = opts.skipFlushBug !== undefined && m.control.buggy(opts.skipFlushBug);
  if (!skip) tlbShootdown(m, d);
  for (const i of idx) Atomics.add(m.p2m.w, i + PAGE_GEN, 1);
  for (const i of split) Atomics.add(m.p2m.w, i + PAGE_GEN, 1);
  return old;
}

/** Convenience: take the lock, remove, release. */
export function p2mRemove(m: Machine, d: number, gfns: readonly number[], site: string, opts: RemoveOptions = {}): number[] {
  p2mLock(m, d, site);
  try {
    return p2mRemoveLocked(m, d, gfns, P2M_HOLE, opts);
  } finally {
    p2mUnlock(m, d);
  }
}

// ---------------------------------------------------------------- whole p2m

/** A leaf of d's p2m: its first gfn, its entry (a superpage's, not expanded), its word and its level. */
export interface P2mLeaf {
  gfn: number;
  e: number;
  idx: number;
  level: number;
}

/**
 * Every populated leaf of d's p2m, by ascending gfn (lock-free: a leaf that
 * changes meanwhile is seen before or after). The iteration over "all
 * gfns" of every caller: cost in proportion to the tables, not the width.
 */
export function p2mForEachLeaf(m: Machine, d: number, fn: (leaf: P2mLeaf) => void): void {
  const levels = m.dom.at(d, DOM.P2M_LEVELS);
  if (levels === 0) return;
  const leaf: P2mLeaf = { gfn: 0, e: 0, idx: 0, level: 0 };
  const visit = (page: number, k: number, first: number): void => {
    for (let s = 0; s < P2M_TABLE_ENTRIES; s++) {
      const idx = slotWord(page, s);
      const e = Atomics.load(m.p2m.w, idx);
      if (e === P2M_HOLE) continue;
      const gfn = first + s * LEVEL_SPAN[k]!;
      if (k > 1 && isTableEntry(e)) visit(entryPage(e), k - 1, gfn);
      else if (!isTableEntry(e)) {
        leaf.gfn = gfn;
        leaf.e = e;
        leaf.idx = idx;
        leaf.level = k;
        fn(leaf);
      }
    }
  };
  visit(m.dom.at(d, DOM.P2M_ROOT), levels, 0);
}

/** Every populated 4 KiB gfn of d with its (4 KiB) entry and the word that decides it; superpages expanded. */
export function p2mForEach(m: Machine, d: number, fn: (gfn: number, e: number, idx: number) => void): void {
  p2mForEachLeaf(m, d, (l) => {
    if (l.level === 1) fn(l.gfn, l.e, l.idx);
    else for (let i = 0; i < LEVEL_SPAN[l.level]!; i++) fn(l.gfn + i, leafFor(l.e, l.level, l.gfn + i), l.idx);
  });
}

/**
 * Empty d's p2m at its teardown (caller holds d's p2m lock): every leaf —
 * superpages whole, no split — becomes a hole around one shootdown. The
 * tables stay linked until p2mFreeTables. Returns the old leaves.
 */
export function p2mClearLocked(m: Machine, d: number): P2mLeaf[] {
  const leaves: P2mLeaf[] = [];
  p2mForEachLeaf(m, d, (l) => leaves.push({ ...l }));
  for (const l of leaves) Atomics.add(m.p2m.w, l.idx + PAGE_GEN, 1);
  for (const l of leaves) l.e = Atomics.exchange(m.p2m.w, l.idx, P2M_HOLE);
  if (leaves.length > 0) tlbShootdown(m, d);
  for (const l of leaves) Atomics.add(m.p2m.w, l.idx + PAGE_GEN, 1);
  return leaves;
}

/** The pool pages of d's tables, root first. Lock-free. */
export function p2mTablePages(m: Machine, d: number): number[] {
  const levels = m.dom.at(d, DOM.P2M_LEVELS);
  if (levels === 0) return [];
  const out: number[] = [];
  const visit = (page: number, k: number): void => {
    out.push(page);
    if (k === 1) return;
    for (let s = 0; s < P2M_TABLE_ENTRIES; s++) {
      const e = Atomics.load(m.p2m.w, slotWord(page, s));
      if (isTableEntry(e)) visit(entryPage(e), k - 1);
    }
  };
  visit(m.dom.at(d, DOM.P2M_ROOT), levels);
  return out;
}

/**
 * A new domain's p2m (domain_create → p2m_init, hap_set_allocation): its
 * share of the pool promised, its root table allocated. 0 or −ENOMEM.
 * Caller holds domctl; d is CREATING.
 */
export function p2mCreate(m: Machine, d: number, paddr_bits: number, pages_max: number, levels: number): number {
  m.lock(GLOBAL_LOCK.P2M_POOL, 'p2m.init');
  try {
    if (pages_max < 1 || m.p2m.reserved + pages_max > m.p2m.nr_pages) return -ENOMEM;
    Atomics.add(m.p2m.hdr, POOL.RESERVED, pages_max);
    const root = m.p2m.popLocked();
    m.dom.set(d, DOM.P2M_ROOT, root);
    m.dom.set(d, DOM.P2M_PAGES, 1);
    m.dom.set(d, DOM.P2M_RESERVED, 0);
    m.dom.set(d, DOM.P2M_PAGES_MAX, pages_max);
    m.dom.set(d, DOM.P2M_PADDR_BITS, paddr_bits);
    m.dom.set(d, DOM.P2M_LEVELS, levels);
    return 0;
  } finally {
    m.unlock(GLOBAL_LOCK.P2M_POOL);
  }
}

/**
 * p2m_teardown + p2m_final_teardown: d's table pages go back to the pool
 * and its promise is released, once nothing can walk d's p2m any more: d
 * is a zombie with no page and no reference left (reapDomain, just before
 * its slot is freed). Under the p2m_pool lock, which domainCreate's
 * p2mCreate takes too: a zombie seen there has not been replaced, so two
 * racing reapers free once, and never a new domain's tables.
 */
export function p2mFreeTables(m: Machine, d: number, reapable: () => boolean): void {
  m.lock(GLOBAL_LOCK.P2M_POOL, 'p2m.teardown');
  try {
    if (!reapable() || m.dom.at(d, DOM.P2M_LEVELS) === 0) return;
    const pages = p2mTablePages(m, d);
    const linked = m.dom.at(d, DOM.P2M_PAGES) - m.dom.at(d, DOM.P2M_RESERVED);
    if (pages.length !== linked) BUG(`p2m teardown: d${d} has ${pages.length} tables linked, ${linked} counted`);
    m.dom.set(d, DOM.P2M_LEVELS, 0);
    for (const p of pages.reverse()) m.p2m.pushLocked(p);
    Atomics.sub(m.p2m.hdr, POOL.RESERVED, m.dom.at(d, DOM.P2M_PAGES_MAX));
    m.dom.set(d, DOM.P2M_PAGES, 0);
    m.dom.set(d, DOM.P2M_RESERVED, 0);
    m.dom.set(d, DOM.P2M_PAGES_MAX, 0);
  } finally {
    m.unlock(GLOBAL_LOCK.P2M_POOL);
  }
}

// ---------------------------------------------------------------- shootdown

/**
 * Bump d's flush epoch and wait until no vCPU of d can still use a
 * translation from before. Bounded (see the file comment); exceeding the
 * bound is a hypervisor bug, not a guest's doing.
 */
export function tlbShootdown(m: Machine, d: number): void {
  // Running vCPUs see this at their next boundary and step aside for a
  // moment (Mmu.boundary): with more vCPU threads than cores, the vCPU we
  // wait for is often one the OS preempted, and it needs a core to ack.
  Atomics.add(m.control.w, CTL.SHOOTDOWNS, 1);
  try {
    waitForAcks(m, d);
  } finally {
    Atomics.sub(m.control.w, CTL.SHOOTDOWNS, 1);
  }
  Atomics.add(m.control.w, CTL.TLB_SHOOTDOWNS_DONE, 1);
  local.shootdowns++;
  sched().charge(COST.SHOOTDOWN, 1);
  const tw = tracer;
  if (tw !== null) tw.p2m(P2M_EV.SHOOTDOWN, d, 0);
}

function waitForAcks(m: Machine, d: number): void {
  const e = Atomics.add(m.dom.w, m.dom.epochIndex(d), 1) + 1;
  const base = m.dom.at(d, DOM.VCPU_BASE);
  const n = m.dom.at(d, DOM.NR_VCPUS);
  const s = sched();
  let deadline_us = 0;
  let t0_us = -1;
  // BUGGIFY shootdown-skip-one-ack: the last vCPU that owes an acknowledgement is left out of the wait, as a
  // flush mask missing one CPU (flush_tlb_mask over a stale dirty_cpumask) would.
  const skip = m.control.buggy(BUGS['shootdown-skip-one-ack']) ? lastOwing(m, base, n, e) : -1;
  for (let v = 0; v < n; v++) {
    const slot = base + v;
    if (slot === skip) continue;
    for (let i = 0; ; i++) {
      if (m.vcpus.at(slot, VC.STATE) !== VS.GUEST) break;
      if (m.vcpus.at(slot, VC.ACK_EPOCH) - e >= 0) break;
      if (i === 0) {
        // A vCPU in guest mode that has not seen the new epoch: Xen IPIs its pCPU and it exits to ack (paused).
        local.paused++;
        if (t0_us < 0) t0_us = s.now_us();
        // The simulator: a vCPU it suspended between two accesses takes the flush IPI here (an interleaving point).
        if (s.awaitAck !== undefined) {
          s.awaitAck(slot);
          continue;
        }
      }
      if ((i & 255) === 255) {
        const now = s.now_us();
        if (deadline_us === 0) deadline_us = now + TLB_SHOOTDOWN_BOUND_MS * 1000;
        else if (now > deadline_us) {
          throw new HypervisorBug(`TLB shootdown of d${d}: vCPU slot ${slot} did not acknowledge epoch ${e} within ${TLB_SHOOTDOWN_BOUND_MS} ms`);
        }
      }
      s.relax(i);
    }
  }
  if (t0_us >= 0) {
    const waited_us = s.now_us() - t0_us;
    local.pause_us += waited_us;
    local.pause_max_us = Math.max(local.pause_max_us, waited_us);
  }
}


/** Start counting a revocation on this thread (a design's Revoke, a grant unmap, a foreign map's removal). */
export function revocationBegin(): LocalCosts {
  local.pause_max_us = 0;
  return { ...local };
}

/**
 * End it: one revocation and what it cost, added to the machine's counters
 * (CTL.REVOCATIONS …) — if it took anything away (a Revoke of what an
 * eviction or a teardown already revoked removes no entry and is not counted).
 */
export function revocationEnd(m: Machine, before: LocalCosts): void {
  if (local.removed === before.removed) return;
  const w = m.control.w;
  Atomics.add(w, CTL.REVOCATIONS, 1);
  Atomics.add(w, CTL.REVOKE_P2M_REMOVED, local.removed - before.removed);
  Atomics.add(w, CTL.REVOKE_SHOOTDOWNS, local.shootdowns - before.shootdowns);
  Atomics.add(w, CTL.REVOKE_VCPUS_PAUSED, local.paused - before.paused);
  Atomics.add(w, CTL.REVOKE_PAUSE_US, Math.round(local.pause_us - before.pause_us));
  Atomics.add(w, CTL.REVOKE_SPLITS, local.splits - before.splits);
  atomicMax(w, CTL.REVOKE_PAUSE_MAX_US, Math.round(local.pause_max_us));
}

/** The highest vCPU slot of d in GUEST whose acknowledgement of epoch e is not in, or −1. */
function lastOwing(m: Machine, base: number, n: number, e: number): number {
  for (let v = n - 1; v >= 0; v--) {
    const slot = base + v;
    if (m.vcpus.at(slot, VC.STATE) === VS.GUEST && m.vcpus.at(slot, VC.ACK_EPOCH) - e < 0) return slot;
  }
  return -1;
}

export { BUGS };
