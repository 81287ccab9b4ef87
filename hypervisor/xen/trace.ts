/**
 * The producer side of the timeline (layout/trace.ts has the ring protocol),
 * as xentrace's trace() in xen/common/trace.c: per-CPU buffers, written
 * by their CPU only.
 * Each thread that produces events has one current writer: a vCPU thread
 * writes to its slot's ring, the host main thread to the last ring. With
 * tracing off `tracer` is null, and every instrumented place costs one
 * predictable branch on it (`const tw = tracer; if (tw !== null) …`).
 */
import { EV, RING, TK, kindWord, type TraceRegion } from '../layout/trace.js';

export class TraceWriter {
  private head: number;
  /** TAIL + ring_events as last seen: HEAD may run up to one below it without re-loading TAIL. */
  private limit: number;
  private gap = false;
  private readonly headIdx: number;
  private readonly tailIdx: number;
  private readonly droppedIdx: number;
  private readonly ev: Float64Array;
  private readonly rings: Int32Array;
  private readonly off_ms: number;

  constructor(
    readonly t: TraceRegion,
    readonly ring: number,
  ) {
    if (!Number.isInteger(ring) || ring < 0 || ring >= t.nr_rings) throw new Error(`trace: ring ${ring} out of 0…${t.nr_rings - 1}`);
    this.rings = t.rings;
    this.ev = t.ev;
    this.headIdx = t.ringIdx(ring, RING.HEAD);
    this.tailIdx = t.ringIdx(ring, RING.TAIL);
    this.droppedIdx = t.ringIdx(ring, RING.DROPPED);
    // A restarted producer of the same slot (a device model killed by chaos) continues the ring.
    this.head = Atomics.load(this.rings, this.headIdx);
    this.limit = (Atomics.load(this.rings, this.tailIdx) + t.ring_events) | 0;
    this.off_ms = performance.timeOrigin - t.epoch_ms;
  }

  /** Now, in µs from the trace epoch (the clock every thread shares). */
  now(): number {
    return (this.off_ms + performance.now()) * 1000;
  }

  put(ts: number, kind: number, a: number, b: number): void {
    const h = this.head;
    if (((this.limit - h) | 0) <= 1) {
      // Steps 5: the last free slot is kept for a GAP; re-load TAIL to see whether the consumer freed any.
      this.limit = (Atomics.load(this.rings, this.tailIdx) + this.t.ring_events) | 0;
      if (((this.limit - h) | 0) <= 1) {
        Atomics.add(this.rings, this.droppedIdx, 1);
        if (!this.gap && ((this.limit - h) | 0) === 1) {
          this.gap = true;
          this.write(h, ts, TK.GAP, 0, 0);
        }
        return;
      }
    }
    this.gap = false;
    this.write(h, ts, kind, a, b);
  }

  private write(h: number, ts: number, kind: number, a: number, b: number): void {
    const i = this.t.eventIdx(this.ring, h);
    const ev = this.ev;
    ev[i + EV.TS] = ts; // step 1
    ev[i + EV.KIND] = kind;
    ev[i + EV.A] = a;
    ev[i + EV.B] = b;
    this.head = (h + 1) | 0;
    Atomics.store(this.rings, this.headIdx, this.head); // step 2
  }

  /** A hypercall that entered at t0_us: recorded at its exit. */
  hypercall(t0_us: number, op: number, err: boolean): void {
    this.put(t0_us, kindWord(TK.HC, op | (err ? 0x100 : 0)), this.now() - t0_us, 0);
  }

  primBegin(prim: number, fe: number, pages: number): void {
    this.put(this.now(), kindWord(TK.PRIM_B, prim), fe, pages);
  }

  primEnd(prim: number, rc: number): void {
    this.put(this.now(), kindWord(TK.PRIM_E, prim), rc, 0);
  }

  /** A superpage split or a completed TLB shootdown of domain d (layout/trace.ts TK.P2M). */
  p2m(ev: number, d: number, b: number): void {
    this.put(this.now(), kindWord(TK.P2M, ev), d, b);
  }
}

/** This thread's writer, or null when this thread does not trace (the common case). */
export let tracer: TraceWriter | null = null;

/** The ring of the host main thread: the last one; vCPU slot r has ring r. */
export const hostRing = (t: TraceRegion): number => t.nr_rings - 1;

/** Make this thread the producer of vCPU slot `slot`'s ring (none when the host does not trace). */
export function setVcpuTracer(t: TraceRegion | undefined, slot: number): void {
  tracer = t === undefined || !Number.isInteger(slot) || slot < 0 || slot >= hostRing(t) ? null : new TraceWriter(t, slot);
}

/** Make this (the host main) thread the producer of the host's ring. */
export function setHostTracer(t: TraceRegion | undefined): void {
  tracer = t === undefined ? null : new TraceWriter(t, hostRing(t));
}

export function clearTracer(): void {
  tracer = null;
}

/** Run a primitive between a begin and an end event (tracing on only). */
export function tracePrim<T>(tw: TraceWriter, prim: number, fe: number, pages: number, fn: () => T, rcOf: (r: T) => number): T {
  tw.primBegin(prim, fe, pages);
  let rc = 0;
  try {
    const r = fn();
    rc = rcOf(r);
    return r;
  } catch (e) {
    rc = -1;
    throw e;
  } finally {
    tw.primEnd(prim, rc);
  }
}
