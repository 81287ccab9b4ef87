/**
 * The status quo that Qubes OS ships (docs/designs.md §3): the frontend
 * grants its own pages and the backend maps them with the grant table
 * (GNTTABOP_map_grant_ref, Linux gntdev and its dma-buf export);
 * revocation is the frontend ending access, which fails while the page is
 * mapped (Linux gnttab_end_foreign_access_ref; Xen's _set_status_v1 sets
 * GTF_reading/GTF_writing for as long as a map holds the entry); the
 * limits are the grant table's and maptrack's frames
 * (xen/common/grant_table.c opt_max_grant_frames, opt_max_maptrack_frames).
 *
 * Everything this design needs is the Xen that ships: the core's grant
 * table (hypervisor/xen/grant-table.ts) and nothing more. So it adds no
 * dm_op: Map, Revoke, Steal and Return answer -EOPNOTSUPP, as Xen's dm_op
 * (xen/arch/x86/hvm/dm.c dm_op, its `default: rc = -EOPNOTSUPP`) answers an
 * op it does not know; no access ever faults to a backend (no gfn is
 * revoked, so no IOREQ server owns a fault); it keeps no records, so a
 * dying domain leaves it nothing to undo and invariant 8 has nothing of
 * it to find. Its safety is the grant table's: the core's invariants
 * (grant pins against maptrack, page references, the isolation oracle)
 * check it as they check every grant.
 */
import { shippedXenDesign, type MemoryDesign } from '../../xen/design.js';

export const grants: MemoryDesign = shippedXenDesign('grants');
