/**
 * The seed's design (xen-devel, "Xen memory management primitives for GPU
 * virtualization", Feb 2025): Map, Revoke, Steal and Return as dm_ops of
 * the backend that runs the frontend's IOREQ server, with a host-wide
 * mapping registry of their records (registry.ts). Semantics, check order
 * and status codes: docs/primitives.md; Revoke's algorithm and bound:
 * docs/revoke.md.
 *
 *   common.ts    checks and look-ups every primitive shares
 *   map.ts       Map            revoke.ts  Revoke (and the transitive walk)
 *   steal.ts     Steal          return.ts  Return
 *   teardown.ts  a dying domain's records
 *   check.ts     invariant 4 against the registry
 */
import type { MemoryDesign } from '../../xen/design.js';
import { registryOf } from './common.js';
import { checkMappings } from './check.js';
import { dmMap } from './map.js';
import { Registry } from './registry.js';
import { P2M_TABLE_ENTRIES } from '../../layout/constants.js';
import { dmReturn } from './return.js';
import { dmRevoke, faultServer } from './revoke.js';
import { dmSteal } from './steal.js';
import { registryDomainDying } from './teardown.js';

export const primitives: MemoryDesign = {
  name: 'primitives',
  regionBytes: (c) => Registry.bytes(c.nr_frames, c.p2m_pool_pages * P2M_TABLE_ENTRIES),
  // The records' index after them is derived from them (registry.ts).
  stateBytes: (c) => Registry.stateBytes(c.nr_frames, c.p2m_pool_pages * P2M_TABLE_ENTRIES),
  map: dmMap,
  revoke: dmRevoke,
  steal: dmSteal,
  return: dmReturn,
  domainDying: registryDomainDying,
  faultServer,
  // The seed's Map of RAM leaves the frame foreign-mappable by dom0 (docs/semantics.md §4).
  foreignMapRefused: () => false,
  // The seed says nothing of IOMMUs: a Map'd page is mmio_direct, which Xen's IOMMU maps (p2m_get_iommu_flags).
  iommuExcludes: () => false,
  check: checkMappings,
  liveRecords: (m) => registryOf(m).activeCount(),
};
