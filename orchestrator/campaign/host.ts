/**
 * `xgsim host [--redis-url URL] [--name N] [--max-jobs M] [--pool P]`: a
 * campaign worker (docs/semantics.md §1). It joins the consumer group of every live
 * campaign in its pool, takes one job at a time, runs it quietly in a forked
 * host process (the same up / stress revoke / chaos functions as the command
 * line, runs/store.ts), publishes the result and acknowledges the job
 * (transport/campaign-queue.ts has the stream protocol).
 *
 * - Jobs of dead hosts first: each round it tries XAUTOCLAIM on every live
 *   campaign before it asks for new jobs.
 * - While a job runs, its claim is refreshed every CLAIM_REFRESH_MS, so a
 *   live job is never taken over however long it runs.
 * - A bad job (a flag out of range, a missing file, an entry that does not
 *   decode) is answered with status 'error'; it never stops the host.
 * - A job that outlives its timeout: its host processes are killed and it is
 *   answered 'timeout'.
 * - Ctrl-C or SIGTERM: the job in hand is stopped and given back (any host
 *   reclaims it at once), then the host leaves. A second Ctrl-C kills the
 *   job's processes and exits at once.
 * - A `sim` job runs the deterministic simulator here, on this thread: no
 *   process to fork, and it holds the thread until it ends (a 20 000-step
 *   seed takes about a second), so timers do not fire meanwhile. Every
 *   10 000 steps the run calls back: the claim is renewed there (the script
 *   goes out on the socket at once; its reply is read after the run), and a
 *   run past its timeout is stopped there by throwing SimStuck, which the
 *   simulator unwinds like any run that cannot go on. Signals are seen
 *   when the run ends; a sim run that ended is answered, not given back.
 *   Its result: pass, fail (error = the first violation or error), or
 *   error for a run the simulator could not finish (stuck), with no Revoke
 *   histogram (simulated time).
 */
import { hostname } from 'node:os';
import { BuggifyError, parseBuggify } from '../../hypervisor/xen/buggify.js';
import { SimStuck } from '../../hypervisor/host/sim/sim-sched.js';
import { CampaignQueue, CLAIM_REFRESH_MS, MAX_DELIVERIES, validName, type TakenJob } from '../../transport/campaign-queue.js';
import { CAMPAIGN_WIRE_VERSION, type ResultMsg, type ResultStatus, type ResultSummary } from '../../transport/campaign-messages.js';
import { RedisIoreqBus } from '../../transport/redis-bus.js';
import { isInputError } from '../config/errors.js';
import { UsageError } from '../errors.js';
import { processLog, type LogFields } from '../log.js';
import { redisUrlOf } from '../redis-url.js';
export { redisUrlOf };
import { runSpec } from '../runs/store.js';
import type { Summary } from '../up/summary.js';
import { HostDied, liveHostChildren, redactUrl, type RunOutcome } from '../up/up.js';

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

function errorText(e: unknown): string {
  if (isInputError(e)) return e.toString();
  if (e instanceof UsageError || e instanceof BuggifyError || e instanceof HostDied) return e.message;
  return `internal error: ${e instanceof Error ? e.message : String(e)}`;
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
  if (!(await RedisIoreqBus.reachable(url, 1000))) throw new UsageError(`no Redis answers at ${redactUrl(url)} (set --redis-url or REDIS_URL)`);
  const queue = await CampaignQueue.connect({ url, clientName: `xgsim-host:${name}` });
  const log = processLog(`xgsim host ${name}`, name);
  const say = (s: string, fields?: LogFields): void => log.info(s, fields);

  let stopping = false;
  let busy = false;
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++;
    if (interrupts > 1) {
      say(`${sig} again: killing the job's processes and leaving now`);
      for (const c of liveHostChildren) c.kill('SIGKILL');
      process.exit(130);
    }
    stopping = true;
    say(busy ? `${sig}: stopping the job in hand and giving it back (again to kill it now)` : `${sig}: leaving`);
    // runHost forwards Ctrl-C and SIGTERM to its child itself.
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  say(`serving pool \`${pool}\` at ${redactUrl(url)}${Number.isFinite(maxJobs) ? `, at most ${maxJobs} jobs` : ''}`);
  let done = 0;
  try {
    while (!stopping && done < maxJobs) {
      const ids = await queue.campaigns(pool);
      if (ids.length === 0) {
        await sleep(IDLE_POLL_MS);
        continue;
      }
      let t: TakenJob | undefined;
      for (const id of ids) if (t === undefined) t = await queue.reclaim(id, name);
      for (const id of ids) if (t === undefined) t = await queue.take(id, name, 0);
      // Nothing anywhere: wait on the oldest campaign (the others are polled again next round).
      if (t === undefined && ids[0] !== undefined) t = await queue.take(ids[0], name, TAKE_BLOCK_MS);
      if (t === undefined) continue;
      if (stopping) {
        await queue.giveBack(t, name);
        break;
      }
      busy = true;
      try {
        if (await runJob(t)) done++;
      } finally {
        busy = false;
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await queue.close();
  }
  say(`done: ${done} job${done === 1 ? '' : 's'} answered`);
  return { exitCode: 0 };

  /** Runs and answers one job; false when it was given back instead. */
  async function runJob(t: TakenJob): Promise<boolean> {
    const t0 = performance.now();
    const base = { v: CAMPAIGN_WIRE_VERSION, campaign: t.campaign, host: name, deliveries: t.deliveries } as const;
    const finish = async (index: number, status: ResultStatus, error: string, outcome?: RunOutcome): Promise<void> => {
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
    say(`${tag}: started${t.reclaimed ? ` (reclaimed, delivery ${t.deliveries})` : ''}`, jf);

    let lost = false;
    const refresher = setInterval(() => {
      queue.refresh(t, name).then(
        (mine) => {
          if (!mine && !lost) {
            lost = true;
            say(`${tag}: claim lost (another host took it over, or the campaign ended); finishing anyway`, jf);
          }
        },
        (e: unknown) => say(`${tag}: claim refresh failed: ${e instanceof Error ? e.message : String(e)}`, jf),
      );
    }, CLAIM_REFRESH_MS);
    let timedOut = false;
    const killer = setTimeout(() => {
      timedOut = true;
      say(`${tag}: timed out after ${job.timeout_ms} ms; killing its host processes`, jf);
      for (const c of liveHostChildren) c.kill('SIGKILL');
    }, job.timeout_ms);
    let giveUp: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      giveUp = setTimeout(() => resolve('deadline'), job.timeout_ms + TIMEOUT_GRACE_MS);
    });

    // Sim runs hold this thread: the claim is renewed, and the timeout kept, from inside the run.
    let lastRefresh = performance.now();
    const simProgress = (): void => {
      const now = performance.now();
      if (now - t0 > job.timeout_ms) {
        timedOut = true;
        throw new SimStuck(`stopped by its host: timed out after ${job.timeout_ms} ms`);
      }
      if (now - lastRefresh >= CLAIM_REFRESH_MS) {
        lastRefresh = now;
        queue.refresh(t, name).catch(() => undefined);
      }
    };

    let status: ResultStatus;
    let error = '';
    let outcome: RunOutcome | undefined;
    try {
      const r = await Promise.race([
        runSpec(
          { kind: job.kind, file: job.file === '' ? undefined : job.file, flags: job.flags, seed: job.seed, buggify: parseBuggify(job.buggify.join(',')) },
          { redisUrl: url, ...(ringOnly ? { ringOnly } : {}), ...(job.kind === 'sim' ? { simProgress } : {}) },
        ),
        deadline,
      ]);
      if (r === 'deadline') {
        status = 'timeout';
        error = `still running ${TIMEOUT_GRACE_MS} ms after its timeout of ${job.timeout_ms} ms`;
      } else if (r.sim !== undefined) {
        outcome = r;
        status = timedOut ? 'timeout' : r.sim.verdict === 'stuck' ? 'error' : r.sim.verdict;
        error = timedOut ? `timed out after ${job.timeout_ms} ms (stopped at step ${r.sim.steps})` : r.sim.verdict === 'stuck' ? `stuck (a limit of the simulator, not a finding): ${r.sim.reason}` : r.sim.reason;
      } else {
        outcome = r;
        status = r.summary.verdict === 'interrupted' || r.summary.verdict === 'unknown' ? 'error' : r.summary.verdict;
        if (r.summary.verdict === 'interrupted') error = 'interrupted: the run was stopped early (not a finding)';
        if (r.summary.verdict === 'unknown') error = `unknown: ${r.summary.unknown[0] ?? 'the run could not see everything'} (not a finding)`;
      }
    } catch (e) {
      status = timedOut ? 'timeout' : 'error';
      error = timedOut ? `timed out after ${job.timeout_ms} ms` : errorText(e);
    } finally {
      clearInterval(refresher);
      clearTimeout(killer);
      clearTimeout(giveUp);
    }
    // A sim run that ended is worth its result: it held the thread, so the stop request came too late to cut it short.
    if (stopping && !(job.kind === 'sim' && outcome !== undefined)) {
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
}
