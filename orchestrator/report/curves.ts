/**
 * The cost curves of `xgsim bench --curves` as one self-contained HTML page
 * (`--report <dir>`): a line plot per curve — Revoke latency p50/p99 against
 * hammering vCPUs or pages per Revoke, boot time against domains, ring
 * IOREQ throughput against server pairs — and curves.json beside it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Curve, CurvePoint } from '../bench/curves.js';
import { CSS, JS } from './html.js';
import { esc, fmt, fmtUs } from './format.js';
import { xyPlot, type Series } from './plot.js';

function line(label: string, c: Curve, y: (p: CurvePoint) => number | undefined): Series {
  return { label, xs: c.points.map((p) => p.x), ys: c.points.map((p) => y(p) ?? Number.NaN) };
}

/** One plot of a curve, by what it measures. */
export function curvePlot(c: Curve): string {
  // The full descriptions of x and y are under the plots; the title is short enough to fit.
  const shell = { name: `curve-${c.name}`, title: `${c.name}${c.pcpus > 0 ? ` (${c.pcpus} pCPUs)` : ''}`, xLabel: c.x.split(' (')[0] ?? c.x, yLabel: c.y };
  const xTick = (v: number): string => fmt(v);
  switch (c.kind) {
    case 'revoke':
      return xyPlot({ ...shell, yLabel: 'Revoke latency' }, [line('p50', c, (p) => p.p50_us), line('p99', c, (p) => p.p99_us), line('max', c, (p) => p.max_us)], { logY: true, yTick: fmtUs, xTick });
    case 'boot':
      return xyPlot({ ...shell, yLabel: 'seconds' }, [line('boot, wall', c, (p) => (p.boot_ms === undefined ? undefined : p.boot_ms / 1000)), line('boot, CPU of all threads', c, (p) => (p.boot_cpu_ms === undefined ? undefined : p.boot_cpu_ms / 1000))], { xTick });
    case 'ioreq':
      return xyPlot({ ...shell, yLabel: 'ioreqs/s' }, [line('ioreqs/s', c, (p) => p.ioreqs_per_s)], { xTick });
  }
}

export function renderCurves(curves: readonly Curve[], command: string): string {
  const rows = curves
    .flatMap((c) => c.points.map((p) => `<tr><td>${esc(c.name)}</td><td class="num">${p.x}</td><td class="num">${p.n}</td><td class="mono">${esc(summaryOf(c, p))}</td><td class="${p.problems.length > 0 ? 'bad' : ''}">${esc(p.problems.join('; '))}</td></tr>`))
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>xgsim bench: cost curves</title>
<style>${CSS}</style>
<script>${JS}</script>
</head><body>
<h1>xgsim bench: cost curves</h1>
<p class="mono">${esc(command)}</p>
<h2>Plots</h2>
<div class="plots">
${curves.map((c) => curvePlot(c)).join('\n')}
</div>
<h2>Points</h2>
<table><tr><th>curve</th><th>x</th><th>samples</th><th>figures</th><th>problems</th></tr>${rows}</table>
<p class="note">${curves.map((c) => `${esc(c.name)}: ${esc(c.y)} against ${esc(c.x)}; held: ${esc(c.held)}`).join('<br>')}</p>
</body></html>
`;
}

function summaryOf(c: Curve, p: CurvePoint): string {
  if (c.kind === 'revoke') return `p50 ${fmtUs(p.p50_us ?? 0)}, p99 ${fmtUs(p.p99_us ?? 0)}, ${fmt(p.revokes_per_s ?? 0)} Revokes/s`;
  if (c.kind === 'boot') return `boot ${((p.boot_ms ?? 0) / 1000).toFixed(2)} s, CPU ${((p.boot_cpu_ms ?? 0) / 1000).toFixed(2)} s${p.rss_mib !== undefined ? `, +${fmt(p.rss_mib)} MiB` : ''}`;
  return `${fmt(p.ioreqs_per_s ?? 0)} ioreqs/s`;
}

/** Write dir/index.html and dir/curves.json (the directory must exist and be writable). */
export function writeCurvesReport(dir: string, curves: readonly Curve[], command: string): string {
  writeFileSync(join(dir, 'curves.json'), `${JSON.stringify(curves, null, 2)}\n`);
  const index = join(dir, 'index.html');
  writeFileSync(index, renderCurves(curves, command));
  return index;
}
