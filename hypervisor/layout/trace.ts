/**
 * The timeline region (`--trace`, `--report`; docs/trace-and-report.md):
 * one single-producer/single-consumer ring of events per vCPU slot, plus
 * one for the host main thread. Allocated only when tracing was asked for.
 *
 * Bytes:
 *   [0, 64)     Int32 header: HDR.NR_RINGS, HDR.RING_EVENTS (written once at creation)
 *   [64, 72)    Float64 EPOCH_MS: performance.timeOrigin + performance.now() of the
 *               host main thread at creation. Every thread stamps events with
 *               (its timeOrigin − EPOCH_MS + performance.now()) × 1000, so all
 *               threads share one clock in µs from the epoch, at full precision.
 *   [128, …)    per ring RING.WORDS Int32: HEAD, TAIL, DROPPED
 *   then        per ring RING_EVENTS events of EV.WORDS Float64 (8-byte aligned)
 *
 * Writers and protocol (docs/style.md §3). The producer of ring r is the one
 * thread running vCPU slot r (or, for the last ring, the host main thread);
 * the consumer is the host main thread. HEAD and TAIL are free-running
 * Int32 counters that wrap; an event's place is `counter & (RING_EVENTS − 1)`.
 *  1. Producer: plain stores of the event's EV.WORDS words at HEAD.
 *  2. Producer: Atomics.store(HEAD, HEAD + 1) — the release of step 1.
 *  3. Consumer: Atomics.load(HEAD) (acquire), plain loads of the events
 *     from TAIL up to it.
 *  4. Consumer: Atomics.store(TAIL, HEAD seen) — the slots are free again.
 *  5. Producer, before step 1: the ring is full when HEAD − TAIL reaches
 *     RING_EVENTS − 1 (it re-loads TAIL only then, so the hot path costs no
 *     extra atomic load). A full ring drops the event and Atomics.adds
 *     DROPPED; the first drop of a run of drops writes a GAP event into the
 *     slot kept free for it, so the consumer knows where events went missing.
 */
import { TRACE_REGION_MAX_BYTES, TRACE_RING_EVENTS } from './constants.js';
import type { Hypercalls } from '../public/guest.js';
import { expectBytes } from './region.js';

export const HDR = { NR_RINGS: 0, RING_EVENTS: 1, WORDS: 16 } as const;
const EPOCH_BYTE = 64;
const RINGS_BYTE = 128;
export const RING = { HEAD: 0, TAIL: 1, DROPPED: 2, WORDS: 4 } as const;
/** One event: when (µs from the epoch), what (TK in the low 8 bits, small extras above), and two numbers. */
export const EV = { TS: 0, KIND: 1, A: 2, B: 3, WORDS: 4 } as const;

/**
 * Event kinds, the low 8 bits of EV.KIND. `x` is the rest of the word (KIND >>> 8).
 *   HC         hypercall, written at its exit: TS = entry, x = op | err << 8, A = duration µs
 *   PRIM_B/E   Map/Revoke/Steal/Return begin and end: x = PRIM; B: A = frontend, B = pages; E: A = rc
 *   IO_SEND    vCPU published an ioreq: x = type | dir << 4, A = seq, B = gfn
 *   IO_DONE    … and stopped waiting for it: x = IO_END, A = seq
 *   IO_RECV    the device model took a request: x = requester (domid << 8 | vcpu), A = seq, B = type
 *   IO_BATCH   the device model's recv() returned: TS = then, A = µs spent recording the batch, B = requests
 *   IO_ANSWER  the device model answered, written when respond() returned: TS = its entry,
 *              x = requester, A = seq, B = duration µs
 *   FAULT      an access to a revoked gfn became a FAULT ioreq: x = server, A = gfn
 *   IO_POST    vCPU posted a write into a server's buffered ring: x = server, A = position, B = gfn
 *   P2M        p2m work (xen/p2m.ts): x = P2M_EV, A = domain; SPLIT: B = the
 *              split superpage's level (2: 2 MiB, 3: 1 GiB); SHOOTDOWN: B = 0
 *   IO_PICK    the Redis dispatcher (host main thread) took a vCPU's request off its slot
 *              and put it in the pipeline it sends now: x = requester, A = seq
 *   IO_BACK    … and completed the slot with the device model's answer (the vCPU is woken
 *              next): x = requester, A = seq
 *   GAP        the ring was full: events after TS were dropped until it drained
 *
 * Over Redis an ioreq's round trip is then split in five stages, each
 * between two events of the same (requester, seq) (orchestrator/trace/stages.ts):
 * IO_SEND → IO_PICK (vCPU to dispatcher), IO_PICK → IO_RECV (the request
 * through Redis), IO_RECV → IO_ANSWER's TS (the device model),
 * IO_ANSWER's TS → IO_BACK (the answer through Redis), IO_BACK → IO_DONE
 * (dispatcher to vCPU).
 */
export const TK = { HC: 1, PRIM_B: 2, PRIM_E: 3, IO_SEND: 4, IO_DONE: 5, IO_RECV: 6, IO_BATCH: 7, IO_ANSWER: 8, FAULT: 9, IO_POST: 10, P2M: 11, IO_PICK: 12, IO_BACK: 13, GAP: 15 } as const;
/** What a P2M event records: a superpage split (ept_split_super_page), a completed TLB shootdown (ept_sync_domain). */
export const P2M_EV = { SPLIT: 0, SHOOTDOWN: 1 } as const;
export const PRIM = { MAP: 0, REVOKE: 1, STEAL: 2, RETURN: 3 } as const;
export const PRIM_NAMES = ['Map', 'Revoke', 'Steal', 'Return'] as const;
/** How an ioreq's wait ended on the vCPU side. */
export const IO_END = { ANSWERED: 0, ABANDONED: 1, PROTOCOL_ERROR: 2 } as const;

/**
 * Hypercall op ids, the gate's `op` argument. A frozen literal, so the
 * argument is a constant load the JIT folds: naming a hypercall costs
 * nothing when tracing is off.
 */
export const HC = Object.freeze({
  other: 0,
  populate_physmap: 1,
  decrease_reservation: 2,
  current_reservation: 3,
  maximum_reservation: 4,
  gnttab_map_grant_ref: 5,
  gnttab_unmap_grant_ref: 6,
  gnttab_copy: 7,
  gnttab_query_size: 8,
  foreign_map: 9,
  remove_from_physmap: 10,
  buffer_copy: 11,
  domctl_max_mem: 12,
  domctl_iomem_permission: 13,
  domctl_destroy: 14,
  dm_map: 15,
  dm_revoke: 16,
  dm_steal: 17,
  dm_return: 18,
  dm_create_ioreq_server: 19,
  sched_crash: 20,
  dm_set_ioreq_server_state: 21,
  dm_set_mem_type: 22,
} as const satisfies Record<keyof Hypercalls | 'other', number>);
export type HcName = keyof typeof HC;
/** HC_NAMES[id] is the name of hypercall op `id`. */
export const HC_NAMES: readonly HcName[] = (Object.keys(HC) as HcName[]).sort((x, y) => HC[x] - HC[y]);
HC_NAMES.forEach((n, i) => {
  if (HC[n] !== i) throw new Error(`trace: hypercall ids must be 0…${HC_NAMES.length - 1} without holes (${n} is ${HC[n]})`);
});
if (HC_NAMES.length > 0x100) throw new Error('trace: a hypercall id fits in 8 bits of an HC event');

export const kindOf = (word: number): number => word & 0xff;
export const extraOf = (word: number): number => word >>> 8;
export const kindWord = (tk: number, x: number): number => tk | (x << 8);
/** A requester (frontend vCPU) in one number, as IO_RECV and IO_ANSWER carry it. */
export const requester = (domid: number, vcpu: number): number => (domid << 8) | vcpu;

/** Events per ring for `nr_rings` rings: TRACE_RING_EVENTS, halved until the region fits TRACE_REGION_MAX_BYTES (at least 1024). */
export function ringEventsFor(nr_rings: number): number {
  let n = TRACE_RING_EVENTS;
  while (n > 1024 && nr_rings * n * EV.WORDS * 8 > TRACE_REGION_MAX_BYTES) n /= 2;
  return n;
}

export interface TraceGeometry {
  nr_rings: number;
  ring_events: number;
}

export class TraceRegion {
  readonly hdr: Int32Array;
  /** Ring headers, RING.WORDS per ring. */
  readonly rings: Int32Array;
  /** Events, ring r from r × ring_events × EV.WORDS. */
  readonly ev: Float64Array;
  readonly nr_rings: number;
  readonly ring_events: number;
  readonly epoch_ms: number;

  static bytes(g: TraceGeometry): number {
    return TraceRegion.eventsByte(g.nr_rings) + g.nr_rings * g.ring_events * EV.WORDS * 8;
  }
  private static eventsByte(nr_rings: number): number {
    return Math.ceil((RINGS_BYTE + nr_rings * RING.WORDS * 4) / 8) * 8;
  }

  /** Allocate and initialise the region (host main thread, before any producer starts). */
  static create(g: TraceGeometry, epoch_ms: number): SharedArrayBuffer {
    if (!Number.isInteger(g.nr_rings) || g.nr_rings < 1) throw new Error(`trace: nr_rings must be a positive integer, got ${g.nr_rings}`);
    if (!Number.isInteger(g.ring_events) || g.ring_events < 4 || (g.ring_events & (g.ring_events - 1)) !== 0) {
      throw new Error(`trace: ring_events must be a power of two ≥ 4, got ${g.ring_events}`);
    }
    const sab = new SharedArrayBuffer(TraceRegion.bytes(g));
    const hdr = new Int32Array(sab, 0, HDR.WORDS);
    hdr[HDR.NR_RINGS] = g.nr_rings;
    hdr[HDR.RING_EVENTS] = g.ring_events;
    new Float64Array(sab, EPOCH_BYTE, 1)[0] = epoch_ms;
    return sab;
  }

  constructor(readonly sab: SharedArrayBuffer) {
    this.hdr = new Int32Array(sab, 0, HDR.WORDS);
    this.nr_rings = this.hdr[HDR.NR_RINGS]!;
    this.ring_events = this.hdr[HDR.RING_EVENTS]!;
    expectBytes('trace', sab, TraceRegion.bytes({ nr_rings: this.nr_rings, ring_events: this.ring_events }));
    this.epoch_ms = new Float64Array(sab, EPOCH_BYTE, 1)[0]!;
    this.rings = new Int32Array(sab, RINGS_BYTE, this.nr_rings * RING.WORDS);
    this.ev = new Float64Array(sab, TraceRegion.eventsByte(this.nr_rings), this.nr_rings * this.ring_events * EV.WORDS);
  }

  /** Index in `rings` of a ring's header word. */
  ringIdx(ring: number, word: number): number {
    return ring * RING.WORDS + word;
  }
  /** Index in `ev` of the first word of ring r's event at counter c. */
  eventIdx(ring: number, c: number): number {
    return (ring * this.ring_events + (c & (this.ring_events - 1))) * EV.WORDS;
  }
  dropped(ring: number): number {
    return Atomics.load(this.rings, this.ringIdx(ring, RING.DROPPED));
  }
}
