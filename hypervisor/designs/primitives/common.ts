/**
 * What the four primitives share: the authority and count checks common to
 * all of them (docs/primitives.md, common checks 1–3), the two-domain lock
 * helpers that keep the documented order (docs/locks.md), and the registry
 * look-ups. Lock order of every primitive (docs/locks.md): domctl (BAR Maps
 * only, for iomem_caps) → registry → grant(fe) (Steal only) → p2m of the
 * lower domid → p2m of the higher → page_alloc (lower, higher) → heap.
 */
import { MAX_PAGES_PER_OP } from '../../layout/constants.js';
import { DOM, DS } from '../../layout/domains.js';
import { KIND, REC, Registry, STOLEN } from './registry.js';
import { BUG } from '../../layout/region.js';
import type { DmOpResult } from '../../xen/design.js';
import { type Machine } from '../../xen/machine.js';
import { designRegionView } from '../../xen/record-table.js';
import { p2mLock, p2mUnlock } from '../../xen/p2m.js';
import { EINVAL, EPERM, ESRCH } from '../../public/errno.js';


export const ok = (id = 0): DmOpResult => ({ rc: 0, index: -1, id });
export const rcOf = (r: DmOpResult): number => r.rc;
export const fail = (rc: number, index = -1): DmOpResult => ({ rc, index, id: 0 });

/** This thread's view of the machine's mapping registry (the design's region, Machine.sabs.design). */
export const registryOf: (m: Machine) => Registry = designRegionView(Registry);

// ---------------------------------------------------------------- helpers

export function authority(m: Machine, be: number, fe: number): number {
  if (!Number.isInteger(fe) || fe < 0 || fe >= m.nd || m.dom.state(fe) !== DS.RUNNING) return -ESRCH;
  // A backend that crashed or is dying makes no new mappings (its pages would be stranded).
  if (m.dom.state(be) !== DS.RUNNING) return -ESRCH;
  if (be === fe) return -EINVAL;
  if (m.dom.at(fe, DOM.BACKEND) === be + 1 || m.dom.at(be, DOM.PRIVILEGED) !== 0) return 0;
  return -EPERM;
}

/**
 * Whether d has not begun dying (Xen's !d->is_dying), asked again under the
 * registry lock: a teardown takes it to revoke what d is either side of and
 * to end its Steals (teardown.ts), so what a primitive records after this
 * answer is what that teardown finds. The authority check before the lock
 * is not enough: a destroy may run whole between the two (a Map went on
 * into a zombie's p2m, and the record it left named a domain later freed).
 * A crash since the check is no death yet: the destroy that follows it
 * revokes what was made.
 */
export function notDying(m: Machine, d: number): boolean {
  const st = m.dom.state(d);
  return st === DS.RUNNING || st === DS.CRASHED;
}

export function countOk(count: number): boolean {
  return Number.isInteger(count) && count >= 1 && count <= MAX_PAGES_PER_OP;
}

/** Lock two domains' p2ms in domid order (Xen's p2m_lock of two domains, get_two_gfns). */
export function lockPair(m: Machine, a: number, b: number, site: string): () => void {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  p2mLock(m, lo, site);
  if (hi !== lo) p2mLock(m, hi, site);
  return () => {
    if (hi !== lo) p2mUnlock(m, hi);
    p2mUnlock(m, lo);
  };
}

export function pageAllocPair(m: Machine, a: number, b: number, site: string): () => void {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  m.lock(m.dom.at(lo, DOM.LOCK_PAGE_ALLOC), site, lo);
  if (hi !== lo) m.lock(m.dom.at(hi, DOM.LOCK_PAGE_ALLOC), site, hi);
  return () => {
    if (hi !== lo) m.unlock(m.dom.at(hi, DOM.LOCK_PAGE_ALLOC));
    m.unlock(m.dom.at(lo, DOM.LOCK_PAGE_ALLOC));
  };
}

/**
 * The live mapping record that put frontend gfn (fe, gfn) there, or -1 —
 * the lowest such record, as a scan in record order finds it (there is at
 * most one, recordCovers). `hint` is a record to try first (the one that
 * covered the previous gfn of a range): a hit is that one record. Else
 * fe's live records only (the registry's index). Registry lock held.
 */
export function recordAt(m: Machine, fe: number, gfn: number, hint = -1): number {
  if (hint >= 0 && recordCovers(m, hint, fe, gfn)) return hint;
  const reg = registryOf(m);
  let found = -1;
  for (let r = reg.firstOfFrontend(fe); r >= 0; r = reg.nextOfFrontend(r)) if ((found < 0 || r < found) && recordCovers(m, r, fe, gfn)) found = r;
  return found;
}

/**
 * Whether live mapping record r put frontend gfn (fe, gfn) there: the same
 * answer as `recordAt(m, fe, gfn) === r` without the scan, because at most
 * one live record covers a frontend gfn (Map and Steal fill only entries
 * that are empty or the frontend's own RAM, and a page's live bit goes
 * when its entry is revoked). Registry lock held.
 */
export function recordCovers(m: Machine, r: number, fe: number, gfn: number): boolean {
  const reg = registryOf(m);
  if (r < 0 || reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL || reg.at(r, REC.FRONTEND) !== fe) return false;
  const i = gfn - reg.at(r, REC.FE_GFN);
  return i >= 0 && i < reg.at(r, REC.COUNT) && reg.live(r, i);
}

/** Index of backend gfn (be, gfn) in live steal record r, or -1. */
export function stealIndex(m: Machine, r: number, be: number, gfn: number): number {
  const reg = registryOf(m);
  if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) !== KIND.STEAL || reg.at(r, REC.BACKEND) !== be) return -1;
  const i = gfn - reg.at(r, REC.SRC);
  return i >= 0 && i < reg.at(r, REC.COUNT) && reg.live(r, i) ? i : -1;
}

/**
 * The live steal record whose page went to backend gfn (be, gfn), and the
 * page's index; or [-1, -1]. `hint` is a record to try first (the one that
 * held the previous gfn of a range): at most one live steal record holds a
 * backend gfn (Steal fills only holes of be, and Return clears the page's
 * live bit), so a hit is the record the scan would find.
 */
export function stealAt(m: Machine, be: number, gfn: number, hint = -1): [number, number] {
  if (hint >= 0) {
    const i = stealIndex(m, hint, be, gfn);
    if (i >= 0) return [hint, i];
  }
  // be's live records only (the registry's index), in record order.
  for (const r of registryOf(m).byBackend(be)) {
    const i = stealIndex(m, r, be, gfn);
    if (i >= 0) return [r, i];
  }
  return [-1, -1];
}

/**
 * The Steal that holds RAM frame `mfn` now: its record and page, and the
 * frontend it came from; undefined when the frame is not stolen — never
 * was, was returned, or was freed since (its FREES moved: that Steal is
 * over, whatever frame sits at its gfn now). Registry lock held.
 */
export function stealOf(m: Machine, mfn: number): { r: number; i: number; fe: number } | undefined {
  const reg = registryOf(m);
  const k = mfn * STOLEN.WORDS;
  const from = reg.stolen[k + STOLEN.FROM]!;
  if (from === 0 || reg.stolen[k + STOLEN.FREES] !== m.ft.frees(mfn)) return undefined;
  const r = reg.stolen[k + STOLEN.REC]! - 1;
  const i = reg.stolen[k + STOLEN.IDX]!;
  if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) !== KIND.STEAL || reg.at(r, REC.FRONTEND) !== from - 1 || !reg.live(r, i)) BUG(`stolen mfn ${mfn}: its Steal record ${r} page ${i} is not live`);
  return { r, i, fe: from - 1 };
}

/** Steal record r's page i is frame mfn, stolen from fe. Registry lock held. */
export function holdStolen(m: Machine, mfn: number, fe: number, r: number, i: number): void {
  const reg = registryOf(m);
  const k = mfn * STOLEN.WORDS;
  if (reg.stolen[k + STOLEN.FROM] !== 0) {
    // An earlier Steal of this frame: it was freed since (a held frame is
    // the backend's, not a frontend's RAM that Steal could take), so that
    // Steal is over; its page ends before this one takes the entry.
    if (reg.stolen[k + STOLEN.FREES] === m.ft.frees(mfn)) BUG(`mfn ${mfn} stolen twice without a free`);
    endStealPage(m, reg.stolen[k + STOLEN.REC]! - 1, reg.stolen[k + STOLEN.IDX]!);
  }
  reg.stolen[k + STOLEN.FROM] = fe + 1;
  reg.stolen[k + STOLEN.FREES] = m.ft.frees(mfn);
  reg.stolen[k + STOLEN.REC] = r + 1;
  reg.stolen[k + STOLEN.IDX] = i;
}

/** Frame mfn is no longer stolen (returned). Registry lock held. */
export function releaseStolen(m: Machine, mfn: number): void {
  registryOf(m).stolen.fill(0, mfn * STOLEN.WORDS, (mfn + 1) * STOLEN.WORDS);
}

/** Ends page i of Steal record r (the record too, with its last page). Registry lock held. */
function endStealPage(m: Machine, r: number, i: number): void {
  const reg = registryOf(m);
  if (!reg.live(r, i)) BUG(`Steal record ${r} page ${i} ended twice`);
  reg.setLive(r, i, false);
  reg.set(r, REC.LIVE, reg.at(r, REC.LIVE) - 1);
  if (reg.at(r, REC.LIVE) === 0) {
    const link = reg.at(r, REC.LINK);
    if (link !== 0) reg.set(link - 1, REC.LINK, 0);
    reg.free(r);
  }
}

/** Frame mfn went back to its frontend (Return): its Steal's page ends. Registry lock held. */
export function returnStolen(m: Machine, mfn: number, r: number, i: number): void {
  releaseStolen(m, mfn);
  endStealPage(m, r, i);
}

/**
 * End every Steal page whose frame was freed since (its FREES moved): the
 * Steal is over the moment the backend frees the frame (stealOf already
 * says so); this gives its record back. `forget`: also end the pages of
 * these Steal records (a dying domain's, teardown.ts). One pass over the
 * stolen-frame table. Registry lock held.
 */
export function reapSteals(m: Machine, forget: (r: number) => boolean = () => false): void {
  const reg = registryOf(m);
  for (let mfn = 0; mfn < m.config.nr_frames; mfn++) {
    const k = mfn * STOLEN.WORDS;
    if (reg.stolen[k + STOLEN.FROM] === 0) continue;
    const r = reg.stolen[k + STOLEN.REC]! - 1;
    if (reg.stolen[k + STOLEN.FREES] === m.ft.frees(mfn) && !forget(r)) continue;
    endStealPage(m, r, reg.stolen[k + STOLEN.IDX]!);
    releaseStolen(m, mfn);
  }
}

export function isRamMfn(m: Machine, mfn: number): boolean {
  return mfn >= 0 && mfn < m.config.nr_frames;
}

export function barOf(m: Machine, mfn: number, count: number): boolean {
  return m.sabs.bars.some((b) => mfn >= b.base_mfn && mfn + count <= b.base_mfn + b.nr_pages);
}
