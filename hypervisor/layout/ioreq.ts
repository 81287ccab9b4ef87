/**
 * IOREQ servers per target domain (xen/common/ioreq.c, at most
 * MAX_NR_IOREQ_SERVERS): owner, fault policy and I/O ranges (gfns). Written
 * under the target's ioreq_server lock; read lock-free by the emulation
 * path (a server appears with STATE stored last, goes with STATE first).
 */
import { MAX_DOMAINS, MAX_IOREQ_RANGES, MAX_IOREQ_SERVERS_PER_DOMAIN } from './constants.js';
import { expectBytes } from './region.js';

/**
 * STATE 0 free, 1 created (answered inline by the hypervisor per its fault
 * policy: no device model attached — scenarios), 2 enabled (a device model
 * serves it over the transport; Xen's set_ioreq_server_state(enabled)).
 * BUFIOREQ 1: the server has a buffered ioreq ring (Xen's handle_bufioreq =
 * HVM_IOREQSRV_BUFIOREQ_ATOMIC); POSTED: bit r set when writes to range r
 * may be posted through it (xgsim's choice of which writes are buffered,
 * docs/ioreq.md §13; Xen buffers the standard VGA's).
 */
export const SRV = { STATE: 0, OWNER: 1, POLICY: 2, NR_RANGES: 3, ID: 4, BUFIOREQ: 5, POSTED: 6, RANGES: 8, WORDS: 8 + 2 * MAX_IOREQ_RANGES } as const;
export const SRV_STATE = { FREE: 0, INLINE: 1, ENABLED: 2 } as const;
export const FAULT_POLICY = { none: 0, fail: 1, remap: 2, retry: 3 } as const;
export type FaultPolicy = keyof typeof FAULT_POLICY;

/**
 * The buffered ioreq page of a server (xen/include/public/hvm/ioreq.h
 * `buffered_iopage_t`, filled by xen/common/ioreq.c `ioreq_send_buffered`):
 * posted writes the vCPU does not wait for, applied by the device model in
 * the order they were made. BUF_SLOTS entries, a power of two (Xen has 511,
 * the header sharing the page) so that positions can wrap with the int32.
 *
 * Positions count entries for ever (int32, wrapping). WRITE: the next
 * position a vCPU fills — under the domain's bufioreq lock (Xen: the
 * server's bufioreq_lock), the entry first, WRITE last, so every position
 * below WRITE holds a complete entry and none waits on a preempted writer
 * (a consumer must never stop at a gap: a vCPU's flushing read would then
 * overtake its own posted write behind another vCPU's). READ: the first
 * position whose place is not free yet — moved by the ring's one consumer:
 * the ring end's device model once it has applied the entry, or under
 * Redis the hypervisor's dispatcher once it has copied the entry into a
 * pipeline (it bounds what is in flight beyond that itself). A vCPU may take position p only while
 * p − READ < BUF_SLOTS; when the ring is full the write goes the
 * synchronous way, as in Xen. APPLIED: the exactly-once ledger of the
 * checker (the last position a device model took to apply).
 *
 * Entry words: GFN, OFFSET, META (size | type << 4 | vCPU << 8), DATA.
 */
export const BUF_SLOTS = 512;
export const BUF = { WRITE: 0, READ: 1, APPLIED: 2, HEADER: 4, GFN: 0, OFFSET: 1, META: 2, DATA: 3, ENTRY: 4 } as const;
const BUF_WORDS = BUF.HEADER + BUF_SLOTS * BUF.ENTRY;

export class IoreqServers {
  readonly w: Int32Array;
  /** The buffered rings, BUF_WORDS per server, in server order. */
  readonly buf: Int32Array;
  static bytes(nd = MAX_DOMAINS): number {
    return nd * MAX_IOREQ_SERVERS_PER_DOMAIN * (SRV.WORDS + BUF_WORDS) * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nd = MAX_DOMAINS,
  ) {
    expectBytes('ioreq servers', sab, IoreqServers.bytes(nd));
    const n = nd * MAX_IOREQ_SERVERS_PER_DOMAIN;
    this.w = new Int32Array(sab, 0, n * SRV.WORDS);
    this.buf = new Int32Array(sab, n * SRV.WORDS * 4, n * BUF_WORDS);
  }
  idx(d: number, s: number): number {
    return (d * MAX_IOREQ_SERVERS_PER_DOMAIN + s) * SRV.WORDS;
  }
  /** Where server s of d's buffered ring starts in `buf`. */
  bufIdx(d: number, s: number): number {
    return (d * MAX_IOREQ_SERVERS_PER_DOMAIN + s) * BUF_WORDS;
  }
  /** Where the entry at position `pos` is, in `buf`. */
  bufEntry(base: number, pos: number): number {
    return base + BUF.HEADER + (pos & (BUF_SLOTS - 1)) * BUF.ENTRY;
  }
  /**
   * A server created (again) in this place: its ring starts empty, its
   * positions going on from where the last one's stopped, so that a device
   * model's record of the positions it applied stays true. Entries left
   * behind are dropped with their server.
   */
  resetBuf(d: number, s: number): void {
    const b = this.bufIdx(d, s);
    const pos = Atomics.load(this.buf, b + BUF.WRITE);
    Atomics.store(this.buf, b + BUF.READ, pos);
    Atomics.store(this.buf, b + BUF.APPLIED, pos);
  }
  /** Whether s serves d with a buffered ring. */
  bufioreq(d: number, s: number): boolean {
    return Atomics.load(this.w, this.idx(d, s) + SRV.BUFIOREQ) !== 0;
  }
  /** Whether a write to gfn may be posted to s (a POSTED range of a server with a buffered ring covers it). */
  posted(d: number, s: number, gfn: number): boolean {
    const i = this.idx(d, s);
    const mask = Atomics.load(this.w, i + SRV.POSTED);
    if (mask === 0 || Atomics.load(this.w, i + SRV.BUFIOREQ) === 0) return false;
    const n = Atomics.load(this.w, i + SRV.NR_RANGES);
    for (let r = 0; r < n; r++) {
      if ((mask & (1 << r)) === 0) continue;
      const start = Atomics.load(this.w, i + SRV.RANGES + 2 * r);
      if (gfn >= start && gfn < start + Atomics.load(this.w, i + SRV.RANGES + 2 * r + 1)) return true;
    }
    return false;
  }
  /** Whether s of d has buffered entries whose places are not free yet. */
  bufPending(d: number, s: number): boolean {
    const b = this.bufIdx(d, s);
    return Atomics.load(this.buf, b + BUF.WRITE) !== Atomics.load(this.buf, b + BUF.READ);
  }
  active(d: number, s: number): boolean {
    return Atomics.load(this.w, this.idx(d, s) + SRV.STATE) !== 0;
  }
  /** The first server for d (revoked gfns fault to it), or -1. */
  first(d: number): number {
    for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) if (this.active(d, s)) return s;
    return -1;
  }
  /** The server for d that domain `owner` runs (the newest, as ioreq_server_select searches), or -1. */
  ownedBy(d: number, owner: number): number {
    for (let s = MAX_IOREQ_SERVERS_PER_DOMAIN - 1; s >= 0; s--) if (this.active(d, s) && this.owner(d, s) === owner) return s;
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
