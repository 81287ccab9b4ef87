/**
 * The Redis URL every command takes (`--redis-url`, else REDIS_URL, else the
 * local default), checked before anything dials it: a string that is not a
 * `redis://` or `rediss://` URL is bad input (exit 2) with its own message,
 * not "no Redis answers". Printed only through redactUrl (no password).
 */
import { UsageError } from './errors.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** The URL with its password (if any) replaced by `***`, whatever its scheme (a mistyped one included). */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/]*:)[^@/]*@/i, '$1***@');
}

/** `flag`, else REDIS_URL, else the default — refused unless it is a Redis URL with a host. */
export function redisUrlOf(flag: string | undefined): string {
  const from = flag !== undefined ? '--redis-url' : process.env['REDIS_URL'] !== undefined ? 'REDIS_URL' : undefined;
  const url = flag ?? process.env['REDIS_URL'] ?? DEFAULT_REDIS_URL;
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {
    u = undefined;
  }
  const db = u?.pathname.replace(/^\//, '') ?? '';
  if (u === undefined || !['redis:', 'rediss:'].includes(u.protocol) || u.hostname === '' || !/^\d*$/.test(db)) {
    throw new UsageError(`${from ?? 'Redis URL'}: \`${redactUrl(url)}\` is not a Redis URL (expected redis://[user:password@]host[:port][/db], or rediss:// for TLS)`);
  }
  return url;
}
