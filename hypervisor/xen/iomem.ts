/**
 * A domain's iomem_caps: the machine frames of MMIO it may map, Xen's
 * d->iomem_caps rangeset (xen/include/xen/iocap.h: iomem_permit_access,
 * iomem_deny_access, iomem_access_permitted). A permit merges with what it
 * overlaps or touches, a deny splits, and "permitted" means one range
 * covers the whole of [s, e] (xen/rangeset.ts).
 *
 * Written only under the global domctl lock, read lock-free: the set is
 * computed aside and published whole (layout/domains.ts, iomem_caps,
 * steps W1–W3 and R1–R3), so a reader never sees a merge or split half
 * done. Xen guards d->iomem_caps with d->caps_lock, taken by
 * iocaps_double_lock for the caller and the target in domid order
 * (XSA-492); here the single domctl lock covers every domain's caps at
 * once, so there is no order to keep (docs/decisions.md, "iomem_caps").
 */
import { BUGS } from './buggify.js';
import { MAX_IOMEM_RANGES } from '../layout/constants.js';
import type { IomemRange } from '../layout/domains.js';
import { BUG } from '../layout/region.js';
import { GLOBAL_LOCK, type Machine } from './machine.js';
import { rangesetAddRange, rangesetCanonical, rangesetContainsRange, rangesetRemoveRange } from './rangeset.js';
import { ENOENT, ENOMEM, ENOSPC } from '../public/errno.js';

function exactRanges(m: Machine): boolean {
  return m.control.buggy(BUGS['iomem-exact-ranges']);
}

/**
 * iomem_permit_access(d, s, e): rangeset_add_range on d's caps. -ENOMEM,
 * nothing changed, when the merged set needs more than MAX_IOMEM_RANGES
 * ranges (rangeset_add_range's alloc_range failure). Caller holds domctl.
 */
export function iomemPermitAccess(m: Machine, d: number, s: number, e: number): number {
  const cur = m.dom.iomemRanges(d);
  if (exactRanges(m)) {
    // The old list of exact ranges: appended as given, never merged.
    if (cur.length >= MAX_IOMEM_RANGES) return -ENOSPC;
    m.dom.iomemPublish(d, [...cur, { s, e }]);
    return 0;
  }
  return publishIfFits(m, d, rangesetAddRange(cur, s, e));
}

/**
 * iomem_deny_access(d, s, e): rangeset_remove_range on d's caps. Denying
 * frames d does not hold is 0 and changes nothing; a deny inside one range
 * splits it, and -ENOMEM (nothing changed) if the two halves do not fit.
 * Caller holds domctl.
 */
export function iomemDenyAccess(m: Machine, d: number, s: number, e: number): number {
  const cur = m.dom.iomemRanges(d);
  if (exactRanges(m)) {
    // The old list of exact ranges: only a range given exactly so goes; the last moves into its place.
    const i = cur.findIndex((r) => r.s === s && r.e === e);
    if (i < 0) return -ENOENT;
    const next = cur.slice();
    const last = next.pop()!;
    if (i < next.length) next[i] = last;
    m.dom.iomemPublish(d, next);
    return 0;
  }
  return publishIfFits(m, d, rangesetRemoveRange(cur, s, e));
}

function publishIfFits(m: Machine, d: number, next: IomemRange[]): number {
  if (!rangesetCanonical(next)) BUG(`d${d} iomem_caps not merged: ${JSON.stringify(next)}`);
  if (next.length > MAX_IOMEM_RANGES) return -ENOMEM; // nothing was published: the set is as it was
  m.dom.iomemPublish(d, next);
  return 0;
}

/** iomem_access_permitted(d, s, e): rangeset_contains_range on d's caps. Lock-free. */
export function iomemAccessPermitted(m: Machine, d: number, s: number, e: number): boolean {
  const caps = m.dom.iomemRanges(d);
  if (exactRanges(m)) return caps.some((r) => s >= r.s && e <= r.e);
  if (!rangesetCanonical(caps)) BUG(`d${d} iomem_caps read not merged: ${JSON.stringify(caps)}`);
  return rangesetContainsRange(caps, s, e);
}

/**
 * Does d's iomem_caps cover the `nr` frames from `first`? (Xen:
 * iomem_access_permitted(d, first, first + nr - 1).) Lock-free; Map holds
 * domctl around it so that the answer still holds when it installs.
 */
export function iomemPermitted(m: Machine, d: number, first: number, nr: number): boolean {
  if (!Number.isInteger(first) || !Number.isInteger(nr) || first < 0 || nr < 1) return false;
  return iomemAccessPermitted(m, d, first, first + nr - 1);
}

/** d's iomem_caps is empty (creation; Xen's rangeset_new). Caller holds domctl. */
export function iomemReset(m: Machine, d: number): void {
  m.dom.iomemPublish(d, []);
}

/**
 * The toolstack puts a device's BAR into its owner's caps at boot (Xen:
 * the hardware domain's dom0_setup_permissions, or libxl's
 * xc_domain_iomem_permission for a passed-through device). Takes domctl.
 */
export function iomemAdd(m: Machine, d: number, first: number, nr: number): number {
  m.lock(GLOBAL_LOCK.DOMCTL, 'iomem.toolstack_permit');
  try {
    return iomemPermitAccess(m, d, first, first + nr - 1);
  } finally {
    m.unlock(GLOBAL_LOCK.DOMCTL);
  }
}
