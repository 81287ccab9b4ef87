/**
 * domctl (xen/common/domctl.c) for a privileged caller: max_mem,
 * iomem_permission, destroydomain. All under the global domctl lock, as
 * do_domctl takes domctl_lock.
 */
import { DOM, DS } from '../layout/domains.js';
import { GLOBAL_LOCK, type Machine } from './machine.js';
import { domainDestroy } from './domain.js';
import { iomemAdd, iomemRemove } from './iomem.js';
export { iomemAdd, iomemPermitted } from './iomem.js';
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

/** XEN_DOMCTL_iomem_permission: grant or revoke a domain's access to machine frames of MMIO. */
export function domctlIomemPermission(m: Machine, ld: number, d: number, first: number, nr: number, allow: boolean): number {
  if (!privileged(m, ld)) return -EPERM;
  if (!Number.isInteger(first) || !Number.isInteger(nr) || nr <= 0 || first < m.config.nr_frames || first + nr > m.mfnLimit) return -EINVAL;
  if (!live(m, d)) return -ESRCH;
  m.lock(GLOBAL_LOCK.DOMCTL, 'domctl.iomem_permission');
  try {
    return allow ? iomemAdd(m, d, first, nr) : iomemRemove(m, d, first, nr);
  } finally {
    m.unlock(GLOBAL_LOCK.DOMCTL);
  }
}

export function domctlDestroy(m: Machine, ld: number, d: number, selfSlot: number): number {
  if (!privileged(m, ld)) return -EPERM;
  if (d === ld) return -EINVAL;
  return domainDestroy(m, d, selfSlot);
}
