/**
 * The Redis Streams mechanics of campaigns (docs/semantics.md §1 "Multi-process and
 * scale-out"): a campaign enqueues seeded jobs, `xgsim host` workers of a
 * consumer group take them one at a time and publish results. This module
 * moves validated messages; it knows nothing of runs.
 *
 * Keys (`<id>` is the campaign id, `<pool>` a name campaigns and hosts
 * share, `default` unless told):
 *
 *   xgsim:pool:<pool>:campaigns   ZSET of live campaign ids (score: created,
 *                                 ms): how hosts find work.
 *   xgsim:campaign:<id>:jobs      the jobs stream; consumer group `hosts`,
 *                                 created (MKSTREAM) before the first XADD.
 *   xgsim:campaign:<id>:results   the results stream; the campaign reads it
 *                                 with plain XREAD from its own cursor.
 *   xgsim:campaign:<id>:alive     a lease the campaign renews (SET PX); a
 *                                 campaign whose lease ran out is dead, and
 *                                 hosts skip it and collect its keys.
 *   xgsim:campaign:<id>:meta      HASH: name, runs, pool, created (for people
 *                                 looking at Redis).
 *
 * Every entry has one field, `m`, holding a msgpackr map
 * (campaign-messages.ts). Nothing is trimmed: a campaign's streams hold at
 * most `runs` jobs and about as many results, and are deleted when it ends.
 *
 * A job's life:
 *  1. the host reads it with XREADGROUP `>` (COUNT 1, BLOCK on a connection
 *     of its own) or takes it over with XAUTOCLAIM once it has been idle
 *     RECLAIM_IDLE_MS — its host died or gave it up;
 *  2. while the job runs the host refreshes its claim every
 *     CLAIM_REFRESH_MS: a Lua script XCLAIMs the entry back to itself
 *     (resetting its idle time, JUSTID so the delivery count stays) only
 *     while XPENDING still names this host as its owner, so a host that was
 *     only slow never takes a job back from the host that reclaimed it;
 *  3. the result is XADDed and the job XACKed in one Lua script, which does
 *     nothing once the campaign's lease is gone (an XADD would recreate the
 *     results stream of a campaign that ended).
 * A host that gives a job up (Ctrl-C) XCLAIMs it to itself with a huge IDLE,
 * so the next XAUTOCLAIM anywhere takes it at once.
 *
 * Exactly once is the campaign's part: a job can still run twice (its host
 * was paused past RECLAIM_IDLE_MS, or a script's reply was lost and ioredis
 * re-sent it), so the campaign counts results by job index and drops the
 * duplicates.
 *
 * Connections: one command connection and one reader connection for the
 * blocking reads (XREADGROUP, XREAD), which never share a connection with
 * writers. ioredis re-sends commands in flight after a reconnect; an
 * XREADGROUP whose reply was lost leaves the entry pending under this host
 * without it knowing, and it comes back through step 1's XAUTOCLAIM.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { decodeJob, decodeResult, encodeJob, encodeResult, jobIdentity, type JobMsg, type ResultMsg, type WireError } from './campaign-messages.js';
import { hasUser } from './redis-bus.js';

export const CAMPAIGN_GROUP = 'hosts';
export const ENTRY_FIELD = 'm';
/** How often a host renews its claim on the job it runs. */
export const CLAIM_REFRESH_MS = 1000;
/** A job pending this long without a refresh belongs to a dead host and may be reclaimed. */
export const RECLAIM_IDLE_MS = 5000;
/** The campaign's lease on its keys, renewed every ALIVE_TTL_MS / 3. */
export const ALIVE_TTL_MS = 15_000;
/** A job handed out this many times (each host that had it died or gave it up) is answered 'error'. */
export const MAX_DELIVERIES = 5;
/** XCLAIM IDLE for a job given back: far above RECLAIM_IDLE_MS. */
const GIVEN_BACK_IDLE_MS = 1_000_000_000;

const ID_RE = /^\d{1,20}-\d{1,20}$/;
const NAME_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;

function need(cond: boolean, what: string): asserts cond {
  if (!cond) throw new RangeError(`CampaignQueue: ${what}`);
}

export function campaignKeys(id: string): { jobs: string; results: string; alive: string; meta: string } {
  need(NAME_RE.test(id), `campaign id must be 1–128 of [A-Za-z0-9_.:@-], got ${JSON.stringify(id)}`);
  const p = `xgsim:campaign:${id}`;
  return { jobs: `${p}:jobs`, results: `${p}:results`, alive: `${p}:alive`, meta: `${p}:meta` };
}

export function poolKey(pool: string): string {
  need(NAME_RE.test(pool), `pool must be 1–128 of [A-Za-z0-9_.:@-], got ${JSON.stringify(pool)}`);
  return `xgsim:pool:${pool}:campaigns`;
}

export function validName(s: string): boolean {
  return NAME_RE.test(s);
}

/** A job handed to a host. */
export interface TakenJob {
  campaign: string;
  /** The stream entry id (for refresh, giveBack, complete). */
  id: string;
  /** The job, or why its entry could not be decoded (with its identity when that much was readable). */
  job: JobMsg | (WireError & { identity?: { campaign: string; index: number } });
  /** Times handed out, this one included. */
  deliveries: number;
  /** Taken over from another host (XAUTOCLAIM). */
  reclaimed: boolean;
}

export interface GroupProgress {
  /** Handed out, not acknowledged: running (or held by a dead host until reclaimed). */
  pending: number;
  /** Not handed out yet. */
  queued: number;
  /** Consumers seen within the last 10 s. */
  hosts: number;
}

// Both scripts: KEYS[1] jobs stream; ARGV group, consumer, id.
const REFRESH_LUA = `
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1`;
const GIVE_BACK_LUA = `
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
return 1`;
// KEYS[1] jobs, KEYS[2] results, KEYS[3] alive; ARGV group, id, payload. A
// campaign that ended (or died) gets nothing: an XADD would recreate its results stream.
const COMPLETE_LUA = `
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', '${ENTRY_FIELD}', ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1`;

/** Errors that mean the campaign's keys are gone (it ended while we were reading). */
function campaignGone(e: unknown): boolean {
  return e instanceof Error && /NOGROUP|UNBLOCKED|no such key/i.test(e.message);
}

export interface CampaignQueueOptions {
  url: string;
  /** CLIENT SETNAME prefix of the connections. */
  clientName: string;
  /** How long connect() waits for Redis; default 2000. */
  connectTimeout_ms?: number;
  onConnectionError?: (err: Error) => void;
}

export class CampaignQueue {
  readonly #cmd: Redis;
  readonly #reader: Redis;
  #closed = false;

  private constructor(opts: CampaignQueueOptions) {
    const mk = (role: string): Redis => {
      const o: RedisOptions = {
        connectionName: `${opts.clientName}:${role}`,
        lazyConnect: true,
        maxRetriesPerRequest: null,
        autoResendUnfulfilledCommands: true,
        enableOfflineQueue: true,
        retryStrategy: (times) => Math.min(50 * times, 1000),
        // A campaign host's ACL user (transport/redis-acl.ts) may not send INFO, the ready check.
        enableReadyCheck: !hasUser(opts.url),
      };
      const c = new Redis(opts.url, o);
      c.on('error', (e: Error) => opts.onConnectionError?.(e));
      return c;
    };
    this.#cmd = mk('cmd');
    this.#reader = mk('reader');
  }

  /** Connects both connections; rejects when Redis does not answer within connectTimeout_ms. */
  static async connect(opts: CampaignQueueOptions): Promise<CampaignQueue> {
    need(/^rediss?:\/\//.test(opts.url), `url must start with redis:// or rediss://, got ${opts.url}`);
    need(/^[\x21-\x7e]{1,200}$/.test(opts.clientName), 'clientName must be 1–200 printable ASCII characters');
    const q = new CampaignQueue(opts);
    const timeout_ms = opts.connectTimeout_ms ?? 2000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.all([q.#cmd.connect(), q.#reader.connect()]),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer from Redis at ${opts.url.replace(/\/\/[^@/]*@/, '//***@')} within ${timeout_ms} ms`)), timeout_ms);
        }),
      ]);
    } catch (e) {
      q.#cmd.disconnect();
      q.#reader.disconnect();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return q;
  }

  // ── campaign side ─────────────────────────────────────────────────────

  /** Creates the jobs stream and its group, the lease and meta, then announces the campaign in its pool. */
  async create(id: string, pool: string, meta: Record<string, string>): Promise<void> {
    const k = campaignKeys(id);
    await this.#cmd.call('XGROUP', 'CREATE', k.jobs, CAMPAIGN_GROUP, '0', 'MKSTREAM');
    await this.#cmd.set(k.alive, '1', 'PX', ALIVE_TTL_MS);
    if (Object.keys(meta).length > 0) await this.#cmd.hset(k.meta, meta);
    await this.#cmd.zadd(poolKey(pool), Date.now(), id);
  }

  /** XADDs the jobs in order (pipelined). */
  async enqueue(id: string, jobs: readonly JobMsg[]): Promise<void> {
    const k = campaignKeys(id);
    for (let i = 0; i < jobs.length; i += 500) {
      const p = this.#cmd.pipeline();
      for (const j of jobs.slice(i, i + 500)) {
        need(j.campaign === id, `job of campaign ${j.campaign} enqueued on ${id}`);
        p.xaddBuffer(k.jobs, '*', ENTRY_FIELD, encodeJob(j));
      }
      const r = await p.exec();
      for (const [err] of r ?? []) if (err !== null) throw err;
    }
  }

  async keepAlive(id: string): Promise<void> {
    await this.#cmd.set(campaignKeys(id).alive, '1', 'PX', ALIVE_TTL_MS);
  }

  /** Results after `cursor` ('0-0' at first), waiting up to block_ms (0: do not wait). */
  async readResults(id: string, cursor: string, block_ms: number, count: number): Promise<{ cursor: string; items: Array<ResultMsg | WireError> }> {
    need(ID_RE.test(cursor), `cursor must be a stream id, got ${cursor}`);
    const args: (string | number)[] = ['COUNT', count];
    if (block_ms > 0) args.push('BLOCK', block_ms);
    const entries = streamEntries(await this.#reader.callBuffer('XREAD', ...args, 'STREAMS', campaignKeys(id).results, cursor));
    let last = cursor;
    const items = entries.map((e) => {
      last = e.id;
      return decodeResult(payload(e.fields));
    });
    return { cursor: last, items };
  }

  async progress(id: string): Promise<GroupProgress> {
    const k = campaignKeys(id);
    // Both replies are flat [k, v, …] lists per group / consumer.
    const groups = (await this.#cmd.call('XINFO', 'GROUPS', k.jobs)) as unknown[];
    const g = groups.map(pairs).find((x) => x['name'] === CAMPAIGN_GROUP);
    const consumers = ((await this.#cmd.call('XINFO', 'CONSUMERS', k.jobs, CAMPAIGN_GROUP)) as unknown[]).map(pairs);
    return {
      pending: Number(g?.['pending'] ?? 0),
      queued: Number(g?.['lag'] ?? 0),
      hosts: consumers.filter((c) => Number(c['idle'] ?? Infinity) < 10_000).length,
    };
  }

  /** Withdraws the campaign from its pool and deletes its keys. */
  async finish(id: string, pool: string): Promise<void> {
    const k = campaignKeys(id);
    await this.#cmd.zrem(poolKey(pool), id);
    await this.#cmd.del(k.jobs, k.results, k.alive, k.meta);
  }

  // ── host side ─────────────────────────────────────────────────────────

  /**
   * Live campaigns of the pool, oldest first. Campaigns whose lease ran out
   * (their process died) are withdrawn and their keys deleted.
   */
  async campaigns(pool: string): Promise<string[]> {
    const ids = await this.#cmd.zrange(poolKey(pool), 0, -1);
    if (ids.length === 0) return [];
    const alive = await this.#cmd.mget(...ids.map((id) => campaignKeys(id).alive));
    const live: string[] = [];
    for (const [i, id] of ids.entries()) {
      if (alive[i] !== null) live.push(id);
      else if ((await this.#cmd.zrem(poolKey(pool), id)) === 1) {
        const k = campaignKeys(id);
        await this.#cmd.del(k.jobs, k.results, k.meta);
      }
    }
    return live;
  }

  /** The next new job of a campaign for `consumer`, waiting up to block_ms (0: do not wait); undefined when none (or the campaign is gone). */
  async take(id: string, consumer: string, block_ms: number): Promise<TakenJob | undefined> {
    need(NAME_RE.test(consumer), `consumer must be 1–128 of [A-Za-z0-9_.:@-], got ${JSON.stringify(consumer)}`);
    const args: (string | number)[] = ['GROUP', CAMPAIGN_GROUP, consumer, 'COUNT', 1];
    if (block_ms > 0) args.push('BLOCK', block_ms);
    let reply: unknown;
    try {
      reply = await this.#reader.callBuffer('XREADGROUP', ...args, 'STREAMS', campaignKeys(id).jobs, '>');
    } catch (e) {
      if (campaignGone(e)) return undefined;
      throw e;
    }
    const e = streamEntries(reply)[0];
    if (e === undefined) return undefined;
    return { campaign: id, id: e.id, job: decodeTaken(e.fields), deliveries: 1, reclaimed: false };
  }

  /**
   * A job of a campaign whose host went silent for minIdle_ms, taken over by `consumer`; undefined when none.
   * Entries `held` names (ids of jobs `consumer` itself is running) are passed over: a host whose own
   * refreshes were late (its event loop stalled past minIdle_ms) claims them back to itself — a refresh —
   * and must not run them a second time.
   */
  async reclaim(id: string, consumer: string, minIdle_ms: number = RECLAIM_IDLE_MS, held?: ReadonlySet<string>): Promise<TakenJob | undefined> {
    const key = campaignKeys(id).jobs;
    let cursor = '0-0';
    try {
      do {
        const reply = await this.#cmd.callBuffer('XAUTOCLAIM', key, CAMPAIGN_GROUP, consumer, minIdle_ms, cursor, 'COUNT', 1);
        need(Array.isArray(reply) && reply.length >= 2 && Buffer.isBuffer(reply[0]), 'XAUTOCLAIM: unexpected reply');
        cursor = (reply[0] as Buffer).toString();
        const e = entries(reply[1])[0];
        if (e !== undefined) {
          if (e.fields === null) {
            // Deleted while pending (cannot happen without trimming): drop it.
            await this.#cmd.call('XACK', key, CAMPAIGN_GROUP, e.id);
            continue;
          }
          if (held?.has(e.id) === true) continue;
          const p = (await this.#cmd.call('XPENDING', key, CAMPAIGN_GROUP, e.id, e.id, 1)) as unknown[];
          const row = p[0];
          const deliveries = Array.isArray(row) ? Number(row[3]) : 1;
          return { campaign: id, id: e.id, job: decodeTaken(e.fields), deliveries, reclaimed: true };
        }
      } while (cursor !== '0-0');
    } catch (e) {
      if (campaignGone(e)) return undefined;
      throw e;
    }
    return undefined;
  }

  /** Renews `consumer`'s claim on a job it runs; false when it no longer owns it (reclaimed, or the campaign is gone). */
  async refresh(t: TakenJob, consumer: string): Promise<boolean> {
    try {
      return (await this.#cmd.eval(REFRESH_LUA, 1, campaignKeys(t.campaign).jobs, CAMPAIGN_GROUP, consumer, t.id)) === 1;
    } catch (e) {
      if (campaignGone(e)) return false;
      throw e;
    }
  }

  /** Gives a job up so that any host reclaims it at once; false when it was no longer this consumer's. */
  async giveBack(t: TakenJob, consumer: string): Promise<boolean> {
    try {
      return (await this.#cmd.eval(GIVE_BACK_LUA, 1, campaignKeys(t.campaign).jobs, CAMPAIGN_GROUP, consumer, t.id, GIVEN_BACK_IDLE_MS)) === 1;
    } catch (e) {
      if (campaignGone(e)) return false;
      throw e;
    }
  }

  /** Publishes the result and acknowledges the job, atomically (a script); false when the campaign is gone. */
  async complete(t: TakenJob, result: ResultMsg): Promise<boolean> {
    need(result.campaign === t.campaign, `result of campaign ${result.campaign} for a job of ${t.campaign}`);
    const k = campaignKeys(t.campaign);
    try {
      return (await this.#cmd.eval(COMPLETE_LUA, 3, k.jobs, k.results, k.alive, CAMPAIGN_GROUP, t.id, encodeResult(result))) === 1;
    } catch (e) {
      if (campaignGone(e)) return false;
      throw e;
    }
  }

  /** Acknowledges a job without a result (an entry no campaign can be told about). */
  async drop(t: TakenJob): Promise<void> {
    try {
      await this.#cmd.xack(campaignKeys(t.campaign).jobs, CAMPAIGN_GROUP, t.id);
    } catch (e) {
      if (!campaignGone(e)) throw e;
    }
  }

  /** Test hook: XADD raw bytes as a job entry. */
  async injectRawJob(id: string, raw: Buffer): Promise<void> {
    await this.#cmd.xaddBuffer(campaignKeys(id).jobs, '*', ENTRY_FIELD, raw);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#reader.disconnect();
    await Promise.race([this.#cmd.quit().catch(() => undefined), new Promise((r) => setTimeout(r, 500))]);
    this.#cmd.disconnect();
  }
}

function decodeTaken(fields: Buffer[] | null): TakenJob['job'] {
  const b = payload(fields);
  const j = decodeJob(b);
  if ('v' in j) return j;
  const identity = jobIdentity(b);
  return identity === undefined ? j : { ...j, identity };
}

function payload(fields: Buffer[] | null): Buffer | undefined {
  if (fields === null || fields.length !== 2 || fields[0]?.toString() !== ENTRY_FIELD) return undefined;
  return fields[1];
}

interface Entry {
  id: string;
  fields: Buffer[] | null;
}

/** An XREAD/XREADGROUP reply for one key: null, or [[key, entries]]. */
function streamEntries(reply: unknown): Entry[] {
  if (reply === null) return [];
  need(Array.isArray(reply) && reply.length === 1 && Array.isArray(reply[0]) && reply[0].length === 2, 'XREAD: unexpected reply');
  return entries((reply[0] as unknown[])[1]);
}

function entries(list: unknown): Entry[] {
  need(Array.isArray(list), 'stream reply: entries are not a list');
  return list.map((e: unknown) => {
    need(Array.isArray(e) && e.length === 2 && Buffer.isBuffer(e[0]), 'stream reply: malformed entry');
    const fields: unknown = e[1];
    const id = (e[0] as Buffer).toString();
    if (fields === null) return { id, fields: null };
    need(Array.isArray(fields) && fields.every((f) => Buffer.isBuffer(f)), 'stream reply: fields are not buffers');
    return { id, fields: fields as Buffer[] };
  });
}

/** XINFO's flat [k, v, k, v…] replies as an object. */
function pairs(x: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!Array.isArray(x)) return out;
  for (let i = 0; i + 1 < x.length; i += 2) out[String(x[i])] = x[i + 1];
  return out;
}
