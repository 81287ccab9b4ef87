/**
 * xgsim's own, the toolstack's part (xl, libxl): destroying a domain and
 * telling its backends. No Xen counterpart in the hypervisor.
 */
import { domainDestroy } from '../xen/domain.js';
import type { Machine } from '../xen/machine.js';
import { XS_KEY, xsKey } from '../public/xenstore.js';

/**
 * Destroy domain `d` (xl destroy, on_crash=destroy) and, once it is gone,
 * tell its backends through xenstore (XS_KEY.RELEASED: Xen's @releaseDomain
 * watch fires), so they release what they still hold for it.
 */
export function toolstackDestroy(m: Machine, d: number): number {
  const rc = domainDestroy(m, d);
  if (rc === 0) Atomics.store(new Int32Array(m.sabs.store), xsKey(d, XS_KEY.RELEASED), 1);
  return rc;
}
