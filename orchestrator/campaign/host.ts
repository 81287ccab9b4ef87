/**
 * `xgsim host [--redis-url URL] [--name N] [--max-jobs M] [--pool P] [--jobs J]`:
 * a campaign worker (docs/semantics.md §1). It joins the consumer group of
 * every live campaign in its pool, takes jobs while it has cores for them,
 * runs each quietly (the same up / stress revoke / chaos functions as the
 * command line, runs/store.ts), publishes the result and acknowledges the
 * job (transport/campaign-queue.ts has the stream protocol).
 *
 * - Cores: `--jobs` (default: this machine's) is a budget. A sim job takes
 *   one core and runs in a process of the host's sim pool (sim-procs.ts); a
 *   real-thread job (up, stress revoke, chaos) runs in forked host
 *   processes and takes the pCPUs it asks for: `--pcpus n` takes n, any
 *   other run all of them (its vCPUs are scheduled on one pCPU per core).
 *   A job taken when the cores it needs are busy waits for them, its claim
 *   renewed; no other job is taken meanwhile, so a real-thread job is not
 *   starved by sim jobs.
 * - Jobs of dead hosts first: each round it tries XAUTOCLAIM on every live
 *   campaign before it asks for new jobs.
 * - While a job runs, its claim is refreshed every CLAIM_REFRESH_MS, so a
 *   live job is never taken over however long it runs.
 * - A bad job (a flag out of range, a missing file, an entry that does not
 *   decode) is answered with status 'error'; it never stops the host.
 * - A job that outlives its timeout is answered 'timeout': a real-thread
 *   job's host processes are killed (that job's, not the others'), a sim
 *   job's process is ended (the result says at which step).
 * - Ctrl-C or SIGTERM: the jobs in hand are stopped and given back (any host
 *   reclaims them at once), then the host leaves; a sim job that had ended
 *   is answered. A second Ctrl-C kills the jobs' processes and exits at once.
 * - A sim job's result: pass, fail (error = the first violation or error),
 *   or error for a run the simulator could not finish (stuck), with no
 *   Revoke histogram (simulated time).
 */
import type { ChildProcess } from 'node:child_process';
import { availableParallelism, hostname } from 'node:os';
import { NO_BUGS, parseBuggify } from '../../hypervisor/xen/buggify.js';
import { CampaignQueue, CLAIM_REFRESH_MS, MAX_DELIVERIES, validName, type TakenJob } from '../../transport/campaign-queue.js';
import { CAMPAIGN_WIRE_VERSION, type ResultMsg, type ResultStatus, type ResultSummary } from '../../transport/campaign-messages.js';
import { RedisIoreqBus } from '../../transport/redis-bus.js';
import { UsageError } from '../errors.js';
import { processLog, type LogFields } from '../log.js';
import { redisUrlOf } from '../redis-url.js';
export { redisUrlOf };
import { runSpec, type RunSpec } from '../runs/store.js';
import { plural } from '../text.js';
import { errorText } from './job-error.js';
import { SimProcessPool, type SimRunEnd } from './sim-procs.js';
import type { Summary } from '../up/summary.js';
import { jobChildren, liveHostChildren, redactUrl, type RunOutcome } from '../up/up.js';

import { DEFAULT_POOL } from '../cli-words.js';
export { DEFAULT_POOL };
/** After a job's timeout, how long its run may take to wind down before the host stops waiting for it. */
const TIMEOUT_GRACE_MS = 10_000;
/** How long a host with no campaign to serve waits before it looks again. */
const IDLE_POLL_MS = 1000;
/** XREADGROUP BLOCK: bounds how late a stop request is noticed. */
const TAKE_BLOCK_MS = 1000;

export interface HostCommandOptions {
  redisUrl?: string;
  name?: string;
  maxJobs?: string;
  pool?: string;
  jobs?: string;
}


export function parsePool(s: string | undefined): string {
  const pool = s ?? DEFAULT_POOL;
  if (!validName(pool)) throw new UsageError(`--pool: expected 1–128 letters, digits or _.:@-, got \`${pool}\``);
  return pool;
}

/** Trim a run's Summary to what the campaign aggregates. */
export function resultSummary(s: Summary): ResultSummary {
  const failed = Object.entries(s.invariants).filter(([, v]) => v.violations > 0).map(([k]) => k);
  return {
    // An interrupted or unknown run is the job's error (host.ts), not a finding: its trimmed verdict is not a pass.
    verdict: s.verdict === 'pass' ? 'pass' : 'fail',
    transport: s.transport,
    duration_ms: s.duration_ms,
    violations: Object.values(s.invariants).reduce((a, v) => a + v.violations, 0),
    failed,
    errors: s.errors.slice(0, 3).map((e) => (e.split('\n')[0] ?? '').slice(0, 4000)),
    revokes: s.ops['revoke'] ?? 0,
    accesses: s.ops['accesses'] ?? 0,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Set by `xgsim campaign --redis-acl` for the hosts it spawns: their Redis
 * user holds only the campaign keys (transport/redis-acl.ts), so their runs
 * go over the ring transport.
 */
export const HOST_RUNS_ENV = 'XGSIM_HOST_RUNS';

export async function hostCommand(o: HostCommandOptions): Promise<{ exitCode: number }> {
  const url = redisUrlOf(o.redisUrl);
  const ringOnly = process.env[HOST_RUNS_ENV] === 'ring';
  const pool = parsePool(o.pool);
  const name = o.name ?? `${hostname()}-${process.pid}`;
  if (!validName(name)) throw new UsageError(`--name: expected 1–128 letters, digits or _.:@-, got \`${name}\``);
  let maxJobs = Number.POSITIVE_INFINITY;
  if (o.maxJobs !== undefined) {
    if (!/^\d+$/.test(o.maxJobs) || Number(o.maxJobs) < 1) throw new UsageError(`--max-jobs: expected a positive integer, got \`${o.maxJobs}\``);
    maxJobs = Number(o.maxJobs);
  }
  const slots = parseJobsFlag(o.jobs);
  if (!(await RedisIoreqBus.reachable(url, 1000))) throw new UsageError(`no Redis answers at ${redactUrl(url)} (set --redis-url or REDIS_URL)`);
  const queue = await CampaignQueue.connect({ url, clientName: `xgsim-host:${name}` });
  const log = processLog(`xgsim host ${name}`, name);
  const say = (s: string, fields?: LogFields): void => log.info(s, fields);

  // The host's cores as a budget: a sim job takes one, a real-thread job
  // the pCPUs it asks for (all of them unless it says --pcpus n).
  let free = slots;
  let waiters: (() => void)[] = [];
  const acquire = async (n: number): Promise<void> => {
    while (free < n) await new Promise<void>((r) => waiters.push(r));
    free -= n;
  };
  const release = (n: number): void => {
    free += n;
    const w = waiters;
    waiters = [];
    for (const wake of w) wake();
  };
  const inFlight = new Set<Promise<void>>();
  // Sim jobs run in processes of their own (sim-procs.ts), one per core; made on the first one.
  let simPool: SimProcessPool | undefined;
  const stopSims = new AbortController();

  let stopping = false;
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++;
    if (interrupts > 1) {
      say(`${sig} again: killing the jobs' processes and leaving now`);
      for (const c of liveHostChildren) c.kill('SIGKILL');
      for (const c of simPool?.children ?? []) c.kill('SIGKILL');
      process.exit(130);
    }
    stopping = true;
    stopSims.abort();
    release(0);
    say(inFlight.size > 0 ? `${sig}: stopping the ${plural(inFlight.size, 'job')} in hand and giving them back (again to kill them now)` : `${sig}: leaving`);
    // runHost forwards Ctrl-C and SIGTERM to its children itself.
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  say(`serving pool \`${pool}\` at ${redactUrl(url)}, ${plural(slots, 'core')} for jobs${Number.isFinite(maxJobs) ? `, at most ${maxJobs} jobs` : ''}`);
  let done = 0;
  let taken = 0;
  // The entry ids of the jobs this host runs, by campaign: never reclaimed from itself (queue.reclaim).
  const held = new Map<string, Set<string>>();
  const heldOf = (campaign: string): Set<string> => {
    let h = held.get(campaign);
    if (h === undefined) held.set(campaign, (h = new Set()));
    return h;
  };
  try {
    while (!stopping && taken < maxJobs) {
      await acquire(1);
      if (stopping) {
        release(1);
        break;
      }
      const ids = await queue.campaigns(pool);
      if (ids.length === 0) {
        release(1);
        await sleep(IDLE_POLL_MS);
        continue;
      }
      let t: TakenJob | undefined;
      for (const id of ids) if (t === undefined) t = await queue.reclaim(id, name, undefined, heldOf(id));
      for (const id of ids) if (t === undefined) t = await queue.take(id, name, 0);
      // Nothing anywhere: wait on the oldest campaign (the others are polled again next round).
      if (t === undefined && ids[0] !== undefined) t = await queue.take(ids[0], name, TAKE_BLOCK_MS);
      if (t === undefined) {
        release(1);
        continue;
      }
      if (stopping) {
        await queue.giveBack(t, name);
        release(1);
        break;
      }
      taken++;
      const job = t;
      heldOf(job.campaign).add(job.id);
      const cost = jobCost(job, slots);
      const claim = keepClaim(job);
      // Hold the claim while the job waits for the cores it needs.
      await acquire(cost - 1);
      const p: Promise<void> = runJob(job, claim)
        .then(
          (answered) => {
            if (answered) done++;
          },
          (e: unknown) => say(`job ${job.campaign} ${job.id}: ${errorText(e)}`, { campaign: job.campaign, event: 'job-failed' }),
        )
        .finally(() => {
          claim.stop();
          release(cost);
          const h = heldOf(job.campaign);
          h.delete(job.id);
          if (h.size === 0) held.delete(job.campaign);
          inFlight.delete(p);
        });
      inFlight.add(p);
    }
    await Promise.all([...inFlight]);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await simPool?.destroy();
    await queue.close();
  }
  say(`done: ${done} job${done === 1 ? '' : 's'} answered`);
  return { exitCode: 0 };

  /** Renews a taken job's claim every CLAIM_REFRESH_MS until stopped. */
  function keepClaim(t: TakenJob): { lost: () => boolean; stop: () => void; tag: (s: string) => void } {
    let lost = false;
    let stopped = false;
    let tag = `job ${t.campaign} ${t.id}`;
    const refresher = setInterval(() => {
      queue.refresh(t, name).then(
        (mine) => {
          // A refresh that raced the job's own answer (or give-back) finds it acknowledged: not lost.
          if (!mine && !lost && !stopped) {
            lost = true;
            say(`${tag}: claim lost (another host took it over, or the campaign ended); finishing anyway`, { campaign: t.campaign });
          }
        },
        (e: unknown) => say(`${tag}: claim refresh failed: ${e instanceof Error ? e.message : String(e)}`, { campaign: t.campaign }),
      );
    }, CLAIM_REFRESH_MS);
    return {
      lost: () => lost,
      stop: () => {
        stopped = true;
        clearInterval(refresher);
      },
      tag: (s) => (tag = s),
    };
  }

  /** Runs and answers one job; false when it was given back instead. */
  async function runJob(t: TakenJob, claim: ReturnType<typeof keepClaim>): Promise<boolean> {
    const t0 = performance.now();
    const base = { v: CAMPAIGN_WIRE_VERSION, campaign: t.campaign, host: name, deliveries: t.deliveries } as const;
    const finish = async (index: number, status: ResultStatus, error: string, outcome?: RunOutcome): Promise<void> => {
      claim.stop(); // the answer ends the claim: a refresh after it would find the job acknowledged
      // A stuck sim run's end-of-run checks saw half-done hypercalls: its summary says nothing either way.
      const judged = outcome !== undefined && outcome.sim?.verdict !== 'stuck';
      const result: ResultMsg = {
        ...base,
        index,
        status,
        elapsed_ms: Math.round(performance.now() - t0),
        error: error.slice(0, 4000),
        summary: judged ? resultSummary(outcome.summary) : null,
        // Sim latencies are simulated time: never merged with real runs'.
        revoke_hist: judged && outcome.sim === undefined ? outcome.revoke_hist : null,
        record: outcome !== undefined && status === 'fail' ? (JSON.parse(JSON.stringify(outcome.record)) as Record<string, unknown>) : null,
      };
      if (!(await queue.complete(t, result))) say(`campaign ${t.campaign} is gone; result of job ${index} dropped`, { campaign: t.campaign, job: index, event: 'result-dropped' });
    };
    const job = t.job;
    if (!('v' in job)) {
      // An entry that does not decode: answer it if we can tell whose it is, else drop it.
      if (job.identity !== undefined && job.identity.campaign === t.campaign) {
        say(`job ${t.campaign}#${job.identity.index}: malformed (${job.error}); answered 'error'`, { campaign: t.campaign, job: job.identity.index, event: 'malformed-job' });
        await finish(job.identity.index, 'error', `malformed job: ${job.error}`);
      } else {
        say(`entry ${t.id} of campaign ${t.campaign}: malformed (${job.error}); dropped`, { campaign: t.campaign, event: 'malformed-entry' });
        await queue.drop(t);
      }
      return true;
    }
    const tag = `job ${t.campaign}#${job.index} (${job.template}, seed ${job.seed})`;
    claim.tag(tag);
    const jf: LogFields = { campaign: t.campaign, job: job.index, template: job.template, seed: job.seed };
    if (job.campaign !== t.campaign) {
      await finish(job.index, 'error', `job of campaign ${job.campaign} found on the stream of ${t.campaign}`);
      return true;
    }
    if (t.deliveries > MAX_DELIVERIES) {
      say(`${tag}: handed out ${t.deliveries} times; answered 'error'`, jf);
      await finish(job.index, 'error', `handed out ${t.deliveries} times: every host that had it died or gave it up`);
      return true;
    }
    // Stopped while it waited for cores: it never started.
    if (stopping) {
      claim.stop();
      const back = await queue.giveBack(t, name);
      say(`${tag}: ${back ? 'given back' : 'dropped (no longer ours)'} before it started`, jf);
      return false;
    }
    say(`${tag}: started${t.reclaimed ? ` (reclaimed, delivery ${t.deliveries})` : ''}`, jf);

    const spec: RunSpec = { kind: job.kind, file: job.file === '' ? undefined : job.file, flags: job.flags, seed: job.seed, buggify: NO_BUGS };
    let status: ResultStatus;
    let error = '';
    let outcome: RunOutcome | undefined;
    let timedOut = false;
    try {
      spec.buggify = parseBuggify(job.buggify.join(','));
      if (job.kind === 'sim') {
        const r = await runSimJob(spec, job.timeout_ms);
        if (r === 'stopped') {
          claim.stop();
          const back = await queue.giveBack(t, name);
          say(`${tag}: stopped and ${back ? 'given back' : 'dropped (no longer ours)'}`, jf);
          return false;
        }
        if ('timeout_at_step' in r) {
          timedOut = true;
          status = 'timeout';
          error = `timed out after ${job.timeout_ms} ms (stopped at step ${r.timeout_at_step})`;
        } else if (!r.ok) {
          status = 'error';
          error = r.error;
        } else {
          outcome = r.outcome;
          const sim = r.outcome.sim!;
          status = sim.verdict === 'stuck' ? 'error' : sim.verdict;
          error = sim.verdict === 'stuck' ? `stuck (a limit of the simulator, not a finding): ${sim.reason}` : sim.reason;
        }
      } else {
        // This job's host processes, and no other job's, are the ones its timeout kills.
        const children = new Set<ChildProcess>();
        const killer = setTimeout(() => {
          timedOut = true;
          say(`${tag}: timed out after ${job.timeout_ms} ms; killing its host processes`, jf);
          for (const c of children) c.kill('SIGKILL');
        }, job.timeout_ms);
        let giveUp: NodeJS.Timeout | undefined;
        const deadline = new Promise<'deadline'>((resolve) => {
          giveUp = setTimeout(() => resolve('deadline'), job.timeout_ms + TIMEOUT_GRACE_MS);
        });
        try {
          const r = await Promise.race([jobChildren.run(children, () => runSpec(spec, { redisUrl: url, ...(ringOnly ? { ringOnly } : {}) })), deadline]);
          if (r === 'deadline') {
            status = 'timeout';
            error = `still running ${TIMEOUT_GRACE_MS} ms after its timeout of ${job.timeout_ms} ms`;
          } else {
            outcome = r;
            status = r.summary.verdict === 'interrupted' || r.summary.verdict === 'unknown' ? 'error' : r.summary.verdict;
            if (r.summary.verdict === 'interrupted') error = 'interrupted: the run was stopped early (not a finding)';
            if (r.summary.verdict === 'unknown') error = `unknown: ${r.summary.unknown[0] ?? 'the run could not see everything'} (not a finding)`;
          }
        } finally {
          clearTimeout(killer);
          clearTimeout(giveUp);
        }
      }
    } catch (e) {
      status = timedOut ? 'timeout' : 'error';
      error = timedOut ? `timed out after ${job.timeout_ms} ms` : errorText(e);
    }
    // A sim run that ended is worth its result, stop or not.
    if (stopping && !(job.kind === 'sim' && outcome !== undefined)) {
      claim.stop();
      const back = await queue.giveBack(t, name);
      say(`${tag}: stopped and ${back ? 'given back' : 'dropped (no longer ours)'}`, jf);
      return false;
    }
    await finish(job.index, status, error, outcome);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    const why = status === 'fail' && outcome !== undefined && outcome.sim === undefined ? ` — ${resultSummary(outcome.summary).violations} violations` : error !== '' ? ` — ${error}` : '';
    say(`${tag}: ${status.toUpperCase()} in ${secs} s${why}`, jf);
    return true;
  }

  /** A sim job in a process of the sim pool: its result, its step at a timeout, or 'stopped' (the host is leaving). */
  async function runSimJob(spec: RunSpec, timeout_ms: number): Promise<SimRunEnd> {
    simPool ??= new SimProcessPool(slots);
    return simPool.run(spec, timeout_ms, stopSims.signal);
  }
}

/** `--jobs`: how many cores the host gives its jobs (default: all of this machine's). */
export function parseJobsFlag(s: string | undefined): number {
  if (s === undefined) return availableParallelism();
  if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 1024) throw new UsageError(`--jobs: expected an integer 1…1024, got \`${s}\``);
  return Number(s);
}

/** The cores a job takes: one for a sim job (one thread), the pCPUs of a real-thread run (all unless it says --pcpus n). */
export function jobCost(t: TakenJob, slots: number): number {
  const job = t.job;
  if (!('v' in job) || job.kind === 'sim') return 1;
  const p = job.flags['pcpus'];
  return typeof p === 'string' && /^\d+$/.test(p) ? Math.max(1, Math.min(Number(p), slots)) : slots;
}
