/**
 * Steal (docs/primitives.md): frontend RAM that nobody else references
 * becomes the backend's, quota and all; the frontend entry becomes as if
 * Map'd. Xen's nearest is steal_page (xen/arch/x86/mm.c, used by
 * XENMEM_exchange and grant transfer; -EOPNOTSUPP for HVM/PVH today): it
 * takes a reference, requires exactly that one and PGC_allocated
 * (count_info == 2 | PGC_allocated) and drops both with one cmpxchg, so a
 * racing get_page either came first (the steal fails) or fails itself;
 * then it unlinks the page from the owner under page_alloc_lock.
 */
import { REACH } from '../../layout/reach.js';
import { nrGrantEntries } from '../../xen/grant-table.js';
import { BUGS } from '../../xen/buggify.js';
import { hookPoint } from '../../xen/hooks.js';
import { DOM } from '../../layout/domains.js';
import { PGC_allocated } from '../../layout/frametable.js';
import { entryMfn, entryType, LEVEL_SPAN, p2mEntry, P2M_HOLE } from '../../layout/p2m.js';
import { KIND, REC } from './registry.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { p2mForEachLeaf, p2mGet, p2mInRange, p2mRoomLocked, p2mSetLocked } from '../../xen/p2m.js';
import { E2BIG, EBUSY, EEXIST, EINVAL, ENOMEM, ENOSPC, ESRCH } from '../../public/errno.js';
import { GTF_permit_access, GTF_type_mask, P2M } from '../../public/types.js';
import { PRIM } from '../../layout/trace.js';
import { tracePrim, tracer } from '../../xen/trace.js';
import { authority, countOk, fail, holdStolen, isRamMfn, lockPair, notDying, ok, pageAllocPair, rcOf, reapSteals, registryOf } from './common.js';
import type { DmOpResult, StealArgs } from '../../xen/design.js';


// ---------------------------------------------------------------- Steal

export function dmSteal(m: Machine, be: number, a: StealArgs): DmOpResult {
  const tw = tracer;
  return tw === null ? dmStealUntraced(m, be, a) : tracePrim(tw, PRIM.STEAL, a.fe, a.count, () => dmStealUntraced(m, be, a), rcOf);
}

function dmStealUntraced(m: Machine, be: number, a: StealArgs): DmOpResult {
  if (!countOk(a.count)) return fail(-EINVAL);
  const auth = authority(m, be, a.fe);
  if (auth !== 0) return fail(auth);
  hookPoint('steal.after_checks', a.fe, a.gfn);
  m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.steal');
  // Under the registry lock, which fe's teardown takes to end its Steals: an implicit Map made into a frontend
  // whose teardown ran since the check above would outlive it.
  if (!notDying(m, be) || !notDying(m, a.fe)) {
    m.unlock(GLOBAL_LOCK.REGISTRY);
    return fail(-ESRCH);
  }
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
  for (let ref = 0, n = nrGrantEntries(m, fe); ref < n; ref++) {
    const i = m.grants.sharedIdx(fe, ref);
    // Read once; a grant the guest writes after this is "after" the Steal
    // and fails at map time because the gfn is no longer RAM.
    const w0 = Atomics.load(m.grants.shared, i);
    if ((w0 & GTF_type_mask) === GTF_permit_access) out.add(Atomics.load(m.grants.shared, i + 1));
  }
  return out;
}

function stealLocked(m: Machine, be: number, a: StealArgs, release: () => void): DmOpResult {
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
    if (!p2mInRange(m, be, into + i)) return fail(-EINVAL, i);
    if (p2mGet(m, be, into + i) !== P2M_HOLE) return fail(-EEXIST, i);
  }
  // Tables for both sides' new entries; fe's pages in a superpage split it
  // (ept_split_super_page): -ENOMEM before anything changes.
  const range = (g: number): number[] => Array.from({ length: a.count }, (_, i) => g + i);
  if (p2mRoomLocked(m, a.fe, range(a.gfn)) < 0 || p2mRoomLocked(m, be, range(into)) < 0) return fail(-ENOMEM);
  // The Steal record and its implicit Map; Steals whose frames were freed give theirs back first.
  if (registryOf(m).freeCount(2) < 2) reapSteals(m);
  if (registryOf(m).freeCount(2) < 2) return fail(-ENOSPC);

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
    // The quota moves with the pages (the seed: "the frontend's quota is
    // decreased by the number of pages stolen, and the backend's quota is
    // increased by the same amount"), so a backend at its max may steal.
    const keepQuota = m.control.buggy(BUGS['steal-keeps-quota']);
    if (keepQuota && m.dom.at(be, DOM.TOT_PAGES) + a.count > m.dom.at(be, DOM.MAX_PAGES)) return fail(-E2BIG);
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
    //    (its right becomes the implicit Map's before the owner's goes);
    for (const mfn of mfns) m.reach.grant(mfn, fe, REACH.MAP);
    for (let i = 0; i < a.count; i++) p2mSetLocked(m, fe, a.gfn + i, p2mEntry(mfns[i]!, P2M.mmio_direct));
    // 2. the frames change hands, with the implicit Map's reference;
    for (const mfn of mfns) {
      m.reach.grant(mfn, be, REACH.OWNER);
      m.ft.setOwner(mfn, be);
      m.ft.storeCount(mfn, PGC_allocated | 2);
      m.reach.release(mfn, fe, REACH.OWNER);
    }
    m.dom.set(fe, DOM.TOT_PAGES, m.dom.at(fe, DOM.TOT_PAGES) - a.count);
    m.dom.set(be, DOM.TOT_PAGES, m.dom.at(be, DOM.TOT_PAGES) + a.count);
    if (!keepQuota) {
      m.dom.set(fe, DOM.MAX_PAGES, m.dom.at(fe, DOM.MAX_PAGES) - a.count);
      m.dom.set(be, DOM.MAX_PAGES, m.dom.at(be, DOM.MAX_PAGES) + a.count);
    }
  } finally {
    unlockPa();
  }
  // 3. only now the backend gets its RAM entries.
  for (let i = 0; i < a.count; i++) p2mSetLocked(m, be, into + i, p2mEntry(mfns[i]!, P2M.ram_rw));
  const reg = registryOf(m);
  // Neither is handed out again before it is live (Registry.alloc).
  const steal = reg.alloc();
  const map = reg.alloc();
  const mapId = reg.nextId();
  const stealId = reg.nextId();
  fill(m, steal, { kind: KIND.STEAL, be, fe, src: into, fe_gfn: a.gfn, count: a.count, type: P2M.ram_rw, parent: 0, link: map + 1, id: stealId });
  fill(m, map, { kind: KIND.MAP_RAM, be, fe, src: into, fe_gfn: a.gfn, count: a.count, type: P2M.mmio_direct, parent: 0, link: steal + 1, id: mapId });
  // Tied to the frames and the frontend they came from, not to be's gfns.
  for (let i = 0; i < a.count; i++) holdStolen(m, mfns[i]!, fe, steal, i);
  return ok(mapId);
}

function fill(
  m: Machine,
  r: number,
  f: { kind: number; be: number; fe: number; src: number; fe_gfn: number; count: number; type: number; parent: number; link: number; id: number },
): void {
  const reg = registryOf(m);
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
  reg.activate(r);
}

/**
 * Lowest run of `count` holes above d's highest RAM gfn — where a backend
 * puts what it steals when it names no place (not into a balloon hole the
 * guest may populate again).
 */
function findHoles(m: Machine, d: number, count: number): number {
  let top = -1;
  p2mForEachLeaf(m, d, (l) => {
    const t = entryType(l.e);
    const last = l.gfn + LEVEL_SPAN[l.level]! - 1;
    if ((t === P2M.ram_rw || t === P2M.ram_ro) && last > top) top = last;
  });
  let run = 0;
  for (let g = top + 1; p2mInRange(m, d, g); g++) {
    run = p2mGet(m, d, g) === P2M_HOLE ? run + 1 : 0;
    if (run === count) return g - count + 1;
  }
  return -1;
}
