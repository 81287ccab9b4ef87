/**
 * What the four primitives share: the authority and count checks common to
 * all of them (docs/primitives.md, common checks 1–3), the two-domain lock
 * helpers that keep the documented order (docs/locks.md), and the registry
 * look-ups. Lock order of every primitive (docs/locks.md): domctl (BAR Maps
 * only, for iomem_caps) → registry → grant(fe) (Steal only) → p2m of the
 * lower domid → p2m of the higher → page_alloc (lower, higher) → heap.
 */
import { MAX_MAPPINGS, MAX_PAGES_PER_OP } from '../../layout/constants.js';
import { DOM, DS } from '../../layout/domains.js';
import { KIND, REC, Registry } from './registry.js';
import type { DmOpResult } from '../../xen/design.js';
import { type Machine } from '../../xen/machine.js';
import { p2mLock, p2mUnlock } from '../../xen/p2m.js';
import { EINVAL, EPERM, ESRCH } from '../../public/errno.js';


export const ok = (id = 0): DmOpResult => ({ rc: 0, index: -1, id });
export const rcOf = (r: DmOpResult): number => r.rc;
export const fail = (rc: number, index = -1): DmOpResult => ({ rc, index, id: 0 });

const views = new WeakMap<Machine, Registry>();

/** This thread's view of the machine's mapping registry (the design's region, Machine.sabs.design). */
export function registryOf(m: Machine): Registry {
  let r = views.get(m);
  if (r === undefined) {
    r = new Registry(m.sabs.design);
    views.set(m, r);
  }
  return r;
}

// ---------------------------------------------------------------- helpers

export function authority(m: Machine, be: number, fe: number): number {
  if (!Number.isInteger(fe) || fe < 0 || fe >= m.nd || m.dom.state(fe) !== DS.RUNNING) return -ESRCH;
  // A backend that crashed or is dying makes no new mappings (its pages would be stranded).
  if (m.dom.state(be) !== DS.RUNNING) return -ESRCH;
  if (be === fe) return -EINVAL;
  if (m.dom.at(fe, DOM.BACKEND) === be + 1 || m.dom.at(be, DOM.PRIVILEGED) !== 0) return 0;
  return -EPERM;
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

/** The live mapping record that put frontend gfn (fe, gfn) there, or -1. Registry lock held. */
export function recordAt(m: Machine, fe: number, gfn: number): number {
  const reg = registryOf(m);
  for (let r = 0; r < MAX_MAPPINGS; r++) {
    if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL || reg.at(r, REC.FRONTEND) !== fe) continue;
    const i = gfn - reg.at(r, REC.FE_GFN);
    if (i >= 0 && i < reg.at(r, REC.COUNT) && reg.live(r, i)) return r;
  }
  return -1;
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
  for (let r = 0; r < MAX_MAPPINGS; r++) {
    const i = stealIndex(m, r, be, gfn);
    if (i >= 0) return [r, i];
  }
  return [-1, -1];
}

export function isRamMfn(m: Machine, mfn: number): boolean {
  return mfn >= 0 && mfn < m.config.nr_frames;
}

export function barOf(m: Machine, mfn: number, count: number): boolean {
  return m.sabs.bars.some((b) => mfn >= b.base_mfn && mfn + count <= b.base_mfn + b.nr_pages);
}
