/**
 * `xgsim scenario <file…>`: validate every file first (bad input → exit 2),
 * then one verdict per file, reported as xtf-runner reports XTF tests: the
 * worst result decides the exit code (errors.ts SCENARIO_EXIT), `--list`
 * lists the selection without running it, `-q` / `-qq` print less, and
 * `--junit` writes JUnit XML for CI systems.
 */
import { writeFileSync } from 'node:fs';
import type { Piscina } from 'piscina';
import { NO_BUGS, bugSetOf, unionBugs, type BugSet } from '../../hypervisor/xen/buggify.js';
import { loadScenario, type Scenario } from '../config/scenario.js';
import { maxThreads, newScenarioPool, runScenario, type ScenarioResult, type Verdict } from './run.js';
import { readYamlFile } from '../config/load.js';
import { loadReplayFile, replayAsScenario } from '../sim/sim.js';
import { SCENARIO_EXIT } from '../errors.js';
import { junitXml } from './junit.js';

/** A replay file written by `xgsim sim --shrink` (kind: sim-replay) rather than a step-by-step scenario. */
function isSimReplay(file: string): boolean {
  const d = readYamlFile(file).data as Record<string, unknown> | null;
  return d !== null && typeof d === 'object' && d['kind'] === 'sim-replay';
}

export interface ScenarioCmdOptions {
  json?: boolean;
  seed?: number;
  buggify: BugSet;
  /** xtf-runner's `-q` count: 1 — result lines only, no reasons or totals; 2 — not even SUCCESS lines. Programmatic callers pass `true` for silence. */
  quiet?: boolean | number;
  /** Also switch on, per file, the bug its `buggify:` field names (docs/xsa.md). */
  ownBug?: boolean;
  /** Print the selection (name and file), run nothing. */
  list?: boolean;
  /** Write JUnit XML here, one testcase per file. */
  junit?: string;
}

/** Worst first, as xtf-runner's `all_results` orders them (reversed). */
const WORST: readonly Verdict[] = ['FAILURE', 'ERROR', 'SKIP', 'SUCCESS'];

export function scenarioExitCode(results: readonly ScenarioResult[]): number {
  const worst = WORST.find((v) => results.some((r) => r.verdict === v)) ?? 'SUCCESS';
  return SCENARIO_EXIT[worst];
}

export async function scenarioCommand(files: string[], o: ScenarioCmdOptions): Promise<{ results: ScenarioResult[]; exitCode: number }> {
  const replays = new Set(files.filter(isSimReplay));
  const replayNames = new Map([...replays].map((f) => [f, `sim seed ${loadReplayFile(f).seed}`])); // bad input before anything runs
  const loaded: Array<[string, Scenario]> = files.filter((f) => !replays.has(f)).map((f) => [f, loadScenario(f)]);
  if (o.list === true) {
    for (const [file, sc] of loaded) process.stdout.write(`${sc.name}\t${file}${sc.skip !== undefined ? '\t(skip)' : ''}\n`);
    for (const [file, name] of replayNames) process.stdout.write(`${name}\t${file}\t(sim replay)\n`);
    return { results: [], exitCode: 0 };
  }
  const quiet = o.quiet === true ? 3 : o.quiet === false || o.quiet === undefined ? 0 : o.quiet;
  const show = (r: ScenarioResult): void => {
    if (o.json === true || quiet >= 3 || (quiet >= 2 && r.verdict === 'SUCCESS')) return;
    process.stdout.write(quiet >= 1 ? `${r.name.padEnd(40)} ${r.verdict}\n` : `${r.name}: ${r.verdict} — ${r.reason}\n`);
  };
  const results = await runAll(loaded, [...replays], o, show);
  if (o.junit !== undefined) writeFileSync(o.junit, junitXml(results));
  if (o.json === true) {
    const out = results.map((r) => ({ file: r.file, name: r.name, verdict: r.verdict, step: r.step ?? null, expected: r.expected ?? null, got: r.got ?? null, reason: r.reason }));
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else if (quiet === 0) {
    const count = (v: string): number => results.filter((r) => r.verdict === v).length;
    process.stdout.write(`${results.length} scenario${results.length === 1 ? '' : 's'}: ${count('SUCCESS')} SUCCESS, ${count('FAILURE')} FAILURE, ${count('ERROR')} ERROR, ${count('SKIP')} SKIP\n`);
  }
  return { results, exitCode: scenarioExitCode(results) };
}

async function runAll(loaded: Array<[string, Scenario]>, replays: string[], o: ScenarioCmdOptions, show: (r: ScenarioResult) => void): Promise<ScenarioResult[]> {
  const threads = loaded.reduce((n, [, s]) => Math.max(n, maxThreads(s.steps)), 0);
  const pool: Piscina | undefined = threads > 0 ? newScenarioPool(threads) : undefined;
  const seed = o.seed ?? 1;
  const results: ScenarioResult[] = [];
  try {
    for (const [file, sc] of loaded) {
      const own = o.ownBug === true && sc.buggify !== undefined ? bugSetOf([sc.buggify]) : NO_BUGS;
      const t0 = performance.now();
      const r = await runScenario(file, sc, { buggify: unionBugs(o.buggify, own), seed: sc.seed ?? seed, ...(pool !== undefined ? { pool } : {}) });
      results.push({ ...r, time_ms: performance.now() - t0 });
      show(r);
    }
    for (const file of replays) {
      const t0 = performance.now();
      const x = await replayAsScenario(file, o.buggify);
      const r: ScenarioResult = { file, name: x.name, verdict: x.ok ? 'SUCCESS' : 'FAILURE', reason: x.reason, expected: x.expected, got: x.got, time_ms: performance.now() - t0 };
      results.push(r);
      show(r);
    }
  } finally {
    await pool?.destroy();
  }
  return results;
}
