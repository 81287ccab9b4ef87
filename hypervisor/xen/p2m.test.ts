/**
 * The multi-level p2m (layout/p2m.ts, xen/p2m.ts): superpages where the
 * toolstack populates aligned runs, splits on a change of one page inside
 * one (with the split entry's GEN moved around the same shootdown), tables
 * for far gfns from the domain's share of the pool, and the pool whole
 * again after teardown.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { CTL } from '../layout/control.js';
import { DOM } from '../layout/domains.js';
import { entryMfn, entryType, P2M_HOLE, P2M_REVOKED, PAGE_GEN, p2mEntry } from '../layout/p2m.js';
import { EEXIST, EINVAL, ENOMEM } from '../public/errno.js';
import { domid, gfn, P2M } from '../public/types.js';
import { BUGS } from './buggify.js';
import { domainCreate, domainDestroy, populateRange } from './domain.js';
import { VcpuContext } from './guest-cpu.js';
import type { Machine } from './machine.js';
import { decreaseReservation } from './memory.js';
import {
  p2mClearLocked, p2mCreate, p2mForEach, p2mForEachLeaf, p2mFreeTables, p2mGet, p2mGfnLimit, p2mInRange, p2mInsert, p2mInsertSuper, p2mLeafWord, p2mLock,
  p2mMapRoomLocked, p2mMapSuperLocked, p2mPagesNeeded, p2mRemoveLocked, p2mRoomLocked, p2mSetLocked, p2mSuperFits, p2mTablePages, p2mUnlock, type P2mLeaf,
} from './p2m.js';
import { checkNoLeaks, checkQuiescent } from '../checker/checker.js';
import { dmMap } from '../designs/primitives/map.js';
import { dmRevoke } from '../designs/primitives/revoke.js';
import { createMachineSabs, Machine as MachineClass } from './machine.js';
import { EV, extraOf, kindOf, P2M_EV, RING, TK } from '../layout/trace.js';
import { clearTracer, hostRing, setHostTracer } from './trace.js';
import { NO_BUGS } from './buggify.js';
import { realSched, setSched, type Sched } from './platform.js';
import { VC } from '../layout/vcpus.js';
import { TLB_SHOOTDOWN_BOUND_MS } from '../layout/constants.js';
import { HypervisorBug } from '../layout/region.js';

/** dom0 and one frontend, 4 MiB of RAM each: two 2 MiB superpages apiece. */
function bigMachine(bugs = ''): Machine {
  return testMachine({ nr_frames: 4096, bugs, domains: [{ memory_pages: 1024, max_pages: 1100, privileged: true }, { memory_pages: 1024, backend: 0 }] });
}

function leaves(m: Machine, d: number): P2mLeaf[] {
  const out: P2mLeaf[] = [];
  p2mForEachLeaf(m, d, (l) => out.push({ ...l }));
  return out;
}

const ctl = (m: Machine, w: number): number => Atomics.load(m.control.w, w);

describe('p2m levels', () => {
  it('the toolstack populates aligned 2 MiB runs as superpages on aligned frames, in two tables for a 36-bit space', () => {
    const m = bigMachine();
    for (const d of [0, 1]) {
      const ls = leaves(m, d);
      expect(ls.map((l) => [l.gfn, l.level])).toEqual([
        [0, 2],
        [512, 2],
      ]);
      for (const l of ls) expect(entryMfn(l.e) % 512).toBe(0);
      // The root (level 3) and one level-2 table; no level-1 table at all.
      expect(m.dom.at(d, DOM.P2M_LEVELS)).toBe(3);
      expect(m.dom.at(d, DOM.P2M_PAGES)).toBe(2);
    }
    // A 4 KiB view of a superpage's gfn is its frame + the offset.
    const base = entryMfn(p2mGet(m, 1, 512));
    expect(entryMfn(p2mGet(m, 1, 512 + 77))).toBe(base + 77);
    expect(entryType(p2mGet(m, 1, 600))).toBe(P2M.ram_rw);
    checkQuiescent(m);
    expect(m.log.records()).toEqual([]);
  });

  it('ballooning out one page splits its superpage: one more table, one split, one shootdown; the neighbours keep their frames', () => {
    const m = bigMachine();
    const before = Array.from({ length: 512 }, (_, g) => p2mGet(m, 1, g));
    const splits = ctl(m, CTL.P2M_SPLITS);
    const shootdowns = ctl(m, CTL.TLB_SHOOTDOWNS_DONE);
    expect(decreaseReservation(m, 1, [7])).toBe(1);
    expect(ctl(m, CTL.P2M_SPLITS)).toBe(splits + 1);
    expect(ctl(m, CTL.TLB_SHOOTDOWNS_DONE)).toBe(shootdowns + 1);
    expect(m.dom.at(1, DOM.P2M_PAGES)).toBe(3);
    expect(p2mGet(m, 1, 7)).toBe(P2M_HOLE);
    for (let g = 0; g < 512; g++) if (g !== 7) expect(p2mGet(m, 1, g)).toBe(before[g]);
    const ls = leaves(m, 1);
    expect(ls.filter((l) => l.level === 1)).toHaveLength(511);
    expect(ls.filter((l) => l.level === 2).map((l) => l.gfn)).toEqual([512]);
    // A second page of the same (now split) range splits nothing.
    expect(decreaseReservation(m, 1, [8])).toBe(1);
    expect(ctl(m, CTL.P2M_SPLITS)).toBe(splits + 1);
    checkQuiescent(m);
    expect(m.log.records()).toEqual([]);
  });

  it('a TLB entry cached from a superpage is stale once a removal inside it completes, whichever of its gfns it translates', () => {
    const m = bigMachine('skip-tlb-flush-on-unmap');
    const cpu = new VcpuContext(m, { domid: 1, vcpu: 0, slot: m.dom.at(1, DOM.VCPU_BASE), memory_pages: 1024, seed: 1 });
    cpu.start();
    cpu.write32(gfn(6), 0, 0x66);
    expect(cpu.read32(gfn(6), 0)).toBe(0x66); // cached from the superpage entry
    cpu.stop();
    // The bug skips the shootdown: vCPU 0 keeps its TLB over the removal of gfn 5.
    p2mLock(m, 1, 'test');
    p2mRemoveLocked(m, 1, [5], P2M_HOLE, { skipFlushBug: BUGS['skip-tlb-flush-on-unmap'] });
    p2mUnlock(m, 1);
    cpu.start();
    expect(m.log.records()).toEqual([]);
    cpu.read32(gfn(6), 0);
    const v = m.log.records();
    expect(v.map((x) => x.invariant)).toEqual(['no_use_after_revoke']);
    expect(v[0]!.text).toMatch(/gfn 6/);
    cpu.stop();
  });

  it('a gfn far from RAM takes tables from the domain share; past the share it is -ENOMEM and nothing changes; past the width it is out of range', () => {
    const m = testMachine({ nr_frames: 1024, domains: [{ memory_pages: 16, privileged: true }] });
    const d = domainCreate(m, { domid: 1, max_pages: 16, nr_vcpus: 1, privileged: false, p2m_pages: 4 });
    expect(d).toBe(1);
    expect(populateRange(m, d, 0, 4)).toBe(0); // root, a level-2 table, a level-1 table
    expect(m.dom.at(d, DOM.P2M_PAGES)).toBe(3);
    p2mLock(m, d, 'test');
    expect(p2mInsert(m, d, 0x800000, p2mEntry(5, P2M.mmio_dm))).toBe(-ENOMEM); // needs two: one left
    expect(p2mGet(m, d, 0x800000)).toBe(P2M_HOLE);
    expect(m.dom.at(d, DOM.P2M_PAGES)).toBe(3);
    expect(p2mInsert(m, d, 0x1ff, p2mEntry(5, P2M.mmio_dm))).toBe(0); // an existing table: no page needed
    p2mUnlock(m, d);
    expect(p2mInRange(m, d, 0xffffff)).toBe(true);
    expect(p2mInRange(m, d, 0x1000000)).toBe(false);
    expect(p2mGet(m, d, 0x1000000)).toBe(P2M_HOLE);
    p2mLock(m, d, 'test');
    p2mRemoveLocked(m, d, [0x1ff]);
    p2mUnlock(m, d);
  });

  it('teardown gives every frame and every table page back: superpages whole, the pool as new', () => {
    const m = bigMachine();
    const free = m.p2m.freePages;
    expect(decreaseReservation(m, 1, [3])).toBe(1); // one split: a level-1 table
    p2mLock(m, 0, 'test');
    expect(p2mInsert(m, 0, 0x800000, p2mEntry(entryMfn(p2mGet(m, 0, 1)), P2M.ram_ro))).toBe(0); // two more tables
    p2mRemoveLocked(m, 0, [0x800000]);
    p2mUnlock(m, 0);
    expect(m.p2m.freePages).toBe(free - 3);
    expect(domainDestroy(m, 1)).toBe(0);
    expect(domainDestroy(m, 0)).toBe(0);
    expect(m.p2m.freePages).toBe(m.p2m.nr_pages);
    expect(m.p2m.reserved).toBe(0);
    expect(checkNoLeaks(m)).toBe(true);
    // A new domain populates superpages again from the freed runs.
    expect(domainCreate(m, { domid: 0, max_pages: 1024, nr_vcpus: 1, privileged: true })).toBe(0);
    expect(populateRange(m, 0, 0, 1024)).toBe(0);
    expect(leaves(m, 0).map((l) => l.level)).toEqual([2, 2]);
  });

  it('a split and its shootdown are trace events of the thread that made them (TK.P2M)', () => {
    const m = testMachine({ nr_frames: 4096, trace: { rings: 2, ring_events: 64 }, domains: [{ memory_pages: 1024, privileged: true }] });
    const t = m.trace!;
    setHostTracer(t);
    try {
      expect(decreaseReservation(m, 0, [600])).toBe(1);
    } finally {
      clearTracer();
    }
    const ring = hostRing(t);
    const head = Atomics.load(t.rings, t.ringIdx(ring, RING.HEAD));
    const evs = Array.from({ length: head }, (_, i) => t.eventIdx(ring, i)).map((i) => [kindOf(t.ev[i + EV.KIND]!), extraOf(t.ev[i + EV.KIND]!), t.ev[i + EV.A]!, t.ev[i + EV.B]!]);
    const p2m = evs.filter(([k]) => k === TK.P2M).map(([, x, a, b]) => [x, a, b]);
    expect(p2m).toEqual([
      [P2M_EV.SPLIT, 0, 2],
      [P2M_EV.SHOOTDOWN, 0, 0],
    ]);
  });

  it.each([false, true])('a 2 MiB BAR Map is one superpage with its split page reserved; a Revoke of one page splits it and cannot fail; skip-tlb-flush-on-revoke %s', (skipFlush) => {
    const m = testMachine({ nr_frames: 4096, bugs: skipFlush ? 'skip-tlb-flush-on-revoke' : '', bars: [{ name: 'gpu', owner: 0, nr_pages: 512 }], domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }] });
    const bar = m.sabs.bars[0]!.base_mfn;
    const at = 0x800000;
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar }, count: 512, at });
    expect(r.rc).toBe(0);
    expect(leaves(m, 1).filter((l) => l.level === 2).map((l) => [l.gfn, entryType(l.e), entryMfn(l.e)])).toEqual([[at, P2M.mmio_direct, bar]]);
    expect(m.dom.at(1, DOM.P2M_RESERVED)).toBe(1);
    const pages = m.dom.at(1, DOM.P2M_PAGES);
    const fe = new VcpuContext(m, { domid: 1, vcpu: 0, slot: m.dom.at(1, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
    fe.start();
    fe.write32(gfn(at + 7), 0, 0x77);
    expect(fe.read32(gfn(at + 7), 0)).toBe(0x77); // cached from the superpage
    fe.stop();
    const splits = ctl(m, CTL.P2M_SPLITS);
    expect(dmRevoke(m, 0, { fe: 1, gfn: at + 3, count: 1 })).toBe(0);
    expect(ctl(m, CTL.P2M_SPLITS)).toBe(splits + 1);
    // The reserved page became the table: nothing more charged.
    expect(m.dom.at(1, DOM.P2M_RESERVED)).toBe(0);
    expect(m.dom.at(1, DOM.P2M_PAGES)).toBe(pages);
    expect(entryMfn(p2mGet(m, 1, at + 7))).toBe(bar + 7);
    fe.start();
    expect(m.log.records()).toEqual([]);
    fe.read32(gfn(at + 7), 0);
    // Without the flush, vCPU 0 still uses the translation it cached from the split superpage.
    expect(m.log.records().map((v) => v.invariant)).toEqual(skipFlush ? ['no_use_after_revoke'] : []);
    expect(fe.read32(gfn(at + 3), 0)).toBe(0xffffffff); // revoked: no server, the null handler
    fe.stop();
    expect(dmRevoke(m, 0, { id: r.id })).toBe(0);
    if (!skipFlush) {
      checkQuiescent(m);
      expect(m.log.records()).toEqual([]);
    }
    expect(domainDestroy(m, 1)).toBe(0);
    expect(domainDestroy(m, 0)).toBe(0);
    expect(m.p2m.freePages).toBe(m.p2m.nr_pages);
  });

  it('1 GiB of aligned RAM is one level-3 superpage; a page ballooned out of it splits it twice (1 GiB → 2 MiB → 4 KiB)', () => {
    // 256-byte pages keep the frames small; a gfn is a 4 KiB frame number of the address width whatever the page size.
    const n = 262144 + 512;
    const m = new MachineClass(createMachineSabs({ nr_frames: n, page_size_bytes: 256, p2m_pool_pages: 64, bars: [], checking: true, buggify: NO_BUGS, seed: 1, max_domains: 1 }));
    expect(domainCreate(m, { domid: 0, max_pages: n, nr_vcpus: 1, privileged: true, p2m_pages: 32 })).toBe(0);
    expect(populateRange(m, 0, 0, n)).toBe(0);
    expect(leaves(m, 0).map((l) => [l.gfn, l.level])).toEqual([
      [0, 3],
      [262144, 2],
    ]);
    expect(m.dom.at(0, DOM.P2M_PAGES)).toBe(2); // the root (level 3) and the level-2 table of gfns from 2^18
    const frame = entryMfn(p2mGet(m, 0, 1000));
    expect(decreaseReservation(m, 0, [1000])).toBe(1);
    expect(ctl(m, CTL.P2M_SPLITS)).toBe(2);
    const after = leaves(m, 0);
    expect(after.filter((l) => l.level === 3)).toHaveLength(0);
    expect(after.filter((l) => l.level === 2)).toHaveLength(511 + 1);
    expect(after.filter((l) => l.level === 1)).toHaveLength(511);
    expect(entryMfn(p2mGet(m, 0, 1001))).toBe(frame + 1);
    expect(p2mGet(m, 0, 1000)).toBe(P2M_HOLE);
    checkQuiescent(m);
    expect(m.log.records()).toEqual([]);
    expect(domainDestroy(m, 0)).toBe(0);
    expect(checkNoLeaks(m)).toBe(true);
  });
});

/**
 * The shootdown's wait (flush_tlb_mask / ept_sync_domain): on one thread,
 * with a scheduler that stands for the other pCPUs — its awaitAck is the
 * IPI the vCPU in `slot` answers, its clock the one the bound is read on.
 */
describe('TLB shootdown', () => {
  afterEach(() => setSched(realSched));

  /** d1 with `n` vCPUs, all in guest mode; d0 Maps its gfn 10 at d1's gfn 100. */
  function guests(n: number, bugs = ''): { m: Machine; cpus: VcpuContext[]; be: VcpuContext; id: number } {
    const m = testMachine({ bugs, domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0, vcpus: n }] });
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 10 }, count: 1, at: 100 });
    expect(r.rc).toBe(0);
    const be = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
    be.start();
    const cpus = Array.from({ length: n }, (_, v) => new VcpuContext(m, { domid: 1, vcpu: v, slot: m.dom.at(1, DOM.VCPU_BASE) + v, memory_pages: 64, seed: 1 }));
    for (const c of cpus) c.start();
    return { m, cpus, be, id: r.id };
  }

  /** A scheduler whose clock moves `step_us` per spin, and whose IPI to a slot in `acks` makes it acknowledge d1's epoch after `delay_us`. */
  function ipis(m: Machine, acks: ReadonlySet<number>, step_us = 10, delay_us = 0): { s: Sched; asked: number[]; spins: () => number } {
    let now = 0;
    let spins = 0;
    const asked: number[] = [];
    const pending: Array<{ slot: number; at: number }> = [];
    const ack = (): void => {
      for (const p of pending.splice(0)) {
        if (p.at <= now) m.vcpus.set(p.slot, VC.ACK_EPOCH, m.dom.at(1, DOM.FLUSH_EPOCH));
        else pending.push(p);
      }
    };
    const s: Sched = {
      ...realSched,
      relax: () => {
        spins++;
        now += step_us;
        ack();
      },
      now_us: () => now,
      awaitAck: (slot) => {
        asked.push(slot);
        if (acks.has(slot)) pending.push({ slot, at: now + delay_us });
        ack();
      },
    };
    return { s, asked, spins: () => spins };
  }

  it('waits for each vCPU of the domain in guest mode that has not acknowledged the new epoch, and for no other (flush_tlb_mask over its dirty mask)', () => {
    const { m, cpus, be, id } = guests(3);
    const base = m.dom.at(1, DOM.VCPU_BASE);
    cpus[1]!.stop(); // offline: nothing cached to flush, nothing to wait for
    m.vcpus.set(base + 2, VC.ACK_EPOCH, m.dom.at(1, DOM.FLUSH_EPOCH) + 1); // already past the coming epoch
    const { s, asked } = ipis(m, new Set([base, base + 2]));
    setSched(s);
    const done = ctl(m, CTL.TLB_SHOOTDOWNS_DONE);
    const epoch = m.dom.at(1, DOM.FLUSH_EPOCH);
    expect(be.hc.dm_revoke({ id })).toBe(0);
    expect(asked).toEqual([base]);
    expect(m.dom.at(1, DOM.FLUSH_EPOCH)).toBe(epoch + 1);
    expect(m.vcpus.at(base, VC.ACK_EPOCH)).toBe(epoch + 1);
    expect(ctl(m, CTL.TLB_SHOOTDOWNS_DONE)).toBe(done + 1);
    expect(ctl(m, CTL.SHOOTDOWNS)).toBe(0); // none in flight once it returned
    // The revocation's costs (CTL.REVOKE_*): one entry, one shootdown, one vCPU paused.
    expect([CTL.REVOCATIONS, CTL.REVOKE_P2M_REMOVED, CTL.REVOKE_SHOOTDOWNS, CTL.REVOKE_VCPUS_PAUSED, CTL.REVOKE_SPLITS].map((w) => ctl(m, w))).toEqual([1, 1, 1, 1, 0]);
    // A Revoke of what is revoked already removes nothing and is not counted.
    expect(be.hc.dm_revoke({ id })).toBe(0);
    expect(ctl(m, CTL.REVOCATIONS)).toBe(1);
    setSched(realSched);
    for (const [v, c] of cpus.entries()) if (v !== 1) c.stop();
    be.stop();
    checkQuiescent(m);
    expect(m.log.records()).toEqual([]);
  });

  it('every vCPU that owes an acknowledgement is waited for, in order, and the time they took is the revocation\'s pause', () => {
    const { m, cpus, be, id } = guests(3);
    const base = m.dom.at(1, DOM.VCPU_BASE);
    const { s, asked } = ipis(m, new Set([base, base + 1, base + 2]), 10, 1000);
    setSched(s);
    expect(be.hc.dm_revoke({ id })).toBe(0);
    expect(asked).toEqual([base, base + 1, base + 2]);
    for (let v = 0; v < 3; v++) expect(m.vcpus.at(base + v, VC.ACK_EPOCH)).toBe(m.dom.at(1, DOM.FLUSH_EPOCH));
    expect(ctl(m, CTL.REVOKE_VCPUS_PAUSED)).toBe(3);
    // Each IPI is answered 1 ms after it was sent; the three run one after the other.
    expect(ctl(m, CTL.REVOKE_PAUSE_US)).toBe(3000);
    expect(ctl(m, CTL.REVOKE_PAUSE_MAX_US)).toBe(3000);
    setSched(realSched);
    for (const c of cpus) c.stop();
    be.stop();
  });

  it('with shootdown-skip-one-ack the last vCPU that owes an acknowledgement is not waited for', () => {
    const { m, be, id } = guests(3, 'shootdown-skip-one-ack');
    const base = m.dom.at(1, DOM.VCPU_BASE);
    m.vcpus.set(base + 2, VC.ACK_EPOCH, m.dom.at(1, DOM.FLUSH_EPOCH) + 1); // owes nothing: vCPU 1 is the last that owes
    const { s, asked } = ipis(m, new Set([base, base + 1]));
    setSched(s);
    expect(be.hc.dm_revoke({ id })).toBe(0);
    expect(asked).toEqual([base]);
    expect(m.vcpus.at(base + 1, VC.ACK_EPOCH)).toBe(m.dom.at(1, DOM.FLUSH_EPOCH) - 1);
  });

  it('a vCPU that never acknowledges is a hypervisor bug once the bound has passed, not before', () => {
    const bound_us = TLB_SHOOTDOWN_BOUND_MS * 1000;
    // Acknowledged just inside the bound: the wait ends normally.
    const late = guests(1);
    const base = late.m.dom.at(1, DOM.VCPU_BASE);
    const a = ipis(late.m, new Set([base]), 100, bound_us - 100_000);
    setSched(a.s);
    expect(late.be.hc.dm_revoke({ id: late.id })).toBe(0);
    expect(a.spins()).toBeGreaterThan(40_000);
    setSched(realSched);
    // Never acknowledged: HypervisorBug naming the vCPU and the epoch, the clock past the bound.
    const never = guests(1);
    const b = ipis(never.m, new Set(), 100);
    setSched(b.s);
    const epoch = never.m.dom.at(1, DOM.FLUSH_EPOCH) + 1;
    let caught: unknown;
    try {
      dmRevoke(never.m, 0, { id: never.id });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(HypervisorBug);
    expect(String(caught)).toContain(`TLB shootdown of d1: vCPU slot ${never.m.dom.at(1, DOM.VCPU_BASE)} did not acknowledge epoch ${epoch} within ${TLB_SHOOTDOWN_BOUND_MS} ms`);
    expect(b.s.now_us()).toBeGreaterThan(bound_us);
    expect(b.s.now_us()).toBeLessThan(bound_us + 100 * 1024);
    expect(ctl(never.m, CTL.SHOOTDOWNS)).toBe(0); // the counter of shootdowns in flight is given back on the way out
  });
});

/** The p2m's edges one call at a time: what each walk, update and check answers at its bounds (ept_get_entry, ept_set_entry, p2m_set_entry). */
describe('p2m edges', () => {
  const gen = (m: Machine, idx: number): number => Atomics.load(m.p2m.w, idx + PAGE_GEN);

  it('a gfn is in range when it is an integer in [0, 2^(paddr_bits − 12)); out of range it reads as a hole and has no leaf word, even where its low bits name a mapped slot', () => {
    const m = testMachine();
    expect(p2mGfnLimit(m, 1)).toBe(2 ** 24);
    for (const g of [-1, 1.5, 2 ** 24, NaN]) expect(p2mInRange(m, 1, g), `gfn ${g}`).toBe(false);
    expect(p2mInRange(m, 1, 0)).toBe(true);
    expect(p2mInRange(m, 1, 2 ** 24 - 1)).toBe(true);
    // 2^27 + 5 indexes the root's slot 0, then slot 0, then slot 5: gfn 5's entry, were it walked.
    expect(entryType(p2mGet(m, 1, 5))).toBe(P2M.ram_rw);
    expect(p2mGet(m, 1, 2 ** 27 + 5)).toBe(P2M_HOLE);
    expect(p2mLeafWord(m, 1, 2 ** 27 + 5)).toBe(-1);
    expect(p2mGet(m, 1, -1)).toBe(P2M_HOLE);
    // A hole decided above level 1 is a hole for each of its gfns (not a frame computed from it).
    expect(p2mGet(m, 1, 0x800001)).toBe(P2M_HOLE);
    expect(p2mLeafWord(m, 1, 0x800001)).toBe(-1);
    // A 4 KiB gfn's leaf word holds its entry; a superpage's gfn has none.
    const w = p2mLeafWord(m, 1, 5);
    expect(Atomics.load(m.p2m.w, w)).toBe(p2mGet(m, 1, 5));
    expect(p2mLeafWord(m, 1, 6)).toBe(w + 1);
    const big = bigMachine();
    expect(p2mLeafWord(big, 1, 600)).toBe(-1);
  });

  it('p2m_set_entry\'s codes: -EINVAL past the width, -EEXIST on an entry; a superpage only aligned, in range, over one hole, within the share', () => {
    const m = testMachine({ nr_frames: 2048 });
    p2mLock(m, 1, 'test');
    try {
      expect(p2mInsert(m, 1, 2 ** 24, p2mEntry(5, P2M.mmio_dm))).toBe(-EINVAL);
      expect(p2mInsert(m, 1, -1, p2mEntry(5, P2M.mmio_dm))).toBe(-EINVAL);
      expect(p2mInsert(m, 1, 3, p2mEntry(5, P2M.mmio_dm))).toBe(-EEXIST);
      // Superpages (p2m_set_entry with page_order 9): aligned gfn and frame, or a hypervisor bug.
      expect(() => p2mInsertSuper(m, 1, 1024 + 1, 2, p2mEntry(1024, P2M.mmio_dm))).toThrow(/misaligned/);
      expect(() => p2mInsertSuper(m, 1, 1024, 2, p2mEntry(1025, P2M.mmio_dm))).toThrow(/misaligned/);
      expect(() => p2mInsertSuper(m, 1, 1024, 1, p2mEntry(1024, P2M.mmio_dm))).toThrow(HypervisorBug);
      expect(p2mInsertSuper(m, 1, 2 ** 24, 2, p2mEntry(1024, P2M.mmio_dm))).toBe(-EEXIST); // past the width
      expect(p2mInsertSuper(m, 1, 0, 2, p2mEntry(1024, P2M.mmio_dm))).toBe(-EEXIST); // gfns 0–63 are RAM in a table
      expect(p2mSuperFits(m, 1, 0)).toBe(false);
      expect(p2mSuperFits(m, 1, 1024)).toBe(true);
      expect(p2mSuperFits(m, 1, 1025)).toBe(false);
      expect(p2mSuperFits(m, 1, 2 ** 24 - 512)).toBe(true);
      expect(p2mSuperFits(m, 1, 2 ** 24)).toBe(false);
      const pages = m.dom.at(1, DOM.P2M_PAGES);
      expect(p2mInsertSuper(m, 1, 1024, 2, p2mEntry(1024, P2M.mmio_dm))).toBe(0);
      expect(m.dom.at(1, DOM.P2M_PAGES)).toBe(pages); // a level-2 entry in the table that was there
      expect(p2mSuperFits(m, 1, 1024)).toBe(false);
      expect(entryMfn(p2mGet(m, 1, 1024 + 77))).toBe(1024 + 77);
      expect(p2mInsertSuper(m, 1, 1024, 2, p2mEntry(1024, P2M.mmio_dm))).toBe(-EEXIST);
      // A 1 GiB superpage over gfns that hold a table: -EEXIST, whatever the table holds.
      expect(p2mInsertSuper(m, 1, 0, 3, p2mEntry(0, P2M.mmio_dm))).toBe(-EEXIST);
    } finally {
      p2mUnlock(m, 1);
    }
  });

  it('the pages a change needs: missing tables once each, a superpage to split, none for a Map superpage (its page is reserved); room is ≤ the share, not <', () => {
    const m = testMachine({ nr_frames: 1024, domains: [{ memory_pages: 16, privileged: true }] });
    expect(domainCreate(m, { domid: 1, max_pages: 16, nr_vcpus: 1, privileged: false, p2m_pages: 5 })).toBe(1);
    expect(populateRange(m, 1, 0, 4)).toBe(0); // root, a level-2 table, a level-1 table
    p2mLock(m, 1, 'test');
    try {
      const far = 0x800000;
      expect(p2mPagesNeeded(m, 1, [5])).toBe(0);
      expect(p2mPagesNeeded(m, 1, [far])).toBe(2);
      expect(p2mPagesNeeded(m, 1, [far], 2)).toBe(1);
      expect(p2mPagesNeeded(m, 1, [far], 3)).toBe(0);
      expect(p2mPagesNeeded(m, 1, [far, far + 1, far + 511])).toBe(2); // one level-1 table for all three
      expect(p2mPagesNeeded(m, 1, [far, far + 512])).toBe(3); // two level-1 tables under one level-2 table
      expect(p2mPagesNeeded(m, 1, [1000])).toBe(1); // the level-2 table is there; gfns 512–1023 need a level-1 one
      // 3 used of 5: two more fit exactly, three do not.
      expect(p2mRoomLocked(m, 1, [far])).toBe(0);
      expect(p2mRoomLocked(m, 1, [far, far + 512])).toBe(-ENOMEM);
      expect(p2mMapRoomLocked(m, 1, [], [far])).toBe(0);
      expect(p2mMapRoomLocked(m, 1, [far], [])).toBe(0); // a level-2 table and the superpage's reserved page
      expect(p2mMapRoomLocked(m, 1, [far], [5])).toBe(0);
      expect(p2mMapRoomLocked(m, 1, [far], [1000])).toBe(-ENOMEM);
      expect(p2mMapRoomLocked(m, 1, [far, far + 512], [])).toBe(-ENOMEM);
      // A Map superpage: one entry, and a page charged and reserved for its split.
      expect(p2mMapSuperLocked(m, 1, far, p2mEntry(512, P2M.mmio_direct))).toBe(0);
      expect([m.dom.at(1, DOM.P2M_PAGES), m.dom.at(1, DOM.P2M_RESERVED)]).toEqual([5, 1]);
      expect(p2mPagesNeeded(m, 1, [far + 3])).toBe(0); // its split has its page
      expect(p2mPagesNeeded(m, 1, [far + 3], 2)).toBe(0);
      // No room left: a Map superpage asked for without p2mMapRoomLocked is a hypervisor bug, as is a table.
      expect(() => p2mMapSuperLocked(m, 1, far + 1024, p2mEntry(1024, P2M.mmio_direct))).toThrow(/no room for a Map superpage/);
      expect(() => p2mSetLocked(m, 1, far + 0x400000, p2mEntry(5, P2M.mmio_dm))).toThrow(/has no room for a table/);
      // The split of the Map superpage takes the reserved page: nothing more charged.
      const removed = p2mRemoveLocked(m, 1, [far + 3], P2M_REVOKED);
      expect(removed).toEqual([p2mEntry(515, P2M.mmio_direct)]);
      expect([m.dom.at(1, DOM.P2M_PAGES), m.dom.at(1, DOM.P2M_RESERVED)]).toEqual([5, 0]);
      expect(entryMfn(p2mGet(m, 1, far + 4))).toBe(516);
    } finally {
      p2mUnlock(m, 1);
    }
  });

  it('an update inside a superpage splits it around one shootdown, the split entry\'s GEN moved by two (ept_set_entry\'s sync); a hole filled needs neither', () => {
    const m = bigMachine();
    const superIdx = leaves(m, 1)[1]!.idx; // gfns 512–1023
    const g0 = gen(m, superIdx);
    const done = ctl(m, CTL.TLB_SHOOTDOWNS_DONE);
    p2mLock(m, 1, 'test');
    p2mSetLocked(m, 1, 600, p2mEntry(entryMfn(p2mGet(m, 1, 600)), P2M.ram_ro));
    p2mUnlock(m, 1);
    expect(ctl(m, CTL.TLB_SHOOTDOWNS_DONE)).toBe(done + 1);
    expect(gen(m, superIdx)).toBe(g0 + 2);
    expect(entryType(p2mGet(m, 1, 600))).toBe(P2M.ram_ro);
    expect(entryType(p2mGet(m, 1, 601))).toBe(P2M.ram_rw);
    // A hole of an existing table: no split, no shootdown.
    p2mLock(m, 1, 'test');
    p2mSetLocked(m, 1, 1100, p2mEntry(5, P2M.mmio_dm));
    p2mUnlock(m, 1);
    expect(ctl(m, CTL.TLB_SHOOTDOWNS_DONE)).toBe(done + 1);
  });

  it('a removal tells onLeaf each gfn\'s 4 KiB word (after any split) before the entry changes, and leaves every GEN it moved even', () => {
    const m = bigMachine();
    const seen: Array<[number, number, number]> = [];
    p2mLock(m, 1, 'test');
    const old = p2mRemoveLocked(m, 1, [3, 700], P2M_REVOKED, { onLeaf: (g, idx) => seen.push([g, idx, Atomics.load(m.p2m.w, idx)]) });
    p2mUnlock(m, 1);
    expect(seen.map(([g]) => g)).toEqual([3, 700]);
    for (const [g, idx, e] of seen) {
      expect(idx).toBe(p2mLeafWord(m, 1, g));
      expect(e).toBe(old[g === 3 ? 0 : 1]); // the old entry, still there when onLeaf ran
      expect(gen(m, idx) % 2).toBe(0);
      expect(Atomics.load(m.p2m.w, idx)).toBe(P2M_REVOKED);
    }
    expect(ctl(m, CTL.P2M_REMOVED)).toBe(2);
    for (const l of leaves(m, 1)) expect(gen(m, l.idx) % 2).toBe(0);
  });

  it('p2mForEach expands superpages gfn by gfn; teardown empties every leaf around one shootdown, GENs even; a freed p2m has no gfns at all', () => {
    const m = bigMachine();
    const all: Array<[number, number, number]> = [];
    p2mForEach(m, 1, (g, e, idx) => all.push([g, e, idx]));
    expect(all).toHaveLength(1024);
    expect(all.map(([g]) => g)).toEqual(Array.from({ length: 1024 }, (_, g) => g));
    for (const [g, e] of all) expect(e).toBe(p2mGet(m, 1, g));
    const ls = leaves(m, 1);
    expect(all[700]![2]).toBe(ls[1]!.idx);
    const gens = ls.map((l) => gen(m, l.idx));
    const done = ctl(m, CTL.TLB_SHOOTDOWNS_DONE);
    p2mLock(m, 1, 'test');
    const cleared = p2mClearLocked(m, 1);
    p2mUnlock(m, 1);
    expect(cleared.map((l) => [l.gfn, l.e])).toEqual(ls.map((l) => [l.gfn, l.e]));
    expect(ls.map((l) => gen(m, l.idx))).toEqual(gens.map((g) => g + 2));
    expect(ctl(m, CTL.TLB_SHOOTDOWNS_DONE)).toBe(done + 1);
    expect(leaves(m, 1)).toEqual([]);
    // Nothing left to clear: no shootdown.
    p2mLock(m, 1, 'test');
    expect(p2mClearLocked(m, 1)).toEqual([]);
    p2mUnlock(m, 1);
    expect(ctl(m, CTL.TLB_SHOOTDOWNS_DONE)).toBe(done + 1);
    // Once freed: no width, no tables, no leaves, and a second free does nothing.
    const free = m.p2m.freePages;
    p2mFreeTables(m, 1, () => false);
    expect(m.p2m.freePages).toBe(free); // not reapable: nothing freed
    p2mFreeTables(m, 1, () => true);
    expect(m.p2m.freePages).toBe(free + 2);
    p2mFreeTables(m, 1, () => true);
    expect(m.p2m.freePages).toBe(free + 2);
    expect(p2mGfnLimit(m, 1)).toBe(0);
    expect(p2mInRange(m, 1, 0)).toBe(false);
    expect(p2mTablePages(m, 1)).toEqual([]);
    let n = 0;
    p2mForEachLeaf(m, 1, () => n++);
    expect(n).toBe(0);
  });

  it('p2m_init: a share of 0 pages or more than the pool has left is -ENOMEM and promises nothing', () => {
    const m = testMachine({ domains: [{ memory_pages: 16, privileged: true }] });
    const reserved = m.p2m.reserved;
    expect(p2mCreate(m, 5, 36, 0, 3)).toBe(-ENOMEM);
    expect(p2mCreate(m, 5, 36, m.p2m.nr_pages - reserved + 1, 3)).toBe(-ENOMEM);
    expect(m.p2m.reserved).toBe(reserved);
    expect(p2mCreate(m, 5, 36, m.p2m.nr_pages - reserved, 3)).toBe(0); // exactly what is left
    expect(m.p2m.reserved).toBe(m.p2m.nr_pages);
    expect([m.dom.at(5, DOM.P2M_PAGES), m.dom.at(5, DOM.P2M_PAGES_MAX), m.dom.at(5, DOM.P2M_LEVELS)]).toEqual([1, m.p2m.nr_pages - reserved, 3]);
  });

  it('a frontend destroyed with a BAR Map superpage still there: its reserved page is counted, not linked, and the pool is whole again', () => {
    const m = testMachine({ nr_frames: 4096, bars: [{ name: 'gpu', owner: 0, nr_pages: 512 }], domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }] });
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: m.sabs.bars[0]!.base_mfn }, count: 512, at: 0x800000 }).rc).toBe(0);
    expect(m.dom.at(1, DOM.P2M_RESERVED)).toBe(1);
    expect(domainDestroy(m, 1)).toBe(0);
    expect(domainDestroy(m, 0)).toBe(0);
    expect(m.p2m.freePages).toBe(m.p2m.nr_pages);
    expect(m.p2m.reserved).toBe(0);
  });

  it('a revocation that splits counts its split (CTL.REVOKE_SPLITS)', () => {
    const m = testMachine({ nr_frames: 4096, bars: [{ name: 'gpu', owner: 0, nr_pages: 512 }], domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }] });
    expect(dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: m.sabs.bars[0]!.base_mfn }, count: 512, at: 0x800000 }).rc).toBe(0);
    const be = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
    be.start();
    expect(be.hc.dm_revoke({ fe: domid(1), gfn: gfn(0x800000 + 9), count: 2 })).toBe(0);
    expect([CTL.REVOCATIONS, CTL.REVOKE_P2M_REMOVED, CTL.REVOKE_SHOOTDOWNS, CTL.REVOKE_SPLITS, CTL.REVOKE_VCPUS_PAUSED].map((w) => ctl(m, w))).toEqual([1, 2, 1, 1, 0]);
    be.stop();
  });
});
