/**
 * The fault suite's rig (tests/faults/): a `redis-server` of the test's own,
 * on a free port, started and stopped by its pid — never the shared Redis
 * at REDIS_URL — and `xgsim up` runs against it in a child process, so each
 * fault meets the whole product: the orchestrator, the host process, its
 * threads, its summary and its exit code.
 */
import { freePort } from '../../orchestrator/own-redis.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { PROJECT_ROOT } from '../../hypervisor/host/worker-path.js';
import { RedisIoreqBus } from '../../transport/redis-bus.js';
import type { Summary } from '../../orchestrator/up/summary.js';

const BIN = join(PROJECT_ROOT, 'bin', 'xgsim.js');
export const TOPOLOGY = 'tests/faults/gpu-small.yaml';

export const HAVE_REDIS_SERVER = spawnSync('redis-server', ['--version']).status === 0;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A redis-server of our own: no persistence, so a restart loses everything (a flush). */
export class OwnRedis {
  private proc: ChildProcess | undefined;
  private constructor(readonly port: number) {}

  static async start(): Promise<OwnRedis> {
    const r = new OwnRedis(await freePort());
    await r.up();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Start it (again, on the same port), and wait until it answers. */
  async up(): Promise<void> {
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const t0 = Date.now();
    while (!(await RedisIoreqBus.reachable(this.url, 200))) {
      if (Date.now() - t0 > 10_000) throw new Error(`the test's redis-server on port ${this.port} did not answer`);
      await sleep(50);
    }
  }

  /** Kill it (SIGKILL, by its pid: ours), and wait until it is gone. */
  async down(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p?.pid === undefined || p.exitCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    process.kill(p.pid, 'SIGKILL');
    await gone;
  }

  /** A client of our server (for the faults and the checks). */
  client(): Redis {
    const c = new Redis(this.url, { maxRetriesPerRequest: 1, connectionName: 'xgsim-fault-suite' });
    c.on('error', () => undefined);
    return c;
  }
}

/** Every key under the runs' namespaces (`xgsim:*`) on our server. */
export async function runKeys(r: Redis, pattern = 'xgsim:*'): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    out.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return out.sort();
}

export interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The JSON summary, if one was printed. */
  summary: Summary | undefined;
}

export interface Run {
  child: ChildProcess;
  /** Resolves when the process has exited. */
  done: Promise<Outcome>;
  /** The run's namespace, once its keys appeared. */
  namespace(): Promise<string>;
}

/**
 * `xgsim up` of the suite's topology against `redis`, printing its summary
 * as JSON. A run still alive after `hang_ms` is killed (by its pid) and
 * reported as hung: the suite asserts that none is.
 */
export function startRun(redis: OwnRedis, o: { duration: string; seed: number; extra?: string[]; hang_ms?: number }): Run & { hung: () => boolean } {
  const args = [BIN, 'up', TOPOLOGY, '--transport', 'redis', '--redis-url', redis.url, '--duration', o.duration, '--seed', String(o.seed), '--json', ...(o.extra ?? [])];
  const env = { ...process.env };
  delete env['XGSIM_VERBOSE'];
  const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  let hung = false;
  const killer = setTimeout(() => {
    hung = true;
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  }, o.hang_ms ?? 60_000);
  const done = new Promise<Outcome>((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(killer);
      // Let the pipes drain.
      setImmediate(() => resolve({ code, signal, stdout, stderr, summary: parseSummary(stdout) }));
    });
  });
  const namespace = async (): Promise<string> => {
    const c = redis.client();
    try {
      for (let i = 0; i < 600; i++) {
        const alive = await runKeys(c, 'xgsim:*:alive');
        if (alive.length > 0) return alive[0]!.slice(0, -':alive'.length);
        if (child.exitCode !== null) break;
        await sleep(50);
      }
      throw new Error(`the run never marked its keys; stderr: ${stderr}`);
    } finally {
      c.disconnect();
    }
  };
  return { child, done, namespace, hung: () => hung };
}

function parseSummary(stdout: string): Summary | undefined {
  const at = stdout.indexOf('{');
  if (at < 0) return undefined;
  try {
    return JSON.parse(stdout.slice(at)) as Summary;
  } catch {
    return undefined;
  }
}

/**
 * Wait until the run answers ioreqs (an entry on a response stream newer
 * than `since_ms`, Redis's clock), up to `bound_ms`: whether the run went on
 * after a fault.
 */
export async function answersAfter(redis: OwnRedis, ns: string, since_ms: number, bound_ms = 8000): Promise<boolean> {
  const c = redis.client();
  try {
    const t0 = Date.now();
    while (Date.now() - t0 < bound_ms) {
      for (const k of await runKeys(c, `${ns}:resp:*`)) {
        const last = (await c.xrevrange(k, '+', '-', 'COUNT', 1).catch(() => [])) as Array<[string, string[]]>;
        const id = last[0]?.[0];
        if (id !== undefined && Number(id.split('-')[0]) > since_ms) return true;
      }
      await sleep(50);
    }
    return false;
  } finally {
    c.disconnect();
  }
}

/** Redis's clock, in ms (stream ids count in it). */
export async function redisNow(c: Redis): Promise<number> {
  const [s, us] = await c.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}
