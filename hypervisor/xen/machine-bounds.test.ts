/**
 * The machine's regions as createMachineSabs lays them out and a thread's
 * view reads them back: the config's bounds, where the BARs sit above RAM
 * (regionOf, mfnLimit), the control words, the heap's initial stack (Xen's
 * end_boot_allocator: every frame free), the trace rings, and the lock ids
 * (the global locks first, then per domain slot its own and one per grant
 * entry, as Xen's struct domain and active grant entries each have theirs).
 */
import '../designs/index.js';
import { describe, expect, it } from 'vitest';
import { MAX_DOMAINS } from '../layout/constants.js';
import { CTL } from '../layout/control.js';
import { DOM } from '../layout/domains.js';
import { grantSlots } from '../layout/grants.js';
import { HEAP } from '../layout/heap.js';
import { ringEventsFor } from '../layout/trace.js';
import { NO_BUGS } from './buggify.js';
import { LOCK_CLASS } from './lock-classes.js';
import type { LockId } from './locks.js';
import { attachMachine, createMachineSabs, GLOBAL_LOCK, Machine, type MachineConfig } from './machine.js';

const base: MachineConfig = { nr_frames: 16, page_size_bytes: 256, p2m_pool_pages: 4, bars: [], checking: true, buggify: NO_BUGS, seed: 1, max_domains: 2 };
const make = (o: Partial<MachineConfig> = {}): Machine => new Machine(createMachineSabs({ ...base, ...o }));

describe('createMachineSabs and a thread view of it', () => {
  it('refuses domain slots outside 1…MAX_DOMAINS, frames and p2m pool pages that are not positive integers', () => {
    for (const max_domains of [0, MAX_DOMAINS + 1, 1.5]) expect(() => make({ max_domains })).toThrow(/max_domains must be/);
    for (const nr_frames of [0, -1, 2.5]) expect(() => make({ nr_frames })).toThrow(/nr_frames must be/);
    for (const p2m_pool_pages of [0, 1.5]) expect(() => make({ p2m_pool_pages })).toThrow(/p2m_pool_pages must be/);
    expect(make({ max_domains: 1, nr_frames: 1, p2m_pool_pages: 1 }).nd).toBe(1);
    expect(make({ max_domains: MAX_DOMAINS }).nd).toBe(MAX_DOMAINS);
    const { max_domains: _, ...noSlots } = base;
    expect(new Machine(createMachineSabs(noSlots)).nd).toBe(MAX_DOMAINS);
  });

  it('puts the BARs above RAM, one after the other: regionOf and mfnLimit', () => {
    const plain = make();
    expect(plain.mfnLimit).toBe(16);
    expect([plain.regionOf(-1), plain.regionOf(0), plain.regionOf(15), plain.regionOf(16)]).toEqual([-1, 0, 0, -1]);
    expect(plain.regions).toHaveLength(1);
    const m = make({ bars: [{ name: 'a', owner: 1, nr_pages: 3 }, { name: 'b', owner: 0, nr_pages: 2 }] });
    expect(m.sabs.bars.map((b) => [b.name, b.owner, b.base_mfn, b.nr_pages, b.sab.byteLength])).toEqual([
      ['a', 1, 16, 3, 3 * 256],
      ['b', 0, 19, 2, 2 * 256],
    ]);
    expect(m.regionBase).toEqual([0, 16, 19]);
    expect(m.regions.map((r) => r.length)).toEqual([16 * 64, 3 * 64, 2 * 64]);
    expect(m.regions[0]!.buffer).toBe(m.frames.i32.buffer);
    expect(m.regions[2]!.buffer).toBe(m.sabs.bars[1]!.sab);
    expect([15, 16, 18, 19, 20, 21, -1].map((mfn) => m.regionOf(mfn))).toEqual([0, 1, 1, 2, 2, -1, -1]);
    expect(m.mfnLimit).toBe(21);
  });

  it('writes the control words (BUGGIFY, CHECKING, the seed in two words) and fills the heap with every frame', () => {
    const m = make({ buggify: [0x5, 0x80000000 | 0], checking: false, seed: 2 ** 33 + 7 });
    const w = m.control.w;
    expect([w[CTL.BUGGIFY], w[CTL.BUGGIFY_HI], w[CTL.CHECKING], w[CTL.SEED_LO], w[CTL.SEED_HI]]).toEqual([5, 0x80000000 | 0, 0, 7, 2]);
    expect(m.checking).toBe(false);
    expect(make().checking).toBe(true);
    expect(make().control.w[CTL.CHECKING]).toBe(1);
    const h = new Int32Array(m.sabs.heap);
    expect([h[HEAP.TOP], h[HEAP.FREE], h[HEAP.INFLIGHT], h[HEAP.FRESH]]).toEqual([16, 16, 0, 16]);
    // Frame 0 on top of the stack, frame 15 at its bottom.
    expect(Array.from(h.subarray(HEAP.STACK, HEAP.STACK + 16))).toEqual(Array.from({ length: 16 }, (_, i) => 15 - i));
  });

  it('makes trace rings only when asked for, sized as asked or by ringEventsFor', () => {
    expect(make().trace).toBeUndefined();
    expect(make({ trace_rings: 0 }).sabs.trace).toBeUndefined();
    const from_ms = performance.timeOrigin + performance.now();
    const t = make({ trace_rings: 2, trace_ring_events: 8 }).trace!;
    const to_ms = performance.timeOrigin + performance.now();
    expect([t.nr_rings, t.ring_events]).toEqual([2, 8]);
    // The rings' epoch: wall-clock time of their creation, in ms (what the timeline's times count from).
    expect(t.epoch_ms).toBeGreaterThanOrEqual(from_ms);
    expect(t.epoch_ms).toBeLessThanOrEqual(to_ms);
    const u = make({ trace_rings: 3 }).trace!;
    expect([u.nr_rings, u.ring_events]).toEqual([3, ringEventsFor(3)]);
  });

  it('allocates the global locks, then per slot its own locks and one per grant entry, every lock of the region', () => {
    const m = make({ grant_limits: [{ max_grant_frames: 1, max_maptrack_frames: 1 }, { max_grant_frames: 2, max_maptrack_frames: 1 }] });
    const cls = (id: number): number => m.locks.classOf(id as LockId);
    expect([GLOBAL_LOCK.DOMCTL, GLOBAL_LOCK.REGISTRY, GLOBAL_LOCK.HEAP, GLOBAL_LOCK.P2M_POOL].map(cls)).toEqual([LOCK_CLASS.domctl, LOCK_CLASS.registry, LOCK_CLASS.heap, LOCK_CLASS.p2m_pool]);
    const slots = grantSlots(2, m.config.grant_limits);
    expect(slots[1]!.entries).toBe(2 * slots[0]!.entries);
    let next = 4;
    for (let d = 0; d < 2; d++) {
      const at = (k: number): number => m.dom.at(d, k);
      expect([DOM.LOCK_P2M, DOM.LOCK_PAGE_ALLOC, DOM.LOCK_GRANT, DOM.LOCK_MAPTRACK, DOM.LOCK_IOREQ, DOM.ACTIVE_LOCK_BASE].map(at)).toEqual([next, next + 1, next + 2, next + 3, next + 4, next + 5]);
      expect([DOM.LOCK_P2M, DOM.LOCK_PAGE_ALLOC, DOM.LOCK_GRANT, DOM.LOCK_MAPTRACK, DOM.LOCK_IOREQ].map((k) => cls(at(k)))).toEqual([
        LOCK_CLASS.p2m,
        LOCK_CLASS.page_alloc,
        LOCK_CLASS.grant,
        LOCK_CLASS.maptrack,
        LOCK_CLASS.ioreq_server,
      ]);
      const entries = slots[d]!.entries;
      for (let r = 0; r < entries; r++) expect(cls(at(DOM.ACTIVE_LOCK_BASE) + r)).toBe(LOCK_CLASS.active);
      expect(at(DOM.LOCK_BUFIOREQ)).toBe(at(DOM.ACTIVE_LOCK_BASE) + entries);
      expect(cls(at(DOM.LOCK_BUFIOREQ))).toBe(LOCK_CLASS.bufioreq);
      next = at(DOM.LOCK_BUFIOREQ) + 1;
    }
    // The region has room for exactly these.
    expect(m.locks.nlocks).toBe(next);
    expect(m.locks.allocated()).toBe(next);
    m.lock(GLOBAL_LOCK.HEAP, 'test');
    expect(m.locks.heldByMe(GLOBAL_LOCK.HEAP as LockId)).toBe(true);
    m.unlock(GLOBAL_LOCK.HEAP);
    expect(m.locks.isHeld(GLOBAL_LOCK.HEAP as LockId)).toBe(false);
  });

  it('attachMachine gives a thread one view per machine', () => {
    const a = createMachineSabs(base);
    const b = createMachineSabs(base);
    const ma = attachMachine(a);
    expect(attachMachine(a)).toBe(ma);
    expect(attachMachine(b) === ma).toBe(false);
    expect(ma.sabs).toBe(a);
    expect(ma.config).toBe(a.config);
  });
});
