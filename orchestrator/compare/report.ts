/**
 * `xgsim compare --report <dir>`: one self-contained HTML page (inline CSS
 * and SVG, nothing fetched) — the comparison table on top, then for every
 * threaded workload the same plots side by side, one column per design.
 * The plots are the run report's (orchestrator/report/html.ts `plots`),
 * drawn from each cell's first seed, so a design's column reads like its
 * own run report. The caller loads the plotting library first
 * (`loadPlots`, orchestrator/report/plot.ts).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CSS, JS, plots, PLOTS } from '../report/html.js';
import type { SavedRun } from '../report/saved-run.js';
import { esc } from '../report/format.js';
import { compareLegend, compareRows, compareTitle, formatCompareTable } from './table.js';
import type { CompareReport } from './types.js';

/** The run report's plots a comparison shows per design (every one of them, in the run report's order). */
export const COMPARED_PLOTS: ReadonlyArray<(typeof PLOTS)[number]> = PLOTS;

/** The key of a cell's saved run. */
export const cellKey = (design: string, workload: string): string => `${design}\u0000${workload}`;

const COMPARE_CSS = `
.cmp-table td,.cmp-table th{white-space:nowrap;font-size:12.5px;padding:2px 6px}
.cmp-table td.safe{color:#2a8a3a;font-weight:600} .cmp-table td.UNSAFE{color:#fff;background:#c62828;font-weight:600} .cmp-table td.unknown{color:#b26b00;font-weight:600}
.scroll{overflow-x:auto}
.side{display:grid;gap:8px;margin:4px 0 16px} .side .col-head{font-weight:600;font-size:13px}
.side svg.plot{width:100%;height:auto}
`;

function tableHtml(r: CompareReport): string {
  const { head, rows } = compareRows(r);
  const safetyCol = head.indexOf('safety');
  const body = rows
    .map((row, i) => {
      const cell = r.cells[i]!;
      return `<tr>${row.map((v, j) => `<td class="${j === safetyCol ? esc(cell.safety) : j > safetyCol + 1 ? 'num' : ''}">${esc(v)}</td>`).join('')}</tr>`;
    })
    .join('\n');
  return `<div class="scroll"><table class="cmp-table"><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>\n${body}</table></div>`;
}

/** One workload's plots: a row per plot, a column per design. */
function sideBySide(r: CompareReport, workload: string, runs: ReadonlyMap<string, SavedRun>): string {
  const designs = [...new Set(r.cells.map((c) => c.design))].filter((d) => runs.has(cellKey(d, workload)));
  if (designs.length === 0) return '<p class="note">no run of this workload was kept</p>';
  const drawn = new Map(designs.map((d) => [d, plots(runs.get(cellKey(d, workload))!)]));
  const cols = `grid-template-columns:repeat(${designs.length},minmax(280px,1fr))`;
  const heads = designs.map((d) => {
    const c = r.cells.find((x) => x.design === d && x.workload === workload)!;
    return `<div class="col-head">${esc(c.buggify.length > 0 ? `${d}*` : d)} — <span class="${c.safety === 'UNSAFE' ? 'bad' : 'ok'}">${esc(c.safety)}</span></div>`;
  });
  const rows = COMPARED_PLOTS.map((p) => designs.map((d) => drawn.get(d)![p]).join('\n'));
  return `<div class="scroll"><div class="side" data-workload="${esc(workload)}" style="${cols}">${heads.join('')}\n${rows.join('\n')}</div></div>`;
}

export function renderComparePage(r: CompareReport, runs: ReadonlyMap<string, SavedRun>, command: string): string {
  const workloads = [...new Set(r.cells.filter((c) => c.workload !== 'refusals' && c.runs > 0).map((c) => c.workload))];
  const unsafe = r.cells.filter((c) => c.buggify.length === 0 && c.safety === 'UNSAFE').length;
  const caught = r.cells.filter((c) => c.buggify.length > 0 && c.safety === 'UNSAFE').length;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>xgsim compare ${esc(r.plan)}</title>
<style>${CSS}${COMPARE_CSS}</style>
<script>${JS}</script>
</head><body>
<h1>xgsim compare ${esc(r.plan)}</h1>
<p class="mono">${esc(command)}</p>
<p>${r.cells.length} cells; designs as shipped found unsafe: <span class="${unsafe > 0 ? 'bad' : 'ok'}">${unsafe}</span>; cells of unsafe variants shown UNSAFE: ${caught} of ${r.cells.filter((c) => c.buggify.length > 0).length}.</p>
<p class="note">${esc(compareTitle(r))}</p>
${tableHtml(r)}
${compareLegend(r).length > 0 ? `<pre class="mono">${esc(compareLegend(r).join('\n'))}</pre>` : ''}
${workloads.map((w) => `<h2>${esc(w)}: the same plots per design (first seed, ${r.seeds[0]})</h2>\n${sideBySide(r, w, runs)}`).join('\n')}
<p class="note">compare.json beside this page has every count; compare.txt the table as text.</p>
</body></html>
`;
}

/** Write dir/index.html, dir/compare.json and dir/compare.txt (the directory must exist). */
export function writeComparePage(dir: string, r: CompareReport, runs: ReadonlyMap<string, SavedRun>, command: string): string {
  const index = join(dir, 'index.html');
  writeFileSync(join(dir, 'compare.json'), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(join(dir, 'compare.txt'), `${formatCompareTable(r)}\n`);
  writeFileSync(index, renderComparePage(r, runs, command));
  return index;
}
