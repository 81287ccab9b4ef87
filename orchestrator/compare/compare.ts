/**
 * `xgsim compare <plan.yaml>` (issue 15, docs/designs.md): every design ×
 * workload of a plan, with the same seeds, on real threads (the host of
 * `xgsim up`, orchestrator/up/up.ts runHost) — or, for the `refusals`
 * workload, the design's refusal scenarios as `xgsim scenario` runs them —
 * and one table: safety (every invariant, the isolation oracle, the
 * scenarios' expectations), Revoke latency, throughput and the costs the
 * run summary counts.
 *
 * Figures over seeds: counts are summed; each latency column is the worst
 * (largest) of the seeds' own percentiles, so a cell never looks better
 * than its worst seed.
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DESIGN_NEUTRAL_WORKLOADS, parseTopology } from '../config/topology.js';
import { loadComparePlan, type CompareDesign, type ComparePlan, type CompareWorkload } from '../config/compare.js';
import { bugNames, parseBuggify, unionBugs, type BugSet } from '../../hypervisor/xen/buggify.js';
import { DEFAULT_DESIGN } from '../../hypervisor/xen/design.js';
import { PROJECT_ROOT } from '../../hypervisor/host/worker-path.js';
import { hostSpecOf } from '../up/host-spec.js';
import { pcpusOf } from '../up/run-flags.js';
import { summarize, type Summary } from '../up/summary.js';
import { runHost } from '../up/up.js';
import { scenarioCommand } from '../scenario/command.js';

export interface CompareOptions {
  json?: boolean;
  report?: string;
  /** XGSIM_BUGGIFY's bits, applied to every cell on top of a variant's own. */
  buggify: BugSet;
  quiet?: boolean;
}

export type Safety = 'safe' | 'UNSAFE' | 'unknown' | 'n/a';

export interface CompareCell {
  /** The plan's name for the design (a variant's own name). */
  design: string;
  /** The registered design it runs (docs/designs.md). */
  base_design: string;
  workload: string;
  buggify: string[];
  safety: Safety;
  /** Threaded runs (one per seed), or refusal scenarios run. */
  runs: number;
  /** Invariants (or scenarios) that failed, with their violation counts. */
  failed: Record<string, number>;
  violations: number;
  revoke_us: { p50: number; p99: number; max: number };
  duration_ms: number;
  costs: Record<string, number>;
  /** Why a cell was not run (n/a), or what went wrong. */
  note: string;
}

export interface CompareReport {
  plan: string;
  seeds: readonly number[];
  duration_ms: number;
  cells: CompareCell[];
}

/** The costs a cell sums from its runs' summaries (orchestrator/up/summary.ts `ops`). */
export const COST_KEYS = ['workload_ops', 'gpu_commands', 'svm_jobs_checked', 'map', 'revoke', 'tlb_shootdown', 'p2m_split', 'grant_map', 'foreign_map', 'evictions', 'fault', 'guest_faults', 'hypercall_errors'] as const;

/**
 * The primitives' refusal scenarios: they predate the design-* names
 * (tests/scenarios.test.ts), so the ones that catch the primitives' unsafe
 * variants are named here.
 */
const PRIMITIVES_REFUSALS = ['map-ram-roundtrip', 'lifecycle-destroy-backend-with-maps', 'interact-bar-vs-ram', 'revoke-nested-only', 'fidelity-revoke-rights-until-flushed'];

export async function compare(file: string, o: CompareOptions): Promise<{ exitCode: number; report: CompareReport }> {
  const plan = loadComparePlan(file);
  const cells: CompareCell[] = [];
  const say = (s: string): void => {
    if (o.quiet !== true && o.json !== true) process.stderr.write(`${s}\n`);
  };
  say(`xgsim compare ${file}: ${plan.designs.length} designs × ${plan.workloads.length} workloads, seeds ${plan.seeds.join(', ')}, ${plan.duration_ms} ms per threaded run`);
  for (const d of plan.designs) {
    for (const w of plan.workloads) {
      const bits = unionBugs(o.buggify, parseBuggify(d.buggify.join(',')));
      const cell = w.kind === 'refusals' ? await refusalsCell(d, w, bits) : await threadedCell(plan, d, w, bits);
      say(`  ${d.name} × ${w.name}: ${cell.safety}${cell.note !== '' ? ` (${cell.note})` : ''}`);
      cells.push(cell);
    }
  }
  const report: CompareReport = { plan: plan.name, seeds: plan.seeds, duration_ms: plan.duration_ms, cells };
  const table = formatCompareTable(report);
  if (o.json === true) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else process.stdout.write(`${table}\n`);
  if (o.report !== undefined) {
    mkdirSync(o.report, { recursive: true });
    writeFileSync(join(o.report, 'compare.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(o.report, 'compare.txt'), `${table}\n`);
  }
  // A design as shipped (no bug switched on) that comes out unsafe is a finding; an unsafe variant being unsafe is the point.
  const bad = cells.some((c) => c.buggify.length === 0 && (c.safety === 'UNSAFE' || c.safety === 'unknown'));
  return { exitCode: bad ? 1 : 0, report };
}

function emptyCell(d: CompareDesign, w: CompareWorkload, bits: BugSet): CompareCell {
  return { design: d.name, base_design: d.design, workload: w.name, buggify: bugNames(bits), safety: 'n/a', runs: 0, failed: {}, violations: 0, revoke_us: { p50: 0, p99: 0, max: 0 }, duration_ms: 0, costs: {}, note: '' };
}

/** The topology a threaded cell runs: dom0 (with a virtio-gpu for the GPU kinds) and `guests` frontends running the workload. */
export function cellTopology(design: string, w: CompareWorkload): string {
  const gpu = w.kind !== 'idle' && w.kind !== 'grant-ping';
  const work = w.kind === 'grant-ping' ? '{ kind: grant-ping, pages: 2 }' : w.kind === 'adversary' ? '{ kind: adversary }' : `{ kind: ${w.kind}${gpu ? ', buffers: 4, buffer_pages: 4' : ''} }`;
  const dom0 = gpu ? '  - { name: dom0, role: backend, memory: 8MiB, max_memory: 12MiB, vcpus: 2, devices: [{ kind: virtio-gpu, name: gpu0, bar: 2MiB }] }' : '  - { name: dom0, vcpus: 1 }';
  const guests = Array.from({ length: w.guests }, (_, i) => `  - { name: g${i + 1}, role: frontend, backend: dom0, memory: 2MiB, vcpus: 1, workload: ${work} }`);
  return [`name: compare-${design}-${w.name}`, `design: ${design}`, 'host: { frames: 8192 }', 'domains:', dom0, ...guests, ''].join('\n');
}

async function threadedCell(plan: ComparePlan, d: CompareDesign, w: CompareWorkload, bits: BugSet): Promise<CompareCell> {
  const cell = emptyCell(d, w, bits);
  if (d.design !== DEFAULT_DESIGN && !(DESIGN_NEUTRAL_WORKLOADS as readonly string[]).includes(w.kind)) {
    cell.note = `no ${d.design} adapter for ${w.kind} yet`;
    return cell;
  }
  if (w.kind === 'grant-ping' && w.guests < 2) {
    cell.note = 'grant-ping needs 2 guests';
    return cell;
  }
  const topo = parseTopology(cellTopology(d.design, w), `compare:${d.name}×${w.name}`);
  const pcpus = pcpusOf(plan.pcpus ?? topo.host.pcpus);
  const sums: Summary[] = [];
  for (const seed of plan.seeds) {
    const spec = { ...hostSpecOf(topo, { seed, checking: true, buggify: bits, check_interval_ms: 100, pcpus }), transport: { kind: 'ring' as const } };
    sums.push(summarize(await runHost(spec, plan.duration_ms, { quiet: true }), { seed, transport: 'ring', buggify: cell.buggify }));
  }
  return foldRuns(cell, sums);
}

function foldRuns(cell: CompareCell, sums: readonly Summary[]): CompareCell {
  cell.runs = sums.length;
  for (const s of sums) {
    for (const [k, v] of Object.entries(s.invariants)) if (v.violations > 0) cell.failed[k] = (cell.failed[k] ?? 0) + v.violations;
    cell.violations += Object.values(s.invariants).reduce((a, v) => a + v.violations, 0);
    if (s.errors.length > 0) cell.failed['errors'] = (cell.failed['errors'] ?? 0) + s.errors.length;
    if (!s.frames.conserved || s.frames.free !== s.frames.total) cell.failed['frames'] = (cell.failed['frames'] ?? 0) + 1;
    cell.revoke_us = { p50: Math.max(cell.revoke_us.p50, s.revoke_us.p50), p99: Math.max(cell.revoke_us.p99, s.revoke_us.p99), max: Math.max(cell.revoke_us.max, s.revoke_us.max) };
    cell.duration_ms += s.duration_ms;
    for (const k of COST_KEYS) cell.costs[k] = (cell.costs[k] ?? 0) + (s.ops[k] ?? 0);
  }
  const verdicts = sums.map((s) => s.verdict);
  cell.safety = verdicts.includes('fail') ? 'UNSAFE' : verdicts.every((v) => v === 'pass') ? 'safe' : 'unknown';
  if (cell.safety === 'UNSAFE' && Object.keys(cell.failed).length === 0) cell.failed['workload_checks'] = sums.reduce((a, s) => a + (s.ops['workload_check_fails'] ?? 0), 0);
  return cell;
}

/** The refusal scenarios of a design: examples/scenarios/design-<design>-*.yaml (the primitives': PRIMITIVES_REFUSALS). */
export function refusalFiles(design: string): string[] {
  const dir = join(PROJECT_ROOT, 'examples', 'scenarios');
  const names = design === DEFAULT_DESIGN ? PRIMITIVES_REFUSALS.map((n) => `${n}.yaml`) : readdirSync(dir).filter((f) => f.startsWith(`design-${design}-`) && f.endsWith('.yaml'));
  return names.sort().map((f) => join(dir, f));
}

async function refusalsCell(d: CompareDesign, w: CompareWorkload, bits: BugSet): Promise<CompareCell> {
  const cell = emptyCell(d, w, bits);
  const files = refusalFiles(d.design);
  if (files.length === 0) {
    cell.note = `no refusal scenarios for ${d.design}`;
    return cell;
  }
  const t0 = Date.now();
  const { results } = await scenarioCommand(files, { buggify: bits, quiet: true });
  cell.duration_ms = Date.now() - t0;
  cell.runs = results.length;
  for (const r of results) if (r.verdict !== 'SUCCESS') cell.failed[r.name] = 1;
  cell.violations = Object.keys(cell.failed).length;
  cell.safety = results.every((r) => r.verdict === 'SUCCESS') ? 'safe' : results.some((r) => r.verdict === 'FAILURE') ? 'UNSAFE' : 'unknown';
  return cell;
}

const fmtLat = (c: CompareCell): string => (c.revoke_us.max === 0 ? '-' : `${c.revoke_us.p50}/${c.revoke_us.p99}/${c.revoke_us.max}`);
const perRevoke = (c: CompareCell, k: string): string => ((c.costs['revoke'] ?? 0) === 0 ? '-' : ((c.costs[k] ?? 0) / c.costs['revoke']!).toFixed(1));

/** One aligned table, a row per design × workload. */
export function formatCompareTable(r: CompareReport): string {
  const head = ['design', 'workload', 'runs', 'safety', 'failed (violations)', 'revoke µs p50/p99/max', 'jobs/s', 'revokes', 'shootdowns/revoke', 'p2m splits', 'maps', 'grant maps', 'foreign maps', 'evictions', 'faults'];
  const rows = r.cells.map((c) => {
    const failed = Object.entries(c.failed).map(([k, v]) => `${k}(${v})`).join(' ') || '-';
    const threaded = c.safety !== 'n/a' && c.workload !== 'refusals' && Object.keys(c.costs).length > 0;
    const n = (k: string): string => (threaded ? String(c.costs[k] ?? 0) : '-');
    const jobs = (c.costs['workload_ops'] ?? 0) + (c.costs['gpu_commands'] ?? 0);
    const rate = threaded && c.duration_ms > 0 ? Math.round((jobs * 1000) / c.duration_ms).toString() : '-';
    return [c.buggify.length > 0 ? `${c.design}*` : c.design, c.workload, String(c.runs), c.safety === 'n/a' ? `n/a: ${c.note}` : c.safety, failed, threaded ? fmtLat(c) : '-', rate, n('revoke'), threaded ? perRevoke(c, 'tlb_shootdown') : '-', n('p2m_split'), n('map'), n('grant_map'), n('foreign_map'), n('evictions'), n('fault')];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cols: readonly string[]): string => cols.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const title = `compare ${r.plan}: seeds ${r.seeds.join(', ')}, ${r.duration_ms} ms per threaded run; counts summed over seeds, latencies the worst seed's; refusals: the design's refusal scenarios; jobs: workload operations + GPU commands`;
  const variants = [...new Map(r.cells.filter((c) => c.buggify.length > 0).map((c) => [c.design, c.buggify.join(',')])).entries()].map(([d, b]) => `  ${d}*: XGSIM_BUGGIFY=${b}`);
  return [title, line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line), ...(variants.length > 0 ? ['unsafe variants (* above):', ...variants] : [])].join('\n');
}
