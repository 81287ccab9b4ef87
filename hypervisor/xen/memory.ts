/**
 * memory_op and friends on the caller's behalf (xen/common/memory.c):
 * populate_physmap, decrease_reservation, foreign mapping
 * (XENMAPSPACE_gmfn_foreign, xen/arch/x86/mm/p2m.c p2m_add_foreign),
 * remove_from_physmap, and hypercall-buffer copies that hold a page
 * reference for the whole copy (copy_from_guest / copy_to_guest).
 *
 * A frontend's Map'd gfn (mmio_direct / mmio_dm on a frame of a live
 * mapping) and a revoked one (P2M_REVOKED) answer every memory op as a hole
 * does (the seed mail: hypercalls "fail as if the frontend did not have the
 * pages"; letting the guest find out what is mapped "violates
 * encapsulation"), except where Xen itself crashes the guest; and no memory
 * op of the frontend's takes the backend's mapping away
 * (docs/decisions.md, "Hypercall semantics").
 */
import { notAllocated, reachViolated } from './isolation.js';
import { REACH } from '../layout/reach.js';
import { designOf } from './design.js';
import { BUGS } from './buggify.js';
import { DOM, DS } from '../layout/domains.js';
import { entryMfn, entryType, p2mEntry, P2M_HOLE } from '../layout/p2m.js';
import { PS } from '../layout/frametable.js';
import type { Machine } from './machine.js';
import { BUG } from '../layout/region.js';
import { domainCrash } from './domain-crash.js';
import { getDomain, putDomain } from './domain-ref.js';
import { hookPoint } from './hooks.js';
import { allocDomFrame, getPage, putPage, relinquishFrame } from './mm.js';
import { p2mGet, p2mInRange, p2mInsert, p2mLock, p2mRemoveLocked, p2mRoomLocked, p2mUnlock } from './p2m.js';
import { EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM, ENXIO, EPERM, ESRCH } from '../public/errno.js';
import { P2M } from '../public/types.js';

/**
 * What do_memory_op returns for XENMEM_populate_physmap and
 * XENMEM_decrease_reservation once extent `done` failed with `rc` (< 0):
 * `rc = args.nr_done`, the extents done before the first failure (0 if the
 * first failed), never an errno. The bug memop-errno-per-call puts back the
 * old answer: the failing extent's errno when none was done.
 */
function nrDone(m: Machine, done: number, rc: number): number {
  if (done === 0 && m.control.buggy(BUGS['memop-errno-per-call'])) return rc;
  return done;
}

/** do_memory_op's loop over a request's extents: the first that fails ends it; the answer is the count done (nrDone). */
function eachExtent(m: Machine, gfns: readonly number[], one: (gfn: number) => number): number {
  let done = 0;
  for (const g of gfns) {
    const rc = one(g);
    if (rc < 0) return nrDone(m, done, rc);
    done++;
  }
  return done;
}

/** XENMEM_populate_physmap, extent order 0 (populate_physmap, xen/common/memory.c). */
export function populatePhysmap(m: Machine, d: number, gfns: readonly number[]): number {
  return eachExtent(m, gfns, (g) => populateExtent(m, d, g));
}

/** A Map'd or revoked gfn: mmio_direct / mmio_dm carrying a mapping's frame, or P2M_REVOKED. */
function isMappedOrRevoked(e: number): boolean {
  const t = entryType(e);
  return e !== P2M_HOLE && (t === P2M.mmio_direct || t === P2M.mmio_dm);
}

/**
 * One extent of populate_physmap: alloc_domheap_pages (the quota is
 * charged first: a full domain fails here, whatever the gfn holds), then
 * guest_physmap_add_page → p2m_add_page (xen/arch/x86/mm/p2m.c), which
 * decides by what the gfn holds:
 *  - a hole: the page is mapped;
 *  - RAM: replaced; the old page loses only its gfn, it stays allocated to
 *    the domain (counted in tot_pages) until the domain dies;
 *  - a special entry (p2m_is_special: grant, foreign, mmio_direct):
 *    domain_crash(d), -EPERM;
 *  - a Map'd mmio_dm gfn or a revoked one: Xen's p2m_add_page would replace
 *    it (mmio_dm is a hole type), which would take the backend's mapping
 *    away. The answer is a hole's (the extent is done, the page charged)
 *    and the mapping stays: the page is left allocated and unmapped, as the
 *    page RAM loses above. A Map'd mmio_direct gfn crashes the guest, as
 *    Xen does.
 * Returns 0 or the negative errno that ends populate_physmap's loop.
 */
function populateExtent(m: Machine, d: number, gfn: number): number {
  // A gfn past the domain's address width fails as ept_set_entry does for
  // a gfn its tables cannot hold, and nothing is allocated for it.
  if (!p2mInRange(m, d, gfn)) return -EINVAL;
  const mfn = allocDomFrame(m, d);
  if (mfn < 0) return mfn;
  const distinguishable = m.control.buggy(BUGS['mapped-gfn-distinguishable']);
  const noReplace = m.control.buggy(BUGS['occupied-gfn-eexist']);
  p2mLock(m, d, 'memory.populate_physmap');
  const e = p2mGet(m, d, gfn);
  const t = entryType(e);
  if (e === P2M_HOLE) {
    const rc = p2mInsert(m, d, gfn, p2mEntry(mfn, P2M.ram_rw));
    p2mUnlock(m, d);
    if (rc === -EEXIST) BUG(`populate_physmap: d${d} gfn ${gfn} changed under the p2m lock`);
    // No table page left in d's share (p2m_set_entry's -ENOMEM): the page goes back.
    if (rc < 0) relinquishFrame(m, mfn);
    return rc;
  }
  if (t === P2M.mmio_dm) {
    // Map'd mmio_dm, or revoked (P2M_REVOKED is mmio_dm with no frame).
    p2mUnlock(m, d);
    if (!distinguishable) return 0; // the page stays allocated, unmapped: the mapping wins
    relinquishFrame(m, mfn);
    return -EEXIST;
  }
  if ((t === P2M.ram_rw || t === P2M.ram_ro) && !noReplace) {
    // The old translation goes (TLB shootdown) before the new page is seen;
    // the old page keeps its allocation reference (p2m_add_page only clears
    // its m2p entry). A superpage it is in is split first: -ENOMEM if d's
    // share of the pool has no page for that.
    if (p2mRoomLocked(m, d, [gfn]) < 0) {
      p2mUnlock(m, d);
      relinquishFrame(m, mfn);
      return -ENOMEM;
    }
    p2mRemoveLocked(m, d, [gfn], p2mEntry(mfn, P2M.ram_rw));
    p2mUnlock(m, d);
    return 0;
  }
  p2mUnlock(m, d);
  // Undo the allocation (Xen leaves it assigned to the guest it crashes).
  relinquishFrame(m, mfn);
  if (noReplace) return -EEXIST;
  domainCrash(m, d, `p2m_add_page: gfn ${gfn} holds a special entry (p2m type ${t})`);
  return -EPERM;
}

/**
 * XENMEM_decrease_reservation: guest_remove_page on each gfn. Only RAM the
 * caller owns goes; anything else ends the loop (a hole or mmio_dm is
 * -ENOENT, mmio_direct -EPERM, a page of another owner — a grant or
 * foreign map — -ENXIO in Xen), and the caller sees only the count.
 */
export function decreaseReservation(m: Machine, d: number, gfns: readonly number[]): number {
  return eachExtent(m, gfns, (g) => removeRam(m, d, g));
}

/** guest_remove_page. A gfn past the p2m reads as a hole (p2mGet), so it is -EINVAL as a hole is. */
function removeRam(m: Machine, d: number, gfn: number): number {
  p2mLock(m, d, 'memory.guest_remove_page');
  const e = p2mGet(m, d, gfn);
  const t = entryType(e);
  if (e === P2M_HOLE || (t !== P2M.ram_rw && t !== P2M.ram_ro) || m.ft.owner(entryMfn(e)) !== d) {
    p2mUnlock(m, d);
    return -EINVAL;
  }
  // Ballooning out one page of a superpage splits it (p2m_remove_page →
  // p2m_set_entry of order 0 → ept_split_super_page): -ENOMEM without a table page.
  if (p2mRoomLocked(m, d, [gfn]) < 0) {
    p2mUnlock(m, d);
    return -ENOMEM;
  }
  p2mRemoveLocked(m, d, [gfn]);
  p2mUnlock(m, d);
  relinquishFrame(m, entryMfn(e));
  return 0;
}

/**
 * rcu_lock_remote_domain_by_id (xen/common/domain.c): any domain that still
 * exists — crashed, dying and zombie ones too (a core dump maps a crashed
 * guest) — with a reference held; -ESRCH if there is none, -EPERM if it is
 * the caller.
 */
export function lockRemoteDomain(m: Machine, ld: number, d: number): number {
  if (!Number.isInteger(d) || d < 0 || d >= m.nd) return -ESRCH;
  m.dom.add(d, DOM.REFCNT, 1);
  const st = m.dom.state(d);
  if (st === DS.FREE || st === DS.CREATING) {
    putDomain(m, d);
    return -ESRCH;
  }
  if (d === ld) {
    putDomain(m, d);
    return -EPERM;
  }
  return 0;
}

/**
 * XENMEM_add_to_physmap_batch with XENMAPSPACE_gmfn_foreign: `ld` maps
 * `from`'s RAM gfn at its own gfn `at`, holding a page reference until it
 * removes the mapping (or dies). p2m_add_foreign, in its order:
 *  1. `from` exists (-ESRCH) and is not the caller (-EPERM);
 *  2. xsm_map_gmfn_foreign(XSM_TARGET): the caller is the control domain
 *     or `from`'s device model (d->target; here `from`'s backend) → -EPERM;
 *  3. get_page_from_gfn on `from`'s RAM → -EINVAL;
 *  4. the destination: a hole is filled; the caller's own RAM is freed
 *     first (guest_remove_page) and replaced; a grant or foreign map is
 *     -ENXIO (guest_remove_page cannot get_page another owner's page); a
 *     Map'd or revoked gfn answers as a hole (0) and keeps its mapping — but
 *     a BAR-backed mmio_direct one crashes the caller, as
 *     set_typed_p2m_entry does for a special entry.
 * A destination past the caller's address width is -EINVAL (checked after
 * 1-3, as Xen's p2m_set_entry is reached last).
 */
export function foreignMap(m: Machine, ld: number, from: number, gfn: number, at: number): number {
  const old = m.control.buggy(BUGS['foreign-map-old-rules']);
  if (old) {
    // Before: dom0 only, running sources only, the destination first.
    if (m.dom.at(ld, DOM.PRIVILEGED) === 0) return -EPERM;
    if (!p2mInRange(m, ld, at)) return -EINVAL;
    if (!getDomain(m, from)) return -ESRCH;
  } else {
    const rc = lockRemoteDomain(m, ld, from);
    if (rc < 0) return rc;
    if (m.dom.at(ld, DOM.PRIVILEGED) === 0 && m.dom.at(from, DOM.BACKEND) !== ld + 1) {
      putDomain(m, from);
      return -EPERM;
    }
  }
  try {
    // get_page_from_gfn under the source's p2m lock, so the entry cannot
    // change between lookup and reference.
    p2mLock(m, from, 'memory.get_page_from_gfn');
    const e = p2mGet(m, from, gfn);
    const t = entryType(e);
    const mfn = entryMfn(e);
    const ok = e !== P2M_HOLE && (t === P2M.ram_rw || t === P2M.ram_ro) && getPage(m, mfn, from);
    // A frame the design says no foreign map may take (lent memory, docs/designs.md §2 rule 3): refused
    // whoever asks, dom0 included, decided under the source's p2m lock so a lend cannot slip in between.
    if (ok && designOf(m).foreignMapRefused(m, mfn)) {
      p2mUnlock(m, from);
      putPage(m, mfn);
      return -EPERM;
    }
    // The bug (XSA-411 class): the caller's p2m is locked while the source's
    // is still held — two domains' locks in the order the operation names
    // them, not by domid (docs/locks.md rule 2), so two such operations in
    // opposite directions can deadlock. Correct: the source's lock goes first.
    const nested = ok && m.control.buggy(BUGS['foreign-map-p2m-lock-inversion']);
    if (!nested) p2mUnlock(m, from);
    if (!ok) return -EINVAL;
    if (!p2mInRange(m, ld, at)) {
      if (nested) p2mUnlock(m, from);
      putPage(m, mfn);
      return -EINVAL;
    }
    // The caller's right to the page, before the entry is published (layout/reach.ts).
    m.reach.grant(mfn, ld, REACH.FOREIGN);
    p2mLock(m, ld, 'memory.add_to_physmap_foreign');
    const r = placeForeign(m, ld, at, mfn, old);
    p2mUnlock(m, ld);
    if (nested) p2mUnlock(m, from);
    if (r.freed >= 0) relinquishFrame(m, r.freed);
    if (!r.placed) {
      m.reach.release(mfn, ld, REACH.FOREIGN);
      putPage(m, mfn);
    } else if (m.control.buggy(BUGS['pinned-userptr-unpin-while-mapped'])) {
      // The bug: the pin is dropped while the entry that needs it stays.
      putPage(m, mfn);
    }
    if (r.crash) domainCrash(m, ld, `set_typed_p2m_entry: foreign map onto gfn ${at}, a special entry`);
    if (r.placed) hookPoint('foreign_map.placed', from, gfn);
    return r.rc;
  } finally {
    putDomain(m, from);
  }
}

interface Placed {
  rc: number;
  /** The entry now holds the foreign page (and so its reference); only ever with rc 0. */
  placed: boolean;
  /** The caller's own page that was at `at`, to free once the lock is dropped (guest_remove_page), or −1. */
  freed: number;
  crash: boolean;
}

/** The destination half of p2m_add_foreign (caller holds ld's p2m lock). */
function placeForeign(m: Machine, ld: number, at: number, mfn: number, old: boolean): Placed {
  const entry = p2mEntry(mfn, P2M.map_foreign);
  const res = (rc: number, placed = false, freed = -1, crash = false): Placed => ({ rc, placed, freed, crash });
  const prev = p2mGet(m, ld, at);
  if (prev === P2M_HOLE) {
    const rc = p2mInsert(m, ld, at, entry);
    if (rc === -EEXIST) BUG(`foreign map: d${ld} gfn ${at} changed under the p2m lock`);
    return rc < 0 ? res(rc) : res(0, true);
  }
  if (old) return res(-EEXIST);
  const t = entryType(prev);
  if (isMappedOrRevoked(prev)) {
    if (m.control.buggy(BUGS['mapped-gfn-distinguishable'])) return res(-EEXIST);
    // A BAR has no page_info (mfn_valid is false): set_typed_p2m_entry
    // meets the special entry and crashes the domain.
    if (t === P2M.mmio_direct && !m.ft.isRam(entryMfn(prev))) return res(-EPERM, false, -1, true);
    return res(0); // a hole's answer; the mapping stays and the reference goes
  }
  if ((t === P2M.ram_rw || t === P2M.ram_ro) && m.ft.owner(entryMfn(prev)) === ld) {
    if (p2mRoomLocked(m, ld, [at]) < 0) return res(-ENOMEM); // its superpage cannot be split
    p2mRemoveLocked(m, ld, [at], entry);
    return res(0, true, entryMfn(prev));
  }
  return res(-ENXIO);
}

/**
 * XENMEM_remove_from_physmap (do_memory_op): get_page_from_gfn takes a
 * reference only on RAM the caller owns or on a foreign map; anything else —
 * a hole, a gfn past the p2m, a grant map, MMIO, a Map'd or revoked gfn —
 * is -ENOENT. guest_physmap_remove_page then drops the entry: a foreign map
 * its page reference; RAM loses only its gfn and stays allocated (and
 * counted in tot_pages) until the domain dies.
 */
export function removeFromPhysmap(m: Machine, ld: number, at: number): number {
  const oldCodes = m.control.buggy(BUGS['memop-errno-per-call']);
  if (!p2mInRange(m, ld, at)) return oldCodes ? -EINVAL : -ENOENT;
  p2mLock(m, ld, 'memory.remove_from_physmap');
  const e = p2mGet(m, ld, at);
  const t = entryType(e);
  const mfn = entryMfn(e);
  const ram = (t === P2M.ram_rw || t === P2M.ram_ro) && m.ft.owner(mfn) === ld;
  if (e === P2M_HOLE || (t !== P2M.map_foreign && !ram)) {
    p2mUnlock(m, ld);
    if (e === P2M_HOLE) return -ENOENT;
    if (isMappedOrRevoked(e)) return m.control.buggy(BUGS['mapped-gfn-distinguishable']) ? -EINVAL : -ENOENT;
    return oldCodes ? -EINVAL : -ENOENT;
  }
  if (p2mRoomLocked(m, ld, [at]) < 0) {
    p2mUnlock(m, ld);
    return -ENOMEM; // RAM in a superpage that cannot be split
  }
  p2mRemoveLocked(m, ld, [at]);
  p2mUnlock(m, ld);
  if (t === P2M.map_foreign) {
    m.reach.release(mfn, ld, REACH.FOREIGN);
    putPage(m, mfn);
  } else if (m.control.buggy(BUGS['occupied-gfn-eexist'])) relinquishFrame(m, mfn);
  return 0;
}

/**
 * copy_{from,to}_guest on the caller's own gfns: each page is looked up and
 * referenced (get_page_from_gfn) before its bytes are touched and released
 * after, so a page in a hypercall copy is visibly referenced. Anything that
 * is not RAM of the caller (MMIO, Map'd, revoked, a hole, a foreign or
 * grant map) is -EFAULT, as copy_to_user of an unmapped address would be.
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
    // The texts only on a failure (every page of every hypercall copy comes here).
    if (m.reach.may(mfn, d) === false) reachViolated(m, d, mfn, dir === 'from_guest' ? `copied from gfn ${g} (hypercall buffer)` : `copied to gfn ${g} (hypercall buffer)`);
    const st = m.ft.state(mfn);
    if (st !== PS.INUSE) notAllocated(m, d, mfn, st, `copied ${dir === 'from_guest' ? 'from' : 'to'} gfn ${g} (hypercall buffer), reaching`);
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

/**
 * XENMEM_current_reservation / XENMEM_maximum_reservation (do_memory_op):
 * rcu_lock_domain_by_any_id (DOMID_SELF or any domain still listed, else
 * -ESRCH), then xsm_memory_stat_reservation(XSM_TARGET): the domain
 * itself, its device model (here: its topology `backend`) or the control
 * domain, else -EPERM; the answer is domain_tot_pages(d) or d->max_pages.
 */
export function memoryStatReservation(m: Machine, ld: number, d: number, which: 'current' | 'maximum'): number {
  if (!Number.isInteger(d) || d < 0 || d >= m.nd) return -ESRCH;
  const st = m.dom.state(d);
  if (st === DS.FREE || st === DS.CREATING) return -ESRCH;
  if (d !== ld && m.dom.at(ld, DOM.PRIVILEGED) === 0 && m.dom.at(d, DOM.BACKEND) !== ld + 1) return -EPERM;
  return m.dom.at(d, which === 'current' ? DOM.TOT_PAGES : DOM.MAX_PAGES);
}
