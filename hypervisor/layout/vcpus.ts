/**
 * The vCPU table: Xen's `struct vcpu` for every vCPU of the host.
 *
 * Int32 record, writers:
 *   STATE      the vCPU's run state (vcpu.ts state machine), compareExchange
 *              by its own thread; STOP requests come from the host.
 *   ACK_EPOCH  the domain flush epoch this vCPU's TLB is known to be clean
 *              for; stored by the vCPU thread after it dropped its TLB.
 *   HEARTBEAT  incremented by the vCPU at every batch (progress watchdog);
 *              its only writer while it runs, so a plain load and store.
 *   HANG_MS    chaos hang-vcpu: set by the host, exchanged to 0 by the vCPU,
 *              which then sits descheduled that long (holding no TLB).
 *   PCPU       1 while the vCPU holds one of the host's pCPUs (xen/schedule.ts);
 *              written by the vCPU's own thread.
 *   RUNQ_NEXT  while it waits in a run queue: slot + 1 of the vCPU after it,
 *              0 if last; written under CTL.RUNQ_LOCK.
 *   PCPU_GRANT 1 once a vCPU giving its pCPU back handed it to this one (the
 *              head of a run queue); the waiter sleeps on it and resets it.
 *   DOMID, VCPU written once at creation.
 * Float64 stats (STAT_*), written only by the owning thread, read by the
 * host for summaries (plain, possibly a batch stale).
 */
import { MAX_VCPUS } from './constants.js';
import { expectBytes } from './region.js';
import { RTT_BUCKETS, rttBucket } from './rtt-hist.js';

export const VC = { STATE: 0, DOMID: 1, VCPU: 2, ACK_EPOCH: 3, HEARTBEAT: 4, IN_USE: 5, HANG_MS: 6, PCPU: 7, RUNQ_NEXT: 8, PCPU_GRANT: 9, WORDS: 10 } as const;

export const STAT = {
  ACCESSES: 0,
  HYPERCALLS: 1,
  GRANT_MAPS: 2,
  GRANT_UNMAPS: 3,
  GRANT_COPIES: 4,
  FOREIGN_MAPS: 5,
  POPULATES: 6,
  BALLOONS: 7,
  COPIES: 8,
  NULL_IO: 9, // accesses that hit the null handler (no IOREQ server)
  GUEST_FAULTS: 10, // #GP injected (write to a read-only mapping, …)
  ERRORS: 11, // hypercalls that returned an error
  TLB_FLUSHES: 12,
  WORKLOAD_OPS: 13,
  CHECK_FAILS: 14, // workload self-checks that failed (data not as expected)
  IOREQS: 15, // accesses that became an ioreq to a server
  IOREQ_FAULTS: 16, // accesses to revoked gfns (IOREQ_TYPE_FAULT)
  MAPS: 17,
  REVOKES: 18,
  STEALS: 19,
  RETURNS: 20,
  IOREQS_SENT: 21, // ioreqs handed to a device model over the transport
  IOREQS_DONE: 22, // … and answered
  IOREQS_ABANDONED: 23, // … and given up unanswered: the vCPU stopped (of those, CTL.IOREQS_ABANDONED_AT_STOP), its domain died, or the server broke the protocol
  BUFIOREQS: 24, // posted writes put into a server's buffered ring (no wait)
  BUFIOREQ_FULL: 25, // … that found it full and went the synchronous way
  // The pCPU scheduler (xen/schedule.ts), what Xen's runstate and sched perf counters say:
  SCHED_RUNS: 26, // pCPUs taken: context switches to this vCPU
  SCHED_WAITS: 27, // … of which after waiting in a run queue (runnable, no pCPU idle)
  SCHED_BOOSTS: 28, // … of which queued ahead, woken with credit left (credit2 sorts its runqueue by credit)
  SCHED_PREEMPTS: 29, // pCPUs given up at a tick: slice over, another vCPU waiting
  SCHED_BLOCKS: 30, // … to block (sleep, ioreq, device model idle, waiting for a dying domain)
  SCHED_YIELDS: 31, // … to yield (back to the run queue's tail)
  SCHED_RUN_US: 32, // time on a pCPU (Xen's RUNSTATE_running)
  SCHED_WAIT_US: 33, // time waiting for one (RUNSTATE_runnable: the guest's steal time)
  SCHED_WAIT_MAX_US: 34, // longest such wait (a maximum: not summed over vCPUs); the waits' histogram is VcpuTable.schedWait
  WORDS: 35,
} as const;
export type StatName = Exclude<keyof typeof STAT, 'WORDS'>;

export class VcpuTable {
  readonly w: Int32Array;
  readonly stats: Float64Array;
  /** IOREQ round trips per vCPU slot (layout/rtt-hist.ts), counted by the vCPU's own thread. */
  readonly rtt: Int32Array;
  /** Waits for a pCPU per vCPU slot, in the same log-linear buckets (two significant digits; the pCPU scheduler, schedule.ts). */
  readonly schedWait: Int32Array;
  /**
   * FAULT ioreq round trips of every vCPU in one histogram (the fault
   * service latency a design comparison shows): the vCPU paused on an access
   * to a revoked or reclaimed gfn until its backend answered. Any vCPU
   * thread, Atomics.add (faults are rare; no per-vCPU copy).
   */
  readonly faultRtt: Int32Array;
  static bytes(): number {
    return MAX_VCPUS * (VC.WORDS * 4 + STAT.WORDS * 8 + 2 * RTT_BUCKETS * 4) + RTT_BUCKETS * 4;
  }
  constructor(readonly sab: SharedArrayBuffer) {
    expectBytes('vcpus', sab, VcpuTable.bytes());
    this.stats = new Float64Array(sab, 0, MAX_VCPUS * STAT.WORDS);
    this.w = new Int32Array(sab, MAX_VCPUS * STAT.WORDS * 8, MAX_VCPUS * VC.WORDS);
    this.rtt = new Int32Array(sab, MAX_VCPUS * (STAT.WORDS * 8 + VC.WORDS * 4), MAX_VCPUS * RTT_BUCKETS);
    this.faultRtt = new Int32Array(sab, MAX_VCPUS * (STAT.WORDS * 8 + VC.WORDS * 4 + RTT_BUCKETS * 4), RTT_BUCKETS);
    this.schedWait = new Int32Array(sab, MAX_VCPUS * (STAT.WORDS * 8 + VC.WORDS * 4 + RTT_BUCKETS * 4) + RTT_BUCKETS * 4, MAX_VCPUS * RTT_BUCKETS);
  }
  /** Count a wait of `us` µs for a pCPU by the vCPU in `slot` (the pCPU scheduler, on the vCPU's thread). */
  countSchedWait(slot: number, us: number): void {
    Atomics.add(this.schedWait, slot * RTT_BUCKETS + rttBucket(us), 1);
  }
  /** Count a FAULT ioreq's round trip of `us` µs. */
  countFaultRtt(us: number): void {
    Atomics.add(this.faultRtt, rttBucket(us), 1);
  }
  /** Count a round trip of `us` µs for the vCPU in `slot` (its own thread). */
  countRtt(slot: number, us: number): void {
    Atomics.add(this.rtt, slot * RTT_BUCKETS + rttBucket(us), 1);
  }
  at(slot: number, field: number): number {
    return Atomics.load(this.w, slot * VC.WORDS + field);
  }
  set(slot: number, field: number, v: number): void {
    Atomics.store(this.w, slot * VC.WORDS + field, v);
  }
  idx(slot: number, field: number): number {
    return slot * VC.WORDS + field;
  }
  stat(slot: number, s: number): number {
    return this.stats[slot * STAT.WORDS + s] ?? 0;
  }
  /** Add to a stat (its vCPU's thread only: plain, not atomic). */
  addStat(slot: number, s: number, n: number): void {
    this.stats[slot * STAT.WORDS + s]! += n;
  }
  /** Raise a maximum stat (its vCPU's thread only). */
  maxStat(slot: number, s: number, v: number): void {
    const i = slot * STAT.WORDS + s;
    if (v > this.stats[i]!) this.stats[i] = v;
  }
}
