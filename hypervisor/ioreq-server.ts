/**
 * IOREQ server registration (xen/common/ioreq.c, dm_op create_ioreq_server
 * and map_io_range_to_ioreq_server). The transport that carries the ioreqs
 * comes later; what is here decides which accesses become which ioreq.
 */
import { MAX_IOREQ_RANGES, MAX_IOREQ_SERVERS_PER_DOMAIN } from './constants.js';
import { DOM, DS } from './layout/domains.js';
import { FAULT_POLICY, type FaultPolicy, SRV } from './layout/ioreq.js';
import { P2M_REVOKED } from './layout/p2m.js';
import type { Machine } from './machine.js';
import { type Mmu, setDefaultEmulateHook } from './mmu.js';
import { p2mGet } from './p2m.js';
import { EINVAL, ENOSPC, EPERM, ESRCH } from './public/errno.js';
import { ACCESS, type AccessOutcome } from './public/guest.js';

export interface IoRange {
  start: number;
  count: number;
}

/** Create a server for `target` owned by `by`; returns its index (≥ 0) or a negative errno. */
export function ioreqServerCreate(m: Machine, by: number, target: number, ranges: readonly IoRange[], policy: FaultPolicy): number {
  if (!Number.isInteger(target) || target < 0 || target >= m.nd || m.dom.state(target) !== DS.RUNNING) return -ESRCH;
  if (by === target) return -EINVAL;
  if (m.dom.at(target, DOM.BACKEND) !== by + 1 && m.dom.at(by, DOM.PRIVILEGED) === 0) return -EPERM;
  if (ranges.length > MAX_IOREQ_RANGES || ranges.some((r) => !Number.isInteger(r.start) || !Number.isInteger(r.count) || r.start < 0 || r.count < 1)) return -EINVAL;
  const lk = m.dom.at(target, DOM.LOCK_IOREQ);
  m.lock(lk, 'ioreq.create_server', target);
  try {
    for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) {
      if (m.ioreq.active(target, s)) continue;
      const i = m.ioreq.idx(target, s);
      const w = m.ioreq.w;
      w.fill(0, i, i + SRV.WORDS);
      w[i + SRV.OWNER] = by;
      w[i + SRV.POLICY] = FAULT_POLICY[policy];
      ranges.forEach((r, k) => {
        w[i + SRV.RANGES + 2 * k] = r.start;
        w[i + SRV.RANGES + 2 * k + 1] = r.count;
      });
      Atomics.store(w, i + SRV.NR_RANGES, ranges.length);
      Atomics.store(w, i + SRV.STATE, 1);
      return s;
    }
    return -ENOSPC;
  } finally {
    m.unlock(lk);
  }
}

/** Servers for d, or owned by d, go when d dies. */
export function ioreqServersDomainDying(m: Machine, d: number): void {
  for (let t = 0; t < m.nd; t++) {
    for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) {
      if (!m.ioreq.active(t, s)) continue;
      const i = m.ioreq.idx(t, s);
      if (t === d || m.ioreq.w[i + SRV.OWNER] === d) Atomics.store(m.ioreq.w, i + SRV.STATE, 0);
    }
  }
}

/**
 * What an access to a non-RAM gfn becomes (the MMU's emulation hook): a
 * revoked gfn is IOREQ_TYPE_FAULT when a server serves the domain; a gfn a
 * server claims is an ioreq; everything else meets Xen's null handler
 * (reads all ones, writes dropped). Until the transport exists, a server's
 * answer to a read is all ones.
 */
export function emulateAccess(mmu: Mmu, gfn: number): { outcome: AccessOutcome; value: number } {
  const m = mmu.m;
  const d = mmu.domid;
  if (p2mGet(m, d, gfn) === P2M_REVOKED) return { outcome: m.ioreq.any(d) ? ACCESS.IOREQ_FAULT : ACCESS.NULL_IO, value: -1 };
  if (m.ioreq.claiming(d, gfn) >= 0) return { outcome: ACCESS.IOREQ, value: -1 };
  return { outcome: ACCESS.NULL_IO, value: -1 };
}

setDefaultEmulateHook((mmu, gfn) => emulateAccess(mmu, gfn));
