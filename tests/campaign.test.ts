/**
 * Campaigns over the real Redis (REDIS_URL), through the real CLI: jobs
 * spread over `xgsim host` processes and each counted once, a host killed
 * with SIGKILL mid-job whose job is reclaimed and finished by the other,
 * BUGGIFY failures reported with replay commands that reproduce, bad jobs
 * that never take a host down, sim jobs (passing without a bug; with one,
 * a failing seed whose `xgsim sim` command and record reproduce it bit for
 * bit; stopped at their timeout), and bad records and plans that exit 2.
 *
 * Runs are tiny (200 ms stress runs of one guest with one vCPU) so the file
 * stays around a minute on two cores. Every test prints its campaign seed;
 * replay one with `SEED=<n> npx vitest run tests/campaign.test.ts -t "<name>"`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import type { CampaignReport } from '../orchestrator/campaign/campaign.js';
import { CampaignQueue, campaignKeys, poolKey } from '../transport/campaign-queue.js';
import { CAMPAIGN_WIRE_VERSION, type JobMsg, type ResultMsg } from '../transport/campaign-messages.js';
import { itIf, REDIS_URL, redisGate } from './redis-gate.js';
import { testSeed } from './harness.js';

const redisIt = itIf(await redisGate('tests/campaign.test.ts', 'the campaign tests'));

const BIN = join(PROJECT_ROOT, 'bin', 'xgsim.js');
const work = mkdtempSync(join(tmpdir(), 'xgsim-campaign-test-'));
const TINY = join(work, 'tiny.yaml');
writeFileSync(TINY, ['name: tiny', 'jobs:', '  - name: tiny', '    kind: stress-revoke', '    guests: 1', '    vcpus: 1', '    backend_vcpus: 1', '    duration: 200ms', '    timeout: 60s', ''].join('\n'));
/** Sim jobs: one seed of the deterministic simulator each, run on the host's own thread. */
const SIM = join(work, 'sim.yaml');
writeFileSync(SIM, ['name: sim', 'jobs:', '  - name: sim', '    kind: sim', '    steps: 5000', '    timeout: 60s', ''].join('\n'));
/** Each test its own pool, so no host of one test (or of anyone else on this Redis) takes another's jobs. */
const pool = (name: string): string => `test-${name}-${process.pid}-${Date.now().toString(36)}`;

const children = new Set<ChildProcess>();
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI to completion, in the background (hosts and campaigns run side by side). */
function xgsim(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<Ran>; stderrSoFar: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, env: { ...process.env, REDIS_URL, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<Ran>((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code: code ?? (signal !== null ? 128 : -1), stdout, stderr });
    });
  });
  return { child, done, stderrSoFar: () => stderr };
}

function xgsimSync(args: string[], env: Record<string, string> = {}): Ran {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, REDIS_URL, ...env }, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function until(what: string, cond: () => boolean, timeout_ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeout_ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The campaign's keys are gone and it left its pool. */
async function expectCleanedUp(id: string, p: string): Promise<void> {
  const r = new Redis(REDIS_URL);
  try {
    const k = campaignKeys(id);
    expect(await r.exists(k.jobs, k.results, k.alive, k.meta)).toBe(0);
    expect(await r.zscore(poolKey(p), id)).toBeNull();
  } finally {
    r.disconnect();
  }
}

function report(out: string): CampaignReport {
  return JSON.parse(out) as CampaignReport;
}

describe('xgsim campaign / host', () => {
  redisIt('8 jobs on 2 spawned hosts: every job accounted exactly once, merged latency, keys cleaned up', async () => {
    const seed = testSeed('campaign 8 jobs 2 hosts');
    const p = pool('eight');
    const r = await xgsim(['campaign', TINY, '--runs', '8', '--spawn-hosts', '2', '--seed', String(seed), '--pool', p, '--json', '--dir', join(work, 'eight')]).done;
    expect(r.code, r.stderr).toBe(0);
    const rep = report(r.stdout);
    expect(rep.seed).toBe(seed);
    expect(rep.accounted).toBe(8);
    expect(rep.missing).toEqual([]);
    expect(rep.pass).toBe(8);
    expect(rep.fail + rep.error + rep.timeout).toBe(0);
    expect(Object.values(rep.hosts).reduce((a, b) => a + b, 0)).toBe(8);
    expect(rep.templates['tiny']).toEqual({ kind: 'stress-revoke', runs: 8, failed: 0 });
    expect(rep.revoke_us.n).toBeGreaterThan(0);
    expect(rep.revoke_us.p50).toBeLessThanOrEqual(rep.revoke_us.p99);
    expect(rep.violations).toBe(0);
    expect(rep.verdict).toBe('pass');
    await expectCleanedUp(rep.campaign, p);
    // The spawned hosts log to files: JSON lines (pino), each job started and answered once, fields to grep by.
    const logs = readdirSync(join(work, 'eight')).filter((f) => /^host-.*\.log$/.test(f));
    expect(logs).toHaveLength(2);
    const lines = logs.flatMap((f) => readFileSync(join(work, 'eight', f), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { level: number; msg: string; name: string; campaign?: string; job?: number }));
    const jobLines = lines.filter((l) => l.campaign === rep.campaign && l.job !== undefined);
    expect(new Set(jobLines.filter((l) => / started/.test(l.msg)).map((l) => l.job)).size).toBe(8);
    expect(jobLines.filter((l) => / PASS in /.test(l.msg))).toHaveLength(8);
    expect(lines.every((l) => l.level === 30 && typeof l.name === 'string')).toBe(true);
  });

  redisIt('a host killed with SIGKILL mid-job: its job is reclaimed and finished by the other host, every job counted once', async () => {
    const seed = testSeed('campaign host killed');
    const p = pool('kill');
    const a = xgsim(['host', '--pool', p, '--name', 'victim']);
    const b = xgsim(['host', '--pool', p, '--name', 'survivor']);
    await until('both hosts to serve', () => a.stderrSoFar().includes('serving') && b.stderrSoFar().includes('serving'), 30_000);
    const c = xgsim(['campaign', TINY, '--runs', '6', '--seed', String(seed), '--pool', p, '--json', '--dir', join(work, 'kill')]);
    await until('the victim to start a job', () => a.stderrSoFar().includes(': started'), 60_000);
    const victimJob = /#(\d+) \(tiny, seed \d+\): started/.exec(a.stderrSoFar())?.[1];
    a.child.kill('SIGKILL');
    const r = await c.done;
    b.child.kill('SIGTERM');
    const bOut = await b.done;
    expect(r.code, r.stderr).toBe(0);
    const rep = report(r.stdout);
    expect(rep.accounted).toBe(6);
    expect(rep.missing).toEqual([]);
    expect(rep.pass).toBe(6);
    expect(rep.hosts).toEqual({ survivor: 6 });
    expect(rep.reclaimed).toBeGreaterThanOrEqual(1);
    expect(bOut.stderr).toMatch(new RegExp(`#${victimJob} \\(tiny, seed \\d+\\): started \\(reclaimed, delivery 2\\)`));
    expect(bOut.code).toBe(0);
    await expectCleanedUp(rep.campaign, p);
  });

  redisIt('with XGSIM_BUGGIFY=skip-tlb-flush-on-revoke the campaign exits 1 listing failing seeds, and replay of one reproduces it', async () => {
    const seed = testSeed('campaign buggify');
    const p = pool('bug');
    const dir = join(work, 'bug');
    const r = await xgsim(['campaign', TINY, '--runs', '4', '--spawn-hosts', '2', '--seed', String(seed), '--pool', p, '--dir', dir], { XGSIM_BUGGIFY: 'skip-tlb-flush-on-revoke' }).done;
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toContain('failing seeds');
    expect(r.stdout).toMatch(/verdict: FAIL/);
    const seeds = [...r.stdout.matchAll(/job \d+ {2}seed (\d+) {2}tiny {2}FAIL/g)].map((m) => Number(m[1]));
    expect(seeds.length).toBeGreaterThan(0);
    const rep = JSON.parse(readFileSync(join(dir, 'campaign.json'), 'utf8')) as CampaignReport;
    expect(rep.accounted).toBe(4);
    expect(rep.fail).toBe(seeds.length);
    expect(rep.failed_invariants['no_use_after_revoke']).toBeGreaterThan(0);
    const first = rep.failing.find((f) => f.record !== undefined);
    expect(first?.replay).toBe(`npx xgsim replay ${first?.record}`);
    expect(first?.direct).toContain('XGSIM_BUGGIFY=skip-tlb-flush-on-revoke npx xgsim stress revoke');
    expect(readdirSync(dir).filter((f) => /^job-\d+-seed-\d+\.json$/.test(f))).toHaveLength(seeds.length);
    // The campaign's page beside campaign.json: over, failing, with the replay command of the first failing seed.
    const html = readFileSync(join(dir, 'index.html'), 'utf8');
    expect(html).toMatch(/<body data-state="done">/);
    expect(html).toContain('class="verdict fail"');
    expect(html).toContain(`<code>npx xgsim replay ${first!.record!}</code>`);
    expect(html.match(/class="job job-[pf]" title="job/g)).toHaveLength(4);
    // The record carries the bug: no XGSIM_BUGGIFY needed to replay it.
    const rr = xgsimSync(['replay', first!.record!, '--attempts', '3'], { XGSIM_BUGGIFY: '' });
    expect(rr.code, rr.stderr).toBe(1);
    expect(rr.stdout).toMatch(/replay: FAIL — reproduced the failure after [123] attempts?/);
    await expectCleanedUp(rep.campaign, p);
  });

  redisIt('on a terminal (through `script`), every frame of the progress bar adds up: done + running + queued = runs', () => {
    const seed = testSeed('campaign pty bar');
    const cmd = [process.execPath, BIN, 'campaign', TINY, '--runs', '3', '--spawn-hosts', '1', '--seed', String(seed), '--pool', pool('pty'), '--dir', join(work, 'pty')].map((a) => `'${a}'`).join(' ');
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, REDIS_URL }, timeout: 120_000 });
    expect(r.status, r.stdout).toBe(0);
    const frames = [...r.stdout.matchAll(/(\d+)\/3 \| failed (\d+) \| running (\d+) \| queued (\d+) \| hosts \d+/g)].map((m) => m.slice(1, 5).map(Number));
    expect(frames.length).toBeGreaterThan(0);
    for (const [done, , running, queued] of frames) expect(done! + running! + queued!, JSON.stringify(frames)).toBe(3);
  });

  redisIt('--timeout with no host: the page shows the campaign running, then the campaign says it timed out, not interrupted', async () => {
    const seed = testSeed('campaign timeout');
    const dir = join(work, 'timeout');
    const c = xgsim(['campaign', TINY, '--runs', '3', '--seed', String(seed), '--pool', pool('timeout'), '--timeout', '4s', '--dir', dir]);
    const page = join(dir, 'index.html');
    await until('the campaign page', () => existsSync(page), 30_000);
    const running = readFileSync(page, 'utf8');
    expect(running).toMatch(/<body data-state="running">/);
    expect(running).toMatch(/http-equiv="refresh"/);
    expect(running).toMatch(/0<\/span>\/3 done \(<span class="">0 failed<\/span>\), 0 running, 3 queued/);
    const r = await c.done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/xgsim campaign: timed out \(--timeout 4\.0 s\) with 3 jobs not accounted/);
    expect(r.stderr).not.toMatch(/interrupted/i);
    expect(r.stdout).toMatch(/, TIMED OUT\n/);
    expect(r.stdout).toMatch(/verdict: FAIL \(0 of 3 runs failed, 3 not accounted: timed out\)/);
    const over = readFileSync(page, 'utf8');
    expect(over).toMatch(/<body data-state="done">/);
    expect(over).toContain('TIMED OUT');
    expect(over).toContain('3 never accounted');
    const rep = JSON.parse(readFileSync(join(dir, 'campaign.json'), 'utf8')) as CampaignReport;
    expect(rep).toMatchObject({ timed_out: true, interrupted: true, accounted: 0, missing: [0, 1, 2] });
  });

  redisIt('a host late renewing its own claim does not reclaim the job it runs (it would run it twice and count it twice)', async () => {
    const seed = testSeed('campaign own reclaim');
    const p = pool('ownreclaim');
    const id = `ownreclaim-${seed}-${Date.now().toString(36)}`;
    const q = await CampaignQueue.connect({ url: REDIS_URL, clientName: `test:${id}` });
    try {
      await q.create(id, p, {});
      await q.enqueue(id, [{ v: CAMPAIGN_WIRE_VERSION, campaign: id, template: 't', kind: 'sim', file: '', seed, buggify: [], timeout_ms: 60_000, index: 0, flags: {} }]);
      const t = await q.take(id, 'h1', 0);
      expect(t?.reclaimed).toBe(false);
      // Idle ≥ 0 ms: as if h1's refreshes had stalled past the reclaim time.
      expect(await q.reclaim(id, 'h1', 0, new Set([t!.id]))).toBeUndefined();
      // Without the held set, the same host would take its own job again; another host takes it over.
      expect((await q.reclaim(id, 'h1', 0))?.id).toBe(t!.id);
      const other = await q.reclaim(id, 'h2', 0, new Set());
      expect(other).toMatchObject({ id: t!.id, reclaimed: true });
    } finally {
      await q.finish(id, p);
      await q.close();
    }
  });

  redisIt('a host answers bad jobs with an error result, kills a job that outlives its timeout, and keeps serving', async () => {
    const seed = testSeed('campaign bad jobs');
    const p = pool('badjob');
    const id = `badjobs-${seed}-${Date.now().toString(36)}`;
    const q = await CampaignQueue.connect({ url: REDIS_URL, clientName: `test:${id}` });
    try {
      await q.create(id, p, {});
      const job: Omit<JobMsg, 'index' | 'flags'> = { v: CAMPAIGN_WIRE_VERSION, campaign: id, template: 't', kind: 'stress-revoke', file: '', seed, buggify: [], timeout_ms: 60_000 };
      await q.enqueue(id, [
        { ...job, index: 0, flags: { guests: '999', duration: '200ms' } },
        { ...job, index: 1, kind: 'up', file: 'examples/no-such-topology.yaml', flags: { duration: '200ms' } },
        { ...job, index: 2, flags: { warp: 'on' } },
        // Outlives its timeout: its host process is killed, and the host goes on.
        { ...job, index: 3, flags: { guests: '1', vcpus: '1', 'backend-vcpus': '1', duration: '60s' }, timeout_ms: 2500 },
      ]);
      await q.injectRawJob(id, Buffer.from([0xc1])); // not a job at all, and no identity: acked and dropped
      const h = await xgsim(['host', '--pool', p, '--name', 'sturdy', '--max-jobs', '5']).done;
      expect(h.code, h.stderr).toBe(0);
      const { items } = await q.readResults(id, '0-0', 0, 100);
      const results = items.filter((x): x is ResultMsg => 'v' in x).sort((x, y) => x.index - y.index);
      expect(results.map((x) => [x.index, x.status]), h.stderr).toEqual([[0, 'error'], [1, 'error'], [2, 'error'], [3, 'timeout']]);
      expect(results[0]!.error).toContain('--guests');
      expect(results[1]!.error).toContain('no-such-topology.yaml');
      expect(results[2]!.error).toContain('unknown flag `warp`');
      expect(results[3]!.elapsed_ms).toBeLessThan(20_000);
      expect(h.stderr).toContain('malformed');
      expect(await q.progress(id)).toMatchObject({ pending: 0, queued: 0 });
    } finally {
      await q.finish(id, p);
      await q.close();
    }
  });
});

/** Run a printed command (`[XGSIM_BUGGIFY=x ]npx xgsim …`) through bin/xgsim.js. */
function runPrinted(cmd: string, extra: string[] = []): Ran {
  const m = /^(?:XGSIM_BUGGIFY=(\S+) )?npx xgsim (.*)$/.exec(cmd);
  expect(m, cmd).not.toBeNull();
  return xgsimSync([...m![2]!.split(' '), ...extra], { XGSIM_BUGGIFY: m![1] ?? '' });
}

describe('sim jobs', () => {
  redisIt('a campaign of sim seeds without a bug passes, every job once, nothing merged into the Revoke latency', async () => {
    const seed = testSeed('campaign sim pass');
    const p = pool('sim');
    const r = await xgsim(['campaign', SIM, '--runs', '6', '--spawn-hosts', '2', '--seed', String(seed), '--pool', p, '--json', '--dir', join(work, 'sim')], { XGSIM_BUGGIFY: '' }).done;
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const rep = report(r.stdout);
    expect(rep).toMatchObject({ accounted: 6, missing: [], pass: 6, fail: 0, error: 0, timeout: 0, violations: 0, verdict: 'pass' });
    expect(rep.templates['sim']).toEqual({ kind: 'sim', runs: 6, failed: 0 });
    expect(rep.revoke_us.n).toBe(0);
    await expectCleanedUp(rep.campaign, p);
  });

  redisIt('with XGSIM_BUGGIFY a failing seed is reported with its xgsim sim command, which reproduces it bit for bit, and its record replays at attempt 1', async () => {
    const seed = testSeed('campaign sim buggify');
    const p = pool('simbug');
    const dir = join(work, 'simbug');
    const bug = 'skip-tlb-flush-on-revoke';
    const r = await xgsim(['campaign', SIM, '--runs', '4', '--spawn-hosts', '2', '--seed', String(seed), '--pool', p, '--dir', dir], { XGSIM_BUGGIFY: bug }).done;
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/job \d+ {2}seed \d+ {2}sim {2}FAIL/);
    expect(r.stdout).toMatch(/direct: XGSIM_BUGGIFY=skip-tlb-flush-on-revoke npx xgsim sim --seed \d+ --steps \d+/);
    const rep = JSON.parse(readFileSync(join(dir, 'campaign.json'), 'utf8')) as CampaignReport;
    expect(rep.accounted).toBe(4);
    expect(rep.fail).toBeGreaterThan(0);
    const f = rep.failing.find((x) => x.status === 'fail' && x.record !== undefined)!;
    expect(f.kind).toBe('sim');
    expect(f.error).toMatch(/^no_use_after_revoke: /);
    expect(f.replay).toBe(`npx xgsim replay ${f.record}`);
    const rec = JSON.parse(readFileSync(f.record!, 'utf8')) as { kind: string; seed: number; replay: string; sim: { hash: string; failed_at_step: number; reason: string } };
    expect(rec).toMatchObject({ kind: 'sim', seed: f.seed, replay: f.direct });
    // --horizon only when it differs from --steps: a failure found at step 5000 itself replays without it.
    const horizon = rec.sim.failed_at_step === 5000 ? '' : ' --horizon 5000';
    expect(f.direct).toBe(`XGSIM_BUGGIFY=${bug} npx xgsim sim --seed ${f.seed} --steps ${rec.sim.failed_at_step}${horizon} --strategy ${/--strategy (random|pct)/.exec(f.direct)?.[1]}`);
    // The printed command: the same run (same hash), failing at the same step for the same reason.
    const again = runPrinted(f.direct, ['--json']);
    expect(again.code, again.stderr).toBe(1);
    const j = JSON.parse(again.stdout) as { hash: string; failed_at_step: number };
    expect(j).toMatchObject({ hash: rec.sim.hash, failed_at_step: rec.sim.failed_at_step });
    expect(f.error).toBe(rec.sim.reason);
    // The record: deterministic, so attempt 1 is the same run; the bug comes from the record, not the environment.
    const rr = xgsimSync(['replay', f.record!, '--attempts', '5'], { XGSIM_BUGGIFY: '' });
    expect(rr.code, rr.stderr).toBe(1);
    expect(rr.stdout).toContain('replay: FAIL — reproduced the failure after 1 attempt');
    expect(rr.stderr).toContain(`hash ${rec.sim.hash} (the recorded one: the same run)`);
    await expectCleanedUp(rep.campaign, p);
  });

  redisIt('a sim job that holds its host\'s thread past the reclaim time keeps its claim: an idle host never takes it over', async () => {
    const seed = testSeed('campaign sim long');
    const p = pool('simlong');
    const dir = join(work, 'simlong');
    const plan = join(work, 'sim-long.yaml');
    // Far more steps than any machine runs in 8 s: each job holds its
    // thread until its timeout ends it — 8 s, past RECLAIM_IDLE_MS (5 s)
    // whatever the machine's speed. Its host renews its claim meanwhile.
    writeFileSync(plan, ['name: simlong', 'jobs:', '  - { kind: sim, steps: 10000000, strategy: random, timeout: 8s }', ''].join('\n'));
    const r = await xgsim(['campaign', plan, '--runs', '2', '--spawn-hosts', '3', '--seed', String(seed), '--pool', p, '--json', '--dir', dir], { XGSIM_BUGGIFY: '' }).done;
    expect(r.code, r.stderr + r.stdout).toBe(1); // two timeouts
    const rep = report(r.stdout);
    expect(rep).toMatchObject({ accounted: 2, timeout: 2, reclaimed: 0, duplicates_dropped: 0 });
    const logs = readdirSync(dir).filter((f) => f.startsWith('host-')).map((f) => readFileSync(join(dir, f), 'utf8')).join('');
    expect(logs).toMatch(/timed out after 8000 ms/); // it did outlast the reclaim time
    expect(logs).not.toContain('reclaimed');
    expect(logs).not.toContain('claim lost');
  });

  redisIt('a host answers bad sim jobs with an error, stops a sim run past its timeout, and keeps serving', async () => {
    const seed = testSeed('campaign sim bad jobs');
    const p = pool('simbad');
    const id = `simbad-${seed}-${Date.now().toString(36)}`;
    const q = await CampaignQueue.connect({ url: REDIS_URL, clientName: `test:${id}` });
    try {
      await q.create(id, p, {});
      const job: Omit<JobMsg, 'index' | 'flags'> = { v: CAMPAIGN_WIRE_VERSION, campaign: id, template: 't', kind: 'sim', file: '', seed, buggify: [], timeout_ms: 60_000 };
      await q.enqueue(id, [
        { ...job, index: 0, flags: { steps: '0' } },
        { ...job, index: 1, flags: { steps: '1000', strategy: 'fifo' } },
        { ...job, index: 2, file: 'examples/no-such-topology.yaml', flags: { steps: '1000' } },
        { ...job, index: 3, flags: { steps: '1000', duration: '1s' } },
        // Runs far past its timeout unless its host ends its thread.
        { ...job, index: 4, flags: { steps: '50000000', strategy: 'random' }, timeout_ms: 2000 },
        { ...job, index: 5, flags: { steps: '2000', strategy: 'pct' } },
      ]);
      const h = await xgsim(['host', '--pool', p, '--name', 'simhost', '--max-jobs', '6'], { XGSIM_BUGGIFY: '' }).done;
      expect(h.code, h.stderr).toBe(0);
      const { items } = await q.readResults(id, '0-0', 0, 100);
      const results = items.filter((x): x is ResultMsg => 'v' in x).sort((x, y) => x.index - y.index);
      expect(results.map((x) => [x.index, x.status]), h.stderr).toEqual([[0, 'error'], [1, 'error'], [2, 'error'], [3, 'error'], [4, 'timeout'], [5, 'pass']]);
      expect(results[0]!.error).toContain('--steps');
      expect(results[1]!.error).toContain('--strategy');
      expect(results[2]!.error).toContain('no-such-topology.yaml');
      expect(results[3]!.error).toContain('unknown flag `duration`');
      expect(results[4]!.error).toMatch(/timed out after 2000 ms \(stopped at step \d+\)/);
      expect(results[4]!.elapsed_ms).toBeLessThan(20_000);
      expect(results[5]!.revoke_hist).toBeNull();
      expect(results[5]!.summary).toMatchObject({ verdict: 'pass', transport: 'sim', violations: 0 });
      expect(await q.progress(id)).toMatchObject({ pending: 0, queued: 0 });
    } finally {
      await q.finish(id, p);
      await q.close();
    }
  });

  // Two sim jobs that each run until their timeout stops them: with two
  // cores for jobs both start before either ends; with one, the second
  // starts only after the first ended. The order of the host's log lines
  // shows it, whatever the machine's speed.
  for (const jobs of [2, 1]) {
    redisIt(`a host with --jobs ${jobs} runs ${jobs === 2 ? 'two sim jobs at once, each in a process of its own' : 'one sim job at a time'}`, async () => {
      const seed = testSeed(`campaign sim jobs ${jobs}`);
      const p = pool(`simjobs${jobs}`);
      const id = `simjobs${jobs}-${seed}-${Date.now().toString(36)}`;
      const q = await CampaignQueue.connect({ url: REDIS_URL, clientName: `test:${id}` });
      try {
        await q.create(id, p, {});
        const job: Omit<JobMsg, 'index'> = { v: CAMPAIGN_WIRE_VERSION, campaign: id, template: 't', kind: 'sim', file: '', seed, buggify: [], timeout_ms: 3000, flags: { steps: '50000000', strategy: 'random' } };
        await q.enqueue(id, [{ ...job, index: 0 }, { ...job, index: 1, seed: seed + 1 }]);
        const h = await xgsim(['host', '--pool', p, '--name', `jobs${jobs}`, '--max-jobs', '2', '--jobs', String(jobs)], { XGSIM_BUGGIFY: '' }).done;
        expect(h.code, h.stderr).toBe(0);
        const events = h.stderr.split('\n').flatMap((l) => (/: started/.test(l) ? ['start'] : /: TIMEOUT in/.test(l) ? ['end'] : []));
        expect(events).toEqual(jobs === 2 ? ['start', 'start', 'end', 'end'] : ['start', 'end', 'start', 'end']);
        const { items } = await q.readResults(id, '0-0', 0, 100);
        const results = items.filter((x): x is ResultMsg => 'v' in x);
        expect(results.map((x) => x.status)).toEqual(['timeout', 'timeout']);
        for (const r of results) expect(r.error).toMatch(/timed out after 3000 ms \(stopped at step \d+\)/);
      } finally {
        await q.finish(id, p);
        await q.close();
      }
    });
  }
});

describe('bad input exits 2 with one line', () => {
  const one = (r: Ran): void => {
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  };

  it('replay of a malformed record: file:line:col', () => {
    const bad = join(work, 'malformed.json');
    writeFileSync(bad, '{\n  "version": 1,\n  "kind": "stress-revoke",\n  "seed": 7\n  "flags": {}\n}\n');
    const r = xgsimSync(['replay', bad]);
    one(r);
    expect(r.stderr).toContain(`${bad}:5:3: not a run record: malformed JSON`);
  });

  it('replay of a record with a bad field, and of a missing record', () => {
    const bad = join(work, 'bad-kind.json');
    writeFileSync(bad, JSON.stringify({ version: 1, kind: 'stress-revok', seed: 7 }, null, 2));
    const r = xgsimSync(['replay', bad]);
    one(r);
    expect(r.stderr).toContain('did you mean `stress-revoke`');
    const m = xgsimSync(['replay', join(work, 'nope.json')]);
    one(m);
    expect(m.stderr).toContain('no such file');
  });

  it('campaign with a malformed plan, without --runs, or without Redis', () => {
    const r = xgsimSync(['campaign', 'examples/bad/campaign-unknown-job-key.yaml', '--runs', '2']);
    one(r);
    expect(r.stderr).toMatch(/campaign-unknown-job-key\.yaml:\d+:\d+: jobs\[0\]\./);
    const s = xgsimSync(['campaign', 'examples/bad/campaign-sim-bad-strategy.yaml', '--runs', '2']);
    one(s);
    expect(s.stderr).toContain('campaign-sim-bad-strategy.yaml:5:15: jobs[0].strategy: unknown strategy `pcts`; did you mean `pct`?');
    one(xgsimSync(['campaign', TINY]));
    const n = xgsimSync(['campaign', TINY, '--runs', '2', '--redis-url', 'redis://127.0.0.1:1']);
    one(n);
    expect(n.stderr).toContain('no Redis answers');
    one(xgsimSync(['host', '--redis-url', 'redis://127.0.0.1:1']));
  });
});
