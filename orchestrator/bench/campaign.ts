/**
 * The campaign rows of `xgsim bench`: the same sim jobs (same seeds, same
 * steps) through `xgsim campaign --spawn-hosts`, on one host with one core
 * for jobs (the floor), one host with every core, and two hosts sharing the
 * cores. Throughput is jobs per minute of the campaign's wall time, hosts'
 * start-up included, as a user running a campaign sees it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../hypervisor/host/worker-path.js';
import type { CampaignReport } from '../campaign/report-types.js';

export interface CampaignThroughput {
  jobs_per_min: number;
  wall_ms: number;
  /** Why the figure is not worth its name (a job that did not pass, the campaign's exit code). */
  problems: string[];
}

/** One campaign of `runs` sim jobs of `steps` decisions on `hosts` spawned hosts with `hostJobs` cores each. */
export async function campaignThroughput(o: { runs: number; steps: number; hosts: number; hostJobs: number; seed: number; redisUrl?: string | undefined }): Promise<CampaignThroughput> {
  const dir = mkdtempSync(join(tmpdir(), 'xgsim-bench-campaign-'));
  try {
    const plan = join(dir, 'plan.yaml');
    writeFileSync(plan, ['name: bench-sim', 'jobs:', `  - { kind: sim, steps: ${o.steps}, strategy: random, timeout: 10m }`, ''].join('\n'));
    const pool = `bench-${process.pid}-${Date.now().toString(36)}`;
    const args = [join(PROJECT_ROOT, 'bin', 'xgsim.js'), 'campaign', plan, '--runs', String(o.runs), '--seed', String(o.seed), '--spawn-hosts', String(o.hosts), '--host-jobs', String(o.hostJobs), '--pool', pool, '--dir', join(dir, 'out'), '--json'];
    const env = { ...process.env, XGSIM_BUGGIFY: '', ...(o.redisUrl !== undefined ? { REDIS_URL: o.redisUrl } : {}) };
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const code = await new Promise<number | null>((res) => child.on('close', res));
    const problems: string[] = [];
    let rep: CampaignReport | undefined;
    try {
      rep = JSON.parse(out) as CampaignReport;
    } catch {
      problems.push(`the campaign printed no report (exit ${code}): ${err.trim().split('\n').pop() ?? ''}`);
    }
    if (rep === undefined) return { jobs_per_min: 0, wall_ms: 0, problems };
    // A job that failed its checks was still run: it counts. One that was not run to its end does not.
    if (rep.accounted !== o.runs) problems.push(`${rep.accounted} of ${o.runs} jobs accounted`);
    if (rep.error + rep.timeout > 0) problems.push(`${rep.error + rep.timeout} jobs ended in error or timeout`);
    return { jobs_per_min: (rep.accounted * 60_000) / Math.max(rep.wall_ms, 1), wall_ms: rep.wall_ms, problems };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The machine's own parallel speed-up, the floor under a campaign's: the
 * wall time of one single-threaded process running a fixed CPU-bound loop
 * (integer hashing in registers, no allocation) against `n` such processes
 * at once, each the same loop. n on n cores that are cores gives ~n; a VM
 * whose cores share physical ones, or a machine others load, gives less,
 * and no campaign can beat it.
 */
export async function parallelSpeedup(n: number, iterations: number): Promise<{ speedup: number; one_ms: number; n_ms: number }> {
  const code = `let h = 0x811c9dc5; for (let i = 0; i < ${iterations}; i++) { h = Math.imul(h ^ i, 0x01000193) >>> 0; } if (h === 42) console.log('');`;
  const batch = async (k: number): Promise<number> => {
    const t0 = performance.now();
    await Promise.all(
      Array.from(
        { length: k },
        () =>
          new Promise<void>((res, rej) => {
            const c = spawn(process.execPath, ['--single-threaded', '-e', code], { stdio: 'ignore' });
            c.once('error', rej);
            c.once('exit', (code) => (code === 0 ? res() : rej(new Error(`parallelSpeedup: a loop process exited ${code}`))));
          }),
      ),
    );
    return performance.now() - t0;
  };
  await batch(1); // warm-up (the executable's pages)
  const one_ms = await batch(1);
  const n_ms = await batch(n);
  return { speedup: (n * one_ms) / n_ms, one_ms, n_ms };
}
