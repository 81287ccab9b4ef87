/**
 * p2m updates and TLB shootdown (xen/arch/x86/mm/p2m.c, flush_tlb_mask).
 *
 * Adding an entry where there was a hole needs no flush (no TLB caches a
 * hole). Removing or downgrading one is a three-step protocol, all under the
 * domain's p2m lock:
 *   1. GEN += 1 (odd: removal in flight — a racing TLB fill won't cache)
 *   2. Atomics.store the new entry
 *   3. tlbShootdown: FLUSH_EPOCH += 1, then wait until every vCPU of the
 *      domain either acknowledged the new epoch or is outside guest mode
 *   4. GEN += 1 (even: the removal is complete) — from here on the old
 *      frame may be reused, and an access through a stale TLB entry is a
 *      use after unmap (invariant 1).
 * The wait is bounded: a vCPU acknowledges at every TLB_BATCH_ACCESSES
 * accesses in the MMU itself, so guest code cannot withhold it; a vCPU that
 * is blocked, paused or in the hypervisor acknowledges implicitly.
 */
import { TLB_SHOOTDOWN_BOUND_MS } from '../layout/constants.js';
import { BUGS } from './buggify.js';
import { CTL } from '../layout/control.js';
import { DOM } from '../layout/domains.js';
import { P2M_HOLE, P2M_REVOKED } from '../layout/p2m.js';
import { BUG_ON, HypervisorBug } from '../layout/region.js';
import { VC } from '../layout/vcpus.js';
import type { Machine } from './machine.js';
import { sched } from './platform.js';
import { VS } from './vcpu.js';

/** Index of (d, gfn) in the p2m arena, or -1 if gfn is outside d's p2m. */
export function p2mIndex(m: Machine, d: number, gfn: number): number {
  if (!Number.isInteger(gfn) || gfn < 0 || gfn >= m.dom.at(d, DOM.P2M_SIZE)) return -1;
  return m.dom.at(d, DOM.P2M_BASE) + gfn;
}

/** The entry word for (d, gfn); a hole (0) when out of range. Lock-free. */
export function p2mGet(m: Machine, d: number, gfn: number): number {
  const i = p2mIndex(m, d, gfn);
  return i < 0 ? P2M_HOLE : Atomics.load(m.p2m.entries, i);
}

export function p2mLock(m: Machine, d: number, site: string): void {
  m.lock(m.dom.at(d, DOM.LOCK_P2M), site, d);
}
export function p2mUnlock(m: Machine, d: number): void {
  m.unlock(m.dom.at(d, DOM.LOCK_P2M));
}

/** Fill a hole (caller holds d's p2m lock). Returns false if gfn is not a hole. */
export function p2mInsert(m: Machine, d: number, gfn: number, entry: number): boolean {
  const i = p2mIndex(m, d, gfn);
  if (i < 0) return false;
  return Atomics.compareExchange(m.p2m.entries, i, P2M_HOLE, entry) === P2M_HOLE;
}

/** A hole or a revoked gfn: what a Map, Steal or Return may fill. */
export function p2mIsEmpty(e: number): boolean {
  return e === P2M_HOLE || e === P2M_REVOKED;
}

/**
 * Replace an entry without a flush (caller holds d's p2m lock): only for
 * changes that take no access right away from a cached translation — filling
 * an empty gfn, or re-typing a frame the vCPU may keep reaching (Steal turns
 * fe's ram_rw into mmio_direct on the same frame).
 */
export function p2mSetLocked(m: Machine, d: number, gfn: number, entry: number): void {
  const i = p2mIndex(m, d, gfn);
  BUG_ON(i < 0, `p2m set: gfn ${gfn} out of range for d${d}`);
  Atomics.store(m.p2m.entries, i, entry);
}

export interface RemoveOptions {
  /** Deliberate bug: skip the shootdown (skip-tlb-flush-on-unmap etc.). */
  skipFlushBug?: number;
}

/**
 * Replace entries with `replacement` (a hole by default) and make the old
 * translations unreachable before returning. Caller holds d's p2m lock.
 * Returns the old entries.
 */
export function p2mRemoveLocked(m: Machine, d: number, gfns: readonly number[], replacement = P2M_HOLE, opts: RemoveOptions = {}): number[] {
  const idx = gfns.map((g) => p2mIndex(m, d, g));
  for (const i of idx) BUG_ON(i < 0, `p2m remove: gfn out of range for d${d}`);
  for (const i of idx) Atomics.add(m.p2m.gen, i, 1);
  const old = idx.map((i) => Atomics.exchange(m.p2m.entries, i, replacement));
  const skip = opts.skipFlushBug !== undefined && m.control.buggy(opts.skipFlushBug);
  if (!skip) tlbShootdown(m, d);
  for (const i of idx) Atomics.add(m.p2m.gen, i, 1);
  return old;
}

/** Convenience: take the lock, remove, release. */
export function p2mRemove(m: Machine, d: number, gfns: readonly number[], site: string, opts: RemoveOptions = {}): number[] {
  p2mLock(m, d, site);
  try {
    return p2mRemoveLocked(m, d, gfns, P2M_HOLE, opts);
  } finally {
    p2mUnlock(m, d);
  }
}

/**
 * Bump d's flush epoch and wait until no vCPU of d can still use a
 * translation from before. Bounded (see the file comment); exceeding the
 * bound is a hypervisor bug, not a guest's doing.
 */
export function tlbShootdown(m: Machine, d: number): void {
  // Running vCPUs see this at their next boundary and step aside for a
  // moment (Mmu.boundary): with more vCPU threads than cores, the vCPU we
  // wait for is often one the OS preempted, and it needs a core to ack.
  Atomics.add(m.control.w, CTL.SHOOTDOWNS, 1);
  try {
    waitForAcks(m, d);
  } finally {
    Atomics.sub(m.control.w, CTL.SHOOTDOWNS, 1);
  }
}

function waitForAcks(m: Machine, d: number): void {
  const e = Atomics.add(m.dom.w, m.dom.epochIndex(d), 1) + 1;
  const base = m.dom.at(d, DOM.VCPU_BASE);
  const n = m.dom.at(d, DOM.NR_VCPUS);
  const s = sched();
  let deadline_us = 0;
  for (let v = 0; v < n; v++) {
    const slot = base + v;
    for (let i = 0; ; i++) {
      if (m.vcpus.at(slot, VC.STATE) !== VS.GUEST) break;
      if (m.vcpus.at(slot, VC.ACK_EPOCH) - e >= 0) break;
      if ((i & 255) === 255) {
        const now = s.now_us();
        if (deadline_us === 0) deadline_us = now + TLB_SHOOTDOWN_BOUND_MS * 1000;
        else if (now > deadline_us) {
          throw new HypervisorBug(`TLB shootdown of d${d}: vCPU slot ${slot} did not acknowledge epoch ${e} within ${TLB_SHOOTDOWN_BOUND_MS} ms`);
        }
      }
      s.relax(i);
    }
  }
}

export { BUGS };
