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
