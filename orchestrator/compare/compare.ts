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
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseTopology } from '../config/topology.js';
import { loadComparePlan, type CompareDesign, type ComparePlan, type CompareWorkload } from '../config/compare.js';
import { bugNames, parseBuggify, unionBugs, type BugSet } from '../../hypervisor/xen/buggify.js';
import { DEFAULT_DESIGN } from '../../hypervisor/xen/design.js';
import { PROJECT_ROOT } from '../../hypervisor/host/worker-path.js';
import { hostSpecOf } from '../up/host-spec.js';
import { pcpusOf } from '../up/run-flags.js';
import { summarize, type Summary } from '../up/summary.js';
import { runHost } from '../up/up.js';
import { runSim } from '../../hypervisor/host/sim/run.js';
import { scenarioCommand } from '../scenario/command.js';
import { DESIGN_ATTACKS } from '../../domains/gpu/protocol.js';
import { formatCompareTable } from './table.js';
import { cellKey, writeComparePage } from './report.js';
import { loadPlots } from '../report/plot.js';
import { commandLine, savedRunOf } from '../up/outputs.js';
import type { SavedRun } from '../report/saved-run.js';
import { UsageError } from '../errors.js';
import type { CompareCell, CompareReport } from './types.js';

export type { CompareCell, CompareReport, Safety } from './types.js';
export { COMPARE_COLUMNS, compareLegend, compareRows, compareTitle, formatCompareTable } from './table.js';

export interface CompareOptions {
  json?: boolean;
  report?: string;
  /** XGSIM_BUGGIFY's bits, applied to every cell on top of a variant's own. */
  buggify: BugSet;
  /**
   * Run each threaded cell in the deterministic simulator instead (`--sim`):
   * this many scheduling decisions per seed, no chaos, no liveness tail, the
   * topology's full mix. The same plan and seed give the same table.
   */
  sim_steps?: number;
  quiet?: boolean;
}

/** The counts a cell sums from its runs' summaries (orchestrator/up/summary.ts `ops`). */
export const COST_KEYS = ['workload_ops', 'gpu_commands', 'blobs_checked', 'svm_jobs_checked', 'attacks_refused', 'map', 'revoke', 'tlb_shootdown', 'p2m_split', 'grant_map', 'foreign_map', 'evictions', 'fault', 'zero_pages', 'guest_faults', 'hypercall_errors'] as const;
/** …and from their `costs` (counted by the hypervisor, summary.ts Costs): sums. */
export const SUMMED_COSTS = ['revocations', 'revoke_p2m_removed', 'revoke_shootdowns', 'revoke_vcpus_paused', 'revoke_pause_us', 'revoke_splits', 'p2m_removed', 'faults_served', 'evictions_refused', 'end_access_refused', 'grant_no_space'] as const;
/** …maxima over seeds. */
export const PEAK_KEYS = ['revoke_pause_max_us', 'pinned_peak_pages', 'shared_peak_pages', 'grant_ref_peak', 'grant_frames', 'maptrack_peak', 'maptrack_frames'] as const;

/**
 * The primitives' refusal scenarios: they predate the design-* names
 * (tests/scenarios.test.ts), so the ones that catch the primitives' unsafe
 * variants are named here.
 */
const PRIMITIVES_REFUSALS = ['map-ram-roundtrip', 'lifecycle-destroy-backend-with-maps', 'interact-bar-vs-ram', 'revoke-nested-only', 'fidelity-revoke-rights-until-flushed'];

export async function compare(file: string, o: CompareOptions): Promise<{ exitCode: number; report: CompareReport }> {
  const plan = loadComparePlan(file);
  if (o.report !== undefined) {
    try {
      mkdirSync(o.report, { recursive: true });
    } catch (e) {
      throw new UsageError(`--report ${o.report}: cannot create the directory (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  const cells: CompareCell[] = [];
  // With --report: each threaded cell's first seed, kept with its timeline's aggregates for the plots.
  const runs = new Map<string, SavedRun>();
  const keep = o.report !== undefined ? (d: CompareDesign, w: CompareWorkload, run: SavedRun): void => void runs.set(cellKey(d.name, w.name), run) : undefined;
  const say = (s: string): void => {
    if (o.quiet !== true && o.json !== true) process.stderr.write(`${s}\n`);
  };
  const how = o.sim_steps !== undefined ? `${o.sim_steps} simulated steps per run (deterministic simulator)` : `${plan.duration_ms} ms per threaded run`;
  say(`xgsim compare ${file}: ${plan.designs.length} designs × ${plan.workloads.length} workloads, seeds ${plan.seeds.join(', ')}, ${how}`);
  for (const d of plan.designs) {
    for (const w of plan.workloads) {
      const bits = unionBugs(o.buggify, parseBuggify(d.buggify.join(',')));
      const cell = w.kind === 'refusals' ? await refusalsCell(d, w, bits) : o.sim_steps !== undefined ? await simCell(plan, d, w, bits, o.sim_steps, keep) : await threadedCell(plan, d, w, bits, keep);
      say(`  ${d.name} × ${w.name}: ${cell.safety}${cell.note !== '' ? ` (${cell.note})` : ''}`);
      cells.push(cell);
    }
  }
  const report: CompareReport = { plan: plan.name, seeds: plan.seeds, duration_ms: plan.duration_ms, ...(o.sim_steps !== undefined ? { sim_steps: o.sim_steps } : {}), cells };
  const table = formatCompareTable(report);
  if (o.json === true) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else process.stdout.write(`${table}\n`);
  if (o.report !== undefined) {
    // The plotting library is loaded only when a page is drawn (orchestrator/report/plot.ts).
    await loadPlots();
    const index = writeComparePage(o.report, report, runs, commandLine());
    say(`report: ${index}`);
  }
  // A design as shipped (no bug switched on) that comes out unsafe is a finding; an unsafe variant being unsafe is the point.
  const bad = cells.some((c) => c.buggify.length === 0 && (c.safety === 'UNSAFE' || c.safety === 'unknown'));
  return { exitCode: bad ? 1 : 0, report };
}

function emptyCell(d: CompareDesign, w: CompareWorkload, bits: BugSet): CompareCell {
  return {
    design: d.name, base_design: d.design, workload: w.name, buggify: bugNames(bits), safety: 'n/a', runs: 0, failed: {}, violations: 0,
    revoke_us: { p50: 0, p99: 0, max: 0 }, fault_us: { p50: 0, p99: 0 }, reclaim_us: { p50: 0, p99: 0, max: 0 }, duration_ms: 0, costs: {}, note: '',
  };
}

/**
 * The topology a threaded cell runs: dom0 (with a virtio-gpu for the GPU
 * kinds, its MMU notifier evicting at the workload's rate) and `guests`
 * frontends running the workload — under `pressure`, alternately render
 * and compute-svm.
 */
export function cellTopology(d: Pick<CompareDesign, 'design' | 'missing_page'>, w: CompareWorkload): string {
  const design = d.design;
  const gpu = w.kind !== 'idle' && w.kind !== 'grant-ping';
  const kindOf = (i: number): string => (w.kind === 'pressure' ? (i % 2 === 0 ? 'render' : 'compute-svm') : w.kind);
  // The adversary plays the design's attacks (domains/gpu/protocol.ts), never die-while-mapped: a dead guest loads nothing.
  const attacks = `[${(DESIGN_ATTACKS[design] ?? []).join(', ')}]`;
  const sizes = `, buffers: ${w.buffers}, buffer_pages: ${w.buffer_pages}${w.resident ? ', resident: true' : ''}`;
  const work = (k: string): string => (k === 'grant-ping' ? '{ kind: grant-ping, pages: 2 }' : k === 'adversary' ? `{ kind: adversary, attacks: ${attacks} }` : `{ kind: ${k}${gpu ? sizes : ''} }`);
  const maptrack = w.dom0_max_maptrack_frames !== undefined ? `, max_maptrack_frames: ${w.dom0_max_maptrack_frames}` : '';
  const dom0 = gpu ? `  - { name: dom0, role: backend, memory: 8MiB, max_memory: 12MiB, vcpus: 2${maptrack}, devices: [{ kind: virtio-gpu, name: gpu0, bar: 2MiB, evictions_per_s: ${w.evictions_per_s}${d.missing_page !== undefined ? `, missing_page: ${d.missing_page}` : ''} }] }` : `  - { name: dom0, vcpus: 1${maptrack} }`;
  const guests = Array.from({ length: w.guests }, (_, i) => `  - { name: g${i + 1}, role: frontend, backend: dom0, memory: 2MiB, vcpus: 1, workload: ${work(kindOf(i))} }`);
  return [`name: compare-${design}-${w.name}`, `design: ${design}`, 'host: { frames: 8192 }', 'domains:', dom0, ...guests, ''].join('\n');
}

async function threadedCell(plan: ComparePlan, d: CompareDesign, w: CompareWorkload, bits: BugSet, keep?: (d: CompareDesign, w: CompareWorkload, run: SavedRun) => void): Promise<CompareCell> {
  const cell = emptyCell(d, w, bits);
  if (w.kind === 'grant-ping' && w.guests < 2) {
    cell.note = 'grant-ping needs 2 guests';
    return cell;
  }
  const topo = parseTopology(cellTopology(d, w), `compare:${d.name}×${w.name}`);
  const pcpus = pcpusOf(plan.pcpus ?? topo.host.pcpus);
  const sums: Summary[] = [];
  for (const seed of plan.seeds) {
    const first = keep !== undefined && sums.length === 0;
    // The first seed's timeline, aggregates only (no events kept), for the report's plots.
    const timeline = first ? { trace: true, trace_max_events: 0 } : {};
    const spec = { ...hostSpecOf(topo, { seed, checking: true, buggify: bits, check_interval_ms: 100, pcpus }), transport: { kind: 'ring' as const }, ...timeline };
    const hr = await runHost(spec, plan.duration_ms, { quiet: true });
    const summary = summarize(hr, { seed, transport: 'ring', buggify: cell.buggify });
    if (first) keep(d, w, savedRunOf({ report: hr, summary, replay: null, command: `xgsim compare: ${d.name} × ${w.name}, seed ${seed}` }));
    sums.push(summary);
  }
  return foldRuns(cell, sums);
}

/**
 * A cell in the deterministic simulator (hypervisor/host/sim/run.ts): the
 * same topology, every vCPU an actor on one thread, `steps` decisions per
 * seed, with chaos, the liveness tail and swarm testing off so that each
 * design runs the same mix. Its figures are simulated time; a run the
 * simulator could not go on with (`stuck`, docs/sim.md) is `unknown`.
 */
/** The running checker's period in a simulated cell, in decisions: often, since a cell is short and states like a cleared grant flag last only a few steps. */
const SIM_CHECK_EVERY_STEPS = 50;

async function simCell(plan: ComparePlan, d: CompareDesign, w: CompareWorkload, bits: BugSet, steps: number, keep?: (d: CompareDesign, w: CompareWorkload, run: SavedRun) => void): Promise<CompareCell> {
  const cell = emptyCell(d, w, bits);
  if (w.kind === 'grant-ping' && w.guests < 2) {
    cell.note = 'grant-ping needs 2 guests';
    return cell;
  }
  const topo = parseTopology(cellTopology(d, w), `compare:${d.name}×${w.name}`);
  const sums: Summary[] = [];
  let stuck = false;
  for (const seed of plan.seeds) {
    const spec = hostSpecOf(topo, { seed, checking: true, buggify: bits, check_interval_ms: 0 });
    const r = await runSim(spec, { seed, steps, chaos: false, liveness: false, swarm: false, check_every_steps: SIM_CHECK_EVERY_STEPS });
    const summary = summarize(r.report, { seed, transport: 'sim', buggify: cell.buggify });
    summary.duration_ms = Math.round(r.sim_us / 1000);
    if (r.verdict === 'fail' && summary.verdict === 'pass') summary.verdict = 'fail';
    if (r.verdict === 'stuck') stuck = true;
    // The report's plots of a simulated cell: its summary and IOREQ histogram (no timeline is recorded in the simulator).
    if (keep !== undefined && sums.length === 0) keep(d, w, savedRunOf({ report: r.report, summary, replay: null, command: `xgsim compare --sim ${steps}: ${d.name} × ${w.name}, seed ${seed}` }));
    sums.push(summary);
  }
  foldRuns(cell, sums);
  if (stuck && cell.safety === 'safe') {
    cell.safety = 'unknown';
    cell.note = 'the simulator could not go on (stuck)';
  }
  return cell;
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
    const c = s.costs;
    if (c === undefined) continue;
    for (const k of SUMMED_COSTS) cell.costs[k] = (cell.costs[k] ?? 0) + c[k];
    for (const k of PEAK_KEYS) cell.costs[k] = Math.max(cell.costs[k] ?? 0, c[k]);
    cell.fault_us = { p50: Math.max(cell.fault_us.p50, c.fault_us.p50), p99: Math.max(cell.fault_us.p99, c.fault_us.p99) };
    cell.reclaim_us = { p50: Math.max(cell.reclaim_us.p50, c.reclaim_us.p50), p99: Math.max(cell.reclaim_us.p99, c.reclaim_us.p99), max: Math.max(cell.reclaim_us.max, c.reclaim_us.max) };
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

