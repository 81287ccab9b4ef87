/**
 * Return (docs/primitives.md): pages stolen from a frontend go back to it —
 * outstanding Maps of them revoked first (transitively), then ownership,
 * quota and a ram_rw entry, with the contents the backend left. Every
 * check comes before any change (all-or-nothing). Xen's nearest is
 * assign_pages (xen/common/page_alloc.c) of a stolen page to its new owner.
 */
import { REACH } from '../../layout/reach.js';
import { DOM } from '../../layout/domains.js';
import { PGC_allocated } from '../../layout/frametable.js';
import { entryMfn, entryType, p2mEntry, P2M_HOLE } from '../../layout/p2m.js';
import { KIND, REC } from './registry.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { p2mGet, p2mInRange, p2mIsEmpty, p2mRemoveLocked, p2mRoomLocked, p2mSetLocked } from '../../xen/p2m.js';
import { E2BIG, EBUSY, EEXIST, EINVAL, ENOMEM, ESRCH } from '../../public/errno.js';
import { P2M } from '../../public/types.js';
import { PRIM } from '../../layout/trace.js';
import { tracePrim, tracer } from '../../xen/trace.js';
import { authority, countOk, fail, isRamMfn, lockPair, notDying, ok, pageAllocPair, rcOf, recordAt, recordCovers, registryOf, returnStolen, stealAt, stealOf } from './common.js';
import { BUGS } from '../../xen/buggify.js';
import { nestedMapsOf, revokeRecord } from './revoke.js';
import { hookPoint } from '../../xen/hooks.js';
import type { DmOpResult, ReturnArgs } from '../../xen/design.js';


// ---------------------------------------------------------------- Return

export function dmReturn(m: Machine, be: number, a: ReturnArgs): DmOpResult {
  const tw = tracer;
  return tw === null ? dmReturnUntraced(m, be, a) : tracePrim(tw, PRIM.RETURN, a.fe, a.count, () => dmReturnUntraced(m, be, a), rcOf);
}

function dmReturnUntraced(m: Machine, be: number, a: ReturnArgs): DmOpResult {
  if (!countOk(a.count)) return fail(-EINVAL);
  const auth = authority(m, be, a.fe);
  if (auth !== 0) return fail(auth);
  hookPoint('return.after_checks', a.fe, a.gfn);
  m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.return');
  try {
    // A frontend whose teardown ended its Steals since the check above has nothing to take back (not -EINVAL).
    if (!notDying(m, be) || !notDying(m, a.fe)) return fail(-ESRCH);
    return m.control.buggy(BUGS['return-revoke-before-checks']) ? returnRevokingFirst(m, be, a) : returnLocked(m, be, a);
  } finally {
    m.unlock(GLOBAL_LOCK.REGISTRY);
  }
}

interface ReturnPage {
  /** The Steal record and page that hold the frame. */
  steal: number;
  i: number;
  mfn: number;
  /** The frontend gfn it goes back to. */
  at: number;
  /** References the pages' Maps hold on the frame, which Return revokes. */
  maps: number;
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

/**
 * Every check of Return, before anything changes (all-or-nothing), in
 * order, per page k (be's gfn `gfn + k`):
 *  1. be's entry is ram_rw on a frame be owns that a Steal from fe holds
 *     (stealOf: tied to the frame, not the gfn) → else -EINVAL;
 *  2. the return gfn is inside fe's p2m → else -EINVAL;
 *  3. fe's entry there is a hole, revoked, or a Map of this very frame
 *     (the Steal's implicit Map, or one be made since: Return revokes it)
 *     → else -EEXIST;
 *  4. the frame's references are its allocation and those of the Maps
 *     Return will revoke, nothing else (no grant or foreign map, no copy
 *     in flight) → else -EBUSY.
 * Registry lock held.
 */
function returnChecks(m: Machine, be: number, a: ReturnArgs): ReturnPage[] | DmOpResult {
  const fe = a.fe;
  const reg = registryOf(m);
  // The bug brings back the old checks: only the Steal's own implicit Map
  // may sit at the return gfn, and the references are checked after the
  // revocations (returnRevokingFirst), not here.
  const old = m.control.buggy(BUGS['return-revoke-before-checks']);
  const byGfn = m.control.buggy(BUGS['steal-record-by-gfn']);
  const maps = mapRefsOfBackendGfns(m, be, a.gfn, a.count);
  const pages: ReturnPage[] = [];
  let hint = -1;
  // The Map that covered the previous return gfn, tried first at the next (most often the Steal's implicit one).
  let mapHint = -1;
  for (let k = 0; k < a.count; k++) {
    const g = a.gfn + k;
    const e = p2mGet(m, be, g);
    const mfn = entryMfn(e);
    if (e === P2M_HOLE || entryType(e) !== P2M.ram_rw || !isRamMfn(m, mfn) || m.ft.owner(mfn) !== be) return fail(-EINVAL, k);
    let s: number;
    let i: number;
    if (byGfn) {
      // The bug: whatever Steal record once put a page at this gfn.
      [s, i] = stealAt(m, be, g, hint);
      hint = s;
      if (s < 0 || reg.at(s, REC.FRONTEND) !== fe) return fail(-EINVAL, k);
    } else {
      const held = stealOf(m, mfn);
      if (held === undefined || held.fe !== fe) return fail(-EINVAL, k);
      s = held.r;
      i = held.i;
    }
    const at = a.at === undefined ? reg.at(s, REC.FE_GFN) + i : a.at + k;
    if (!p2mInRange(m, fe, at)) return fail(-EINVAL, k);
    const fe_e = p2mGet(m, fe, at);
    let mapOfThis: boolean;
    if (old) mapOfThis = recordCovers(m, reg.at(s, REC.LINK) - 1, fe, at) && entryMfn(fe_e) === mfn;
    else if (entryMfn(fe_e) !== mfn) mapOfThis = false;
    else {
      const r = recordAt(m, fe, at, mapHint);
      if (r >= 0) mapHint = r;
      mapOfThis = r >= 0;
    }
    if (!p2mIsEmpty(fe_e) && !mapOfThis) return fail(-EEXIST, k);
    const n = maps.get(mfn) ?? 0;
    if (!old && (m.ft.countInfo(mfn) !== (PGC_allocated | (1 + n)) || m.ft.typeCount(mfn) !== 0)) return fail(-EBUSY, k);
    pages.push({ steal: s, i, mfn, at, maps: n });
  }
  if (m.control.buggy(BUGS['steal-keeps-quota']) && m.dom.at(fe, DOM.TOT_PAGES) + a.count > m.dom.at(fe, DOM.MAX_PAGES)) return fail(-E2BIG);
  // Tables for the frontend's new entries (an `at` away from its RAM) and the backend's removals: -ENOMEM before anything changes.
  if (p2mRoomLocked(m, fe, pages.map((p) => p.at)) < 0 || p2mRoomLocked(m, be, pages.map((_, k) => a.gfn + k)) < 0) return fail(-ENOMEM);
  return pages;
}

function returnLocked(m: Machine, be: number, a: ReturnArgs): DmOpResult {
  const checked = returnChecks(m, be, a);
  if (!Array.isArray(checked)) return checked;
  const pages = checked;
  // Freeze each count at 0 with the Maps' references in it (steal_page's
  // cmpxchg): from here no get_page on these frames succeeds, so nothing the
  // checks saw can change. A racing reference taken since the checks makes
  // the freeze fail, and nothing has changed yet (all or nothing).
  for (let k = 0; k < pages.length; k++) {
    const p = pages[k]!;
    if (!m.ft.casCount(p.mfn, PGC_allocated | (1 + p.maps), 0)) {
      for (let j = 0; j < k; j++) m.ft.storeCount(pages[j]!.mfn, PGC_allocated | (1 + pages[j]!.maps));
      return fail(-EBUSY, k);
    }
  }
  // Every outstanding Map of these pages goes — the implicit one, others
  // the backend made of its gfns, and their nested children — their
  // references already taken by the frozen counts. The bug
  // return-leaves-other-mapping revokes only the Maps at the return gfns
  // (the implicit one and a re-Map there): the others stay live, on a frame
  // that becomes the frontend's RAM with their references lost in the count.
  const onlyAtReturn = m.control.buggy(BUGS['return-leaves-other-mapping'])
    ? (r: number): boolean => pages.some((p) => recordCovers(m, r, a.fe, p.at))
    : undefined;
  revokeMapsOfBackendGfns(m, be, a.gfn, a.count, new Set(pages.map((p) => p.mfn)), onlyAtReturn);
  transfer(m, be, a, pages);
  return ok();
}

/** The bug `return-revoke-before-checks`: the Maps go first, then the reference check may fail -EBUSY with them gone. */
function returnRevokingFirst(m: Machine, be: number, a: ReturnArgs): DmOpResult {
  const checked = returnChecks(m, be, a);
  if (!Array.isArray(checked)) return checked;
  revokeMapsOfBackendGfns(m, be, a.gfn, a.count);
  const pages = checked.map((p) => ({ ...p, maps: 0 }));
  for (let k = 0; k < pages.length; k++) {
    if (!m.ft.casCount(pages[k]!.mfn, PGC_allocated | 1, 0)) {
      for (let j = 0; j < k; j++) m.ft.storeCount(pages[j]!.mfn, PGC_allocated | 1);
      return fail(-EBUSY, k);
    }
  }
  transfer(m, be, a, pages);
  return ok();
}

/**
 * The frozen frames go back to fe, ordered so that no p2m ever holds a RAM
 * entry on a frame its domain does not own (invariant 4). Registry lock held.
 */
function transfer(m: Machine, be: number, a: ReturnArgs, pages: readonly ReturnPage[]): void {
  const fe = a.fe;
  const unlock = lockPair(m, be, fe, 'primitives.return');
  try {
    // 1. the backend loses its translation (flushed) while it still owns the frames;
    p2mRemoveLocked(m, be, pages.map((_, k) => a.gfn + k));
    // 2. the frames change hands, and the quota with them (Steal moved it);
    const unlockPa = pageAllocPair(m, be, fe, 'primitives.return');
    try {
      for (const p of pages) {
        m.reach.grant(p.mfn, fe, REACH.OWNER);
        m.ft.setOwner(p.mfn, fe);
        m.ft.storeCount(p.mfn, PGC_allocated | 1);
        m.reach.release(p.mfn, be, REACH.OWNER); // be's entry went, flushed, in step 1
      }
      m.dom.set(be, DOM.TOT_PAGES, m.dom.at(be, DOM.TOT_PAGES) - pages.length);
      m.dom.set(fe, DOM.TOT_PAGES, m.dom.at(fe, DOM.TOT_PAGES) + pages.length);
      if (!m.control.buggy(BUGS['steal-keeps-quota'])) {
        m.dom.set(be, DOM.MAX_PAGES, m.dom.at(be, DOM.MAX_PAGES) - pages.length);
        m.dom.set(fe, DOM.MAX_PAGES, m.dom.at(fe, DOM.MAX_PAGES) + pages.length);
      }
    } finally {
      unlockPa();
    }
    // 3. the frontend has RAM there again, with what the backend left in it.
    for (const p of pages) p2mSetLocked(m, fe, p.at, p2mEntry(p.mfn, P2M.ram_rw));
  } finally {
    unlock();
  }
  for (const p of pages) returnStolen(m, p.mfn, p.steal, p.i);
}

/** The live Maps whose source is backend RAM at be's gfns [gfn, gfn+count), and their nested children, page by page. Registry lock held. */
function mapsOfBackendGfns(m: Machine, be: number, gfn: number, count: number): Array<[number, number[]]> {
  const reg = registryOf(m);
  const out: Array<[number, number[]]> = [];
  // be's live records (the registry's index); those found in record order, as the scan found them.
  for (let r = reg.firstOfBackend(be); r >= 0; r = reg.nextOfBackend(r)) {
    if (reg.at(r, REC.KIND) !== KIND.MAP_RAM) continue;
    const src = reg.at(r, REC.SRC);
    // No page of it in the range: not looked at page by page.
    if (src >= gfn + count || src + reg.at(r, REC.COUNT) <= gfn) continue;
    const pages: number[] = [];
    for (let i = 0; i < reg.at(r, REC.COUNT); i++) if (reg.live(r, i) && src + i >= gfn && src + i < gfn + count) pages.push(i);
    if (pages.length > 0) out.push([r, pages]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

/** Revoke every live Map whose source is backend RAM at be's gfns [gfn, gfn+count) (nested children first). Registry lock held. */
function revokeMapsOfBackendGfns(m: Machine, be: number, gfn: number, count: number, absorbed?: ReadonlySet<number>, only?: (r: number) => boolean): void {
  for (const [r, pages] of mapsOfBackendGfns(m, be, gfn, count)) if (only === undefined || only(r)) revokeRecord(m, r, pages, absorbed);
}

/**
 * Per frame, the references that revokeMapsOfBackendGfns would drop: one
 * per live page of each of those Maps and of each nested Map made from
 * them, transitively (every RAM-backed mapping page holds one, map.ts).
 * Registry lock held.
 */
function mapRefsOfBackendGfns(m: Machine, be: number, gfn: number, count: number): Map<number, number> {
  const reg = registryOf(m);
  const refs = new Map<number, number>();
  const visit = (r: number, pages: readonly number[]): void => {
    const fe = reg.at(r, REC.FRONTEND);
    const first = reg.at(r, REC.FE_GFN);
    for (const i of pages) {
      const mfn = entryMfn(p2mGet(m, fe, first + i));
      refs.set(mfn, (refs.get(mfn) ?? 0) + 1);
    }
    for (const [c, sub] of nestedMapsOf(m, r, pages)) visit(c, sub);
  };
  for (const [r, pages] of mapsOfBackendGfns(m, be, gfn, count)) visit(r, pages);
  return refs;
}
