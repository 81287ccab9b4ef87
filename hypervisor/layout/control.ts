/**
 * Host control words: one small Int32 region every thread attaches.
 *
 * Writers: the host main thread sets BUGGIFY, CHECKING, DRAIN, STOP; anyone
 * may Atomics.add SEQ. Everything is read with Atomics.load.
 */
import { MAX_VCPUS } from './constants.js';
import { expectBytes } from './region.js';

export const CTL = {
  BUGGIFY: 0, // bit set of enabled deliberate bugs, ids 0…31 (buggify.ts); ids 32…63 in BUGGIFY_HI
  CHECKING: 1, // 1: invariant checks in the hot paths (use-after-unmap detection, scrub check)
  STOP: 2, // 1: vCPUs leave their run loops
  SEQ: 3, // global sequence (mapping ids)
  SEED_LO: 4,
  SEED_HI: 5,
  NEXT_VCPU_SLOT: 6,
  SHOOTDOWNS: 7, // TLB shootdowns in flight (Atomics.add by removers; vCPUs read it at boundaries)
  TRANSPORT: 8, // 0 ring, 1 redis (set by the host before vCPUs start)
  DISPATCH: 9, // kicked (add + notify) by a vCPU that published an ioreq, under the redis transport
  KILL_DM: 10, // chaos: the device model dies after claiming its next requests (the host restarts it)
  // Chaos, the transport nemesis (host-set; read by the device model's server end):
  IOREQ_NEMESIS: 11, // bit set of NEMESIS_IOREQ: what happens to ioreqs on their way to the device model
  IOREQ_DELAY_US: 12, // how long a delayed ioreq is held
  MIDMAP_FE: 13, // chaos destroy-mid-map: fe + 1 armed by the host; -(fe + 1) once a Map into fe has begun
  // What the transport nemesis did (Atomics.add by the server end):
  NEM_DELAYED: 14,
  NEM_DUPLICATED: 15,
  NEM_DROPPED: 16,
  NEM_REORDERED: 17,
  DUPLICATES_SKIPPED: 18, // deliveries a device model recognized as answered already and did not apply again
  // The host's pCPUs (hypervisor/xen/schedule.ts), host-set before any vCPU starts; 0: none, the OS schedules vCPU threads.
  PCPUS: 19,
  // The run queue (schedule.ts), every word below under RUNQ_LOCK but RUNQ_LEN, also read without it:
  PCPU_IDLE: 20, // pCPUs nobody holds (never > 0 while a vCPU waits: a given-back pCPU goes to the queue's head)
  RUNQ_LOCK: 21, // 0 free, 1 held (compareExchange): Xen's per-runqueue schedule lock
  // The start gate (vcpu-worker.ts, Host.start): a vCPU thread that is ready to run Atomics.adds
  // VCPUS_READY and waits until the host stores 1 in RELEASED (and notifies it), once every vCPU is ready.
  VCPUS_READY: 22,
  RELEASED: 23,
  RUNQ_HEAD: 24, // 2 words, a queue each (RUNQ.BOOST, RUNQ.NORMAL): slot + 1 of the first waiting vCPU, 0 empty
  RUNQ_TAIL: 26, // 2 words: slot + 1 of the last
  RUNQ_LEN: 28, // vCPUs waiting in both queues (a tick reads it to decide whether to preempt)
  // p2m work (Atomics.add by whoever does it, xen/p2m.ts): superpages split (ept_split_super_page), TLB shootdowns completed.
  P2M_SPLITS: 29,
  TLB_SHOOTDOWNS_DONE: 30,
  // Requests a device model's Redis end refused (no or a wrong MAC, what the shared ioreq page does not back; docs/security.md).
  TRANSPORT_REJECTED: 31,
  // The costs a design comparison counts (docs/designs.md "costs"), Atomics.add by whoever does the work:
  // revocations — a shared page taken from the domain that reaches it: a design's Revoke, a grant unmap,
  // the removal of a foreign map — and what they cost on the revoking thread (xen/p2m.ts revocationEnd).
  REVOCATIONS: 32,
  REVOKE_P2M_REMOVED: 33, // p2m entries removed by revocations
  REVOKE_SHOOTDOWNS: 34, // TLB shootdowns they did
  REVOKE_VCPUS_PAUSED: 35, // vCPUs in guest mode a shootdown had to interrupt and wait for (Xen: the IPI'd dirty mask)
  REVOKE_PAUSE_US: 36, // time waited for them, summed
  REVOKE_PAUSE_MAX_US: 37, // the longest such wait (a maximum)
  REVOKE_SPLITS: 38, // superpages split by revocations
  P2M_REMOVED: 39, // p2m entries removed by anything (p2mRemoveLocked)
  // Rights to other domains' frames (layout/reach.ts), live and at peak, in pages:
  PINNED_LIVE: 40, // grant maps and foreign maps: references the frame's owner cannot take back on its own
  PINNED_PEAK: 41,
  SHARED_LIVE: 42, // every way a domain reaches a frame it does not own (grant, foreign, Map/lend)
  SHARED_PEAK: 43,
  GRANT_REF_PEAK: 44, // highest grant ref + 1 any granter had mapped (its table needs ⌈/512⌉ v1 frames)
  MAPTRACK_PEAK: 45, // most maptrack handles any domain held at once (⌈/256⌉ maptrack frames)
  BUGGIFY_HI: 46, // the second word of the BUGGIFY bit set: ids 32…63
  // The end of the run (Host.shutdown's drain), before STOP: 1 once the host asks every vCPU to finish the step it
  // is in and issue no new work (a device model keeps serving: Workload.serve). A vCPU that has finished its step
  // then sets its bit in DRAINED (Atomics.or; MAX_VCPUS / 32 words, bit slot % 32 of word slot / 32).
  DRAIN: 47,
  // Ioreqs a vCPU of a running domain gave up because CTL.STOP came (Atomics.add, xen/ioreq.ts): the run never saw
  // them answered. Those given up because the domain died or the server broke the protocol are Xen's doing, not counted here.
  IOREQS_ABANDONED_AT_STOP: 48,
  // A swarm seed's death stage (hypervisor/host/death.ts), host-set before any vCPU starts: the stage's
  // index + 1 (0: none; negated once it struck), and how many of its occurrences go by before it strikes
  // (Atomics.sub by whoever reaches its hook point).
  DEATH_STAGE: 49,
  DEATH_AFTER: 50,
  GRANT_NO_SPACE: 51, // grant maps refused GNTST_no_space: the mapper's maptrack at its max_maptrack_frames
  GRANT_FRAMES_PEAK: 52, // the most frames any grant table grew to (gnttab_grow_table; from INITIAL_NR_GRANT_FRAMES)
  DRAINED: 53,
  WORDS: 53 + MAX_VCPUS / 32,
} as const;

/** Raise word i of a counter array to at least v (a peak; lock-free, any thread). */
export function atomicMax(w: Int32Array, i: number, v: number): void {
  for (let cur = Atomics.load(w, i); v > cur; cur = Atomics.load(w, i)) {
    if (Atomics.compareExchange(w, i, cur, v) === cur) return;
  }
}

/** Bits of CTL.IOREQ_NEMESIS. */
/**
 * LOSE_FAULT and SKIP_BUFFERED: injected stalls no nemesis plan draws (the
 * simulator's test option `stall`, docs/verification.md §1). LOSE_FAULT:
 * the device model's end loses its answers to FAULT ioreqs, and the
 * faulting vCPU waits for ever. SKIP_BUFFERED: the end hands the device
 * model no buffered ioreq (one that stopped consuming its buffered rings):
 * their places are never freed, and once a ring is full the writes go the
 * synchronous way, so nothing but liveness sees it.
 */
export const NEMESIS_IOREQ = { DELAY: 1, DUPLICATE: 2, DROP: 4, REORDER: 8, LOSE_FAULT: 16, SKIP_BUFFERED: 32 } as const;

export class ControlRegion {
  readonly w: Int32Array;
  static bytes(): number {
    return CTL.WORDS * 4;
  }
  constructor(readonly sab: SharedArrayBuffer) {
    expectBytes('control', sab, ControlRegion.bytes());
    this.w = new Int32Array(sab);
  }
  get checking(): boolean {
    return Atomics.load(this.w, CTL.CHECKING) !== 0;
  }
  get stopping(): boolean {
    return Atomics.load(this.w, CTL.STOP) !== 0;
  }
  get draining(): boolean {
    return Atomics.load(this.w, CTL.DRAIN) !== 0;
  }
  /** The vCPU in `slot` finished its step after CTL.DRAIN (its own thread, once). */
  drained(slot: number): void {
    Atomics.or(this.w, CTL.DRAINED + (slot >>> 5), 1 << (slot & 31));
  }
  /** Whether the vCPU in `slot` did (the host's drain). */
  hasDrained(slot: number): boolean {
    return (Atomics.load(this.w, CTL.DRAINED + (slot >>> 5)) & (1 << (slot & 31))) !== 0;
  }
  /** Whether deliberate bug `id` (buggify.ts BUGS) is on: bit id mod 32 of word BUGGIFY (id < 32) or BUGGIFY_HI. */
  buggy(id: number): boolean {
    return (Atomics.load(this.w, id < 32 ? CTL.BUGGIFY : CTL.BUGGIFY_HI) & (1 << (id & 31))) !== 0;
  }
  nextSeq(): number {
    return Atomics.add(this.w, CTL.SEQ, 1) + 1;
  }
}
