/**
 * The Redis IOREQ bus against a real Redis (REDIS_URL, default
 * redis://127.0.0.1:6379). Without one the tests skip, loudly — unless CI is
 * set, where a missing Redis fails the file. Every run works under its own
 * namespace and deletes its keys at the end. Randomized choices come from a
 * printed seed (XGSIM_SEED replays it); nothing asserts on timing.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IOREQ_STATE, IOREQ_TYPE } from '../hypervisor/public/ioreq.js';
import { encode, isWireError, type IoreqMsg, type IoreqResp } from './messages.js';
import { rawStreamRoundTrip } from './raw-floor.js';
import { ENTRY_FIELD, MAC_FIELD, REQUEST_GROUP, RedisIoreqBus, START_ID, SeenSet } from './redis-bus.js';
import { entryMac, newRunKey, serverKey } from './auth.js';
import { isTransportFault } from './faults.js';
import { REDIS_URL, redisGate } from '../tests/redis-gate.js';
import { ownRedisIt } from '../tests/own-redis.js';

const UP = await redisGate('transport/redis-bus.test.ts', 'the Redis transport tests', 2000);

const SEED = process.env.XGSIM_SEED !== undefined ? Number(process.env.XGSIM_SEED) : Math.floor(Math.random() * 2 ** 31);
console.log(`transport/redis-bus.test.ts: seed ${SEED} (replay with XGSIM_SEED=${SEED})`);

/** mulberry32: a tiny seeded PRNG for the tests' random choices. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const RUN = `xgsim:test:${process.pid}:${randomBytes(4).toString('hex')}`;
const DOMID = 1;
const SERVER = DOMID * 8; // host-wide id of the frontend's server 0
let admin: Redis;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function req(seq: number, vcpu = 0, server = SERVER): IoreqMsg {
  return { host: 'test', domid: DOMID, vcpu, seq, server, type: IOREQ_TYPE.COPY, dir: 1, addr: 0xfe00_0000 + 4 * seq, size: 4, data: 0, count: 1, df: 0, data_is_ptr: 0, state: IOREQ_STATE.READY, buf: 0, after: 0 };
}
function respFor(m: IoreqMsg): IoreqResp {
  return { host: m.host, domid: m.domid, vcpu: m.vcpu, seq: m.seq, data: (m.seq * 2654435761) >>> 0, state: IOREQ_STATE.IORESP_READY, error: 0, buf: 0 };
}

async function bus(name: string, opts: { clientName?: string; maxLen_entries?: number; keys?: (server: number) => Buffer | undefined } = {}): Promise<RedisIoreqBus> {
  return RedisIoreqBus.connect({
    url: REDIS_URL,
    namespace: `${RUN}:${name}`,
    clientName: `${RUN}:${name}:${opts.clientName ?? 'bus'}`,
    ...(opts.maxLen_entries !== undefined ? { maxLen_entries: opts.maxLen_entries } : {}),
    ...(opts.keys !== undefined ? { keys: opts.keys } : {}),
  });
}

/** CLIENT LIST entries whose name starts with prefix. */
async function clients(prefix: string): Promise<Array<{ id: string; name: string }>> {
  const list = (await admin.call('CLIENT', 'LIST')) as string;
  return list
    .split('\n')
    .map((line) => ({ id: /(?:^| )id=(\d+)/.exec(line)?.[1], name: /(?:^| )name=(\S*)/.exec(line)?.[1] }))
    .filter((c): c is { id: string; name: string } => c.id !== undefined && c.name !== undefined && c.name.startsWith(prefix));
}

async function pendingCount(ns: string, server = SERVER): Promise<number> {
  const summary = (await admin.call('XPENDING', `${ns}:req:${server}`, REQUEST_GROUP)) as [number, ...unknown[]];
  return summary[0];
}

/**
 * The device model of the tests: reads, handles each request once (by
 * SeenSet), answers, acks — until `stop()`.
 */
function deviceModel(b: RedisIoreqBus, consumer: string, seen: SeenSet, handled: Map<string, number>): { stop(): Promise<void>; duplicates(): number } {
  let running = true;
  let dups = 0;
  const loop = (async () => {
    while (running) {
      const items = await b.readRequests(SERVER, consumer, 100, 16);
      for (const it of items) {
        if (isWireError(it.msg)) continue;
        const k = SeenSet.key(it.msg.domid, it.msg.vcpu, it.msg.seq);
        if (!seen.add(k)) {
          dups++;
          continue;
        }
        handled.set(k, (handled.get(k) ?? 0) + 1);
        await b.publishResponse(it.msg.domid, respFor(it.msg));
      }
      if (items.length > 0) await b.ack(SERVER, items.map((i) => i.id));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
    duplicates: () => dups,
  };
}

/**
 * The hypervisor side: `vcpus` vCPUs, each with one ioreq in flight at a
 * time (as in Xen), `perVcpu` ioreqs each; one dispatcher loop reads the
 * domain's response stream and wakes the vCPU whose (vcpu, seq) matches.
 * `onProgress(done)` runs after each completed ioreq (chaos hooks in there).
 */
async function hypervisor(b: RedisIoreqBus, vcpus: number, perVcpu: number, onProgress: (done: number) => void): Promise<{ duplicates: number }> {
  const waiting = new Map<string, (r: IoreqResp) => void>();
  const seen = new SeenSet();
  let dups = 0;
  let running = true;
  const dispatcher = (async () => {
    let cursor = START_ID;
    while (running) {
      const batch = await b.readResponses(DOMID, cursor, 100, 64);
      cursor = batch.lastId;
      for (const r of batch.items) {
        if (isWireError(r)) throw new Error(`malformed response: ${r.error}`);
        const k = SeenSet.key(r.domid, r.vcpu, r.seq);
        const wake = waiting.get(k);
        if (!seen.add(k) || wake === undefined) {
          dups++;
          continue;
        }
        waiting.delete(k);
        wake(r);
      }
    }
  })();
  let done = 0;
  const vcpu = async (v: number): Promise<void> => {
    for (let i = 0; i < perVcpu; i++) {
      const m = req(v * perVcpu + i, v);
      const answered = new Promise<IoreqResp>((resolve) => waiting.set(SeenSet.key(m.domid, m.vcpu, m.seq), resolve));
      await b.publishRequest(SERVER, m);
      const r = await answered;
      expect(r).toStrictEqual(respFor(m));
      onProgress(++done);
    }
  };
  await Promise.all(Array.from({ length: vcpus }, (_, v) => vcpu(v)));
  running = false;
  await dispatcher;
  return { duplicates: dups };
}

beforeAll(() => {
  if (UP) admin = new Redis(REDIS_URL, { connectionName: `${RUN}:admin` });
});

afterAll(async () => {
  if (!UP) return;
  let cursor = '0';
  do {
    const [next, keys] = (await admin.scan(cursor, 'MATCH', `${RUN}:*`, 'COUNT', 1000)) as [string, string[]];
    if (keys.length > 0) await admin.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  const [, left] = (await admin.scan('0', 'MATCH', `${RUN}:*`, 'COUNT', 100_000)) as [string, string[]];
  expect(left).toEqual([]);
  admin.disconnect();
});

describe('RedisIoreqBus without Redis', () => {
  it('reachable() says false for a port nobody listens on, and never throws', async () => {
    expect(await RedisIoreqBus.reachable('redis://127.0.0.1:1', 500)).toBe(false);
    expect(await RedisIoreqBus.reachable('not a url', 500)).toBe(false);
  });

  it('connect() rejects with the reason, and options are checked by name', async () => {
    await expect(RedisIoreqBus.connect({ url: 'redis://127.0.0.1:1', namespace: 'x', connectTimeout_ms: 500 })).rejects.toThrow(/RedisIoreqBus\.connect/);
    await expect(RedisIoreqBus.connect({ url: 'http://x', namespace: 'x' })).rejects.toThrow(/url/);
    await expect(RedisIoreqBus.connect({ url: REDIS_URL, namespace: 'a b' })).rejects.toThrow(/namespace/);
    await expect(RedisIoreqBus.connect({ url: REDIS_URL, namespace: 'x:*' })).rejects.toThrow(/namespace/);
    await expect(RedisIoreqBus.connect({ url: REDIS_URL, namespace: 'x', maxLen_entries: 0 })).rejects.toThrow(/maxLen_entries/);
  });
});

describe.skipIf(!UP)('RedisIoreqBus against Redis', () => {
  it('round trip: publishRequest → readRequests → ack → publishResponse → readResponses', async () => {
    const b = await bus('roundtrip');
    try {
      expect(b.keys.req(SERVER)).toBe(`${RUN}:roundtrip:req:${SERVER}`);
      expect(b.keys.resp(DOMID)).toBe(`${RUN}:roundtrip:resp:${DOMID}`);
      const m = req(42, 3);
      await b.publishRequest(SERVER, m);
      const got = await b.readRequests(SERVER, 'dm0', 1000, 10);
      expect(got.map((g) => g.msg)).toStrictEqual([m]);
      expect(await pendingCount(b.namespace)).toBe(1);
      expect(await b.ack(SERVER, [got[0]!.id])).toBe(1);
      expect(await b.ack(SERVER, [got[0]!.id])).toBe(0); // a re-sent ack is harmless
      expect(await pendingCount(b.namespace)).toBe(0);

      await b.publishResponse(DOMID, respFor(m));
      const batch = await b.readResponses(DOMID, START_ID, 1000, 10);
      expect(batch.items).toStrictEqual([respFor(m)]);
      expect(batch.lastId).not.toBe(START_ID);
      const again = await b.readResponses(DOMID, batch.lastId, 0, 10);
      expect(again).toStrictEqual({ lastId: batch.lastId, items: [] });

      expect(b.stats()).toMatchObject({ published: 2, read: 2, acked: 1, reclaimed: 0, malformed: 0, lost: 0 });
      // One command connection and one reader per blocking loop, all named.
      const names = (await clients(b.clientName)).map((c) => c.name).sort();
      expect(names).toEqual([`${b.clientName}:cmd`, `${b.clientName}:r:req:${SERVER}:dm0`, `${b.clientName}:r:resp:${DOMID}`]);
      expect(b.reader(`req:${SERVER}:dm0`)).toBe(b.reader(`req:${SERVER}:dm0`));

      // Caller bugs are refused by name.
      await expect(b.publishRequest(SERVER + 1, m)).rejects.toThrow(/server/);
      await expect(b.publishResponse(DOMID + 1, respFor(m))).rejects.toThrow(/domain/);
      await expect(b.publishRequest(SERVER, { ...m, size: 3 as 4 })).rejects.toThrow(/IoreqMsg\.size/);
      await expect(b.readRequests(SERVER, 'dm0', -1, 10)).rejects.toThrow(/block_ms/);
      await expect(b.readResponses(DOMID, '$', 0, 10)).rejects.toThrow(/lastId/);
      await expect(b.ack(SERVER, ['nope'])).rejects.toThrow(/stream id/);
    } finally {
      await b.close();
    }
    for (let i = 0; (await clients(b.clientName)).length > 0; i++) {
      if (i > 100) throw new Error('close() left connections open');
      await sleep(20);
    }
    await expect(b.publishRequest(SERVER, req(1))).rejects.toThrow(/after close/);
  });

  it('answerOnce records and publishes in one step; a second answer gets the first back and publishes nothing', async () => {
    const b = await bus('answer-once');
    try {
      const m = req(7, 1);
      const first = respFor(m);
      expect(await b.answerOnce(SERVER, '1:1:7', first.data, 0, first)).toBeUndefined();
      expect(await b.applied(SERVER, '1:1:7')).toStrictEqual({ data: first.data, fault: 0 });
      // A duplicate (a re-sent command, a successor re-applying): the first answer wins, no second entry.
      expect(await b.answerOnce(SERVER, '1:1:7', 5, 2, { ...first, data: 5, error: 2 })).toStrictEqual({ data: first.data, fault: 0 });
      const batch = await b.readResponses(DOMID, START_ID, 1000, 10);
      expect(batch.items).toStrictEqual([first]);
      expect(b.stats().published).toBe(1);
      expect(await b.answerOnce(SERVER, '1:1:8', 1, 0, { ...first, seq: 8, data: 1 })).toBeUndefined();
      expect((await b.readResponses(DOMID, batch.lastId, 1000, 10)).items.map((r) => (isWireError(r as never) ? -1 : (r as IoreqResp).seq))).toStrictEqual([8]);
    } finally {
      await b.close();
    }
  });

  it('a consumer dies with entries read but not acked; another reclaims them with XAUTOCLAIM, each handled exactly once', async () => {
    const rnd = prng(SEED ^ 0x5eed);
    const n = 40;
    const seen = new SeenSet();
    const handled = new Map<string, number>();
    const handle = async (b: RedisIoreqBus, m: IoreqMsg): Promise<boolean> => {
      const k = SeenSet.key(m.domid, m.vcpu, m.seq);
      if (!seen.add(k)) return false;
      handled.set(k, (handled.get(k) ?? 0) + 1);
      await b.publishResponse(m.domid, respFor(m));
      return true;
    };

    const a = await bus('reclaim', { clientName: 'a' });
    for (let s = 0; s < n; s++) await a.publishRequest(SERVER, req(s, s % 8));
    const got: Array<{ id: string; msg: IoreqMsg }> = [];
    while (got.length < n) {
      for (const it of await a.readRequests(SERVER, 'dmA', 500, 16)) {
        if (isWireError(it.msg)) throw new Error(it.msg.error);
        got.push({ id: it.id, msg: it.msg });
      }
    }
    // A handles the first `handledByA`, acks only the first `ackedByA` of them, and dies.
    const handledByA = Math.floor(rnd() * n);
    const ackedByA = Math.floor(rnd() * (handledByA + 1));
    console.log(`reclaim: A handles ${handledByA}, acks ${ackedByA}, then dies with ${n - ackedByA} pending`);
    for (const g of got.slice(0, handledByA)) await handle(a, g.msg);
    await a.ack(SERVER, got.slice(0, ackedByA).map((g) => g.id));
    await a.close();
    expect(await pendingCount(a.namespace)).toBe(n - ackedByA);

    const b = await bus('reclaim', { clientName: 'b' });
    try {
      const minIdle_ms = 200;
      let skipped = 0;
      for (let round = 0; (await pendingCount(b.namespace)) > 0; round++) {
        if (round > 500) throw new Error('reclaim never drained the pending list');
        const items = await b.reclaim(SERVER, 'dmB', minIdle_ms, 1 + Math.floor(rnd() * 7));
        if (items.length === 0) await sleep(minIdle_ms / 4);
        for (const it of items) {
          if (isWireError(it.msg)) throw new Error(it.msg.error);
          if (!(await handle(b, it.msg))) skipped++;
        }
        await b.ack(SERVER, items.map((i) => i.id));
      }
      expect(b.stats().reclaimed).toBe(n - ackedByA);
      expect(skipped).toBe(handledByA - ackedByA); // handled by A, not acked: seen, not redone
      expect(handled.size).toBe(n);
      expect([...handled.values()].every((c) => c === 1)).toBe(true);
      // Nothing is left for B's own reads either.
      expect(await b.readRequests(SERVER, 'dmB', 0, 16)).toEqual([]);
      const responses = await b.readResponses(DOMID, START_ID, 0, 1000);
      expect(responses.items).toHaveLength(n);
    } finally {
      await b.close();
    }
  });

  it('CLIENT KILL of every bus connection mid-stream: the buses reconnect and no request is lost', async () => {
    const rnd = prng(SEED ^ 0xc11e);
    const vcpus = 4;
    const perVcpu = 150;
    const total = vcpus * perVcpu;
    const hv = await bus('kill', { clientName: 'hv' });
    const dm = await bus('kill', { clientName: 'dm' });
    // Kill points in the first half, so later traffic needs the reconnected connections.
    const killAt = new Set(Array.from({ length: 4 }, () => 1 + Math.floor(rnd() * (total / 2))));
    console.log(`kill: CLIENT KILL after ${[...killAt].sort((x, y) => x - y).join(', ')} of ${total} ioreqs`);
    const prefix = `${RUN}:kill:`;
    const kills: Promise<void>[] = [];
    let killed = 0;
    const handled = new Map<string, number>();
    const model = deviceModel(dm, 'dm0', new SeenSet(), handled);
    try {
      const r = await hypervisor(hv, vcpus, perVcpu, (done) => {
        if (!killAt.has(done)) return;
        kills.push(
          (async () => {
            for (const c of await clients(prefix)) {
              await admin.call('CLIENT', 'KILL', 'ID', c.id);
              killed++;
            }
          })(),
        );
      });
      await Promise.all(kills);
      await model.stop();
      console.log(`kill: ${killed} connections killed; duplicates seen by dm ${model.duplicates()}, by hv ${r.duplicates}; hv ${JSON.stringify(hv.stats())}; dm ${JSON.stringify(dm.stats())}`);
      expect(killed).toBeGreaterThanOrEqual(4); // the first round finds all four
      expect(handled.size).toBe(total);
      expect([...handled.values()].every((c) => c === 1)).toBe(true);
      expect(hv.stats().reconnects + dm.stats().reconnects).toBeGreaterThan(0);
      expect(await pendingCount(dm.namespace)).toBe(0);
    } finally {
      await model.stop();
      await hv.close();
      await dm.close();
    }
  });

  it('entries whose XREADGROUP reply died with the connection are re-delivered after the reconnect', async () => {
    const b = await bus('lostreply');
    try {
      expect(await b.readRequests(SERVER, 'dmX', 0, 10)).toEqual([]);
      const sent = [req(1), req(2), req(3)];
      for (const m of sent) await b.publishRequest(SERVER, m);
      // What a lost reply leaves behind: the entries sit in dmX's pending
      // list, but the bus never saw them (the admin connection took them).
      await admin.call('XREADGROUP', 'GROUP', REQUEST_GROUP, 'dmX', 'COUNT', 10, 'STREAMS', b.keys.req(SERVER), '>');
      expect(await b.readRequests(SERVER, 'dmX', 0, 10)).toEqual([]);
      const reader = await clients(`${b.clientName}:r:req:${SERVER}:dmX`);
      expect(reader).toHaveLength(1);
      await admin.call('CLIENT', 'KILL', 'ID', reader[0]!.id);
      let got: Awaited<ReturnType<RedisIoreqBus['readRequests']>> = [];
      for (let i = 0; got.length === 0; i++) {
        if (i > 100) throw new Error('the pending entries never came back');
        got = await b.readRequests(SERVER, 'dmX', 50, 10);
      }
      expect(got.map((g) => g.msg)).toStrictEqual(sent);
      expect(b.stats().reconnects).toBeGreaterThanOrEqual(1);
      expect(await b.ack(SERVER, got.map((g) => g.id))).toBe(3);
    } finally {
      await b.close();
    }
  });

  // CLIENT PAUSE ALL stops every client of the server: on a Redis of the test's own, never REDIS_URL's.
  const own = ownRedisIt('transport/redis-bus.test.ts', 'the CLIENT PAUSE test');
  own.it('CLIENT PAUSE 500 ALL mid-run: everything waits, then goes on; no request is lost', async () => {
    const rnd = prng(SEED ^ 0x9a05e);
    const vcpus = 4;
    const perVcpu = 100;
    const total = vcpus * perVcpu;
    const pauseAt = 1 + Math.floor(rnd() * (total - 1));
    console.log(`pause: CLIENT PAUSE 500 ALL after ${pauseAt} of ${total} ioreqs`);
    const url = own.server().url;
    const on = (who: string): Promise<RedisIoreqBus> => RedisIoreqBus.connect({ url, namespace: `${RUN}:pause`, clientName: `${RUN}:pause:${who}` });
    const hv = await on('hv');
    const dm = await on('dm');
    const ownAdmin = new Redis(url);
    const handled = new Map<string, number>();
    const model = deviceModel(dm, 'dm0', new SeenSet(), handled);
    let paused: Promise<unknown> = Promise.resolve();
    try {
      await hypervisor(hv, vcpus, perVcpu, (done) => {
        if (done === pauseAt) paused = ownAdmin.call('CLIENT', 'PAUSE', 500, 'ALL');
      });
      expect(await paused).toBe('OK');
      await model.stop();
      expect(handled.size).toBe(total);
      expect([...handled.values()].every((c) => c === 1)).toBe(true);
      const pending = (await ownAdmin.call('XPENDING', `${dm.namespace}:req:${SERVER}`, REQUEST_GROUP)) as [number, ...unknown[]];
      expect(pending[0]).toBe(0);
    } finally {
      await model.stop();
      await hv.close();
      await dm.close();
      ownAdmin.disconnect();
    }
  });

  it('malformed entries are surfaced as { error } and reading goes on', async () => {
    const b = await bus('malformed');
    try {
      const reqKey = b.keys.req(SERVER);
      const respKey = b.keys.resp(DOMID);
      // The group must exist before raw entries are read through it.
      expect(await b.readRequests(SERVER, 'dm0', 0, 10)).toEqual([]);
      const raws: Array<(string | Buffer)[]> = [
        [ENTRY_FIELD, Buffer.from([0xc1, 0xff, 0x00])], // not msgpack
        ['x', encode(req(1))], // wrong field name
        [ENTRY_FIELD, encode(req(2)), 'extra', '1'], // a second field that is not the MAC
        [ENTRY_FIELD, Buffer.concat([encode(req(3)).subarray(0, 10)])], // truncated
        [ENTRY_FIELD, encode(req(4, 0, SERVER + 1))], // valid, but for another server
      ];
      for (const fields of raws) await admin.call('XADD', reqKey, '*', ...fields);
      await b.publishRequest(SERVER, req(5));
      const items = await b.readRequests(SERVER, 'dm0', 1000, 10);
      expect(items).toHaveLength(raws.length + 1);
      const errors = items.slice(0, raws.length).map((i) => (isWireError(i.msg) ? i.msg.error : 'ok'));
      expect(errors[0]).toMatch(/not msgpack/);
      expect(errors[1]).toMatch(/the field "m" and at most "a"/);
      expect(errors[2]).toMatch(/the field "m" and at most "a"/);
      expect(errors[3]).toMatch(/IoreqMsg/);
      expect(errors[4]).toMatch(/server/);
      expect(items[raws.length]!.msg).toStrictEqual(req(5));
      expect(await b.ack(SERVER, items.map((i) => i.id))).toBe(items.length);

      const garbage = Buffer.from('definitely not msgpack');
      await admin.call('XADD', respKey, '*', ENTRY_FIELD, garbage);
      await admin.call('XADD', respKey, '*', ENTRY_FIELD, encode({ ...respFor(req(6)), domid: DOMID + 1 }));
      await b.publishResponse(DOMID, respFor(req(7)));
      const batch = await b.readResponses(DOMID, START_ID, 1000, 10);
      expect(batch.items).toHaveLength(3);
      const [g, wrongDom, ok] = batch.items;
      expect(g !== undefined && isWireError(g) && g.raw.equals(garbage)).toBe(true);
      expect(wrongDom !== undefined && isWireError(wrongDom) && /domain/.test(wrongDom.error)).toBe(true);
      expect(ok).toStrictEqual(respFor(req(7)));
      expect(b.stats().malformed).toBe(raws.length + 2);

      // Random bytes, a batch at a time, each followed by a valid request.
      let seq = 100;
      await fc.assert(
        fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 64 }), { minLength: 1, maxLength: 5 }), async (blobs) => {
          for (const blob of blobs) await admin.call('XADD', reqKey, '*', ENTRY_FIELD, Buffer.from(blob));
          const m = req(seq++);
          await b.publishRequest(SERVER, m);
          const got: Awaited<ReturnType<RedisIoreqBus['readRequests']>> = [];
          while (got.length < blobs.length + 1) got.push(...(await b.readRequests(SERVER, 'dm0', 1000, 16)));
          expect(got.at(-1)!.msg).toStrictEqual(m);
          await b.ack(SERVER, got.map((i) => i.id));
        }),
        { seed: SEED, numRuns: 25 },
      );
      expect(await pendingCount(b.namespace)).toBe(0);
    } finally {
      await b.close();
    }
  });

  it('with keys: what the bus signs verifies, and an entry without the MAC, with a wrong one, or copied from another stream does not', async () => {
    const run = newRunKey();
    const other = SERVER + 1;
    const hv = await bus('auth', { clientName: 'hv', keys: (s) => serverKey(run, s) });
    // A device model that holds the key of SERVER only.
    const dm = await bus('auth', { clientName: 'dm', keys: (s) => (s === SERVER ? serverKey(run, s) : undefined) });
    try {
      expect(await dm.readRequests(SERVER, 'dm0', 0, 10)).toEqual([]);
      await hv.publishRequest(SERVER, req(1));
      const reqKey = hv.keys.req(SERVER);
      const forged = encode(req(2));
      await admin.call('XADD', reqKey, '*', ENTRY_FIELD, forged); // no MAC
      await admin.call('XADD', reqKey, '*', ENTRY_FIELD, forged, MAC_FIELD, Buffer.alloc(16)); // a wrong one
      // A genuine entry of another stream (another server's), copied with its MAC.
      const elsewhere = encode(req(3, 0, SERVER));
      await admin.call('XADD', reqKey, '*', ENTRY_FIELD, elsewhere, MAC_FIELD, entryMac(serverKey(run, other), hv.keys.req(other), elsewhere));
      const items = await dm.readRequests(SERVER, 'dm0', 1000, 10);
      expect(items.map((i) => i.rejected)).toEqual([undefined, 'no MAC', 'a wrong MAC', 'a wrong MAC']);
      expect(dm.stats().rejected).toBe(3);
      // Answers: signed by the device model as SERVER's; a stranger's is not attributed to any server.
      await dm.publishResponse(DOMID, respFor(req(1)), SERVER);
      await admin.call('XADD', hv.keys.resp(DOMID), '*', ENTRY_FIELD, encode(respFor(req(2))));
      const { items: answers } = await hv.readResponses(DOMID, START_ID, 1000, 10);
      expect(answers.map((a) => a.from)).toEqual([SERVER, undefined]);
      expect(await dm.answerOnce(SERVER, '1:0:9', 9, 0, respFor(req(9)))).toBeUndefined();
      expect((await hv.readResponses(DOMID, START_ID, 0, 10)).items.map((a) => a.from)).toEqual([SERVER, undefined, SERVER]);
      await expect(dm.publishResponse(DOMID, respFor(req(4)))).rejects.toThrow(/which server/);
    } finally {
      await hv.close();
      await dm.close();
    }
  });

  it('a consumer group destroyed under the device model is created again on every path: read, re-read, reclaim', async () => {
    const b = await bus('nogroup');
    try {
      await b.publishRequest(SERVER, req(1));
      expect((await b.readRequests(SERVER, 'dm0', 1000, 10)).map((i) => (isWireError(i.msg) ? -1 : i.msg.seq))).toEqual([1]);
      await admin.call('XGROUP', 'DESTROY', b.keys.req(SERVER), REQUEST_GROUP);
      // The reclaim path (XAUTOCLAIM) used to throw NOGROUP here.
      expect(await b.reclaim(SERVER, 'dm1', 0, 10)).toEqual([]);
      await admin.call('XGROUP', 'DESTROY', b.keys.req(SERVER), REQUEST_GROUP);
      await b.publishRequest(SERVER, req(2));
      // Created again at 0: the whole stream is delivered again (duplicates, for the device model's record).
      expect((await b.readRequests(SERVER, 'dm0', 1000, 10)).map((i) => (isWireError(i.msg) ? -1 : i.msg.seq))).toEqual([1, 2]);
    } finally {
      await b.close();
    }
  });

  it('an answer record or buffered mark that does not parse is a TransportFault, not a garbage answer', async () => {
    const b = await bus('records');
    try {
      await admin.hset(b.keys.applied(SERVER), '1:0:5', 'garbage');
      await admin.hset(b.keys.bufmark(SERVER), '1:0', 'x');
      const e1 = await b.applied(SERVER, '1:0:5').catch((e: unknown) => e);
      const e2 = await b.answerOnce(SERVER, '1:0:5', 1, 0, respFor(req(5))).catch((e: unknown) => e);
      const e3 = await b.bufMark(SERVER, '1:0').catch((e: unknown) => e);
      for (const e of [e1, e2, e3]) expect(isTransportFault(e), String(e)).toBe(true);
      await admin.hset(b.keys.applied(SERVER), '1:0:6', '4294967295:-2');
      expect(await b.applied(SERVER, '1:0:6')).toStrictEqual({ data: 0xffff_ffff, fault: -2 });
    } finally {
      await b.close();
    }
  });

  it('trimming keeps every stream bounded; requests trimmed while pending are counted as lost', async () => {
    const maxLen_entries = 100;
    const nodeMax = Number(((await admin.call('CONFIG', 'GET', 'stream-node-max-entries')) as string[])[1]);
    const bound = maxLen_entries + nodeMax; // `MAXLEN ~` trims whole nodes only
    const b = await bus('trim', { maxLen_entries });
    try {
      // dmA reads 30 and never acks them (a dead consumer); dmB reads 20 and
      // then its process restarts.
      for (let s = 0; s < 50; s++) await b.publishRequest(SERVER, req(s));
      expect(await b.readRequests(SERVER, 'dmA', 0, 30)).toHaveLength(30);
      expect(await b.readRequests(SERVER, 'dmB', 0, 20)).toHaveLength(20);
      const total = 20 * bound;
      for (let s = 50; s < total; s += 50) {
        await Promise.all(Array.from({ length: 50 }, (_, i) => b.publishRequest(SERVER, req(s + i))));
        await Promise.all(Array.from({ length: 50 }, (_, i) => b.publishResponse(DOMID, respFor(req(s + i)))));
        expect(await admin.xlen(b.keys.req(SERVER))).toBeLessThanOrEqual(bound);
        expect(await admin.xlen(b.keys.resp(DOMID))).toBeLessThanOrEqual(bound);
      }
      // dmB's successor re-reads dmB's pending entries: all trimmed away.
      const b2 = await bus('trim', { maxLen_entries, clientName: 'b2' });
      try {
        const first = await b2.readRequests(SERVER, 'dmB', 0, 100);
        expect(first.length).toBeGreaterThan(0); // new entries, after the lost ones
        expect(b2.stats().lost).toBe(20);
        await b2.ack(SERVER, first.map((i) => i.id));
        // dmA's entries, reclaimed: Redis reports them deleted (and drops them).
        expect(await b2.reclaim(SERVER, 'dmC', 0, 100)).toEqual([]);
        expect(b2.stats().lost).toBe(50);
        expect(await pendingCount(b2.namespace)).toBe(0);
      } finally {
        await b2.close();
      }
    } finally {
      await b.close();
    }
  });

  it('raw stream round trip floor (docs/semantics.md §9)', async () => {
    const us = await rawStreamRoundTrip(REDIS_URL, 500);
    expect(us).toHaveLength(500);
    expect(us.every((x) => Number.isFinite(x) && x > 0)).toBe(true);
    const sorted = [...us].sort((x, y) => x - y);
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!.toFixed(0);
    console.log(`raw Redis stream round trip: p50 ${q(0.5)} µs, p90 ${q(0.9)} µs, p99 ${q(0.99)} µs (n = ${us.length})`);
  });

  it('raw stream round trip floor, the server on a thread of its own', async () => {
    const us = await rawStreamRoundTrip(REDIS_URL, 200, true);
    expect(us).toHaveLength(200);
    expect(us.every((x) => Number.isFinite(x) && x > 0)).toBe(true);
    const sorted = [...us].sort((x, y) => x - y);
    console.log(`raw Redis stream round trip, server thread: p50 ${sorted[100]!.toFixed(0)} µs (n = ${us.length})`);
    // Its keys are gone: nothing of the floor is left on the shared Redis.
    const r = new Redis(REDIS_URL);
    try {
      expect(await r.keys(`xgsim:rawfloor:${process.pid}:*`)).toEqual([]);
    } finally {
      r.disconnect();
    }
  });
});
