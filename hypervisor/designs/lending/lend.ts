/**
 * Lend and reclaim (docs/designs.md §2, the March 2026 lending RFC). Xen has
 * no such operation; the nearest are p2m_add_foreign's page reference on
 * insert (xen/arch/x86/mm/p2m.c) for lend, and guest_physmap_remove_page's
 * p2m_remove_entry + flush for reclaim. Lock order (docs/locks.md): registry
 * → p2m of the lower domid → p2m of the higher.
 */
import { EINVAL, EEXIST, ENOMEM, ENOSPC, EPERM, ESRCH } from '../../public/errno.js';
import { P2M, type P2mType } from '../../public/types.js';
import { MAX_LENDS, MAX_PAGES_PER_OP } from '../../layout/constants.js';
import { designRegionView } from '../../xen/record-table.js';
import { DOM, DS, PASSTHROUGH } from '../../layout/domains.js';
import { entryMfn, entryOrdinal, entryType, p2mEntry, P2M_HOLE, P2M_REVOKED } from '../../layout/p2m.js';
import { PRIM } from '../../layout/trace.js';
import { REACH } from '../../layout/reach.js';
import { BUG } from '../../layout/region.js';
import { BUGS } from '../../xen/buggify.js';
import type { DmOpResult, MapArgs, RevokeTarget } from '../../xen/design.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { getPage, putPage } from '../../xen/mm.js';
import { p2mGet, p2mInRange, p2mIsEmpty, p2mLock, p2mMapRoomLocked, p2mRemoveLocked, p2mSetLocked, p2mUnlock } from '../../xen/p2m.js';
import { tracePrim, tracer } from '../../xen/trace.js';
import { LEND, LendStore } from './store.js';

/** This thread's view of the machine's lend records (Machine.sabs.design). */
export const storeOf: (m: Machine) => LendStore = designRegionView(LendStore);

const fail = (rc: number, index = -1): DmOpResult => ({ rc, index, id: 0 });

/** The lender may lend to `borrower`: its device model (topology backend) or the control domain, both running. */
function authority(m: Machine, lender: number, borrower: number): number {
  if (!Number.isInteger(borrower) || borrower < 0 || borrower >= m.nd || m.dom.state(borrower) !== DS.RUNNING) return -ESRCH;
  if (m.dom.state(lender) !== DS.RUNNING) return -ESRCH;
  if (lender === borrower) return -EINVAL;
  return m.dom.at(borrower, DOM.BACKEND) === lender + 1 || m.dom.at(lender, DOM.PRIVILEGED) !== 0 ? 0 : -EPERM;
}

/** Lock two domains' p2ms in domid order (docs/locks.md rule 2; Xen's get_two_gfns). */
function lockPair(m: Machine, a: number, b: number, site: string): () => void {
  const [lo, hi] = a < b ? [a, b] : [b, a];
  p2mLock(m, lo, site);
  p2mLock(m, hi, site);
  return () => {
    p2mUnlock(m, hi);
    p2mUnlock(m, lo);
  };
}

/**
 * Lend: the lender's RAM pages into empty borrower gfns, as mmio_direct or
 * mmio_dm (the RFC: "usually shown to the guest as an emulated BAR"), never
 * RAM — so the core's grant, copy and foreign-map paths, keyed on the type,
 * answer them as a hole (rule 2). The lender keeps ownership (rule 1): the
 * frames stay its own, held by one page reference per lent page.
 */
export function lend(m: Machine, lender: number, a: MapArgs): DmOpResult {
  const tw = tracer;
  return tw === null ? lendUntraced(m, lender, a) : tracePrim(tw, PRIM.MAP, a.fe, a.count, () => lendUntraced(m, lender, a), (r) => r.rc);
}

function lendUntraced(m: Machine, lender: number, a: MapArgs): DmOpResult {
  if (!Number.isInteger(a.count) || a.count < 1 || a.count > MAX_PAGES_PER_OP) return fail(-EINVAL);
  const auth = authority(m, lender, a.fe);
  if (auth !== 0) return fail(auth);
  const type = a.type ?? P2M.mmio_direct;
  // Lent memory is the lender's RAM: a BAR is not lent (its device is the lender's own).
  if ((type !== P2M.mmio_direct && type !== P2M.mmio_dm) || a.source.kind !== 'ram') return fail(-EINVAL);
  // Rule 4: an IOMMU that walks the borrower's EPT (share_pt) reaches every entry its vCPUs reach directly, so such a
  // borrower is lent memory only as an emulated BAR (mmio_dm: no EPT permission, reached through the lender's server).
  if (type === P2M.mmio_direct && m.dom.at(a.fe, DOM.PASSTHROUGH) === PASSTHROUGH.share_pt) return fail(-EINVAL);
  m.lock(GLOBAL_LOCK.REGISTRY, 'lending.lend');
  const unlock = lockPair(m, lender, a.fe, 'lending.lend');
  try {
    return lendLocked(m, lender, a, a.source.gfn, type);
  } finally {
    unlock();
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

function lendLocked(m: Machine, lender: number, a: MapArgs, src: number, type: P2mType): DmOpResult {
  const mfns: number[] = [];
  for (let i = 0; i < a.count; i++) {
    const e = p2mGet(m, lender, src + i);
    const mfn = entryMfn(e);
    if (e === P2M_HOLE || entryType(e) !== P2M.ram_rw || !m.ft.isRam(mfn) || m.ft.owner(mfn) !== lender) return fail(-EINVAL, i);
    if (!p2mInRange(m, a.fe, a.at + i)) return fail(-EINVAL, i);
    if (!p2mIsEmpty(p2mGet(m, a.fe, a.at + i))) return fail(-EEXIST, i);
    mfns.push(mfn);
  }
  const gfns = mfns.map((_, i) => a.at + i);
  if (p2mMapRoomLocked(m, a.fe, [], gfns) < 0) return fail(-ENOMEM);
  const s = storeOf(m);
  const r = s.alloc();
  if (r < 0) return fail(-ENOSPC);
  for (const mfn of mfns) {
    if (!getPage(m, mfn, lender)) BUG(`lend: get_page of mfn ${mfn} failed under the p2m lock`);
    Atomics.add(s.lent, mfn, 1);
    // The borrower's right to the frame, before its entry is published (layout/reach.ts).
    m.reach.grant(mfn, a.fe, REACH.MAP);
  }
  mfns.forEach((mfn, i) => p2mSetLocked(m, a.fe, a.at + i, p2mEntry(mfn, type)));
  const id = s.nextId();
  const words: Array<[number, number]> = [[LEND.LENDER, lender], [LEND.BORROWER, a.fe], [LEND.SRC, src], [LEND.AT, a.at], [LEND.COUNT, a.count], [LEND.LIVE, a.count], [LEND.ID, id]];
  for (const [f, v] of words) s.set(r, f, v);
  for (let i = 0; i < a.count; i++) s.setLive(r, i, true);
  s.set(r, LEND.STATE, 1);
  return { rc: 0, index: -1, id };
}

/**
 * Reclaim (rule 5): called from the lender's MMU notifier. Bounded against
 * any borrower: it takes the registry and the borrower's p2m lock (held by
 * Xen only, never by a guest), removes the entries and shoots down the
 * borrower's TLBs (p2mRemoveLocked → flush_tlb_mask, which no guest can
 * delay), and never waits for the borrower to do anything. The RFC lets it
 * fail temporarily (-EAGAIN, retried by the notifier); nothing in this
 * model is temporary, so it never does. Reclaiming what is gone is done (0).
 */
export function reclaim(m: Machine, lender: number, t: RevokeTarget): number {
  if (!('id' in t)) {
    if (!Number.isInteger(t.count) || t.count < 1 || t.count > MAX_PAGES_PER_OP) return -EINVAL;
    if (!Number.isInteger(t.fe) || t.fe < 0 || t.fe >= m.nd) return -ESRCH;
    if (t.fe === lender) return -EINVAL;
  }
  m.lock(GLOBAL_LOCK.REGISTRY, 'lending.reclaim');
  try {
    const s = storeOf(m);
    if ('id' in t) {
      const r = s.find(t.id);
      if (r < 0) return s.issued(t.id) ? 0 : -EINVAL;
      if (s.at(r, LEND.LENDER) !== lender) return -EPERM;
      reclaimPages(m, r, livePages(s, r, () => true));
      return 0;
    }
    for (let r = 0; r < MAX_LENDS; r++) {
      if (s.at(r, LEND.STATE) !== 1 || s.at(r, LEND.LENDER) !== lender || s.at(r, LEND.BORROWER) !== t.fe) continue;
      const at = s.at(r, LEND.AT);
      const pages = livePages(s, r, (i) => at + i >= t.gfn && at + i < t.gfn + t.count);
      if (pages.length > 0) reclaimPages(m, r, pages);
    }
    return 0;
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

export function livePages(s: LendStore, r: number, which: (i: number) => boolean): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.at(r, LEND.COUNT); i++) if (s.live(r, i) && which(i)) out.push(i);
  return out;
}

/** Reclaim pages of live record r (registry lock held): entries out and flushed, then rights and references. */
export function reclaimPages(m: Machine, r: number, pages: readonly number[]): void {
  const tw = tracer;
  const s = storeOf(m);
  if (tw === null) reclaimUntraced(m, s, r, pages);
  else tracePrim(tw, PRIM.REVOKE, s.at(r, LEND.BORROWER), pages.length, () => reclaimUntraced(m, s, r, pages), () => 0);
}

function reclaimUntraced(m: Machine, s: LendStore, r: number, pages: readonly number[]): void {
  const lender = s.at(r, LEND.LENDER);
  const borrower = s.at(r, LEND.BORROWER);
  const at = s.at(r, LEND.AT);
  const unlock = lockPair(m, lender, borrower, 'lending.reclaim');
  let old: number[];
  try {
    // The gfns' FAULTs go to the lender's IOREQ server (rule 6), set before the entries become revoked.
    const onLeaf = (_g: number, w: number): void => {
      Atomics.store(s.faultOwner, entryOrdinal(w), lender + 1);
    };
    old = p2mRemoveLocked(m, borrower, pages.map((i) => at + i), P2M_REVOKED, { skipFlushBug: BUGS['lending-revoke-skip-flush'], onLeaf });
    // Still under the lender's p2m lock, so a foreign map sees the frame lent or free of lends, never between.
    for (const e of old) if (e !== P2M_HOLE && m.ft.isRam(entryMfn(e))) Atomics.sub(s.lent, entryMfn(e), 1);
  } finally {
    unlock();
  }
  for (const i of pages) s.setLive(r, i, false);
  s.set(r, LEND.LIVE, s.at(r, LEND.LIVE) - pages.length);
  // Every TLB of the borrower is flushed: its right and the reference may go.
  for (const e of old) {
    const mfn = entryMfn(e);
    if (e === P2M_HOLE || !m.ft.isRam(mfn)) BUG(`reclaim: d${borrower} lost a lent entry to something else`);
    m.reach.release(mfn, borrower, REACH.MAP);
    putPage(m, mfn);
  }
  if (s.at(r, LEND.LIVE) === 0) s.free(r);
}
