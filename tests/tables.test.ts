/**
 * Aligned tables with units (issue 17 items 11): the formatter of
 * orchestrator/text.ts, the bench's floors and rows, and the run summary's
 * invariants and injections — each column lines up, numbers on the right,
 * every figure with its unit.
 */
import { describe, expect, it } from 'vitest';
import { floorUnit, formatBench, type BenchReport } from '../orchestrator/bench/bench.js';
import { table, withUnit } from '../orchestrator/text.js';
import { formatSummary } from '../orchestrator/up/summary.js';
import { syntheticRun } from './trace-format.js';

/** Where each of `words` starts on its line (the column of a left-aligned cell). */
const starts = (lines: readonly string[], word: RegExp): number[] => lines.map((l) => l.search(word));
const cpLength = (s: string): number => [...s].length;

describe('table', () => {
  it('pads by code points, right-aligns numbers, trims trailing blanks', () => {
    const t = table([{ head: 'name' }, { head: 'µs', right: true }, { head: 'note' }], [
      ['a', '1', ''],
      ['long-name', '12345', '≤ 3×'],
    ]);
    expect(t).toEqual(['name          µs  note', 'a              1', 'long-name  12345  ≤ 3×']);
    expect(withUnit(1.23456, 'ms')).toBe('1.23 ms');
    expect(withUnit(2, '')).toBe('2');
  });
});

describe('bench tables', () => {
  const report: BenchReport = {
    date: '2026-12-07T00:00:00Z',
    machine: { cores: 2, node: 'v20.20.0', cpu: 'x' },
    quick: true,
    load: [1, 2, 3],
    floors: { raw_access_per_s: 123456789.123, lock_pair_ns: 21.5, spin_pingpong_p50_us: 0.8, bare_workers_rss_mib: 64.25 },
    rows: [
      { figure: 'null hypercall on a vCPU thread', value: 52.1, unit: 'ns', floor: 'uncontended lock pair', floor_value: 21.5, ratio: 2.423, goal: '≤ 3×', pass: true },
      { figure: 'Revoke of 1 page, 1M frames of RAM (p50)', value: 1234.5, unit: 'µs', floor: 'same, 16k frames', floor_value: 1000, ratio: 1.235, goal: '≤ 1.2×', pass: false, detail: 'how it was made' },
      { figure: 'boot, gpu-desktop', value: 1.2, unit: 's', floor: '8 bare threads', floor_value: 0.4, ratio: 3, goal: '—', pass: null },
    ],
  };
  const out = formatBench(report).split('\n');

  it('floors carry their unit from their name, values right-aligned', () => {
    expect(floorUnit('raw_access_per_s')).toEqual({ label: 'raw_access', unit: '/s' });
    expect(floorUnit('bare_workers_rss_mib')).toEqual({ label: 'bare_workers_rss', unit: 'MiB' });
    const floors = out.slice(out.indexOf('floors:') + 1, out.indexOf('floors:') + 6);
    expect(floors[1]).toMatch(/^ {2}raw_access +123 M\/s$/);
    expect(floors[2]).toMatch(/ 21\.5 ns$/);
    expect(floors[3]).toMatch(/ 0\.8 µs$/);
    expect(floors[4]).toMatch(/ 64\.25 MiB$/);
    expect(new Set(floors.slice(1).map(cpLength)).size).toBe(1);
  });

  it('rows: every figure with its unit, each column starting where its heading does', () => {
    const head = out.findIndex((l) => l.startsWith('figure'));
    const rows = [out[head]!, out[head + 1]!, out[head + 2]!, out[head + 4]!];
    expect(out[head + 3]).toBe('  how it was made');
    expect(rows[1]).toMatch(/52\.1 ns +uncontended lock pair +21\.5 ns +2\.423× +≤ 3× +pass$/);
    expect(rows[2]).toMatch(/1234\.5 µs +same, 16k frames +1000 µs +1\.235× +≤ 1\.2× +MISS$/);
    // Left-aligned columns start at the heading's column; right-aligned ones end at the heading's end.
    const col = (s: string): number => [...out[head]!].join('').indexOf(s);
    for (const [i, word] of [[1, /uncontended/], [2, /same, 16k/], [3, /8 bare/]] as const) expect([...rows[i]!].join('').search(word), String(word)).toBe(col('floor'));
    const endOf = (l: string, re: RegExp): number => {
      const m = re.exec(l);
      return m === null ? -1 : cpLength(l.slice(0, m.index + m[0].length));
    };
    expect(rows.slice(1).map((l) => endOf(l, /\d[\d.]* (ns|µs|s)(?= {2}[a-z0-9])/))).toEqual(Array(3).fill(endOf(rows[0]!, /value/)));
    expect(starts(rows.slice(1), /pass|MISS/).filter((x) => x >= 0).length).toBe(2);
  });
});

describe('summary tables', () => {
  it('invariants and injections line up', () => {
    const s = syntheticRun().summary;
    const out = formatSummary(s).split('\n');
    const inv = out.slice(out.indexOf('invariants:') + 1, out.indexOf('invariants:') + 4);
    expect(inv[0]).toMatch(/^ {6}invariant +checks +violations$/);
    expect(inv[1]).toMatch(/^ {2}ok {2}no_use_after_revoke +1000 +0$/);
    expect(new Set(inv.map(cpLength)).size).toBe(1);
    const at = out.findIndex((l) => l.startsWith('injections:'));
    expect(out[at]).toBe('injections: 3 (times from when every vCPU had run)');
    const inj = out.slice(at + 1, at + 5);
    expect(inj[0]).toMatch(/^ +at {2}nemesis +target +what, and recovery$/);
    expect(starts(inj.slice(1), /(dom0|transport)/)).toEqual(Array(3).fill(inj[0]!.indexOf('target')));
    expect(inj[1]).toMatch(/^ {2}1\.00 s {2}kill-device-model/);
  });
});
