import { describe, expect, it } from 'vitest';
import { KEPT_WORDS, type TraceThread } from '../../hypervisor/host/trace-collector.js';
import { IO_END, TK, kindWord, requester } from '../../hypervisor/layout/trace.js';
import { ioreqStages, stagesLine } from './stages.js';

/** Rings: 0 = the frontend's vCPU 0 (d1), 1 = the device model (d0 vCPU 0), 2 = the host main thread (dispatcher). */
const THREADS: TraceThread[] = [
  { ring: 0, domid: 1, vcpu: 0 },
  { ring: 1, domid: 0, vcpu: 0 },
  { ring: 2, domid: -1, vcpu: 0 },
];
type Ev = [ring: number, ts: number, kind: number, a: number, b: number];

function trace(evs: Ev[]): { events_b64: string; events: number; threads: TraceThread[] } {
  const f = new Float64Array(evs.length * KEPT_WORDS);
  evs.forEach((e, i) => f.set(e, i * KEPT_WORDS));
  return { events_b64: Buffer.from(f.buffer).toString('base64'), events: evs.length, threads: THREADS };
}

const who = requester(1, 0);
/** One round trip of seq `s` starting at `t`: send, [pick], recv, answer (entry; 500 µs of waiting for Redis's reply), [back], done. */
function roundTrip(s: number, t: number, redis: boolean): Ev[] {
  const evs: Ev[] = [
    [0, t, kindWord(TK.IO_SEND, 0), s, 600],
    [1, t + 110, kindWord(TK.IO_RECV, who), s, 0],
    [1, t + 130, kindWord(TK.IO_ANSWER, who), s, 500],
    [0, t + 300, kindWord(TK.IO_DONE, IO_END.ANSWERED), s, 0],
  ];
  if (redis) evs.push([2, t + 10, kindWord(TK.IO_PICK, who), s, 0], [2, t + 280, kindWord(TK.IO_BACK, who), s, 0]);
  return evs;
}

describe('ioreq stages from a timeline', () => {
  it('a Redis round trip splits into five stages that add up to its total (the answer leg from respond called, not returned)', () => {
    const st = ioreqStages(trace(roundTrip(7, 1000, true)))!;
    expect(st.count).toBe(1);
    expect(st.total.p50).toBe(300);
    expect(Object.fromEntries(Object.entries(st.stages).map(([k, v]) => [k, v.p50]))).toEqual({ handover: 10, 'request leg': 100, 'device model': 20, 'answer leg': 150, 'wake-up': 20 });
    expect(stagesLine(st)).toBe('p50 µs by stage over 1 round trips: handover 10, request leg 100, device model 20, answer leg 150, wake-up 20; total 300');
  });

  it('a ring round trip has no dispatcher: only the device model and the total', () => {
    const st = ioreqStages(trace(roundTrip(1, 0, false)))!;
    expect(Object.keys(st.stages)).toEqual(['device model']);
    expect(st.total.p50).toBe(300);
  });

  it('round trips with an event lost, taken twice or abandoned are left out; none left is null', () => {
    const lostDone = roundTrip(1, 0, true).filter((e) => (e[2] & 0xff) !== TK.IO_DONE);
    const lostPick = roundTrip(2, 1000, true).filter((e) => (e[2] & 0xff) !== TK.IO_PICK);
    const twice = [...roundTrip(3, 2000, true), [1, 2120, kindWord(TK.IO_RECV, who), 3, 0] as Ev];
    const abandoned = roundTrip(4, 3000, true).map((e): Ev => ((e[2] & 0xff) === TK.IO_DONE ? [e[0], e[1], kindWord(TK.IO_DONE, IO_END.ABANDONED), e[3], e[4]] : e));
    expect(ioreqStages(trace([...lostDone, ...lostPick, ...twice, ...abandoned]))).toBeNull();
    const st = ioreqStages(trace([...lostDone, ...roundTrip(5, 4000, true), ...twice]))!;
    expect(st.count).toBe(1);
  });

  it('percentiles over many: p50 and p99 of each stage', () => {
    const evs: Ev[] = [];
    for (let s = 0; s < 100; s++) {
      const rt = roundTrip(s, s * 1000, true);
      // The wake-up of round trip s takes 20 + s µs.
      evs.push(...rt.map((e): Ev => ((e[2] & 0xff) === TK.IO_DONE ? [e[0], e[1] + s, e[2], e[3], e[4]] : e)));
    }
    const st = ioreqStages(trace(evs))!;
    expect(st.count).toBe(100);
    expect(st.stages['wake-up']!.p50).toBe(70);
    expect(st.stages['wake-up']!.p99).toBe(119);
    expect(st.stages.handover!.p99).toBe(10);
  });
});
