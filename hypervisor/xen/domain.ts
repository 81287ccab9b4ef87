/**
 * Domain life cycle (xen/common/domain.c): create, crash, destroy, and the
 * zombie state a destroyed domain stays in while frames still reference it.
 *
 *   FREE ─create─▶ CREATING ─▶ RUNNING ─crash─▶ CRASHED
 *                                 │                │
 *                                 └────destroy─────┴──▶ DYING ─relinquish─▶ ZOMBIE ─last page/ref─▶ FREE
 *
 * A domain's slot (and its domid) is reused only once it is FREE: every
 * page it owned has been freed and no operation holds a domain reference.
 */
import { REACH } from '../layout/reach.js';
import { designOf } from './design.js';
import { IOS } from '../layout/ioreq-slots.js';
import { XS_KEY, xsKey } from '../public/xenstore.js';
import { INITIAL_NR_GRANT_FRAMES, MAX_VCPUS, MAX_VCPUS_PER_DOMAIN, XEN_MAX_GRANT_FRAMES, XEN_MAX_MAPTRACK_FRAMES, P2M_DEFAULT_PADDR_BITS, P2M_MAX_PADDR_BITS, P2M_MIN_PADDR_BITS, P2M_SUPERPAGE_MAX_LEVEL } from '../layout/constants.js';
import { EEXIST, EINVAL, ENOMEM, ENOSPC, ESRCH } from '../public/errno.js';
import { P2M } from '../public/types.js';
import { DOM, DS, PASSTHROUGH, type DomainState, type PassthroughMode } from '../layout/domains.js';
import { atomicMax, CTL } from '../layout/control.js';
import { entryMfn, entryType } from '../layout/p2m.js';
import { PGC_allocated } from '../layout/frametable.js';
import { STAT, VC } from '../layout/vcpus.js';
import { ioreqServersDomainDying } from './ioreq.js';
import { MT, MT_INUSE } from '../layout/grants.js';
import { GLOBAL_LOCK, type Machine } from './machine.js';
import { allocDomFrame, allocDomRun, putPage, relinquishFrame } from './mm.js';
import { putDomain } from './domain-ref.js';
import { iomemReset } from './iomem.js';
export { getDomain, putDomain, reapDomain } from './domain-ref.js';
import { p2mClearLocked, p2mCreate, p2mInRange, p2mInsert, p2mInsertSuper, p2mLock, p2mUnlock } from './p2m.js';
import { LEVEL_SPAN, levelsFor, p2mEntry, p2mPoolPagesFor } from '../layout/p2m.js';
import { BUG } from '../layout/region.js';
import { sched } from './platform.js';
import { pcpuCount, pcpuGive, pcpuTake } from './schedule.js';
import { VS } from './vcpu.js';
import { unmapGrantHandle } from './grant-table.js';

export interface DomainCreateSpec {
  /** Requested domid, or -1 for the lowest free one. */
  domid: number;
  max_pages: number;
  nr_vcpus: number;
  /** Guest physical address width in bits (default P2M_DEFAULT_PADDR_BITS): gfns below 2^(bits − 12). */
  paddr_bits?: number;
  /** Table pages its p2m may hold (Xen's HAP pool size); default: enough for max_pages at 4 KiB (p2mPoolPagesFor). */
  p2m_pages?: number;
  privileged: boolean;
  /** The domain running this one's IOREQ server (allowed to Map/Revoke/Steal/Return on it). */
  backend?: number;
  /** Grant frames its table may have (default XEN_MAX_GRANT_FRAMES, at least 1). */
  max_grant_frames?: number;
  /** Maptrack frames it may grow (default XEN_MAX_MAPTRACK_FRAMES, 0 allowed: it maps no grant). */
  max_maptrack_frames?: number;
  /** A device passed through to it, and how its IOMMU context translates (xen/iommu.ts); default none. */
  passthrough?: PassthroughMode;
}

export function domainState(m: Machine, d: number): DomainState {
  return m.dom.state(d);
}

export function isAlive(m: Machine, d: number): boolean {
  return d >= 0 && d < m.nd && m.dom.state(d) === DS.RUNNING;
}

function allocVcpuSlots(m: Machine, n: number): number {
  for (let base = 0; base + n <= MAX_VCPUS; base++) {
    let ok = true;
    for (let v = 0; v < n && ok; v++) ok = m.vcpus.at(base + v, VC.IN_USE) === 0;
    if (ok) return base;
  }
  return -1;
}

/** domctl createdomain: an empty domain (no memory yet) in RUNNING. Returns the domid or -errno. */
export function domainCreate(m: Machine, spec: DomainCreateSpec): number {
  if (spec.nr_vcpus < 1 || spec.nr_vcpus > MAX_VCPUS_PER_DOMAIN) return -EINVAL;
  const bits = spec.paddr_bits ?? P2M_DEFAULT_PADDR_BITS;
  if (!Number.isInteger(bits) || bits < P2M_MIN_PADDR_BITS || bits > P2M_MAX_PADDR_BITS || spec.max_pages < 0) return -EINVAL;
  const pages = spec.p2m_pages ?? p2mPoolPagesFor(bits, [[0, spec.max_pages]]);
  if (!Number.isInteger(pages) || pages < 1) return -EINVAL;
  // grant_table_init: at least one grant frame, no more than the host's limits.
  const gf = spec.max_grant_frames ?? XEN_MAX_GRANT_FRAMES;
  const mf = spec.max_maptrack_frames ?? XEN_MAX_MAPTRACK_FRAMES;
  if (!Number.isInteger(gf) || gf < 1 || gf > XEN_MAX_GRANT_FRAMES || !Number.isInteger(mf) || mf < 0 || mf > XEN_MAX_MAPTRACK_FRAMES) return -EINVAL;
  m.lock(GLOBAL_LOCK.DOMCTL, 'domain.create');
  try {
    let d = spec.domid;
    if (d >= 0) {
      if (d >= m.nd) return -EINVAL;
      if (m.dom.state(d) !== DS.FREE) return -EEXIST;
    } else {
      d = 0;
      while (d < m.nd && m.dom.state(d) !== DS.FREE) d++;
      if (d === m.nd) return -ENOSPC;
    }
    const vbase = allocVcpuSlots(m, spec.nr_vcpus);
    if (vbase < 0) return -ENOSPC;
    // Its share of the p2m pool is promised and its root table allocated
    // while the slot is still FREE to everyone else (hap_set_allocation).
    if (p2mCreate(m, d, bits, pages, levelsFor(bits)) < 0) return -ENOMEM;
    m.dom.set(d, DOM.STATE, DS.CREATING);
    m.dom.set(d, DOM.TOT_PAGES, 0);
    m.dom.set(d, DOM.MAX_PAGES, spec.max_pages);
    m.dom.set(d, DOM.REFCNT, 0);
    m.dom.set(d, DOM.NR_VCPUS, spec.nr_vcpus);
    m.dom.set(d, DOM.VCPU_BASE, vbase);
    m.dom.set(d, DOM.PRIVILEGED, spec.privileged ? 1 : 0);
    iomemReset(m, d); // under domctl, as every write of iomem_caps (xen/iomem.ts)
    m.dom.set(d, DOM.RATCHET, 0);
    m.dom.set(d, DOM.BACKEND, spec.backend === undefined ? 0 : spec.backend + 1);
    m.dom.set(d, DOM.MAX_GRANT_FRAMES, gf);
    m.dom.set(d, DOM.MAX_MAPTRACK_FRAMES, mf);
    m.dom.set(d, DOM.NR_GRANT_FRAMES, INITIAL_NR_GRANT_FRAMES); // grant_table_init → gnttab_grow_table(d, 0)
    atomicMax(m.control.w, CTL.GRANT_FRAMES_PEAK, INITIAL_NR_GRANT_FRAMES);
    m.dom.set(d, DOM.PASSTHROUGH, PASSTHROUGH[spec.passthrough ?? 'disabled']);
    m.dom.add(d, DOM.GENERATION, 1);
    // GEN keeps counting up across domains using the same table page, so
    // a stale TLB entry of an earlier owner can never look current.
    m.grants.reset(d);
    const store = new Int32Array(m.sabs.store);
    for (const k of Object.values(XS_KEY)) Atomics.store(store, xsKey(d, k), 0);
    for (let v = 0; v < spec.nr_vcpus; v++) {
      const s = vbase + v;
      m.vcpus.set(s, VC.DOMID, d);
      m.vcpus.set(s, VC.VCPU, v);
      m.vcpus.set(s, VC.STATE, VS.OFFLINE);
      m.vcpus.set(s, VC.ACK_EPOCH, m.dom.at(d, DOM.FLUSH_EPOCH));
      m.vcpus.set(s, VC.HEARTBEAT, 0);
      m.vcpus.set(s, VC.HANG_MS, 0);
      m.vcpus.set(s, VC.PCPU, 0);
      Atomics.store(m.ios.slots, m.ios.idx(s) + IOS.APPLIED, 0);
      m.vcpus.stats.fill(0, s * STAT.WORDS, (s + 1) * STAT.WORDS);
      m.vcpus.set(s, VC.IN_USE, 1);
    }
    m.dom.set(d, DOM.STATE, DS.RUNNING);
    return d;
  } finally {
    m.unlock(GLOBAL_LOCK.DOMCTL);
  }
}

/**
 * Populate `count` pages of fresh RAM at gfns first…first+count−1, as the
 * toolstack builds an HVM guest (meminit_hvm, tools/libs/guest/xg_dom_x86.c):
 * 1 GiB extents where gfn and count allow, then 2 MiB, then 4 KiB pages —
 * each superpage extent one populate_physmap of extent_order 18 or 9, and a
 * superpage that cannot be had (no aligned free run, no room) falls back
 * to the next size down, as meminit_hvm does.
 */
export function populateRange(m: Machine, d: number, first: number, count: number): number {
  const end = first + count;
  let g = first;
  while (g < end) {
    const level = superLevelAt(g, end - g);
    if (level > 1 && populateSuper(m, d, g, level) === 0) {
      g += LEVEL_SPAN[level]!;
      continue;
    }
    // 4 KiB pages up to the next 2 MiB boundary (or the end).
    const stop = Math.min(end, (Math.floor(g / LEVEL_SPAN[2]!) + 1) * LEVEL_SPAN[2]!);
    for (; g < stop; g++) {
      const rc = populateOne(m, d, g);
      if (rc < 0) return rc;
    }
  }
  return 0;
}

/** The largest superpage level (3: 1 GiB, 2: 2 MiB) aligned at gfn that `left` pages fill, or 1. */
function superLevelAt(gfn: number, left: number): number {
  for (let k = P2M_SUPERPAGE_MAX_LEVEL; k >= 2; k--) if (gfn % LEVEL_SPAN[k]! === 0 && left >= LEVEL_SPAN[k]!) return k;
  return 1;
}

/**
 * One superpage extent: alloc_domheap_pages of its order (an aligned run
 * of free frames), then p2m_set_entry with one superpage entry. 0, or a
 * negative errno with nothing left allocated (the caller falls back).
 */
function populateSuper(m: Machine, d: number, gfn: number, level: number): number {
  if (!p2mInRange(m, d, gfn) || !p2mInRange(m, d, gfn + LEVEL_SPAN[level]! - 1)) return -EINVAL;
  const mfn = allocDomRun(m, d, level);
  if (mfn < 0) return mfn;
  p2mLock(m, d, 'memory.populate_physmap');
  const rc = p2mInsertSuper(m, d, gfn, level, p2mEntry(mfn, P2M.ram_rw));
  p2mUnlock(m, d);
  if (rc < 0) for (let i = LEVEL_SPAN[level]! - 1; i >= 0; i--) relinquishFrame(m, mfn + i);
  return rc;
}

/**
 * Allocate one frame and map it ram_rw at a hole (the toolstack building a
 * domain). -EEXIST if the gfn is not a hole. A guest's XENMEM_populate_physmap
 * is memory.ts populatePhysmap, which does what Xen does over occupied gfns.
 */
export function populateOne(m: Machine, d: number, gfn: number): number {
  if (!p2mInRange(m, d, gfn)) return -EINVAL;
  const mfn = allocDomFrame(m, d);
  if (mfn < 0) return mfn;
  p2mLock(m, d, 'memory.populate_physmap');
  const rc = p2mInsert(m, d, gfn, p2mEntry(mfn, P2M.ram_rw));
  p2mUnlock(m, d);
  if (rc < 0) relinquishFrame(m, mfn);
  return rc;
}

export { domainCrash } from './domain-crash.js';

/**
 * domain_kill + domain_relinquish_resources. Stops d's vCPUs (bounded wait:
 * they leave at their next boundary or hypercall exit), tears down its
 * grant maps and foreign maps, drops the allocation reference of its RAM;
 * the domain is a zombie until the last page referencing it is freed.
 * `self` is the slot of the calling vCPU (-1 for the toolstack), which is
 * not waited for.
 */
export function domainDestroy(m: Machine, d: number, selfSlot = -1): number {
  if (!Number.isInteger(d) || d < 0 || d >= m.nd) return -ESRCH;
  for (;;) {
    const st = m.dom.state(d);
    if (st !== DS.RUNNING && st !== DS.CRASHED) return -ESRCH;
    if (m.dom.cas(d, DOM.STATE, st, DS.DYING)) break;
  }
  // Pin the slot while we work on it.
  m.dom.add(d, DOM.REFCNT, 1);
  waitVcpusOffline(m, d, selfSlot);

  // 0. Mappings it is either side of (revoked, nested first), its IOREQ servers.
  designOf(m).domainDying(m, d);
  ioreqServersDomainDying(m, d);

  // 1. Grant maps this domain holds of others (its maptrack).
  for (let h = 0; h < m.grants.handles(d); h++) {
    const i = m.grants.mtIdx(d, h);
    if ((Atomics.load(m.grants.maptrack, i + MT.FLAGS) & MT_INUSE) !== 0) unmapGrantHandle(m, d, h);
  }
  // 2. Its p2m: foreign maps drop their reference, RAM its allocation
  // reference (a superpage's every frame). The tables stay until the slot
  // is freed (p2mFreeTables, reapDomain).
  p2mLock(m, d, 'domain.relinquish_resources');
  const leaves = p2mClearLocked(m, d);
  p2mUnlock(m, d);
  for (const l of leaves) {
    const t = entryType(l.e);
    const mfn = entryMfn(l.e);
    if (t === P2M.ram_rw || t === P2M.ram_ro) {
      // Highest frame first: the heap's stack then hands the run out again in order (mm.ts allocDomRun).
      for (let i = LEVEL_SPAN[l.level]! - 1; i >= 0; i--) if (m.ft.owner(mfn + i) === d) relinquishFrame(m, mfn + i);
    } else if (t === P2M.map_foreign) {
      // grant maps were removed with the maptrack above; a foreign map holds a page reference.
      if (l.level !== 1) BUG(`d${d}: a foreign map at gfn ${l.gfn} is a superpage`);
      m.reach.release(mfn, d, REACH.FOREIGN);
      putPage(m, mfn);
    }
  }
  // 2b. Pages it owns that no gfn holds any more: the page populate_physmap
  // displaced or left unmapped, the RAM remove_from_physmap unmapped (memory.ts).
  // Xen's relinquish_memory walks d->page_list; xgsim has no page list, so the
  // frame table is searched, and only if some page is still counted.
  if (m.dom.at(d, DOM.TOT_PAGES) > 0) {
    for (let mfn = 0; mfn < m.ft.nr_frames; mfn++) {
      if (m.ft.owner(mfn) === d && (m.ft.countInfo(mfn) & PGC_allocated) !== 0) relinquishFrame(m, mfn);
    }
  }
  // 3. vCPU slots go back.
  const vbase = m.dom.at(d, DOM.VCPU_BASE);
  for (let v = 0; v < m.dom.at(d, DOM.NR_VCPUS); v++) m.vcpus.set(vbase + v, VC.IN_USE, 0);
  // iomem_caps stay until the slot is reused (iomemReset at creation), as
  // Xen frees a domain's rangesets only in _domain_destroy: a dying domain
  // maps nothing, and only domctl (which holds domctl) writes them.
  m.dom.cas(d, DOM.STATE, DS.DYING, DS.ZOMBIE);
  putDomain(m, d);
  return 0;
}

function waitVcpusOffline(m: Machine, d: number, selfSlot: number): void {
  const vbase = m.dom.at(d, DOM.VCPU_BASE);
  const s = sched();
  // A vCPU destroying a domain gives its pCPU up while it waits: the vCPUs
  // it waits for may need one to reach their next step and go offline.
  const held = selfSlot >= 0 && pcpuCount(m) > 0 && m.vcpus.at(selfSlot, VC.PCPU) === 1;
  if (held) pcpuGive(m, selfSlot);
  try {
    for (let v = 0; v < m.dom.at(d, DOM.NR_VCPUS); v++) {
      const slot = vbase + v;
      if (slot === selfSlot) continue;
      for (let i = 0; m.vcpus.at(slot, VC.STATE) !== VS.OFFLINE; i++) s.relax(i + 1000);
    }
  } finally {
    if (held) pcpuTake(m, selfSlot);
  }
}
