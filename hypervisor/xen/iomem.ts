/**
 * A domain's iomem_caps: the machine frames of MMIO it may map (Xen's
 * d->iomem_caps rangeset, iomem_access_permitted). Written under the domctl
 * lock (or by the toolstack before vCPUs run); read lock-free.
 */
import { DOM, MAX_IOMEM_RANGES } from '../layout/domains.js';
import type { Machine } from './machine.js';
import { ENOENT, ENOSPC } from '../public/errno.js';

/** Caller holds domctl (or is the single-threaded toolstack at boot). */
export function iomemAdd(m: Machine, d: number, first: number, nr: number): number {
  const n = m.dom.at(d, DOM.NR_IOMEM);
  if (n >= MAX_IOMEM_RANGES) return -ENOSPC;
  m.dom.set(d, DOM.IOMEM + 2 * n, first);
  m.dom.set(d, DOM.IOMEM + 2 * n + 1, nr);
  m.dom.set(d, DOM.NR_IOMEM, n + 1);
  return 0;
}

export function iomemRemove(m: Machine, d: number, first: number, nr: number): number {
  const n = m.dom.at(d, DOM.NR_IOMEM);
  for (let i = 0; i < n; i++) {
    if (m.dom.at(d, DOM.IOMEM + 2 * i) === first && m.dom.at(d, DOM.IOMEM + 2 * i + 1) === nr) {
      const last = n - 1;
      m.dom.set(d, DOM.IOMEM + 2 * i, m.dom.at(d, DOM.IOMEM + 2 * last));
      m.dom.set(d, DOM.IOMEM + 2 * i + 1, m.dom.at(d, DOM.IOMEM + 2 * last + 1));
      m.dom.set(d, DOM.NR_IOMEM, last);
      return 0;
    }
  }
  return -ENOENT;
}

/** Does d's iomem_caps cover [first, first + nr)? (Xen: iomem_access_permitted.) */
export function iomemPermitted(m: Machine, d: number, first: number, nr: number): boolean {
  const n = m.dom.at(d, DOM.NR_IOMEM);
  for (let i = 0; i < n; i++) {
    const s = m.dom.at(d, DOM.IOMEM + 2 * i);
    const c = m.dom.at(d, DOM.IOMEM + 2 * i + 1);
    if (first >= s && first + nr <= s + c) return true;
  }
  return false;
}

