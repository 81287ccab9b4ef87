/**
 * The campaign's HTML page (issue 17 item 7): one self-contained file,
 * `<campaign dir>/index.html`, written when the campaign starts and again
 * as results arrive (at most once a second), then a last time with the
 * verdict. While the campaign runs the page reloads itself every few
 * seconds (a meta refresh: a file:// page cannot be pushed to), so a
 * browser left open on it follows the campaign; the final page does not.
 *
 * It shows progress (done / running / queued, adding up to the runs),
 * pass/fail per job (one cell per job for campaigns up to JOB_GRID_MAX
 * jobs, per template always), the failing seeds with their replay
 * commands, the Revoke latency percentiles of the merged HdrHistograms
 * (stats.ts) with HdrHistogram's percentile plot, and each host's runs and
 * throughput.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CampaignReport } from '../campaign/report-types.js';
import { histogramTable, percentileCurve, type LatencyHistogram } from '../stats.js';
import { plural } from '../text.js';
import { CSS, JS } from './html.js';
import { esc, fmt, fmtUs } from './format.js';
import { xyPlot } from './plot.js';

/** Above this many jobs the page shows counts per template, not a cell per job. */
export const JOB_GRID_MAX = 5000;
/** How often a page of a running campaign reloads itself. */
export const REFRESH_S = 3;

/** What the page shows besides the report: whether it is still running, and the queue's counts. */
export interface CampaignPageState {
  report: CampaignReport;
  running: boolean;
  /** done + running + queued = runs (campaign.ts makes them add up). */
  progress: { done: number; running: number; queued: number; hosts: number };
  /** One character per job index: '.' no result yet, 'p' pass, 'f' fail, 'e' error, 't' timeout. */
  statuses: string;
  /** The merged Revoke latencies of every real run. */
  hist: LatencyHistogram;
}

const STATUS_NAME: Record<string, string> = { '.': 'no result yet', p: 'pass', f: 'fail', e: 'error', t: 'timeout' };

function headline(st: CampaignPageState): string {
  const r = st.report;
  if (st.running) return '<span class="verdict unknown">RUNNING</span>';
  const word = r.timed_out ? 'TIMED OUT' : r.interrupted ? 'INTERRUPTED' : r.verdict.toUpperCase();
  return `<span class="verdict ${r.verdict}">${esc(r.verdict.toUpperCase())}</span>${word !== r.verdict.toUpperCase() ? ` <span class="verdict unknown">${esc(word)}</span>` : ''}`;
}

function progressHtml(st: CampaignPageState): string {
  const { done, running, queued, hosts } = st.progress;
  const runs = st.report.runs;
  const failed = st.report.fail + st.report.error + st.report.timeout;
  const pct = runs === 0 ? 100 : Math.round((100 * done) / runs);
  return `<p class="progress"><progress max="${runs}" value="${done}"></progress> ${pct} % — <span class="num">${done}</span>/${runs} done (<span class="${failed > 0 ? 'bad' : ''}">${failed} failed</span>), ${running} running, ${queued} queued; ${plural(hosts, 'host')} active</p>`;
}

function jobGrid(st: CampaignPageState): string {
  if (st.statuses.length > JOB_GRID_MAX) return `<p class="note">${st.statuses.length} jobs: too many for a cell each (over ${JOB_GRID_MAX}); see the templates above and the failing seeds below.</p>`;
  const cells = [...st.statuses].map((c, i) => `<span class="job job-${c === '.' ? 'none' : c}" title="job ${i}: ${STATUS_NAME[c] ?? c}"></span>`).join('');
  return `<div class="jobs">${cells}</div><p class="note">one cell per job, in index order: <span class="job job-p"></span> pass <span class="job job-f"></span> fail <span class="job job-e"></span> error <span class="job job-t"></span> timeout <span class="job job-none"></span> no result yet</p>`;
}

function templatesTable(r: CampaignReport): string {
  const rows = Object.entries(r.templates)
    .map(([t, v]) => `<tr><td>${esc(t)}</td><td>${esc(v.kind)}</td><td class="num">${v.runs}</td><td class="num ${v.failed > 0 ? 'bad' : ''}">${v.failed}</td></tr>`)
    .join('');
  return `<table class="templates"><tr><th>template</th><th>kind</th><th>runs done</th><th>failed</th></tr>${rows}</table>`;
}

function failingHtml(r: CampaignReport): string {
  if (r.failing.length === 0) return '<p class="note">none</p>';
  const rows = r.failing
    .slice(0, 200)
    .map((f) => {
      const again = f.replay !== undefined ? `replay: <code>${esc(f.replay)}</code><br>` : '';
      const why = f.violations > 0 ? `${f.violations} violations (${f.failed.join(', ')})` : f.error;
      return `<tr><td class="num">${f.index}</td><td class="num">${f.seed}</td><td>${esc(f.template)}</td><td class="bad">${esc(f.status.toUpperCase())}</td><td>${esc(f.host)}</td><td>${esc(why)}</td><td class="mono">${again}direct: <code>${esc(f.direct)}</code></td></tr>`;
    })
    .join('');
  const more = r.failing.length > 200 ? `<p class="note">… and ${r.failing.length - 200} more in campaign.json</p>` : '';
  return `<table class="failing"><tr><th>job</th><th>seed</th><th>template</th><th>status</th><th>host</th><th>why</th><th>replay / direct command</th></tr>${rows}</table>${more}`;
}

function latencyHtml(st: CampaignPageState): string {
  const table = histogramTable(st.hist);
  if (table.length === 0) return '<p class="note">no Revoke latencies yet (sim jobs\' latencies are simulated time and are left out)</p>';
  const cells = table.map(([k, us]) => `<tr><th>${k}</th><td class="num">${esc(fmtUs(us))}</td></tr>`).join('');
  const c = percentileCurve(st.hist);
  const nine = (v: number): string => (v < 0.5 ? '50%' : `${+(100 * (1 - 10 ** -v)).toPrecision(Math.max(2, Math.ceil(v) + 1))}%`);
  const plot = xyPlot({ name: 'campaign-revoke-percentiles', title: `Revoke latency by percentile: ${st.hist.n} Revokes of every real run`, xLabel: 'percentile', yLabel: 'latency (log)' }, [{ label: 'merged HdrHistogram', xs: c.nines, ys: c.us }], {
    logY: true,
    yTick: fmtUs,
    xTick: nine,
    // Whole nines (p90, p99, p99.9 …) and p50, as HdrHistogram's plots mark them.
    xTicks: [0.3, ...Array.from({ length: Math.floor(c.nines[c.nines.length - 1] ?? 0) }, (_, k) => k + 1)],
  });
  return `<table class="latency"><tr><th colspan="2">${st.hist.n} Revokes, merged HdrHistograms (3 significant digits)</th></tr>${cells}</table><div class="plots">${plot}</div>`;
}

/** A host's runs per minute over its own active time (hostThroughput), and the span it is over. */
export function hostRate(r: CampaignReport, host: string): { per_min: number; over_ms: number } {
  const n = r.hosts[host] ?? 0;
  const a = r.host_activity[host];
  // One result is a span of one job: its elapsed time. A host with no activity recorded falls back to the campaign's wall time.
  const over_ms = Math.max(1, a !== undefined ? Math.max(a.active_ms, a.busy_ms) : r.wall_ms);
  return { per_min: (n / over_ms) * 60_000, over_ms };
}

function hostsTable(r: CampaignReport): string {
  const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
  const rows = Object.entries(r.hosts)
    .sort((a, b) => b[1] - a[1])
    .map(([h, n]) => {
      const a = r.host_activity[h];
      const rate = hostRate(r, h);
      const span = a !== undefined ? `${s(a.first_ms)} – ${s(a.last_ms)}` : 'not recorded';
      const busy = a !== undefined ? `${Math.min(100, Math.round((100 * a.busy_ms) / rate.over_ms))} %` : '';
      return `<tr><td class="mono">${esc(h)}</td><td class="num">${n}</td><td class="num">${esc(span)}</td><td class="num">${s(rate.over_ms)}</td><td class="num">${busy}</td><td class="num">${fmt(rate.per_min)} runs/min</td></tr>`;
    })
    .join('');
  return rows === ''
    ? '<p class="note">no host has returned a result yet</p>'
    : `<table class="hosts"><tr><th>host</th><th>runs</th><th>active (campaign time)</th><th>active for</th><th>busy</th><th>throughput over its active time</th></tr>${rows}</table><p class="note">A host is active from the start of its first job to its last result; busy is the share of that time its jobs ran. The campaign ran ${s(r.wall_ms)}.</p>`;
}

const PAGE_CSS = `.jobs{display:flex;flex-wrap:wrap;gap:2px;max-width:1000px}.job{display:inline-block;width:10px;height:10px;border-radius:2px;background:#ddd}
.job-p{background:#2a8a3a}.job-f{background:#c62828}.job-e{background:#8e24aa}.job-t{background:#b26b00}.job-none{background:#ddd}
progress{width:320px;vertical-align:middle}`;

export function renderCampaignPage(st: CampaignPageState): string {
  const r = st.report;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
${st.running ? `<meta http-equiv="refresh" content="${REFRESH_S}">` : ''}
<title>xgsim campaign ${esc(r.name)}: ${st.running ? 'running' : esc(r.verdict.toUpperCase())}</title>
<style>${CSS}${PAGE_CSS}</style>
<script>${JS}</script>
</head><body data-state="${st.running ? 'running' : 'done'}">
<h1>xgsim campaign ${esc(r.name)} ${headline(st)}</h1>
<p class="mono">${esc(r.campaign)}: ${esc(r.file)}, ${plural(r.runs, 'run')}, seed ${r.seed}, pool ${esc(r.pool)}${r.buggify.length > 0 ? `, BUGGIFY ${esc(r.buggify.join(','))}` : ''}</p>
${st.running ? `<p class="note">running: this page reloads every ${REFRESH_S} s</p>` : ''}
<h2>Progress</h2>
${progressHtml(st)}
<p>pass ${r.pass}, fail ${r.fail}, error ${r.error}, timeout ${r.timeout}${r.missing.length > 0 ? `, <span class="bad">${r.missing.length} never accounted</span>` : ''}; ${r.duplicates_dropped} duplicate results dropped, ${r.reclaimed} reclaimed from hosts that died or gave up</p>
${templatesTable(r)}
<h2>Jobs</h2>
${jobGrid(st)}
<h2>Failing seeds</h2>
${failingHtml(r)}
<h2>Revoke latency</h2>
${latencyHtml(st)}
<h2>Hosts</h2>
${hostsTable(r)}
<h2>Violations</h2>
<p>${r.violations}${Object.keys(r.failed_invariants).length > 0 ? ` (${esc(Object.entries(r.failed_invariants).map(([k, n]) => `${k} in ${plural(n, 'run')}`).join(', '))})` : ''}</p>
<p class="note">xgsim campaign page, written ${esc(new Date().toISOString())}; the figures are in <code>campaign.json</code> beside it when the campaign ends.</p>
</body></html>
`;
}

/** Write dir/index.html whole (a temporary file renamed over it: a reload never sees half a page). */
export function writeCampaignPage(dir: string, st: CampaignPageState): string {
  const index = join(dir, 'index.html');
  const tmp = join(dir, `.index.html.${process.pid}`);
  writeFileSync(tmp, renderCampaignPage(st));
  renameSync(tmp, index);
  return index;
}
