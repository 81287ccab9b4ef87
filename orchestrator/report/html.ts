/**
 * The run report: one self-contained HTML page (inline CSS and SVG, a few
 * lines of inline JS, nothing fetched) with the summary table and the
 * plots, and summary.json beside it to render it again
 * (docs/trace-and-report.md).
 */
import { stagesLine } from '../trace/stages.js';
import { rttBucketRange } from '../../hypervisor/layout/rtt-hist.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SavedRun } from './saved-run.js';
import { esc, fmt, fmtUs } from './format.js';
import { histogramPlot, timeSeriesPlot, type Band, type Bin, type Series } from './plot.js';
import { formatSched } from '../up/summary.js';

/** The plots every report has, by their `data-plot` name. */
export const PLOTS = ['revoke-latency-hist', 'revoke-latency-time', 'ops-rate', 'accesses-rate', 'ioreq-rtt-hist', 'faults-timeline', 'frames'] as const;

/** Bins per octave of the IOREQ round-trip plot. */
const RTT_PER_OCTAVE = 4;

/** Op counters plotted as rates, with their labels. */
const RATE_OPS: ReadonlyArray<[string, string]> = [
  ['hypercalls', 'hypercalls'],
  ['maps', 'Map'],
  ['revokes', 'Revoke'],
  ['steals', 'Steal'],
  ['returns', 'Return'],
  ['ioreqs_sent', 'ioreqs'],
  ['ioreq_faults', 'FAULTs'],
  ['tlb_shootdowns', 'TLB shootdowns'],
  ['p2m_splits', 'superpage splits'],
];

/** Per-interval rates (per second) of a cumulative counter sampled at t_ms. */
export function rates(t_ms: readonly number[], c: readonly number[]): { xs: number[]; ys: number[] } {
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 1; i < t_ms.length; i++) {
    const dt = (t_ms[i]! - t_ms[i - 1]!) / 1000;
    if (dt <= 0) continue;
    xs.push(t_ms[i]!);
    ys.push(Math.max(0, (c[i]! - c[i - 1]!) / dt));
  }
  return { xs, ys };
}

export function plots(run: SavedRun): Record<(typeof PLOTS)[number], string> {
  const s = run.series;
  const t = s?.samples.t_ms ?? [];
  const rev = s?.revoke;
  // Revoke latency histogram: log buckets (per_octave per doubling from 1 µs), first to last non-empty.
  const hist = rev?.hist ?? [];
  const per = rev?.per_octave ?? 4;
  const first = hist.findIndex((c) => c > 0);
  const last = hist.length - 1 - [...hist].reverse().findIndex((c) => c > 0);
  const lo = first < 0 ? 0 : Math.floor(first / per) * per;
  const hi = first < 0 ? 0 : Math.ceil((last + 1) / per) * per;
  const edgeUs = (k: number): number => 2 ** (k / per);
  const revokeBins: Bin[] = hist.slice(lo, hi).map((c, i) => ({ x0: edgeUs(lo + i), x1: edgeUs(lo + i + 1), value: c, label: `${fmtUs(edgeUs(lo + i))}–${fmtUs(edgeUs(lo + i + 1))}` }));

  // Revoke latency over time: the samples kept, and the worst of every Revoke per bin (exact).
  const pts = rev?.points ?? [];
  const bin = s?.faults.bin_ms ?? 100;
  const maxes = rev?.max_per_bin ?? [];
  const worstLine: Series = { label: `worst per ${bin} ms`, xs: maxes.map((_, k) => (k + 0.5) * bin), ys: maxes.map((us) => (us > 0 ? us : Number.NaN)) };

  const ops = s?.samples.ops ?? {};
  const opLines: Series[] = RATE_OPS.filter(([k]) => (ops[k] ?? []).some((v) => v > 0)).map(([k, label]) => ({ label, ...rates(t, ops[k] ?? []) }));
  const acc = rates(t, ops['accesses'] ?? []);

  // IOREQ round trips: the log-linear buckets (layout/rtt-hist.ts, 128 per octave) summed per quarter octave, as the Revoke
  // histogram's, first to last non-empty. A bucket goes to the quarter its lower bound is in (it is under 1 % wide).
  const quarters: number[] = [];
  run.rtt_hist.forEach((c, i) => {
    if (c === 0) return;
    const k = Math.floor(Math.log2(Math.max(1, rttBucketRange(i)[0])) * RTT_PER_OCTAVE + 1e-9);
    quarters[k] = (quarters[k] ?? 0) + c;
  });
  const r0 = quarters.findIndex((c) => c !== undefined && c > 0);
  const qUs = (k: number): number => 2 ** (k / RTT_PER_OCTAVE);
  const rttBins: Bin[] = r0 < 0 ? [] : Array.from({ length: quarters.length - r0 }, (_, i) => ({ x0: qUs(r0 + i), x1: qUs(r0 + i + 1), value: quarters[r0 + i] ?? 0, label: `${fmtUs(qUs(r0 + i))}–${fmtUs(qUs(r0 + i + 1))}` }));

  const frames: Series[] = [
    ...(s?.samples.domains ?? []).map((d) => ({ label: `${d.name} tot_pages`, xs: t, ys: d.tot_pages })),
    { label: 'free frames', xs: t, ys: s?.samples.free_frames ?? [] },
  ];
  const end_ms = Math.max(run.summary.duration_ms, t[t.length - 1] ?? 0);
  const time = { domain: [0, end_ms] as const, bands: bandsOf(run) };
  const c = counted(run);
  return {
    'revoke-latency-hist': histogramPlot(
      { name: 'revoke-latency-hist', title: `Revoke latency: ${rev?.count ?? 0} Revokes timed in the hypervisor`, ...noteOf(c.revokeNote), xLabel: 'latency (log scale)', yLabel: 'Revokes' },
      revokeBins,
      { logX: true, xTick: fmtUs },
    ),
    'revoke-latency-time': timeSeriesPlot({ name: 'revoke-latency-time', title: `Revoke latency over time (${pts.length} of ${rev?.count ?? 0} Revokes shown as points)`, xLabel: 'time (s)', yLabel: 'latency (log)' }, [worstLine], {
      ...time,
      logY: true,
      yTick: fmtUs,
      points: { label: 'each Revoke', t_ms: pts.map(([t_ms]) => t_ms), ys: pts.map(([, us]) => us) },
    }),
    'ops-rate': timeSeriesPlot({ name: 'ops-rate', title: 'Operations per second', note: 'a rate of 0 is a gap (log scale)', xLabel: 'time (s)', yLabel: 'per second (log)' }, opLines, { ...time, logY: true }),
    'accesses-rate': timeSeriesPlot({ name: 'accesses-rate', title: 'Guest memory accesses per second', xLabel: 'time (s)', yLabel: 'accesses/s' }, [{ label: 'accesses', ...acc }], time),
    'ioreq-rtt-hist': histogramPlot({ name: 'ioreq-rtt-hist', title: `IOREQ round trip: ${c.rtt} ioreqs (quarter-octave bins)`, ...noteOf(c.rttNote), xLabel: 'round trip (log scale)', yLabel: 'ioreqs' }, rttBins, { logX: true, xTick: fmtUs }),
    'faults-timeline': timeSeriesPlot({ name: 'faults-timeline', title: `FAULT ioreqs raised: ${c.faults}; injections: ${time.bands.length}`, ...noteOf(c.faultsNote), xLabel: 'time (s)', yLabel: 'FAULTs per bin' }, [], {
      ...time,
      bins: { label: 'FAULT ioreqs per bin', bin_ms: s?.faults.bin_ms ?? 100, counts: s?.faults.counts ?? [] },
      labelBands: true,
    }),
    frames: timeSeriesPlot({ name: 'frames', title: 'Frames per domain, and free', xLabel: 'time (s)', yLabel: 'frames' }, frames, time),
  };
}

const noteOf = (note: string | undefined): { note?: string } => (note !== undefined ? { note } : {});

/** The counts the plots' titles give, and why each differs from the summary's where it does. */
function counted(run: SavedRun): { faults: number; faultsNote?: string; rtt: number; rttNote?: string; revokeNote?: string } {
  const s = run.summary;
  const faults = (run.series?.faults.counts ?? []).reduce((a, b) => a + b, 0);
  const rtt = run.rtt_hist.reduce((a, b) => a + b, 0);
  const revokes = run.series?.revoke.count ?? 0;
  const calls = (s.ops['revoke'] ?? 0) + (s.ops['return'] ?? 0);
  const out: ReturnType<typeof counted> = { faults, rtt };
  // The timeline counts every FAULT the hypervisor raised (ioreq.ts emulateAccess); the summary counts those a vCPU got an answer
  // to — one raised while its vCPU was going away has none. The timeline's count is short only when full rings dropped events.
  if (run.series !== null && faults > s.ioreq.faults) out.faultsNote = `the summary's ${s.ioreq.faults} are those answered; ${faults - s.ioreq.faults} found their vCPU going away`;
  if (run.series !== null && faults < s.ioreq.faults) out.faultsNote = `the summary counts ${s.ioreq.faults}: full trace rings dropped ${s.ioreq.faults - faults}`;
  if (rtt !== s.ioreq.completed) out.rttNote = `the summary's ${s.ioreq.completed} completed ioreqs include ${s.ioreq.completed - rtt} not timed`;
  // Return revokes before it gives the frames back, and a domain's teardown revokes what it still maps.
  if (run.series !== null && revokes !== (s.ops['revoke'] ?? 0)) out.revokeNote = `summary: ${s.ops['revoke'] ?? 0} Revoke + ${s.ops['return'] ?? 0} Return = ${calls} calls; teardowns revoke too, shutdown cuts some`;
  return out;
}

/**
 * The nemesis windows on the plots' time base (ms from the host's start):
 * the host's own mapping when the run has one, else the summary's times
 * shifted by when every vCPU ran (unknown in old saved runs: unshifted).
 */
export function bandsOf(run: SavedRun): Band[] {
  const s = run.series;
  if (s?.injections !== undefined) return s.injections.map((i) => ({ t0_ms: i.t_ms, ...(i.end_t_ms !== undefined ? { t1_ms: i.end_t_ms } : {}), label: i.label }));
  const off = s?.vcpus_running_ms ?? 0;
  return run.summary.faults_injected.map((f) => ({ t0_ms: f.at_ms + off, ...(f.end_ms !== undefined ? { t1_ms: f.end_ms + off } : {}), label: `${f.kind}${f.target !== '' ? ` → ${f.target}` : ''}` }));
}

/** The injections row: on the plots' time base when the run recorded where that is. */
function injectionsRow(run: SavedRun): string {
  const f = run.summary.faults_injected;
  if (f.length === 0) return 'none';
  const off = run.series?.vcpus_running_ms;
  const list = f.map((i) => `${((i.at_ms + (off ?? 0)) / 1000).toFixed(2)} s ${i.kind}${i.target !== '' ? ` → ${i.target}` : ''}`).join('; ');
  const why = off !== undefined ? `s from the host's start, as on the plots; every vCPU had run at ${(off / 1000).toFixed(2)} s, where the text summary's times start` : 's from when every vCPU ran (this saved run does not say where that is on the plots)';
  return `${esc(list)} <span class="note">(${esc(why)})</span>`;
}

export const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1360px;padding:0 16px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600}.verdict.interrupted,.verdict.unknown{background:#b26b00}
.pass{background:#2a8a3a}.fail{background:#c62828}
table{border-collapse:collapse;background:#fff;margin:4px 0}
td,th{border:1px solid #ddd;padding:3px 10px;text-align:left;vertical-align:top} th{background:#f0f0f0;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#c62828;font-weight:600}.ok{color:#2a8a3a}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:16px}
svg.plot{background:#fff;border:1px solid #ddd;border-radius:4px;max-width:100%;height:auto}
svg.render-error .title{font-size:13px;font-weight:600;fill:#222} svg .render-error-text{fill:#c62828;font-size:13px}
.replay{background:#fff3f3;border:1px solid #f0c0c0;padding:8px;border-radius:4px}
ul.log{margin:4px 0;padding-left:20px} .note{color:#666}
`;

// A JS error while the page loads is shown on the page (the headless test reads the DOM);
// then each plot is tagged with how many marks it drew.
export const JS = `
window.addEventListener('error',function(e){var d=document.createElement('div');d.className='render-error';d.textContent='render error: '+(e.message||'script error');document.body.appendChild(d);});
document.addEventListener('DOMContentLoaded',function(){document.querySelectorAll('svg[data-plot]').forEach(function(s){s.setAttribute('data-marks',String(s.querySelectorAll('.mark').length));});document.body.setAttribute('data-ready','1');});
`;

function row(k: string, v: string, cls = ''): string {
  return `<tr><th>${esc(k)}</th><td class="${cls}">${v}</td></tr>`;
}

export function renderReport(run: SavedRun): string {
  const s = run.summary;
  const p = plots(run);
  const inv = Object.entries(s.invariants)
    .map(([k, v]) => `<tr><td class="mono">${esc(k)}</td><td class="num">${v.checks}</td><td class="num ${v.violations > 0 ? 'bad' : ''}">${v.violations}</td><td class="${v.violations > 0 ? 'bad' : 'ok'}">${v.violations > 0 ? 'FAIL' : 'ok'}</td></tr>`)
    .join('');
  const ops = Object.entries(s.ops)
    .filter(([, v]) => v !== 0)
    .map(([k, v]) => `<tr><td class="mono">${esc(k)}</td><td class="num">${v}</td></tr>`)
    .join('');
  const doms = s.domains.map((d) => `<tr><td>${esc(d.name)}</td><td class="num">d${d.domid}</td><td>${esc(d.state)}</td><td class="num">${d.tot_pages}/${d.max_pages}</td></tr>`).join('');
  const list = (xs: readonly string[], cls = ''): string => (xs.length === 0 ? '<p class="note">none</p>' : `<ul class="log ${cls}">${xs.slice(0, 50).map((x) => `<li class="mono">${esc(x)}</li>`).join('')}${xs.length > 50 ? `<li class="note">… ${xs.length - 50} more</li>` : ''}</ul>`);
  const tr = run.series?.trace;
  const traceNote =
    tr === undefined
      ? 'no timeline in this run'
      : tr.cap === 0
        ? `${tr.dropped_over_cap} timeline events counted into the plots (no trace file asked for)${tr.dropped_ring_full > 0 ? `; ${tr.dropped_ring_full} dropped by full rings` : ''}`
        : `${tr.events_kept} timeline events kept (cap ${tr.cap})${tr.dropped_over_cap > 0 ? `, ${tr.dropped_over_cap} over the cap (timeline cut at ${(tr.truncated_at_ms! / 1000).toFixed(2)} s)` : ''}${tr.dropped_ring_full > 0 ? `, ${tr.dropped_ring_full} dropped by full rings` : ''}; the plots count every event`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>xgsim run: ${esc(s.verdict.toUpperCase())}, seed ${s.seed}</title>
<style>${CSS}</style>
<script>${JS}</script>
</head><body>
<h1>xgsim run <span class="verdict ${s.verdict}">${esc(s.verdict.toUpperCase())}</span></h1>
<p class="mono">${esc(run.command)}</p>
${run.replay !== null ? `<p class="replay">replay: <code>${esc(run.replay)}</code></p>` : ''}
<h2>Summary</h2>
<table class="summary">
${row('verdict', `<span class="verdict ${s.verdict}">${esc(s.verdict.toUpperCase())}</span>`)}
${row('seed', String(s.seed), 'num')}
${row('transport', esc(s.transport))}
${row('duration', `${(s.duration_ms / 1000).toFixed(2)} s`)}
${row('BUGGIFY', s.buggify.length > 0 ? esc(s.buggify.join(', ')) : 'none')}
${row('frames', `${s.frames.free}/${s.frames.total} free after shutdown, conserved: ${s.frames.conserved}`, s.frames.conserved && s.frames.free === s.frames.total ? '' : 'bad')}
${row('Revoke latency', s.revoke_us.max > 0 ? `p50 ${fmtUs(s.revoke_us.p50)}, p99 ${fmtUs(s.revoke_us.p99)}, max ${fmtUs(s.revoke_us.max)} (guest-measured)` : 'no guest-measured samples')}
${row('scheduler', s.sched !== undefined ? esc(formatSched(s.sched).replace(/^scheduler: /, '')) : 'not recorded (a run saved before the pCPU scheduler)')}
${row('IOREQ', `${s.ioreq.sent} sent, ${s.ioreq.completed} completed, ${s.ioreq.faults} FAULTs, ${s.ioreq.duplicates_dropped} duplicates dropped; RTT p50 ${fmtUs(s.ioreq.rtt_us.p50)}, p99 ${fmtUs(s.ioreq.rtt_us.p99)}`)}${run.series?.ioreq_stages !== undefined ? row('IOREQ by stage', stagesLine(run.series.ioreq_stages)) : ''}
${row('injections', injectionsRow(run))}
${row('timeline', esc(traceNote))}
</table>
<h2>Invariants</h2>
<table class="invariants"><tr><th>invariant</th><th>checks</th><th>violations</th><th></th></tr>${inv}</table>
<h2>Plots</h2>
<div class="plots">
${Object.values(p).join('\n')}
</div>
<h2>Domains</h2>
<table><tr><th>domain</th><th>domid</th><th>state at the end</th><th>pages</th></tr>${doms}</table>
<h2>Operations</h2>
<table><tr><th>op</th><th>count</th></tr>${ops}</table>
<h2>Violations</h2>${list(s.violations.map((v) => `[${v.invariant}] ${v.text}`), 'violations')}
<h2>Events</h2>${list(s.events)}
<h2>Errors</h2>${list(s.errors.map((e) => e.split('\n')[0] ?? e))}
<p class="note">xgsim report, ${esc(fmt(s.duration_ms))} ms run. Re-render: <code>xgsim report summary.json &lt;dir&gt;</code></p>
</body></html>
`;
}

/** Write dir/index.html and dir/summary.json (the directory must exist and be writable). */
export function writeReport(dir: string, run: SavedRun): { index: string; summary: string } {
  const index = join(dir, 'index.html');
  const summary = join(dir, 'summary.json');
  writeFileSync(summary, `${JSON.stringify(run)}\n`);
  writeFileSync(index, renderReport(run));
  return { index, summary };
}
