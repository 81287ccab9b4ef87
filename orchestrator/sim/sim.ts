/**
 * `xgsim sim`: the deterministic simulator (hypervisor/sim) from the command
 * line — one seed, a range of seeds (exploration), the determinism check,
 * shrinking a failure and writing it down as a replay file.
 */
import { CostModelError, describeCostModel, FLAT_COST_MODEL, loadCostModel, parseCostModel, type CostModel } from '../../hypervisor/host/sim/cost-model.js';
import { listCut, plural } from '../text.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { bugNames, parseBuggify, unionBugs, type BugSet } from '../../hypervisor/xen/buggify.js';
import { PROJECT_ROOT } from '../../hypervisor/host/worker-path.js';
import { runSim, SIM_NEMESES, type SimNemesis, type SimOptions, type SimResult } from '../../hypervisor/host/sim/run.js';
import type { Strategy } from '../../hypervisor/host/sim/sim-sched.js';
import type { SwarmDraw } from '../../hypervisor/host/sim/swarm.js';
import { loadTopology } from '../config/topology.js';
import { readYamlFile } from '../config/load.js';
import { hostSpecOf } from '../up/host-spec.js';
import { summarize, type Summary } from '../up/summary.js';
import { EXIT, UsageError } from '../errors.js';

export const DEFAULT_SIM_TOPOLOGY = join(PROJECT_ROOT, 'examples', 'sim', 'default.yaml');
export const DEFAULT_SIM_STEPS = 20_000;

export interface SimCliOptions {
  seed?: string;
  seeds?: string;
  steps?: string;
  horizon?: string;
  strategy?: string;
  chaos?: boolean;
  /** false: no quiet tail, no liveness checks (hypervisor/host/sim/liveness.ts). */
  liveness?: boolean;
  /** Every behaviour and attack the topology lists, every seed (default: swarm, hypervisor/host/sim/swarm.ts). */
  fullMix?: boolean;
  checkDeterminism?: boolean;
  json?: boolean;
  shrink?: boolean;
  write?: string;
  replay?: string;
  /** `--cost-model <file>`: a cost model `xgsim bench --cost-model` wrote (default: the flat one). */
  costModel?: string;
  buggify: BugSet;
}

/** One run as the command reports it: the simulator's result, the summary of the same end-of-run report, the replay command. */
export interface SimRun extends Omit<SimResult, 'report'> {
  summary: Summary;
  replay: string;
}

interface Plan {
  topology: string;
  steps: number;
  horizon: number | undefined;
  strategy: SimOptions['strategy'];
  chaos: boolean;
  liveness: boolean;
  /** true: the seed draws the subset; a draw: that one (a replay file's); false: the full mix. */
  swarm: boolean | SwarmDraw;
  nemeses_off: SimNemesis[];
  exclude: string[];
  buggify: BugSet;
  /** The cost model and the file it came from (absent: the flat model). */
  cost?: { model: CostModel; file?: string };
}

function posInt(flag: string, s: string | undefined, dflt: number, max = 100_000_000): number {
  if (s === undefined) return dflt;
  if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > max) throw new UsageError(`${flag}: expected an integer 1…${max}, got \`${s}\``);
  return Number(s);
}

function seedOf(s: string): number {
  if (!/^\d+$/.test(s) || Number(s) > 2 ** 31 - 1) throw new UsageError(`--seed: expected an integer 0…2147483647, got \`${s}\``);
  return Number(s);
}

/** `a..b` (inclusive) or a single seed. */
export function parseSeedRange(s: string): [number, number] {
  const m = /^(\d+)(?:\.\.(\d+))?$/.exec(s.trim());
  if (m === null) throw new UsageError(`--seeds: expected a..b (e.g. 1..1000), got \`${s}\``);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (a > b) throw new UsageError(`--seeds: ${a}..${b} is empty (the first seed is above the last)`);
  if (b > 2 ** 31 - 1) throw new UsageError(`--seeds: seeds go up to 2147483647, got ${b}`);
  if (b - a >= 1_000_000) throw new UsageError(`--seeds: at most 1000000 seeds at once, got ${b - a + 1}`);
  return [a, b];
}

function strategyOf(s: string | undefined): SimOptions['strategy'] {
  if (s === undefined || s === 'mixed') return 'mixed';
  if (s === 'random' || s === 'pct') return s;
  throw new UsageError(`--strategy: expected random, pct or mixed, got \`${s}\``);
}

async function runOne(p: Plan, seed: number, steps: number, o: Partial<SimOptions> = {}): Promise<SimRun> {
  const topo = loadTopology(p.topology);
  const spec = hostSpecOf(topo, { seed, checking: true, buggify: p.buggify, check_interval_ms: 0 });
  const names = spec.domains.flatMap((d) => Array.from({ length: d.vcpus }, (_, v) => `${d.name}/v${v}`));
  const exclude = p.exclude.map((n) => names.indexOf(n)).filter((i) => i >= 0);
  const r = await runSim(spec, {
    seed,
    steps,
    ...(p.horizon !== undefined ? { horizon: p.horizon } : {}),
    ...(p.strategy !== undefined ? { strategy: p.strategy } : {}),
    ...(p.cost !== undefined ? { cost: p.cost.model } : {}),
    chaos: p.chaos,
    liveness: p.liveness,
    swarm: p.swarm,
    nemeses_off: p.nemeses_off,
    exclude,
    ...o,
  });
  const { report, ...rest } = r;
  const bugs = bugNames(p.buggify);
  const summary = summarize(report, { seed, transport: 'sim', buggify: bugs });
  summary.duration_ms = Math.round(r.sim_us / 1000);
  let verdict = rest.verdict;
  let failed_at_step = rest.failed_at_step;
  if (verdict === 'pass' && summary.verdict === 'fail') {
    verdict = 'fail';
    failed_at_step = rest.steps;
  }
  const horizon = p.horizon ?? steps;
  const replaySteps = failed_at_step ?? steps;
  const replay = replayCommand(p, seed, replaySteps, horizon, rest.strategy);
  return { ...rest, verdict, failed_at_step, summary, replay };
}

/** One simulation of one seed, as the command runs it (campaign jobs, replays of run records). */
export function simOnce(o: { topology?: string; seed: number; steps: number; horizon?: number; strategy?: SimOptions['strategy']; chaos?: boolean; liveness?: boolean; swarm?: boolean; buggify: BugSet; costModel?: string; progress?: SimOptions['progress'] }): Promise<SimRun> {
  const p: Plan = { topology: o.topology ?? DEFAULT_SIM_TOPOLOGY, steps: o.steps, horizon: o.horizon, strategy: o.strategy ?? 'mixed', chaos: o.chaos !== false, liveness: o.liveness !== false, swarm: o.swarm !== false, nemeses_off: [], exclude: [], buggify: o.buggify, ...costOf(o.costModel) };
  loadTopology(p.topology);
  return runOne(p, o.seed, o.steps, o.progress !== undefined ? { progress: o.progress } : {});
}

function replayCommand(p: Plan, seed: number, steps: number, horizon: number, strategy: Strategy): string {
  const bugs = bugNames(p.buggify);
  const env = bugs.length > 0 ? `XGSIM_BUGGIFY=${bugs.join(',')} ` : '';
  const topo = p.topology === DEFAULT_SIM_TOPOLOGY ? '' : ` ${relative(process.cwd(), p.topology) || p.topology}`;
  const parts = [`${env}npx xgsim sim${topo} --seed ${seed} --steps ${steps}`];
  if (horizon !== steps) parts.push(`--horizon ${horizon}`);
  if (p.strategy === 'mixed' || p.strategy === undefined) parts.push(`--strategy ${strategy}`);
  else parts.push(`--strategy ${p.strategy}`);
  if (!p.chaos) parts.push('--no-chaos');
  if (!p.liveness) parts.push('--no-liveness');
  if (p.swarm === false) parts.push('--full-mix');
  if (p.cost?.file !== undefined) parts.push(`--cost-model ${p.cost.file}`);
  return parts.join(' ');
}

/** Why a run failed, in one line. */
export function firstReason(r: SimRun): string {
  const v = r.violations[0];
  if (v !== undefined) return `${v.invariant}: ${v.text}`;
  return r.errors[0] ?? r.stuck ?? r.summary.errors[0] ?? 'the end-of-run checks failed';
}

function line(r: SimRun): string {
  const secs = (r.real_ms / 1000).toFixed(2);
  const verdict = r.verdict.toUpperCase();
  return `sim: ${verdict}   seed ${r.seed}   hash ${r.hash}   ${r.steps} steps${r.tail_steps > 0 ? ' (the quiet tail among them)' : ''} in ${secs} s (${r.steps_per_s.toLocaleString('en-US')} steps/s)   simulated ${(r.sim_us / 1e6).toFixed(3)} s (${r.sim_ratio.toFixed(2)}× real time)   ${r.strategy}, max depth ${r.max_depth}`;
}

export async function simCommand(file: string | undefined, o: SimCliOptions): Promise<{ exitCode: number }> {
  if (o.replay !== undefined) return replayFile(o);
  const topology = file ?? DEFAULT_SIM_TOPOLOGY;
  loadTopology(topology); // bad input: one line, exit 2, before anything runs
  const p: Plan = {
    topology,
    steps: posInt('--steps', o.steps, DEFAULT_SIM_STEPS),
    horizon: o.horizon !== undefined ? posInt('--horizon', o.horizon, 0) : undefined,
    strategy: strategyOf(o.strategy),
    chaos: o.chaos !== false,
    liveness: o.liveness !== false,
    swarm: o.fullMix !== true,
    nemeses_off: [],
    exclude: [],
    buggify: o.buggify,
    ...costOf(o.costModel),
  };
  if (o.seeds !== undefined && o.seed !== undefined) throw new UsageError('--seed and --seeds: give one of them');
  if (o.seeds !== undefined) return explore(p, parseSeedRange(o.seeds), o);
  const seed = o.seed !== undefined ? seedOf(o.seed) : Math.floor(Math.random() * 2 ** 31);
  const bugs = bugNames(p.buggify);
  const say = (s: string): void => void process.stderr.write(`${s}\n`);
  say(`xgsim sim ${relative(process.cwd(), topology) || topology}: seed ${seed}, ${p.steps} steps${p.horizon !== undefined ? ` (horizon ${p.horizon})` : ''}, strategy ${p.strategy}, chaos ${p.chaos ? 'on' : 'off'}${bugs.length > 0 ? `, BUGGIFY ${bugs.join(',')}` : ''}`);
  say(`cost model: ${describeCostModel(p.cost?.model ?? FLAT_COST_MODEL)}`);
  const a = await runOne(p, seed, p.steps, progressOption(o));
  if (process.stderr.isTTY === true && o.json !== true) process.stderr.write('\r\x1b[K');
  const runs = [a];
  let deterministic: boolean | undefined;
  if (o.checkDeterminism === true) {
    const b = await runOne(p, seed, p.steps);
    runs.push(b);
    deterministic = a.hash === b.hash && a.steps === b.steps && a.verdict === b.verdict;
  }
  let written: string | undefined;
  if (a.verdict === 'fail' && o.shrink === true) written = await shrinkAndWrite(p, a, o.write);
  if (o.json === true) {
    const out = { ...a, cost_model: p.cost?.model ?? FLAT_COST_MODEL, ...(deterministic !== undefined ? { determinism: { runs: runs.map((r) => ({ hash: r.hash, steps: r.steps, real_ms: r.real_ms, steps_per_s: r.steps_per_s })), identical: deterministic } } : {}), ...(written !== undefined ? { written } : {}) };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    for (const r of runs) process.stdout.write(`${line(r)}\n`);
    if (deterministic !== undefined) process.stdout.write(`determinism: ${deterministic ? 'identical' : 'DIFFERENT'} hashes (${runs.map((r) => r.hash).join(' ')})\n`);
    if (a.swarm !== null) process.stdout.write(`swarm: ${Object.entries(a.swarm).map(([d, b]) => `${d} ${b.join(',')}`).join('; ')}\n`);
    if (a.nemeses.length > 0) process.stdout.write(`nemeses on: ${a.nemeses.join(', ')} (${a.injections.length} injections)\n`);
    if (a.verdict !== 'pass') process.stdout.write(`${a.verdict === 'fail' ? `failed at step ${a.failed_at_step}` : 'stuck'}: ${firstReason(a)}\n`);
  }
  if (a.verdict === 'fail') say(`replay: ${a.replay}`);
  if (written !== undefined) say(`shrunk replay written to ${written}`);
  const bad = a.verdict === 'fail' || deterministic === false;
  return { exitCode: bad ? EXIT.FAIL : EXIT.PASS };
}

function progressOption(o: SimCliOptions): Partial<SimOptions> {
  if (process.stderr.isTTY !== true || o.json === true) return {};
  return { progress: (steps) => void process.stderr.write(`\r  sim: ${steps.toLocaleString('en-US')} steps`) };
}

export interface ExploreReport {
  topology: string;
  seeds: [number, number];
  steps: number;
  buggify: string[];
  runs: number;
  failed: number;
  stuck: number;
  /** The first seed that failed (seeds-to-detection when exploring from 1). */
  first_failing_seed: number | null;
  failures: Array<{ seed: number; step: number | null; reason: string; replay: string }>;
  stuck_seeds: number[];
  steps_total: number;
  real_ms: number;
  steps_per_s: number;
  /** Simulated time of all the seeds' runs, and its ratio to their real time. */
  sim_ms: number;
  sim_ratio: number;
  /** The cost model the simulated time is charged by (`--cost-model`, else the flat one), as a single run's JSON has it. */
  cost_model: CostModel;
  written?: string;
}

async function explore(p: Plan, [a, b]: [number, number], o: SimCliOptions): Promise<{ exitCode: number }> {
  const bugs = bugNames(p.buggify);
  const tty = process.stderr.isTTY === true;
  process.stderr.write(`xgsim sim ${relative(process.cwd(), p.topology) || p.topology}: seeds ${a}..${b}, ${p.steps} steps each, strategy ${p.strategy}, chaos ${p.chaos ? 'on' : 'off'}${bugs.length > 0 ? `, BUGGIFY ${bugs.join(',')}` : ''}\n`);
  const t0 = performance.now();
  const rep: ExploreReport = { topology: p.topology, seeds: [a, b], steps: p.steps, buggify: bugs, runs: 0, failed: 0, stuck: 0, first_failing_seed: null, failures: [], stuck_seeds: [], steps_total: 0, real_ms: 0, steps_per_s: 0, sim_ms: 0, sim_ratio: 0, cost_model: p.cost?.model ?? FLAT_COST_MODEL };
  let sim_us = 0;
  let firstFail: SimRun | undefined;
  let lastLine = t0;
  for (let seed = a; seed <= b; seed++) {
    const r = await runOne(p, seed, p.steps);
    rep.runs++;
    rep.steps_total += r.steps;
    sim_us += r.sim_us;
    if (r.verdict === 'fail') {
      rep.failed++;
      rep.first_failing_seed ??= seed;
      firstFail ??= r;
      if (rep.failures.length < 100) rep.failures.push({ seed, step: r.failed_at_step, reason: firstReason(r), replay: r.replay });
    } else if (r.verdict === 'stuck') {
      rep.stuck++;
      rep.stuck_seeds.push(seed);
    }
    const now = performance.now();
    // Progress: a bar-like line on a TTY, a line every 10 s otherwise.
    if (tty && o.json !== true) process.stderr.write(`\r  sim: seed ${seed} (${rep.runs}/${b - a + 1}), ${rep.failed} failed`);
    else if (now - lastLine > 10_000) {
      lastLine = now;
      process.stderr.write(`  sim: ${rep.runs}/${b - a + 1} seeds, ${rep.failed} failed\n`);
    }
  }
  if (tty && o.json !== true) process.stderr.write('\n');
  rep.real_ms = Math.round(performance.now() - t0);
  rep.steps_per_s = Math.round(rep.steps_total / Math.max(rep.real_ms / 1000, 1e-6));
  rep.sim_ms = Math.round(sim_us / 1000);
  rep.sim_ratio = Math.round((100 * sim_us) / 1000 / Math.max(rep.real_ms, 1e-6)) / 100;
  if (firstFail !== undefined && o.shrink === true) rep.written = await shrinkAndWrite(p, firstFail, o.write);
  if (o.json === true) process.stdout.write(`${JSON.stringify(rep, null, 2)}\n`);
  else {
    process.stdout.write(`sim: ${plural(rep.runs, 'seed')}, ${rep.failed} failed, ${rep.stuck} stuck   ${rep.steps_total.toLocaleString('en-US')} steps in ${(rep.real_ms / 1000).toFixed(1)} s (${rep.steps_per_s.toLocaleString('en-US')} steps/s)   simulated ${(rep.sim_ms / 1000).toFixed(2)} s (${rep.sim_ratio.toFixed(2)}× real time; cost model ${describeCostModel(rep.cost_model)})${rep.first_failing_seed !== null ? `   first failing seed ${rep.first_failing_seed}` : ''}\n`);
    for (const f of rep.failures.slice(0, 10)) process.stdout.write(`  seed ${f.seed} at step ${f.step}: ${f.reason}\n    replay: ${f.replay}\n`);
    if (rep.failures.length > 10) process.stdout.write(`  … and ${rep.failures.length - 10} more failing seed${rep.failures.length - 10 === 1 ? '' : 's'} (--json has them all)\n`);
    if (rep.failures.length > 10) process.stdout.write(`  … ${rep.failed - 10} more (--json lists up to 100)\n`);
    if (rep.stuck > 0) process.stdout.write(`  stuck (a limit of the simulator, not a finding): seeds ${listCut(rep.stuck_seeds.map(String), 20)}\n`);
    if (rep.written !== undefined) process.stdout.write(`shrunk replay of seed ${rep.first_failing_seed} written to ${rep.written}\n`);
  }
  return { exitCode: rep.failed > 0 ? EXIT.FAIL : EXIT.PASS };
}

/**
 * Shrink a failing run: the shortest prefix is where it failed; then, one
 * at a time, switch off each nemesis that was on and leave out each vCPU,
 * keeping every change after which the run still fails. Writes the result
 * as a replay file (`xgsim sim --replay <file>`).
 */
async function shrinkAndWrite(p: Plan, failed: SimRun, file: string | undefined): Promise<string> {
  let cur: Plan = { ...p, horizon: p.horizon ?? p.steps, strategy: failed.strategy, nemeses_off: [...p.nemeses_off], exclude: [...p.exclude] };
  let best = failed;
  let steps = failed.failed_at_step ?? failed.steps;
  const tryPlan = async (q: Plan): Promise<SimRun | undefined> => {
    const r = await runOne(q, failed.seed, steps);
    return r.verdict === 'fail' ? r : undefined;
  };
  // One change at a time, kept when the run still fails: each nemesis off, then each vCPU left out.
  const edits: Array<(q: Plan) => Plan> = [
    ...failed.nemeses.map((n) => (q: Plan): Plan => ({ ...q, nemeses_off: [...q.nemeses_off, n] })),
    ...failed.actors.map((a) => (q: Plan): Plan => ({ ...q, exclude: [...q.exclude, a] })),
  ];
  for (const edit of edits) {
    const q = edit(cur);
    const r = await tryPlan(q);
    if (r === undefined) continue;
    cur = q;
    best = r;
    steps = r.failed_at_step ?? steps;
  }
  const bugs = bugNames(p.buggify);
  const out = file ?? join('xgsim-runs', `sim-seed-${failed.seed}${bugs.length > 0 ? `-${bugs.join('+')}` : ''}.yaml`);
  mkdirSync(dirname(out), { recursive: true });
  const lines = [
    `# xgsim sim replay — run it with: npx xgsim sim --replay ${out}`,
    `# Found: seed ${failed.seed} failed at step ${failed.failed_at_step} of ${failed.steps}; shrunk to ${steps} steps,`,
    `# ${cur.nemeses_off.length} nemesis(es) off and ${cur.exclude.length} vCPU(s) left out. It fails with:`,
    `#   ${firstReason(best).replace(/\n/g, ' ')}`,
    'kind: sim-replay',
    `topology: ${JSON.stringify(relative(dirname(resolve(out)), resolve(p.topology)))}   # relative to this file`,
    `seed: ${failed.seed}`,
    `steps: ${steps}`,
    `horizon: ${cur.horizon}`,
    `strategy: ${failed.strategy}`,
    `chaos: ${cur.chaos}`,
    `liveness: ${cur.liveness}`,
    // The subset of behaviours and attacks the seed drew: the replay runs this one, whatever the draw says by then.
    `swarm: ${best.swarm === null ? 'false' : JSON.stringify(best.swarm)}`,
    `buggify: [${bugs.join(', ')}]`,
    `nemeses_off: [${cur.nemeses_off.join(', ')}]`,
    `exclude: [${cur.exclude.map((x) => JSON.stringify(x)).join(', ')}]`,
    // The clock decides timeouts: the replay runs with the same cost model, written out whole.
    ...(cur.cost !== undefined ? [`cost_model: ${JSON.stringify(cur.cost.model)}`] : []),
    'expect: fail',
    '',
  ];
  writeFileSync(out, lines.join('\n'));
  return out;
}

interface ReplayFile {
  topology: string;
  seed: number;
  steps: number;
  horizon: number;
  strategy: Strategy;
  chaos: boolean;
  liveness: boolean;
  swarm: boolean | SwarmDraw;
  buggify: string[];
  nemeses_off: SimNemesis[];
  exclude: string[];
  cost_model?: CostModel;
  expect: 'fail' | 'pass';
}

/** Read a replay file; a malformed one is bad input (file:line:col where the YAML says). */
export function loadReplayFile(file: string): ReplayFile {
  const src = readYamlFile(file);
  const raw = src.data as Record<string, unknown> | null;
  const bad = (what: string): never => {
    throw new UsageError(`${file}: ${what}`);
  };
  if (raw === null || typeof raw !== 'object') return bad('expected a mapping (kind: sim-replay, …)');
  if (raw['kind'] !== 'sim-replay') return bad('`kind: sim-replay` missing: not a replay file of `xgsim sim --shrink`');
  const int = (k: string): number => {
    const v = raw[k];
    if (typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
    return bad(`\`${k}\`: expected a non-negative integer`);
  };
  const strs = (k: string): string[] => (raw[k] === undefined || raw[k] === null ? [] : Array.isArray(raw[k]) && (raw[k] as unknown[]).every((x) => typeof x === 'string') ? (raw[k] as string[]) : bad(`\`${k}\`: expected a list of names`));
  const strategy = raw['strategy'];
  if (strategy !== 'random' && strategy !== 'pct') bad('`strategy`: expected random or pct');
  const nemeses_off = strs('nemeses_off');
  for (const n of nemeses_off) if (!(SIM_NEMESES as readonly string[]).includes(n)) bad(`\`nemeses_off\`: unknown nemesis \`${n}\`; known: ${SIM_NEMESES.join(', ')}`);
  if (typeof raw['topology'] !== 'string') bad('`topology`: expected the path of a topology file');
  return {
    topology: resolve(dirname(resolve(file)), raw['topology'] as string),
    seed: int('seed'),
    steps: int('steps'),
    horizon: int('horizon'),
    strategy: strategy as Strategy,
    chaos: raw['chaos'] !== false,
    liveness: raw['liveness'] !== false,
    swarm: swarmOf(raw['swarm'], bad),
    buggify: strs('buggify'),
    nemeses_off: nemeses_off as SimNemesis[],
    exclude: strs('exclude'),
    ...(raw['cost_model'] !== undefined ? { cost_model: costModelOf(raw['cost_model'], bad) } : {}),
    expect: raw['expect'] === 'pass' ? 'pass' : 'fail',
  };
}

/** `--cost-model <file>` as a plan's part: the model and its file, or nothing (the flat model). */
function costOf(file: string | undefined): Pick<Plan, 'cost'> {
  if (file === undefined) return {};
  try {
    return { cost: { model: loadCostModel(file), file } };
  } catch (e) {
    if (e instanceof CostModelError) throw new UsageError(`--cost-model: ${e.message}`);
    throw e;
  }
}

/** A replay file's `cost_model:` (numbers, as the shrinker wrote them). */
function costModelOf(v: unknown, bad: (what: string) => never): CostModel {
  try {
    return parseCostModel(v, '`cost_model`');
  } catch (e) {
    return bad(e instanceof Error ? e.message : String(e));
  }
}

/** A replay file's `swarm:`: false (the full mix), true (the seed's draw), or the draw, domain → behaviours. */
function swarmOf(v: unknown, bad: (what: string) => never): boolean | SwarmDraw {
  if (v === undefined || v === null || v === true) return true;
  if (v === false) return false;
  if (typeof v !== 'object' || Array.isArray(v)) return bad('`swarm`: expected false, true or a mapping of domain names to lists of behaviours');
  const out: SwarmDraw = {};
  for (const [k, list] of Object.entries(v as Record<string, unknown>)) {
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) return bad(`\`swarm\`: \`${k}\`: expected a list of behaviours`);
    out[k] = list as string[];
  }
  return out;
}

/** What a replay file runs: its topology, steps, nemeses off, vCPUs left out, and its bugs plus `buggify`. */
function planOfReplay(f: ReplayFile, buggify: BugSet): Plan {
  const p: Plan = { topology: f.topology, steps: f.steps, horizon: f.horizon, strategy: f.strategy, chaos: f.chaos, liveness: f.liveness, swarm: f.swarm, nemeses_off: f.nemeses_off, exclude: f.exclude, buggify: unionBugs(parseBuggify(f.buggify.join(',')), buggify), ...(f.cost_model !== undefined ? { cost: { model: f.cost_model } } : {}) };
  loadTopology(p.topology);
  return p;
}

/**
 * A replay file as a scenario (`xgsim scenario found.yaml`): SUCCESS when the
 * run ends as the file expects (`expect: fail` while the bug is there; set
 * `expect: pass` once it is fixed and keep the file as a regression test).
 */
export async function replayAsScenario(file: string, buggify: BugSet): Promise<{ name: string; ok: boolean; expected: string; got: string; reason: string }> {
  const f = loadReplayFile(file);
  const r = await runOne(planOfReplay(f, buggify), f.seed, f.steps);
  const got = r.verdict;
  const what = r.verdict === 'fail' ? `failed at step ${r.failed_at_step}: ${firstReason(r)}` : r.verdict === 'stuck' ? `stuck: ${r.stuck ?? ''}` : `passed ${r.steps} steps`;
  return { name: `sim seed ${f.seed}`, ok: got === f.expect, expected: f.expect, got, reason: `${what} (hash ${r.hash})` };
}

async function replayFile(o: SimCliOptions): Promise<{ exitCode: number }> {
  const file = o.replay!;
  const f = loadReplayFile(file);
  const p = planOfReplay(f, o.buggify);
  process.stderr.write(`xgsim sim --replay ${file}: seed ${f.seed}, ${f.steps} steps, expecting ${f.expect}\n`);
  const r = await runOne(p, f.seed, f.steps);
  if (o.json === true) process.stdout.write(`${JSON.stringify({ ...r, expected: f.expect, reproduced: r.verdict === f.expect }, null, 2)}\n`);
  else {
    process.stdout.write(`${line(r)}\n`);
    if (r.verdict !== 'pass') process.stdout.write(`${r.verdict === 'fail' ? `failed at step ${r.failed_at_step}` : 'stuck'}: ${firstReason(r)}\n`);
    process.stdout.write(`expected ${f.expect}: ${r.verdict === f.expect ? 'reproduced' : 'NOT reproduced'}\n`);
  }
  return { exitCode: r.verdict === 'fail' ? EXIT.FAIL : EXIT.PASS };
}
