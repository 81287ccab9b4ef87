/**
 * Return (docs/primitives.md): pages stolen from a frontend go back to it —
 * outstanding Maps of them revoked first (transitively), then ownership,
 * quota and a ram_rw entry, with the contents the backend left. Every
 * check comes before any change (all-or-nothing). Xen's nearest is
 * assign_pages (xen/common/page_alloc.c) of a stolen page to its new owner.
 */
import { MAX_MAPPINGS } from '../../layout/constants.js';
import { DOM } from '../../layout/domains.js';
import { PGC_allocated } from '../../layout/frametable.js';
import { entryMfn, entryType, p2mEntry, P2M_HOLE } from '../../layout/p2m.js';
import { KIND, REC } from './registry.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { p2mGet, p2mIndex, p2mIsEmpty, p2mRemoveLocked, p2mSetLocked } from '../../xen/p2m.js';
import { E2BIG, EBUSY, EEXIST, EINVAL } from '../../public/errno.js';
import { P2M } from '../../public/types.js';
import { PRIM } from '../../layout/trace.js';
import { tracePrim, tracer } from '../../xen/trace.js';
import { authority, countOk, fail, lockPair, ok, pageAllocPair, rcOf, recordCovers, registryOf, stealAt } from './common.js';
import { revokeRecord } from './revoke.js';
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

function returnChecks(m: Machine, be: number, a: ReturnArgs): ReturnPage[] | DmOpResult {
  const fe = a.fe;
  const reg = registryOf(m);
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

function returnLocked(m: Machine, be: number, a: ReturnArgs): DmOpResult {
  const fe = a.fe;
  const reg = registryOf(m);
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
  const reg = registryOf(m);
  for (let r = 0; r < MAX_MAPPINGS; r++) {
    if (reg.at(r, REC.STATE) !== 1 || reg.at(r, REC.KIND) !== KIND.MAP_RAM || reg.at(r, REC.BACKEND) !== be) continue;
    const src = reg.at(r, REC.SRC);
    const pages: number[] = [];
    for (let i = 0; i < reg.at(r, REC.COUNT); i++) if (reg.live(r, i) && src + i >= gfn && src + i < gfn + count) pages.push(i);
    if (pages.length > 0) revokeRecord(m, r, pages);
  }
}
