/**
 * `xgsim replay <record.json> [--attempts N] [--json]`: run a recorded run
 * again with its seed, flags and BUGGIFY bugs (the record's, whatever the
 * environment says).
 *
 * The seed fixes every guest decision, but the threads' interleaving is
 * still the OS's, so a replay is not bit-for-bit the same run: a failure
 * may need a few attempts to show again. With `--attempts N` it runs up to
 * N times and stops at the first failure, saying after how many.
 *
 * A `sim` record is the deterministic simulator: one attempt is the same
 * run bit for bit (the replay compares the run's hash with the recorded
 * one), so more attempts are pointless and only one is made.
 *
 * Exit 1: a run failed (the failure reproduced); 0: every attempt passed;
 * 2: a bad or missing record, or a record whose run cannot start.
 */
import type { Verdict } from '../up/summary.js';
import { parseBuggify } from '../../hypervisor/xen/buggify.js';
import { printable, UsageError } from '../errors.js';
import { loadRecord, type RunRecord } from './record.js';
import { runSpec } from './store.js';
import { formatSummary, type Summary } from '../up/summary.js';

export const MAX_ATTEMPTS = 1000;

export interface ReplayOptions {
  attempts?: string;
  json?: boolean;
  redisUrl?: string;
}

export interface ReplayResult {
  record: string;
  kind: RunRecord['kind'];
  seed: number;
  buggify: string[];
  recorded_verdict: Verdict;
  /** Runs made (≤ the attempts asked for). */
  attempts: number;
  /** Whether a run failed. */
  reproduced: boolean;
  runs: Array<{ attempt: number; verdict: Verdict; violations: number; errors: number; duration_ms: number }>;
  /** The failing run's summary, else the last one's. */
  summary: Summary;
  /** sim records: the recorded and the replayed hash (equal: the same run, bit for bit). */
  hash?: { recorded: string; replayed: string; identical: boolean };
}

export function violationsOf(s: Summary): number {
  return Object.values(s.invariants).reduce((a, v) => a + v.violations, 0);
}

function failedInvariants(s: Summary): string[] {
  return Object.entries(s.invariants).filter(([, v]) => v.violations > 0).map(([k]) => k);
}

export async function replay(file: string, o: ReplayOptions): Promise<{ result: ReplayResult; exitCode: number }> {
  const attempts = o.attempts === undefined ? 1 : Number(o.attempts);
  if (o.attempts !== undefined && (!/^\d+$/.test(o.attempts) || attempts < 1 || attempts > MAX_ATTEMPTS)) {
    throw new UsageError(`--attempts: expected an integer 1…${MAX_ATTEMPTS}, got \`${o.attempts}\``);
  }
  const rec = loadRecord(file);
  const buggify = parseBuggify(rec.buggify.join(','));
  const envBugs = process.env['XGSIM_BUGGIFY'] ?? '';
  if (envBugs.trim() !== '' && envBugs.split(',').map((b) => b.trim()).filter((b) => b !== '').sort().join(',') !== [...rec.buggify].sort().join(',')) {
    process.stderr.write(`xgsim replay: XGSIM_BUGGIFY=${printable(envBugs)} ignored; the record's bugs are used: ${rec.buggify.join(',') || 'none'}\n`);
  }
  // The record is input: its text reaches the terminal only printable.
  const what = printable(rec.kind === 'stress-revoke' ? 'stress revoke' : rec.kind === 'sim' ? `sim ${rec.file ?? '(default topology)'} --steps ${rec.flags.steps}` : `${rec.kind} ${rec.file}`);
  const tries = rec.kind === 'sim' ? 1 : attempts;
  if (tries < attempts) process.stderr.write(`xgsim replay: a sim run is deterministic: one attempt (of the ${attempts} asked) is the same run as any other\n`);
  process.stderr.write(
    `xgsim replay ${file}: ${what}, seed ${rec.seed}${rec.buggify.length > 0 ? `, BUGGIFY ${rec.buggify.join(',')}` : ''}; ` +
      `recorded ${rec.verdict.toUpperCase()}${rec.verdict === 'fail' ? ` (${violationsOf(rec.summary)} violations)` : ''} on ${printable(rec.created_at)}\n`,
  );
  const runs: ReplayResult['runs'] = [];
  let last: Summary | undefined;
  let hash: ReplayResult['hash'];
  for (let i = 1; i <= tries; i++) {
    const r = await runSpec({ kind: rec.kind, file: 'file' in rec ? rec.file : undefined, flags: rec.flags, seed: rec.seed, buggify }, { redisUrl: o.redisUrl });
    last = r.summary;
    if (rec.kind === 'sim' && r.sim !== undefined) hash = { recorded: rec.sim.hash, replayed: r.sim.hash, identical: rec.sim.hash === r.sim.hash };
    const v = violationsOf(r.summary);
    runs.push({ attempt: i, verdict: r.summary.verdict, violations: v, errors: r.summary.errors.length, duration_ms: r.summary.duration_ms });
    const inv = failedInvariants(r.summary);
    process.stderr.write(
      `  attempt ${i}/${tries}: ${r.summary.verdict.toUpperCase()}` +
        (r.summary.verdict === 'fail' ? ` — ${v} violations${inv.length > 0 ? ` (${inv.join(', ')})` : ''}${r.summary.errors.length > 0 ? `, ${r.summary.errors.length} errors` : ''}` : '') +
        (r.sim !== undefined
          ? `, ${r.sim.steps} steps${r.sim.failed_at_step !== undefined ? ` (failed at step ${r.sim.failed_at_step})` : ''}${r.sim.verdict === 'stuck' ? ', stuck' : ''}, hash ${r.sim.hash}${hash !== undefined ? (hash.identical ? ' (the recorded one: the same run)' : ` (recorded ${hash.recorded}: NOT the same run — the code changed since?)`) : ''}${r.sim.reason !== '' ? `\n    ${r.sim.reason}` : ''}`
          : `, ${r.summary.ops['revoke'] ?? 0} revokes, ${(r.summary.duration_ms / 1000).toFixed(1)} s`) +
        '\n',
    );
    if (r.summary.verdict === 'fail') break;
  }
  if (last === undefined) throw new Error('replay: no attempt ran');
  const reproduced = last.verdict === 'fail';
  const result: ReplayResult = { record: file, kind: rec.kind, seed: rec.seed, buggify: rec.buggify, recorded_verdict: rec.verdict, attempts: runs.length, reproduced, runs, summary: last, ...(hash !== undefined ? { hash } : {}) };
  if (o.json === true) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatSummary(last)}\n`);
    const n = runs.length;
    if (reproduced) process.stdout.write(`replay: FAIL — ${rec.verdict === 'fail' ? 'reproduced the failure' : 'the recorded run passed, this one failed'} after ${n} attempt${n === 1 ? '' : 's'}\n`);
    else if (rec.kind === 'sim' && rec.verdict === 'fail') process.stdout.write(`replay: PASS — did not reproduce the failure; the simulator is deterministic, so this xgsim is not the one that recorded it (hash ${hash?.replayed ?? '?'}, recorded ${rec.sim.hash})\n`);
    else process.stdout.write(`replay: PASS — ${rec.verdict === 'fail' ? `did not reproduce the failure in ${n} attempt${n === 1 ? '' : 's'} (real threads interleave differently each run; try --attempts ${Math.max(10, n * 5)})` : `passed ${n} attempt${n === 1 ? '' : 's'}`}\n`);
  }
  return { result, exitCode: reproduced ? 1 : 0 };
}
