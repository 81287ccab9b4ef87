/**
 * dm_op (xen/arch/x86/hvm/dm.c) operations that belong neither to the IOREQ
 * servers (ioreq.ts) nor to the memory-sharing design (designs/):
 * XEN_DMOP_set_mem_type, the device model's way to make guest RAM
 * read-only (writes discarded) and writable again.
 */
import { DOM } from '../layout/domains.js';
import { entryMfn, entryType, p2mEntry, P2M_HOLE } from '../layout/p2m.js';
import { BUG } from '../layout/region.js';
import type { Machine } from './machine.js';
import { putDomain } from './domain-ref.js';
import { lockRemoteDomain } from './memory.js';
import { p2mGet, p2mInRange, p2mLock, p2mRemoveLocked, p2mRoomLocked, p2mSetLocked, p2mUnlock } from './p2m.js';
import { EINVAL, EPERM } from '../public/errno.js';
import { P2M, type P2mType } from '../public/types.js';

/**
 * dm_op's prologue, then set_mem_type: rcu_lock_remote_domain_by_id (the
 * target exists: -ESRCH; is not the caller: -EPERM), xsm_dm_op(XSM_DM_PRIV)
 * (the caller is the target's device model — here its topology `backend` —
 * or the control domain: -EPERM).
 */
export function dmSetMemType(m: Machine, ld: number, d: number, first: number, nr: number, type: P2mType): number {
  const rc = lockRemoteDomain(m, ld, d);
  if (rc < 0) return rc;
  try {
    if (m.dom.at(ld, DOM.PRIVILEGED) === 0 && m.dom.at(d, DOM.BACKEND) !== ld + 1) return -EPERM;
    return setMemType(m, d, first, nr, type);
  } finally {
    putDomain(m, d);
  }
}

/**
 * set_mem_type (xen/arch/x86/hvm/dm.c): the range must not wrap and must
 * end inside the p2m (Xen: `last_pfn > domain_get_maximum_gpfn(d)`, the
 * highest gfn ever mapped; here the domain's guest physical width) → -EINVAL; then gfn by gfn,
 * stopping at the first refusal with its errno — the gfns before it stay
 * changed, as in Xen. Only HVMMEM_ram_rw and HVMMEM_ram_ro are offered
 * (xgsim has no HVMMEM_mmio_dm hole type and no p2m_ioreq_server).
 */
function setMemType(m: Machine, d: number, first: number, nr: number, nt: P2mType): number {
  if (!Number.isInteger(first) || !Number.isInteger(nr) || nr < 1) return -EINVAL;
  if (!p2mInRange(m, d, first) || !p2mInRange(m, d, first + nr - 1)) return -EINVAL;
  if (nt !== P2M.ram_rw && nt !== P2M.ram_ro) return -EINVAL;
  for (let g = first; g < first + nr; g++) {
    const rc = changeTypeOne(m, d, g, nt);
    if (rc < 0) return rc;
  }
  return 0;
}

/**
 * One gfn: allow_p2m_type_change (RAM may become another RAM type;
 * anything else, a hole included, is -EINVAL), then p2m_change_type_one.
 * ram_rw → ram_ro takes the write access away: the old translation is
 * flushed from every vCPU (p2mRemoveLocked with the new entry as its
 * replacement) before the call returns, as Xen's EPT change flushes.
 * ram_ro → ram_rw takes nothing away: no flush.
 */
function changeTypeOne(m: Machine, d: number, g: number, nt: P2mType): number {
  p2mLock(m, d, 'dm.set_mem_type');
  try {
    const e = p2mGet(m, d, g);
    const ot = entryType(e);
    if (e === P2M_HOLE || (ot !== P2M.ram_rw && ot !== P2M.ram_ro)) return -EINVAL;
    if (ot === nt) return 0;
    // A gfn inside a superpage splits it: p2m_set_entry fails -ENOMEM when the p2m pool cannot give the table.
    const room = p2mRoomLocked(m, d, [g]);
    if (room < 0) return room;
    const ne = p2mEntry(entryMfn(e), nt);
    if (nt === P2M.ram_ro) p2mRemoveLocked(m, d, [g], ne);
    else p2mSetLocked(m, d, g, ne);
    if (p2mGet(m, d, g) !== ne) BUG(`set_mem_type: d${d} gfn ${g} changed under the p2m lock`);
    return 0;
  } finally {
    p2mUnlock(m, d);
  }
}
