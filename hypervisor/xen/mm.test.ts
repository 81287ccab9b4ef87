import { describe, expect, it } from 'vitest';
import { E2BIG, EFAULT, EINVAL, ENOMEM, EPERM } from '../public/errno.js';
import { P2M } from '../public/types.js';
import { testMachine } from '../../tests/test-machine.js';
import { bufferCopy, decreaseReservation, foreignMap, populatePhysmap, removeFromPhysmap } from './memory.js';
import { p2mGet } from './p2m.js';
import { entryMfn, entryType, p2mEntry, MAX_MFN } from '../layout/p2m.js';
import { DOM, DS } from '../layout/domains.js';
import { checkFramesConserved, checkNoLeaks, checkQuiescent } from '../checker/checker.js';
import { domainDestroy } from './domain.js';
import { allocDomFrame, allocDomRun, allocHeapFrame, allocHeapRun, freeHeapFrame, getPage, putPage, relinquishFrame } from './mm.js';
import { HEAP } from '../layout/heap.js';
import type { Machine } from './machine.js';
import { PGC_allocated, PGC_count_mask, PS } from '../layout/frametable.js';

describe('p2m entry encoding', () => {
  it('round-trips mfn and type in one word, with 0 as the hole', () => {
    for (const mfn of [0, 1, 4095, MAX_MFN]) {
      for (const t of [P2M.ram_rw, P2M.mmio_direct, P2M.map_foreign, P2M.ioreq_server]) {
        const e = p2mEntry(mfn, t);
        expect(e).not.toBe(0);
        expect(entryMfn(e)).toBe(mfn);
        expect(entryType(e)).toBe(t);
      }
    }
    expect(entryType(0)).toBe(P2M.mmio_dm);
  });
});

describe('memory_op', () => {
  it('populate and balloon move frames between the heap and a domain, conserving them', () => {
    const m = testMachine({ domains: [{ memory_pages: 8, max_pages: 10, privileged: true }] });
    expect(m.dom.at(0, DOM.TOT_PAGES)).toBe(8);
    expect(populatePhysmap(m, 0, [20, 21])).toBe(2);
    // do_memory_op returns the extents done (nr_done), never an errno.
    expect(populatePhysmap(m, 0, [22])).toBe(0);
    // Like Xen, the frame is allocated before the p2m is looked at: at the
    // limit even a populated gfn is not done.
    expect(populatePhysmap(m, 0, [20])).toBe(0);
    expect(decreaseReservation(m, 0, [21])).toBe(1);
    expect(populatePhysmap(m, 0, [21])).toBe(1);
    expect(decreaseReservation(m, 0, [20, 21, 22])).toBe(2); // stops at the hole
    expect(decreaseReservation(m, 0, [500])).toBe(0);
    expect(m.dom.at(0, DOM.TOT_PAGES)).toBe(8);
    expect(checkFramesConserved(m)).toBe(true);
  });

  it('scrubs a frame before its next owner sees it', () => {
    const m = testMachine({ domains: [{ memory_pages: 4, max_pages: 8, privileged: true }] });
    const mfn = entryMfn(p2mGet(m, 0, 1));
    m.frames.i32[(mfn * 4096) / 4] = 0x5ec12e7;
    expect(decreaseReservation(m, 0, [1])).toBe(1);
    expect(populatePhysmap(m, 0, [1])).toBe(1);
    expect(entryMfn(p2mGet(m, 0, 1))).toBe(mfn); // LIFO heap: same frame back
    expect(m.frames.i32[(mfn * 4096) / 4]).toBe(0);
    expect(m.log.counts().scrubbed.violations).toBe(0);
  });

  it('with no-scrub the old data reaches the next owner and the checker fires', () => {
    const m = testMachine({ domains: [{ memory_pages: 4, max_pages: 8, privileged: true }], bugs: 'no-scrub' });
    const mfn = entryMfn(p2mGet(m, 0, 1));
    m.frames.i32[(mfn * 4096) / 4] = 0x5ec12e7;
    decreaseReservation(m, 0, [1]);
    populatePhysmap(m, 0, [1]);
    expect(m.log.counts().scrubbed.violations).toBe(1);
  });

  it('the scrub check skips only frames that never left the heap: every recycled one is read', () => {
    const m = testMachine({ domains: [{ memory_pages: 4, max_pages: 8, privileged: true }], bugs: 'no-scrub' });
    const dirty = [1, 2].map((g) => entryMfn(p2mGet(m, 0, g)));
    for (const mfn of dirty) m.frames.i32[(mfn * 4096) / 4] = 0x5ec12e7;
    expect(decreaseReservation(m, 0, [1, 2])).toBe(2);
    const before = m.log.counts().scrubbed.checks;
    // Two recycled frames (LIFO: they come back first), then one that was never handed out.
    expect(populatePhysmap(m, 0, [1, 2, 5])).toBe(3);
    expect(dirty).toContain(entryMfn(p2mGet(m, 0, 1)));
    expect(dirty).toContain(entryMfn(p2mGet(m, 0, 2)));
    expect(dirty).not.toContain(entryMfn(p2mGet(m, 0, 5)));
    expect(m.log.counts().scrubbed.checks - before).toBe(3);
    expect(m.log.counts().scrubbed.violations).toBe(2);
  });

  it('foreign map needs privilege, takes a page reference, and keeps a ballooned page alive', () => {
    const m = testMachine();
    expect(foreignMap(m, 1, 2, 3, 100)).toBe(-EPERM);
    expect(foreignMap(m, 0, 2, 3, 100)).toBe(0);
    const mfn = entryMfn(p2mGet(m, 2, 3));
    expect(entryType(p2mGet(m, 0, 100))).toBe(P2M.map_foreign);
    expect(m.ft.count(mfn)).toBe(2);
    expect(decreaseReservation(m, 2, [3])).toBe(1);
    expect(m.ft.owner(mfn)).toBe(2); // still d2's, alive by the foreign reference
    expect(removeFromPhysmap(m, 0, 100)).toBe(0);
    expect(m.ft.owner(mfn)).toBe(-1);
    checkQuiescent(m);
    expect(m.log.totalViolations()).toBe(0);
  });

  it('hypercall buffers reference their pages and refuse what is not the caller\'s RAM', () => {
    const m = testMachine();
    const scratch = new Uint8Array(8192);
    expect(bufferCopy(m, 1, 'to_guest', 2, 4000, 200, scratch)).toBe(0); // spans two pages
    expect(bufferCopy(m, 1, 'from_guest', 200, 0, 16, scratch)).toBe(-EFAULT); // a hole
    expect(foreignMap(m, 0, 1, 4, 100)).toBe(0);
    expect(bufferCopy(m, 0, 'from_guest', 100, 0, 16, scratch)).toBe(-EFAULT); // a foreign map
    expect(getPage(m, 1_000_000, 0)).toBe(false); // MMIO / outside RAM: no page_info
    const mfn = entryMfn(p2mGet(m, 1, 0));
    expect(getPage(m, mfn, 2)).toBe(false); // not the owner
    expect(getPage(m, mfn, 1)).toBe(true);
    putPage(m, mfn);
    removeFromPhysmap(m, 0, 100);
  });

  it('destroying every domain leaves nothing behind', () => {
    const m = testMachine();
    foreignMap(m, 0, 1, 4, 100);
    for (const d of [1, 2, 0]) expect(domainDestroy(m, d)).toBe(0);
    expect(checkNoLeaks(m)).toBe(true);
    expect(m.log.totalViolations()).toBe(0);
  });
});

describe('alloc_heap_pages of an aligned run (the toolstack\'s superpages)', () => {
  // alloc_domheap_pages(d, order, 0) then assign_pages: a naturally aligned run of 2^order frames off the
  // heap, owned by d with PGC_allocated and one reference each, or refused with every frame back on the heap.
  it('hands out aligned, owned, counted runs; -E2BIG and -EINVAL (dying) give every frame back; a run larger than the heap is -1', () => {
    const m = testMachine({ nr_frames: 4096, domains: [{ memory_pages: 8, max_pages: 1100, privileged: true }, { memory_pages: 8, max_pages: 300 }] });
    const free0 = m.heap.free;
    const a = allocDomRun(m, 0, 2);
    const b = allocDomRun(m, 0, 2);
    for (const base of [a, b]) {
      expect(base).toBeGreaterThanOrEqual(0);
      expect(base % 512).toBe(0);
      for (const mfn of [base, base + 1, base + 511]) {
        expect(m.ft.owner(mfn)).toBe(0);
        expect(m.ft.state(mfn)).toBe(PS.INUSE);
        expect(m.ft.countInfo(mfn)).toBe(PGC_allocated | 1);
      }
    }
    expect(Math.abs(a - b)).toBeGreaterThanOrEqual(512); // two runs, not overlapping
    expect(m.dom.at(0, DOM.TOT_PAGES)).toBe(8 + 1024);
    expect(m.heap.free).toBe(free0 - 1024);
    expect(m.heap.inflight).toBe(0);
    expect(checkFramesConserved(m)).toBe(true);
    // d1's max_pages (300) has no room for 512 more: refused, the run back on the heap, d1 unchanged.
    expect(allocDomRun(m, 1, 2)).toBe(-E2BIG);
    expect(m.dom.at(1, DOM.TOT_PAGES)).toBe(8);
    expect(m.heap.free).toBe(free0 - 1024);
    expect(m.heap.inflight).toBe(0);
    expect(checkFramesConserved(m)).toBe(true);
    // A domain being destroyed gets nothing (assign_pages refuses a dying domain).
    expect(domainDestroy(m, 1)).toBe(0);
    const freeBefore = m.heap.free;
    expect(allocDomRun(m, 1, 2)).toBe(-EINVAL);
    expect(m.heap.free).toBe(freeBefore);
    // More than the heap holds: nothing taken.
    expect(allocHeapRun(m, 8192)).toBe(-1);
    expect(m.heap.free).toBe(freeBefore);
    expect(checkFramesConserved(m)).toBe(true);
  });
});

/** The heap's stack, bottom to top (layout/heap.ts): the order frames come off it, last first. */
function stackOf(m: Machine): number[] {
  const h = m.heap.w;
  return Array.from(h.subarray(HEAP.STACK, HEAP.STACK + h[HEAP.TOP]!));
}
/** mfns hi, hi − 1, …, lo: how the stack of a new machine holds them (layout/heap.ts). */
function down(hi: number, lo: number): number[] {
  return Array.from({ length: hi - lo + 1 }, (_, i) => hi - i);
}
/** Pop `k` single frames (alloc_heap_pages of order 0), in flight with the test. */
function take(m: Machine, k: number): number[] {
  return Array.from({ length: k }, () => allocHeapFrame(m));
}
/** Dirty a frame's first word, as its last owner left it. */
function dirty(m: Machine, mfn: number): void {
  m.frames.i32[(mfn * 4096) / 4] = 0x5ec12e7;
}

describe('alloc_heap_pages / free_heap_pages of a run on a 64-frame heap (n = 8: an order-3 request)', () => {
  // xgsim's heap is a stack, not Xen's buddy free lists (page_alloc.c alloc_heap_pages / free_heap_pages):
  // what these pin is that a run handed out is aligned, free and taken whole, that every frame that ever left
  // the heap is checked as scrubbed when handed out again (free_heap_pages scrubs, alloc_heap_pages'
  // check_one_page), and that the frames a run is not taken from stay on the heap in their order.
  it('a new machine\'s aligned run below frames freed above it: what lies above moves down in order, and a freed frame is still checked as scrubbed', () => {
    const m = testMachine({ nr_frames: 64, domains: [{ memory_pages: 4, max_pages: 64, privileged: true }], bugs: 'no-scrub' });
    expect(stackOf(m)).toEqual(down(63, 4));
    // Frame 4 leaves the heap dirty and comes back unscrubbed (no-scrub): FRESH is now below it.
    expect(allocHeapFrame(m)).toBe(4);
    dirty(m, 4);
    freeHeapFrame(m, 4);
    expect(m.heap.w[HEAP.FRESH]).toBe(59);
    // The top eight (4…11) are contiguous but not aligned: not a run. The lowest aligned run of fresh
    // frames is 8…15 (stack positions 48…55); the four entries above it (7, 6, 5, 4) move down by 8.
    expect(allocHeapRun(m, 8)).toBe(8);
    expect(stackOf(m)).toEqual([...down(63, 16), 7, 6, 5, 4]);
    expect(m.heap.w[HEAP.FRESH]).toBe(48);
    expect(m.heap.free).toBe(52);
    expect(m.heap.inflight).toBe(8);
    for (let mfn = 8; mfn < 16; mfn++) {
      expect(m.ft.state(mfn)).toBe(PS.INUSE);
      expect(m.ft.owner(mfn)).toBe(-1);
      expect(m.ft.countInfo(mfn)).toBe(0);
    }
    // The fresh frames of the run hold zeros: no violation. The moved entries come off in their old order,
    // and the freed frame 4 among them is read (it is not fresh): the no-scrub bug is reported.
    expect(m.log.counts().scrubbed.violations).toBe(0);
    const checks = m.log.counts().scrubbed.checks;
    expect(take(m, 5)).toEqual([4, 5, 6, 7, 16]);
    expect(m.log.counts().scrubbed.checks - checks).toBe(5);
    expect(m.log.counts().scrubbed.violations).toBe(1);
    expect(m.log.records().find((r) => r.invariant === 'scrubbed')!.text).toBe('mfn 4 handed out unscrubbed');
  });

  it('alloc_heap_pages of one frame: an empty heap is -1 (alloc_domheap_page: -ENOMEM); a fresh frame taken once is read when it comes back', () => {
    const m = testMachine({ nr_frames: 64, domains: [{ memory_pages: 4, max_pages: 64, privileged: true }], bugs: 'no-scrub' });
    // 4 is fresh: FRESH goes down to its position, so that once freed (dirty, no-scrub) it is read when handed out.
    expect(allocHeapFrame(m)).toBe(4);
    expect(m.heap.w[HEAP.FRESH]).toBe(59);
    dirty(m, 4);
    freeHeapFrame(m, 4);
    expect(allocHeapFrame(m)).toBe(4);
    expect(m.log.counts().scrubbed.violations).toBe(1);
    take(m, 59);
    expect(m.heap.free).toBe(0);
    const inflight = m.heap.inflight;
    expect(allocHeapFrame(m)).toBe(-1);
    expect(allocDomFrame(m, 0)).toBe(-ENOMEM);
    expect(allocDomRun(m, 0, 2)).toBe(-ENOMEM);
    expect(m.heap.inflight).toBe(inflight);
    expect(m.heap.w[HEAP.TOP]).toBe(0);
  });

  it('with checking off nothing is read (the benchmarks\' machine); a frame on the heap that is not free, or counted, is a hypervisor bug', () => {
    const off = testMachine({ nr_frames: 64, domains: [{ memory_pages: 4, max_pages: 64, privileged: true }], checking: false });
    const x = allocHeapFrame(off);
    freeHeapFrame(off, x);
    expect(allocHeapFrame(off)).toBe(x);
    expect(off.log.counts().scrubbed.checks).toBe(0);
    // check_one_page / the buddy's PGC_state_free check: a frame handed out from the heap must be free, count 0.
    const m = testMachine({ nr_frames: 64, domains: [{ memory_pages: 4, max_pages: 64, privileged: true }] });
    m.ft.setState(4, PS.INUSE);
    expect(() => allocHeapFrame(m)).toThrow(/alloc: mfn 4 on the heap is not free/);
    m.ft.setState(5, PS.FREE);
    m.ft.storeCount(5, 1);
    expect(() => allocHeapFrame(m)).toThrow(/alloc: free mfn 5 has count_info 1/);
  });

  it('a run freed whole, highest frame first, is the next run handed out, each of its frames checked as scrubbed; frames freed beneath it stay checked too', () => {
    const m = testMachine({ nr_frames: 64, domains: [{ memory_pages: 4, max_pages: 64, privileged: true }], bugs: 'no-scrub' });
    expect(allocHeapRun(m, 8)).toBe(8);
    expect(allocHeapFrame(m)).toBe(4);
    for (let mfn = 4; mfn < 16; mfn++) dirty(m, mfn);
    // Freed: 4, then the run from its highest frame down (domainDestroy's order), so 8 is on top.
    freeHeapFrame(m, 4);
    for (let mfn = 15; mfn >= 8; mfn--) freeHeapFrame(m, mfn);
    expect(stackOf(m)).toEqual([...down(63, 16), 7, 6, 5, 4, ...down(15, 8)]);
    const fresh = m.heap.w[HEAP.FRESH];
    expect(fresh).toBe(48);
    expect(m.heap.inflight).toBe(0);
    const before = m.log.counts().scrubbed;
    expect(allocHeapRun(m, 8)).toBe(8);
    // Not fresh: every frame read, and the eight dirty ones reported.
    expect(m.log.counts().scrubbed.checks - before.checks).toBe(8);
    expect(m.log.counts().scrubbed.violations - before.violations).toBe(8);
    // FRESH never rises: frame 4, freed above it, is still read when it is handed out.
    expect(m.heap.w[HEAP.FRESH]).toBe(fresh);
    expect(stackOf(m)).toEqual([...down(63, 16), 7, 6, 5, 4]);
    expect(allocHeapFrame(m)).toBe(4);
    expect(m.log.counts().scrubbed.violations - before.violations).toBe(9);
  });

  it('a new machine\'s first run off the top of the stack: FRESH goes down past it, so a frame of it freed and handed out again is read', () => {
    const m = testMachine({ nr_frames: 64, domains: [{ memory_pages: 8, max_pages: 64, privileged: true }], bugs: 'no-scrub' });
    // The top eight are 8…15: an aligned run, all fresh.
    const before = m.log.counts().scrubbed;
    expect(allocHeapRun(m, 8)).toBe(8);
    expect(m.log.counts().scrubbed.violations).toBe(before.violations);
    expect(m.heap.w[HEAP.FRESH]).toBe(48);
    expect(stackOf(m)).toEqual(down(63, 16));
    dirty(m, 8);
    freeHeapFrame(m, 8);
    expect(allocHeapFrame(m)).toBe(8);
    expect(m.log.counts().scrubbed.violations - before.violations).toBe(1);
  });

  it('moves at most 2n entries: 16 above the run is taken, 17 is refused and the heap is left as it was', () => {
    // d0 has mfn 0; 1…16 are taken, then 1…j freed (in that order: the top eight, 2…9 or 3…10, are no run).
    // The lowest aligned fresh run is 24…31; above it sit 7 fresh frames (17…23) and the j freed ones.
    for (const j of [9, 10]) {
      const m = testMachine({ nr_frames: 64, domains: [{ memory_pages: 1, max_pages: 64, privileged: true }] });
      expect(take(m, 16)).toEqual(down(16, 1).reverse());
      for (let mfn = 1; mfn <= j; mfn++) freeHeapFrame(m, mfn);
      const stack = stackOf(m);
      const free = m.heap.free;
      if (j === 9) {
        expect(allocHeapRun(m, 8)).toBe(24);
        expect(stackOf(m)).toEqual([...down(63, 32), ...down(23, 17), ...down(9, 1).reverse()]);
        expect(m.heap.w[HEAP.FRESH]).toBe(32);
        expect(m.heap.free).toBe(free - 8);
      } else {
        expect(allocHeapRun(m, 8)).toBe(-1);
        expect(stackOf(m)).toEqual(stack);
        expect(m.heap.w[HEAP.FRESH]).toBe(47);
        expect(m.heap.free).toBe(free);
        expect(m.heap.inflight).toBe(16 - j);
      }
    }
  });

  it('the last runs of RAM: the top n entries when exactly n are left, the run ending at the last frame, none past it', () => {
    // Exactly 8 left on the heap, 56…63: one run, the whole stack.
    const a = testMachine({ nr_frames: 64, domains: [{ memory_pages: 1, max_pages: 64, privileged: true }] });
    take(a, 55);
    expect(stackOf(a)).toEqual(down(63, 56));
    expect(allocHeapRun(a, 8)).toBe(56);
    expect(a.heap.free).toBe(0);
    expect(allocHeapRun(a, 8)).toBe(-1);
    // Ten left (54…63), not a run at the top: the fresh run 56…63 ends at the last frame (stack position 0).
    const b = testMachine({ nr_frames: 64, domains: [{ memory_pages: 1, max_pages: 64, privileged: true }] });
    const taken = take(b, 53);
    expect(allocHeapRun(b, 8)).toBe(56);
    expect(stackOf(b)).toEqual([55, 54]);
    expect(b.heap.w[HEAP.FRESH]).toBe(0);
    // No fresh frame is left for a run: eight freed frames that are no run are not one either.
    for (const mfn of taken.slice(0, 8)) freeHeapFrame(b, mfn);
    const stack = stackOf(b);
    expect(allocHeapRun(b, 8)).toBe(-1);
    expect(stackOf(b)).toEqual(stack);
    expect(b.heap.free).toBe(10);
  });

  it('eight frames at the top with an aligned lowest frame but a gap (8…14 and 16) are no run', () => {
    const m = testMachine({ nr_frames: 64, domains: [{ memory_pages: 8, max_pages: 64, privileged: true }] });
    expect(take(m, 9)).toEqual(down(16, 8).reverse());
    freeHeapFrame(m, 16);
    for (let mfn = 14; mfn >= 8; mfn--) freeHeapFrame(m, mfn);
    // 15 is still in flight: the run is the fresh 24…31, with 15 entries above it moved down.
    expect(allocHeapRun(m, 8)).toBe(24);
    expect(stackOf(m)).toEqual([...down(63, 32), ...down(23, 17), 16, ...down(14, 8)]);
  });
});

describe('assign_pages, get_page / put_page and the allocation reference', () => {
  it('assign_pages takes a run that fills max_pages exactly, and gives a domain still being created its pages (it refuses only a dying one)', () => {
    // assign_pages (page_alloc.c): -E2BIG only when tot_pages + nr > max_pages; -EINVAL only when d->is_dying.
    const m = testMachine({ nr_frames: 2048, domains: [{ memory_pages: 8, max_pages: 520, privileged: true }, { memory_pages: 8, max_pages: 530 }] });
    const base = allocDomRun(m, 0, 2);
    expect(base % 512).toBe(0);
    expect(m.dom.at(0, DOM.TOT_PAGES)).toBe(520);
    expect(allocDomFrame(m, 0)).toBe(-E2BIG);
    m.dom.set(1, DOM.STATE, DS.CREATING);
    const run = allocDomRun(m, 1, 2);
    expect(run % 512).toBe(0);
    expect(m.ft.owner(run + 511)).toBe(1);
    const one = allocDomFrame(m, 1);
    expect(one).toBeGreaterThanOrEqual(0);
    expect(m.ft.owner(one)).toBe(1);
    expect(m.ft.countInfo(one)).toBe(PGC_allocated | 1);
    expect(m.dom.at(1, DOM.TOT_PAGES)).toBe(8 + 512 + 1);
    m.dom.set(1, DOM.STATE, DS.RUNNING);
    expect(m.heap.inflight).toBe(0);
    expect(checkFramesConserved(m)).toBe(true);
  });

  it('a refused run goes back whole, highest frame first: the next request is handed the same run off the top of the heap', () => {
    // alloc_domheap_pages: assign_pages failing frees the extent (free_heap_pages of the same order), so it is
    // there for the next allocation of that order.
    const m = testMachine({ nr_frames: 2048, domains: [{ memory_pages: 8, max_pages: 1024, privileged: true }, { memory_pages: 8, max_pages: 300 }] });
    const free = m.heap.free;
    expect(allocDomRun(m, 1, 2)).toBe(-E2BIG);
    const h = m.heap.w;
    const top = h[HEAP.TOP]!;
    expect(m.heap.free).toBe(free);
    expect(Array.from(h.subarray(HEAP.STACK + top - 512, HEAP.STACK + top))).toEqual(down(1023, 512));
    expect(allocDomRun(m, 0, 2)).toBe(512);
    expect(m.heap.free).toBe(free - 512);
    expect(m.heap.inflight).toBe(0);
    expect(checkFramesConserved(m)).toBe(true);
  });

  it('get_page refuses a count that would overflow, a page of another owner and a free page, and leaves each count as it was', () => {
    // page_get_owner_and_reference (x86 mm.c): no reference when (count + 1) & PGC_count_mask <= 1, i.e. from
    // 0 (being freed) or at the maximum; get_page drops the reference again when the owner is not d.
    const m = testMachine({ nr_frames: 256, domains: [{ memory_pages: 4, max_pages: 8, privileged: true }, { memory_pages: 4 }] });
    const mfn = entryMfn(p2mGet(m, 1, 0));
    expect(m.ft.countInfo(mfn)).toBe(PGC_allocated | 1);
    expect(getPage(m, mfn, 0)).toBe(false);
    expect(m.ft.countInfo(mfn)).toBe(PGC_allocated | 1);
    m.ft.storeCount(mfn, PGC_allocated | (PGC_count_mask - 1));
    expect(getPage(m, mfn, 1)).toBe(true);
    expect(m.ft.countInfo(mfn)).toBe(PGC_allocated | PGC_count_mask);
    expect(getPage(m, mfn, 1)).toBe(false);
    expect(m.ft.countInfo(mfn)).toBe(PGC_allocated | PGC_count_mask);
    m.ft.storeCount(mfn, PGC_allocated | 1);
    const free = allocHeapFrame(m);
    expect(getPage(m, free, -1)).toBe(false);
    expect(m.ft.countInfo(free)).toBe(0);
    freeHeapFrame(m, free);
    expect(m.log.totalViolations()).toBe(0);
  });

  it('put_page frees the page on its last reference only; one with count 0 is a refcount violation that changes nothing', () => {
    // put_page (x86 mm.c): free_domheap_page when the count reaches 0, never below.
    const m = testMachine({ nr_frames: 256, domains: [{ memory_pages: 4, max_pages: 8, privileged: true }] });
    const mfn = entryMfn(p2mGet(m, 0, 0));
    expect(getPage(m, mfn, 0)).toBe(true);
    putPage(m, mfn);
    expect(m.ft.countInfo(mfn)).toBe(PGC_allocated | 1);
    expect(m.ft.owner(mfn)).toBe(0);
    expect(m.ft.state(mfn)).toBe(PS.INUSE);
    const free = allocHeapFrame(m);
    const frees = m.ft.frees(free);
    putPage(m, free);
    expect(m.ft.countInfo(free)).toBe(0);
    expect(m.ft.state(free)).toBe(PS.INUSE);
    expect(m.ft.frees(free)).toBe(frees);
    expect(m.log.counts().refcounts.violations).toBe(1);
    expect(m.log.records().find((r) => r.invariant === 'refcounts')!.text).toBe(`put_page on mfn ${free} with count 0`);
    freeHeapFrame(m, free);
  });

  it('the allocation reference is dropped once: a second relinquish is refused and keeps the other references; the last put frees the page to the heap', () => {
    // guest_remove_page / relinquish_memory: test_and_clear_bit(_PGC_allocated) then put_page; put_page's last
    // reference frees it (free_domheap_page: off d's tot_pages, scrubbed, back on the heap).
    const m = testMachine({ nr_frames: 256, domains: [{ memory_pages: 4, max_pages: 8, privileged: true }] });
    const mfn = entryMfn(p2mGet(m, 0, 2));
    expect(getPage(m, mfn, 0)).toBe(true);
    dirty(m, mfn);
    expect(relinquishFrame(m, mfn)).toBe(true);
    expect(m.ft.countInfo(mfn)).toBe(1);
    expect(relinquishFrame(m, mfn)).toBe(false);
    expect(m.ft.countInfo(mfn)).toBe(1);
    expect(m.ft.owner(mfn)).toBe(0);
    expect(m.dom.at(0, DOM.TOT_PAGES)).toBe(4);
    const free = m.heap.free;
    const frees = m.ft.frees(mfn);
    putPage(m, mfn);
    expect(m.ft.owner(mfn)).toBe(-1);
    expect(m.ft.state(mfn)).toBe(PS.FREE);
    expect(m.ft.frees(mfn)).toBe(frees + 1);
    expect(m.frames.isScrubbed(mfn)).toBe(true);
    expect(m.dom.at(0, DOM.TOT_PAGES)).toBe(3);
    expect(m.heap.free).toBe(free + 1);
    expect(m.heap.inflight).toBe(0);
    expect(stackOf(m).at(-1)).toBe(mfn);
    expect(m.reach.may(mfn, 0)).not.toBe(true);
    expect(checkFramesConserved(m)).toBe(true);
  });

  it('assign_pages refuses a dying domain with -EINVAL: the frame goes back to the heap', () => {
    const m = testMachine({ nr_frames: 256, domains: [{ memory_pages: 4, max_pages: 8, privileged: true }, { memory_pages: 4, max_pages: 8 }] });
    expect(domainDestroy(m, 1)).toBe(0);
    const free = m.heap.free;
    expect(allocDomFrame(m, 1)).toBe(-EINVAL);
    expect(m.heap.free).toBe(free);
    expect(m.heap.inflight).toBe(0);
    expect(stackOf(m).at(-1)).toBe(allocHeapFrame(m));
  });

  it('free_domheap_page of a page with no owner, or that takes tot_pages below zero, is a hypervisor bug', () => {
    const m = testMachine({ nr_frames: 256, domains: [{ memory_pages: 4, max_pages: 8, privileged: true }] });
    const anon = allocHeapFrame(m);
    m.ft.storeCount(anon, 1);
    expect(() => putPage(m, anon)).toThrow(`free_domheap_page: mfn ${anon} has no owner`);
    const mfn = entryMfn(p2mGet(m, 0, 0));
    m.dom.set(0, DOM.TOT_PAGES, 0);
    expect(() => relinquishFrame(m, mfn)).toThrow('tot_pages of d0 below zero');
  });

  it('free_heap_pages: the frame\'s type count is cleared, an owned frame or a full heap is a hypervisor bug', () => {
    const m = testMachine({ nr_frames: 64, domains: [{ memory_pages: 4, max_pages: 8, privileged: true }] });
    const mfn = allocHeapFrame(m);
    m.ft.addType(mfn, 3);
    freeHeapFrame(m, mfn);
    expect(m.ft.typeCount(mfn)).toBe(0);
    expect(m.ft.state(mfn)).toBe(PS.FREE);
    const owned = entryMfn(p2mGet(m, 0, 0));
    expect(() => freeHeapFrame(m, owned)).toThrow(/still has an owner/);
    // A double free when every frame is on the heap: the stack would overflow (Xen's free_heap_pages
    // ASSERTs the buddy it merges with is free; xgsim's stack can only notice when it is full).
    const empty = testMachine({ nr_frames: 64, domains: [] });
    const x = allocHeapFrame(empty);
    freeHeapFrame(empty, x);
    expect(empty.heap.free).toBe(64);
    expect(() => freeHeapFrame(empty, x)).toThrow(/heap overflow/);
  });
});
