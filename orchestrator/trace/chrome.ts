/**
 * The timeline as a Chrome Trace Event JSON file (object form) that
 * ui.perfetto.dev and chrome://tracing open: a process per domain, a
 * thread per vCPU, hypercalls as complete events, the primitives as B/E
 * pairs nested in them, IOREQs as slices joined by flow arrows (vCPU →
 * device model → vCPU), FAULT ioreqs as instants, frames as counters, and
 * the run's injections as global instants. docs/trace-and-report.md.
 *
 * Perfetto's JSON importer shapes a few choices: no pid or tid 0 (special
 * in the Linux model), `ts` early in every event and no arrays in events,
 * only top-level keys it knows (`displayTimeUnit` first, `traceEvents`,
 * `otherData`), and flow ends strictly inside the slice they bind to.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { EV, HC_NAMES, IO_END, P2M_EV, PRIM_NAMES, TK, extraOf, kindOf } from '../../hypervisor/layout/trace.js';
import { KEPT_WORDS, decodeEvents, type TraceData } from '../../hypervisor/host/trace-collector.js';
import { IOREQ_TYPE } from '../../hypervisor/public/ioreq.js';

export type ChromeEvent = Record<string, string | number | boolean | Record<string, string | number | boolean>>;

export interface ChromeTrace {
  displayTimeUnit: 'ms';
  traceEvents: ChromeEvent[];
  otherData: Record<string, string | number | boolean>;
}

/** Process of the host main thread, and the base of domains' pids: pid = DOMAIN_PID_BASE + domid. */
export const HOST_PID = 999;
export const DOMAIN_PID_BASE = 1000;
export const pidOf = (domid: number): number => (domid < 0 ? HOST_PID : DOMAIN_PID_BASE + domid);
export const tidOf = (domid: number, vcpu: number): number => pidOf(domid) * 100 + vcpu;

const IOREQ_TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(IOREQ_TYPE).map(([k, v]) => [v, k]));
const IO_END_NAMES: Record<number, string> = Object.fromEntries(Object.entries(IO_END).map(([k, v]) => [v, k.toLowerCase()]));

/** What the trace adds from the run's summary. */
export interface TraceContext {
  seed: number;
  verdict: string;
  command: string;
  faults_injected: ReadonlyArray<{ at_ms: number; kind: string; target: string }>;
}

const round = (us: number): number => Math.round(us * 1000) / 1000;
/** Slices that carry flow ends get at least this long (µs), so the ends fit strictly inside. */
const MIN_FLOW_SLICE_US = 0.1;
/** A point strictly inside [t0, t0 + dur], as close to `t` as it may be. */
function inside(t0: number, dur: number, t: number): number {
  const e = Math.min(dur / 10, 0.5);
  return Math.min(Math.max(t, t0 + e), t0 + dur - e);
}

interface FlowEnd {
  pid: number;
  tid: number;
  ts: number;
}

export function chromeTrace(d: TraceData, ctx: TraceContext): ChromeTrace {
  const out: ChromeEvent[] = [];
  const ev = decodeEvents(d);
  const threads = new Map(d.threads.map((t) => [t.ring, t]));
  const names = new Map(d.domains.map((x) => [x.domid, x.name]));

  // Metadata: processes in domid order, the host first; a thread per vCPU.
  out.push({ ph: 'M', pid: HOST_PID, tid: tidOf(-1, 0), name: 'process_name', args: { name: 'xen (host main thread)' } });
  out.push({ ph: 'M', pid: HOST_PID, tid: tidOf(-1, 0), name: 'process_sort_index', args: { sort_index: 0 } });
  out.push({ ph: 'M', pid: HOST_PID, tid: tidOf(-1, 0), name: 'thread_name', args: { name: 'toolstack + checker' } });
  for (const x of d.domains) {
    out.push({ ph: 'M', pid: pidOf(x.domid), tid: tidOf(x.domid, 0), name: 'process_name', args: { name: `${x.name} (d${x.domid})` } });
    out.push({ ph: 'M', pid: pidOf(x.domid), tid: tidOf(x.domid, 0), name: 'process_sort_index', args: { sort_index: x.domid + 1 } });
  }
  for (const t of d.threads) {
    if (t.domid < 0) continue;
    out.push({ ph: 'M', pid: pidOf(t.domid), tid: tidOf(t.domid, t.vcpu), name: 'thread_name', args: { name: `vCPU ${t.vcpu}` } });
    out.push({ ph: 'M', pid: pidOf(t.domid), tid: tidOf(t.domid, t.vcpu), name: 'thread_sort_index', args: { sort_index: t.vcpu } });
  }

  // Events, ring by ring in each ring's program order.
  const byRing = new Map<number, number[]>();
  for (let o = 0; o < ev.length; o += KEPT_WORDS) {
    const r = ev[o]!;
    let list = byRing.get(r);
    if (list === undefined) byRing.set(r, (list = []));
    list.push(o + 1);
  }
  const reqStart = new Map<number, FlowEnd>();
  const reqEnd = new Map<number, FlowEnd>();
  const ansStart = new Map<number, FlowEnd>();
  const ansEnd = new Map<number, FlowEnd>();
  const truncated = d.dropped.truncated_at_us;
  const endOfTrace = truncated ?? d.ended_us;

  for (const [ring, offsets] of byRing) {
    const th = threads.get(ring);
    if (th === undefined) continue;
    const pid = pidOf(th.domid);
    const tid = tidOf(th.domid, th.vcpu);
    const open: Array<{ prim: number }> = [];
    const sent = new Map<number, { ts: number; type: number; dir: number; gfn: number }>();
    let recvs: Array<{ key: number; ts: number }> = [];
    const closeAll = (ts: number, why: string): void => {
      for (let k = open.length - 1; k >= 0; k--) out.push({ ph: 'E', ts: round(ts), pid, tid, args: { [why]: true } });
      open.length = 0;
      for (const [seq, s] of sent) {
        out.push({ ph: 'X', ts: round(s.ts), dur: round(Math.max(0, ts - s.ts)), pid, tid, name: `ioreq ${IOREQ_TYPE_NAMES[s.type] ?? s.type}`, cat: 'ioreq', args: { seq, gfn: s.gfn, [why]: true } });
      }
      sent.clear();
      recvs = [];
    };
    for (const o of offsets) {
      const ts = ev[o + EV.TS]!;
      const word = ev[o + EV.KIND]!;
      const a = ev[o + EV.A]!;
      const b = ev[o + EV.B]!;
      const x = extraOf(word);
      switch (kindOf(word)) {
        case TK.HC: {
          const err = (x & 0x100) !== 0;
          out.push({ ph: 'X', ts: round(ts), dur: round(a), pid, tid, name: HC_NAMES[x & 0xff] ?? `hypercall ${x & 0xff}`, cat: 'hypercall', ...(err ? { args: { error: true } } : {}) });
          break;
        }
        case TK.PRIM_B:
          open.push({ prim: x });
          out.push({ ph: 'B', ts: round(ts), pid, tid, name: PRIM_NAMES[x] ?? `primitive ${x}`, cat: 'primitive', args: { fe: a, pages: b } });
          break;
        case TK.PRIM_E:
          // An end whose begin was lost in a gap is dropped: B/E stay balanced.
          if (open.pop() !== undefined) out.push({ ph: 'E', ts: round(ts), pid, tid, args: { rc: a } });
          break;
        case TK.IO_SEND:
          sent.set(a, { ts, type: x & 0xf, dir: (x >>> 4) & 0xf, gfn: b });
          break;
        case TK.IO_DONE: {
          const s = sent.get(a);
          if (s === undefined) break;
          sent.delete(a);
          const dur = Math.max(MIN_FLOW_SLICE_US, ts - s.ts);
          out.push({ ph: 'X', ts: round(s.ts), dur: round(dur), pid, tid, name: `ioreq ${IOREQ_TYPE_NAMES[s.type] ?? s.type}`, cat: 'ioreq', args: { seq: a, gfn: s.gfn, dir: s.dir === 0 ? 'write' : 'read', end: IO_END_NAMES[x] ?? String(x) } });
          const key = flowKey(th.domid, th.vcpu, a);
          reqStart.set(key, { pid, tid, ts: inside(s.ts, dur, s.ts) });
          if (x === IO_END.ANSWERED) ansEnd.set(key, { pid, tid, ts: inside(s.ts, dur, s.ts + dur) });
          break;
        }
        case TK.IO_RECV:
          recvs.push({ key: flowKey(x >>> 8, x & 0xff, a), ts });
          break;
        case TK.IO_BATCH: {
          const dur = Math.max(MIN_FLOW_SLICE_US, a);
          out.push({ ph: 'X', ts: round(ts), dur: round(dur), pid, tid, name: `take ${b} ioreq${b === 1 ? '' : 's'}`, cat: 'ioreq', args: { requests: b } });
          // A request taken twice (a restarted device model takes over) keeps its first receipt.
          for (const r of recvs) if (!reqEnd.has(r.key)) reqEnd.set(r.key, { pid, tid, ts: inside(ts, dur, r.ts) });
          recvs = [];
          break;
        }
        case TK.IO_ANSWER: {
          const dur = Math.max(MIN_FLOW_SLICE_US, b);
          const dom = x >>> 8;
          const vcpu = x & 0xff;
          out.push({ ph: 'X', ts: round(ts), dur: round(dur), pid, tid, name: 'answer', cat: 'ioreq', args: { frontend: `d${dom} vCPU ${vcpu}`, seq: a } });
          // A duplicate delivery (transport nemesis, a takeover) is answered again later: the first answer is the one the vCPU got.
          const key = flowKey(dom, vcpu, a);
          if (!ansStart.has(key)) ansStart.set(key, { pid, tid, ts: inside(ts, dur, ts) });
          break;
        }
        case TK.IO_PICK:
        case TK.IO_BACK:
          out.push({ ph: 'i', ts: round(ts), pid, tid, s: 't', name: kindOf(word) === TK.IO_PICK ? 'dispatch ioreq' : 'complete ioreq', cat: 'ioreq', args: { frontend: `d${x >>> 8} vCPU ${x & 0xff}`, seq: a } });
          break;
        case TK.IO_POST:
          out.push({ ph: 'i', ts: round(ts), pid, tid, s: 't', name: 'posted write', cat: 'ioreq', args: { server: x, position: a, gfn: b } });
          break;
        case TK.FAULT:
          out.push({ ph: 'i', ts: round(ts), pid, tid, s: 't', name: 'FAULT', cat: 'fault', args: { gfn: a, server: x } });
          break;
        case TK.P2M:
          out.push({ ph: 'i', ts: round(ts), pid, tid, s: 't', name: x === P2M_EV.SPLIT ? 'superpage split' : 'TLB shootdown', cat: 'p2m', args: x === P2M_EV.SPLIT ? { domain: a, level: b } : { domain: a } });
          break;
        case TK.GAP:
          // The ring was full: what was open may have ended unseen.
          closeAll(ts, 'truncated');
          out.push({ ph: 'i', ts: round(ts), pid, tid, s: 't', name: 'ring full: events dropped', cat: 'trace' });
          break;
        default:
          break;
      }
    }
    closeAll(Math.max(endOfTrace, lastTs(ev, offsets)), truncated !== null ? 'truncated' : 'unfinished');
  }

  // Flow arrows, only where both ends were kept and the end does not come before the start.
  for (const [key, s] of reqStart) {
    const f = reqEnd.get(key);
    if (f === undefined || f.ts < s.ts) continue;
    out.push({ ph: 's', ts: round(s.ts), pid: s.pid, tid: s.tid, id: key * 2, name: 'ioreq', cat: 'ioreq' });
    out.push({ ph: 'f', ts: round(f.ts), pid: f.pid, tid: f.tid, id: key * 2, name: 'ioreq', cat: 'ioreq', bp: 'e' });
  }
  for (const [key, s] of ansStart) {
    const f = ansEnd.get(key);
    if (f === undefined || f.ts < s.ts) continue;
    out.push({ ph: 's', ts: round(s.ts), pid: s.pid, tid: s.tid, id: key * 2 + 1, name: 'ioreq answer', cat: 'ioreq' });
    out.push({ ph: 'f', ts: round(f.ts), pid: f.pid, tid: f.tid, id: key * 2 + 1, name: 'ioreq answer', cat: 'ioreq', bp: 'e' });
  }

  // Counters sampled by the host at each drain.
  const hostTid = tidOf(-1, 0);
  d.samples.t_us.forEach((t, i) => {
    out.push({ ph: 'C', ts: round(t), pid: HOST_PID, tid: hostTid, name: 'heap', args: { free_frames: d.samples.free_frames[i] ?? 0 } });
    d.domains.forEach((x, k) => {
      out.push({ ph: 'C', ts: round(t), pid: pidOf(x.domid), tid: tidOf(x.domid, 0), name: 'frames', args: { tot_pages: d.samples.tot_pages[k]?.[i] ?? 0 } });
    });
  });

  // The run's injections (on the timeline's clock when the host put them there) and the trace's own truncation, as global instants.
  const injections: NonNullable<TraceData['injections']> = d.injections ?? ctx.faults_injected.map((f) => ({ at_us: d.started_us + f.at_ms * 1000, kind: f.kind, target: f.target }));
  for (const f of injections) {
    const args: Record<string, string | number> = { target: f.target };
    if (f.end_us !== undefined) args['window_ms'] = Math.round((f.end_us - f.at_us) / 100) / 10;
    if (f.detail !== undefined) args['detail'] = f.detail;
    out.push({ ph: 'i', ts: round(f.at_us), pid: HOST_PID, tid: hostTid, s: 'g', name: `inject ${f.kind}`, cat: 'chaos', args });
  }
  if (truncated !== null) {
    out.push({ ph: 'i', ts: round(truncated), pid: HOST_PID, tid: hostTid, s: 'g', name: `trace truncated: ${d.dropped.over_cap} events over the cap of ${d.dropped.cap}`, cat: 'trace' });
  }

  const ringFull = d.dropped.ring_full.reduce((s, n) => s + n, 0);
  return {
    displayTimeUnit: 'ms',
    traceEvents: inFileOrder(out),
    otherData: {
      generator: 'xgsim',
      command: ctx.command,
      seed: ctx.seed,
      verdict: ctx.verdict,
      epoch_unix_ms: d.epoch_unix_ms,
      started_us: round(d.started_us),
      ended_us: round(d.ended_us),
      events_kept: d.events,
      events_cap: d.dropped.cap,
      events_dropped_over_cap: d.dropped.over_cap,
      events_dropped_ring_full: ringFull,
      truncated_at_us: truncated === null ? -1 : round(truncated),
      names: [...names.entries()].map(([k, v]) => `${pidOf(k)}=${v}`).join(' '),
    },
  };
}

/**
 * Metadata first, then by time; at one instant an end comes before the
 * slices that begin there, and a hypercall before the primitive it
 * contains. Importers sort by time stably, so this settles their ties.
 */
function inFileOrder(evs: ChromeEvent[]): ChromeEvent[] {
  const rank = (e: ChromeEvent): number => (e['ph'] === 'M' ? -1 : e['ph'] === 'E' ? 0 : e['ph'] === 'X' ? 1 : e['ph'] === 'B' ? 2 : 3);
  const ts = (e: ChromeEvent): number => (typeof e['ts'] === 'number' ? e['ts'] : -Infinity);
  return evs
    .map((e, i) => ({ e, i, r: rank(e), t: ts(e) }))
    .sort((x, y) => (x.r === -1 || y.r === -1 ? x.r - y.r || x.i - y.i : x.t - y.t || x.r - y.r || x.i - y.i))
    .map((x) => x.e);
}

/** One number per ioreq for ever: (domid, vcpu, seq). */
function flowKey(domid: number, vcpu: number, seq: number): number {
  return ((domid << 8) | vcpu) * 2 ** 32 + (seq >>> 0);
}

function lastTs(ev: Float64Array, offsets: readonly number[]): number {
  const o = offsets[offsets.length - 1];
  return o === undefined ? 0 : ev[o + EV.TS]!;
}

/**
 * Write the trace with `displayTimeUnit` first (Perfetto reads it only
 * there) and one event a line, in chunks: a trace may hold 10⁵–10⁶ events.
 */
export function writeChromeTrace(path: string, t: ChromeTrace): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, `{"displayTimeUnit":${JSON.stringify(t.displayTimeUnit)},\n"traceEvents":[\n`);
    const CHUNK = 4096;
    for (let i = 0; i < t.traceEvents.length; i += CHUNK) {
      const part = t.traceEvents.slice(i, i + CHUNK).map((e) => JSON.stringify(e));
      writeSync(fd, `${i === 0 ? '' : ',\n'}${part.join(',\n')}`);
    }
    writeSync(fd, `\n],\n"otherData":${JSON.stringify(t.otherData)}}\n`);
  } finally {
    closeSync(fd);
  }
}
