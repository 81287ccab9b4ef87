/**
 * Chaos against the Redis server a run uses (`redis-kill`, `redis-pause`):
 * an admin connection that kills this run's connections (found by the
 * namespace in their CLIENT SETNAME) or pauses the server's writes.
 */
import { Redis } from 'ioredis';

export class RedisAdmin {
  private readonly r: Redis;
  constructor(
    url: string,
    private readonly namespace: string,
  ) {
    this.r = new Redis(url, { maxRetriesPerRequest: 2, connectionName: `xgsim-chaos:${namespace}` });
  }

  /** CLIENT KILL every connection of this run but our own; how many were killed. */
  async killRunConnections(): Promise<number> {
    const list = String(await this.r.client('LIST'));
    const ids = list
      .split('\n')
      .filter((l) => l.includes('name=xgsim-') && !l.includes('name=xgsim-chaos') && l.includes(this.namespace))
      .map((l) => /id=(\d+)/.exec(l)?.[1])
      .filter((x): x is string => x !== undefined);
    let n = 0;
    for (const id of ids) if ((await this.r.client('KILL', 'ID', id).catch(() => 0)) === 1) n++;
    return n;
  }

  /** CLIENT PAUSE the server's writes (XADD, XREADGROUP, XACK …) for `ms`. */
  async pauseWrites(ms: number): Promise<void> {
    await this.r.client('PAUSE', ms, 'WRITE');
  }

  async close(): Promise<void> {
    await this.r.quit().catch(() => undefined);
  }
}
