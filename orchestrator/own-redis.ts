/**
 * A Redis of xgsim's own: a child `redis-server` on a free loopback port,
 * keeping nothing on disk, for runs whose nemeses act on the server itself
 * (`redis-pause` pauses every client of the server, not only the run's). A
 * Redis someone else runs is never paused: chaos.ts starts one of these, or
 * refuses those nemeses. Stopped by pid when the run ends.
 *
 * Its default user has a random password, so that the run's ACL users
 * (transport/redis-acl.ts) are a boundary and not a formality: the config
 * is written to the server's stdin (`redis-server -`), never on its command
 * line, and the URL that carries it is printed only through redactUrl.
 */
import { randomBytes } from 'node:crypto';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { RedisIoreqBus } from '../transport/redis-bus.js';

/** How long a fresh redis-server may take to answer PING. */
const OWN_REDIS_START_MS = 10_000;

export interface OwnRedis {
  /** With the default user's password: show it only through redactUrl. */
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** Whether `redis-server` is installed (on PATH). */
export function haveRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** A TCP port on 127.0.0.1 nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
}

/** Start a redis-server for this process; undefined if none is installed. Throws if it does not answer in time. */
export async function startOwnRedis(): Promise<OwnRedis | undefined> {
  if (!haveRedisServer()) return undefined;
  const port = await freePort();
  const password = randomBytes(24).toString('hex');
  const child = spawn('redis-server', ['-'], { stdio: ['pipe', 'ignore', 'ignore'] });
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(`port ${port}\nbind 127.0.0.1\nsave ""\nappendonly no\nprotected-mode yes\nrequirepass ${password}\n`);
  const stop = stopper(child);
  // Not left behind by a process that ends without reaching our `finally` (an uncaught error's exit).
  const onExit = (): void => void child.kill('SIGKILL');
  process.once('exit', onExit);
  const url = `redis://:${password}@127.0.0.1:${port}`;
  const t0 = Date.now();
  while (!(await RedisIoreqBus.reachable(url, 200))) {
    if (child.exitCode !== null || Date.now() - t0 > OWN_REDIS_START_MS) {
      await stop();
      process.off('exit', onExit);
      throw new Error(`redis-server on port ${port} did not answer within ${OWN_REDIS_START_MS} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    pid: child.pid ?? -1,
    stop: async () => {
      await stop();
      process.off('exit', onExit);
    },
  };
}
