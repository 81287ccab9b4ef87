/**
 * The Redis Streams mechanics of the `redis` IOREQ transport (docs/semantics.md §1, §5).
 * The hypervisor's dispatcher and the device model each hold a bus; this
 * module knows nothing of vCPUs or slots — it moves validated messages.
 *
 * Key layout (everything under the run's namespace, e.g. `xgsim:<host>:<run>`):
 *
 *   `${ns}:req:<server>`  one request stream per IOREQ server, consumer group
 *                         `dm` (created at id 0 with MKSTREAM, so entries
 *                         added before the group existed are still seen).
 *                         `<server>` is the host-wide id
 *                         `target * MAX_IOREQ_SERVERS_PER_DOMAIN + index`.
 *   `${ns}:resp:<domid>`  one response stream per frontend domain, read with
 *                         plain XREAD from a cursor the dispatcher owns.
 *   `${ns}:applied:<server>`, `${ns}:bufmark:<server>`  the device model's
 *                         exactly-once records (answers given, buffered
 *                         ioreqs applied), one hash per IOREQ server, so a
 *                         device model's Redis ACL user (transport/redis-acl.ts)
 *                         reaches its own servers' records and no other's.
 *
 * Per domain rather than per vCPU: the dispatcher then needs one blocking
 * reader connection per domain instead of one per vCPU (up to MAX_VCPUS),
 * and it demultiplexes by the `vcpu` field and wakes the vCPU through
 * shared memory as it would for the ring transport. A vCPU has at most one
 * ioreq in flight, so no vCPU waits behind another's burst for long.
 *
 * Each entry has the field `m`, holding a msgpackr map (messages.ts), and,
 * when the bus has keys, the field `a`: the entry's MAC (transport/auth.ts).
 * A bus with keys signs what it writes and marks what it reads that does
 * not verify (RequestItem.rejected, ResponseItem.from). Every XADD trims
 * with `MAXLEN ~ STREAM_MAXLEN_ENTRIES`.
 *
 * Connections. Blocking XREAD/XREADGROUP hold their connection for up to
 * `block_ms`, so they never share one with writers: the bus has one command
 * connection (XADD, XACK, XAUTOCLAIM, XGROUP) and one reader connection per
 * reader name, created on first use (`req:<server>:<consumer>` for
 * readRequests, `resp:<domid>` for readResponses). Concurrent reads through
 * the same reader queue behind each other, so give each reading loop its own
 * consumer or domid. Every connection is named (CLIENT SETNAME)
 * `<clientName>:cmd` or `<clientName>:r:<reader>`.
 *
 * Duplicates happen — consumers must be idempotent by (domid, vcpu, seq).
 * ioredis reconnects on its own and re-sends the commands that were in
 * flight (`maxRetriesPerRequest: null`, autoResendUnfulfilledCommands):
 *  - an XADD whose reply was lost is appended again (a duplicate request or
 *    response);
 *  - an XREADGROUP `>` whose reply was lost has moved its entries into the
 *    consumer's pending list without delivering them; so after every
 *    (re)connect of a reader, readRequests first re-reads that consumer's
 *    own pending entries (XREADGROUP from id 0) before asking for new ones,
 *    which re-delivers entries that may already be in hand;
 *  - reclaim (XAUTOCLAIM) may take entries from a consumer that was only slow.
 * The device model skips requests whose key a SeenSet holds; the hypervisor
 * drops responses it has seen or whose seq its vCPU is not waiting for.
 * Ack every id readRequests/reclaim returned — malformed ones included —
 * once handled, or they are re-delivered after every reconnect.
 *
 * Usage (each loop on its own; errors and shutdown left out):
 *
 *   // hypervisor: publish, then a dispatcher loop per domain
 *   await bus.publishRequest(server, msg);
 *   let cursor = START_ID;
 *   for (;;) {
 *     const { lastId, items } = await bus.readResponses(domid, cursor, 1000, 64);
 *     cursor = lastId;
 *     for (const r of items) if (!isWireError(r) && seen.add(SeenSet.key(r.domid, r.vcpu, r.seq))) wake(r);
 *   }
 *
 *   // device model: one loop per (server, consumer); `reclaim` from a timer
 *   for (;;) {
 *     const items = await bus.readRequests(server, 'dm0', 1000, 16);
 *     for (const { msg } of items) if (!isWireError(msg) && seen.add(SeenSet.key(msg.domid, msg.vcpu, msg.seq))) await bus.publishResponse(msg.domid, handle(msg));
 *     await bus.ack(server, items.map((i) => i.id));
 *   }
 *
 * Losses: none from reconnects or pauses. A request trimmed away before it
 * was acknowledged is lost here (counted in stats().lost); the dispatcher
 * sends it again once it stays unanswered (hypervisor/host/redis-dispatcher.ts,
 * RESEND_AFTER_MS), and the device model's dedup makes that exactly once.
 * STREAM_MAXLEN_ENTRIES is far above what can be in flight. A dispatcher
 * whose cursor falls more than the bound behind misses responses, which
 * the same re-sending recovers.
 */
import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { MAX_BLOCK_MS, MAX_IOREQ_SERVER_IDS, MAX_READ_COUNT, STREAM_MAXLEN_ENTRIES } from './constants.js';
import { MAX_DOMAINS } from '../hypervisor/layout/constants.js';
import { MAX_IOREQ_SERVERS_PER_DOMAIN } from '../hypervisor/layout/constants.js';
import { decodeReq, decodeResp, encode, isWireError, type IoreqMsg, type IoreqResp, type WireError } from './messages.js';
import { entryMac, macOk } from './auth.js';
import { isLostGroup, TransportFault } from './faults.js';

export { SeenSet } from './seen-set.js';

/** The request streams' consumer group (the device models). */
export const REQUEST_GROUP = 'dm';
/** The message field of every entry. */
export const ENTRY_FIELD = 'm';
/** The MAC field of an entry written by a bus with keys. */
export const MAC_FIELD = 'a';
/** Where a dispatcher's response cursor starts: namespaces are per run, so from the beginning (never `$`, which races with responses published before the first read). */
export const START_ID = '0-0';

export interface RedisIoreqBusOptions {
  /** `redis://` or `rediss://` URL. */
  url: string;
  /** Prefix of every key, e.g. `xgsim:<host>:<run>`; printable ASCII, no glob characters. */
  namespace: string;
  /** Prefix of every connection's CLIENT SETNAME; default `xgsim-bus:<namespace>`. */
  clientName?: string;
  /** The `MAXLEN ~` bound of every XADD; default STREAM_MAXLEN_ENTRIES. */
  maxLen_entries?: number;
  /** How long connect() waits for the first connection; default 5000. */
  connectTimeout_ms?: number;
  /** Called on each connection error (ioredis keeps retrying); errors are counted in stats() either way. */
  onConnectionError?: (err: Error, connection: string) => void;
  /**
   * The key of each IOREQ server this bus may sign for or verify
   * (transport/auth.ts); undefined for a server it has no key of. Without
   * `keys` nothing is signed or verified.
   */
  keys?: (server: number) => Buffer | undefined;
}

export interface BusStats {
  /** Entries appended (requests and responses; a re-sent XADD counts once). */
  published: number;
  /** Entries handed out by readRequests and readResponses (malformed included). */
  read: number;
  /** Entries XACK reported acknowledged. */
  acked: number;
  /** Entries handed out by reclaim. */
  reclaimed: number;
  /** Entries that failed to decode or were misrouted. */
  malformed: number;
  /** Pending requests found trimmed away before they were acknowledged. */
  lost: number;
  /** Entries whose MAC did not verify (bus with keys only). */
  rejected: number;
  /** Reconnects of any of the bus's connections. */
  reconnects: number;
  connectionErrors: number;
}

export interface RequestItem {
  /** The stream entry id, for ack(). */
  id: string;
  msg: IoreqMsg | WireError;
  /** Why the entry was not accepted as the dispatcher's (bus with keys): no MAC, or a wrong one. Ack it like the others. */
  rejected?: string;
}

/**
 * A response; `from` (bus with keys only) is the server whose key
 * verified its MAC, absent when none did: a stranger's entry.
 */
export type ResponseItem = (IoreqResp | (WireError & { raw: Buffer })) & { from?: number };

export interface ResponseBatch {
  /** Pass back as the next call's lastId (unchanged when nothing arrived). */
  lastId: string;
  items: ResponseItem[];
}

/** The stream keys of a namespace. */
export function streamKeys(namespace: string): { req(server: number): string; resp(domid: number): string; applied(server: number): string; bufmark(server: number): string } {
  return {
    req: (server) => `${namespace}:req:${server}`,
    resp: (domid) => `${namespace}:resp:${domid}`,
    applied: (server) => `${namespace}:applied:${server}`,
    bufmark: (server) => `${namespace}:bufmark:${server}`,
  };
}

interface Reader {
  readonly conn: Redis;
  /** Bumped by every reconnect. */
  gen: number;
  /** Where the re-read of this consumer's own pending entries resumes; null when none is due. */
  scanFrom: string | null;
}

interface Entry {
  id: string;
  /** null: the entry was trimmed away while pending. */
  fields: Buffer[] | null;
}

const ID_RE = /^\d{1,20}(-\d{1,20})?$/;
const NAME_RE = /^[\x21-\x7e]{1,64}$/;
const READER_RE = /^[\x21-\x7e]{1,100}$/;
const NAMESPACE_RE = /^[\x21-\x7e]{1,200}$/;

function need(cond: boolean, what: string): asserts cond {
  if (!cond) throw new RangeError(`RedisIoreqBus: ${what}`);
}
function needInt(v: number, min: number, max: number, name: string): void {
  need(Number.isInteger(v) && v >= min && v <= max, `${name} must be an integer in [${min}, ${max}], got ${v}`);
}
const APPLIED_RE = /^(\d{1,10}):(-?\d{1,4})$/;

/**
 * An answer as `markApplied` and `answerOnce` record it: `data:fault`. A
 * record that does not parse was not written by a device model: the run
 * can no longer tell what was answered (a TransportFault).
 */
function parseApplied(key: string, v: string): { data: number; fault: number } {
  const m = APPLIED_RE.exec(v);
  const data = Number(m?.[1]);
  const fault = Number(m?.[2]);
  if (m === null || data > 0xffff_ffff) throw new TransportFault(`the answer record of ioreq ${key} does not parse: ${JSON.stringify(v.slice(0, 40))}`);
  return { data, fault };
}

/** KEYS: the applied hash, the response stream. ARGV: field, `data:fault`, MAXLEN, entry field, payload[, MAC field, MAC]. */
const ANSWER_ONCE_LUA = `if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  if ARGV[7] then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', ARGV[4], ARGV[5], ARGV[6], ARGV[7])
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', ARGV[4], ARGV[5])
  end
  return false
end
return redis.call('HGET', KEYS[1], ARGV[1])`;
const ANSWER_ONCE_SHA = createHash('sha1').update(ANSWER_ONCE_LUA).digest('hex');

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class RedisIoreqBus {
  readonly namespace: string;
  readonly clientName: string;
  readonly maxLen_entries: number;
  readonly keys: ReturnType<typeof streamKeys>;
  readonly #url: string;
  readonly #cmd: Redis;
  readonly #readers = new Map<string, Reader>();
  readonly #groups = new Set<number>();
  readonly #onError: ((err: Error, connection: string) => void) | undefined;
  readonly #keys: ((server: number) => Buffer | undefined) | undefined;
  readonly #stats: BusStats = { published: 0, read: 0, acked: 0, reclaimed: 0, malformed: 0, lost: 0, rejected: 0, reconnects: 0, connectionErrors: 0 };
  #closed = false;

  private constructor(opts: RedisIoreqBusOptions) {
    this.namespace = opts.namespace;
    this.clientName = opts.clientName ?? `xgsim-bus:${opts.namespace}`;
    this.maxLen_entries = opts.maxLen_entries ?? STREAM_MAXLEN_ENTRIES;
    this.keys = streamKeys(opts.namespace);
    this.#url = opts.url;
    this.#onError = opts.onConnectionError;
    this.#keys = opts.keys;
    this.#cmd = this.#open('cmd', () => undefined);
  }

  /** Connects the command connection; rejects when Redis does not answer within connectTimeout_ms. */
  static async connect(opts: RedisIoreqBusOptions): Promise<RedisIoreqBus> {
    need(typeof opts.url === 'string' && /^rediss?:\/\//.test(opts.url), `url must start with redis:// or rediss://, got ${String(opts.url)}`);
    need(typeof opts.namespace === 'string' && NAMESPACE_RE.test(opts.namespace) && !/[*?[\]\\]/.test(opts.namespace), `namespace must be 1–200 printable ASCII characters without *?[]\\, got ${JSON.stringify(opts.namespace)}`);
    if (opts.clientName !== undefined) need(/^[\x21-\x7e]{1,200}$/.test(opts.clientName), `clientName must be 1–200 printable ASCII characters, got ${JSON.stringify(opts.clientName)}`);
    if (opts.maxLen_entries !== undefined) needInt(opts.maxLen_entries, 1, Number.MAX_SAFE_INTEGER, 'maxLen_entries');
    const timeout_ms = opts.connectTimeout_ms ?? 5000;
    needInt(timeout_ms, 1, 600_000, 'connectTimeout_ms');
    const bus = new RedisIoreqBus(opts);
    try {
      await withTimeout(bus.#cmd.connect(), timeout_ms, `no answer from ${redactUrl(opts.url)} within ${timeout_ms} ms`);
    } catch (e) {
      bus.#cmd.disconnect();
      throw new Error(`RedisIoreqBus.connect: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    return bus;
  }

  /** Whether a Redis answers PING at `url` within timeout_ms (for `--transport auto`); never throws. */
  static async reachable(url: string, timeout_ms: number): Promise<boolean> {
    let r: Redis | undefined;
    try {
      r = new Redis(url, { lazyConnect: true, connectTimeout: timeout_ms, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectionName: 'xgsim-probe', enableReadyCheck: false });
      r.on('error', () => undefined);
      const conn = r;
      const pong = await withTimeout(
        (async () => {
          await conn.connect();
          return conn.ping();
        })(),
        timeout_ms,
        'timeout',
      );
      return pong === 'PONG';
    } catch {
      return false;
    } finally {
      r?.disconnect();
    }
  }

  // ── request side (the hypervisor's dispatcher) ────────────────────────

  /** Appends a request to server's stream. `m.server` must equal `server`; an invalid message throws (the caller's bug). */
  async publishRequest(server: number, m: IoreqMsg): Promise<void> {
    this.#live();
    needInt(server, 0, MAX_IOREQ_SERVER_IDS - 1, 'server');
    need(m.server === server, `publishRequest: message for server ${m.server} published to server ${server}`);
    await this.#xadd(this.keys.req(server), encode(m), server);
  }

  /**
   * Appends several requests, each to its server's stream, in one pipeline
   * (one write, one round trip), in the order given: Redis applies them in
   * that order. Each message must be valid (the caller's bug otherwise).
   */
  async publishRequests(items: ReadonlyArray<{ server: number; msg: IoreqMsg }>): Promise<void> {
    this.#live();
    if (items.length === 0) return;
    if (items.length === 1) {
      // One request (a synchronous ioreq, mostly): a plain XADD, no pipeline to build.
      await this.publishRequest(items[0]!.server, items[0]!.msg);
      return;
    }
    const p = this.#cmd.pipeline();
    const streams = new Set<string>();
    for (const { server, msg } of items) {
      needInt(server, 0, MAX_IOREQ_SERVER_IDS - 1, 'server');
      need(msg.server === server, `publishRequests: message for server ${msg.server} published to server ${server}`);
      const key = this.keys.req(server);
      streams.add(key);
      const payload = encode(msg);
      p.xaddBuffer(key, '*', ENTRY_FIELD, payload, ...this.#macFields(server, key, payload));
    }
    // The bound of every XADD (MAXLEN ~), once per stream at the end of the pipeline.
    for (const key of streams) p.xtrim(key, 'MAXLEN', '~', this.maxLen_entries);
    const res = await p.exec();
    need(res !== null && res.length === items.length + streams.size, 'publishRequests: the pipeline was discarded');
    for (const [err] of res) if (err !== null) throw err;
    this.#stats.published += items.length;
  }

  /**
   * Responses for `domid` after `lastId` (START_ID at first), waiting up to
   * block_ms (0: do not wait) for the first. Malformed entries come back as
   * `{ error, raw }`, and reading goes on past them.
   */
  async readResponses(domid: number, lastId: string, block_ms: number, count: number): Promise<ResponseBatch> {
    this.#live();
    needInt(domid, 0, MAX_DOMAINS - 1, 'domid');
    need(ID_RE.test(lastId), `lastId must be a stream id like 1700000000000-0, got ${JSON.stringify(lastId)}`);
    this.#checkRead(block_ms, count);
    const r = this.#reader(`resp:${domid}`);
    const args: (string | number)[] = ['COUNT', count];
    if (block_ms > 0) args.push('BLOCK', block_ms);
    const stream = this.keys.resp(domid);
    const entries = parseStreamReply(await r.conn.callBuffer('XREAD', ...args, 'STREAMS', stream, lastId));
    const items: ResponseItem[] = [];
    let last = lastId;
    for (const e of entries) {
      last = e.id;
      this.#stats.read++;
      const entry = entryPayload(e.fields ?? []);
      const payload = badShape(entry) ? undefined : entry.payload;
      let resp: IoreqResp | WireError = badShape(entry) ? entry : decodeResp(entry.payload);
      if (!isWireError(resp) && resp.domid !== domid) resp = { error: `IoreqResp.domid ${resp.domid} arrived on the stream of domain ${domid}` };
      const item: ResponseItem = isWireError(resp) ? { error: resp.error, raw: payload ?? Buffer.concat(e.fields ?? []) } : resp;
      if (isWireError(resp)) this.#stats.malformed++;
      if (this.#keys !== undefined) {
        const from = payload !== undefined && !badShape(entry) ? this.#signer(domid, stream, payload, entry.mac) : undefined;
        if (from !== undefined) item.from = from;
        else this.#stats.rejected++;
      }
      items.push(item);
    }
    return { lastId: last, items };
  }

  /** The server of `domid` whose key verifies the MAC, if any (a response may come from any of its servers). */
  #signer(domid: number, stream: string, payload: Buffer, mac: Buffer | undefined): number | undefined {
    if (mac === undefined) return undefined;
    for (let i = 0; i < MAX_IOREQ_SERVERS_PER_DOMAIN; i++) {
      const s = domid * MAX_IOREQ_SERVERS_PER_DOMAIN + i;
      const k = this.#keys?.(s);
      if (k !== undefined && macOk(k, stream, payload, mac)) return s;
    }
    return undefined;
  }

  /** The MAC field and value of an entry for `server`'s stream `stream` (none without keys). */
  #macFields(server: number, stream: string, payload: Buffer): Array<string | Buffer> {
    if (this.#keys === undefined) return [];
    const k = this.#keys(server);
    need(k !== undefined, `no key for server ${server}`);
    return [MAC_FIELD, entryMac(k, stream, payload)];
  }

  // ── server side (the device model) ────────────────────────────────────

  /**
   * Requests for `server` delivered to `consumer` (XREADGROUP `>`), waiting
   * up to block_ms (0: do not wait). After the reader's first connect and
   * after every reconnect, first re-delivers the consumer's own pending
   * entries (see the module comment). Malformed entries come back with
   * `msg: { error }`; ack them like the others.
   */
  async readRequests(server: number, consumer: string, block_ms: number, count: number): Promise<RequestItem[]> {
    this.#live();
    needInt(server, 0, MAX_IOREQ_SERVER_IDS - 1, 'server');
    need(NAME_RE.test(consumer), `consumer must be 1–64 printable ASCII characters, got ${JSON.stringify(consumer)}`);
    this.#checkRead(block_ms, count);
    await this.#ensureGroup(server);
    const r = this.#reader(`req:${server}:${consumer}`);
    while (r.scanFrom !== null) {
      const gen = r.gen;
      const entries = await this.#groupRead(r.conn, server, consumer, count, 0, r.scanFrom);
      if (r.gen !== gen) continue; // reconnected meanwhile: the scan starts again
      const last = entries.at(-1);
      r.scanFrom = last === undefined ? null : last.id;
      const items = await this.#requestItems(server, entries);
      this.#stats.read += items.length;
      if (items.length > 0) return items;
    }
    const items = await this.#requestItems(server, await this.#groupRead(r.conn, server, consumer, count, block_ms, '>'));
    this.#stats.read += items.length;
    return items;
  }

  /** Acknowledges handled entries; returns how many were still pending. */
  async ack(server: number, ids: readonly string[]): Promise<number> {
    this.#live();
    needInt(server, 0, MAX_IOREQ_SERVER_IDS - 1, 'server');
    for (const id of ids) need(ID_RE.test(id), `ack: not a stream id: ${JSON.stringify(id)}`);
    if (ids.length === 0) return 0;
    const n = await this.#cmd.call('XACK', this.keys.req(server), REQUEST_GROUP, ...ids);
    need(typeof n === 'number' && n >= 0 && n <= ids.length, `XACK answered ${String(n)}`);
    this.#stats.acked += n;
    return n;
  }

  /**
   * Appends a response to domid's stream, signed as server `server`'s (a
   * bus with keys). `r.domid` must equal `domid`; an invalid response throws.
   */
  async publishResponse(domid: number, r: IoreqResp, server?: number): Promise<void> {
    this.#live();
    needInt(domid, 0, MAX_DOMAINS - 1, 'domid');
    need(r.domid === domid, `publishResponse: response for domain ${r.domid} published to domain ${domid}`);
    need(this.#keys === undefined || server !== undefined, 'publishResponse: a bus with keys must say which server answers');
    await this.#xadd(this.keys.resp(domid), encode(r), server);
  }

  /**
   * Takes over up to `count` entries of server's group that have been
   * pending (read, not acked) for at least minIdle_ms — a dead consumer's
   * (XAUTOCLAIM, scanning the whole pending list). Choose minIdle_ms well
   * above the time a live consumer takes to handle an entry: a slow consumer
   * loses its entries too, and both then handle them (hence idempotency).
   */
  async reclaim(server: number, consumer: string, minIdle_ms: number, count: number): Promise<RequestItem[]> {
    this.#live();
    needInt(server, 0, MAX_IOREQ_SERVER_IDS - 1, 'server');
    need(NAME_RE.test(consumer), `consumer must be 1–64 printable ASCII characters, got ${JSON.stringify(consumer)}`);
    needInt(minIdle_ms, 0, Number.MAX_SAFE_INTEGER, 'minIdle_ms');
    needInt(count, 1, MAX_READ_COUNT, 'count');
    await this.#ensureGroup(server);
    const out: RequestItem[] = [];
    let cursor = START_ID;
    do {
      const reply = await this.#autoclaim(server, consumer, minIdle_ms, cursor, count - out.length);
      need(Array.isArray(reply) && reply.length >= 2 && Buffer.isBuffer(reply[0]), 'XAUTOCLAIM: unexpected reply');
      cursor = (reply[0] as Buffer).toString();
      // Redis ≥ 7 lists entries trimmed while pending (and drops them from the pending list).
      const deleted: unknown = reply[2];
      if (Array.isArray(deleted)) this.#stats.lost += deleted.length;
      const items = await this.#requestItems(server, parseEntries(reply[1]));
      this.#stats.reclaimed += items.length;
      out.push(...items);
    } while (cursor !== START_ID && out.length < count);
    return out;
  }

  // ── connections and bookkeeping ───────────────────────────────────────

  /**
   * The dedicated connection named `name`, created on first use (named
   * `<clientName>:r:<name>` in CLIENT LIST). The bus's reads use
   * `req:<server>:<consumer>` and `resp:<domid>`.
   */
  reader(name: string): Redis {
    return this.#reader(name).conn;
  }

  // ── exactly-once across device-model restarts ───────────────────────

  /**
   * Remember the answer given to (domid, vcpu, seq) before acknowledging
   * the request, so a device model that restarts and reclaims it answers
   * the same again instead of applying it twice.
   */
  async markApplied(server: number, key: string, data: number, fault: number): Promise<void> {
    this.#live();
    needInt(server, 0, MAX_IOREQ_SERVER_IDS - 1, 'server');
    await this.#cmd.hset(this.keys.applied(server), key, `${data >>> 0}:${fault | 0}`);
  }

  /**
   * Record the answer to (domid, vcpu, seq) and publish its response, in
   * one round trip and one atomic step (a Lua script: HSETNX, then XADD
   * only if the record is new). Returns undefined when this answer was
   * recorded and published; the recorded answer when one was there already
   * (a duplicate: the caller publishes that one instead). Replaces HGET →
   * HSET → XADD, three round trips on the IOREQ's critical path, with the
   * same order: recorded, then published, then (the caller) acknowledged.
   * `server` is the server that answers: its record, and (a bus with keys)
   * its MAC.
   */
  async answerOnce(server: number, key: string, data: number, fault: number, r: IoreqResp): Promise<{ data: number; fault: number } | undefined> {
    this.#live();
    needInt(server, 0, MAX_IOREQ_SERVER_IDS - 1, 'server');
    needInt(r.domid, 0, MAX_DOMAINS - 1, 'domid');
    const stream = this.keys.resp(r.domid);
    const payload = encode(r);
    const args = [2, this.keys.applied(server), stream, key, `${data >>> 0}:${fault | 0}`, this.maxLen_entries, ENTRY_FIELD, payload, ...this.#macFields(server, stream, payload)];
    let v: unknown;
    try {
      v = await this.#cmd.callBuffer('EVALSHA', ANSWER_ONCE_SHA, ...args);
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      v = await this.#cmd.callBuffer('EVAL', ANSWER_ONCE_LUA, ...args);
    }
    if (v === null) {
      this.#stats.published++;
      return undefined;
    }
    return parseApplied(key, Buffer.isBuffer(v) ? v.toString() : String(v));
  }

  /**
   * A device model applied buffered ioreqs of a server below position
   * `r.seq` (r.buf = 1): record that mark (the server's `bufmark` hash,
   * field `field`), tell the hypervisor (r on the frontend's response stream),
   * then acknowledge the entries — one pipeline, in that order, as
   * answerOnce records before it publishes and the caller acks after.
   */
  async bufApplied(server: number, ids: readonly string[], field: string, r: IoreqResp): Promise<void> {
    this.#live();
    needInt(server, 0, MAX_IOREQ_SERVER_IDS - 1, 'server');
    needInt(r.domid, 0, MAX_DOMAINS - 1, 'domid');
    need(r.buf === 1, 'bufApplied: the response must say buf: 1');
    for (const id of ids) need(ID_RE.test(id), `bufApplied: not a stream id: ${JSON.stringify(id)}`);
    const p = this.#cmd.pipeline();
    const stream = this.keys.resp(r.domid);
    const payload = encode(r);
    p.hset(this.keys.bufmark(server), field, r.seq);
    p.xaddBuffer(stream, 'MAXLEN', '~', this.maxLen_entries, '*', ENTRY_FIELD, payload, ...this.#macFields(server, stream, payload));
    if (ids.length > 0) p.xack(this.keys.req(server), REQUEST_GROUP, ...ids);
    const res = await p.exec();
    need(res !== null, 'bufApplied: the pipeline was discarded');
    for (const [err] of res) if (err !== null) throw err;
    this.#stats.published++;
    this.#stats.acked += ids.length;
  }

  /** The recorded mark of `bufApplied` for server `server`'s `field` (every position below it applied), or undefined. */
  async bufMark(server: number, field: string): Promise<number | undefined> {
    this.#live();
    needInt(server, 0, MAX_IOREQ_SERVER_IDS - 1, 'server');
    const v = await this.#cmd.hget(this.keys.bufmark(server), field);
    if (v === null) return undefined;
    if (!/^\d{1,15}$/.test(v)) throw new TransportFault(`the buffered-ioreq mark of ${field} does not parse: ${JSON.stringify(v.slice(0, 40))}`);
    return Number(v);
  }

  /** The answer server `server` recorded for `key` (`domid:vcpu:seq`), or undefined. */
  async applied(server: number, key: string): Promise<{ data: number; fault: number } | undefined> {
    this.#live();
    needInt(server, 0, MAX_IOREQ_SERVER_IDS - 1, 'server');
    const v = await this.#cmd.hget(this.keys.applied(server), key);
    return v === null ? undefined : parseApplied(key, v);
  }

  /** Delete every key of this namespace (end of a run). */
  async destroyNamespace(): Promise<void> {
    this.#live();
    let cursor = '0';
    do {
      const [next, keys] = await this.#cmd.scan(cursor, 'MATCH', `${this.namespace}:*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await this.#cmd.del(...keys);
    } while (cursor !== '0');
  }

  /** Raw XADD into a response stream (chaos and tests: malformed answers), signed as server `server`'s if given (a bus with keys). */
  async injectRawResponse(domid: number, raw: Buffer, server?: number): Promise<void> {
    this.#live();
    const stream = this.keys.resp(domid);
    await this.#cmd.xaddBuffer(stream, '*', ENTRY_FIELD, raw, ...(server !== undefined ? this.#macFields(server, stream, raw) : []));
  }

  stats(): BusStats {
    return { ...this.#stats };
  }

  /** Whether the command connection is up now (not connecting, not waiting to reconnect). */
  connected(): boolean {
    return this.#cmd.status === 'ready';
  }

  /** Closes every connection. Reads in flight reject; the bus cannot be used again. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const r of this.#readers.values()) r.conn.disconnect();
    this.#readers.clear();
    // QUIT flushes the writes already queued, but never waits on a Redis that is gone.
    if (this.connected()) await Promise.race([this.#cmd.quit().catch(() => undefined), sleep(500)]);
    this.#cmd.disconnect();
  }

  #live(): void {
    if (this.#closed) throw new Error('RedisIoreqBus: used after close()');
  }

  #checkRead(block_ms: number, count: number): void {
    needInt(block_ms, 0, MAX_BLOCK_MS, 'block_ms');
    needInt(count, 1, MAX_READ_COUNT, 'count');
  }

  #open(role: string, onReconnect: () => void): Redis {
    const name = `${this.clientName}:${role}`;
    const options: RedisOptions = {
      connectionName: name,
      lazyConnect: true,
      // Never fail a command because the connection dropped: queue it and
      // re-send after the reconnect (the source of the duplicates above).
      maxRetriesPerRequest: null,
      autoResendUnfulfilledCommands: true,
      enableOfflineQueue: true,
      retryStrategy: (times) => Math.min(50 * times, 1000),
      // A run's ACL user (transport/redis-acl.ts) may not send INFO, which the ready check is.
      enableReadyCheck: !hasUser(this.#url),
    };
    const conn = new Redis(this.#url, options);
    let readies = 0;
    conn.on('ready', () => {
      if (++readies > 1) {
        this.#stats.reconnects++;
        onReconnect();
      }
    });
    conn.on('error', (err: Error) => {
      this.#stats.connectionErrors++;
      this.#onError?.(err, name);
    });
    return conn;
  }

  #reader(name: string): Reader {
    this.#live();
    need(READER_RE.test(name), `reader name must be 1–100 printable ASCII characters, got ${JSON.stringify(name)}`);
    let r = this.#readers.get(name);
    if (r === undefined) {
      const st: Reader = {
        conn: this.#open(`r:${name}`, () => {
          st.gen++;
          st.scanFrom = START_ID;
        }),
        gen: 0,
        scanFrom: START_ID,
      };
      r = st;
      this.#readers.set(name, r);
    }
    return r;
  }

  async #xadd(key: string, payload: Buffer, server: number | undefined): Promise<void> {
    const mac = this.#keys === undefined ? [] : this.#macFields(server ?? -1, key, payload);
    const id = await this.#cmd.callBuffer('XADD', key, 'MAXLEN', '~', this.maxLen_entries, '*', ENTRY_FIELD, payload, ...mac);
    need(Buffer.isBuffer(id) && ID_RE.test(id.toString()), 'XADD: unexpected reply');
    this.#stats.published++;
  }

  /** XGROUP CREATE … 0 MKSTREAM once per server (again if Redis lost it). */
  async #ensureGroup(server: number, again = false): Promise<void> {
    if (this.#groups.has(server) && !again) return;
    try {
      await this.#cmd.call('XGROUP', 'CREATE', this.keys.req(server), REQUEST_GROUP, '0', 'MKSTREAM');
    } catch (e) {
      if (!(e instanceof Error && e.message.startsWith('BUSYGROUP'))) throw e;
    }
    this.#groups.add(server);
  }

  async #groupRead(conn: Redis, server: number, consumer: string, count: number, block_ms: number, from: string): Promise<Entry[]> {
    const args: (string | number)[] = ['GROUP', REQUEST_GROUP, consumer, 'COUNT', count];
    if (block_ms > 0 && from === '>') args.push('BLOCK', block_ms);
    args.push('STREAMS', this.keys.req(server), from);
    try {
      return parseStreamReply(await conn.callBuffer('XREADGROUP', ...args));
    } catch (e) {
      // The stream and its group vanish when Redis restarts without
      // persistence or is flushed, and a group may be destroyed (NOGROUP); a
      // reader blocked on a stream that was deleted is told UNBLOCKED.
      if (!isLostGroup(e)) throw e;
      await this.#ensureGroup(server, true);
      return parseStreamReply(await conn.callBuffer('XREADGROUP', ...args));
    }
  }

  /** XAUTOCLAIM, creating the group again if Redis lost it (as #groupRead). */
  async #autoclaim(server: number, consumer: string, minIdle_ms: number, cursor: string, count: number): Promise<unknown> {
    const args = [this.keys.req(server), REQUEST_GROUP, consumer, minIdle_ms, cursor, 'COUNT', count] as const;
    try {
      return await this.#cmd.callBuffer('XAUTOCLAIM', ...args);
    } catch (e) {
      if (!isLostGroup(e)) throw e;
      await this.#ensureGroup(server, true);
      return this.#cmd.callBuffer('XAUTOCLAIM', ...args);
    }
  }

  /** Decodes request entries; acknowledges (and counts as lost) those trimmed while pending. */
  async #requestItems(server: number, entries: readonly Entry[]): Promise<RequestItem[]> {
    const items: RequestItem[] = [];
    const gone: string[] = [];
    const stream = this.keys.req(server);
    for (const e of entries) {
      if (e.fields === null) {
        gone.push(e.id);
        continue;
      }
      const entry = entryPayload(e.fields);
      let msg: IoreqMsg | WireError = badShape(entry) ? entry : decodeReq(entry.payload);
      if (!isWireError(msg) && msg.server !== server) msg = { error: `IoreqMsg.server ${msg.server} arrived on the stream of server ${server}` };
      if (isWireError(msg)) this.#stats.malformed++;
      const item: RequestItem = { id: e.id, msg };
      if (this.#keys !== undefined) {
        const k = this.#keys(server);
        const ok = k !== undefined && !badShape(entry) && macOk(k, stream, entry.payload, entry.mac);
        if (!ok) {
          item.rejected = badShape(entry) || entry.mac === undefined ? 'no MAC' : 'a wrong MAC';
          this.#stats.rejected++;
        }
      }
      items.push(item);
    }
    if (gone.length > 0) {
      this.#stats.lost += gone.length;
      await this.#cmd.call('XACK', this.keys.req(server), REQUEST_GROUP, ...gone);
    }
    return items;
  }
}

function badShape(e: { payload: Buffer; mac: Buffer | undefined } | WireError): e is WireError {
  return 'error' in e;
}

/** The `m` field's bytes and the `a` field's (if any), or why the entry has some other shape. */
function entryPayload(fields: readonly Buffer[]): { payload: Buffer; mac: Buffer | undefined } | WireError {
  const [k, v, ak, av] = fields;
  const shape = `entry must have the field "${ENTRY_FIELD}" and at most "${MAC_FIELD}", got ${fields.length / 2} field(s)`;
  if (k === undefined || v === undefined || k.toString() !== ENTRY_FIELD) return { error: shape };
  if (fields.length === 2) return { payload: v, mac: undefined };
  if (fields.length !== 4 || ak === undefined || av === undefined || ak.toString() !== MAC_FIELD) return { error: shape };
  return { payload: v, mac: av };
}

/** An XREAD/XREADGROUP reply for one key: null, or [[key, entries]]. */
function parseStreamReply(reply: unknown): Entry[] {
  if (reply === null) return [];
  need(Array.isArray(reply) && reply.length === 1, 'XREAD: unexpected reply');
  const one: unknown = reply[0];
  need(Array.isArray(one) && one.length === 2, 'XREAD: unexpected reply');
  return parseEntries(one[1]);
}

function parseEntries(list: unknown): Entry[] {
  need(Array.isArray(list), 'stream reply: entries are not a list');
  return list.map((e: unknown) => {
    need(Array.isArray(e) && e.length === 2 && Buffer.isBuffer(e[0]), 'stream reply: malformed entry');
    const fields: unknown = e[1];
    if (fields === null) return { id: (e[0] as Buffer).toString(), fields: null };
    need(Array.isArray(fields) && fields.every((f) => Buffer.isBuffer(f)), 'stream reply: fields are not buffers');
    return { id: (e[0] as Buffer).toString(), fields: fields as Buffer[] };
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Whether the URL names a Redis user (`redis://user:password@…`), as the ACL users' URLs do (transport/redis-acl.ts): such a user may not send INFO, the ready check. */
export function hasUser(url: string): boolean {
  try {
    return new URL(url).username !== '';
  } catch {
    return false;
  }
}

function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
