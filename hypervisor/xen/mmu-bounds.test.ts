/**
 * The MMU's edges, on one thread (docs/verification.md §8): how each p2m
 * type is reached (hvm_hap_nested_page_fault), the gfn range, a fill that
 * meets a removal in flight, emulated accesses of every outcome and width
 * (hvmemul_do_io), the retry bound, the flush epoch at a boundary and a
 * shootdown waiting elsewhere, and the isolation oracle on fill and on hit.
 */
import { describe, expect, it } from 'vitest';
import { TLB_BATCH_ACCESSES } from '../layout/constants.js';
import { VcpuContext } from './guest-cpu.js';
import { DOM } from '../layout/domains.js';
import { STAT, VC } from '../layout/vcpus.js';
import { CTL } from '../layout/control.js';
import { PAGE_GEN, entryMfn, p2mEntry, P2M_HOLE } from '../layout/p2m.js';
import { REACH } from '../layout/reach.js';
import type { Machine } from './machine.js';
import { p2mGet, p2mGfnLimit, p2mLeafWord, p2mLock, p2mSetLocked, p2mUnlock } from './p2m.js';
import { dmMap } from '../designs/primitives/map.js';
import { dmRevoke } from '../designs/primitives/revoke.js';
import { type EmulateHook } from './mmu.js';
import { HypervisorBug } from '../layout/region.js';
import { realSched, setSched, type Sched } from './platform.js';
import { VS } from './vcpu.js';
import { ACCESS, type AccessOutcome } from '../public/guest.js';
import { gfn, P2M, type P2mTypeName } from '../public/types.js';
import { testMachine } from '../../tests/test-machine.js';

function cpuOf(m: Machine, d: number): VcpuContext {
  const c = new VcpuContext(m, { domid: d, vcpu: 0, slot: m.dom.at(d, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
  c.start();
  return c;
}

function setEntry(m: Machine, d: number, g: number, e: number): void {
  p2mLock(m, d, 'test');
  p2mSetLocked(m, d, g, e);
  p2mUnlock(m, d);
}

function stat(c: VcpuContext, s: number): number {
  return c.m.vcpus.stats[c.mmu.slot * STAT.WORDS + s]!;
}

/** An emulation hook that answers `outcome` with `value` and records what it was asked. */
function hook(outcome: AccessOutcome, value: number): { h: EmulateHook; calls: Array<{ gfn: number; offset: number; width: number; write: boolean; value: number }> } {
  const calls: Array<{ gfn: number; offset: number; width: number; write: boolean; value: number }> = [];
  return {
    calls,
    h: (_mmu, g, offset, width, write, v) => {
      calls.push({ gfn: g, offset, width, write, value: v });
      return { outcome, value };
    },
  };
}

describe('Mmu: how each p2m type is reached (hvm_hap_nested_page_fault)', () => {
  // Xen: the EPT entry's permissions come from the type (ept_p2m_type_to_flags): ram_rw, grant_map_rw,
  // map_foreign, mmio_direct read-write; ram_ro, grant_map_ro read-only; the rest not present,
  // so the access faults to the hypervisor: mmio_dm and ioreq_server go to emulation (handle_mmio), a write
  // to ram_ro is discarded (p2m_is_discard_write), one to grant_map_ro injects #GP. ram_logdirty is mapped
  // read-only in EPT, but the fault marks the page dirty and the write goes on (p2m_change_type_one to ram_rw):
  // to the guest, read-write.
  const rw: P2mTypeName[] = ['ram_rw', 'grant_map_rw', 'map_foreign', 'mmio_direct', 'ram_logdirty'];
  // Not ram_shared: xgsim discards a write to it, where Xen unshares the page (mem_sharing_unshare_page) and
  // the write goes on — a difference this test does not assert either way.
  const ro: P2mTypeName[] = ['ram_ro', 'grant_map_ro'];
  const none: P2mTypeName[] = ['invalid', 'mmio_dm', 'populate_on_demand', 'ram_paging_out', 'ram_paged', 'ram_paging_in', 'ram_broken', 'ioreq_server'];

  it.each([true, false])('reads and writes through each type of entry over a RAM frame of its own; checking %s', (checking) => {
    for (const t of [...rw, ...ro, ...none]) {
      const m = testMachine({ checking });
      const c = cpuOf(m, 1);
      c.write32(gfn(3), 0, 0xabc);
      setEntry(m, 1, 100, p2mEntry(entryMfn(p2mGet(m, 1, 3)), P2M[t]));
      const faults = stat(c, STAT.GUEST_FAULTS);
      const nullIo = stat(c, STAT.NULL_IO);
      const read = c.read32(gfn(100), 0);
      const readOutcome = c.last_access;
      c.write32(gfn(100), 0, 0xdef);
      const writeOutcome = c.last_access;
      const after = c.read32(gfn(3), 0);
      if (rw.includes(t)) {
        expect([t, read, readOutcome, writeOutcome, after]).toEqual([t, 0xabc, ACCESS.OK, ACCESS.OK, 0xdef]);
        expect(stat(c, STAT.NULL_IO) - nullIo).toBe(0);
      } else if (ro.includes(t)) {
        const w = t === 'grant_map_ro' ? ACCESS.FAULT : ACCESS.OK;
        expect([t, read, readOutcome, writeOutcome, after]).toEqual([t, 0xabc, ACCESS.OK, w, 0xabc]);
        expect(stat(c, STAT.GUEST_FAULTS) - faults).toBe(t === 'grant_map_ro' ? 1 : 0);
      } else {
        expect([t, read, readOutcome, writeOutcome, after]).toEqual([t, 0xffffffff, ACCESS.NULL_IO, ACCESS.NULL_IO, 0xabc]);
        expect(stat(c, STAT.NULL_IO) - nullIo).toBe(2);
      }
      // The read-only and absent types never became writable through the TLB: a second write changes nothing either.
      c.write32(gfn(100), 0, 0x123);
      expect(c.read32(gfn(3), 0), t).toBe(rw.includes(t) ? 0x123 : 0xabc);
      expect(m.log.records(), t).toEqual([]);
    }
  });

  it('a read-only gfn below 64 (gfn = its slot) is cached for reads only: a write through it is still discarded', () => {
    // p2m_ram_ro (p2m_is_discard_write): the write tag of a read-only slot must match no gfn of that slot, its own included.
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    c.write32(gfn(5), 0, 0xabc);
    setEntry(m, 1, 5, p2mEntry(entryMfn(p2mGet(m, 1, 5)), P2M.ram_ro));
    c.mmu.flushAll();
    expect(c.read32(gfn(5), 0)).toBe(0xabc);
    c.write32(gfn(5), 0, 0xdef);
    expect(c.read32(gfn(5), 0)).toBe(0xabc);
  });

  it('an entry whose frame is neither RAM nor a BAR is not reached: the access is emulated (the null handler)', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    setEntry(m, 1, 100, p2mEntry(m.config.nr_frames + 5000, P2M.mmio_direct));
    expect(c.read32(gfn(100), 0)).toBe(0xffffffff);
    expect(c.last_access).toBe(ACCESS.NULL_IO);
  });

  it.each([true, false])('the gfn range is 0 … limit − 1: the last gfn is reached, the limit and a fraction are not; checking %s', (checking) => {
    const m = testMachine({ checking });
    const c = cpuOf(m, 1);
    const limit = p2mGfnLimit(m, 1);
    c.write32(gfn(0), 0, 0x600d);
    setEntry(m, 1, limit - 1, p2mEntry(entryMfn(p2mGet(m, 1, 0)), P2M.ram_rw));
    expect(c.read32(gfn(limit - 1), 0)).toBe(0x600d);
    expect(c.last_access).toBe(ACCESS.OK);
    for (const g of [limit, limit + 64, 0.5, 64.5]) {
      expect(c.read32(gfn(g), 0), `gfn ${g}`).toBe(0xffffffff);
      expect(c.last_access, `gfn ${g}`).toBe(ACCESS.NULL_IO);
      expect(c.mmu.seenEntry).toBe(P2M_HOLE);
    }
    expect(c.read32(gfn(0), 0)).toBe(0x600d);
  });
});

describe('Mmu: a fill during a removal (the seqlock on GEN)', () => {
  it('a fill that reads an odd GEN uses the old translation once and does not cache it: after the removal the gfn is a hole', () => {
    // ept_set_entry + the flush: a removal bumps GEN (odd), changes the entry, flushes, bumps GEN (even). A
    // vCPU that walked in between may use the old entry for that access (the remover waits for its ack) but
    // must not keep it. Here the removal completes without the flush (as skip-tlb-flush-on-unmap would), so
    // a cached entry would still reach the frame, and with GEN odd in it the use after the removal would go
    // unreported.
    const m = testMachine();
    const c = cpuOf(m, 1);
    c.write32(gfn(5), 0, 0x5555);
    c.mmu.flushAll();
    const idx = p2mLeafWord(m, 1, 5);
    expect(idx).toBeGreaterThanOrEqual(0);
    c.mmu.preemptIn = 1;
    c.mmu.accessPoint = () => {
      Atomics.add(m.p2m.w, idx + PAGE_GEN, 1);
    };
    expect(c.read32(gfn(5), 0)).toBe(0x5555);
    c.mmu.accessPoint = null;
    Atomics.exchange(m.p2m.w, idx, P2M_HOLE);
    Atomics.add(m.p2m.w, idx + PAGE_GEN, 1);
    expect(c.read32(gfn(5), 0)).toBe(0xffffffff);
    expect(c.last_access).toBe(ACCESS.NULL_IO);
    expect(m.log.records()).toEqual([]);
  });

  it('a cached entry whose GEN moved by one (a removal begun, not finished) is not reported; by two it is, once', () => {
    const m = testMachine();
    const c = cpuOf(m, 1);
    c.write32(gfn(5), 0, 0x5555);
    const idx = p2mLeafWord(m, 1, 5);
    Atomics.add(m.p2m.w, idx + PAGE_GEN, 1);
    expect(c.read32(gfn(5), 0)).toBe(0x5555);
    expect(m.log.records()).toEqual([]);
    Atomics.add(m.p2m.w, idx + PAGE_GEN, 1);
    expect(c.read32(gfn(5), 0)).toBe(0x5555);
    c.write32(gfn(5), 0, 1);
    const v = m.log.records().filter((r) => r.invariant === 'no_use_after_revoke');
    expect(v).toHaveLength(1);
    expect(v[0]!.text).toMatch(/^d1 slot \d+ read gfn 5 through a TLB entry whose removal completed \(gen 0 → 2\)$/);
    // Reported once per entry: two more removals completing are a new report.
    Atomics.add(m.p2m.w, idx + PAGE_GEN, 2);
    c.write32(gfn(5), 0, 2);
    const w = m.log.records().filter((r) => r.invariant === 'no_use_after_revoke');
    expect(w).toHaveLength(2);
    expect(w[1]!.text).toMatch(/wrote gfn 5 .*\(gen 2 → 4\)$/);
  });
});

describe('Mmu: the isolation oracle on a fill and on a hit (checking on)', () => {
  it('a fill reaching a frame d has no right to, or a free one, is reported; a hit on a frame whose right went is reported', () => {
    const m = testMachine();
    const c = cpuOf(m, 1);
    // d2's frame at d1's gfn 100 (no grant, no map): an isolation breach.
    const other = entryMfn(p2mGet(m, 2, 0));
    setEntry(m, 1, 100, p2mEntry(other, P2M.ram_rw));
    c.read32(gfn(100), 0);
    expect(m.log.records().map((r) => r.invariant)).toEqual(['isolation']);
    expect(m.log.records()[0]!.text).toMatch(new RegExp(`^d1 read gfn 100, reaching mfn ${other}, `));
    // A frame on the heap at gfn 101: reachable and free.
    const free = m.heap.w[4 + m.heap.w[0]! - 1]!;
    expect(m.ft.owner(free)).toBe(-1);
    setEntry(m, 1, 101, p2mEntry(free, P2M.ram_rw));
    c.write32(gfn(101), 0, 1);
    expect(m.log.records().map((r) => r.invariant)).toContain('reachable_not_free');
    expect(m.log.records().find((r) => r.invariant === 'reachable_not_free')!.text).toMatch(new RegExp(`^d1 wrote gfn 101 \\(TLB fill\\), reaching mfn ${free}, which is free`));
    // d1's own frame, cached, then its right dropped behind the TLB's back: the next hit is reported.
    const n = m.log.records().length;
    c.write32(gfn(7), 0, 7);
    expect(m.log.records()).toHaveLength(n);
    const own = entryMfn(p2mGet(m, 1, 7));
    m.reach.release(own, 1, REACH.OWNER);
    c.write32(gfn(7), 0, 8);
    expect(m.log.records()).toHaveLength(n + 1);
    expect(m.log.records()[n]!.text).toMatch(new RegExp(`^d1 wrote gfn 7, reaching mfn ${own}, `));
    m.reach.grant(own, 1, REACH.OWNER);
  });

  it('a BAR frame is not watched by the oracle (it has no frame-table entry), on fill or hit', () => {
    const m = testMachine({ bars: [{ name: 'gpu', owner: 0, nr_pages: 4 }] });
    const c = cpuOf(m, 1);
    const bar = m.sabs.bars[0]!;
    setEntry(m, 1, 100, p2mEntry(bar.base_mfn, P2M.mmio_direct));
    c.write32(gfn(100), 0, 0xba);
    expect(c.read32(gfn(100), 0)).toBe(0xba);
    expect(m.log.records()).toEqual([]);
  });
});

describe('Mmu: emulated accesses (hvmemul_do_io) of every outcome and width', () => {
  it('each outcome is counted in its own statistic and is the access\'s outcome; the answer is taken as 32 bits', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    const cases: Array<[AccessOutcome, number]> = [
      [ACCESS.NULL_IO, STAT.NULL_IO],
      [ACCESS.IOREQ, STAT.IOREQS],
      [ACCESS.IOREQ_FAULT, STAT.IOREQ_FAULTS],
      [ACCESS.FAULT, STAT.IOREQ_FAULTS],
    ];
    for (const [outcome, s] of cases) {
      const { h, calls } = hook(outcome, -2);
      c.mmu.emulate = h;
      const before = [STAT.NULL_IO, STAT.IOREQS, STAT.IOREQ_FAULTS, STAT.GUEST_FAULTS].map((k) => stat(c, k));
      expect(c.read32(gfn(500), 12)).toBe(0xfffffffe);
      expect(c.last_access).toBe(outcome);
      c.write32(gfn(500), 16, 0x77);
      expect(c.last_access).toBe(outcome);
      expect(calls).toEqual([
        { gfn: 500, offset: 12, width: 4, write: false, value: 0 },
        { gfn: 500, offset: 16, width: 4, write: true, value: 0x77 },
      ]);
      const after = [STAT.NULL_IO, STAT.IOREQS, STAT.IOREQ_FAULTS, STAT.GUEST_FAULTS].map((k) => stat(c, k));
      expect(after.map((v, i) => v - before[i]!), `outcome ${outcome}`).toEqual([STAT.NULL_IO, STAT.IOREQS, STAT.IOREQ_FAULTS, STAT.GUEST_FAULTS].map((k) => (k === s ? 2 : 0)));
    }
  });

  it('read/write of 1, 2, 4 and 8 bytes: little-endian in RAM, the offset taken within the page', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    c.write(gfn(3), 8, 8, 0x0102030405060708n);
    expect(c.last_access).toBe(ACCESS.OK);
    expect(c.read32(gfn(3), 8)).toBe(0x05060708);
    expect(c.read32(gfn(3), 12)).toBe(0x01020304);
    expect(c.read(gfn(3), 8, 1)).toBe(0x08n);
    expect(c.read(gfn(3), 9, 2)).toBe(0x0607n);
    expect(c.read(gfn(3), 10, 4)).toBe(0x03040506n);
    expect(c.read(gfn(3), 8, 8)).toBe(0x0102030405060708n);
    expect(c.last_access).toBe(ACCESS.OK);
    // An offset past the page is the same byte of the page (the low 12 bits).
    expect(c.read(gfn(3), 4096 + 9, 1)).toBe(0x07n);
    c.write(gfn(3), 4096 + 15, 1, 0xffn);
    expect(c.read(gfn(3), 8, 8)).toBe(0xff02030405060708n);
    c.write(gfn(3), 1, 2, 0x1234n);
    expect(c.read32(gfn(3), 0)).toBe(0x00123400);
  });

  it('an emulated read is the answer cut to the width, all ones of the width when the answer is all ones; a write passes its low 32 bits', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    const a = hook(ACCESS.IOREQ, 0x12345678);
    c.mmu.emulate = a.h;
    expect(c.read(gfn(500), 2, 1)).toBe(0x78n);
    expect(c.read(gfn(500), 2, 2)).toBe(0x5678n);
    expect(c.read(gfn(500), 2, 4)).toBe(0x12345678n);
    expect(c.read(gfn(500), 2, 8)).toBe(0x12345678n);
    expect(a.calls.map((x) => x.width)).toEqual([1, 2, 4, 8]);
    c.write(gfn(500), 6, 8, 0xaabbccdd11223344n);
    expect(a.calls.at(-1)).toEqual({ gfn: 500, offset: 6, width: 8, write: true, value: 0x11223344 });
    expect(c.last_access).toBe(ACCESS.IOREQ);
    const ones = hook(ACCESS.NULL_IO, -1);
    c.mmu.emulate = ones.h;
    expect(c.read(gfn(500), 0, 8)).toBe(0xffffffffffffffffn);
    expect(c.read(gfn(500), 0, 2)).toBe(0xffffn);
    expect(c.last_access).toBe(ACCESS.NULL_IO);
  });

  it('a write to ram_ro through read/write is discarded without emulation; one to grant_map_ro is a #GP, not emulated either', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    c.write32(gfn(3), 0, 0xabc);
    const mfn = entryMfn(p2mGet(m, 1, 3));
    setEntry(m, 1, 100, p2mEntry(mfn, P2M.ram_ro));
    setEntry(m, 1, 101, p2mEntry(mfn, P2M.grant_map_ro));
    const { h, calls } = hook(ACCESS.IOREQ, 0);
    c.mmu.emulate = h;
    c.write(gfn(100), 0, 4, 0x1n);
    expect(c.last_access).toBe(ACCESS.OK);
    const faults = stat(c, STAT.GUEST_FAULTS);
    c.write(gfn(101), 0, 4, 0x2n);
    expect(c.last_access).toBe(ACCESS.FAULT);
    expect(stat(c, STAT.GUEST_FAULTS) - faults).toBe(1);
    expect(c.read(gfn(101), 0, 4)).toBe(0xabcn);
    expect(calls).toEqual([]);
    expect(c.read32(gfn(3), 0)).toBe(0xabc);
  });

  it('LOCK CMPXCHG on RAM swaps only on a match and returns the old value; on a hole it reaches nothing', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    c.write32(gfn(3), 4, 10);
    expect(c.cmpxchg32(gfn(3), 4, 11, 20)).toBe(10);
    expect(c.last_access).toBe(ACCESS.OK);
    expect(c.read32(gfn(3), 4)).toBe(10);
    expect(c.cmpxchg32(gfn(3), 4, 10, -1)).toBe(10);
    expect(c.read32(gfn(3), 4)).toBe(0xffffffff);
    expect(c.cmpxchg32(gfn(3), 4, -1, 5)).toBe(0xffffffff);
    expect(c.read32(gfn(3), 4)).toBe(5);
    expect(c.cmpxchg32(gfn(500), 0, 0, 1)).toBe(0xffffffff);
    expect(c.last_access).toBe(ACCESS.NULL_IO);
  });
});

describe('Mmu: the retry bound (XSA-262: a device model must not hold a vCPU in Xen for ever)', () => {
  it('an access the device model answers RETRY for ever gives up after 5 tries as an ioreq fault, each try an access', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    const { h, calls } = hook(ACCESS.RETRY, 0);
    c.mmu.emulate = h;
    for (const access of [() => c.read32(gfn(500), 0), () => c.write32(gfn(500), 0, 1), () => c.read(gfn(500), 0, 2), () => c.write(gfn(500), 0, 2, 1n)]) {
      calls.length = 0;
      const before = c.mmu.accesses;
      const faults = stat(c, STAT.IOREQ_FAULTS);
      const v = access();
      expect(calls).toHaveLength(5);
      expect(c.mmu.accesses - before).toBe(5);
      expect(stat(c, STAT.IOREQ_FAULTS) - faults).toBe(5);
      expect(c.last_access).toBe(ACCESS.IOREQ_FAULT);
      if (typeof v === 'number') expect(v).toBe(0xffffffff);
      if (typeof v === 'bigint') expect(v).toBe(0xffffn);
    }
  });

  it('an answer after fewer retries is the access\'s answer; with ioreq-retry-unbounded the retries go on until the watchdog', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    let left = 4;
    c.mmu.emulate = () => (left-- > 0 ? { outcome: ACCESS.RETRY, value: 0 } : { outcome: ACCESS.IOREQ, value: 0x42 });
    expect(c.read32(gfn(500), 0)).toBe(0x42);
    expect(c.last_access).toBe(ACCESS.IOREQ);
    const b = testMachine({ checking: false, bugs: 'ioreq-retry-unbounded' });
    const d = cpuOf(b, 1);
    let n = 0;
    d.mmu.emulate = () => (n++ < 50 ? { outcome: ACCESS.RETRY, value: 0 } : { outcome: ACCESS.IOREQ, value: 0x43 });
    expect(d.read32(gfn(500), 0)).toBe(0x43);
    expect(n).toBe(51);
    d.mmu.emulate = () => ({ outcome: ACCESS.RETRY, value: 0 });
    expect(() => d.read32(gfn(500), 0)).toThrow(HypervisorBug);
    expect(() => d.read32(gfn(500), 0)).toThrow(/watchdog: d1 vCPU slot \d+ retried an emulated access to gfn 500 1000 times/);
  });
});

describe('Mmu: the instruction boundary (flush epoch, a shootdown waiting elsewhere)', () => {
  it('a moved epoch drops the TLB at the next boundary and is acknowledged, once; an unmoved one is not a flush', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    c.write32(gfn(3), 0, 3);
    c.write32(gfn(4), 0, 4);
    // gfn 3 now translated behind the TLB's back to gfn 4's frame: the cached entry still reaches the old one.
    setEntry(m, 1, 3, p2mEntry(entryMfn(p2mGet(m, 1, 4)), P2M.ram_rw));
    const flushes = stat(c, STAT.TLB_FLUSHES);
    const ei = m.dom.epochIndex(1);
    const e = Atomics.add(m.dom.w, ei, 1) + 1;
    // Up to the boundary the old translation is used; the boundary (64 accesses per batch) takes the flush.
    let k = 0;
    while (c.mmu.accesses % TLB_BATCH_ACCESSES !== 0) {
      expect(c.read32(gfn(3), 0)).toBe(3);
      k++;
    }
    expect(k).toBeGreaterThan(0);
    expect(m.vcpus.at(c.mmu.slot, VC.ACK_EPOCH)).toBe(e - 1);
    expect(c.read32(gfn(3), 0)).toBe(4);
    expect(m.vcpus.at(c.mmu.slot, VC.ACK_EPOCH)).toBe(e);
    expect(stat(c, STAT.TLB_FLUSHES) - flushes).toBe(1);
    for (let i = 0; i < 2 * TLB_BATCH_ACCESSES; i++) c.read32(gfn(3), 0);
    expect(stat(c, STAT.TLB_FLUSHES) - flushes).toBe(1);
  });

  it('with a shootdown waiting somewhere, a boundary steps aside (BLOCKED while it yields) and takes a flush made meanwhile', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    const st = m.vcpus.idx(c.mmu.slot, VC.STATE);
    const seen: number[] = [];
    const ei = m.dom.epochIndex(1);
    const s: Sched = {
      ...realSched,
      yield() {
        seen.push(Atomics.load(m.vcpus.w, st));
        Atomics.add(m.dom.w, ei, 1); // a shootdown of d1 while this vCPU is off the core
      },
    };
    c.write32(gfn(3), 0, 3);
    c.write32(gfn(4), 0, 4);
    setEntry(m, 1, 3, p2mEntry(entryMfn(p2mGet(m, 1, 4)), P2M.ram_rw));
    setSched(s);
    try {
      c.mmu.boundary();
      expect(seen).toEqual([]); // no shootdown waiting: no yield
      Atomics.add(m.control.w, CTL.SHOOTDOWNS, 1);
      c.mmu.boundary();
      expect(seen).toEqual([VS.BLOCKED]);
      expect(Atomics.load(m.vcpus.w, st)).toBe(VS.GUEST);
      expect(m.vcpus.at(c.mmu.slot, VC.ACK_EPOCH)).toBe(Atomics.load(m.dom.w, ei));
      expect(c.read32(gfn(3), 0)).toBe(4);
      // Not in guest mode (paused by the simulator): no step aside.
      Atomics.store(m.vcpus.w, st, VS.PAUSED);
      c.mmu.boundary();
      expect(seen).toHaveLength(1);
      expect(Atomics.load(m.vcpus.w, st)).toBe(VS.PAUSED);
      Atomics.store(m.vcpus.w, st, VS.GUEST);
    } finally {
      Atomics.sub(m.control.w, CTL.SHOOTDOWNS, 1);
      setSched(realSched);
    }
  });

  it('a Revoke while the frontend is in guest mode waits for its flush IPI (the simulator\'s awaitAck), then its access is emulated', () => {
    const m = testMachine();
    const be = cpuOf(m, 0);
    const fe = cpuOf(m, 1);
    be.write32(gfn(10), 0, 0x1234);
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 10 }, count: 1, at: 70 });
    expect(r.rc).toBe(0);
    expect(fe.read32(gfn(70), 0)).toBe(0x1234);
    const acks: number[] = [];
    setSched({
      ...realSched,
      awaitAck(slot) {
        acks.push(slot);
        if (slot === fe.mmu.slot) fe.mmu.flushIpi();
        else if (slot === be.mmu.slot) be.mmu.flushIpi();
      },
    });
    try {
      expect(dmRevoke(m, 0, { id: r.id })).toBe(0);
    } finally {
      setSched(realSched);
    }
    expect(acks).toContain(fe.mmu.slot);
    expect(fe.read32(gfn(70), 0)).toBe(0xffffffff);
    expect(m.log.records()).toEqual([]);
  });
});
