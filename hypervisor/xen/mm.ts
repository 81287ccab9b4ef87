/**
 * Page allocation and page references (xen/common/page_alloc.c,
 * xen/arch/x86/mm.c get_page/put_page).
 *
 * Frame life: FREE (on the heap, scrubbed) → INUSE (owned, count ≥ 1 with
 * PGC_allocated) → FREEING (count reached 0: leaving its owner, being
 * scrubbed) → FREE. A count is never raised from 0, so a page that started
 * to be freed cannot be resurrected by a racing get_page.
 */
import { REACH } from '../layout/reach.js';
import { E2BIG, ENOMEM, ESRCH } from '../public/errno.js';
import { BUGS } from './buggify.js';
import { DOM, DS } from '../layout/domains.js';
import { FT, PGC_allocated, PGC_count_mask, PS } from '../layout/frametable.js';
import { HEAP } from '../layout/heap.js';
import { BUG_ON } from '../layout/region.js';
import { GLOBAL_LOCK, type Machine } from './machine.js';

/** Pop a scrubbed frame off the heap, or -1. The frame is counted in flight until assigned. */
export function allocHeapFrame(m: Machine): number {
  const h = m.heap.w;
  m.lock(GLOBAL_LOCK.HEAP, 'mm.alloc_heap_pages');
  const top = h[HEAP.TOP] ?? 0;
  if (top === 0) {
    m.unlock(GLOBAL_LOCK.HEAP);
    return -1;
  }
  const mfn = h[HEAP.STACK + top - 1] ?? -1;
  // Below FRESH the stack still holds the frames of a new machine (layout/heap.ts).
  const fresh = top - 1 < (h[HEAP.FRESH] ?? 0);
  if (fresh) h[HEAP.FRESH] = top - 1;
  h[HEAP.TOP] = top - 1;
  Atomics.store(h, HEAP.FREE, top - 1);
  Atomics.add(h, HEAP.INFLIGHT, 1);
  m.unlock(GLOBAL_LOCK.HEAP);
  BUG_ON(m.ft.state(mfn) !== PS.FREE, `alloc: mfn ${mfn} on the heap is not free`);
  BUG_ON(m.ft.countInfo(mfn) !== 0, `alloc: free mfn ${mfn} has count_info ${m.ft.countInfo(mfn)}`);
  if (m.checking) {
    // Invariant 9: a frame handed to a new owner holds no one's old data.
    // A frame that has never left the heap was never owned, so it still
    // holds the zeros the SharedArrayBuffer was created with: reading it
    // would prove nothing and would cost populate a pass over all of RAM
    // (a 1 GiB boot spent 0.4 s here). Every frame that was ever freed —
    // scrubbed or, under the no-scrub bug, not — is read.
    m.log.checked('scrubbed');
    if (!fresh && !m.frames.isScrubbed(mfn)) m.log.violated('scrubbed', `mfn ${mfn} handed out unscrubbed`);
  }
  m.ft.setState(mfn, PS.INUSE);
  return mfn;
}

/** Push an anonymous in-flight frame back on the heap, scrubbing it first. */
export function freeHeapFrame(m: Machine, mfn: number): void {
  BUG_ON(m.ft.owner(mfn) !== -1, `free: mfn ${mfn} still has an owner`);
  if (!m.control.buggy(BUGS['no-scrub'])) m.frames.scrub(mfn);
  m.ft.storeCount(mfn, 0);
  m.ft.w[mfn * FT.WORDS + FT.TYPE] = 0;
  m.ft.countFree(mfn);
  m.ft.setState(mfn, PS.FREE);
  const h = m.heap.w;
  m.lock(GLOBAL_LOCK.HEAP, 'mm.free_heap_pages');
  const top = h[HEAP.TOP] ?? 0;
  BUG_ON(top >= m.heap.nr_frames, 'free: heap overflow (double free?)');
  h[HEAP.STACK + top] = mfn;
  h[HEAP.TOP] = top + 1;
  Atomics.store(h, HEAP.FREE, top + 1);
  Atomics.sub(h, HEAP.INFLIGHT, 1);
  m.unlock(GLOBAL_LOCK.HEAP);
}

/**
 * Give an in-flight frame to domain d (assign_pages): owner, PGC_allocated
 * with its reference, tot_pages + 1. Fails -E2BIG over max_pages, -ESRCH if
 * d is not alive. On failure the frame stays in flight with the caller.
 */
export function assignFrame(m: Machine, d: number, mfn: number): number {
  const lk = m.dom.at(d, DOM.LOCK_PAGE_ALLOC);
  m.lock(lk, 'mm.assign_pages', d);
  const st = m.dom.state(d);
  if (st !== DS.RUNNING && st !== DS.CREATING) {
    m.unlock(lk);
    return -ESRCH;
  }
  const tot = m.dom.at(d, DOM.TOT_PAGES);
  if (tot >= m.dom.at(d, DOM.MAX_PAGES)) {
    m.unlock(lk);
    return -E2BIG;
  }
  // The right first: the caller publishes the page in d's p2m after this.
  m.reach.grant(mfn, d, REACH.OWNER);
  m.ft.setOwner(mfn, d);
  m.ft.storeCount(mfn, PGC_allocated | 1);
  m.dom.set(d, DOM.TOT_PAGES, tot + 1);
  Atomics.sub(m.heap.w, HEAP.INFLIGHT, 1);
  m.unlock(lk);
  return 0;
}

/** alloc_domheap_page: a fresh scrubbed frame owned by d, or a negative errno. */
export function allocDomFrame(m: Machine, d: number): number {
  const mfn = allocHeapFrame(m);
  if (mfn < 0) return -ENOMEM;
  const rc = assignFrame(m, d, mfn);
  if (rc < 0) {
    m.ft.setOwner(mfn, -1);
    freeHeapFrame(m, mfn);
    return rc;
  }
  return mfn;
}

/**
 * get_page: take a general reference on a RAM frame owned by d. Fails for
 * MMIO (no page_info), for a page being freed (count 0) and for a page of
 * another owner.
 */
export function getPage(m: Machine, mfn: number, d: number): boolean {
  if (!m.ft.isRam(mfn)) return false;
  for (;;) {
    const x = m.ft.countInfo(mfn);
    const n = x & PGC_count_mask;
    if (n === 0 || n === PGC_count_mask) return false;
    if (m.ft.casCount(mfn, x, x + 1)) break;
  }
  if (m.ft.owner(mfn) !== d) {
    putPage(m, mfn);
    return false;
  }
  return true;
}

/** put_page: drop a reference; the last one frees the frame back to the heap. */
export function putPage(m: Machine, mfn: number): void {
  for (;;) {
    const x = m.ft.countInfo(mfn);
    const n = x & PGC_count_mask;
    if (n === 0) {
      m.log.violated('refcounts', `put_page on mfn ${mfn} with count 0`);
      return;
    }
    if (m.ft.casCount(mfn, x, x - 1)) {
      if (n === 1) freeDomFrame(m, mfn);
      return;
    }
  }
}

/**
 * Drop the owner's allocation reference (the p2m no longer holds the page):
 * test_and_clear PGC_allocated then put_page, as guest_remove_page does.
 */
export function relinquishFrame(m: Machine, mfn: number): boolean {
  for (;;) {
    const x = m.ft.countInfo(mfn);
    if ((x & PGC_allocated) === 0) return false;
    if (m.ft.casCount(mfn, x, x & ~PGC_allocated)) break;
  }
  putPage(m, mfn);
  return true;
}

/** free_domheap_page: the frame's count reached zero. */
function freeDomFrame(m: Machine, mfn: number): void {
  m.ft.setState(mfn, PS.FREEING);
  const d = m.ft.owner(mfn);
  BUG_ON(d < 0, `free_domheap_page: mfn ${mfn} has no owner`);
  const lk = m.dom.at(d, DOM.LOCK_PAGE_ALLOC);
  m.lock(lk, 'mm.free_domheap_pages', d);
  const tot = m.dom.add(d, DOM.TOT_PAGES, -1);
  Atomics.add(m.heap.w, HEAP.INFLIGHT, 1);
  m.ft.setOwner(mfn, -1);
  m.reach.release(mfn, d, REACH.OWNER);
  m.unlock(lk);
  BUG_ON(tot < 0, `tot_pages of d${d} below zero`);
  freeHeapFrame(m, mfn);
  // The last page of a dying domain lets its slot go (Xen: drop_dom_ref).
  if (tot === 0) maybeReapDomain(m, d);
}

/** Hook set by domain.ts (breaks an import cycle). */
let reap: (m: Machine, d: number) => void = () => {};
export function setReapHook(fn: (m: Machine, d: number) => void): void {
  reap = fn;
}
function maybeReapDomain(m: Machine, d: number): void {
  reap(m, d);
}
