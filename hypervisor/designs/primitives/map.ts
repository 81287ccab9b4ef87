/**
 * Map (docs/primitives.md): a backend buffer (its RAM, or a BAR it holds
 * iomem permission for) into empty frontend gfns, as mmio_direct or
 * mmio_dm — never ram_rw. Xen has no such dm_op; the nearest are
 * XEN_DOMCTL_memory_mapping for a BAR (map_mmio_regions, after
 * iomem_access_permitted) and a foreign map for RAM (p2m_add_foreign,
 * which takes a page reference on insert).
 */
import { REACH } from '../../layout/reach.js';
import { BUGS } from '../../xen/buggify.js';
import { CTL } from '../../layout/control.js';
import { sched } from '../../xen/platform.js';
import { iomemPermitted } from '../../xen/iomem.js';
import { entryMfn, entryType, LEVEL_SPAN, p2mEntry, P2M_HOLE } from '../../layout/p2m.js';
import { KIND, REC } from './registry.js';
import { BUG } from '../../layout/region.js';
import { GLOBAL_LOCK, type Machine } from '../../xen/machine.js';
import { getPage } from '../../xen/mm.js';
import { p2mGet, p2mInRange, p2mIsEmpty, p2mMapRoomLocked, p2mMapSuperLocked, p2mSetLocked, p2mSuperFits } from '../../xen/p2m.js';
import { EEXIST, EINVAL, ENOMEM, ENOSPC, EPERM, ESRCH } from '../../public/errno.js';
import { P2M, type P2mType } from '../../public/types.js';
import { PRIM } from '../../layout/trace.js';
import { tracePrim, tracer } from '../../xen/trace.js';
import { hookPoint } from '../../xen/hooks.js';
import { authority, barOf, countOk, fail, isRamMfn, lockPair, notDying, ok, rcOf, reapSteals, recordAt, registryOf } from './common.js';
import type { DmOpResult, MapArgs } from '../../xen/design.js';


// ---------------------------------------------------------------- Map

export function dmMap(m: Machine, be: number, a: MapArgs): DmOpResult {
  const tw = tracer;
  return tw === null ? dmMapUntraced(m, be, a) : tracePrim(tw, PRIM.MAP, a.fe, a.count, () => dmMapUntraced(m, be, a), rcOf);
}

function dmMapUntraced(m: Machine, be: number, a: MapArgs): DmOpResult {
  if (!countOk(a.count)) return fail(-EINVAL);
  if (Atomics.load(m.control.w, CTL.MIDMAP_FE) === a.fe + 1) midMapRendezvous(m, a.fe);
  const auth = authority(m, be, a.fe);
  if (auth !== 0) return fail(auth);
  hookPoint('map.after_checks', a.fe, a.at);
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
    // The backend's caps, never the frontend's (Xen's iomem_access_permitted in XEN_DOMCTL_memory_mapping);
    // the bug map-bar-skip-iomem-check skips it: any backend maps any BAR.
    if (src.kind === 'bar' && !m.control.buggy(BUGS['map-bar-skip-iomem-check']) && !iomemPermitted(m, be, src.mfn, a.count)) return fail(-EPERM);
    m.lock(GLOBAL_LOCK.REGISTRY, 'primitives.map');
    try {
      if (!notDying(m, be) || !notDying(m, a.fe)) return fail(-ESRCH);
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

function mapLocked(m: Machine, be: number, a: MapArgs, type: P2mType): DmOpResult {
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
          // The previous page's parent first: a range re-Mapped is most often one mapping's.
          pageParent = recordAt(m, be, g, parent);
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
      if (!p2mInRange(m, a.fe, at)) return fail(-EINVAL, i);
      if (!p2mIsEmpty(p2mGet(m, a.fe, at))) return fail(-EEXIST, i);
    }
    // The frontend's tables for the new entries (a BAR at 32 GiB needs a new
    // path), and a page for each superpage's split: p2m_set_entry's -ENOMEM,
    // before anything changes.
    const installed = m.control.buggy(BUGS['map-as-ram-rw']) ? P2M.ram_rw : type;
    const supers = installed === type ? superChunks(m, a) : [];
    const small = Array.from({ length: a.count }, (_, i) => i).filter((i) => !supers.some((c) => i >= c && i < c + LEVEL_SPAN[2]!));
    if (p2mMapRoomLocked(m, a.fe, supers.map((c) => a.at + c), small.map((i) => a.at + i)) < 0) return fail(-ENOMEM);
    if (registryOf(m).freeCount(1) < 1) reapSteals(m); // Steals whose frames were freed give their records back
    const r = registryOf(m).alloc();
    if (r < 0) return fail(-ENOSPC);
    // Page references for the mapping's life: one per RAM frame (a nested
    // Map holds its own, so each record can drop exactly what it took).
    for (let i = 0; i < mfns.length; i++) {
      const mfn = mfns[i]!;
      if (isRamMfn(m, mfn) && !getPage(m, mfn, m.ft.owner(mfn))) BUG(`map: get_page of mfn ${mfn} failed under the p2m lock`);
      // The frontend's right to the frame, before its entry is published (layout/reach.ts).
      m.reach.grant(mfn, a.fe, REACH.MAP);
    }
    for (const c of supers) if (p2mMapSuperLocked(m, a.fe, a.at + c, p2mEntry(mfns[c]!, installed)) !== 0) BUG(`map: d${a.fe} gfn ${a.at + c} changed under the p2m lock`);
    for (const i of small) p2mSetLocked(m, a.fe, a.at + i, p2mEntry(mfns[i]!, installed));
    const id = registryOf(m).nextId();
    const reg = registryOf(m);
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
    reg.activate(r);
    return ok(id);
  } finally {
    unlock();
  }
}

/**
 * The offsets of a BAR Map's 2 MiB chunks that one superpage entry can map:
 * Xen's map_mmio_regions → set_mmio_p2m_entry with mmio_order
 * (xen/arch/x86/mm/p2m.c), which takes 2 MiB where gfn and frame are both
 * aligned and the range covers it (never 1 GiB: mmio_order keeps that
 * disabled), and where the 512 gfns are one hole (a range split before
 * keeps its 4 KiB table: docs/decisions.md, "The p2m's levels"). A Map of
 * RAM is 4 KiB pages, as p2m_add_foreign's are.
 */
function superChunks(m: Machine, a: MapArgs): number[] {
  if (a.source.kind !== 'bar') return [];
  const span = LEVEL_SPAN[2]!;
  const out: number[] = [];
  for (let c = 0; c + span <= a.count; c++) {
    if ((a.at + c) % span === 0 && (a.source.mfn + c) % span === 0 && p2mSuperFits(m, a.fe, a.at + c)) {
      out.push(c);
      c += span - 1;
    }
  }
  return out;
}
