/**
 * Grant tables v1 (xen/common/grant_table.c): map_grant_ref,
 * unmap_grant_ref, copy, and the guest-side entry edits.
 *
 * Lock order (docs/locks.md): grant table lock → active entry lock →
 * (page references, which may take page_alloc → heap when a count drops to
 * zero); maptrack and p2m locks are taken with no grant lock held; never
 * two domains' grant locks at once (XSA-380) — a copy between two grant
 * refs pins one side, releases its locks, then pins the other.
 */
import { checkAllocated, checkReach } from './isolation.js';
import { REACH } from '../layout/reach.js';
import { GRANT_ENTRIES_PER_FRAME, MAPTRACK_PER_FRAME, TLB_GFN_LIMIT } from '../layout/constants.js';
import { BUGS } from './buggify.js';
import { hookPoint } from './hooks.js';
import {
  GNTST_bad_copy_arg, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_general_error,
  GNTST_no_space, GNTST_okay,
} from '../public/errno.js';
import type { CopyPtr, GrantCopy, MapGrantRef, MapGrantResult } from '../public/guest.js';
import {
  GNTMAP_host_map, GNTMAP_readonly, GTF_permit_access, GTF_reading, GTF_readonly, GTF_sub_page, GTF_type_mask, GTF_writing,
  P2M, grantHandle,
} from '../public/types.js';
import { DOM, DS } from '../layout/domains.js';
import { ACT, MT, MT_HDR, MT_INUSE } from '../layout/grants.js';
import { atomicMax, CTL } from '../layout/control.js';
import { entryMfn, entryType, p2mEntry } from '../layout/p2m.js';
import { BUG } from '../layout/region.js';
import type { Machine } from './machine.js';
import { getDomain, putDomain } from './domain-ref.js';
import { getPage, putPage } from './mm.js';
import { p2mGet, p2mInsert, p2mLock, p2mRemoveLocked, p2mUnlock } from './p2m.js';

/** Attempts at setting status bits on an entry the guest keeps changing (Xen: 4). */
const SET_STATUS_RETRIES = 4;

function grantLock(m: Machine, d: number, site: string): void {
  m.lock(m.dom.at(d, DOM.LOCK_GRANT), site, d);
}
function grantUnlock(m: Machine, d: number): void {
  m.unlock(m.dom.at(d, DOM.LOCK_GRANT));
}
function activeLock(m: Machine, d: number, ref: number, site: string): void {
  m.lock(m.dom.at(d, DOM.ACTIVE_LOCK_BASE) + ref, site, ref);
}
function activeUnlock(m: Machine, d: number, ref: number): void {
  m.unlock(m.dom.at(d, DOM.ACTIVE_LOCK_BASE) + ref);
}

// ---------------------------------------------------------------- guest side

/**
 * Bracket a guest's plain store over its own shared entry (checker
 * bookkeeping, not Xen): TSEQ is odd while the store is under way, so the
 * checker can tell flags the guest wrote from flags the hypervisor owes.
 */
export function guestStoreBegin(m: Machine, d: number, ref: number): void {
  Atomics.add(m.grants.active, m.grants.actIdx(d, ref) + ACT.TSEQ, 1);
}
export function guestStoreEnd(m: Machine, d: number, ref: number): void {
  Atomics.add(m.grants.active, m.grants.actIdx(d, ref) + ACT.TSEQ, 1);
}

/** nr_grant_entries: the entries d's grant table has grown to (its frames × 512). Lock-free: it only grows. */
export function nrGrantEntries(m: Machine, d: number): number {
  return m.dom.at(d, DOM.NR_GRANT_FRAMES) * GRANT_ENTRIES_PER_FRAME;
}

/** The entries d's table may grow to: its max_grant_frames' worth, within the storage (layout/grants.ts). */
export function grantEntriesLimit(m: Machine, d: number): number {
  return Math.min(m.dom.at(d, DOM.MAX_GRANT_FRAMES) * GRANT_ENTRIES_PER_FRAME, m.grants.entries(d));
}

/**
 * gnttab_grow_table as a guest gets it (Linux's gnttab_expand maps the next
 * frame with XENMEM_add_to_physmap, XENMAPSPACE_grant_table, before it
 * hands out a ref past its table; Xen grows the table under its write lock
 * to the frames asked for, up to max_grant_frames): the frames `ref` needs.
 * False when the table cannot grow that far (the guest has no such ref).
 */
export function gnttabGrowFor(m: Machine, d: number, ref: number): boolean {
  if (!Number.isInteger(ref) || ref < 0 || ref >= grantEntriesLimit(m, d)) return false;
  if (ref < nrGrantEntries(m, d)) return true;
  grantLock(m, d, 'grant.gnttab_grow_table');
  const want = Math.floor(ref / GRANT_ENTRIES_PER_FRAME) + 1;
  if (m.dom.at(d, DOM.NR_GRANT_FRAMES) < want) m.dom.set(d, DOM.NR_GRANT_FRAMES, want);
  grantUnlock(m, d);
  atomicMax(m.control.w, CTL.GRANT_FRAMES_PEAK, want);
  return true;
}

/**
 * Linux's gnttab_grant_foreign_access_ref: frame, then (wmb) flags | domid.
 * A plain store: a guest that re-grants an entry still pinned wipes the
 * status bits the hypervisor set (its own foot, Xen does not stop it).
 */
export function guestGrantAccess(m: Machine, d: number, ref: number, to: number, gfn: number, readonly: boolean): void {
  const i = m.grants.sharedIdx(d, ref);
  guestStoreBegin(m, d, ref);
  Atomics.store(m.grants.shared, i + 1, gfn);
  Atomics.store(m.grants.shared, i, GTF_permit_access | (readonly ? GTF_readonly : 0) | (to << 16));
  guestStoreEnd(m, d, ref);
}

/**
 * Linux's gnttab_end_foreign_access_ref: clear flags unless reading/writing.
 * The refusal is the `grants` design's revocation rule (docs/designs.md §3):
 * a frontend cannot take back a page its backend maps.
 */
export function guestEndAccess(m: Machine, d: number, ref: number): boolean {
  const i = m.grants.sharedIdx(d, ref);
  const ignoreMaps = m.control.buggy(BUGS['grants-end-access-while-mapped']);
  for (;;) {
    const w0 = Atomics.load(m.grants.shared, i);
    if ((w0 & (GTF_reading | GTF_writing)) !== 0 && !ignoreMaps) return false;
    if (Atomics.compareExchange(m.grants.shared, i, w0, w0 & ~0xffff) === w0) return true;
  }
}

// ---------------------------------------------------------------- granter

/**
 * Xen's rcu_lock_domain_by_id, as map_grant_ref and gnttab_copy look the
 * granter up: any domain still in Xen's domain list — running, crashed (a
 * crash only shuts the guest down; the toolstack destroys it later), dying,
 * or a zombie (dead, but its pages still referenced, and each page holds a
 * reference to its domain) — not only a running one. Its grant table stays
 * until the domain is freed. What a dying granter's grants give is decided
 * by the later checks: its p2m is torn down, so an entry nobody pins is
 * GNTST_bad_page, while a further map of an entry already pinned by the
 * caller still succeeds (map_grant_ref looks no further than act->mfn).
 *
 * Holds a reference so the slot is not freed (and its domid reused) under
 * the operation. A zombie with no page left is as good as freed (Xen's last
 * put_page drops the domain's last reference): refused, and pages are never
 * added to a zombie, so a racing reap (domain-ref.ts) cannot free a slot
 * this found.
 */
function lockGranter(m: Machine, d: number): boolean {
  if (m.control.buggy(BUGS['grant-map-refuse-crashed-granter'])) {
    // The bug: only a running granter is found (get_domain as the primitives use it).
    return getDomain(m, d);
  }
  if (!Number.isInteger(d) || d < 0 || d >= m.nd) return false;
  m.dom.add(d, DOM.REFCNT, 1);
  const st = m.dom.state(d);
  if (st === DS.RUNNING || st === DS.CRASHED || st === DS.DYING || (st === DS.ZOMBIE && m.dom.at(d, DOM.TOT_PAGES) > 0)) return true;
  putDomain(m, d);
  return false;
}

function isDying(m: Machine, d: number): boolean {
  const st = m.dom.state(d);
  return st === DS.DYING || st === DS.ZOMBIE;
}

// ---------------------------------------------------------------- pins

interface Pin {
  status: number;
  mfn: number;
}

/**
 * Xen keeps each kind of pin in an 8-bit field of act->pin and refuses a
 * pin once the field's top bit is set (GNTPIN_incr2oflow_mask): at most 128
 * host read pins and 128 host write pins per entry.
 */
const PIN_LIMIT = 128;

/**
 * Pin grant `ref` of domain rd for domain ld (reading, or writing if !ro),
 * with a page reference on the frame, under rd's grant lock and the entry's
 * active lock: map_grant_ref from its bounds check to `act->pin += …`, or
 * acquire_grant_for_copy, in Xen's order:
 *
 * 1. an entry already pinned must be pinned by ld, with room in the counter
 *    (else GNTST_general_error);
 * 2. if the entry is not pinned, or ld wants to write and nobody writes
 *    yet, _set_status_v1 checks the entry (type and grantee only when not
 *    pinned, GTF_readonly for a write) and sets the status bits
 *    (GNTST_general_error if it refuses, and then it set nothing);
 * 3. the frame: looked up in rd's p2m when not pinned (get_paged_frame:
 *    RAM of rd, writable for a write, else GNTST_bad_page); when pinned, a
 *    map takes a reference on act->mfn (its owner must still be rd, else
 *    GNTST_general_error) and a copy either looks the entry's frame up
 *    again (when it set GTF_writing; it must be the pinned frame) or takes
 *    the reference (GNTST_bad_domain if the owner changed or rd is dying).
 *
 * Every refusal after step 2 drops the status bits its pins no longer
 * justify (reduce_status_for_pin), so a refused map or copy leaves the
 * shared entry, the pins and the page counts as they were.
 */
function pinGrant(m: Machine, rd: number, ref: number, ld: number, ro: boolean, op: 'map' | 'copy', site: string): Pin {
  if (!Number.isInteger(ref) || ref < 0 || ref >= nrGrantEntries(m, rd)) return { status: GNTST_bad_gntref, mfn: -1 };
  // The bug: the status bits go on before the active entry is checked, and no refusal takes them off.
  const statusFirst = m.control.buggy(BUGS['grant-map-status-before-checks']);
  grantLock(m, rd, site);
  activeLock(m, rd, ref, site);
  try {
    const a = m.grants.actIdx(rd, ref);
    const act = m.grants.active;
    const rpin = act[a + ACT.RPIN]!;
    const wpin = act[a + ACT.WPIN]!;
    const pinned = rpin + wpin > 0;
    const si = m.grants.sharedIdx(rd, ref);
    const refuse = (status: number): Pin => {
      if (!statusFirst) reduceStatus(m, si, a, ro);
      return { status, mfn: -1 };
    };
    // The checker's baseline for a new run of pins, read before setStatus: a
    // guest store under way (odd) or begun since (moved on) excuses the entry.
    const tseq = Atomics.load(act, a + ACT.TSEQ);
    const setsStatus = !pinned || (!ro && wpin === 0);
    let frame = -1;
    let before = 0;
    if (setsStatus && statusFirst) {
      const st = setStatus(m, si, ld, ro, pinned, op === 'map');
      if (st.status !== GNTST_okay) return { status: st.status, mfn: -1 };
      frame = st.frame;
      before = st.before;
    }
    // Xen's act_release_out: nothing to undo (unless the bug set the status bits already, and leaves them).
    if (pinned && (act[a + ACT.DOMID] !== ld + 1 || (ro ? rpin : wpin) >= PIN_LIMIT)) return { status: GNTST_general_error, mfn: -1 };
    if (setsStatus && !statusFirst) {
      const st = setStatus(m, si, ld, ro, pinned, op === 'map');
      if (st.status !== GNTST_okay) return { status: st.status, mfn: -1 };
      frame = st.frame;
      before = st.before;
    }
    // From here the hypervisor answers for the status bits of an entry with
    // no pins — whether pins follow or a refusal takes the bits off again —
    // and the checker holds it to them until the guest stores over the entry
    // (unless the guest had set status bits of its own, which stay its own).
    if (!pinned && (before & (GTF_reading | GTF_writing)) === 0) act[a + ACT.PIN_TSEQ] = tseq;
    if (!pinned) {
      // Resolve the granted frame in the granter's p2m. The frame number was
      // read with the flags, once: no double fetch.
      const e = p2mGet(m, rd, frame);
      const t = entryType(e);
      const mfn = entryMfn(e);
      if ((t !== P2M.ram_rw && !(ro && t === P2M.ram_ro)) || !getPage(m, mfn, rd)) return refuse(GNTST_bad_page);
      // The granter may rewrite its entry at any moment; here it changes
      // nothing, because what is mapped is what was validated.
      hookPoint('grant.after_validate', rd, ref);
      let usedFrame = frame;
      let usedMfn = mfn;
      if (m.control.buggy(BUGS['grant-double-fetch'])) {
        // The bug: the frame is fetched again from the guest-writable entry
        // and that second value is what gets mapped — validated from one
        // read, used from another (docs/style.md §3; Xen reads the entry once into
        // locals in _set_status_v1 for exactly this reason).
        usedFrame = Atomics.load(m.grants.shared, si + 1);
        usedMfn = entryMfn(p2mGet(m, rd, usedFrame));
      }
      act[a + ACT.DOMID] = ld + 1;
      act[a + ACT.GFN] = usedFrame;
      act[a + ACT.MFN] = usedMfn;
    } else if (op === 'copy' && setsStatus) {
      // acquire_grant_for_copy (v1) looks the entry's frame up again, and a
      // frame other than the pinned one is refused.
      const e = p2mGet(m, rd, frame);
      const t = entryType(e);
      const mfn = entryMfn(e);
      if (t !== P2M.ram_rw || !getPage(m, mfn, rd)) return refuse(GNTST_bad_page);
      if (mfn !== act[a + ACT.MFN]) {
        putPage(m, mfn);
        return refuse(GNTST_general_error);
      }
    } else if (op === 'copy') {
      // acquire_grant_for_copy: the pinned frame's owner must still be rd,
      // and rd not dying.
      if (isDying(m, rd) || !getPage(m, act[a + ACT.MFN]!, rd)) return refuse(GNTST_bad_domain);
    } else if (!getPage(m, act[a + ACT.MFN]!, rd)) {
      // map_grant_ref: page_get_owner_and_reference(act->mfn) is not rd ("could not pin").
      return refuse(GNTST_general_error);
    }
    if (ro) act[a + ACT.RPIN] = rpin + 1;
    else act[a + ACT.WPIN] = wpin + 1;
    const mfn = act[a + ACT.MFN]!;
    if (!ro) m.ft.addType(mfn, 1);
    return { status: GNTST_okay, mfn };
  } finally {
    activeUnlock(m, rd, ref);
    grantUnlock(m, rd);
  }
}

/**
 * Xen's _set_status_v1: read the guest-writable entry once, validate the
 * copy, and set GTF_reading (and GTF_writing) with a compareExchange that
 * fails if the guest changed the entry meanwhile; five attempts. The type
 * and grantee are checked only for an entry with no pins (a pinned entry
 * was checked when its pins began); a map also refuses GTF_sub_page. Every
 * refusal is GNTST_general_error, and a refusal sets nothing.
 */
function setStatus(m: Machine, si: number, ld: number, ro: boolean, pinned: boolean, map: boolean): { status: number; frame: number; before: number } {
  const mask = GTF_type_mask | (map ? GTF_sub_page : 0);
  let w0 = Atomics.load(m.grants.shared, si);
  const frame = Atomics.load(m.grants.shared, si + 1);
  for (let tries = 0; ; tries++) {
    const flags = w0 & 0xffff;
    const gdom = w0 >>> 16;
    if (!pinned && ((flags & mask) !== GTF_permit_access || gdom !== ld)) return { status: GNTST_general_error, frame, before: w0 }; // "Bad flags or dom"
    if (!ro && (flags & GTF_readonly) !== 0) return { status: GNTST_general_error, frame, before: w0 }; // "Attempt to write-pin a r/o grant entry"
    const want = w0 | GTF_reading | (ro ? 0 : GTF_writing);
    const prev = Atomics.compareExchange(m.grants.shared, si, w0, want);
    if (prev === w0) break;
    if (tries === SET_STATUS_RETRIES) return { status: GNTST_general_error, frame, before: prev }; // "shared grant entry is unstable"
    w0 = prev;
  }
  return { status: GNTST_okay, frame, before: w0 };
}

/**
 * Xen's reduce_status_for_pin (under the entry's active lock): clear
 * GTF_writing once no write pin is left (after a write), GTF_reading once
 * no pin is left.
 */
function reduceStatus(m: Machine, si: number, a: number, ro: boolean): void {
  const act = m.grants.active;
  let clear = 0;
  if (!ro && act[a + ACT.WPIN] === 0) clear |= GTF_writing;
  if (act[a + ACT.RPIN]! + act[a + ACT.WPIN]! === 0) clear |= GTF_reading;
  if (clear !== 0) Atomics.and(m.grants.shared, si, ~clear);
}

/**
 * Drop a pin taken by pinGrant (and its page/type references): Xen's
 * unmap_common_complete / release_grant_for_copy, and map_grant_ref's undo.
 * `reduce` false only for the status-before-checks bug's undo.
 */
function unpinGrant(m: Machine, rd: number, ref: number, ro: boolean, site: string, reduce = true): void {
  let mfn: number;
  grantLock(m, rd, site);
  activeLock(m, rd, ref, site);
  try {
    const a = m.grants.actIdx(rd, ref);
    const act = m.grants.active;
    mfn = act[a + ACT.MFN]!;
    const field = ro ? ACT.RPIN : ACT.WPIN;
    const n = act[a + field]!;
    if (n <= 0) BUG(`unpin of d${rd} ref ${ref}: no ${ro ? 'read' : 'write'} pin`);
    act[a + field] = n - 1;
    if (reduce) reduceStatus(m, m.grants.sharedIdx(rd, ref), a, ro);
    if (act[a + ACT.RPIN]! + act[a + ACT.WPIN]! === 0) act[a + ACT.DOMID] = 0;
  } finally {
    activeUnlock(m, rd, ref);
    grantUnlock(m, rd);
  }
  if (!ro) m.ft.addType(mfn, -1);
  putPage(m, mfn);
}

// ---------------------------------------------------------------- maptrack

function maptrackAlloc(m: Machine, ld: number): number {
  const lk = m.dom.at(ld, DOM.LOCK_MAPTRACK);
  const mt = m.grants.maptrack;
  const h0 = m.grants.mtHdr(ld);
  if (m.control.buggy(BUGS['maptrack-racy-pop'])) return maptrackAllocRacy(m, ld, lk);
  // A racing vCPU's get or put of a handle lands wholly before this pop: the
  // head is read under the lock that every change of the list holds.
  hookPoint('maptrack.pop', ld);
  m.lock(lk, 'grant.get_maptrack_handle', ld);
  // get_maptrack_handle: with no free handle it grows the maptrack a frame
  // at a time up to the domain's max_maptrack_frames, then fails (GNTST_no_space).
  const h = mt[h0 + MT_HDR.INUSE]! < maptrackLimit(m, ld) ? mt[h0 + MT_HDR.HEAD]! : -1;
  if (h >= 0) {
    mt[h0 + MT_HDR.HEAD] = mt[m.grants.mtIdx(ld, h) + MT.NEXT]!;
    mt[h0 + MT_HDR.INUSE]! += 1;
    // Xen's maptrack grows a frame at a time as handles are taken and never shrinks: its size is the peak.
    atomicMax(m.control.w, CTL.MAPTRACK_PEAK, mt[h0 + MT_HDR.INUSE]!);
  }
  m.unlock(lk);
  return h;
}

/**
 * The bug (XSA-228, "race conditions with maptrack free list handling"):
 * the head is read without the lock and popped later on the assumption that
 * it is still the head. A racing get_maptrack_handle in between pops it too,
 * and both callers get the same handle.
 */
/** Grant maps domain d may hold at once: its max_maptrack_frames' worth, within the storage (layout/grants.ts). */
export function maptrackLimit(m: Machine, d: number): number {
  return Math.min(m.grants.handles(d), m.dom.at(d, DOM.MAX_MAPTRACK_FRAMES) * MAPTRACK_PER_FRAME);
}

function maptrackAllocRacy(m: Machine, ld: number, lk: number): number {
  const mt = m.grants.maptrack;
  const h0 = m.grants.mtHdr(ld);
  const h = Atomics.load(mt, h0 + MT_HDR.HEAD);
  hookPoint('maptrack.pop', ld);
  if (h < 0 || Atomics.load(mt, h0 + MT_HDR.INUSE) >= maptrackLimit(m, ld)) return -1;
  m.lock(lk, 'grant.get_maptrack_handle', ld);
  mt[h0 + MT_HDR.HEAD] = mt[m.grants.mtIdx(ld, h) + MT.NEXT]!;
  mt[h0 + MT_HDR.INUSE]! += 1;
  m.unlock(lk);
  return h;
}

function maptrackFree(m: Machine, ld: number, h: number): void {
  const lk = m.dom.at(ld, DOM.LOCK_MAPTRACK);
  m.lock(lk, 'grant.put_maptrack_handle', ld);
  const mt = m.grants.maptrack;
  const h0 = m.grants.mtHdr(ld);
  const i = m.grants.mtIdx(ld, h);
  Atomics.store(mt, i + MT.FLAGS, 0);
  mt[i + MT.NEXT] = mt[h0 + MT_HDR.HEAD]!;
  mt[h0 + MT_HDR.HEAD] = h;
  mt[h0 + MT_HDR.INUSE]! -= 1;
  m.unlock(lk);
}

// ---------------------------------------------------------------- hypercalls

/**
 * GNTTABOP_map_grant_ref (GNTMAP_host_map on an HVM guest), in
 * map_grant_ref's order: the granter (GNTST_bad_domain), a maptrack handle
 * (GNTST_no_space), the ref (GNTST_bad_gntref), the pin (pinGrant), then
 * the host mapping at host_gfn — create_grant_p2m_mapping, which refuses a
 * gfn outside the p2m or already in use with GNTST_general_error (Xen has
 * no GNTST_bad_virt_addr for an HVM host mapping). Each refusal undoes what
 * was done before it, the handle last.
 */
export function mapGrantRef(m: Machine, ld: number, op: MapGrantRef): MapGrantResult {
  const rd = op.dom as number;
  const ref = op.ref as number;
  const fail = (status: number): MapGrantResult => ({ status, handle: grantHandle(-1) });
  if (!lockGranter(m, rd)) return fail(GNTST_bad_domain);
  try {
    const h = maptrackAlloc(m, ld);
    if (h < 0) {
      // Counted where refused: the cost of a design that needs a handle per shared page (docs/designs.md).
      Atomics.add(m.control.w, CTL.GRANT_NO_SPACE, 1);
      return fail(GNTST_no_space);
    }
    const pin = pinGrant(m, rd, ref, ld, op.readonly, 'map', 'grant.map_grant_ref');
    if (pin.status !== GNTST_okay) {
      maptrackFree(m, ld, h);
      return fail(pin.status);
    }
    // The mapper's right to the frame, before the entry is published (layout/reach.ts).
    m.reach.grant(pin.mfn, ld, REACH.GRANT);
    p2mLock(m, ld, 'grant.map_grant_ref');
    // Not a hole, or no table page for it (create_grant_p2m_mapping failing): GNTST_general_error.
    // The maptrack keeps the gfn in an Int32 word: one past it is refused likewise (docs/fidelity.md).
    const ok = op.host_gfn < TLB_GFN_LIMIT && p2mInsert(m, ld, op.host_gfn, p2mEntry(pin.mfn, op.readonly ? P2M.grant_map_ro : P2M.grant_map_rw)) === 0;
    p2mUnlock(m, ld);
    if (!ok) {
      m.reach.release(pin.mfn, ld, REACH.GRANT);
      unpinGrant(m, rd, ref, op.readonly, 'grant.map_grant_ref.undo', !m.control.buggy(BUGS['grant-map-status-before-checks']));
      maptrackFree(m, ld, h);
      return fail(GNTST_general_error);
    }
    const mt = m.grants.maptrack;
    const i = m.grants.mtIdx(ld, h);
    mt[i + MT.GRANTER] = rd + 1;
    mt[i + MT.REF] = ref;
    mt[i + MT.HOST_GFN] = op.host_gfn;
    Atomics.store(mt, i + MT.FLAGS, MT_INUSE | GNTMAP_host_map | (op.readonly ? GNTMAP_readonly : 0));
    // The granter's table must reach this ref (gnttab_grow_table): the frames it needs.
    atomicMax(m.control.w, CTL.GRANT_REF_PEAK, ref + 1);
    return { status: GNTST_okay, handle: grantHandle(h) };
  } finally {
    putDomain(m, rd);
  }
}

export function unmapGrantRef(m: Machine, ld: number, handle: number): number {
  if (!Number.isInteger(handle) || handle < 0 || handle >= m.grants.handles(ld)) return GNTST_bad_handle;
  return unmapGrantHandle(m, ld, handle);
}

/**
 * Tear down maptrack handle h of domain ld: the p2m entry goes and every
 * TLB is flushed BEFORE the pin drops (so the granter cannot end access
 * and reuse the frame while a stale translation could still write it).
 */
export function unmapGrantHandle(m: Machine, ld: number, h: number): number {
  const mt = m.grants.maptrack;
  const i = m.grants.mtIdx(ld, h);
  // Claim the handle: exactly one of two racing unmaps gets it.
  const flags = Atomics.load(mt, i + MT.FLAGS);
  if ((flags & MT_INUSE) === 0) return GNTST_bad_handle;
  if (Atomics.compareExchange(mt, i + MT.FLAGS, flags, flags & ~MT_INUSE) !== flags) return GNTST_bad_handle;
  const rd = mt[i + MT.GRANTER]! - 1;
  const ref = mt[i + MT.REF]!;
  const gfn = mt[i + MT.HOST_GFN]!;
  const ro = (flags & GNTMAP_readonly) !== 0;
  p2mLock(m, ld, 'grant.unmap_grant_ref');
  const e = p2mGet(m, ld, gfn);
  const t = entryType(e);
  if (t !== (ro ? P2M.grant_map_ro : P2M.grant_map_rw)) BUG(`unmap: d${ld} gfn ${gfn} is not the grant mapping of handle ${h}`);
  p2mRemoveLocked(m, ld, [gfn], undefined, { skipFlushBug: BUGS['skip-tlb-flush-on-unmap'] });
  p2mUnlock(m, ld);
  // Out of ld's p2m and every TLB of ld: its right to the frame goes.
  m.reach.release(entryMfn(e), ld, REACH.GRANT);
  if (m.control.buggy(BUGS['grant-unmap-skip-unpin'])) {
    // The bug: the pin (and its page reference) is never dropped.
  } else {
    unpinGrant(m, rd, ref, ro, 'grant.unmap_grant_ref');
  }
  maptrackFree(m, ld, h);
  return GNTST_okay;
}

/**
 * GNTTABOP_copy, in gnttab_copy_one's order: a zero length does nothing;
 * the domains of both sides are looked up (GNTST_bad_domain; a gfn side is
 * the caller's own); the source is claimed, then the destination (a grant
 * through acquire_grant_for_copy, a gfn through get_paged_frame:
 * GNTST_bad_page); only then are offset and length checked against the page
 * (GNTST_bad_copy_arg). A side claimed before a refusal is released.
 */
export function gnttabCopy(m: Machine, ld: number, op: GrantCopy): number {
  if (op.len === 0) return GNTST_okay;
  const ps = m.config.page_size_bytes;
  const locked: number[] = [];
  try {
    for (const p of [op.src, op.dst]) {
      if (p.kind !== 'ref') continue;
      if (!lockGranter(m, p.domid as number)) return GNTST_bad_domain;
      locked.push(p.domid as number);
    }
    if (m.control.buggy(BUGS['gnttab-copy-double-lock']) && op.src.kind === 'ref' && op.dst.kind === 'ref' && op.src.domid !== op.dst.domid) {
      lookAtBothLocked(m, op.src, op.dst);
    }
    const src = acquireForCopy(m, ld, op.src, true);
    if (src.status !== GNTST_okay) return src.status;
    const dst = acquireForCopy(m, ld, op.dst, false);
    if (dst.status !== GNTST_okay) {
      releaseForCopy(m, ld, op.src, true, src.mfn);
      return dst.status;
    }
    const bad = (n: number): boolean => !Number.isInteger(n) || n < 0;
    if (bad(op.len) || bad(op.src.offset) || bad(op.dst.offset) || op.src.offset + op.len > ps || op.dst.offset + op.len > ps) {
      releaseForCopy(m, ld, op.dst, false, dst.mfn);
      releaseForCopy(m, ld, op.src, true, src.mfn);
      return GNTST_bad_copy_arg;
    }
    checkReach(m, ld, src.mfn, 'copied from (grant copy)');
    checkReach(m, ld, dst.mfn, 'copied to (grant copy)');
    checkAllocated(m, ld, src.mfn, 'copied from (grant copy)');
    checkAllocated(m, ld, dst.mfn, 'copied to (grant copy)');
    const u8 = m.frames.u8;
    u8.copyWithin(dst.mfn * ps + op.dst.offset, src.mfn * ps + op.src.offset, src.mfn * ps + op.src.offset + op.len);
    releaseForCopy(m, ld, op.dst, false, dst.mfn);
    releaseForCopy(m, ld, op.src, true, src.mfn);
    return GNTST_okay;
  } finally {
    for (const d of locked) putDomain(m, d);
  }
}

/**
 * The bug (XSA-380 class): Xen's double_gt_lock — both domains' grant-table
 * locks held at once (lower domid first) to look at both entries together.
 * One guest can then make the hypervisor hold its table lock while waiting
 * for another guest's; xgsim's rule is never two grant locks at once
 * (docs/locks.md rule 3), which the correct copy keeps by pinning one side,
 * releasing, then pinning the other. What the copy then returns is decided
 * by the same checks as without the bug.
 */
function lookAtBothLocked(m: Machine, src: Extract<CopyPtr, { kind: 'ref' }>, dst: Extract<CopyPtr, { kind: 'ref' }>): void {
  const lo = Math.min(src.domid as number, dst.domid as number);
  const hi = Math.max(src.domid as number, dst.domid as number);
  grantLock(m, lo, 'grant.copy.double_gt_lock');
  grantLock(m, hi, 'grant.copy.double_gt_lock');
  try {
    for (const p of [src, dst]) {
      if (Number.isInteger(p.ref) && p.ref >= 0 && p.ref < nrGrantEntries(m, p.domid as number)) Atomics.load(m.grants.shared, m.grants.sharedIdx(p.domid as number, p.ref));
    }
  } finally {
    grantUnlock(m, hi);
    grantUnlock(m, lo);
  }
}

/** gnttab_copy_claim_buf: a grant ref (its domain already looked up by gnttabCopy) or a gfn of the caller. */
function acquireForCopy(m: Machine, ld: number, p: CopyPtr, ro: boolean): Pin {
  if (p.kind === 'gfn') {
    const e = p2mGet(m, ld, p.gfn);
    const t = entryType(e);
    const mfn = entryMfn(e);
    if ((t !== P2M.ram_rw && !(ro && t === P2M.ram_ro)) || !getPage(m, mfn, ld)) return { status: GNTST_bad_page, mfn: -1 };
    return { status: GNTST_okay, mfn };
  }
  const pin = pinGrant(m, p.domid as number, p.ref, ld, ro, 'copy', 'grant.acquire_grant_for_copy');
  // For the copy, ld reaches the granted frame through the grant (layout/reach.ts).
  if (pin.status === GNTST_okay) m.reach.grant(pin.mfn, ld, REACH.GRANT);
  return pin;
}

function releaseForCopy(m: Machine, ld: number, p: CopyPtr, ro: boolean, mfn: number): void {
  if (p.kind === 'gfn') {
    putPage(m, mfn);
    return;
  }
  m.reach.release(mfn, ld, REACH.GRANT);
  unpinGrant(m, p.domid as number, p.ref, ro, 'grant.release_grant_for_copy');
}
