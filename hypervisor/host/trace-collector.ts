/**
 * The consumer side of the timeline (layout/trace.ts has the ring
 * protocol): the host main thread drains every ring each TRACE_DRAIN_MS
 * into a bounded list, samples host-side counters, and keeps the
 * aggregates the report plots. What it hands back (TraceData) travels in
 * the HostReport to the orchestrator, which writes the Chrome trace and
 * the report (docs/trace-and-report.md).
 *
 * Drop policy. A full ring drops new events (the producer counts them and
 * marks the gap). The host keeps drained events up to `max_events`, whole
 * drains at a time: the first drain that would overflow the cap and every
 * later one are only counted, so the kept timeline is one prefix of the run
 * for every thread, cut at `truncated_at_us`. The aggregates (Revoke
 * latencies, faults per bin, counter samples) see every drained event.
 */
import { TRACE_DRAIN_MS, TRACE_MAX_EVENTS } from '../layout/constants.js';
import { DOM } from '../layout/domains.js';
import { EV, PRIM, RING, TK, extraOf, kindOf, type TraceRegion } from '../layout/trace.js';
import type { Machine } from '../xen/machine.js';

/** Words per kept event: ring, then the ring's EV words. */
export const KEPT_WORDS = 1 + EV.WORDS;
/** Revoke latency histogram: bucket k holds [2^(k/4), 2^((k+1)/4)) µs (bucket 0 also everything below 1 µs). */
export const REVOKE_HIST_PER_OCTAVE = 4;
export const REVOKE_HIST_BUCKETS = 26 * REVOKE_HIST_PER_OCTAVE;
/** Individual Revoke latencies and counter samples kept for plots over time (evenly thinned beyond). */
const MAX_POINTS = 4096;

export interface TraceThread {
  ring: number;
  /** -1 for the host main thread. */
  domid: number;
  vcpu: number;
}

export interface TraceData {
  format: 1;
  /** The epoch all `*_us` times count from, in Unix ms. */
  epoch_unix_ms: number;
  started_us: number;
  ended_us: number;
  drain_ms: number;
  threads: TraceThread[];
  domains: Array<{ domid: number; name: string }>;
  /** Kept events, KEPT_WORDS float64 each (ring, ts, kind, a, b), base64 of the little-endian bytes. */
  events_b64: string;
  events: number;
  dropped: {
    /** Per ring: events a full ring refused. */
    ring_full: number[];
    /** Drained events not kept (over `cap`). */
    over_cap: number;
    cap: number;
    /** Where the kept timeline ends when events were dropped over the cap. */
    truncated_at_us: number | null;
  };
  /** Host-side counters sampled at each drain (thinned to MAX_POINTS). */
  samples: {
    t_us: number[];
    free_frames: number[];
    /** tot_pages per domain, in `domains` order. */
    tot_pages: number[][];
    /** Cumulative op counts (Host.stats()). */
    ops: Record<string, number[]>;
  };
  revoke: {
    /**
     * Revoke latencies (µs from begin to end of each outermost Revoke: a
     * dm_revoke's, Return's revoke phase, a teardown's), log buckets
     * (REVOKE_HIST_PER_OCTAVE per octave from 1 µs).
     */
    hist: number[];
    per_octave: number;
    /** (t_us, latency_us) pairs, evenly thinned to MAX_POINTS. */
    points: Array<[number, number]>;
    count: number;
    /** The worst latency (µs) of the Revokes that began in each bin of `faults.bin_us` from `started_us` (exact, never thinned). */
    max_per_bin: number[];
  };
  /** FAULT ioreqs per bin of `bin_us` from `started_us`. */
  faults: { bin_us: number; counts: number[] };
  /** The run's injections (chaos) on this clock; absent when the host injected nothing. */
  injections?: Array<{ at_us: number; end_us?: number; kind: string; target: string; detail?: string }>;
  /** When every vCPU had run (chaos's t0, from which the summary's injection times count), on this clock. */
  vcpus_running_us?: number;
}

export interface CollectorOptions {
  domains: Array<{ domid: number; name: string }>;
  threads: TraceThread[];
  stats: () => Record<string, number>;
  max_events?: number;
  drain_ms?: number;
}

/** A list that keeps at most `max` items by dropping every other one and then keeping only every 2^k-th new one. */
class Thinned<T> {
  readonly items: T[] = [];
  private stride = 1;
  private seen = 0;
  constructor(private readonly max: number) {}
  push(x: T): void {
    if (this.seen++ % this.stride !== 0) return;
    this.items.push(x);
    if (this.items.length >= this.max) {
      let w = 0;
      for (let r = 0; r < this.items.length; r += 2) this.items[w++] = this.items[r]!;
      this.items.length = w;
      this.stride *= 2;
    }
  }
}

export class TraceCollector {
  private readonly t: TraceRegion;
  private readonly cap: number;
  private readonly drain_ms: number;
  private readonly chunks: Float64Array[] = [];
  private kept = 0;
  private overCap = 0;
  private truncatedAt: number | null = null;
  private scratch: Float64Array;
  private timer: NodeJS.Timeout | undefined;
  private started_us = 0;
  private last_us = 0;
  private readonly off_ms: number;
  private readonly samples = new Thinned<{ t: number; free: number; tot: number[]; ops: Record<string, number> }>(MAX_POINTS);
  private readonly revokeHist = new Array<number>(REVOKE_HIST_BUCKETS).fill(0);
  private readonly revokePoints = new Thinned<[number, number]>(MAX_POINTS);
  private revokes = 0;
  private readonly revokeMax: number[] = [];
  /** Per ring: nesting depth of Revoke slices, and when the outermost began. */
  private readonly revokeDepth: Int32Array;
  private readonly revokeBegin: Float64Array;
  private readonly faults: number[] = [];

  constructor(
    readonly m: Machine,
    readonly o: CollectorOptions,
  ) {
    if (m.trace === undefined) throw new Error('trace collector: the machine has no trace region');
    this.t = m.trace;
    this.cap = o.max_events ?? TRACE_MAX_EVENTS;
    this.drain_ms = o.drain_ms ?? TRACE_DRAIN_MS;
    this.scratch = new Float64Array(1024 * KEPT_WORDS);
    this.off_ms = performance.timeOrigin - this.t.epoch_ms;
    this.revokeDepth = new Int32Array(this.t.nr_rings);
    this.revokeBegin = new Float64Array(this.t.nr_rings);
  }

  now(): number {
    return this.clock(performance.now());
  }

  /** A performance.now() reading of this thread, in µs on the timeline's clock. */
  clock(perf_ms: number): number {
    return (this.off_ms + perf_ms) * 1000;
  }

  /** Start draining; the vCPUs start now. */
  start(): void {
    this.started_us = this.now();
    this.timer = setInterval(() => this.drain(), this.drain_ms);
  }

  /** Drain every ring (steps 3–4 of the protocol), then sample the counters. */
  drain(): void {
    const t = this.t;
    // Step 3: the heads (acquire), and room for everything up to them.
    const heads = new Int32Array(t.nr_rings);
    let total = 0;
    for (let r = 0; r < t.nr_rings; r++) {
      heads[r] = Atomics.load(t.rings, t.ringIdx(r, RING.HEAD));
      total += (heads[r]! - t.rings[t.ringIdx(r, RING.TAIL)]!) | 0;
    }
    if (total * KEPT_WORDS > this.scratch.length) this.scratch = new Float64Array(Math.max(total, 2 * this.scratch.length / KEPT_WORDS) * KEPT_WORDS);
    let n = 0;
    for (let r = 0; r < t.nr_rings; r++) {
      const tailIdx = t.ringIdx(r, RING.TAIL);
      const head = heads[r]!;
      let tail = t.rings[tailIdx]!;
      for (; tail !== head; tail = (tail + 1) | 0) {
        const i = t.eventIdx(r, tail);
        const o = n * KEPT_WORDS;
        this.scratch[o] = r;
        for (let w = 0; w < EV.WORDS; w++) this.scratch[o + 1 + w] = t.ev[i + w]!;
        n++;
      }
      Atomics.store(t.rings, tailIdx, head);
    }
    const now = this.now();
    this.aggregate(n);
    if (this.truncatedAt === null && this.kept + n <= this.cap) {
      if (n > 0) this.chunks.push(this.scratch.slice(0, n * KEPT_WORDS));
      this.kept += n;
    } else if (this.cap === 0) {
      this.overCap += n; // nothing is kept (a report without a trace file): not a truncation
    } else {
      this.truncatedAt ??= this.last_us;
      this.overCap += n;
    }
    this.last_us = now;
    this.sample(now);
  }

  private aggregate(n: number): void {
    const s = this.scratch;
    const bin_us = this.drain_ms * 1000;
    for (let k = 0; k < n; k++) {
      const ring = s[k * KEPT_WORDS]!;
      const o = k * KEPT_WORDS + 1;
      const ts = s[o + EV.TS]!;
      const word = s[o + EV.KIND]!;
      const kind = kindOf(word);
      if (kind === TK.PRIM_B && extraOf(word) === PRIM.REVOKE) {
        if (this.revokeDepth[ring]!++ === 0) this.revokeBegin[ring] = ts;
      } else if (kind === TK.PRIM_E && extraOf(word) === PRIM.REVOKE && this.revokeDepth[ring]! > 0) {
        if (--this.revokeDepth[ring]! === 0) this.revokeSample(this.revokeBegin[ring]!, ts - this.revokeBegin[ring]!);
      } else if (kind === TK.GAP) {
        this.revokeDepth[ring] = 0; // its end may have been dropped
      } else if (kind === TK.FAULT) {
        const b = Math.max(0, Math.floor((ts - this.started_us) / bin_us));
        while (this.faults.length <= b) this.faults.push(0);
        this.faults[b]!++;
      }
    }
  }

  private revokeSample(t_us: number, us: number): void {
    const b = us < 1 ? 0 : Math.min(REVOKE_HIST_BUCKETS - 1, Math.floor(Math.log2(us) * REVOKE_HIST_PER_OCTAVE));
    this.revokeHist[b]!++;
    this.revokes++;
    this.revokePoints.push([t_us, us]);
    const bin = Math.max(0, Math.floor((t_us - this.started_us) / (this.drain_ms * 1000)));
    while (this.revokeMax.length <= bin) this.revokeMax.push(0);
    this.revokeMax[bin] = Math.max(this.revokeMax[bin]!, us);
  }

  private sample(t_us: number): void {
    this.samples.push({
      t: t_us,
      free: this.m.heap.free,
      tot: this.o.domains.map((d) => this.m.dom.at(d.domid, DOM.TOT_PAGES)),
      ops: this.o.stats(),
    });
  }

  /** Stop the timer, drain what is left, and hand everything over. */
  finish(): TraceData {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.drain();
    const all = new Float64Array(this.kept * KEPT_WORDS);
    let at = 0;
    for (const c of this.chunks) {
      all.set(c, at);
      at += c.length;
    }
    const samples = this.samples.items;
    const opNames = Object.keys(samples[0]?.ops ?? {});
    return {
      format: 1,
      epoch_unix_ms: this.t.epoch_ms,
      started_us: this.started_us,
      ended_us: this.last_us,
      drain_ms: this.drain_ms,
      threads: this.o.threads,
      domains: this.o.domains,
      events_b64: Buffer.from(all.buffer, all.byteOffset, all.byteLength).toString('base64'),
      events: this.kept,
      dropped: {
        ring_full: Array.from({ length: this.t.nr_rings }, (_, r) => this.t.dropped(r)),
        over_cap: this.overCap,
        cap: this.cap,
        truncated_at_us: this.truncatedAt,
      },
      samples: {
        t_us: samples.map((x) => x.t),
        free_frames: samples.map((x) => x.free),
        tot_pages: this.o.domains.map((_, i) => samples.map((x) => x.tot[i] ?? 0)),
        ops: Object.fromEntries(opNames.map((k) => [k, samples.map((x) => x.ops[k] ?? 0)])),
      },
      revoke: { hist: [...this.revokeHist], per_octave: REVOKE_HIST_PER_OCTAVE, points: this.revokePoints.items, count: this.revokes, max_per_bin: [...this.revokeMax] },
      faults: { bin_us: this.drain_ms * 1000, counts: [...this.faults] },
    };
  }
}

/** The kept events of a TraceData, decoded (KEPT_WORDS float64 per event). */
export function decodeEvents(d: Pick<TraceData, 'events_b64' | 'events'>): Float64Array {
  const buf = Buffer.from(d.events_b64, 'base64');
  if (buf.byteLength !== d.events * KEPT_WORDS * 8) throw new Error(`trace: ${buf.byteLength} bytes of events, expected ${d.events} × ${KEPT_WORDS} × 8`);
  // Copy into an aligned buffer: Buffer.from may hand back a slice of a pool at any offset.
  const out = new Float64Array(d.events * KEPT_WORDS);
  new Uint8Array(out.buffer).set(buf);
  return out;
}
