/**
 * Redis ACL users per role (docs/security.md, "Redis ACL users per role").
 *
 * When xgsim starts its own redis-server, or the user names a Redis it may
 * configure (`--redis-acl`), a run does not talk to Redis as the user the
 * URL names. It creates one ACL user per role, each limited to the keys and
 * commands that role sends, with a random password held only in this
 * process's memory (and handed to its own threads): never printed, logged,
 * put on a command line or in a run record. Redis is given only the
 * password's SHA-256 (`#<hex>`), so not even its SLOWLOG or MONITOR sees it.
 * The users are deleted when the run ends (a server xgsim started dies with
 * it anyway).
 *
 * The roles of a run under namespace `ns` (transport/redis-bus.ts has the
 * key layout; every command below is one the code sends, nothing more):
 *
 *   dispatcher    writes requests, reads answers: XADD, XTRIM on
 *                 `ns:req:*` (write-only), XREAD on `ns:resp:*` (read-only),
 *                 SET, EXISTS on `ns:alive`.
 *   device model  one user per device model (a backend domain's), only its
 *                 IOREQ servers' keys: XREADGROUP, XACK, XAUTOCLAIM,
 *                 XGROUP CREATE on `ns:req:<server>`; HGET, HSET, HSETNX on
 *                 `ns:applied:<server>` and `ns:bufmark:<server>`; XADD on
 *                 `ns:resp:<frontend>` of the frontends it serves; EVAL,
 *                 EVALSHA (the answerOnce script: Redis checks the script's
 *                 keys and every command it runs against the same user).
 *   admin         the run's keys as a whole: SCAN, DEL on `ns:*` (deletes
 *                 them at the end).
 *   campaign      a campaign host: the pool's list of campaigns and the
 *                 campaigns' keys (transport/campaign-queue.ts), no run's.
 *
 * Every user may also CLIENT SETNAME (ioredis names each connection) and
 * nothing else: no INFO (so its connections skip ioredis's ready check),
 * no KEYS, no CONFIG, no FLUSHALL, no pub/sub channels.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { TRANSPORT_STOP_BOUND_MS } from './constants.js';
import { hasUser, streamKeys } from './redis-bus.js';

export type AclRole =
  | { kind: 'dispatcher' }
  | { kind: 'admin' }
  /** `servers`: host-wide IOREQ server ids; `frontends`: the domains they serve (whose response streams it writes). */
  | { kind: 'device-model'; servers: readonly number[]; frontends: readonly number[] }
  /** A campaign host of pool `pool`: the pool's list and the campaigns' keys (transport/campaign-queue.ts), nothing of any run. */
  | { kind: 'campaign'; pool: string };

/** Commands every role's connections send: ioredis names each (connectionName). */
const COMMON = ['+client|setname'];

/** Glob characters: a namespace or name that holds one would widen a key pattern. */
const GLOB_RE = /[*?[\]\\\s]/;

function need(cond: boolean, what: string): asserts cond {
  if (!cond) throw new RangeError(`redis-acl: ${what}`);
}

/**
 * The ACL rules of `role` in the run under `namespace`, after `reset` and
 * before the password: key patterns, then commands. Pure (tests print them;
 * docs/security.md's table is this function in words).
 */
export function aclRules(namespace: string, role: AclRole): string[] {
  need(namespace.length > 0 && !GLOB_RE.test(namespace), `namespace must be non-empty, without glob characters or spaces, got ${JSON.stringify(namespace)}`);
  const k = streamKeys(namespace);
  switch (role.kind) {
    case 'dispatcher':
      return [`%W~${namespace}:req:*`, `%R~${namespace}:resp:*`, `~${namespace}:alive`, '+xadd', '+xtrim', '+xread', '+set', '+exists', ...COMMON];
    case 'device-model': {
      need(role.servers.length > 0, 'a device model serves at least one IOREQ server');
      for (const s of [...role.servers, ...role.frontends]) need(Number.isInteger(s) && s >= 0, `bad server or domain id ${s}`);
      const keys = [...role.servers.flatMap((s) => [k.req(s), k.applied(s), k.bufmark(s)]), ...[...new Set(role.frontends)].map((d) => k.resp(d))];
      return [...keys.map((x) => `~${x}`), '+xreadgroup', '+xack', '+xautoclaim', '+xgroup|create', '+xadd', '+hget', '+hset', '+hsetnx', '+eval', '+evalsha', ...COMMON];
    }
    case 'admin':
      return [`~${namespace}:*`, '+scan', '+del', ...COMMON];
    case 'campaign':
      need(role.pool !== '' && !GLOB_RE.test(role.pool), `campaign pool must be a name without glob characters, got ${JSON.stringify(role.pool)}`);
      // A host checks Redis answers (PING), lists the pool's campaigns, withdraws dead ones (ZREM, DEL), takes, keeps and completes jobs (the scripts run XPENDING, XCLAIM, EXISTS, XADD, XACK).
      return [`~xgsim:pool:${role.pool}:campaigns`, '~xgsim:campaign:*', '+ping', '+zrange', '+mget', '+zrem', '+del', '+xreadgroup', '+xautoclaim', '+xack', '+xpending', '+xclaim', '+xadd', '+exists', '+eval', ...COMMON];
  }
}

/** `url` as `user` with `password` (the scheme, host, port and db kept). */
export function urlAs(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  return u.toString();
}

/** `url` without a user or password: what a thread that may not talk to Redis is handed. */
export function withoutUser(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString();
}

export interface RunAclOptions {
  /** The Redis to configure, as a user that may run ACL SETUSER (the URL the user named, or xgsim's own server). */
  url: string;
  namespace: string;
  /** Role name (`dispatcher`, `admin`, `dm-d0`, …) → role. */
  roles: Readonly<Record<string, AclRole>>;
  /** How long creating the users may take; default 5000 ms. */
  timeout_ms?: number;
}

/**
 * The ACL users of one run. `create` makes them, `url(role)` is the URL a
 * role's connections use (its user and password: keep it in memory, show
 * it only through redactUrl), `remove` deletes them.
 */
export class RunAcl {
  private readonly urls = new Map<string, string>();
  private readonly users: string[] = [];
  private removed = false;

  private constructor(
    private readonly conn: Redis,
    readonly tag: string,
  ) {}

  static async create(o: RunAclOptions): Promise<RunAcl> {
    const timeout_ms = o.timeout_ms ?? 5000;
    // A configuring user that is itself an ACL user may lack INFO, the ready check.
    const conn = new Redis(o.url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: timeout_ms, connectionName: `xgsim-acl:${o.namespace}`, enableReadyCheck: !hasUser(o.url) });
    conn.on('error', () => undefined);
    const acl = new RunAcl(conn, randomBytes(6).toString('hex'));
    try {
      await bound(conn.connect(), timeout_ms, 'connect');
      for (const [name, role] of Object.entries(o.roles)) {
        need(/^[a-z0-9-]{1,40}$/.test(name), `role name must be 1–40 of [a-z0-9-], got ${JSON.stringify(name)}`);
        const user = `xgsim-${acl.tag}-${name}`;
        const password = randomBytes(32).toString('hex');
        const rules = aclRules(o.namespace, role);
        // Recorded before it exists, so a failure half-way still removes it.
        acl.users.push(user);
        const hash = createHash('sha256').update(password).digest('hex');
        await bound(conn.call('ACL', 'SETUSER', user, 'reset', 'on', `#${hash}`, 'resetchannels', ...rules), timeout_ms, `ACL SETUSER ${user}`);
        acl.urls.set(name, urlAs(o.url, user, password));
      }
    } catch (e) {
      await acl.remove();
      throw new Error(`creating the run's Redis ACL users: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`, { cause: e });
    }
    return acl;
  }

  /** The user name of `role`. */
  user(role: string): string {
    need(this.urls.has(role), `no role ${JSON.stringify(role)}`);
    return `xgsim-${this.tag}-${role}`;
  }

  /** The URL of `role`'s user, with its password. */
  url(role: string): string {
    const u = this.urls.get(role);
    need(u !== undefined, `no role ${JSON.stringify(role)}`);
    return u;
  }

  /**
   * Delete the users (ACL DELUSER; their connections are closed by Redis)
   * and close the configuring connection, bounded: a Redis that is gone
   * does not hold a stopping run. Returns whether Redis confirmed it.
   */
  async remove(): Promise<boolean> {
    if (this.removed) return true;
    this.removed = true;
    let ok = this.users.length === 0;
    try {
      if (this.users.length > 0) ok = (await bound(this.conn.call('ACL', 'DELUSER', ...this.users), TRANSPORT_STOP_BOUND_MS, 'ACL DELUSER')) !== undefined;
    } catch {
      ok = false;
    } finally {
      this.conn.disconnect();
    }
    return ok;
  }
}

async function bound<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
