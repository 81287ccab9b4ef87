/**
 * AMD's virtio-gpu userptr series as the issue describes its v3 (Nov 2025;
 * docs/designs.md §4): the frontend hands the backend a userptr blob of its
 * own pages, and the backend pins them for the buffer's lifetime
 * (pin_user_pages with FOLL_LONGTERM): no MMU notifier, no revoke, and the
 * backend's memory pressure cannot evict them.
 *
 * On Xen the backend reaches a frontend page by a foreign map (privcmd,
 * XENMEM_add_to_physmap_batch with XENMAPSPACE_gmfn_foreign → Xen's
 * p2m_add_foreign), and the page reference that map takes (get_page_from_gfn)
 * is the pin: the frame stays allocated until the backend unmaps it,
 * whatever the frontend does with its gfn. So, like `grants`, the design
 * needs only the Xen that ships (hypervisor/xen/memory.ts foreignMap): it
 * adds no dm_op (Map, Revoke, Steal, Return → -EOPNOTSUPP, dm_op's answer
 * to an op it does not know), no fault reaches a backend, and it keeps no
 * records. Its safety is the core's: page references, the foreign maps'
 * rights in the isolation oracle (REACH.FOREIGN), invariant 2.
 *
 * Its unsafe variant, `pinned-userptr-unpin-while-mapped` (xen/buggify.ts), drops
 * the pin while the backend's mapping stays.
 */
import { EOPNOTSUPP } from '../../public/errno.js';
import type { DmOpResult, MemoryDesign } from '../../xen/design.js';

const NOT_AN_OP: DmOpResult = { rc: -EOPNOTSUPP, index: -1, id: 0 };

export const pinnedUserptr: MemoryDesign = {
  name: 'pinned-userptr',
  // No shared records; a SharedArrayBuffer of 0 bytes is a valid, empty region.
  regionBytes: () => 0,
  map: () => NOT_AN_OP,
  revoke: () => -EOPNOTSUPP,
  steal: () => NOT_AN_OP,
  return: () => NOT_AN_OP,
  domainDying: () => {},
  faultServer: () => -1,
  foreignMapRefused: () => false,
  check: () => {},
  liveRecords: () => 0,
};
