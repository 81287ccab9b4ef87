/**
 * iommu.ts: what a passthrough device's DMA reaches, per IOMMU context —
 * p2m_get_iommu_flags for tables of its own (sync_pt), the EPT's own
 * permissions for an IOMMU that walks it (share_pt) — and no device, no DMA.
 */
import { describe, expect, it } from 'vitest';
import { P2M } from '../public/types.js';
import { testMachine } from '../../tests/test-machine.js';
import { designOf } from './design.js';
import { dmSetMemType } from './dm.js';
import { dmaAccess, IOMMUF, iommuFlags } from './iommu.js';
import { checkQuiescent } from '../checker/checker.js';

const RW = IOMMUF.readable | IOMMUF.writable;

describe('IOMMU and DMA', () => {
  // d0 dom0 (BAR owner); d1 sync_pt, d2 share_pt, d3 no device: all served by dom0.
  const machine = () =>
    testMachine({
      domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0, passthrough: 'sync_pt' }, { memory_pages: 64, backend: 0, passthrough: 'share_pt' }, { memory_pages: 64, backend: 0 }],
      bars: [{ name: 'gpu', owner: 0, nr_pages: 16 }],
    });

  it('reaches RAM read-write and ram_ro read-only; a hole, a revoked gfn and a domain without a device fault', () => {
    const m = machine();
    for (const d of [1, 2]) {
      expect(dmaAccess(m, d, 5, 8, true, 0x1234).ok).toBe(true);
      expect(dmaAccess(m, d, 5, 8, false, 0)).toEqual({ ok: true, value: 0x1234 });
      expect(dmSetMemType(m, 0, d, 6, 1, P2M.ram_ro)).toBe(0);
      expect(iommuFlags(m, d, 6)).toBe(IOMMUF.readable);
      expect(dmaAccess(m, d, 6, 0, true, 1).ok).toBe(false); // an IOMMU fault, not a discarded write
      expect(dmaAccess(m, d, 200, 0, false, 0)).toEqual({ ok: false, value: 0xffffffff });
    }
    expect(dmaAccess(m, 3, 5, 0, false, 0).ok).toBe(false);
    expect(iommuFlags(m, 3, 5)).toBe(0);
    checkQuiescent(m);
    expect(m.log.records()).toEqual([]);
  });

  it('a Map of RAM or of a BAR is mmio_direct, in the IOMMU as Xen maps it; mmio_dm and a revoked gfn are not', () => {
    const m = machine();
    const bar = m.sabs.bars[0]!.base_mfn;
    const ram = designOf(m).map(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 });
    expect(designOf(m).map(m, 0, { fe: 1, source: { kind: 'bar', mfn: bar }, count: 1, at: 101 }).rc).toBe(0);
    expect(designOf(m).map(m, 0, { fe: 1, source: { kind: 'ram', gfn: 5 }, count: 1, at: 102, type: P2M.mmio_dm }).rc).toBe(0);
    expect([100, 101, 102].map((g) => iommuFlags(m, 1, g))).toEqual([RW, RW, 0]);
    expect(dmaAccess(m, 1, 101, 4, true, 0xba5).ok).toBe(true); // peer-to-peer DMA into the BAR
    expect(new Int32Array(m.sabs.bars[0]!.sab)[1]).toBe(0xba5);
    expect(designOf(m).revoke(m, 0, { id: ram.id })).toBe(0);
    expect(iommuFlags(m, 1, 100)).toBe(0);
    checkQuiescent(m);
    expect(m.log.records()).toEqual([]);
  });
});
