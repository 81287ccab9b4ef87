/**
 * What a Chrome trace from `--trace` must be for Perfetto and
 * chrome://tracing to open it, checked on the parsed JSON; and a saved run
 * with data for every plot, for the report tests.
 */
import { RTT_BUCKETS, rttBucket } from '../hypervisor/layout/rtt-hist.js';
import { SAVED_RUN_VERSION } from '../orchestrator/report/saved-run.js';
import type { SavedRun } from '../orchestrator/report/saved-run.js';
import type { Summary } from '../orchestrator/up/summary.js';

type Ev = Record<string, unknown>;

export interface TraceFacts {
  problems: string[];
  /** Threads named "vCPU n", as "pid/tid". */
  vcpuThreads: Set<string>;
  processNames: string[];
  flowPairs: number;
  slices: Record<string, number>;
  counters: number;
}

/** Round trips of [µs, count] in layout/rtt-hist.ts's buckets. */
function rttHist(values: Array<[number, number]>): number[] {
  const h = new Array<number>(RTT_BUCKETS).fill(0);
  for (const [us, n] of values) h[rttBucket(us)]! += n;
  return h;
}

export function checkChromeTrace(json: unknown): TraceFacts {
  const problems: string[] = [];
  const facts: TraceFacts = { problems, vcpuThreads: new Set(), processNames: [], flowPairs: 0, slices: {}, counters: 0 };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    problems.push('not the object form');
    return facts;
  }
  const o = json as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys[0] !== 'displayTimeUnit') problems.push(`displayTimeUnit is not the first key (${keys.join(', ')})`);
  if (o['displayTimeUnit'] !== 'ms' && o['displayTimeUnit'] !== 'ns') problems.push(`displayTimeUnit ${String(o['displayTimeUnit'])}`);
  for (const k of keys) if (!['displayTimeUnit', 'traceEvents', 'otherData'].includes(k)) problems.push(`top-level key ${k} (Perfetto stops reading at unknown keys)`);
  const evs = o['traceEvents'];
  if (!Array.isArray(evs)) {
    problems.push('traceEvents is not an array');
    return facts;
  }
  const named = new Set<string>();
  const used = new Set<string>();
  const flowS = new Map<string, Ev>();
  const flowF = new Map<string, Ev>();
  const perThread = new Map<string, Ev[]>();
  evs.forEach((raw, i) => {
    const e = raw as Ev;
    const where = `event ${i} ${JSON.stringify(e).slice(0, 120)}`;
    const ph = e['ph'];
    if (typeof ph !== 'string' || ph.length !== 1) {
      problems.push(`${where}: no ph`);
      return;
    }
    if (typeof e['pid'] !== 'number' || e['pid'] === 0) problems.push(`${where}: pid must be a non-zero number`);
    if (typeof e['tid'] !== 'number' || e['tid'] === 0) problems.push(`${where}: tid must be a non-zero number`);
    if (Object.values(e).some((v) => Array.isArray(v)) || (typeof e['args'] === 'object' && e['args'] !== null && Object.values(e['args']).some((v) => Array.isArray(v)))) {
      problems.push(`${where}: arrays in events trip Perfetto's tokenizer`);
    }
    const thread = `${String(e['pid'])}/${String(e['tid'])}`;
    if (ph === 'M') {
      const name = (e['args'] as { name?: unknown } | undefined)?.name;
      if (e['name'] === 'thread_name' && typeof name === 'string') {
        named.add(thread);
        if (/^vCPU \d+$/.test(name)) facts.vcpuThreads.add(thread);
      }
      if (e['name'] === 'process_name' && typeof name === 'string') facts.processNames.push(name);
      return;
    }
    if (typeof e['ts'] !== 'number' || !Number.isFinite(e['ts']) || e['ts'] < 0) problems.push(`${where}: ts must be a number ≥ 0`);
    if (Object.keys(e).indexOf('ts') > 2) problems.push(`${where}: ts should come early (Perfetto's tokenizer looks for it)`);
    if (ph === 'X' || ph === 'B') {
      if (typeof e['name'] !== 'string' || e['name'] === '') problems.push(`${where}: a slice needs a name`);
      facts.slices[String(e['name'])] = (facts.slices[String(e['name'])] ?? 0) + 1;
    }
    if (ph === 'X' && (typeof e['dur'] !== 'number' || e['dur'] < 0)) problems.push(`${where}: X needs dur ≥ 0`);
    if (ph === 'X' || ph === 'B' || ph === 'E' || (ph === 'i' && e['s'] !== 'g')) used.add(thread);
    if (ph === 'B' || ph === 'E' || ph === 'X') {
      let l = perThread.get(thread);
      if (l === undefined) perThread.set(thread, (l = []));
      l.push(e);
    }
    if (ph === 's' || ph === 'f') {
      const key = `${String(e['cat'])}/${String(e['name'])}/${String(e['id'])}`;
      if (e['id'] === undefined) problems.push(`${where}: a flow event needs an id`);
      if (ph === 'f' && e['bp'] !== 'e') problems.push(`${where}: flow ends bind to their enclosing slice (bp e)`);
      (ph === 's' ? flowS : flowF).set(key, e);
    }
    if (ph === 'C') {
      facts.counters++;
      if (typeof e['args'] !== 'object' || e['args'] === null || Object.values(e['args']).some((v) => typeof v !== 'number')) problems.push(`${where}: counter args must be numbers`);
    }
    if (ph === 'i' && !['g', 'p', 't'].includes(String(e['s']))) problems.push(`${where}: instant scope`);
  });
  for (const t of used) if (!named.has(t)) problems.push(`thread ${t} has events but no thread_name`);
  for (const [k, s] of flowS) {
    const f = flowF.get(k);
    if (f === undefined) problems.push(`flow ${k}: start without end`);
    else {
      facts.flowPairs++;
      if ((f['ts'] as number) < (s['ts'] as number) - 20) problems.push(`flow ${k}: ends before it starts (${String(s['ts'])} → ${String(f['ts'])})`);
    }
  }
  for (const k of flowF.keys()) if (!flowS.has(k)) problems.push(`flow ${k}: end without start`);
  // B/E balanced per thread, and properly nested with the X slices, in time order (as importers see them).
  for (const [t, l] of perThread) {
    const stack: Array<{ ph: string; end: number }> = [];
    const sorted = l.map((e, i) => ({ e, i })).sort((a, b) => (a.e['ts'] as number) - (b.e['ts'] as number) || a.i - b.i);
    for (const { e } of sorted) {
      const ts = e['ts'] as number;
      while (stack.length > 0 && stack[stack.length - 1]!.ph === 'X' && stack[stack.length - 1]!.end <= ts) stack.pop();
      if (e['ph'] === 'X') stack.push({ ph: 'X', end: ts + (e['dur'] as number) });
      else if (e['ph'] === 'B') stack.push({ ph: 'B', end: Infinity });
      else {
        const top = stack.pop();
        if (top === undefined) problems.push(`thread ${t}: E at ${ts} without a B`);
        else if (top.ph !== 'B') problems.push(`thread ${t}: E at ${ts} closes an X slice ending at ${top.end}: B/E and X overlap`);
      }
    }
    if (stack.some((s) => s.ph === 'B')) problems.push(`thread ${t}: ${stack.filter((s) => s.ph === 'B').length} B without E`);
  }
  return facts;
}

/** A saved run with data for every plot (and an injection), as `--report` would write it. */
export function syntheticRun(o: { empty?: boolean } = {}): SavedRun {
  const n = o.empty === true ? 0 : 40;
  // A hole in the sampling from 2.4 s to 3.1 s (a stalled sampler): the lines must break there.
  const t_ms = Array.from({ length: n }, (_, i) => (i < 25 ? i : i + 6) * 100);
  const cum = (rate: number): number[] => t_ms.map((t) => Math.round((t / 1000) * rate));
  const summary: Summary = {
    seed: 7,
    transport: 'ring',
    duration_ms: 4000,
    domains: [
      { name: 'dom0', domid: 0, state: 'running', tot_pages: 100, max_pages: 120 },
      { name: 'guest<1>', domid: 1, state: 'running', tot_pages: 50, max_pages: 50 },
    ],
    ops: { map: 10, revoke: 10, hypercalls: 500, accesses: 100000 },
    revoke_us: { p50: 20, p99: 300, max: 900 },
    ioreq: {
      sent: 40,
      completed: 40,
      abandoned: 0,
      unaccounted: 0,
      faults: 5,
      duplicates_dropped: 0,
      guests_crashed: 0,
      rejected: 0,
      resent: 0,
      rtt_us: { p50: 64, p99: 1024 },
      posted: 12,
      posted_ring_full: 0,
      nemesis: { delayed: 0, duplicated: 0, dropped: 0, reordered: 0, duplicates_skipped: 0 },
    },
    // Counted from when every vCPU ran (series.vcpus_running_ms = 500 on the plots' axis); three close together test label placement.
    faults_injected:
      o.empty === true
        ? []
        : [
            { at_ms: 1000, kind: 'kill-device-model', target: 'dom0', end_ms: 1200 },
            { at_ms: 1050, kind: 'ioreq-delay', target: 'transport', end_ms: 1650 },
            { at_ms: 1100, kind: 'memory-pressure', target: 'dom0', end_ms: 1600 },
          ],
    invariants: { no_use_after_revoke: { checks: 1000, violations: o.empty === true ? 1 : 0 }, frames_conserved: { checks: 10, violations: 0 } },
    frames: { total: 1000, free: 1000, conserved: true },
    threads: { vcpus: 4, distinct: 4 },
    violations: o.empty === true ? [{ invariant: 'no_use_after_revoke', text: 'd1 vCPU 0 read gfn 0x40 after its Revoke <script>' }] : [],
    errors: [],
    events: ['device model of d0 killed; restarted'],
    buggify: [],
    unknown: [],
    verdict: o.empty === true ? 'fail' : 'pass',
  };
  return {
    format: 'xgsim-run',
    version: SAVED_RUN_VERSION,
    command: 'xgsim up examples/synthetic.yaml --report out/',
    replay: o.empty === true ? 'npx xgsim up examples/synthetic.yaml --seed 7 --duration 4000ms' : null,
    summary,
    rtt_hist: rttHist(o.empty === true ? [] : [[40, 3], [70, 9], [150, 14], [300, 6], [700, 2], [1500, 1], [5000, 1]]),
    series:
      o.empty === true
        ? null
        : {
            samples: {
              t_ms,
              free_frames: t_ms.map((t) => 850 - Math.round(t / 100)),
              domains: [
                { name: 'dom0', domid: 0, tot_pages: t_ms.map((t) => 100 + Math.round(t / 200)) },
                { name: 'guest<1>', domid: 1, tot_pages: t_ms.map(() => 50) },
              ],
              ops: { hypercalls: cum(2000), maps: cum(100), revokes: cum(100), steals: cum(20), returns: cum(20), ioreqs_sent: cum(300), ioreq_faults: cum(30), accesses: cum(1e6) },
            },
            revoke: {
              hist: Array.from({ length: 104 }, (_, k) => (k >= 16 && k < 40 ? (k % 7) + 1 : 0)),
              per_octave: 4,
              points: Array.from({ length: 200 }, (_, i) => [i * 20, 10 + ((i * 37) % 500)] as [number, number]),
              count: 200,
              max_per_bin: t_ms.map((_, i) => 400 + ((i * 53) % 500)),
            },
            faults: { bin_ms: 100, counts: t_ms.map((_, i) => (i % 5 === 0 ? i : 0)) },
            injections: [
              { t_ms: 1500, end_t_ms: 1700, label: 'kill-device-model → dom0' },
              { t_ms: 1550, end_t_ms: 2150, label: 'ioreq-delay → transport' },
              { t_ms: 1600, end_t_ms: 2100, label: 'memory-pressure → dom0' },
            ],
            vcpus_running_ms: 500,
            trace: { events_kept: 12345, cap: 300000, dropped_over_cap: 0, dropped_ring_full: 0, truncated_at_ms: null },
          },
  };
}
