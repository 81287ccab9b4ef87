/**
 * `xgsim campaign <plan.yaml> --runs N`: many seeded runs over Redis
 * (docs/semantics.md §1 "Multi-process and scale-out"; docs/campaigns.md).
 *
 * 1. Load the plan (config/campaign.ts) and draw N jobs from the campaign
 *    seed: job i's seed and template depend on the seed and i only. The
 *    BUGGIFY bugs of the environment are recorded in every job.
 * 2. Enqueue them on the campaign's jobs stream and announce the campaign
 *    in its pool (transport/campaign-queue.ts); `--spawn-hosts K` starts K
 *    local `xgsim host` processes, logging into the campaign's directory.
 * 3. Read results until every job index has one. A job is counted once:
 *    results are deduplicated by index (a job reclaimed from a host that was
 *    only slow, or a re-sent publish, runs or arrives twice).
 * 4. Report: pass/fail per job, failing seeds with their replay commands
 *    (records saved under `xgsim-runs/campaign-<id>/`; a sim job's direct
 *    command is the `xgsim sim … --seed N --steps D` that reproduces it bit
 *    for bit), Revoke latency percentiles of the merged histograms (real
 *    runs only: a sim run's latencies are simulated time), total violations. Exit 1 if any
 *    job failed, errored, timed out or was never accounted; 0 otherwise; 2
 *    for bad input or no Redis.
 */
import { availableParallelism } from 'node:os';
import { fmtUs, plural } from '../text.js';
import { redactUrl } from '../up/up.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { bugNames, parseBuggify } from '../../hypervisor/xen/buggify.js';
import { PROJECT_ROOT } from '../../hypervisor/host/worker-path.js';
import { CampaignQueue, ALIVE_TTL_MS } from '../../transport/campaign-queue.js';
import { CAMPAIGN_WIRE_VERSION, type JobMsg, type ResultMsg } from '../../transport/campaign-messages.js';
import { RedisIoreqBus } from '../../transport/redis-bus.js';
import { loadCampaignPlan, materializeJobs, type CampaignJob } from '../config/campaign.js';
import { UsageError } from '../errors.js';
import { HOST_RUNS_ENV, parsePool, redisUrlOf } from './host.js';
import { redisAclOf } from '../redis-url.js';
import { RunAcl } from '../../transport/redis-acl.js';

/** The ACL role of the hosts a `--redis-acl` campaign spawns. */
const HOST_ROLE = 'campaign-host';
import { parseRecord, recordDir, saveRecord } from '../runs/record.js';
import { directCommand } from '../runs/store.js';
import { histogramOf, histogramPercentiles, mergeHistograms, type LatencyHistogram } from '../stats.js';
import { hostRate, writeCampaignPage } from '../report/campaign-page.js';
import { fmt } from '../report/format.js';
import { loadPlots } from '../report/plot.js';
import type { CampaignReport, FailingJob, HostActivity } from './report-types.js';
import { parseDurationFlag, parseIntFlag, parseSeed } from '../up/run-flags.js';

export const MAX_RUNS = 100_000;
export const MAX_SPAWN_HOSTS = 32;
/** Progress lines when stderr is not a terminal. */
const STATUS_EVERY_MS = 5000;
/** Warn when no host has shown up for this long. */
const NO_HOST_WARNING_MS = 10_000;
/** The campaign page is written at most this often while results arrive. */
const PAGE_EVERY_MS = 1000;

export interface CampaignOptions {
  runs?: string;
  redisUrl?: string;
  spawnHosts?: string;
  /** `--host-jobs`: cores each spawned host gives its jobs (default: this machine's, shared among them). */
  hostJobs?: string;
  json?: boolean;
  timeout?: string;
  seed?: string;
  pool?: string;
  dir?: string;
  /** `--redis-acl`: the spawned hosts talk to Redis as a user of their own that reaches only the campaign keys. */
  redisAcl?: boolean;
}

export type { CampaignReport, FailingJob } from './report-types.js';

/** What the campaign has seen so far: buildReport turns it into a report, while it runs and at the end. */
interface Tally {
  id: string;
  name: string;
  file: string;
  seed: number;
  bugs: string[];
  pool: string;
  jobs: readonly CampaignJob[];
  seen: ReadonlyMap<number, ResultMsg>;
  counts: { pass: number; fail: number; error: number; timeout: number };
  failing: readonly FailingJob[];
  hist: LatencyHistogram;
  duplicates: number;
  malformed: number;
  wall_ms: number;
  /** Per host: when its results came (campaign clock) and how long its jobs ran. */
  activity: ReadonlyMap<string, HostActivity>;
  dir: string;
  interrupted: boolean;
  timedOut: boolean;
}

/** The report of what is in; jobs with no result are listed as missing (as failing, once the campaign is over). */
function buildReport(t: Tally, over: boolean): CampaignReport {
  const byIndex = new Map(t.jobs.map((j) => [j.index, j]));
  const missing = t.jobs.filter((j) => !t.seen.has(j.index)).map((j) => j.index);
  const failing = [...t.failing];
  if (over) {
    for (const i of missing.slice(0, 1000)) {
      const j = byIndex.get(i)!;
      failing.push({ index: i, seed: j.seed, template: j.template, kind: j.kind, status: 'missing', host: '', violations: 0, failed: [], error: 'no result', direct: directCommand(j, j.buggify) });
    }
  }
  failing.sort((a, b) => a.index - b.index);
  const hosts: Record<string, number> = {};
  const templates: CampaignReport['templates'] = {};
  const failedInvariants: Record<string, number> = {};
  let violations = 0;
  let reclaimed = 0;
  for (const j of t.jobs) templates[j.template] ??= { kind: j.kind, runs: 0, failed: 0 };
  for (const r of t.seen.values()) {
    hosts[r.host] = (hosts[r.host] ?? 0) + 1;
    const tp = templates[byIndex.get(r.index)!.template]!;
    tp.runs++;
    if (r.status !== 'pass') tp.failed++;
    if (r.deliveries > 1) reclaimed++;
    if (r.summary !== null) {
      violations += r.summary.violations;
      for (const inv of r.summary.failed) failedInvariants[inv] = (failedInvariants[inv] ?? 0) + 1;
    }
  }
  const c = t.counts;
  const ok = c.fail + c.error + c.timeout === 0 && missing.length === 0;
  return {
    campaign: t.id,
    name: t.name,
    file: t.file,
    seed: t.seed,
    buggify: t.bugs,
    pool: t.pool,
    runs: t.jobs.length,
    accounted: t.seen.size,
    missing: over ? missing : [],
    duplicates_dropped: t.duplicates,
    malformed_results: t.malformed,
    reclaimed,
    ...c,
    wall_ms: t.wall_ms,
    hosts,
    host_activity: Object.fromEntries(t.activity),
    templates,
    revoke_us: histogramPercentiles(t.hist),
    violations,
    failed_invariants: failedInvariants,
    failing,
    dir: t.dir,
    interrupted: t.interrupted,
    timed_out: t.timedOut,
    verdict: ok ? 'pass' : 'fail',
  };
}

/** A result of `host` arrived at `at_ms` (campaign clock) after `elapsed_ms` of work: widen the host's active span, add to its busy time. */
export function noteActivity(activity: Map<string, HostActivity>, host: string, at_ms: number, elapsed_ms: number): void {
  const start = Math.max(0, at_ms - Math.max(0, elapsed_ms));
  const a = activity.get(host) ?? { first_ms: start, last_ms: at_ms, active_ms: 0, busy_ms: 0 };
  a.first_ms = Math.round(Math.min(a.first_ms, start));
  a.last_ms = Math.round(Math.max(a.last_ms, at_ms));
  a.active_ms = a.last_ms - a.first_ms;
  a.busy_ms += Math.max(0, Math.round(elapsed_ms));
  activity.set(host, a);
}

/** One character per job index for the page's grid: '.' no result yet, else the status's first letter. */
function statusesOf(jobs: readonly CampaignJob[], seen: ReadonlyMap<number, ResultMsg>): string {
  return jobs.map((j) => seen.get(j.index)?.status[0] ?? '.').join('');
}

/**
 * The bar's counts, made to add up: done + running + queued = runs. The
 * queue's counts are read at most once a second and lag the results read
 * since (that gave `3/3 … queued 1`): queued is capped by what is not done,
 * and running is the rest — handed out, no result yet.
 */
export function progressCounts(runs: number, done: number, q: { queued: number; hosts: number }): { done: number; running: number; queued: number; hosts: number } {
  const queued = Math.max(0, Math.min(q.queued, runs - done));
  return { done, running: runs - done - queued, queued, hosts: q.hosts };
}

function fmtMs(ms: number): string {
  const s = ms / 1000;
  return s < 120 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export async function campaign(file: string, o: CampaignOptions): Promise<{ report: CampaignReport; exitCode: number }> {
  const runs = parseIntFlag('--runs', o.runs, 1, MAX_RUNS);
  if (runs === undefined) throw new UsageError('--runs: how many runs? e.g. --runs 200');
  const spawnHosts = parseIntFlag('--spawn-hosts', o.spawnHosts, 0, MAX_SPAWN_HOSTS) ?? 0;
  // Local hosts share this machine's cores rather than each taking all of them.
  const hostJobs = parseIntFlag('--host-jobs', o.hostJobs, 1, 1024) ?? Math.max(1, Math.floor(availableParallelism() / Math.max(spawnHosts, 1)));
  const deadline_ms = parseDurationFlag('--timeout', o.timeout);
  const pool = parsePool(o.pool);
  const url = redisUrlOf(o.redisUrl);
  const plan = loadCampaignPlan(file);
  const seed = parseSeed(o.seed) ?? plan.seed ?? Math.floor(Math.random() * 2 ** 31);
  const bugs = bugNames(parseBuggify(process.env['XGSIM_BUGGIFY']));
  const acl = redisAclOf(o);
  if (acl && spawnHosts === 0) throw new UsageError('--redis-acl: it makes the Redis user of the hosts this campaign spawns, and --spawn-hosts is 0');
  const jobs = materializeJobs(plan, { seed, runs, buggify: bugs });
  const overRedis = jobs.find((j) => j.flags['transport'] === 'redis');
  if (acl && overRedis !== undefined) throw new UsageError(`--redis-acl: job template \`${overRedis.template}\` asks for the redis transport, and the hosts of a campaign with --redis-acl hold only the campaign keys (their runs go over the ring)`);
  if (!(await RedisIoreqBus.reachable(url, 1000))) throw new UsageError(`no Redis answers at ${redactUrl(url)} (set --redis-url or REDIS_URL)`);

  const id = `${plan.name}-${seed}-${Date.now().toString(36)}`;
  const dir = o.dir ?? join(recordDir(), `campaign-${id}`);
  const byIndex = new Map(jobs.map((j) => [j.index, j]));
  const kinds = new Map<string, number>();
  for (const j of jobs) kinds.set(j.template, (kinds.get(j.template) ?? 0) + 1);
  const say = (s: string): void => void process.stderr.write(`${s}\n`);
  say(
    `xgsim campaign ${file}: ${plan.name}, ${plural(runs, 'run')}, seed ${seed}, id ${id}, pool \`${pool}\`, Redis ${redactUrl(url)}${bugs.length > 0 ? `, BUGGIFY ${bugs.join(',')}` : ''}\n` +
      `  jobs: ${[...kinds].map(([t, n]) => `${t} (${byTemplate(t)}) ×${n}`).join(', ')}`,
  );
  function byTemplate(t: string): string {
    return plan.templates.find((x) => x.name === t)?.kind ?? '?';
  }

  // The spawned hosts' user: the pool's list and the campaigns' keys, nothing of any run (held in memory, handed over through the environment).
  let users: RunAcl | undefined;
  if (acl) {
    try {
      users = await RunAcl.create({ url, namespace: `xgsim:campaign:${id}`, roles: { [HOST_ROLE]: { kind: 'campaign', pool } } });
    } catch (e) {
      throw new UsageError(`--redis-acl: ${e instanceof Error ? e.message : String(e)}`);
    }
    say(`  spawned hosts as Redis user ${users.user(HOST_ROLE)}: the campaign keys only; their runs go over the ring transport`);
  }
  const hostUrl = users?.url(HOST_ROLE) ?? url;
  const queue = await CampaignQueue.connect({ url, clientName: `xgsim-campaign:${id}` });
  const t0 = performance.now();
  const children: ChildProcess[] = [];
  let interrupted = false;
  let timedOut = false;
  let wake: (() => void) | undefined;
  const onSigint = (): void => {
    if (interrupted) return;
    interrupted = true;
    say('\nxgsim campaign: interrupted (Ctrl-C); reporting what is in');
    wake?.();
  };
  process.on('SIGINT', onSigint);
  let alive: NodeJS.Timeout | undefined;
  let finalPage: (() => void) | undefined;

  // What the results say, each job counted once.
  const seen = new Map<number, ResultMsg>();
  const activity = new Map<string, HostActivity>();
  let duplicates = 0;
  let malformed = 0;
  let hist: LatencyHistogram = histogramOf([]);
  const failing: FailingJob[] = [];
  const counts = { pass: 0, fail: 0, error: 0, timeout: 0 };

  try {
    await queue.create(id, pool, { name: plan.name, file, runs: String(runs), seed: String(seed), pool, created: new Date().toISOString() });
    alive = setInterval(() => void queue.keepAlive(id).catch(() => undefined), ALIVE_TTL_MS / 3);
    await queue.enqueue(id, jobs.map((j) => toWire(id, j)));
    await loadPlots();
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < spawnHosts; i++) children.push(spawnHost(i));
    if (spawnHosts > 0) say(`  started ${spawnHosts} local host${spawnHosts === 1 ? '' : 's'}; their logs: ${join(dir, 'host-*.log')}`);

    const tty = process.stderr.isTTY === true;
    const multi = tty ? new cliProgress.MultiBar({ format: 'campaign [{bar}] {value}/{total} | failed {failed} | running {running} | queued {queued} | hosts {hosts}', stream: process.stderr, hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic) : undefined;
    const bar = multi?.create(runs, 0, { failed: 0, running: 0, queued: runs, hosts: 0 });
    const tally = (): Tally => ({ id, name: plan.name, file, seed, bugs, pool, jobs, seen, counts, failing, hist, duplicates, malformed, wall_ms: Math.round(performance.now() - t0), activity, dir, interrupted, timedOut });
    let lastPage = 0;
    const page = (running: boolean, force: boolean): void => {
      const now = performance.now();
      if (!force && now - lastPage < PAGE_EVERY_MS) return;
      lastPage = now;
      const st = { report: buildReport(tally(), !running), running, progress: progressCounts(runs, seen.size, progress), statuses: statusesOf(jobs, seen), hist };
      try {
        writeCampaignPage(dir, st);
      } catch (e) {
        log(`xgsim: campaign page not written: ${e instanceof Error ? e.message : String(e)}`);
      }
    };
    say(`  page: ${join(dir, 'index.html')} (refreshed as results arrive)`);
    const log = (s: string): void => (multi !== undefined ? multi.log(`${s}\n`) : say(s));
    let lastStatus = performance.now();
    let lastProgress = 0;
    let everHost = false;
    let warned = false;
    let cursor = '0-0';
    let progress = { pending: 0, queued: runs, hosts: 0 };
    page(true, true);

    while (seen.size < runs && !interrupted) {
      if (deadline_ms !== undefined && performance.now() - t0 > deadline_ms) {
        log(`xgsim campaign: timed out (--timeout ${fmtMs(deadline_ms)}) with ${plural(runs - seen.size, 'job')} not accounted`);
        interrupted = true;
        timedOut = true;
        break;
      }
      const batch = await Promise.race([queue.readResults(id, cursor, 1000, 256), new Promise<undefined>((r) => (wake = () => r(undefined)))]);
      wake = undefined;
      if (batch === undefined) break;
      cursor = batch.cursor;
      for (const r of batch.items) {
        if (!('v' in r)) {
          malformed++;
          log(`  malformed result ignored: ${r.error}`);
          continue;
        }
        if (r.campaign !== id || !byIndex.has(r.index)) {
          malformed++;
          log(`  result for an unknown job ignored: ${r.campaign}#${r.index}`);
          continue;
        }
        if (seen.has(r.index)) {
          duplicates++;
          continue;
        }
        seen.set(r.index, r);
        noteActivity(activity, r.host, performance.now() - t0, r.elapsed_ms);
        counts[r.status]++;
        if (r.revoke_hist !== null) {
          try {
            hist = mergeHistograms(hist, r.revoke_hist);
          } catch (e) {
            // A histogram that does not decode (a stranger's, a broken host): the job still counts, its latencies do not.
            log(`  revoke latencies of ${r.campaign}#${r.index} ignored: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
        if (r.status !== 'pass') {
          const f = failingOf(r);
          failing.push(f);
          // A sim job's own command replays it bit for bit: that is the one to show.
          const again = f.kind === 'sim' && f.status === 'fail' ? f.direct : f.replay;
          log(`  job ${f.index} (${f.template}, seed ${f.seed}) ${f.status.toUpperCase()} on ${f.host}${f.violations > 0 && f.kind !== 'sim' ? `: ${f.violations} violations (${f.failed.join(', ')})` : f.error !== '' ? `: ${f.error}` : ''}${again !== undefined ? ` — ${again}` : ''}`);
        }
      }
      const now = performance.now();
      if (now - lastProgress >= 1000) {
        lastProgress = now;
        progress = await queue.progress(id).catch(() => progress);
        if (progress.hosts > 0 || seen.size > 0) everHost = true;
        if (!everHost && !warned && now - t0 > NO_HOST_WARNING_MS) {
          warned = true;
          log(`  no host has joined yet: start \`xgsim host --pool ${pool}${o.redisUrl !== undefined ? ` --redis-url ${redactUrl(url)}` : ''}\` (here or on other machines), or use --spawn-hosts`);
        }
      }
      const failed = counts.fail + counts.error + counts.timeout;
      const shown = progressCounts(runs, seen.size, progress);
      bar?.update(seen.size, { failed, running: shown.running, queued: shown.queued, hosts: shown.hosts });
      if (bar === undefined && now - lastStatus >= STATUS_EVERY_MS) {
        lastStatus = now;
        log(`  ${fmtMs(now - t0)}: ${seen.size}/${runs} done (${failed} failed), ${shown.running} running, ${shown.queued} queued, ${plural(shown.hosts, 'host')}`);
      }
      if (batch.items.length > 0) page(true, false);
    }
    multi?.stop();
    finalPage = () => page(false, true);
  } finally {
    process.off('SIGINT', onSigint);
    clearInterval(alive);
    await stopHosts(children);
    await queue.finish(id, pool).catch(() => undefined);
    await queue.close();
    if (users !== undefined && !(await users.remove())) say(`  the Redis user ${users.user(HOST_ROLE)} could not be deleted (Redis did not answer)`);
  }

  const report = buildReport({ id, name: plan.name, file, seed, bugs, pool, jobs, seen, counts, failing, hist, duplicates, malformed, wall_ms: Math.round(performance.now() - t0), activity, dir, interrupted, timedOut }, true);
  const ok = report.verdict === 'pass';
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'campaign.json'), `${JSON.stringify(report, null, 2)}\n`);
    finalPage?.();
  } catch (e) {
    say(`xgsim: campaign: could not write ${join(dir, 'campaign.json')}: ${e instanceof Error ? e.message : String(e)}`);
  }
  process.stdout.write(o.json === true ? `${JSON.stringify(report, null, 2)}\n` : `${formatCampaign(report)}\n`);
  return { report, exitCode: ok ? 0 : 1 };

  function failingOf(r: ResultMsg): FailingJob {
    const j = byIndex.get(r.index)!;
    const f: FailingJob = {
      index: r.index,
      seed: j.seed,
      template: j.template,
      kind: j.kind,
      status: r.status === 'pass' ? 'fail' : r.status,
      host: r.host,
      violations: r.summary?.violations ?? 0,
      failed: r.summary?.failed ?? [],
      error: r.error !== '' ? r.error : (r.summary?.errors[0] ?? ''),
      direct: directCommand(j, j.buggify),
    };
    if (r.record !== null) {
      const where = join(dir, `job-${r.index}-seed-${j.seed}.json`);
      try {
        // Re-validated: it came over the wire from a host that may run another version.
        const rec = parseRecord(JSON.stringify(r.record), `result of job ${r.index}`);
        saveRecord(rec, where);
        f.record = where;
        f.replay = `npx xgsim replay ${where}`;
        f.direct = rec.replay;
      } catch (e) {
        f.error = `${f.error !== '' ? `${f.error}; ` : ''}record not saved: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
    return f;
  }

  function spawnHost(i: number): ChildProcess {
    const name = `${id}-h${i + 1}`.slice(-128);
    const logFile = join(dir, `host-${i + 1}.log`);
    const fd = openSync(logFile, 'a');
    // The URL (and its password) through the environment, not the command line `ps` shows.
    const env = { ...process.env, REDIS_URL: hostUrl, ...(users !== undefined ? { [HOST_RUNS_ENV]: 'ring' } : {}) };
    const c = spawn(process.execPath, [join(PROJECT_ROOT, 'bin', 'xgsim.js'), 'host', '--pool', pool, '--name', name, '--jobs', String(hostJobs)], { stdio: ['ignore', fd, fd], env });
    closeSync(fd);
    c.on('exit', (code, signal) => {
      if (code !== 0 && signal === null) say(`  host ${name} exited with code ${code}; see ${logFile}`);
    });
    return c;
  }
}

function toWire(id: string, j: CampaignJob): JobMsg {
  return { v: CAMPAIGN_WIRE_VERSION, campaign: id, index: j.index, template: j.template, kind: j.kind, file: j.file ?? '', flags: { ...j.flags }, seed: j.seed, buggify: [...j.buggify], timeout_ms: j.timeout_ms };
}

/** SIGTERM the spawned hosts (each gives back a job in hand), then SIGKILL the ones still there after 10 s. */
async function stopHosts(children: readonly ChildProcess[]): Promise<void> {
  const live = children.filter((c) => c.exitCode === null && c.signalCode === null);
  if (live.length === 0) return;
  const exited = Promise.all(live.map((c) => new Promise<void>((r) => c.once('exit', () => r()))));
  for (const c of live) c.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 10_000)))]);
  clearTimeout(timer);
  if (late) for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

export function formatCampaign(r: CampaignReport): string {
  const lines: string[] = [];
  const failed = r.fail + r.error + r.timeout;
  lines.push(`campaign ${r.name} (${r.campaign}): ${plural(r.runs, 'run')}, seed ${r.seed}${r.buggify.length > 0 ? `, BUGGIFY ${r.buggify.join(',')}` : ''}, ${fmtMs(r.wall_ms)}${r.timed_out ? ', TIMED OUT' : r.interrupted ? ', INTERRUPTED' : ''}`);
  lines.push(`  accounted: ${r.accounted}/${r.runs} (each once; ${r.duplicates_dropped} duplicate results dropped, ${r.reclaimed} reclaimed from hosts that died or gave up${r.malformed_results > 0 ? `, ${r.malformed_results} malformed results ignored` : ''})`);
  lines.push(`  pass ${r.pass}   fail ${r.fail}   error ${r.error}   timeout ${r.timeout}${r.missing.length > 0 ? `   missing ${r.missing.length}` : ''}`);
  lines.push(`  jobs: ${Object.entries(r.templates).map(([t, v]) => `${t} (${v.kind}) ${v.runs}${v.failed > 0 ? `, ${v.failed} failed` : ''}`).join('; ')}`);
  lines.push(`  hosts: ${Object.entries(r.hosts).map(([h, n]) => `${h} ${n} (${fmt(hostRate(r, h).per_min)} runs/min)`).join(', ') || 'none'}`);
  if (r.revoke_us.n > 0) lines.push(`  revoke latency over all runs (${r.revoke_us.n} revokes, merged HdrHistograms, 3 significant digits): p50 ${fmtUs(r.revoke_us.p50)}, p99 ${fmtUs(r.revoke_us.p99)}, max ${fmtUs(r.revoke_us.max)}`);
  lines.push(`  violations: ${r.violations}${Object.keys(r.failed_invariants).length > 0 ? ` (${Object.entries(r.failed_invariants).map(([k, n]) => `${k} in ${plural(n, 'run')}`).join(', ')})` : ''}`);
  if (r.failing.length > 0) {
    const missing = r.failing.filter((f) => f.status === 'missing').length;
    lines.push(missing === 0 ? `failing seeds (${r.failing.length}):` : `failing seeds and jobs without a result (${r.failing.length - missing} + ${missing}):`);
    for (const f of r.failing.slice(0, 50)) {
      lines.push(`  job ${f.index}  seed ${f.seed}  ${f.template}  ${f.status.toUpperCase()}${f.host !== '' ? ` on ${f.host}` : ''}${f.violations > 0 ? `  ${f.violations} violations (${f.failed.join(', ')})` : ''}${f.error !== '' && (f.violations === 0 || f.kind === 'sim') ? `  ${f.error}` : ''}`);
      if (f.replay !== undefined) lines.push(`    replay: ${f.replay}`);
      lines.push(`    direct: ${f.direct}`);
    }
    if (r.failing.length > 50) lines.push(`  … and ${r.failing.length - 50} more (see ${join(r.dir, 'campaign.json')})`);
  }
  lines.push(`verdict: ${r.verdict.toUpperCase()}${failed + r.missing.length > 0 ? ` (${failed} of ${plural(r.runs, 'run')} failed${r.missing.length > 0 ? `, ${r.missing.length} not accounted${r.timed_out ? ': timed out' : ''}` : ''})` : ''}   report: ${join(r.dir, 'index.html')}, ${join(r.dir, 'campaign.json')}`);
  return lines.join('\n');
}
