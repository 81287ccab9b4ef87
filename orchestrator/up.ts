/**
 * `xgsim up <topology.yaml>`: fork a host process, boot the topology, run
 * its workloads for the duration, shut down, print the summary.
 */
import { fork } from 'node:child_process';
import cliProgress from 'cli-progress';
import { bugNames } from '../hypervisor/buggify.js';
import { distModule } from '../hypervisor/worker-path.js';
import { loadTopology } from './config/topology.js';
import { parseDuration } from './config/units.js';
import { UsageError } from './errors.js';
import { hostSpecOf } from './host-spec.js';
import { decodeFromHost, type Progress } from './ipc.js';
import { formatSummary, summarize, type Summary } from './summary.js';
import type { HostReport } from '../hypervisor/host.js';
import { fileURLToPath } from 'node:url';
import { hostname } from 'node:os';
import { RedisIoreqBus } from '../transport/redis-bus.js';
import type { TransportChoice } from '../hypervisor/vcpu-worker.js';
import { prepareOutputs, writeOutputs, type OutputFlags } from './outputs.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/**
 * `--transport auto|redis|ring`: auto takes Redis if it answers, else the
 * embedded ring; redis that does not answer is an unusable environment.
 * Keys are namespaced per host, process and run so parallel runs never meet.
 */
export async function chooseTransport(
  want: string,
  url: string | undefined,
  seed: number,
): Promise<{ kind: 'ring' | 'redis'; choice: TransportChoice; describe: string }> {
  if (!['auto', 'redis', 'ring'].includes(want)) throw new UsageError(`--transport: expected auto, redis or ring, got \`${want}\``);
  const redisUrl = url ?? process.env['REDIS_URL'] ?? DEFAULT_REDIS_URL;
  if (want === 'ring') return { kind: 'ring', choice: { kind: 'ring' }, describe: 'ring (embedded shared-memory ring)' };
  const up = await RedisIoreqBus.reachable(redisUrl, 500);
  if (!up) {
    if (want === 'redis') throw new UsageError(`--transport redis: no Redis answers at ${redisUrl} (set --redis-url or REDIS_URL)`);
    return { kind: 'ring', choice: { kind: 'ring' }, describe: `ring (auto: no Redis at ${redisUrl})` };
  }
  const namespace = `xgsim:${hostname()}:${process.pid}:${seed}:${Date.now().toString(36)}`;
  return { kind: 'redis', choice: { kind: 'redis', url: redisUrl, namespace }, describe: `redis ${redactUrl(redisUrl)}${want === 'auto' ? ' (auto: Redis answered)' : ''}` };
}

/** A Redis URL fit to print: the password (redis://:secret@host) replaced by `***`. */
export function redactUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/[^:@/]*:)[^@/]*@/, '$1***@');
}

export interface UpOptions extends OutputFlags {
  redisUrl?: string;
  duration?: string;
  seed?: string;
  json?: boolean;
  transport?: string;
  checks?: boolean;
  checkInterval?: string;
  buggify: number;
}

export function parseSeed(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s) || Number(s) > 2 ** 31 - 1) throw new UsageError(`--seed: expected an integer 0…2147483647, got \`${s}\``);
  return Number(s);
}

export function parseDurationFlag(flag: string, s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const r = parseDuration(s);
  if (!r.ok) throw new UsageError(`${flag}: ${r.error}`);
  if (r.value <= 0) throw new UsageError(`${flag}: must be positive, got \`${s}\``);
  return r.value;
}

export async function up(file: string, o: UpOptions): Promise<{ summary: Summary; exitCode: number }> {
  const topo = loadTopology(file);
  const duration_ms = parseDurationFlag('--duration', o.duration) ?? topo.duration_ms ?? 10_000;
  const check_interval_ms = parseDurationFlag('--check-interval', o.checkInterval) ?? 250;
  const seed = parseSeed(o.seed) ?? topo.seed ?? Math.floor(Math.random() * 2 ** 31);
  const outputs = prepareOutputs(o);
  const tr = await chooseTransport(o.transport ?? topo.transport, o.redisUrl, seed);
  const transport = tr.kind;
  const bugs = bugNames(o.buggify);
  process.stderr.write(`xgsim up ${file}: seed ${seed}, transport ${tr.describe}, ${duration_ms} ms${bugs.length > 0 ? `, BUGGIFY ${bugs.join(',')}` : ''}\n`);

  const spec = { ...hostSpecOf(topo, { seed, checking: o.checks !== false, buggify: o.buggify, check_interval_ms }), transport: tr.choice, ...outputs.spec };
  const report = await runHost(spec, duration_ms);
  const summary = summarize(report, { seed, transport, buggify: bugs });
  if (o.json === true) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else process.stdout.write(`${formatSummary(summary)}\n`);
  const replay = summary.verdict !== 'pass' ? `${bugs.length > 0 ? `XGSIM_BUGGIFY=${bugs.join(',')} ` : ''}npx xgsim up ${file} --seed ${seed} --duration ${duration_ms}ms` : null;
  if (replay !== null) process.stderr.write(`replay: ${replay}\n`);
  for (const line of writeOutputs(outputs, { report, summary, replay })) process.stderr.write(`${line}\n`);
  return { summary, exitCode: summary.verdict === 'pass' ? 0 : 1 };
}

/** Fork a host process and drive it; a host that dies is reported, never waited for forever. */
export function runHost(spec: import('../hypervisor/host.js').HostSpec, duration_ms: number): Promise<HostReport> {
  const hostMain = fileURLToPath(distModule('orchestrator/host-main'));
  const child = fork(hostMain, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const tty = process.stderr.isTTY === true;
  const bar = tty ? new cliProgress.SingleBar({ format: 'running [{bar}] {percentage}% | {accesses} accesses | {hypercalls} hypercalls | {violations} violations', stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
  let lastLine = 0;
  return new Promise<HostReport>((resolve, reject) => {
    let report: HostReport | undefined;
    let error: string | undefined;
    const onSigint = (): void => {
      process.stderr.write('\nxgsim: stopping (Ctrl-C); the summary so far follows\n');
      child.send({ kind: 'stop' });
    };
    process.on('SIGINT', onSigint);
    child.on('message', (raw) => {
      const msg = decodeFromHost(raw);
      if (msg === undefined) return;
      if (msg.kind === 'started') {
        bar?.start(100, 0, { accesses: 0, hypercalls: 0, violations: 0 });
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
      process.off('SIGINT', onSigint);
      bar?.stop();
      if (report !== undefined) resolve(report);
      else reject(new HostDied(`host process ${signal !== null ? `killed by ${signal}` : `exited with code ${code}`}${error !== undefined ? `: ${error}` : ''} (seed ${spec.seed})`));
    });
    child.send({ kind: 'run', spec, duration_ms, progress_ms: 1000 });

    function showProgress(p: Progress): void {
      if (bar !== undefined) {
        bar.update(Math.min(100, Math.round((100 * p.elapsed_ms) / duration_ms)), { accesses: p.accesses, hypercalls: p.hypercalls, violations: p.violations });
      } else if (p.elapsed_ms - lastLine >= 5000) {
        lastLine = p.elapsed_ms;
        process.stderr.write(`  ${(p.elapsed_ms / 1000).toFixed(0)} s: ${p.accesses} accesses, ${p.hypercalls} hypercalls, ${p.violations} violations\n`);
      }
    }
  });
}

export class HostDied extends Error {
  override readonly name = 'HostDied';
}
