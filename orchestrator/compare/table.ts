/** The comparison table (`xgsim compare`, docs/formats.md §10): its columns, rows, title and legend. */
import type { CompareCell, CompareReport } from './types.js';

const fmtLat = (c: CompareCell): string => (c.revoke_us.max === 0 ? '-' : `${fmtN(c.revoke_us.p50)}/${fmtN(c.revoke_us.p99)}/${fmtN(c.revoke_us.max)}`);
const fmtN = (x: number): string => (Number.isInteger(x) ? String(x) : x >= 10 ? x.toFixed(0) : x.toFixed(1));
/** A cost per revocation (a design's Revoke, a grant unmap, a foreign map's removal: summary.ts Costs). */
const perRevocation = (c: CompareCell, k: string): string => ((c.costs['revocations'] ?? 0) === 0 ? '-' : fmtN((c.costs[k] ?? 0) / c.costs['revocations']!));

/** The table's columns: a header, and a cell's text for a threaded cell (refusal and n/a cells show '-'). */
export const COMPARE_COLUMNS: ReadonlyArray<readonly [string, (c: CompareCell) => string]> = [
  ['revoke µs p50/p99/max', fmtLat],
  ['jobs/s', (c) => (c.duration_ms > 0 ? String(Math.round((((c.costs['workload_ops'] ?? 0) + (c.costs['gpu_commands'] ?? 0)) * 1000) / c.duration_ms)) : '-')],
  ['revocations', (c) => String(c.costs['revocations'] ?? 0)],
  ['p2m removed/rev', (c) => perRevocation(c, 'revoke_p2m_removed')],
  ['shootdowns/rev', (c) => perRevocation(c, 'revoke_shootdowns')],
  ['vCPUs paused/rev', (c) => perRevocation(c, 'revoke_vcpus_paused')],
  ['pause µs/rev (max)', (c) => ((c.costs['revocations'] ?? 0) === 0 ? '-' : `${perRevocation(c, 'revoke_pause_us')} (${c.costs['revoke_pause_max_us'] ?? 0})`)],
  ['splits/rev', (c) => perRevocation(c, 'revoke_splits')],
  ['faults', (c) => String(c.costs['faults_served'] ?? 0)],
  ['fault µs p50/p99', (c) => ((c.costs['faults_served'] ?? 0) === 0 ? '-' : `${c.fault_us.p50}/${c.fault_us.p99}`)],
  ['evictions', (c) => String(c.costs['evictions'] ?? 0)],
  ['evictions refused', (c) => String(c.costs['evictions_refused'] ?? 0)],
  ['end-access refused', (c) => String(c.costs['end_access_refused'] ?? 0)],
  ['reclaim µs p99', (c) => (c.reclaim_us.max === 0 ? '-' : fmtN(c.reclaim_us.p99))],
  ['pinned peak pg', (c) => String(c.costs['pinned_peak_pages'] ?? 0)],
  ['held peak pg', (c) => String(c.costs['shared_peak_pages'] ?? 0)],
  ['grant frames', (c) => String(c.costs['grant_frames'] ?? 0)],
  ['maptrack frames', (c) => String(c.costs['maptrack_frames'] ?? 0)],
  ['grant maps no_space', (c) => String(c.costs['grant_no_space'] ?? 0)],
];

const threadedCellShown = (c: CompareCell): boolean => c.safety !== 'n/a' && c.workload !== 'refusals' && Object.keys(c.costs).length > 0;

/** The table as rows of text: the header, then a row per design × workload. */
export function compareRows(r: CompareReport): { head: string[]; rows: string[][] } {
  const head = ['design', 'workload', 'runs', 'safety', 'failed (violations)', ...COMPARE_COLUMNS.map(([h]) => h)];
  const rows = r.cells.map((c) => {
    const failed = Object.entries(c.failed).map(([k, v]) => `${k}(${v})`).join(' ') || '-';
    const shown = threadedCellShown(c);
    return [c.buggify.length > 0 ? `${c.design}*` : c.design, c.workload, String(c.runs), c.safety === 'n/a' ? `n/a: ${c.note}` : c.safety, failed, ...COMPARE_COLUMNS.map(([, f]) => (shown ? f(c) : '-'))];
  });
  return { head, rows };
}

/** The title line and the unsafe variants' legend. */
export function compareTitle(r: CompareReport): string {
  const how = r.sim_steps !== undefined ? `${r.sim_steps} steps per run in the deterministic simulator (times simulated)` : `${r.duration_ms} ms per threaded run`;
  return `compare ${r.plan}: seeds ${r.seeds.join(', ')}, ${how}; counts summed over seeds, latencies and peaks the worst seed's; refusals: the design's refusal scenarios; jobs: workload operations + GPU commands; rev: revocation (Revoke, reclaim, grant unmap, unpin); held: pages reached by a domain that does not own them`;
}

export function compareLegend(r: CompareReport): string[] {
  const variants = [...new Map(r.cells.filter((c) => c.buggify.length > 0).map((c) => [c.design, c.buggify.join(',')])).entries()].map(([d, b]) => `  ${d}*: XGSIM_BUGGIFY=${b}`);
  return variants.length > 0 ? ['unsafe variants (* above):', ...variants] : [];
}

/** One aligned table, a row per design × workload. */
export function formatCompareTable(r: CompareReport): string {
  const { head, rows } = compareRows(r);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cols: readonly string[]): string => cols.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [compareTitle(r), line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line), ...compareLegend(r)].join('\n');
}
