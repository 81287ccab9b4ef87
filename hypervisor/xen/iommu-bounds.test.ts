/**
 * iommu.ts at its bounds: the flags of every p2m type in each IOMMU context
 * (p2m_get_iommu_flags for sync_pt, ept_p2m_type_to_flags for share_pt,
 * nothing without a device), an entry with no frame, the design's exclusion
 * (lending's rule 4) in sync_pt only; and a DMA's offset, alignment, gfn and
 * frame bounds, the words it reads and writes, and what the oracles say of
 * the frame it reaches.
 */
import { describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { PS } from '../layout/frametable.js';
import { entryMfn, p2mEntry, P2M_HOLE } from '../layout/p2m.js';
import { P2M, type P2mType } from '../public/types.js';
import { dmaAccess, IOMMUF, iommuFlags, iommuFlagsOf } from './iommu.js';
import type { Machine } from './machine.js';
import { p2mGet, p2mGfnLimit, p2mLock, p2mSetLocked, p2mUnlock } from './p2m.js';

const R = IOMMUF.readable;
const RW = IOMMUF.readable | IOMMUF.writable;
const FAULT = { ok: false, value: 0xffffffff };
const TYPES = Object.values(P2M) as P2mType[];

const SYNC: Record<string, number> = { ram_rw: RW, grant_map_rw: RW, ram_logdirty: RW, map_foreign: RW, mmio_direct: RW, ram_ro: R, grant_map_ro: R };
const EPT: Record<string, number> = { ram_rw: RW, grant_map_rw: RW, map_foreign: RW, mmio_direct: RW, ram_ro: R, ram_shared: R, ram_logdirty: R, grant_map_ro: R, ioreq_server: R };
const name = (t: number): string => Object.keys(P2M)[Object.values(P2M).indexOf(t as P2mType)]!;

// d0 dom0; d1 sync_pt, d2 share_pt, d3 no device.
const machine = (o: { design?: string; checking?: boolean } = {}): Machine =>
  testMachine({
    domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 16, backend: 0, passthrough: 'sync_pt' }, { memory_pages: 16, backend: 0, passthrough: 'share_pt' }, { memory_pages: 16, backend: 0 }],
    bars: [{ name: 'gpu', owner: 0, nr_pages: 4 }],
    ...o,
  });

/** Write an entry by hand, as a broken p2m would leave it. */
function put(m: Machine, d: number, g: number, e: number): void {
  p2mLock(m, d, 'test');
  p2mSetLocked(m, d, g, e);
  p2mUnlock(m, d);
}

describe('IOMMU flags per type', () => {
  it('sync_pt: p2m_get_iommu_flags; share_pt: the EPT entry\'s own bits; no device: nothing', () => {
    const m = machine();
    for (const mfn of [0, 5]) {
      for (const t of TYPES) {
        const e = p2mEntry(mfn, t);
        expect(iommuFlagsOf(m, 1, e), `sync ${name(t)} mfn ${mfn}`).toBe(SYNC[name(t)] ?? 0);
        expect(iommuFlagsOf(m, 2, e), `share ${name(t)} mfn ${mfn}`).toBe(EPT[name(t)] ?? 0);
        expect(iommuFlagsOf(m, 3, e), `none ${name(t)}`).toBe(0);
      }
    }
  });

  it('an entry with no frame or a hole gives nothing, whatever its type', () => {
    const m = machine();
    for (const d of [1, 2]) {
      expect(iommuFlagsOf(m, d, P2M_HOLE)).toBe(0);
      for (const t of [P2M.ram_ro, P2M.ram_rw, P2M.grant_map_rw, P2M.mmio_direct]) expect(iommuFlagsOf(m, d, p2mEntry(-1, t)), `d${d} ${name(t)}`).toBe(0);
    }
  });

  it('lending: a lent page (mmio_direct on RAM) stays out of a sync_pt IOMMU, not out of a share_pt one; a BAR frame is in both', () => {
    const m = machine({ design: 'lending' });
    const ram = p2mEntry(7, P2M.mmio_direct);
    const bar = p2mEntry(m.sabs.bars[0]!.base_mfn, P2M.mmio_direct);
    expect([iommuFlagsOf(m, 1, ram), iommuFlagsOf(m, 2, ram)]).toEqual([0, RW]);
    expect([iommuFlagsOf(m, 1, bar), iommuFlagsOf(m, 2, bar)]).toEqual([RW, RW]);
    expect(iommuFlagsOf(m, 1, p2mEntry(7, P2M.ram_rw))).toBe(RW);
  });

  it('iommuFlags: a gfn outside the p2m gives nothing', () => {
    const m = machine();
    const lim = p2mGfnLimit(m, 1);
    expect([iommuFlags(m, 1, 3), iommuFlags(m, 1, -1), iommuFlags(m, 1, lim), iommuFlags(m, 1, 1.5)]).toEqual([RW, 0, 0, 0]);
  });
});

describe('DMA bounds', () => {
  it('a 32-bit word inside the page, aligned; anything else faults and writes nothing', () => {
    const m = machine();
    const ps = m.config.page_size_bytes;
    const mfn = entryMfn(p2mGet(m, 1, 3));
    const word = (off: number): number => Atomics.load(m.regions[0]!, mfn * (ps >> 2) + (off >> 2)) >>> 0;
    for (const off of [-4, -1, 1.5, 2, 1, ps - 2, ps, ps + 4, NaN]) {
      expect(dmaAccess(m, 1, 3, off, true, 0x5a5a5a5a), `offset ${off}`).toEqual(FAULT);
      expect(dmaAccess(m, 1, 3, off, false, 0), `offset ${off}`).toEqual(FAULT);
    }
    for (let off = 0; off < ps; off += 4) expect(word(off)).toBe(0);
    expect(dmaAccess(m, 1, 3, ps - 4, true, 0xfedcba98)).toEqual({ ok: true, value: 0xffffffff });
    expect(word(ps - 4)).toBe(0xfedcba98);
    expect(dmaAccess(m, 1, 3, ps - 4, false, 0)).toEqual({ ok: true, value: 0xfedcba98 });
    expect(dmaAccess(m, 1, 3, 0, true, 7)).toEqual({ ok: true, value: 0xffffffff });
    expect(dmaAccess(m, 1, 3, 0, false, 0)).toEqual({ ok: true, value: 7 });
    expect(word(4)).toBe(0);
    const lim = p2mGfnLimit(m, 1);
    expect(dmaAccess(m, 1, lim, 0, false, 0)).toEqual(FAULT);
    expect(dmaAccess(m, 1, -1, 0, false, 0)).toEqual(FAULT);
    expect(m.log.records()).toEqual([]);
  });

  it('read-only: reads pass, writes fault; a frame in no region faults; a BAR page past the first is its own words', () => {
    const m = machine();
    const ps = m.config.page_size_bytes;
    put(m, 1, 20, p2mEntry(entryMfn(p2mGet(m, 1, 4)), P2M.ram_ro));
    expect(dmaAccess(m, 1, 20, 0, false, 0).ok).toBe(true);
    expect(dmaAccess(m, 1, 20, 0, true, 1)).toEqual(FAULT);
    const bar = m.sabs.bars[0]!;
    put(m, 1, 21, p2mEntry(bar.base_mfn + bar.nr_pages, P2M.mmio_direct)); // one past the BAR
    expect(dmaAccess(m, 1, 21, 0, false, 0)).toEqual(FAULT);
    put(m, 1, 22, p2mEntry(bar.base_mfn + 2, P2M.mmio_direct));
    expect(dmaAccess(m, 1, 22, 8, true, 0xbeef)).toEqual({ ok: true, value: 0xffffffff });
    const v = new Int32Array(bar.sab);
    expect(v[2 * (ps >> 2) + 2]).toBe(0xbeef);
    expect(v.reduce((a, x) => a + (x !== 0 ? 1 : 0), 0)).toBe(1);
    expect(dmaAccess(m, 1, 22, 8, false, 0)).toEqual({ ok: true, value: 0xbeef });
    expect(m.log.records()).toEqual([]);
  });

  it('with checking on, a frame no right explains and a freed frame are reported, naming the DMA; with it off, not', () => {
    for (const checking of [true, false]) {
      const m = machine({ checking });
      const other = entryMfn(p2mGet(m, 2, 5));
      put(m, 1, 30, p2mEntry(other, P2M.ram_rw));
      expect(dmaAccess(m, 1, 30, 0, false, 0).ok).toBe(true);
      expect(dmaAccess(m, 1, 30, 0, true, 2).ok).toBe(true);
      const mine = entryMfn(p2mGet(m, 1, 6));
      m.ft.setState(mine, PS.FREE);
      expect(dmaAccess(m, 1, 6, 0, true, 1).ok).toBe(true);
      expect(dmaAccess(m, 1, 6, 0, false, 0).ok).toBe(true);
      m.ft.setState(mine, PS.INUSE);
      const got = m.log.records().map((r) => `${r.invariant}: ${r.text}`);
      expect(got, `checking ${checking}`).toEqual(
        checking
          ? [
              `isolation: d1 DMA read gfn 30 (passthrough device), reaching mfn ${other}, which no right of d's explains (rights: d2 owner×1)`,
              `isolation: d1 DMA wrote gfn 30 (passthrough device), reaching mfn ${other}, which no right of d's explains (rights: d2 owner×1)`,
              `reachable_not_free: d1 DMA wrote gfn 6 (passthrough device), reaching mfn ${mine}, which is free (on the heap)`,
              `reachable_not_free: d1 DMA read gfn 6 (passthrough device), reaching mfn ${mine}, which is free (on the heap)`,
            ]
          : [],
      );
    }
  });
});
