/**
 * Where an ioreq's round trip goes, stage by stage, from a run's timeline
 * (layout/trace.ts has the events). Each stage is the time between two
 * events of the same ioreq — (requester, seq) — on the threads that wrote
 * them, all on the timeline's one clock:
 *
 *   handover       IO_SEND → IO_PICK    the vCPU's kick until the Redis dispatcher took the request
 *   request leg    IO_PICK → IO_RECV    sent through Redis until the device model had it
 *   device model   IO_RECV → IO_ANSWER  the device model's own work until it began to send its answer
 *   answer leg     IO_ANSWER → IO_BACK  from that send through Redis until the dispatcher completed the slot
 *
 * (IO_ANSWER's TS is when the device model called respond; over Redis its
 * duration includes waiting for Redis's reply to the answer's script, by
 * which time the dispatcher may have the answer already.)
 *   wake-up        IO_BACK → IO_DONE    until the vCPU stopped waiting
 *
 * The ring transport has no dispatcher: its ioreqs have no IO_PICK/IO_BACK
 * and only `device model` and the total are given for them.
 * An ioreq is counted only when all its events were kept (a trace cut at
 * its cap, or a ring that was full, loses some) and were answered once.
 */
import { KEPT_WORDS, decodeEvents, type TraceData } from '../../hypervisor/host/trace-collector.js';
import { EV, IO_END, TK, extraOf, kindOf } from '../../hypervisor/layout/trace.js';

export const STAGES = ['handover', 'request leg', 'device model', 'answer leg', 'wake-up'] as const;
export type StageName = (typeof STAGES)[number];
/** What each stage holds, in a few words (the bench's rows say it under their figure). */
export const STAGE_WHAT: Readonly<Record<StageName, string>> = {
  handover: "the vCPU's kick until the Redis dispatcher (host main thread) took the request",
  'request leg': 'from the dispatcher through Redis (sign, XADD, XREADGROUP, verify) until the device model had it',
  'device model': 'the device model: the dedup check, the answer computed, until it began to send',
  'answer leg': "the answer through Redis (answerOnce's script, XREAD, verify) until the dispatcher completed the slot",
  'wake-up': 'from the completed slot until the vCPU ran again',
};

export interface StageFigures {
  /** µs. */
  p50: number;
  p99: number;
  mean: number;
}

export interface IoreqStages {
  /** Round trips with every event of their stages kept. */
  count: number;
  /** Over the dispatcher (Redis): every stage; over the ring: only `device model`. */
  stages: Partial<Record<StageName, StageFigures>>;
  /** IO_SEND → IO_DONE of the same round trips. */
  total: StageFigures;
}

interface Marks {
  send?: number;
  pick?: number;
  recv?: number;
  answered?: number;
  back?: number;
  done?: number;
}

const keyOf = (domid: number, vcpu: number, seq: number): string => `${domid}:${vcpu}:${seq}`;
/** The events whose x names the requester (domid << 8 | vCPU), and the mark each sets. */
const BY_REQUESTER: ReadonlyMap<number, keyof Marks> = new Map<number, keyof Marks>([
  [TK.IO_RECV, 'recv'],
  [TK.IO_ANSWER, 'answered'],
  [TK.IO_PICK, 'pick'],
  [TK.IO_BACK, 'back'],
]);

/** The stages of every complete round trip in `d`'s kept events; null when there is none. */
export function ioreqStages(d: Pick<TraceData, 'events_b64' | 'events' | 'threads'>): IoreqStages | null {
  const ev = decodeEvents(d);
  const threads = new Map(d.threads.map((t) => [t.ring, t]));
  const marks = new Map<string, Marks>();
  const at = (k: string): Marks => {
    let m = marks.get(k);
    if (m === undefined) marks.set(k, (m = {}));
    return m;
  };
  /** Requests taken twice or answered twice (a takeover, a duplicate delivery): their stages mean nothing. */
  const twice = new Set<string>();
  const once = (k: string, m: Marks, f: keyof Marks, v: number): void => {
    if (m[f] !== undefined) twice.add(k);
    else m[f] = v;
  };
  for (let o = 0; o < ev.length; o += KEPT_WORDS) {
    const th = threads.get(ev[o]!);
    if (th === undefined) continue;
    const ts = ev[o + 1 + EV.TS]!;
    const word = ev[o + 1 + EV.KIND]!;
    const a = ev[o + 1 + EV.A]!;
    const x = extraOf(word);
    switch (kindOf(word)) {
      case TK.IO_SEND: {
        const k = keyOf(th.domid, th.vcpu, a);
        once(k, at(k), 'send', ts);
        break;
      }
      case TK.IO_DONE: {
        const k = keyOf(th.domid, th.vcpu, a);
        if (x === IO_END.ANSWERED) once(k, at(k), 'done', ts);
        else twice.add(k);
        break;
      }
      default: {
        // Written by the device model or the dispatcher, naming the requester in x.
        const f = BY_REQUESTER.get(kindOf(word));
        if (f === undefined) break;
        const k = keyOf(x >>> 8, x & 0xff, a);
        once(k, at(k), f, ts);
        break;
      }
    }
  }
  const per: Record<StageName, number[]> = { handover: [], 'request leg': [], 'device model': [], 'answer leg': [], 'wake-up': [] };
  const total: number[] = [];
  for (const [k, m] of marks) {
    if (twice.has(k) || m.send === undefined || m.recv === undefined || m.answered === undefined || m.done === undefined) continue;
    const redis = m.pick !== undefined && m.back !== undefined;
    // A ring ioreq has neither; one with only one of them lost an event.
    if (!redis && (m.pick !== undefined || m.back !== undefined)) continue;
    total.push(m.done - m.send);
    per['device model'].push(m.answered - m.recv);
    if (m.pick !== undefined && m.back !== undefined) {
      per.handover.push(m.pick - m.send);
      per['request leg'].push(m.recv - m.pick);
      per['answer leg'].push(m.back - m.answered);
      per['wake-up'].push(m.done - m.back);
    }
  }
  if (total.length === 0) return null;
  const stages: Partial<Record<StageName, StageFigures>> = {};
  for (const s of STAGES) if (per[s].length > 0) stages[s] = figures(per[s]);
  return { count: total.length, stages, total: figures(total) };
}

function figures(xs: number[]): StageFigures {
  const s = [...xs].sort((p, q) => p - q);
  const q = (f: number): number => s[Math.min(s.length - 1, Math.floor(f * s.length))]!;
  return { p50: q(0.5), p99: q(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

/** One line: each stage's p50 (µs), then the total's. */
export function stagesLine(st: IoreqStages): string {
  const parts = STAGES.flatMap((s) => (st.stages[s] !== undefined ? [`${s} ${st.stages[s].p50.toFixed(0)}`] : []));
  return `p50 µs by stage over ${st.count} round trips: ${parts.join(', ')}; total ${st.total.p50.toFixed(0)}`;
}
