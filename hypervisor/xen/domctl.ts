/**
 * domctl (xen/common/domctl.c) for a privileged caller: max_mem,
 * iomem_permission, destroydomain. iomem_permission holds the global domctl
 * lock, which also guards every domain's iomem_caps (xen/iomem.ts).
 */
import { DOM, DS } from '../layout/domains.js';
import { GLOBAL_LOCK, type Machine } from './machine.js';
import { domainDestroy } from './domain.js';
import { iomemAccessPermitted, iomemDenyAccess, iomemPermitAccess } from './iomem.js';
export { iomemAdd, iomemPermitted } from './iomem.js';
import { BUGS } from './buggify.js';
import { IOMEM_MFN_LIMIT, MFN_WRAP } from '../layout/constants.js';
import { EINVAL, EPERM, ESRCH } from '../public/errno.js';

function privileged(m: Machine, ld: number): boolean {
  return m.dom.at(ld, DOM.PRIVILEGED) !== 0;
}
function live(m: Machine, d: number): boolean {
  if (!Number.isInteger(d) || d < 0 || d >= m.nd) return false;
  const st = m.dom.state(d);
  return st === DS.RUNNING || st === DS.CRASHED;
}

export function domctlMaxMem(m: Machine, ld: number, d: number, max_pages: number): number {
  if (!privileged(m, ld)) return -EPERM;
  if (!Number.isInteger(max_pages) || max_pages < 0) return -EINVAL;
  if (!live(m, d)) return -ESRCH;
  const lk = m.dom.at(d, DOM.LOCK_PAGE_ALLOC);
  m.lock(lk, 'domctl.max_mem', d);
  // Like XEN_DOMCTL_max_mem: a max below tot_pages is accepted; the domain
  // may only ratchet down to it (no allocation succeeds meanwhile).
  m.dom.set(d, DOM.MAX_PAGES, max_pages);
  m.dom.set(d, DOM.RATCHET, m.dom.at(d, DOM.TOT_PAGES) > max_pages ? 1 : 0);
  m.unlock(lk);
  return 0;
}

/**
 * XEN_DOMCTL_iomem_permission (xen/common/domctl.c, do_domctl): grant or
 * revoke d's access to the `nr` machine frames from `first`, in Xen's order
 * of checks:
 *   1. d is looked up: none → -ESRCH for a privileged caller, -EPERM for
 *      anyone else (rcu_lock_domain_by_id failing in do_domctl);
 *   2. the range wraps past 2^64 (`(mfn + nr_mfns - 1) < mfn`) → -EINVAL;
 *      xgsim also refuses what its Int32 caps cannot hold: not whole
 *      numbers, nr < 1, or reaching IOMEM_MFN_LIMIT (docs/fidelity.md D13);
 *   3. xsm_iomem_permission(XSM_PRIV): the caller is not privileged → -EPERM;
 *   4. with the caps locked: the caller's own iomem_caps do not contain the
 *      range → -EPERM (iomem_access_permitted(current->domain, …)): a
 *      domain grants or denies only MMIO it holds itself;
 *   5. iomem_permit_access / iomem_deny_access: 0, or -ENOMEM with nothing
 *      changed. Denying frames d does not hold is 0.
 * Xen takes the two domains' caps_lock (iocaps_double_lock, in domid order,
 * XSA-492) instead of domctl_lock; xgsim's domctl lock covers every
 * domain's caps (xen/iomem.ts). Xen's memory_type_changed after a change
 * has no counterpart: xgsim has no cache attributes.
 */
export function domctlIomemPermission(m: Machine, ld: number, d: number, first: number, nr: number, allow: boolean): number {
  // do_domctl's rcu_lock_domain_by_id also finds a dying domain until its
  // last reference goes; xgsim's domctls take a running or crashed one only.
  if (!live(m, d)) return privileged(m, ld) ? -ESRCH : -EPERM;
  if (first + nr - 1 >= MFN_WRAP) return -EINVAL;
  if (!Number.isInteger(first) || !Number.isInteger(nr) || first < 0 || nr < 1 || first + nr > IOMEM_MFN_LIMIT) return -EINVAL;
  if (!privileged(m, ld)) return -EPERM;
  const s = first;
  const e = first + nr - 1;
  m.lock(GLOBAL_LOCK.DOMCTL, 'domctl.iomem_permission');
  try {
    // The lookup that counts: domain creation holds domctl too, so the
    // caps written below are those of the domain found here.
    if (!live(m, d)) return -ESRCH;
    if (!m.control.buggy(BUGS['iomem-permission-unchecked-caller']) && !iomemAccessPermitted(m, ld, s, e)) return -EPERM;
    return allow ? iomemPermitAccess(m, d, s, e) : iomemDenyAccess(m, d, s, e);
  } finally {
    m.unlock(GLOBAL_LOCK.DOMCTL);
  }
}

export function domctlDestroy(m: Machine, ld: number, d: number, selfSlot: number): number {
  if (!privileged(m, ld)) return -EPERM;
  if (d === ld) return -EINVAL;
  return domainDestroy(m, d, selfSlot);
}
