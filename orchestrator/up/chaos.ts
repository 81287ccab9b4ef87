/**
 * `xgsim chaos <plan.yaml>`: a topology plus a schedule and/or random rates
 * of nemeses, injected into a running host; every injection logged with its
 * time and target, invariants checked throughout, recovery measured (time
 * until every vCPU of every running domain progressed again).
 *
 * The plan is expanded into concrete injections here, from the seed, before
 * the host starts: the list is printed (and in --json), so a run is
 * replayed with the same seed, plan and duration.
 */
import { NEMESIS_KINDS } from '../../hypervisor/host/chaos.js';
import { expandPlan, loadChaosPlan } from '../config/chaos-plan.js';
import { hostSpecOf } from './host-spec.js';
import { formatSummary, summarize, type Summary } from './summary.js';
import { buggifyPrefix } from '../runs/record.js';
import { chooseTransport, finishRun, runHost, type RunOutcome } from './up.js';
import { describePcpus, parseDurationFlag, parsePcpusFlag, parseRunFlags, pcpusFlag, pcpusOf, type TopologyRunFlags } from './run-flags.js';
import { startOwnRedis, type OwnRedis } from '../own-redis.js';
import { redactUrl, redisAclOf } from '../redis-url.js';
import { describeDraw, swarmSpec } from './swarm.js';

export interface ChaosOptions extends TopologyRunFlags {
  /** `--allow-server-nemeses`: let redis-pause / redis-kill act on the Redis of --redis-url (default: a Redis of xgsim's own). */
  allowServerNemeses?: boolean;
}

/** Nemeses that act on the Redis server itself (a pause stops every client of it, not only this run's). */
const REDIS_NEMESES: readonly string[] = ['redis-pause', 'redis-kill'];

/** Which Redis the Redis nemeses act on, said at start and in the summary. */
interface RedisTarget {
  /** The Redis this run's transport uses when it is its own (undefined: --redis-url, REDIS_URL or the default). */
  own?: OwnRedis;
  /** Why the Redis nemeses may not act, if they may not. */
  refused?: string;
}

/**
 * A plan with Redis nemeses, on a transport that may be Redis, runs on a
 * redis-server started for it — unless the user named a Redis and allowed
 * them on it. Anyone else's Redis is never paused: the nemeses are refused
 * (logged as skipped, with this reason) when no redis-server is installed.
 */
async function redisTarget(plan: { schedule: Array<{ kind: string }>; random: Array<{ kind: string }> }, want: string, o: ChaosOptions): Promise<RedisTarget> {
  if (want === 'ring' || ![...plan.schedule, ...plan.random].some((a) => REDIS_NEMESES.includes(a.kind))) return {};
  if (o.allowServerNemeses === true) return {};
  if (o.redisUrl !== undefined) return { refused: `it acts on the whole Redis server at ${redactUrl(o.redisUrl)}, which xgsim did not start (--allow-server-nemeses lets it)` };
  const own = await startOwnRedis();
  if (own === undefined) return { refused: "redis-server is not installed, so there is no Redis of xgsim's own to act on, and another's is never paused" };
  return { own };
}

export interface ChaosSummary extends Summary {
  chaos: {
    plan: string;
    topology: string;
    /** Injections per nemesis kind that acted (not skipped). */
    kinds: Record<string, number>;
    /** Kinds of the plan's nemeses that never acted in this run. */
    kinds_missing: string[];
    recovery_ms: { p50: number; max: number; unrecovered: number };
    /** Which Redis the Redis nemeses acted on (`own`: a redis-server started for the run), or why they were refused. */
    redis_nemeses: { on: string | null; own: boolean; refused: string | null };
  };
}

export async function chaos(file: string, o: ChaosOptions): Promise<RunOutcome & { summary: ChaosSummary }> {
  const plan = loadChaosPlan(file);
  const { print, duration_ms, check_interval_ms, seed, outputs, bugs } = parseRunFlags(o, { duration_ms: plan.duration_ms ?? 30_000, seed: plan.seed ?? plan.topology.seed });
  const pcpus = pcpusOf(parsePcpusFlag(o.pcpus) ?? plan.topology.host.pcpus);
  const timeout_ms = parseDurationFlag('--transport-timeout', o.transportTimeout);
  const want = o.transport ?? plan.transport ?? plan.topology.transport;
  const target = await redisTarget(plan, want, o);
  let report;
  let tr;
  try {
    // On a Redis of its own, xgsim always makes the run's ACL users; on one the user named, when asked (--redis-acl).
    tr = await chooseTransport(want, target.own?.url ?? o.redisUrl, seed, timeout_ms, target.own !== undefined || redisAclOf(o));
    const actions = expandPlan(plan, seed, duration_ms);
    const on = target.own !== undefined ? `, Redis nemeses on ${redactUrl(target.own.url)} (a redis-server started for this run, pid ${target.own.pid})` : target.refused !== undefined ? `, Redis nemeses refused: ${target.refused}` : '';
    const swarm = swarmSpec(hostSpecOf(plan.topology, { seed, checking: true, buggify: o.buggify, check_interval_ms, pcpus }), seed, o.swarm === true);
    const startLine = `xgsim chaos ${file}: seed ${seed}, topology ${plan.topology.name}, transport ${tr.describe}, ${describePcpus(pcpus)}, ${duration_ms} ms, ${actions.length} injections planned${on}${swarm.draw !== null ? `, ${describeDraw(swarm.draw)}` : ''}${bugs.length > 0 ? `, BUGGIFY ${bugs.join(',')}` : ''}`;
    const spec = {
      ...swarm.spec,
      transport: tr.choice,
      chaos: actions,
      ...(target.refused !== undefined ? { redis_nemeses_refused: target.refused } : {}),
      ...outputs.spec,
    };
    report = await runHost(spec, duration_ms, { quiet: !print, startLine });
  } finally {
    await target.own?.stop();
  }
  const base = summarize(report, { seed, transport: tr.kind, buggify: bugs });
  const acted = base.faults_injected.filter((f) => f.skipped === undefined);
  const kinds: Record<string, number> = {};
  for (const f of acted) kinds[f.kind] = (kinds[f.kind] ?? 0) + 1;
  const planned = new Set([...plan.schedule, ...plan.random].map((a) => a.kind));
  const rec = acted.map((f) => f.recovery_ms).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  const summary: ChaosSummary = {
    ...base,
    chaos: {
      plan: file,
      topology: plan.topology_file,
      kinds,
      kinds_missing: NEMESIS_KINDS.filter((k) => planned.has(k) && kinds[k] === undefined),
      recovery_ms: { p50: rec[Math.floor(rec.length / 2)] ?? 0, max: rec[rec.length - 1] ?? 0, unrecovered: acted.length - rec.length },
      redis_nemeses: target.own !== undefined ? { on: redactUrl(target.own.url), own: true, refused: null } : { on: tr.kind === 'redis' && tr.choice.kind === 'redis' ? redactUrl(tr.choice.url) : null, own: false, refused: target.refused ?? null },
    },
  };
  if (print) {
    if (o.json === true) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      process.stdout.write(`${formatSummary(summary)}\n`);
      const c = summary.chaos;
      process.stdout.write(`chaos: ${acted.length} injections acted (${Object.entries(c.kinds).map(([k, n]) => `${k} ${n}`).join(', ')}); recovery p50 ${c.recovery_ms.p50} ms, max ${c.recovery_ms.max} ms, ${c.recovery_ms.unrecovered} not recovered by the end${c.kinds_missing.length > 0 ? `; never acted: ${c.kinds_missing.join(', ')}` : ''}\n`);
    }
  }
  const replay = `${buggifyPrefix(bugs)}npx xgsim chaos ${file} --seed ${seed} --duration ${duration_ms}ms --transport ${tr.kind} --pcpus ${pcpusFlag(pcpus)}${o.swarm === true ? ' --swarm' : ''}`;
  const flags = { duration: `${duration_ms}ms`, transport: tr.kind, pcpus: pcpusFlag(pcpus), ...(timeout_ms !== undefined ? { 'transport-timeout': `${timeout_ms}ms` } : {}), ...(o.swarm === true ? { swarm: true } : {}) };
  return { ...(await finishRun({ kind: 'chaos', file, flags, seed, buggify: bugs, transport: tr.kind, summary, replay }, { print, save: o.save, store: o.store !== false, outputs, report })), summary };
}
