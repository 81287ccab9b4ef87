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
import { shippedXenDesign, type MemoryDesign } from '../../xen/design.js';

export const pinnedUserptr: MemoryDesign = shippedXenDesign('pinned-userptr');
