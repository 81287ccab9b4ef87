/**
 * `xgsim up <topology.yaml>`: fork a host process, boot the topology, run
 * its workloads for the duration, shut down, print the summary.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { AsyncLocalStorage } from 'node:async_hooks';
import cliProgress from 'cli-progress';
import { distModule } from '../../hypervisor/host/worker-path.js';
import { loadTopology } from '../config/topology.js';
import { EXIT, HostDied, RunInterrupted, UsageError } from '../errors.js';
export { HostDied };
import { hostSpecOf } from './host-spec.js';
import { decodeFromHost, type Progress } from './ipc.js';
import { formatSummary, summarize, type Summary } from './summary.js';
import { buggifyPrefix, keepRecord, makeRecord, type RecordInput, type RunRecord, type SimFacts } from '../runs/record.js';
import { histogramOf, type LatencyHistogram } from '../stats.js';
import type { HostReport } from '../../hypervisor/host/host.js';
import { fileURLToPath } from 'node:url';
import { hostname } from 'node:os';
import { RedisIoreqBus } from '../../transport/redis-bus.js';
import type { TransportChoice } from '../../hypervisor/host/vcpu-worker.js';
import { savedRunOf, writeOutputs, type Outputs } from './outputs.js';
import { storeRun } from '../runs/run-store.js';
import { loadPlots } from '../report/plot.js';
import { join } from 'node:path';
import { describePcpus, parseDurationFlag, parsePcpusFlag, parseRunFlags, pcpusFlag, pcpusOf, TRANSPORTS, type TopologyRunFlags } from './run-flags.js';
import { redactUrl, redisAclOf, redisUrlOf } from '../redis-url.js';
import { describeDraw, swarmSpec } from './swarm.js';

export { DEFAULT_REDIS_URL, redactUrl } from '../redis-url.js';

/**
 * `--transport auto|redis|ring`: auto takes Redis if it answers, else the
 * embedded ring; redis that does not answer is an unusable environment.
 * Keys are namespaced per host, process and run so parallel runs never meet.
 */
export async function chooseTransport(
  want: string,
  url: string | undefined,
  seed: number,
  timeout_ms?: number,
  /** Make the run's Redis ACL users (transport/redis-acl.ts) on that Redis: its own, or one the user named with --redis-acl (redisAclOf). */
  acl = false,
): Promise<{ kind: 'ring' | 'redis'; choice: TransportChoice; describe: string }> {
  if (!(TRANSPORTS as readonly string[]).includes(want)) throw new UsageError(`--transport: expected auto, redis or ring, got \`${want}\``);
  if (want === 'ring') return { kind: 'ring', choice: { kind: 'ring' }, describe: 'ring (embedded shared-memory ring)' };
  const redisUrl = redisUrlOf(url);
  const up = await RedisIoreqBus.reachable(redisUrl, 500);
  if (!up) {
    if (want === 'redis') throw new UsageError(`--transport redis: no Redis answers at ${redactUrl(redisUrl)} (set --redis-url or REDIS_URL)`);
    return { kind: 'ring', choice: { kind: 'ring' }, describe: `ring (auto: no Redis at ${redactUrl(redisUrl)})` };
  }
  const namespace = `xgsim:${hostname()}:${process.pid}:${seed}:${Date.now().toString(36)}`;
  return {
    kind: 'redis',
    choice: { kind: 'redis', url: redisUrl, namespace, ...(timeout_ms !== undefined ? { timeout_ms } : {}), ...(acl ? { acl: true } : {}) },
    describe: `redis ${redactUrl(redisUrl)}${want === 'auto' ? ' (auto: Redis answered)' : ''}${acl ? ', an ACL user per role' : ''}`,
  };
}

/** A Redis URL fit to print: the password (redis://:secret@host) replaced by `***`. */
/** A Redis URL fit to print: its password (if any) as `***` — never in a banner, log, error or command line. */

export interface UpOptions extends TopologyRunFlags {
  /** `--no-checks`: false turns the hot-path checks off. */
  checks?: boolean;
}

/** What a run gives back besides its exit code: enough for a run record and for a campaign to merge. */
export interface RunOutcome {
  summary: Summary;
  exitCode: number;
  record: RunRecord;
  /** Revoke latencies of the run in log buckets (campaigns merge them). */
  revoke_hist: LatencyHistogram;
  /** Sim runs only: the simulator's verdict (stuck is neither pass nor fail), facts and replay command. */
  sim?: SimFacts & { verdict: 'pass' | 'fail' | 'stuck'; replay: string };
}

/** Every Revoke latency sample the run's vCPUs kept. */
export function revokeHistogram(r: HostReport): LatencyHistogram {
  return histogramOf(r.vcpu_results.flatMap((v) => v.samples['revoke_us'] ?? []));
}

export async function up(file: string, o: UpOptions): Promise<RunOutcome> {
  const topo = loadTopology(file);
  const { print, duration_ms, check_interval_ms, seed, outputs, bugs } = parseRunFlags(o, { duration_ms: topo.duration_ms ?? 10_000, seed: topo.seed });
  const pcpus = pcpusOf(parsePcpusFlag(o.pcpus) ?? topo.host.pcpus);
  const timeout_ms = parseDurationFlag('--transport-timeout', o.transportTimeout);
  const tr = await chooseTransport(o.transport ?? topo.transport, o.redisUrl, seed, timeout_ms, redisAclOf(o));
  const transport = tr.kind;
  const swarm = swarmSpec(hostSpecOf(topo, { seed, checking: o.checks !== false, buggify: o.buggify, check_interval_ms, pcpus }), seed, o.swarm === true);
  const startLine = `xgsim up ${file}: seed ${seed}, ${topo.design !== undefined ? `design ${topo.design}, ` : ''}transport ${tr.describe}, ${describePcpus(pcpus)}, ${duration_ms} ms${swarm.draw !== null ? `, ${describeDraw(swarm.draw)}` : ''}${bugs.length > 0 ? `, BUGGIFY ${bugs.join(',')}` : ''}`;
  const spec = { ...swarm.spec, transport: tr.choice, ...outputs.spec };
  const report = await runHost(spec, duration_ms, { quiet: !print, startLine });
  const summary = summarize(report, { seed, transport, buggify: bugs });
  if (print && o.json === true) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else if (print) process.stdout.write(`${formatSummary(summary)}\n`);
  const replay = `${buggifyPrefix(bugs)}npx xgsim up ${file} --seed ${seed} --duration ${duration_ms}ms --pcpus ${pcpusFlag(pcpus)}${o.swarm === true ? ' --swarm' : ''}`;
  const flags = { duration: `${duration_ms}ms`, transport, 'check-interval': `${check_interval_ms}ms`, ...(o.checks === false ? { checks: false } : {}), pcpus: pcpusFlag(pcpus), ...(timeout_ms !== undefined ? { 'transport-timeout': `${timeout_ms}ms` } : {}), ...(o.swarm === true ? { swarm: true } : {}) };
  return finishRun({ kind: 'up', file, flags, seed, buggify: bugs, transport, summary, replay }, { print, save: o.save, store: o.store !== false, outputs, report });
}

export interface FinishOptions {
  print: boolean;
  save: string | undefined;
  outputs: Outputs;
  report: HostReport;
  /** The summary --report shows, when the command adds to the record's (stress revoke). */
  shown?: Summary;
  /** Keep the run in the run store (default, when printing; `--no-store` says false). */
  store?: boolean;
}

/**
 * How a run of `up`, `stress revoke` or `chaos` ends once its summary is
 * printed: the direct replay line of a failure, the run record kept, the
 * --trace and --report files written, the outcome handed back.
 */
export async function finishRun(r: RecordInput, o: FinishOptions): Promise<RunOutcome> {
  // A run with a timeline writes a report (the run store's, --report): the plotting library is loaded for it only then.
  if (o.report.trace !== undefined) await loadPlots();
  const failed = r.summary.verdict === 'fail';
  if (o.print && failed) process.stderr.write(`replay: ${r.replay}\n`);
  const record = makeRecord(r);
  const shown = { report: o.report, summary: o.shown ?? r.summary, replay: failed ? r.replay : null };
  if (o.print && o.store !== false) {
    // The run store keeps every run; a failure's record is what `xgsim replay` takes.
    const dir = storeRun(record, o.report.trace !== undefined ? savedRunOf(shown) : null);
    process.stderr.write(`run: ${dir}${o.report.trace !== undefined ? ` (report: ${join(dir, 'index.html')})` : ''}\n`);
    if (failed) process.stderr.write(`replay: npx xgsim replay ${join(dir, 'record.json')}\n`);
    if (o.save !== undefined) keepRecord(record, { print: false, save: o.save });
  } else {
    keepRecord(record, { print: o.print, save: o.save });
  }
  const written = writeOutputs(o.outputs, shown);
  if (o.print) for (const line of written) process.stderr.write(`${line}\n`);
  const exitCode = failed ? EXIT.FAIL : r.summary.verdict === 'unknown' ? EXIT.UNKNOWN : r.summary.verdict === 'interrupted' ? EXIT.INTERRUPTED : EXIT.PASS;
  return { summary: r.summary, exitCode, record, revoke_hist: revokeHistogram(o.report) };
}

/**
 * Host processes forked by runHost and not yet exited. A campaign host
 * stops them when it abandons a job (Ctrl-C, SIGTERM) and kills them when a
 * job outlives its timeout, whichever command (up, stress, chaos) forked them.
 */
export const liveHostChildren = new Set<ChildProcess>();

/**
 * The host processes of one campaign job (campaign/host.ts runs several
 * jobs at once): runHost adds its child to the set of the job it runs in.
 */
export const jobChildren = new AsyncLocalStorage<Set<ChildProcess>>();

export interface RunHostOptions {
  /** No progress bar or lines, no Ctrl-C message (campaign hosts, replay). */
  quiet?: boolean;
  /** Printed (unless quiet) once Ctrl-C and SIGTERM are ours: from then on a signal stops the run and still gets its summary. */
  startLine?: string;
}

/** Fork a host process and drive it; a host that dies is reported, never waited for forever. */
export function runHost(spec: import('../../hypervisor/host/host.js').HostSpec, duration_ms: number, ro: RunHostOptions = {}): Promise<HostReport> {
  const hostMain = fileURLToPath(distModule('orchestrator/up/host-main'));
  const child = fork(hostMain, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  liveHostChildren.add(child);
  const mine = jobChildren.getStore();
  mine?.add(child);
  const tty = process.stderr.isTTY === true && ro.quiet !== true;
  // Cleared when the run ends or a signal comes, before any other line: no bar left at 75 %, none drawn over a message.
  const bar = tty ? new cliProgress.SingleBar({ format: 'running [{bar}] {percentage}% | {accesses} accesses | {hypercalls} hypercalls | {violations} violations', stream: process.stderr, clearOnComplete: true, hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
  let barOn = false;
  const stopBar = (): void => {
    if (barOn) bar?.stop();
    barOn = false;
  };
  let lastLine = 0;
  return new Promise<HostReport>((resolve, reject) => {
    let report: HostReport | undefined;
    let error: string | undefined;
    // The first Ctrl-C or SIGTERM stops the run and still gets its summary
    // (verdict interrupted); a second one does not wait for it.
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      stopBar();
      if (signals === 1) {
        if (ro.quiet !== true) process.stderr.write(`\nxgsim: stopping (${sig === 'SIGINT' ? 'Ctrl-C' : sig}); the summary so far follows (again to stop at once)\n`);
        if (child.connected) child.send({ kind: 'stop' });
        return;
      }
      if (ro.quiet !== true) process.stderr.write(`xgsim: stopping at once (${sig === 'SIGINT' ? 'Ctrl-C' : sig} again); no summary\n`);
      child.kill('SIGKILL');
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    if (ro.quiet !== true && ro.startLine !== undefined) process.stderr.write(`${ro.startLine}\n`);
    child.on('message', (raw) => {
      const msg = decodeFromHost(raw);
      if (msg === undefined) return;
      if (msg.kind === 'started') {
        if (signals === 0 && bar !== undefined) {
          bar.start(100, 0, { accesses: 0, hypercalls: 0, violations: 0 });
          barOn = true;
        }
      } else if (msg.kind === 'progress') {
        showProgress(msg.progress);
      } else if (msg.kind === 'report') {
        report = msg.report;
      } else {
        error = msg.message;
        if (process.env['XGSIM_VERBOSE'] === '1' && msg.stack !== undefined) process.stderr.write(`${msg.stack}\n`);
      }
    });
    child.on('exit', (code, signal) => {
      liveHostChildren.delete(child);
      mine?.delete(child);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      stopBar();
      if (signals > 1) reject(new RunInterrupted(`stopped at once by a second signal; no summary (seed ${spec.seed})`));
      else if (report !== undefined) resolve(signals > 0 ? { ...report, stopped_early: true } : report);
      else reject(new HostDied(`host process ${signal !== null ? `killed by ${signal}` : `exited with code ${code}`}${error !== undefined ? `: ${error}` : ''} (seed ${spec.seed})`));
    });
    child.send({ kind: 'run', spec, duration_ms, progress_ms: 1000 });

    function showProgress(p: Progress): void {
      if (barOn) {
        bar?.update(Math.min(100, Math.round((100 * p.elapsed_ms) / duration_ms)), { accesses: p.accesses, hypercalls: p.hypercalls, violations: p.violations });
      } else if (ro.quiet !== true && p.elapsed_ms - lastLine >= 5000) {
        lastLine = p.elapsed_ms;
        process.stderr.write(`  ${(p.elapsed_ms / 1000).toFixed(0)} s: ${p.accesses} accesses, ${p.hypercalls} hypercalls, ${p.violations} violations\n`);
      }
    }
  });
}

