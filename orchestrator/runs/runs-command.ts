/** `xgsim runs`: list the run store, write its index, prune it (runs/run-store.ts). */
import { parseDuration } from '../config/units.js';
import { EXIT, UsageError } from '../errors.js';
import { plural } from '../text.js';
import { recordDir } from './record.js';
import { listRuns, pruneRuns, writeIndex } from './run-store.js';

export interface RunsOptions {
  json?: boolean;
  dir?: string;
  prune?: boolean;
  keep?: string;
  olderThan?: string;
}

function pruneOptions(o: RunsOptions): { keep?: number; olderThan_ms?: number } {
  if (o.prune !== true) {
    if (o.keep !== undefined || o.olderThan !== undefined) throw new UsageError('--keep and --older-than go with --prune');
    return {};
  }
  if (o.keep === undefined && o.olderThan === undefined) throw new UsageError('--prune: say what to keep (--keep <n>) or what is too old (--older-than <time>)');
  const out: { keep?: number; olderThan_ms?: number } = {};
  if (o.keep !== undefined) {
    if (!/^\d+$/.test(o.keep) || Number(o.keep) > 1_000_000) throw new UsageError(`--keep: expected an integer 0…1000000, got \`${o.keep}\``);
    out.keep = Number(o.keep);
  }
  if (o.olderThan !== undefined) {
    const d = parseDuration(o.olderThan);
    if (!d.ok) throw new UsageError(`--older-than: ${d.error}`);
    out.olderThan_ms = d.value;
  }
  return out;
}

export function runsCommand(o: RunsOptions): { exitCode: number } {
  const root = o.dir ?? recordDir();
  const prune = pruneOptions(o);
  if (o.prune === true) {
    const removed = pruneRuns(root, prune);
    process.stderr.write(`runs: removed ${plural(removed.length, 'run')} from ${root}\n`);
  }
  const runs = listRuns(root);
  if (o.json === true) {
    process.stdout.write(`${JSON.stringify(runs, null, 2)}\n`);
    return { exitCode: EXIT.PASS };
  }
  if (runs.length === 0) {
    process.stdout.write(`no runs in ${root}\n`);
    return { exitCode: EXIT.PASS };
  }
  const index = writeIndex(root);
  const w = (k: 'name' | 'kind'): number => Math.max(k.length, ...runs.map((r) => r[k].length));
  process.stdout.write(`${'time (UTC)'.padEnd(24)}  ${'name'.padEnd(w('name'))}  ${'kind'.padEnd(w('kind'))}  ${'verdict'.padEnd(11)}  ${'seed'.padStart(10)}  replay\n`);
  for (const r of runs) {
    process.stdout.write(`${r.created_at.padEnd(24)}  ${r.name.padEnd(w('name'))}  ${r.kind.padEnd(w('kind'))}  ${r.verdict.toUpperCase().padEnd(11)}  ${String(r.seed).padStart(10)}  npx xgsim replay ${r.dir}/record.json\n`);
  }
  process.stdout.write(`${plural(runs.length, 'run')} in ${root}; index: ${index}\n`);
  return { exitCode: EXIT.PASS };
}
