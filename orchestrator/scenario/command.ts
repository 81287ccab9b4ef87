/** `xgsim scenario <file…>`: validate every file first (bad input → exit 2), then one verdict per file. */
import type { Piscina } from 'piscina';
import { BUGS } from '../../hypervisor/xen/buggify.js';
import { loadScenario, type Scenario } from '../config/scenario.js';
import { maxThreads, newScenarioPool, runScenario, type ScenarioResult } from './run.js';
import { readYamlFile } from '../config/load.js';
import { loadReplayFile, replayAsScenario } from '../sim/sim.js';

/** A replay file written by `xgsim sim --shrink` (kind: sim-replay) rather than a step-by-step scenario. */
function isSimReplay(file: string): boolean {
  const d = readYamlFile(file).data as Record<string, unknown> | null;
  return d !== null && typeof d === 'object' && d['kind'] === 'sim-replay';
}

export interface ScenarioCmdOptions {
  json?: boolean;
  seed?: number;
  buggify: number;
  quiet?: boolean;
  /** Also switch on, per file, the bug its `buggify:` field names (docs/xsa.md). */
  ownBug?: boolean;
}

export async function scenarioCommand(files: string[], o: ScenarioCmdOptions): Promise<{ results: ScenarioResult[]; exitCode: number }> {
  const replays = new Set(files.filter(isSimReplay));
  for (const f of replays) loadReplayFile(f); // bad input before anything runs
  const loaded: Array<[string, Scenario]> = files.filter((f) => !replays.has(f)).map((f) => [f, loadScenario(f)]);
  const threads = loaded.reduce((n, [, s]) => Math.max(n, maxThreads(s.steps)), 0);
  const pool: Piscina | undefined = threads > 0 ? newScenarioPool(threads) : undefined;
  const seed = o.seed ?? 1;
  const results: ScenarioResult[] = [];
  try {
    for (const [file, sc] of loaded) {
      const own = o.ownBug === true && sc.buggify !== undefined ? BUGS[sc.buggify] : 0;
      const r = await runScenario(file, sc, { buggify: o.buggify | own, seed: sc.seed ?? seed, ...(pool !== undefined ? { pool } : {}) });
      results.push(r);
      if (o.json !== true && o.quiet !== true) process.stdout.write(`${r.name}: ${r.verdict} — ${r.reason}\n`);
    }
    for (const file of replays) {
      const x = await replayAsScenario(file, o.buggify);
      const r: ScenarioResult = { file, name: x.name, verdict: x.ok ? 'SUCCESS' : 'FAILURE', reason: x.reason, expected: x.expected, got: x.got };
      results.push(r);
      if (o.json !== true && o.quiet !== true) process.stdout.write(`${r.name}: ${r.verdict} — ${r.reason}\n`);
    }
  } finally {
    await pool?.destroy();
  }
  if (o.json === true) {
    const out = results.map((r) => ({ file: r.file, name: r.name, verdict: r.verdict, step: r.step ?? null, expected: r.expected ?? null, got: r.got ?? null, reason: r.reason }));
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else if (o.quiet !== true) {
    const count = (v: string): number => results.filter((r) => r.verdict === v).length;
    process.stdout.write(`${results.length} scenarios: ${count('SUCCESS')} SUCCESS, ${count('FAILURE')} FAILURE, ${count('ERROR')} ERROR, ${count('SKIP')} SKIP\n`);
  }
  const bad = results.some((r) => r.verdict === 'FAILURE' || r.verdict === 'ERROR');
  return { results, exitCode: bad ? 1 : 0 };
}
