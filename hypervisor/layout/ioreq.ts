/**
 * IOREQ servers per target domain (xen/common/ioreq.c, at most
 * MAX_NR_IOREQ_SERVERS): owner, fault policy and I/O ranges (gfns). Written
 * under the target's ioreq_server lock; read lock-free by the emulation
 * path (a server appears with STATE stored last, goes with STATE first).
 */
import { MAX_DOMAINS, MAX_IOREQ_RANGES, MAX_IOREQ_SERVERS_PER_DOMAIN } from '../constants.js';
import { expectBytes } from './region.js';

/**
 * STATE 0 free, 1 created (answered inline by the hypervisor per its fault
 * policy: no device model attached — scenarios), 2 enabled (a device model
 * serves it over the transport; Xen's set_ioreq_server_state(enabled)).
 */
export const SRV = { STATE: 0, OWNER: 1, POLICY: 2, NR_RANGES: 3, ID: 4, RANGES: 8, WORDS: 8 + 2 * MAX_IOREQ_RANGES } as const;
export const SRV_STATE = { FREE: 0, INLINE: 1, ENABLED: 2 } as const;
export const FAULT_POLICY = { none: 0, fail: 1, remap: 2, retry: 3 } as const;
export type FaultPolicy = keyof typeof FAULT_POLICY;

export class IoreqServers {
  readonly w: Int32Array;
  static bytes(nd = MAX_DOMAINS): number {
    return nd * MAX_IOREQ_SERVERS_PER_DOMAIN * SRV.WORDS * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nd = MAX_DOMAINS,
  ) {
    expectBytes('ioreq servers', sab, IoreqServers.bytes(nd));
    this.w = new Int32Array(sab);
  }
  idx(d: number, s: number): number {
    return (d * MAX_IOREQ_SERVERS_PER_DOMAIN + s) * SRV.WORDS;
  }
  active(d: number, s: number): boolean {
    return Atomics.load(this.w, this.idx(d, s) + SRV.STATE) !== 0;
  }
  /** The first server for d (revoked gfns fault to it), or -1. */
  first(d: number): number {
    for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) if (this.active(d, s)) return s;
    return -1;
  }
  any(d: number): boolean {
    return this.first(d) >= 0;
  }
  state(d: number, s: number): number {
    return Atomics.load(this.w, this.idx(d, s) + SRV.STATE);
  }
  owner(d: number, s: number): number {
    return Atomics.load(this.w, this.idx(d, s) + SRV.OWNER);
  }
  policy(d: number, s: number): number {
    return Atomics.load(this.w, this.idx(d, s) + SRV.POLICY);
  }
  /** A server of d whose ranges cover gfn, or -1. */
  claiming(d: number, gfn: number): number {
    for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) {
      if (!this.active(d, s)) continue;
      const i = this.idx(d, s);
      const n = Atomics.load(this.w, i + SRV.NR_RANGES);
      for (let r = 0; r < n; r++) {
        const start = Atomics.load(this.w, i + SRV.RANGES + 2 * r);
        const count = Atomics.load(this.w, i + SRV.RANGES + 2 * r + 1);
        if (gfn >= start && gfn < start + count) return s;
      }
    }
    return -1;
  }
}
