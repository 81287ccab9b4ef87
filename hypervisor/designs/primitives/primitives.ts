/**
 * Map, Revoke, Steal and Return: the dm_ops an IOREQ server's domain (the
 * backend) issues on a frontend. Semantics, check order and status codes:
 * docs/primitives.md. The algorithm of Revoke and its bound: docs/revoke.md.
 *
 * Lock order (docs/locks.md): domctl (BAR Maps only, for iomem_caps) →
 * registry → grant(fe) (Steal only) → p2m of the lower domid → p2m of the
 * higher → page_alloc (lower, higher) → heap. The registry lock serialises
 * every primitive; the p2m locks make each page's check and change one step
 * against the other users of the p2m (populate, balloon, grant and foreign
 * maps, copies, which all look a gfn up under or against that lock).
 */
import { MAX_MAPPINGS, MAX_PAGES_PER_OP, NR_GRANT_ENTRIES } from '../../layout/constants.js';
import { BUGS } from '../../xen/buggify.js';
import { hookPoint } from '../../xen/hooks.js';
import { CTL } from '../../layout/control.js';
import { sched } from '../../xen/platform.js';
import { iomemPermitted } from '../../xen/iomem.js';
import { DOM, DS } from '../../layout/domains.js';
import { PGC_allocated } from '../../layout/frametable.js';
import { entryMfn, entryType, p2mEntry, P2M_HOLE, P2M_REVOKED } from '../../layout/p2m.js';
import { KIND, REC } from './registry.js';
import { BUG_ON } from '../../layout/region.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { getPage, putPage } from '../../xen/mm.js';
import { p2mGet, p2mIndex, p2mIsEmpty, p2mLock, p2mRemoveLocked, p2mSetLocked, p2mUnlock } from '../../xen/p2m.js';
import { E2BIG, EBUSY, EEXIST, EINVAL, ENOENT, ENOSPC, EPERM, ESRCH } from '../../public/errno.js';
import { GTF_permit_access, GTF_type_mask, P2M, type P2mType } from '../../public/types.js';
import { PRIM } from '../../layout/trace.js';
import { tracePrim, tracer } from '../../xen/trace.js';

export type MapSource = { kind: 'ram'; gfn: number } | { kind: 'bar'; mfn: number };
export interface MapArgs {
  fe: number;
  source: MapSource;
  count: number;
  at: number;
  type?: P2mType;
}
export type RevokeTarget = { id: number } | { fe: number; gfn: number; count: number };
export interface StealArgs {
  fe: number;
  gfn: number;
  count: number;
  into?: number;
}
export interface ReturnArgs {
  fe: number;
  /** The backend's gfn of the first stolen page. */
  gfn: number;
  count: number;
  /** The frontend gfn to return to (default: where each page was stolen from). */
  at?: number;
}
export interface PrimResult {
  rc: number;
  /** First failing page, −1 for an argument error or success. */
  index: number;
  /** The mapping made (Map, Steal's implicit Map), 0 otherwise. */
  id: number;
}

const ok = (id = 0): PrimResult => ({ rc: 0, index: -1, id });
const rcOf = (r: PrimResult): number => r.rc;
const fail = (rc: number, index = -1): PrimResult => ({ rc, index, id: 0 });

// ---------------------------------------------------------------- helpers

function authority(m: Machine, be: number, fe: number): number {
  if (!Number.isInteger(fe) || fe < 0 || fe >= m.nd || m.dom.state(fe) !== DS.RUNNING) return -ESRCH;
  // A backend that crashed or is dying makes no new mappings (its pages would be stranded).
  if (m.dom.state(be) !== DS.RUNNING) return -ESRCH;
  if (be === fe) return -EINVAL;
  if (m.dom.at(fe, DOM.BACKEND) === be + 1 || m.dom.at(be, DOM.PRIVILEGED) !== 0) return 0;
  return -EPERM;
}

function countOk(count: number): boolean {
  return Number.isInteger(count) && count >= 1 && count <= MAX_PAGES_PER_OP;
}

/** Lock two domains' p2ms in domid order (Xen's p2m_lock of two domains, get_two_gfns). */
function lockPair(m: Machine, a: number, b: number, site: string): () => void {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  p2mLock(m, lo, site);
  if (hi !== lo) p2mLock(m, hi, site);
  return () => {
    if (hi !== lo) p2mUnlock(m, hi);
    p2mUnlock(m, lo);
  };
}

function pageAllocPair(m: Machine, a: number, b: number, site: string): () => void {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  m.lock(m.dom.at(lo, DOM.LOCK_PAGE_ALLOC), site, lo);
  if (hi !== lo) m.lock(m.dom.at(hi, DOM.LOCK_PAGE_ALLOC), site, hi);
  return () => {
    if (hi !== lo) m.unlock(m.dom.at(hi, DOM.LOCK_PAGE_ALLOC));
    m.unlock(m.dom.at(lo, DOM.LOCK_PAGE_ALLOC));
  };
}

/** The live mapping record that put frontend gfn (fe, gfn) there, or -1. Registry lock held. */
export function recordAt(m: Machine, fe: number, gfn: number): number {
  const reg = m.reg;
  for (let r = 0; r < MAX_MAPPINGS; r++) {
    if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL || reg.at(r, REC.FRONTEND) !== fe) continue;
    const i = gfn - reg.at(r, REC.FE_GFN);
    if (i >= 0 && i < reg.at(r, REC.COUNT) && reg.live(r, i)) return r;
  }
  return -1;
}

/**
 * Whether live mapping record r put frontend gfn (fe, gfn) there: the same
 * answer as `recordAt(m, fe, gfn) === r` without the scan, because at most
 * one live record covers a frontend gfn (Map and Steal fill only entries
 * that are empty or the frontend's own RAM, and a page's live bit goes
 * when its entry is revoked). Registry lock held.
 */
function recordCovers(m: Machine, r: number, fe: number, gfn: number): boolean {
  const reg = m.reg;
  if (r < 0 || reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL || reg.at(r, REC.FRONTEND) !== fe) return false;
  const i = gfn - reg.at(r, REC.FE_GFN);
  return i >= 0 && i < reg.at(r, REC.COUNT) && reg.live(r, i);
}

/** Index of backend gfn (be, gfn) in live steal record r, or -1. */
function stealIndex(m: Machine, r: number, be: number, gfn: number): number {
  const reg = m.reg;
  if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) !== KIND.STEAL || reg.at(r, REC.BACKEND) !== be) return -1;
  const i = gfn - reg.at(r, REC.SRC);
  return i >= 0 && i < reg.at(r, REC.COUNT) && reg.live(r, i) ? i : -1;
}

/**
 * The live steal record whose page went to backend gfn (be, gfn), and the
 * page's index; or [-1, -1]. `hint` is a record to try first (the one that
 * held the previous gfn of a range): at most one live steal record holds a
 * backend gfn (Steal fills only holes of be, and Return clears the page's
 * live bit), so a hit is the record the scan would find.
 */
function stealAt(m: Machine, be: number, gfn: number, hint = -1): [number, number] {
  if (hint >= 0) {
    const i = stealIndex(m, hint, be, gfn);
    if (i >= 0) return [hint, i];
  }
  for (let r = 0; r < MAX_MAPPINGS; r++) {
    const i = stealIndex(m, r, be, gfn);
    if (i >= 0) return [r, i];
  }
  return [-1, -1];
}

function isRamMfn(m: Machine, mfn: number): boolean {
  return mfn >= 0 && mfn < m.config.nr_frames;
}

function barOf(m: Machine, mfn: number, count: number): boolean {
  return m.sabs.bars.some((b) => mfn >= b.base_mfn && mfn + count <= b.base_mfn + b.nr_pages);
}

// ---------------------------------------------------------------- Map

export function dmMap(m: Machine, be: number, a: MapArgs): PrimResult {
  const tw = tracer;
  return tw === null ? dmMapUntraced(m, be, a) : tracePrim(tw, PRIM.MAP, a.fe, a.count, () => dmMapUntraced(m, be, a), rcOf);
}

function dmMapUntraced(m: Machine, be: number, a: MapArgs): PrimResult {
  if (!countOk(a.count)) return fail(-EINVAL);
  if (Atomics.load(m.control.w, CTL.MIDMAP_FE) === a.fe + 1) midMapRendezvous(m, a.fe);
  const auth = authority(m, be, a.fe);
  if (auth !== 0) return fail(auth);
  const type = a.type ?? P2M.mmio_direct;
  if (type !== P2M.mmio_direct && type !== P2M.mmio_dm) return fail(-EINVAL);
  const src = a.source;
  const bar = src.kind === 'bar';
  if (src.kind === 'bar') {
    if (!barOf(m, src.mfn, a.count)) return fail(-EINVAL);
    // iomem_caps change only under domctl; the check holds it, ahead of the
    // registry in the lock order, so checking be's caps never inverts it.
    m.lock(GLOBAL_LOCK.DOMCTL, 'primitives.map.iomem_caps');
  }
  try {
    if (src.kind === 'bar' && !iomemPermitted(m, be, src.mfn, a.count)) return fail(-EPERM);
    m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.map');
    try {
      return mapLocked(m, be, a, type);
    } finally {
      m.unlock(GLOBAL_LOCK.REGISTRY);
    }
  } finally {
    if (bar) m.unlock(GLOBAL_LOCK.DOMCTL);
  }
}

/**
 * Chaos destroy-mid-map: this Map into `fe` tells the host it has begun and
 * waits (bounded, holding no lock) until the host has started destroying
 * fe, so the destroy and the rest of the Map really race.
 */
function midMapRendezvous(m: Machine, fe: number): void {
  if (Atomics.compareExchange(m.control.w, CTL.MIDMAP_FE, fe + 1, -(fe + 1)) !== fe + 1) return;
  Atomics.notify(m.control.w, CTL.MIDMAP_FE);
  const until = sched().now_us() + MIDMAP_WAIT_US;
  for (let k = 0; Atomics.load(m.control.w, CTL.MIDMAP_FE) === -(fe + 1) && sched().now_us() < until; k++) sched().relax(k);
}
const MIDMAP_WAIT_US = 50_000;

function mapLocked(m: Machine, be: number, a: MapArgs, type: P2mType): PrimResult {
  const unlock = lockPair(m, be, a.fe, 'primitives.map');
  try {
    const mfns: number[] = [];
    let kind: number = a.source.kind === 'bar' ? KIND.MAP_BAR : 0;
    let parent = -1;
    for (let i = 0; i < a.count; i++) {
      if (a.source.kind === 'bar') {
        mfns.push(a.source.mfn + i);
      } else {
        const g = a.source.gfn + i;
        const e = p2mGet(m, be, g);
        const t = entryType(e);
        const mfn = entryMfn(e);
        let pageKind: number = 0;
        let pageParent = -1;
        if (e !== P2M_HOLE && t === P2M.ram_rw && isRamMfn(m, mfn) && m.ft.owner(mfn) === be) pageKind = KIND.MAP_RAM;
        else if (e !== P2M_HOLE && mfn >= 0 && (t === P2M.mmio_direct || t === P2M.mmio_dm)) {
          pageParent = recordAt(m, be, g);
          if (pageParent >= 0) pageKind = KIND.MAP_NESTED;
        }
        if (pageKind === 0) return fail(-EINVAL, i);
        if (pageKind === KIND.MAP_NESTED && m.config.transitive_revoke === false) return fail(-EPERM, i);
        if (i === 0) {
          kind = pageKind;
          parent = pageParent;
        } else if (pageKind !== kind || pageParent !== parent) return fail(-EINVAL, i);
        mfns.push(mfn);
      }
      const at = a.at + i;
      if (p2mIndex(m, a.fe, at) < 0) return fail(-EINVAL, i);
      if (!p2mIsEmpty(p2mGet(m, a.fe, at))) return fail(-EEXIST, i);
    }
    const r = m.reg.alloc();
    if (r < 0) return fail(-ENOSPC);
    // Page references for the mapping's life: one per RAM frame (a nested
    // Map holds its own, so each record can drop exactly what it took).
    for (let i = 0; i < mfns.length; i++) {
      const mfn = mfns[i]!;
      if (isRamMfn(m, mfn)) BUG_ON(!getPage(m, mfn, m.ft.owner(mfn)), `map: get_page of mfn ${mfn} failed under the p2m lock`);
    }
    const installed = m.control.buggy(BUGS['map-as-ram-rw']) ? P2M.ram_rw : type;
    for (let i = 0; i < mfns.length; i++) p2mSetLocked(m, a.fe, a.at + i, p2mEntry(mfns[i]!, installed));
    const id = m.reg.nextId();
    const reg = m.reg;
    reg.set(r, REC.KIND, kind);
    reg.set(r, REC.BACKEND, be);
    reg.set(r, REC.FRONTEND, a.fe);
    reg.set(r, REC.SRC, a.source.kind === 'bar' ? a.source.mfn : a.source.gfn);
    reg.set(r, REC.FE_GFN, a.at);
    reg.set(r, REC.COUNT, a.count);
    reg.set(r, REC.LIVE, a.count);
    reg.set(r, REC.TYPE, type);
    reg.set(r, REC.PARENT, parent + 1);
    reg.set(r, REC.PARENT_ID, parent >= 0 ? reg.at(parent, REC.ID) : 0);
    reg.set(r, REC.ID, id);
    for (let i = 0; i < a.count; i++) reg.setLive(r, i, true);
    reg.set(r, REC.STATE, 1);
    return ok(id);
  } finally {
    unlock();
  }
}

// ---------------------------------------------------------------- Revoke

/** Revoke never fails for valid arguments; an invalid id is -ENOENT (a backend bug). */
export function dmRevoke(m: Machine, be: number, t: RevokeTarget): number {
  if ('id' in t) {
    m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.revoke');
    try {
      const r = m.reg.find(t.id);
      if (r < 0 || m.reg.at(r, REC.BACKEND) !== be || m.reg.at(r, REC.KIND) === KIND.STEAL) return -ENOENT;
      // A tombstone (all pages revoked already): nothing to do, and that is success.
      if (m.reg.at(r, REC.STATE) === 1) revokeRecord(m, r, allLive(m, r));
      return 0;
    } finally {
      m.unlock(GLOBAL_LOCK.REGISTRY);
    }
  }
  if (!countOk(t.count)) return -EINVAL;
  if (!Number.isInteger(t.fe) || t.fe < 0 || t.fe >= m.nd || m.dom.state(t.fe) === DS.FREE) return -ESRCH;
  if (t.fe === be) return -EINVAL;
  if (m.dom.at(t.fe, DOM.BACKEND) !== be + 1 && m.dom.at(be, DOM.PRIVILEGED) === 0) return -EPERM;
  m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.revoke');
  try {
    revokeRange(m, (r) => m.reg.at(r, REC.BACKEND) === be, t.fe, t.gfn, t.count);
    return 0;
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

function allLive(m: Machine, r: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < m.reg.at(r, REC.COUNT); i++) if (m.reg.live(r, i)) out.push(i);
  return out;
}

/** Revoke the live pages of fe in [gfn, gfn+count) whose mapping passes `which`. Registry lock held. */
function revokeRange(m: Machine, which: (r: number) => boolean, fe: number, gfn: number, count: number): void {
  const reg = m.reg;
  for (let r = 0; r < MAX_MAPPINGS; r++) {
    if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL || reg.at(r, REC.FRONTEND) !== fe || !which(r)) continue;
    const first = reg.at(r, REC.FE_GFN);
    const pages: number[] = [];
    for (let i = 0; i < reg.at(r, REC.COUNT); i++) {
      const g = first + i;
      if (g >= gfn && g < gfn + count && reg.live(r, i)) pages.push(i);
    }
    if (pages.length > 0) revokeRecord(m, r, pages);
  }
}

/**
 * The heart of Revoke (docs/revoke.md). Registry lock held.
 *  1. Nested mappings made from these pages are revoked first (transitive).
 *  2. Under fe's p2m lock, the entries become revoked (GEN odd → store →
 *     TLB shootdown of every fe vCPU → GEN even): from here no vCPU of fe
 *     can reach the frames, and none of fe's hypercalls could (Map'd gfns
 *     are not RAM to them).
 *  3. Only then the mapping's page references go, so the backend may reuse
 *     the frames.
 */
export function revokeRecord(m: Machine, r: number, pages: readonly number[]): void {
  const tw = tracer;
  if (tw === null) revokeRecordUntraced(m, r, pages);
  else tracePrim(tw, PRIM.REVOKE, m.reg.at(r, REC.FRONTEND), pages.length, () => revokeRecordUntraced(m, r, pages), () => 0);
}

function revokeRecordUntraced(m: Machine, r: number, pages: readonly number[]): void {
  const reg = m.reg;
  const fe = reg.at(r, REC.FRONTEND);
  const first = reg.at(r, REC.FE_GFN);
  if (!m.control.buggy(BUGS['revoke-skip-nested'])) {
    const gfns = new Set(pages.map((i) => first + i));
    for (let c = 0; c < MAX_MAPPINGS; c++) {
      if (reg.at(c, REC.STATE) !== 1 || reg.at(c, REC.KIND) !== KIND.MAP_NESTED || reg.at(c, REC.PARENT) !== r + 1) continue;
      const src = reg.at(c, REC.SRC);
      const sub: number[] = [];
      for (let j = 0; j < reg.at(c, REC.COUNT); j++) if (reg.live(c, j) && gfns.has(src + j)) sub.push(j);
      if (sub.length > 0) revokeRecord(m, c, sub);
    }
  }
  const live = pages.filter((i) => reg.live(r, i));
  if (live.length === 0) return;
  p2mLock(m, fe, 'primitives.revoke');
  let old: number[];
  try {
    old = p2mRemoveLocked(m, fe, live.map((i) => first + i), P2M_REVOKED, { skipFlushBug: BUGS['skip-tlb-flush-on-revoke'] });
  } finally {
    p2mUnlock(m, fe);
  }
  for (const i of live) reg.setLive(r, i, false);
  reg.set(r, REC.LIVE, reg.at(r, REC.LIVE) - live.length);
  for (const e of old) {
    const mfn = entryMfn(e);
    if (e !== P2M_HOLE && isRamMfn(m, mfn)) putPage(m, mfn);
  }
  if (reg.at(r, REC.LIVE) === 0) {
    const link = reg.at(r, REC.LINK);
    if (link !== 0) reg.set(link - 1, REC.LINK, 0);
    reg.retire(r);
  }
}

// ---------------------------------------------------------------- Steal

export function dmSteal(m: Machine, be: number, a: StealArgs): PrimResult {
  const tw = tracer;
  return tw === null ? dmStealUntraced(m, be, a) : tracePrim(tw, PRIM.STEAL, a.fe, a.count, () => dmStealUntraced(m, be, a), rcOf);
}

function dmStealUntraced(m: Machine, be: number, a: StealArgs): PrimResult {
  if (!countOk(a.count)) return fail(-EINVAL);
  const auth = authority(m, be, a.fe);
  if (auth !== 0) return fail(auth);
  m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.steal');
  // fe's grant lock keeps pins and map_grant_ref's page resolution out
  // while we look at the grant table and move ownership (XSA-287 class).
  const gl = m.dom.at(a.fe, DOM.LOCK_GRANT);
  m.lock(gl, 'primitives.steal', a.fe);
  const unlock = lockPair(m, be, a.fe, 'primitives.steal');
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    unlock();
    m.unlock(gl);
  };
  try {
    return stealLocked(m, be, a, release);
  } finally {
    release();
    m.unlock(GLOBAL_LOCK.REGISTRY);
    // A racing grant, map or copy of the frontend page gets its locks here,
    // after the Steal, and finds the page no longer RAM.
    hookPoint('steal.window', a.fe, a.gfn);
  }
}

function grantedFrames(m: Machine, fe: number): Set<number> {
  const out = new Set<number>();
  for (let ref = 0; ref < NR_GRANT_ENTRIES; ref++) {
    const i = m.grants.sharedIdx(fe, ref);
    // Read once; a grant the guest writes after this is "after" the Steal
    // and fails at map time because the gfn is no longer RAM.
    const w0 = Atomics.load(m.grants.shared, i);
    if ((w0 & GTF_type_mask) === GTF_permit_access) out.add(Atomics.load(m.grants.shared, i + 1));
  }
  return out;
}

function stealLocked(m: Machine, be: number, a: StealArgs, release: () => void): PrimResult {
  const fe = a.fe;
  const skipGrant = m.control.buggy(BUGS['steal-skip-grant-check']);
  const skipRefs = m.control.buggy(BUGS['steal-skip-refcount-check']);
  const granted = skipGrant ? new Set<number>() : grantedFrames(m, fe);
  const mfns: number[] = [];
  for (let i = 0; i < a.count; i++) {
    const g = a.gfn + i;
    const e = p2mGet(m, fe, g);
    const mfn = entryMfn(e);
    if (e === P2M_HOLE || entryType(e) !== P2M.ram_rw || !isRamMfn(m, mfn) || m.ft.owner(mfn) !== fe) return fail(-EINVAL, i);
    if (granted.has(g)) return fail(-EBUSY, i);
    if (!skipRefs && (m.ft.countInfo(mfn) !== (PGC_allocated | 1) || m.ft.typeCount(mfn) !== 0)) return fail(-EBUSY, i);
    mfns.push(mfn);
  }
  const into = a.into ?? findHoles(m, be, a.count);
  if (into < 0) return fail(-ENOSPC);
  for (let i = 0; i < a.count; i++) {
    if (p2mIndex(m, be, into + i) < 0) return fail(-EINVAL, i);
    if (p2mGet(m, be, into + i) !== P2M_HOLE) return fail(-EEXIST, i);
  }
  if (m.reg.freeCount(2) < 2) return fail(-ENOSPC); // the Steal record and its implicit Map

  const unlocked = m.control.buggy(BUGS['steal-unlocked-transfer']);
  if (unlocked) {
    // The bug (XSA-287, steal_page violating the page_struct access
    // discipline): the pages were checked under the grant and p2m locks,
    // which are dropped here; the transfer below trusts that check instead
    // of freezing the counts it saw. A grant, foreign map or copy gets in.
    release();
    hookPoint('steal.window', a.fe, a.gfn);
  }
  const unlockPa = pageAllocPair(m, be, fe, 'primitives.steal');
  try {
    if (m.dom.at(be, DOM.TOT_PAGES) + a.count > m.dom.at(be, DOM.MAX_PAGES)) return fail(-E2BIG);
    // Xen's steal_page: freeze each count at 0 (no get_page can succeed on a
    // frozen page), then change the owner. All or nothing.
    const frozen: number[] = [];
    for (let i = 0; i < mfns.length; i++) {
      const mfn = mfns[i]!;
      const x = m.ft.countInfo(mfn);
      const expect = skipRefs || unlocked ? x : PGC_allocated | 1;
      if ((x & PGC_allocated) === 0 || !m.ft.casCount(mfn, expect, 0)) {
        for (let j = 0; j < frozen.length; j++) m.ft.storeCount(mfns[j]!, frozen[j]!);
        return fail(-EBUSY, i);
      }
      frozen.push(expect);
    }
    // Ordered so that no p2m ever holds a RAM entry on a frame its domain does
    // not own (invariant 4), at any instant a lock-free observer could see:
    // 1. fe's entries stop being RAM: the same frames, now as an implicit Map
    //    (no flush: a cached translation's access rights do not grow);
    for (let i = 0; i < a.count; i++) p2mSetLocked(m, fe, a.gfn + i, p2mEntry(mfns[i]!, P2M.mmio_direct));
    // 2. the frames change hands, with the implicit Map's reference;
    for (const mfn of mfns) {
      m.ft.setOwner(mfn, be);
      m.ft.storeCount(mfn, PGC_allocated | 2);
    }
    m.dom.set(fe, DOM.TOT_PAGES, m.dom.at(fe, DOM.TOT_PAGES) - a.count);
    m.dom.set(be, DOM.TOT_PAGES, m.dom.at(be, DOM.TOT_PAGES) + a.count);
  } finally {
    unlockPa();
  }
  // 3. only now the backend gets its RAM entries.
  for (let i = 0; i < a.count; i++) p2mSetLocked(m, be, into + i, p2mEntry(mfns[i]!, P2M.ram_rw));
  const reg = m.reg;
  const steal = m.reg.alloc();
  reg.set(steal, REC.STATE, 1);
  const map = m.reg.alloc();
  const mapId = reg.nextId();
  const stealId = reg.nextId();
  fill(m, steal, { kind: KIND.STEAL, be, fe, src: into, fe_gfn: a.gfn, count: a.count, type: P2M.ram_rw, parent: 0, link: map + 1, id: stealId });
  fill(m, map, { kind: KIND.MAP_RAM, be, fe, src: into, fe_gfn: a.gfn, count: a.count, type: P2M.mmio_direct, parent: 0, link: steal + 1, id: mapId });
  return ok(mapId);
}

function fill(
  m: Machine,
  r: number,
  f: { kind: number; be: number; fe: number; src: number; fe_gfn: number; count: number; type: number; parent: number; link: number; id: number },
): void {
  const reg = m.reg;
  reg.set(r, REC.KIND, f.kind);
  reg.set(r, REC.BACKEND, f.be);
  reg.set(r, REC.FRONTEND, f.fe);
  reg.set(r, REC.SRC, f.src);
  reg.set(r, REC.FE_GFN, f.fe_gfn);
  reg.set(r, REC.COUNT, f.count);
  reg.set(r, REC.LIVE, f.count);
  reg.set(r, REC.TYPE, f.type);
  reg.set(r, REC.PARENT, f.parent);
  reg.set(r, REC.LINK, f.link);
  reg.set(r, REC.ID, f.id);
  for (let i = 0; i < f.count; i++) reg.setLive(r, i, true);
  reg.set(r, REC.STATE, 1);
}

/**
 * Lowest run of `count` holes above d's highest RAM gfn — where a backend
 * puts what it steals when it names no place (not into a balloon hole the
 * guest may populate again).
 */
function findHoles(m: Machine, d: number, count: number): number {
  const size = m.dom.at(d, DOM.P2M_SIZE);
  let top = -1;
  for (let g = size - 1; g >= 0 && top < 0; g--) {
    const t = entryType(p2mGet(m, d, g));
    if (p2mGet(m, d, g) !== P2M_HOLE && (t === P2M.ram_rw || t === P2M.ram_ro)) top = g;
  }
  let run = 0;
  for (let g = top + 1; g < size; g++) {
    run = p2mGet(m, d, g) === P2M_HOLE ? run + 1 : 0;
    if (run === count) return g - count + 1;
  }
  return -1;
}

// ---------------------------------------------------------------- Return

export function dmReturn(m: Machine, be: number, a: ReturnArgs): PrimResult {
  const tw = tracer;
  return tw === null ? dmReturnUntraced(m, be, a) : tracePrim(tw, PRIM.RETURN, a.fe, a.count, () => dmReturnUntraced(m, be, a), rcOf);
}

function dmReturnUntraced(m: Machine, be: number, a: ReturnArgs): PrimResult {
  if (!countOk(a.count)) return fail(-EINVAL);
  const auth = authority(m, be, a.fe);
  if (auth !== 0) return fail(auth);
  m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.return');
  try {
    return returnLocked(m, be, a);
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

interface ReturnPage {
  steal: number;
  i: number;
  mfn: number;
  at: number;
}

/**
 * Return's first phase, for the scenario runner's sequential replays (the
 * real Return runs both phases under one registry lock, but accesses, which
 * take no lock, can see the frontend between them): the checks and, if they
 * pass, the revocation of every outstanding Map of the pages.
 */
export function dmReturnRevokePhase(m: Machine, be: number, a: ReturnArgs): void {
  if (!countOk(a.count) || authority(m, be, a.fe) !== 0) return;
  m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.return');
  try {
    if (Array.isArray(returnChecks(m, be, a))) revokeMapsOfBackendGfns(m, be, a.gfn, a.count);
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

function returnChecks(m: Machine, be: number, a: ReturnArgs): ReturnPage[] | PrimResult {
  const fe = a.fe;
  const reg = m.reg;
  const pages: ReturnPage[] = [];
  let hint = -1;
  for (let k = 0; k < a.count; k++) {
    const g = a.gfn + k;
    const e = p2mGet(m, be, g);
    const mfn = entryMfn(e);
    const [s, i] = stealAt(m, be, g, hint);
    hint = s;
    if (e === P2M_HOLE || entryType(e) !== P2M.ram_rw || s < 0 || reg.at(s, REC.FRONTEND) !== fe || m.ft.owner(mfn) !== be) return fail(-EINVAL, k);
    const at = a.at === undefined ? reg.at(s, REC.FE_GFN) + i : a.at + k;
    if (p2mIndex(m, fe, at) < 0) return fail(-EINVAL, k);
    const fe_e = p2mGet(m, fe, at);
    const implicit = reg.at(s, REC.LINK) - 1;
    const ownImplicit = recordCovers(m, implicit, fe, at) && entryMfn(fe_e) === mfn;
    if (!p2mIsEmpty(fe_e) && !ownImplicit) return fail(-EEXIST, k);
    pages.push({ steal: s, i, mfn, at });
  }
  if (m.dom.at(fe, DOM.TOT_PAGES) + a.count > m.dom.at(fe, DOM.MAX_PAGES)) return fail(-E2BIG);
  return pages;
}

function returnLocked(m: Machine, be: number, a: ReturnArgs): PrimResult {
  const fe = a.fe;
  const reg = m.reg;
  const checked = returnChecks(m, be, a);
  if (!Array.isArray(checked)) return checked;
  const pages = checked;
  // Every outstanding Map of these pages goes first — the implicit one,
  // others the backend made of its gfns, and their nested children.
  revokeMapsOfBackendGfns(m, be, a.gfn, a.count);
  const unlock = lockPair(m, be, fe, 'primitives.return');
  try {
    // Frozen first (all or nothing), then ordered so that no p2m ever holds a
    // RAM entry on a frame its domain does not own (invariant 4):
    for (let k = 0; k < pages.length; k++) {
      if (!m.ft.casCount(pages[k]!.mfn, PGC_allocated | 1, 0)) {
        for (let j = 0; j < k; j++) m.ft.storeCount(pages[j]!.mfn, PGC_allocated | 1);
        return fail(-EBUSY, k);
      }
    }
    // 1. the backend loses its translation (flushed) while it still owns the frames;
    p2mRemoveLocked(m, be, pages.map((_, k) => a.gfn + k));
    // 2. the frames change hands;
    const unlockPa = pageAllocPair(m, be, fe, 'primitives.return');
    try {
      for (const p of pages) {
        m.ft.setOwner(p.mfn, fe);
        m.ft.storeCount(p.mfn, PGC_allocated | 1);
      }
      m.dom.set(be, DOM.TOT_PAGES, m.dom.at(be, DOM.TOT_PAGES) - pages.length);
      m.dom.set(fe, DOM.TOT_PAGES, m.dom.at(fe, DOM.TOT_PAGES) + pages.length);
    } finally {
      unlockPa();
    }
    // 3. the frontend has RAM there again, with what the backend left in it.
    for (const p of pages) p2mSetLocked(m, fe, p.at, p2mEntry(p.mfn, P2M.ram_rw));
  } finally {
    unlock();
  }
  for (const p of pages) {
    reg.setLive(p.steal, p.i, false);
    reg.set(p.steal, REC.LIVE, reg.at(p.steal, REC.LIVE) - 1);
    if (reg.at(p.steal, REC.LIVE) === 0) reg.free(p.steal);
  }
  return ok();
}

/** Revoke every live Map whose source is backend RAM at be's gfns [gfn, gfn+count). Registry lock held. */
function revokeMapsOfBackendGfns(m: Machine, be: number, gfn: number, count: number): void {
  const reg = m.reg;
  for (let r = 0; r < MAX_MAPPINGS; r++) {
    if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) !== KIND.MAP_RAM || reg.at(r, REC.BACKEND) !== be) continue;
    const src = reg.at(r, REC.SRC);
    const pages: number[] = [];
    for (let i = 0; i < reg.at(r, REC.COUNT); i++) if (reg.live(r, i) && src + i >= gfn && src + i < gfn + count) pages.push(i);
    if (pages.length > 0) revokeRecord(m, r, pages);
  }
}

// ---------------------------------------------------------------- life cycle

/**
 * Domain d is being destroyed (its vCPUs are offline): revoke every mapping
 * it is the frontend or the backend of (nested children first, inside
 * revokeRecord); forget the Steal records of either side — pages stolen
 * from d stay the backend's, pages d stole go with d's RAM.
 */
export function registryDomainDying(m: Machine, d: number): void {
  m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.domain_dying');
  try {
    const reg = m.reg;
    for (let r = 0; r < MAX_MAPPINGS; r++) {
      if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) === KIND.STEAL) continue;
      if (reg.at(r, REC.FRONTEND) === d || reg.at(r, REC.BACKEND) === d) revokeRecord(m, r, allLive(m, r));
    }
    for (let r = 0; r < MAX_MAPPINGS; r++) {
      if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) !== KIND.STEAL) continue;
      if (reg.at(r, REC.FRONTEND) === d || reg.at(r, REC.BACKEND) === d) {
        const link = reg.at(r, REC.LINK);
        if (link !== 0) reg.set(link - 1, REC.LINK, 0);
        reg.free(r);
      }
    }
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}
