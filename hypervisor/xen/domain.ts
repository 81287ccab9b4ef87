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
import { MAX_VCPUS, MAX_VCPUS_PER_DOMAIN, NR_MAPTRACK_ENTRIES } from '../layout/constants.js';
import { EEXIST, EINVAL, ENOMEM, ENOSPC, ESRCH } from '../public/errno.js';
import { P2M } from '../public/types.js';
import { DOM, DS, type DomainState } from '../layout/domains.js';
import { entryMfn, entryType, P2M_HOLE } from '../layout/p2m.js';
import { PGC_allocated } from '../layout/frametable.js';
import { STAT, VC } from '../layout/vcpus.js';
import { ioreqServersDomainDying } from './ioreq.js';
import { MT, MT_INUSE } from '../layout/grants.js';
import { GLOBAL_LOCK, type Machine } from './machine.js';
import { allocDomFrame, putPage, relinquishFrame } from './mm.js';
import { putDomain } from './domain-ref.js';
import { iomemReset } from './iomem.js';
export { getDomain, putDomain, reapDomain } from './domain-ref.js';
import { p2mIndex, p2mInsert, p2mLock, p2mRemoveLocked, p2mUnlock } from './p2m.js';
import { p2mEntry } from '../layout/p2m.js';
import { sched } from './platform.js';
import { pcpuCount, pcpuGive, pcpuTake } from './schedule.js';
import { VS } from './vcpu.js';
import { unmapGrantHandle } from './grant-table.js';

export interface DomainCreateSpec {
  /** Requested domid, or -1 for the lowest free one. */
  domid: number;
  max_pages: number;
  nr_vcpus: number;
  /** Size of the guest physical address space, in frames. */
  p2m_size: number;
  privileged: boolean;
  /** The domain running this one's IOREQ server (allowed to Map/Revoke/Steal/Return on it). */
  backend?: number;
}

export function domainState(m: Machine, d: number): DomainState {
  return m.dom.state(d);
}

export function isAlive(m: Machine, d: number): boolean {
  return d >= 0 && d < m.nd && m.dom.state(d) === DS.RUNNING;
}

/** First-fit a p2m slice among live domains' slices (caller holds domctl). */
function allocP2mSlice(m: Machine, size: number): number {
  const used: Array<[number, number]> = [];
  for (let d = 0; d < m.nd; d++) {
    if (m.dom.state(d) !== DS.FREE) used.push([m.dom.at(d, DOM.P2M_BASE), m.dom.at(d, DOM.P2M_SIZE)]);
  }
  used.sort((a, b) => a[0] - b[0]);
  let at = 0;
  for (const [b, s] of used) {
    if (b - at >= size) break;
    at = Math.max(at, b + s);
  }
  return at + size <= m.p2m.nr_entries ? at : -1;
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
  if (spec.p2m_size < 1 || spec.max_pages < 0) return -EINVAL;
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
    const p2mBase = allocP2mSlice(m, spec.p2m_size);
    if (p2mBase < 0) return -ENOMEM;
    const vbase = allocVcpuSlots(m, spec.nr_vcpus);
    if (vbase < 0) return -ENOSPC;
    m.dom.set(d, DOM.STATE, DS.CREATING);
    m.dom.set(d, DOM.TOT_PAGES, 0);
    m.dom.set(d, DOM.MAX_PAGES, spec.max_pages);
    m.dom.set(d, DOM.REFCNT, 0);
    m.dom.set(d, DOM.NR_VCPUS, spec.nr_vcpus);
    m.dom.set(d, DOM.VCPU_BASE, vbase);
    m.dom.set(d, DOM.P2M_BASE, p2mBase);
    m.dom.set(d, DOM.P2M_SIZE, spec.p2m_size);
    m.dom.set(d, DOM.PRIVILEGED, spec.privileged ? 1 : 0);
    iomemReset(m, d); // under domctl, as every write of iomem_caps (xen/iomem.ts)
    m.dom.set(d, DOM.RATCHET, 0);
    m.dom.set(d, DOM.BACKEND, spec.backend === undefined ? 0 : spec.backend + 1);
    m.dom.add(d, DOM.GENERATION, 1);
    m.p2m.entries.fill(0, p2mBase, p2mBase + spec.p2m_size);
    // GEN keeps counting up across domains in the same slice, so a stale
    // TLB entry of an earlier owner can never look current.
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

/** Populate `count` pages of fresh RAM at gfns first…first+count−1 (toolstack use). */
export function populateRange(m: Machine, d: number, first: number, count: number): number {
  for (let g = first; g < first + count; g++) {
    const rc = populateOne(m, d, g);
    if (rc < 0) return rc;
  }
  return 0;
}

/**
 * Allocate one frame and map it ram_rw at a hole (the toolstack building a
 * domain). -EEXIST if the gfn is not a hole. A guest's XENMEM_populate_physmap
 * is memory.ts populatePhysmap, which does what Xen does over occupied gfns.
 */
export function populateOne(m: Machine, d: number, gfn: number): number {
  if (p2mIndex(m, d, gfn) < 0) return -EINVAL;
  const mfn = allocDomFrame(m, d);
  if (mfn < 0) return mfn;
  p2mLock(m, d, 'memory.populate_physmap');
  const ok = p2mInsert(m, d, gfn, p2mEntry(mfn, P2M.ram_rw));
  p2mUnlock(m, d);
  if (!ok) {
    relinquishFrame(m, mfn);
    return -EEXIST;
  }
  return 0;
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
  for (let h = 0; h < NR_MAPTRACK_ENTRIES; h++) {
    const i = m.grants.mtIdx(d, h);
    if ((Atomics.load(m.grants.maptrack, i + MT.FLAGS) & MT_INUSE) !== 0) unmapGrantHandle(m, d, h);
  }
  // 2. Its p2m: foreign maps drop their reference, RAM its allocation reference.
  const size = m.dom.at(d, DOM.P2M_SIZE);
  p2mLock(m, d, 'domain.relinquish_resources');
  const gfns: number[] = [];
  for (let g = 0; g < size; g++) if (Atomics.load(m.p2m.entries, m.dom.at(d, DOM.P2M_BASE) + g) !== P2M_HOLE) gfns.push(g);
  const old = p2mRemoveLocked(m, d, gfns);
  p2mUnlock(m, d);
  for (const e of old) {
    const t = entryType(e);
    const mfn = entryMfn(e);
    if (t === P2M.ram_rw || t === P2M.ram_ro) {
      if (m.ft.owner(mfn) === d) relinquishFrame(m, mfn);
    } else if (t === P2M.map_foreign || t === P2M.grant_map_rw || t === P2M.grant_map_ro) {
      // grant maps were removed with the maptrack above; a foreign map holds a page reference.
      if (t === P2M.map_foreign) {
        m.reach.release(mfn, d, REACH.FOREIGN);
        putPage(m, mfn);
      }
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
