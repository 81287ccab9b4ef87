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
import { E2BIG, EINVAL, ENOMEM } from '../public/errno.js';
import { BUGS } from './buggify.js';
import { DOM, DS } from '../layout/domains.js';
import { FT, PGC_allocated, PGC_count_mask, PS } from '../layout/frametable.js';
import { HEAP } from '../layout/heap.js';
import { BUG, BUG_ON } from '../layout/region.js';
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
  takeFrame(m, mfn, fresh);
  return mfn;
}

/** Push an anonymous in-flight frame back on the heap, scrubbing it first. */
export function freeHeapFrame(m: Machine, mfn: number): void {
  if (m.ft.owner(mfn) !== -1) BUG(`free: mfn ${mfn} still has an owner`);
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
 * with its reference, tot_pages + 1. Fails -E2BIG over max_pages, -EINVAL if
 * d is not alive. On failure the frame stays in flight with the caller.
 */
export function assignFrame(m: Machine, d: number, mfn: number): number {
  const lk = m.dom.at(d, DOM.LOCK_PAGE_ALLOC);
  m.lock(lk, 'mm.assign_pages', d);
  const st = m.dom.state(d);
  if (st !== DS.RUNNING && st !== DS.CREATING) {
    m.unlock(lk);
    // assign_pages: a dying domain gets no page, -EINVAL.
    return -EINVAL;
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
 * Take an aligned run of `n` free frames off the heap (alloc_heap_pages of
 * order log2 n), or −1. xgsim's heap is a stack, not Xen's buddy lists, so
 * a run is found in two places only: the top n entries of the stack (a run
 * freed whole, highest frame first, as domain teardown frees a superpage),
 * or the frames a new machine started with (below FRESH, in order), taking
 * the lowest aligned run there when fewer than 2n entries sit above it
 * (those move down by n; the fresh frames among them count as used, and
 * are checked as scrubbed when handed out — they are zeros). Anywhere else
 * a run may exist but is not looked for: the caller falls back to 4 KiB.
 * The frames are in flight, as allocHeapFrame leaves one.
 */
export function allocHeapRun(m: Machine, n: number): number {
  const h = m.heap.w;
  m.lock(GLOBAL_LOCK.HEAP, 'mm.alloc_heap_pages');
  let base: number;
  let fresh: boolean;
  try {
    const top = h[HEAP.TOP]!;
    const freshTop = h[HEAP.FRESH]!;
    if (top < n) return -1;
    base = topRun(h, top, n);
    if (base >= 0) {
      // All fresh when nothing freed sits above FRESH (a new machine's first run).
      fresh = top === freshTop;
      if (top - n < freshTop) h[HEAP.FRESH] = top - n;
    } else {
      // Fresh frames: stack[i] = nr − 1 − i for i < FRESH, so mfns nr − FRESH … nr − 1.
      const nr = m.heap.nr_frames;
      const a = Math.ceil((nr - freshTop) / n) * n;
      const q = nr - a - n; // stack positions q … q + n − 1 hold a + n − 1 … a
      // q < 0: the run would end past the last frame (a + n > nr).
      if (q < 0 || top - (q + n) > 2 * n) return -1;
      h.copyWithin(HEAP.STACK + q, HEAP.STACK + q + n, HEAP.STACK + top);
      h[HEAP.FRESH] = q;
      base = a;
      fresh = true;
    }
    h[HEAP.TOP] = top - n;
    Atomics.store(h, HEAP.FREE, top - n);
    Atomics.add(h, HEAP.INFLIGHT, n);
  } finally {
    m.unlock(GLOBAL_LOCK.HEAP);
  }
  for (let i = 0; i < n; i++) takeFrame(m, base + i, fresh);
  return base;
}

/** The lowest frame of an aligned run of n filling stack positions top − n … top − 1, or −1. */
function topRun(h: Int32Array, top: number, n: number): number {
  let lo = Infinity;
  let hi = -1;
  for (let i = top - n; i < top; i++) {
    const f = h[HEAP.STACK + i]!;
    lo = Math.min(lo, f);
    hi = Math.max(hi, f);
  }
  // Free frames are distinct, so n of them spanning n values are the run.
  return lo % n === 0 && hi - lo === n - 1 ? lo : -1;
}

/**
 * A frame just taken off the heap (the heap lock dropped): free, scrubbed,
 * now in use. Invariant 9: a frame handed to a new owner holds no one's
 * old data. A frame that has never left the heap (`fresh`) was never
 * owned, so it still holds the zeros the SharedArrayBuffer was created
 * with: reading it would prove nothing and would cost populate a pass
 * over all of RAM (a 1 GiB boot spent 0.4 s here). Every frame that was
 * ever freed — scrubbed or, under the no-scrub bug, not — is read.
 */
function takeFrame(m: Machine, mfn: number, fresh: boolean): void {
  if (m.ft.state(mfn) !== PS.FREE) BUG(`alloc: mfn ${mfn} on the heap is not free`);
  if (m.ft.countInfo(mfn) !== 0) BUG(`alloc: free mfn ${mfn} has count_info ${m.ft.countInfo(mfn)}`);
  if (m.checking) {
    m.log.checked('scrubbed');
    if (!fresh && !m.frames.isScrubbed(mfn)) m.log.violated('scrubbed', `mfn ${mfn} handed out unscrubbed`);
  }
  m.ft.setState(mfn, PS.INUSE);
}

/**
 * alloc_domheap_pages of a superpage's order for d: an aligned run of
 * 512^(level−1) frames, all assigned to d at once (assign_pages checks the
 * whole extent against max_pages). The run's first frame, or −ENOMEM (no
 * run: the caller falls back to smaller pages), −E2BIG, −EINVAL (not alive).
 */
export function allocDomRun(m: Machine, d: number, level: number): number {
  const n = 512 ** (level - 1);
  const base = allocHeapRun(m, n);
  if (base < 0) return -ENOMEM;
  const lk = m.dom.at(d, DOM.LOCK_PAGE_ALLOC);
  m.lock(lk, 'mm.assign_pages', d);
  const st = m.dom.state(d);
  const tot = m.dom.at(d, DOM.TOT_PAGES);
  const rc = st !== DS.RUNNING && st !== DS.CREATING ? -EINVAL : tot + n > m.dom.at(d, DOM.MAX_PAGES) ? -E2BIG : 0;
  if (rc === 0) {
    for (let i = 0; i < n; i++) {
      m.reach.grant(base + i, d, REACH.OWNER);
      m.ft.setOwner(base + i, d);
      m.ft.storeCount(base + i, PGC_allocated | 1);
    }
    m.dom.set(d, DOM.TOT_PAGES, tot + n);
    Atomics.sub(m.heap.w, HEAP.INFLIGHT, n);
  }
  m.unlock(lk);
  if (rc < 0) for (let i = n - 1; i >= 0; i--) freeHeapFrame(m, base + i);
  return rc < 0 ? rc : base;
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
  if (d < 0) BUG(`free_domheap_page: mfn ${mfn} has no owner`);
  const lk = m.dom.at(d, DOM.LOCK_PAGE_ALLOC);
  m.lock(lk, 'mm.free_domheap_pages', d);
  const tot = m.dom.add(d, DOM.TOT_PAGES, -1);
  Atomics.add(m.heap.w, HEAP.INFLIGHT, 1);
  m.ft.setOwner(mfn, -1);
  m.reach.release(mfn, d, REACH.OWNER);
  m.unlock(lk);
  if (tot < 0) BUG(`tot_pages of d${d} below zero`);
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
