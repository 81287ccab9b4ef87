/**
 * For tests that fault the Redis server itself (CLIENT PAUSE, restarts,
 * memory limits): a redis-server of the test's own on a free port, stopped
 * by pid — the shared Redis (REDIS_URL) is never paused, flushed or
 * reconfigured. Without redis-server installed those tests are skipped
 * loudly; under CI they fail.
 */
import { afterAll, beforeAll, it } from 'vitest';
import { haveRedisServer, startOwnRedis, type OwnRedis } from '../orchestrator/own-redis.js';

const IN_CI = process.env['CI'] !== undefined && !['', '0', 'false'].includes(process.env['CI']);

/**
 * `it` for the tests that need a Redis of their own (else `it.skip`, after a
 * warning; under CI, `it` whose test fails saying why), and the server,
 * started before them and stopped after them: `server()` inside a test.
 */
export function ownRedisIt(file: string, what: string): { it: typeof it; server: () => OwnRedis } {
  const have = haveRedisServer();
  let own: OwnRedis | undefined;
  if (!have) {
    if (!IN_CI) {
      const bar = '!'.repeat(78);
      console.warn(`\n${bar}\n!! SKIPPING ${what} (${file}): redis-server is not installed\n!! (they start a Redis of their own; with CI set this is a failure)\n${bar}\n`);
      return { it: it.skip as unknown as typeof it, server: () => { throw new Error('no redis-server'); } };
    }
  } else {
    beforeAll(async () => {
      own = await startOwnRedis();
    }, 20_000);
    afterAll(async () => {
      await own?.stop();
    });
  }
  return {
    it,
    server: () => {
      if (own === undefined) throw new Error(`${file}: ${what} need redis-server, and CI is set`);
      return own;
    },
  };
}
