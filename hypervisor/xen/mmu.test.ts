/**
 * The MMU's hit path and its invariant checks, on one thread: a frontend
 * vCPU that is OFFLINE while the backend revokes (so the shootdown needs no
 * acknowledgement from this thread) keeps its TLB, as a descheduled vCPU
 * does, and takes the flush when it starts again.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TLB_BATCH_ACCESSES, TLB_ENTRIES } from '../layout/constants.js';
import { VcpuContext } from './guest-cpu.js';
import { DOM } from '../layout/domains.js';
import { VC } from '../layout/vcpus.js';
import type { Machine } from './machine.js';
import { p2mGet, p2mLock, p2mSetLocked, p2mUnlock } from './p2m.js';
import { entryMfn, p2mEntry } from '../layout/p2m.js';
import { dmMap } from '../designs/primitives/map.js';
import { dmRevoke } from '../designs/primitives/revoke.js';
import { ACCESS } from '../public/guest.js';
import { gfn, P2M } from '../public/types.js';
import { testMachine } from '../../tests/test-machine.js';

function cpuOf(m: Machine, d: number): VcpuContext {
  const c = new VcpuContext(m, { domid: d, vcpu: 0, slot: m.dom.at(d, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
  c.start();
  return c;
}

/** Backend d0 Maps its gfn 10 at fe d1's gfn `at`; the frontend reads it once (cached). */
function mappedAndCached(bugs: string, at: number, checking = true): { m: Machine; be: VcpuContext; fe: VcpuContext; id: number } {
  const m = testMachine({ bugs, checking });
  const be = cpuOf(m, 0);
  const fe = cpuOf(m, 1);
  be.write32(gfn(10), 0, 0x1234);
  const r = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 10 }, count: 1, at });
  expect(r.rc).toBe(0);
  expect(fe.read32(gfn(at), 0)).toBe(0x1234);
  return { m, be, fe, id: r.id };
}

/**
 * With skip-tlb-flush-on-revoke: the frontend's TLB still holds gfn `at`
 * after Revoke returned (it was stopped meanwhile: a Revoke does not wait
 * for it), and the backend wrote 0x7777 into the frame since.
 */
function staleAfterRevoke(at: number): { m: Machine; fe: VcpuContext } {
  const { m, be, fe, id } = mappedAndCached('skip-tlb-flush-on-revoke', at);
  fe.stop();
  expect(dmRevoke(m, 0, { id })).toBe(0);
  fe.start();
  be.write32(gfn(10), 0, 0x7777);
  return { m, fe };
}

describe('Mmu', () => {
  it.each([true, false])('after a flush no gfn hits a slot it does not index, not even -1 (an empty tag of -1 once let it reach a revoked frame); checking %s', (checking) => {
    // gfn 127 sits in slot 63, the slot gfn -1 indexes.
    const at = 64 + TLB_ENTRIES - 1;
    const { m, be, fe, id } = mappedAndCached('', at, checking);
    fe.stop();
    expect(dmRevoke(m, 0, { id })).toBe(0);
    fe.start();
    be.write32(gfn(10), 0, 0x7777); // the backend reuses the page
    for (const g of [-1, ~(at & (TLB_ENTRIES - 1)), at + TLB_ENTRIES, 2 ** 31 - 1, -(2 ** 31)]) {
      expect(fe.read32(gfn(g), 0), `gfn ${g}`).toBe(0xffffffff);
      expect(fe.last_access, `gfn ${g}`).toBe(ACCESS.NULL_IO);
    }
    expect(fe.read32(gfn(at), 0)).toBe(0xffffffff);
    expect(m.log.records()).toEqual([]);
  });

  it('with skip-tlb-flush-on-revoke, the stale access is a use after revoke, reported once per entry', () => {
    const at = 70;
    const { m, fe } = staleAfterRevoke(at);
    // The frontend still reaches the frame: that is the bug, and the GEN check names it.
    expect(fe.read32(gfn(at), 0)).toBe(0x7777);
    fe.write32(gfn(at), 0, 1);
    expect(fe.read32(gfn(at), 0)).toBe(1);
    const v = m.log.records().filter((x) => x.invariant === 'no_use_after_revoke');
    expect(v).toHaveLength(1);
    expect(v[0]!.text).toMatch(/d1 slot \d+ read gfn 70 through a TLB entry whose removal completed/);
  });

  it.each([true, false])('with the flush, the access after Revoke goes to emulation and nothing is reported; checking %s', (checking) => {
    const at = 70;
    const { m, fe, id } = mappedAndCached('', at, checking);
    fe.stop();
    expect(dmRevoke(m, 0, { id })).toBe(0);
    fe.start();
    expect(fe.read32(gfn(at), 0)).toBe(0xffffffff);
    fe.write32(gfn(at), 0, 5);
    expect(m.log.records()).toEqual([]);
  });

  it.each([true, false])('counts every access, hit, miss or emulated, and passes a boundary every TLB_BATCH_ACCESSES; checking %s', (checking) => {
    const m = testMachine({ checking });
    const c = cpuOf(m, 1);
    const beat0 = m.vcpus.at(c.mmu.slot, VC.HEARTBEAT);
    const before = c.mmu.accesses;
    for (let i = 0; i < 1000; i++) c.write32(gfn(i & 7), 4 * (i & 15), i);
    for (let i = 0; i < 1000; i++) c.read32(gfn(500 + (i & 3)), 0); // beyond RAM: null handler
    expect(c.mmu.accesses - before).toBe(2000);
    expect(m.vcpus.at(c.mmu.slot, VC.HEARTBEAT) - beat0).toBe(Math.floor(2000 / TLB_BATCH_ACCESSES));
  });

  it.each([true, false])('a BAR frame is cached apart from RAM: a RAM gfn and a BAR gfn sharing a slot each reach their own frame, and Revoke ends the BAR one; checking %s', (checking) => {
    const m = testMachine({ bars: [{ name: 'gpu', owner: 0, nr_pages: 4 }], checking });
    const fe = cpuOf(m, 1);
    const bar = m.sabs.bars[0]!;
    const at = 64 + 5; // slot 5, as RAM gfn 5
    const r = dmMap(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar.base_mfn + 1 }, count: 1, at });
    expect(r.rc).toBe(0);
    fe.write32(gfn(5), 8, 0x55);
    for (let i = 0; i < 3; i++) {
      fe.write32(gfn(at), 8, 0xb00 + i);
      expect(fe.read32(gfn(at), 8)).toBe(0xb00 + i);
      expect(fe.read32(gfn(5), 8)).toBe(0x55);
    }
    expect(m.regions[1]![(4096 >> 2) + 2]).toBe(0xb02); // the BAR's page 1, word 2
    fe.stop();
    expect(dmRevoke(m, 0, { id: r.id })).toBe(0);
    fe.start();
    expect(fe.read32(gfn(at), 8)).toBe(0xffffffff);
    expect(fe.read32(gfn(5), 8)).toBe(0x55);
    expect(m.log.records()).toEqual([]);
  });

  it.each([true, false])('a read-only entry is read through the TLB, and a write to it is discarded, not cached as writable; checking %s', (checking) => {
    const m = testMachine({ checking });
    const c = cpuOf(m, 1);
    c.write32(gfn(3), 0, 0xabc);
    const mfn = entryMfn(p2mGet(m, 1, 3));
    p2mLock(m, 1, 'test');
    p2mSetLocked(m, 1, 100, p2mEntry(mfn, P2M.ram_ro));
    p2mUnlock(m, 1);
    expect(c.read32(gfn(100), 0)).toBe(0xabc);
    c.write32(gfn(100), 0, 0xdef);
    expect(c.last_access).toBe(ACCESS.OK);
    expect(c.read32(gfn(100), 0)).toBe(0xabc);
    expect(c.read32(gfn(3), 0)).toBe(0xabc);
  });

  it.each([true, false])('last_access is the outcome of the last access, a hit included (a hit stores no outcome); checking %s', (checking) => {
    const m = testMachine({ checking });
    const c = cpuOf(m, 1);
    c.write32(gfn(3), 0, 7); // fills the slot
    for (let i = 0; i < 3 * TLB_BATCH_ACCESSES; i++) {
      expect(c.read32(gfn(500), 0)).toBe(0xffffffff); // beyond RAM: null handler
      expect(c.last_access).toBe(ACCESS.NULL_IO);
      expect(c.read32(gfn(3), 0)).toBe(7);
      expect(c.last_access).toBe(ACCESS.OK);
      c.write32(gfn(500), 0, 1);
      expect(c.last_access).toBe(ACCESS.NULL_IO);
      c.write32(gfn(3), 0, 7);
      expect(c.last_access).toBe(ACCESS.OK);
    }
    // Across a boundary of a hypercall, the outcome stays the last access's.
    expect(c.read32(gfn(500), 0)).toBe(0xffffffff);
    c.hc.current_reservation();
    expect(c.last_access).toBe(ACCESS.NULL_IO);
  });

  type RunOp = { kind: 'read' | 'write'; gfn: number; offset: number; words: number; seed: number } | { kind: 'balloon'; gfn: number };
  const runOp: fc.Arbitrary<RunOp> = fc.oneof(
    fc.record({ kind: fc.constantFrom('read' as const, 'write' as const), gfn: fc.integer({ min: -2, max: 70 }), offset: fc.integer({ min: -8, max: 4100 }), words: fc.integer({ min: 0, max: 2600 }), seed: fc.integer() }),
    // Not gfn 3: gfn 66 below aliases its frame with no reference of its own
    // (a test fixture, not something Xen would build), so ballooning 3 would
    // leave 66 reading a free frame, which the isolation oracle rightly reports.
    fc.record({ kind: fc.constant('balloon' as const), gfn: fc.integer({ min: 0, max: 63 }).filter((g) => g !== 3) }),
  );

  it.each([true, false])('readWords/writeWords are exactly the loop of read32/write32 they stand for (values, outcomes, access count, boundaries, memory); checking %s', (checking) => {
    fc.assert(
      fc.property(fc.array(runOp, { maxLength: 12 }), (ops) => {
        const run = testMachine({ checking });
        const loop = testMachine({ checking });
        const a = cpuOf(run, 1);
        const b = cpuOf(loop, 1);
        for (const c of [a, b]) {
          // gfn 66 read-only (writes discarded) over gfn 3's frame; 64, 65, 67… are holes (null handler).
          const mfn = entryMfn(p2mGet(c.m, 1, 3));
          p2mLock(c.m, 1, 'test');
          p2mSetLocked(c.m, 1, 66, p2mEntry(mfn, P2M.ram_ro));
          p2mUnlock(c.m, 1);
        }
        const wpp = 4096 / 4;
        for (const op of ops) {
          if (op.kind === 'balloon') {
            expect(a.hc.decrease_reservation([gfn(op.gfn)])).toBe(b.hc.decrease_reservation([gfn(op.gfn)]));
            continue;
          }
          const w0 = (op.offset >> 2) & (wpp - 1);
          const at = (k: number): [number, number] => [op.gfn + Math.floor((w0 + k) / wpp), ((w0 + k) % wpp) * 4];
          if (op.kind === 'read') {
            const got = new Uint32Array(op.words);
            a.readWords(gfn(op.gfn), op.offset, got);
            const want = new Uint32Array(op.words);
            for (let k = 0; k < op.words; k++) want[k] = b.read32(gfn(at(k)[0]), at(k)[1]);
            let bad = -1;
            for (let k = 0; k < op.words && bad < 0; k++) if (got[k] !== want[k]) bad = k;
            expect(bad, `first word read differently (${got[bad]} vs ${want[bad]})`).toBe(-1);
          } else {
            const from = Uint32Array.from({ length: op.words }, (_, k) => Math.imul(op.seed ^ k, 0x9e3779b1) >>> 0);
            a.writeWords(gfn(op.gfn), op.offset, from);
            for (let k = 0; k < op.words; k++) b.write32(gfn(at(k)[0]), at(k)[1], from[k]!);
          }
          expect(a.last_access).toBe(b.last_access);
          expect(a.mmu.accesses).toBe(b.mmu.accesses);
          expect(run.vcpus.at(a.mmu.slot, VC.HEARTBEAT)).toBe(loop.vcpus.at(b.mmu.slot, VC.HEARTBEAT));
        }
        const fa = run.frames.i32;
        const fb = loop.frames.i32;
        let firstDiff = -1;
        for (let i = 0; i < fa.length && firstDiff < 0; i++) if (fa[i] !== fb[i]) firstDiff = i;
        expect(firstDiff, 'first RAM word that differs').toBe(-1);
        expect(run.log.records()).toEqual([]);
        expect(loop.log.records()).toEqual([]);
      }),
      { numRuns: 40 },
    );
  });

  it('with checking on, every word of a run through a stale entry is checked: skip-tlb-flush-on-revoke is reported', () => {
    const at = 70;
    const { m, fe } = staleAfterRevoke(at);
    const got = new Uint32Array(4);
    fe.readWords(gfn(at), 0, got);
    expect(got[0]).toBe(0x7777);
    expect(m.log.records().filter((x) => x.invariant === 'no_use_after_revoke')).toHaveLength(1);
  });

  it('GuestCpu.mem is the same MMU: accesses through either door count together and share last_access', () => {
    const m = testMachine({ checking: false });
    const c = cpuOf(m, 1);
    const mem = c.mem;
    const before = c.mmu.accesses;
    mem.write32(gfn(3), 8, 0xfeed);
    expect(c.read32(gfn(3), 8)).toBe(0xfeed);
    expect(mem.read32(gfn(500), 0)).toBe(0xffffffff);
    expect(c.last_access).toBe(ACCESS.NULL_IO);
    c.write32(gfn(3), 0, 1);
    expect(mem.last_access).toBe(ACCESS.OK);
    expect(c.mmu.accesses - before).toBe(4);
  });
});
