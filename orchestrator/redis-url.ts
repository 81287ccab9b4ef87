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

/**
 * `--redis-acl` (or XGSIM_REDIS_ACL=1): the run makes a Redis ACL user per
 * role on the Redis it uses (transport/redis-acl.ts), which changes that
 * server's configuration (ACL SETUSER, ACL DELUSER). So it is done only to a
 * Redis the user named (`--redis-url` or REDIS_URL), never to the default
 * one nobody named: that is refused (exit 2).
 */
export function redisAclOf(o: { redisAcl?: boolean; redisUrl?: string }): boolean {
  const env = process.env['XGSIM_REDIS_ACL'];
  const want = o.redisAcl === true || (env !== undefined && !['', '0', 'false'].includes(env));
  if (want && o.redisUrl === undefined && process.env['REDIS_URL'] === undefined) {
    throw new UsageError(`${o.redisAcl === true ? '--redis-acl' : 'XGSIM_REDIS_ACL'}: it creates and deletes ACL users on the Redis the run uses; name that Redis with --redis-url or REDIS_URL (never done to the default ${DEFAULT_REDIS_URL} unasked)`);
  }
  return want;
}
