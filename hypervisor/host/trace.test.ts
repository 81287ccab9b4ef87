import { afterEach, describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { EV, HC_NAMES, P2M_EV, PRIM, TK, extraOf, kindOf, kindWord, ringEventsFor } from '../layout/trace.js';
import { TRACE_REGION_MAX_BYTES, TRACE_RING_EVENTS } from '../layout/constants.js';
import { KEPT_WORDS, TraceCollector, decodeEvents, type TraceData } from './trace-collector.js';
import { clearTracer, setVcpuTracer, TraceWriter, tracer } from '../xen/trace.js';
import { VcpuContext } from '../xen/guest-cpu.js';
import { DOM } from '../layout/domains.js';
import { domid, gfn } from '../public/types.js';
import { dmMap } from '../designs/primitives/map.js';
import { dmRevoke } from '../designs/primitives/revoke.js';

interface Ev {
  ring: number;
  ts: number;
  kind: number;
  x: number;
  a: number;
  b: number;
}
function events(d: TraceData): Ev[] {
  const f = decodeEvents(d);
  const out: Ev[] = [];
  for (let o = 0; o < f.length; o += KEPT_WORDS) {
    const w = f[o + 1 + EV.KIND]!;
    out.push({ ring: f[o]!, ts: f[o + 1 + EV.TS]!, kind: kindOf(w), x: extraOf(w), a: f[o + 1 + EV.A]!, b: f[o + 1 + EV.B]! });
  }
  return out;
}
const tracedMachine = (ring_events = 8) => testMachine({ trace: { rings: 3, ring_events } });
const collector = (m: ReturnType<typeof tracedMachine>, max_events?: number) =>
  new TraceCollector(m, { domains: [{ domid: 0, name: 'dom0' }], threads: [], stats: () => ({ hypercalls: 0 }), ...(max_events !== undefined ? { max_events } : {}) });

afterEach(() => clearTracer());

describe('timeline rings', () => {
  it('carry events in order across many wraps of the counters', () => {
    const m = tracedMachine();
    const w = new TraceWriter(m.trace!, 1);
    const c = collector(m);
    let k = 0;
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 5; i++, k++) w.put(k, kindWord(TK.FAULT, 3), k * 2, 0);
      c.drain();
    }
    const ev = events(c.finish());
    expect(ev.map((e) => e.a)).toEqual(Array.from({ length: 50 }, (_, i) => i * 2));
    expect(ev.every((e) => e.ring === 1 && e.kind === TK.FAULT && e.x === 3)).toBe(true);
  });

  it('a full ring drops new events, counts them and marks the gap once', () => {
    const m = tracedMachine();
    const w = new TraceWriter(m.trace!, 0);
    const c = collector(m);
    for (let i = 0; i < 20; i++) w.put(i, TK.FAULT, i, 0);
    expect(m.trace!.dropped(0)).toBe(13);
    c.drain();
    for (let i = 20; i < 22; i++) w.put(i, TK.FAULT, i, 0);
    const d = c.finish();
    const ev = events(d);
    // 7 events, the GAP in the slot kept for it, then writing resumes after the drain.
    expect(ev.map((e) => (e.kind === TK.GAP ? 'gap' : e.a))).toEqual([0, 1, 2, 3, 4, 5, 6, 'gap', 20, 21]);
    expect(d.dropped.ring_full[0]).toBe(13);
  });

  it('the host keeps whole drains up to the cap, and the aggregates still see everything', () => {
    const m = tracedMachine(16);
    const w = new TraceWriter(m.trace!, 0);
    const c = collector(m, 10);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3; i++) {
        w.put(100 * i, kindWord(TK.PRIM_B, PRIM.REVOKE), 1, 8);
        w.put(100 * i + 10 + i, kindWord(TK.PRIM_E, PRIM.REVOKE), 0, 0);
      }
      c.drain();
    }
    const d = c.finish();
    expect(d.events).toBe(6);
    expect(d.dropped.over_cap).toBe(12);
    expect(d.dropped.truncated_at_us).not.toBeNull();
    expect(d.revoke.count).toBe(9);
    expect(d.revoke.hist.reduce((a, b) => a + b, 0)).toBe(9);
    expect(d.revoke.points.slice(0, 3)).toEqual([
      [0, 10],
      [100, 11],
      [200, 12],
    ]);
    expect(d.samples.t_us.length).toBe(4);
  });

  it('with a cap of 0 (a report without a trace file) nothing is kept and nothing is called truncated', () => {
    const m = tracedMachine(16);
    const w = new TraceWriter(m.trace!, 0);
    const c = collector(m, 0);
    w.put(1, kindWord(TK.PRIM_B, PRIM.REVOKE), 1, 1);
    w.put(3, kindWord(TK.PRIM_E, PRIM.REVOKE), 0, 0);
    const d = c.finish();
    expect(d.events).toBe(0);
    expect(d.dropped.over_cap).toBe(2);
    expect(d.dropped.truncated_at_us).toBeNull();
    expect(d.revoke.count).toBe(1);
  });

  it('rings shrink so that many vCPUs stay within the region budget', () => {
    expect(ringEventsFor(10)).toBe(TRACE_RING_EVENTS);
    for (const n of [129, 257, 1000]) expect(n * ringEventsFor(n) * EV.WORDS * 8 <= TRACE_REGION_MAX_BYTES || ringEventsFor(n) === 1024).toBe(true);
    expect(ringEventsFor(257)).toBe(4096);
  });

  it('Revoke latency counts the outermost Revoke only, and forgets one cut by a gap', () => {
    const m = tracedMachine(16);
    const w = new TraceWriter(m.trace!, 0);
    const c = collector(m);
    const R = (ts: number, begin: boolean): void => w.put(ts, kindWord(begin ? TK.PRIM_B : TK.PRIM_E, PRIM.REVOKE), 0, 1);
    R(0, true);
    R(5, true); // nested: revoked first, part of the outer one
    R(7, false);
    R(50, false);
    w.put(60, kindWord(TK.PRIM_B, PRIM.RETURN), 1, 1);
    R(61, true);
    c.drain();
    w.put(62, TK.GAP, 0, 0);
    R(70, false); // its begin is older than the gap: not a sample
    w.put(71, kindWord(TK.PRIM_E, PRIM.RETURN), 0, 0);
    const d = c.finish();
    expect(d.revoke.points).toEqual([[0, 50]]);
    expect(d.revoke.max_per_bin).toEqual([50]);
  });

  it('hypercalls and the primitives inside them are recorded on the calling vCPU ring, nested', () => {
    const m = tracedMachine(64);
    const slot = m.dom.at(0, DOM.VCPU_BASE);
    setVcpuTracer(m.trace, slot);
    expect(tracer).not.toBeNull();
    const cpu = new VcpuContext(m, { domid: 0, vcpu: 0, slot, memory_pages: 64, seed: 1 });
    cpu.start();
    const r = cpu.hc.dm_map(domid(1), { kind: 'ram', gfn: gfn(4) }, 2, gfn(100));
    expect(r.rc).toBe(0);
    expect(cpu.hc.dm_revoke({ id: r.id })).toBe(0);
    expect(cpu.hc.dm_revoke({ id: 999_999 })).toBeLessThan(0);
    cpu.stop();
    const c = collector(m);
    const ev = events(c.finish());
    const names = ev.map((e) =>
      e.kind === TK.HC ? `${HC_NAMES[e.x & 0xff]}${e.x & 0x100 ? '!' : ''}` : e.kind === TK.PRIM_B ? `B${e.x}:${e.b}` : e.kind === TK.PRIM_E ? `E${e.x}:${e.a}` : e.kind === TK.P2M ? `P${e.x}:d${e.a}` : `?${e.kind}`,
    );
    // An HC event is written at the hypercall's exit, after the primitive it
    // contains; Revoke's shootdown of d1 (a P2M event) inside the Revoke.
    expect(names).toEqual([`B${PRIM.MAP}:2`, `E${PRIM.MAP}:0`, 'dm_map', `B${PRIM.REVOKE}:2`, `P${P2M_EV.SHOOTDOWN}:d1`, `E${PRIM.REVOKE}:0`, 'dm_revoke', 'dm_revoke!']);
    expect(ev.every((e) => e.ring === slot)).toBe(true);
    const hc = ev.filter((e) => e.kind === TK.HC);
    const prims = ev.filter((e) => e.kind === TK.PRIM_B || e.kind === TK.PRIM_E);
    // Each primitive lies within its hypercall's [entry, entry + duration].
    expect(prims[0]!.ts).toBeGreaterThanOrEqual(hc[0]!.ts);
    expect(prims[1]!.ts).toBeLessThanOrEqual(hc[0]!.ts + hc[0]!.a);
    expect(prims[2]!.ts).toBeGreaterThanOrEqual(hc[1]!.ts);
    expect(prims[3]!.ts).toBeLessThanOrEqual(hc[1]!.ts + hc[1]!.a);
  });

  it('nothing is recorded when this thread does not trace', () => {
    const m = tracedMachine(64);
    expect(tracer).toBeNull();
    const id = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).id;
    expect(dmRevoke(m, 0, { id })).toBe(0);
    expect(collector(m).finish().events).toBe(0);
  });
});
