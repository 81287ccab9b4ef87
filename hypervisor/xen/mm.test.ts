import { describe, expect, it } from 'vitest';
import { E2BIG, EFAULT, EPERM, ESRCH } from '../public/errno.js';
import { P2M } from '../public/types.js';
import { testMachine } from '../../tests/test-machine.js';
import { bufferCopy, decreaseReservation, foreignMap, populatePhysmap, removeFromPhysmap } from './memory.js';
import { p2mGet } from './p2m.js';
import { entryMfn, entryType, p2mEntry, MAX_MFN } from '../layout/p2m.js';
import { DOM } from '../layout/domains.js';
import { checkFramesConserved, checkNoLeaks, checkQuiescent } from '../checker/checker.js';
import { domainDestroy } from './domain.js';
import { allocDomRun, allocHeapRun, getPage, putPage } from './mm.js';
import { PGC_allocated, PS } from '../layout/frametable.js';

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
  it('hands out aligned, owned, counted runs; -E2BIG and -ESRCH give every frame back; a run larger than the heap is -1', () => {
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
    expect(allocDomRun(m, 1, 2)).toBe(-ESRCH);
    expect(m.heap.free).toBe(freeBefore);
    // More than the heap holds: nothing taken.
    expect(allocHeapRun(m, 8192)).toBe(-1);
    expect(m.heap.free).toBe(freeBefore);
    expect(checkFramesConserved(m)).toBe(true);
  });
});
