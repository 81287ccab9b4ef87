/**
 * The rule of every test file that talks to Redis (REDIS_URL, default
 * redis://127.0.0.1:6379): with no Redis there its Redis tests are skipped,
 * loudly — unless CI is set, where the file fails at once.
 */
import { it } from 'vitest';
import { RedisIoreqBus } from '../transport/redis-bus.js';

export const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

const IN_CI = process.env['CI'] !== undefined && !['', '0', 'false'].includes(process.env['CI']);

/** Whether Redis answers; `file` and `what` (the tests skipped) name them in the warning or the CI failure. */
export async function redisGate(file: string, what: string, timeout_ms = 1000): Promise<boolean> {
  if (await RedisIoreqBus.reachable(REDIS_URL, timeout_ms)) return true;
  if (IN_CI) throw new Error(`${file}: no Redis at ${REDIS_URL}, and CI is set — ${what} must be tested in CI`);
  const bar = '!'.repeat(78);
  console.warn(`\n${bar}\n!! SKIPPING ${what}: no Redis answers at ${REDIS_URL}\n!! (start one, or set REDIS_URL; with CI set this is a failure)\n${bar}\n`);
  return false;
}

/** `it` when Redis answers, else `it.skip` (after redisGate's warning). */
export const itIf = (up: boolean) => (up ? it : it.skip);
