/**
 * memory_op and friends on the caller's behalf (xen/common/memory.c):
 * populate_physmap, decrease_reservation, foreign mapping by a privileged
 * domain, remove_from_physmap, and hypercall-buffer copies that hold a page
 * reference for the whole copy (copy_from_guest / copy_to_guest).
 */
import { BUGS } from './buggify.js';
import { DOM } from '../layout/domains.js';
import { entryMfn, entryType, p2mEntry, P2M_HOLE } from '../layout/p2m.js';
import type { Machine } from './machine.js';
import { populateOne } from './domain.js';
import { getDomain, putDomain } from './domain-ref.js';
import { getPage, putPage, relinquishFrame } from './mm.js';
import { p2mGet, p2mIndex, p2mInsert, p2mLock, p2mRemoveLocked, p2mUnlock } from './p2m.js';
import { EEXIST, EFAULT, EINVAL, ENOENT, EPERM, ESRCH } from '../public/errno.js';
import { P2M } from '../public/types.js';

/** Xen returns the number of extents done; we return a negative errno only when none was. */
function extents(done: number, rc: number): number {
  return done > 0 || rc === 0 ? done : rc;
}

export function populatePhysmap(m: Machine, d: number, gfns: readonly number[]): number {
  let done = 0;
  for (const g of gfns) {
    const rc = populateOne(m, d, g);
    if (rc < 0) return extents(done, rc);
    done++;
  }
  return done;
}

/** Balloon out: each gfn must be RAM owned by the caller (guest_remove_page). */
export function decreaseReservation(m: Machine, d: number, gfns: readonly number[]): number {
  let done = 0;
  for (const g of gfns) {
    const rc = removeRam(m, d, g);
    if (rc < 0) return extents(done, rc);
    done++;
  }
  return done;
}

function removeRam(m: Machine, d: number, gfn: number): number {
  if (p2mIndex(m, d, gfn) < 0) return -EINVAL;
  p2mLock(m, d, 'memory.guest_remove_page');
  const e = p2mGet(m, d, gfn);
  const t = entryType(e);
  if (e === P2M_HOLE || (t !== P2M.ram_rw && t !== P2M.ram_ro) || m.ft.owner(entryMfn(e)) !== d) {
    p2mUnlock(m, d);
    return -EINVAL;
  }
  p2mRemoveLocked(m, d, [gfn]);
  p2mUnlock(m, d);
  relinquishFrame(m, entryMfn(e));
  return 0;
}

/**
 * XENMEM_add_to_physmap_batch with XENMAPSPACE_gmfn_foreign: a privileged
 * caller maps `from`'s RAM gfn at its own gfn `at`, holding a page
 * reference until it removes the mapping (or dies).
 */
export function foreignMap(m: Machine, ld: number, from: number, gfn: number, at: number): number {
  if (m.dom.at(ld, DOM.PRIVILEGED) === 0) return -EPERM;
  if (p2mIndex(m, ld, at) < 0) return -EINVAL;
  if (!getDomain(m, from)) return -ESRCH;
  try {
    // get_page_from_gfn under the source's p2m lock, so the entry cannot
    // change between lookup and reference.
    p2mLock(m, from, 'memory.get_page_from_gfn');
    const e = p2mGet(m, from, gfn);
    const t = entryType(e);
    const mfn = entryMfn(e);
    const ok = e !== P2M_HOLE && (t === P2M.ram_rw || t === P2M.ram_ro) && getPage(m, mfn, from);
    // The bug (XSA-411 class): the caller's p2m is locked while the source's
    // is still held — two domains' locks in the order the operation names
    // them, not by domid (docs/locks.md rule 2), so two such operations in
    // opposite directions can deadlock. Correct: the source's lock goes first.
    const nested = ok && m.control.buggy(BUGS['foreign-map-p2m-lock-inversion']);
    if (!nested) p2mUnlock(m, from);
    if (!ok) return -EINVAL;
    p2mLock(m, ld, 'memory.add_to_physmap_foreign');
    const placed = p2mInsert(m, ld, at, p2mEntry(mfn, P2M.map_foreign));
    p2mUnlock(m, ld);
    if (nested) p2mUnlock(m, from);
    if (!placed) {
      putPage(m, mfn);
      return -EEXIST;
    }
    return 0;
  } finally {
    putDomain(m, from);
  }
}

/** XENMEM_remove_from_physmap: foreign entries drop their reference, RAM its allocation. */
export function removeFromPhysmap(m: Machine, ld: number, at: number): number {
  if (p2mIndex(m, ld, at) < 0) return -EINVAL;
  p2mLock(m, ld, 'memory.remove_from_physmap');
  const e = p2mGet(m, ld, at);
  const t = entryType(e);
  if (e === P2M_HOLE) {
    p2mUnlock(m, ld);
    return -ENOENT;
  }
  if (t !== P2M.map_foreign && t !== P2M.ram_rw && t !== P2M.ram_ro) {
    p2mUnlock(m, ld);
    return -EINVAL; // grant maps go through unmap_grant_ref
  }
  p2mRemoveLocked(m, ld, [at]);
  p2mUnlock(m, ld);
  const mfn = entryMfn(e);
  if (t === P2M.map_foreign) putPage(m, mfn);
  else if (m.ft.owner(mfn) === ld) relinquishFrame(m, mfn);
  return 0;
}

/**
 * copy_{from,to}_guest on the caller's own gfns: each page is looked up and
 * referenced (get_page_from_gfn) before its bytes are touched and released
 * after, so a page in a hypercall copy is visibly referenced. Anything that
 * is not RAM of the caller (MMIO, Map'd, a hole, a foreign or grant map) is
 * -EFAULT, as copy_to_user of an unmapped address would be.
 */
export function bufferCopy(m: Machine, d: number, dir: 'from_guest' | 'to_guest', gfn: number, offset: number, bytes: number, scratch: Uint8Array): number {
  const ps = m.config.page_size_bytes;
  if (offset < 0 || bytes < 0 || !Number.isInteger(offset) || !Number.isInteger(bytes) || bytes > scratch.length) return -EINVAL;
  let done = 0;
  let g = gfn + Math.floor(offset / ps);
  let off = offset % ps;
  while (done < bytes) {
    const e = p2mGet(m, d, g);
    const t = entryType(e);
    const mfn = entryMfn(e);
    const writable = t === P2M.ram_rw;
    if (e === P2M_HOLE || !(writable || (dir === 'from_guest' && t === P2M.ram_ro))) return -EFAULT;
    if (!getPage(m, mfn, d)) return -EFAULT;
    const n = Math.min(ps - off, bytes - done);
    const at = mfn * ps + off;
    if (dir === 'from_guest') scratch.set(m.frames.u8.subarray(at, at + n), done);
    else m.frames.u8.set(scratch.subarray(done, done + n), at);
    putPage(m, mfn);
    done += n;
    g++;
    off = 0;
  }
  return 0;
}
