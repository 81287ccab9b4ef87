/**
 * A domain's IOMMU context and the DMA of the device passed through to it
 * (xl.cfg `passthrough=`; xen/drivers/passthrough/iommu.c iommu_domain_init).
 * Which p2m entries a device reaches depends on how the context translates:
 *
 *  - share_pt (hd->hap_pt_share, iommu_use_hap_pt; VT-d's default under
 *    HAP): the IOMMU walks the p2m's own EPT tables, so a device reaches
 *    what the EPT entry lets the vCPUs reach (ept_p2m_type_to_flags,
 *    arch/x86/mm/p2m-ept.c): RAM, grant and foreign maps, mmio_direct — not
 *    mmio_dm, holes or revoked gfns. Nothing can be in the vCPUs' view and
 *    out of the device's.
 *  - sync_pt (hd->need_sync: AMD, or XEN_DOMCTL_IOMMU_no_sharept): tables of
 *    its own, which ept_set_entry keeps in step under the p2m lock —
 *    iommu_legacy_map with p2m_get_iommu_flags(type) (arch/x86/include/asm/
 *    p2m.h), iommu_legacy_unmap where those are 0. A design may leave an entry
 *    out (MemoryDesign.iommuExcludes: lending's rule 4, docs/designs.md §2).
 *
 * xgsim keeps no second set of tables: a DMA looks the p2m entry up and
 * applies the permissions the IOMMU's entry would have. In Xen both are
 * written under the p2m lock and the IOTLB is flushed before the p2m update
 * returns; here a DMA runs on the vCPU that programmed the device, between
 * two of its boundaries, so a removal's TLB shootdown — which waits for that
 * vCPU — waits for the DMA under way too (the IOTLB flush's drain), and no
 * DMA reaches a frame after its removal returned. No IOTLB is modelled
 * beyond that: the next DMA sees the p2m as it is.
 */
import type { DmaResult } from '../public/guest.js';
import { P2M } from '../public/types.js';
import { DOM, PASSTHROUGH } from '../layout/domains.js';
import { entryMfn, entryType, P2M_HOLE } from '../layout/p2m.js';
import { PS } from '../layout/frametable.js';
import { designOf } from './design.js';
import { notAllocated, reachViolated } from './isolation.js';
import type { Machine } from './machine.js';
import { p2mGet, p2mInRange } from './p2m.js';

/** IOMMUF_readable, IOMMUF_writable (xen/include/xen/iommu.h). */
export const IOMMUF = { readable: 1, writable: 2 } as const;
const RW = IOMMUF.readable | IOMMUF.writable;

/** p2m_get_iommu_flags for xgsim's types (mmio_ro_ranges is empty here): what iommu_legacy_map gives an entry. */
function syncFlags(t: number): number {
  switch (t) {
    case P2M.ram_rw:
    case P2M.grant_map_rw:
    case P2M.ram_logdirty:
    case P2M.map_foreign:
    case P2M.mmio_direct:
      return RW;
    case P2M.ram_ro:
    case P2M.grant_map_ro:
      return IOMMUF.readable;
    default:
      return 0;
  }
}

/** The read and write bits ept_p2m_type_to_flags gives an EPT entry: what a share_pt IOMMU walking it honours. */
function eptFlags(t: number): number {
  switch (t) {
    case P2M.ram_rw:
    case P2M.grant_map_rw:
    case P2M.map_foreign:
    case P2M.mmio_direct:
      return RW;
    case P2M.ram_ro:
    case P2M.ram_shared:
    case P2M.ram_logdirty:
    case P2M.grant_map_ro:
    case P2M.ioreq_server:
      return IOMMUF.readable;
    default:
      return 0;
  }
}

/** What d's IOMMU lets its device do at p2m entry `e` (0: nothing; also for a domain with no device). Lock-free. */
export function iommuFlagsOf(m: Machine, d: number, e: number): number {
  const mode = m.dom.at(d, DOM.PASSTHROUGH);
  if (mode === PASSTHROUGH.disabled || e === P2M_HOLE || entryMfn(e) < 0) return 0;
  if (mode === PASSTHROUGH.share_pt) return eptFlags(entryType(e));
  const f = syncFlags(entryType(e));
  return f !== 0 && designOf(m).iommuExcludes(m, d, e) ? 0 : f;
}

/** d's IOMMU flags at `gfn`. */
export function iommuFlags(m: Machine, d: number, gfn: number): number {
  return p2mInRange(m, d, gfn) ? iommuFlagsOf(m, d, p2mGet(m, d, gfn)) : 0;
}

const FAULT: DmaResult = { ok: false, value: 0xffffffff };

/**
 * One 32-bit DMA of d's device at (gfn, offset), on the vCPU that programmed
 * it: translated by d's IOMMU, refused (an IOMMU fault: Xen logs it, the
 * device sees the transaction fail) where it maps nothing or nothing
 * writable. A frame reached is judged as a guest access is (the isolation
 * oracle, reachable_not_free).
 */
export function dmaAccess(m: Machine, d: number, gfn: number, offset: number, write: boolean, value: number): DmaResult {
  const ps = m.config.page_size_bytes;
  if (!Number.isInteger(offset) || offset < 0 || offset + 4 > ps || (offset & 3) !== 0 || !p2mInRange(m, d, gfn)) return FAULT;
  const e = p2mGet(m, d, gfn);
  const f = iommuFlagsOf(m, d, e);
  if ((f & (write ? IOMMUF.writable : IOMMUF.readable)) === 0) return FAULT;
  const mfn = entryMfn(e);
  const r = m.regionOf(mfn);
  if (r < 0) return FAULT;
  if (m.checking && r === 0) {
    // The texts only on a failure (every checked DMA comes here).
    if (m.reach.may(mfn, d) === false) reachViolated(m, d, mfn, `DMA ${write ? 'wrote' : 'read'} gfn ${gfn} (passthrough device), reaching`);
    const st = m.ft.state(mfn);
    if (st !== PS.INUSE) notAllocated(m, d, mfn, st, `DMA ${write ? 'wrote' : 'read'} gfn ${gfn} (passthrough device), reaching`);
  }
  const w = (mfn - m.regionBase[r]!) * (ps >> 2) + (offset >> 2);
  const view = m.regions[r]!;
  if (!write) return { ok: true, value: Atomics.load(view, w) >>> 0 };
  Atomics.store(view, w, value | 0);
  return { ok: true, value: 0xffffffff };
}
