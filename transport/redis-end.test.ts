/**
 * The device model's Redis end against a real Redis (REDIS_URL, default
 * redis://127.0.0.1:6379): `answered` tells a request it may apply from one
 * it must not, whether it asks Redis or knows without asking. Without a
 * Redis the tests skip, loudly — unless CI is set, where a missing Redis
 * fails the file. Nothing asserts on timing.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { IOREQ_STATE, IOREQ_TYPE } from '../hypervisor/public/ioreq.js';
import { isWireError, type IoreqMsg } from './messages.js';
import { RedisIoreqBus } from './redis-bus.js';
import { RedisServerEnd, serverId } from './redis-end.js';
import { newRunKey, serverKey } from './auth.js';
import { REDIS_URL, redisGate } from '../tests/redis-gate.js';

const UP = await redisGate('transport/redis-end.test.ts', 'the Redis device-model end tests', 2000);

const RUN = `xgsim:test-end:${process.pid}:${randomBytes(4).toString('hex')}`;
const TARGET = 1;
const SERVER = serverId(TARGET, 0);
const buses: RedisIoreqBus[] = [];
const ends: RedisServerEnd[] = [];

function req(seq: number, vcpu = 0): IoreqMsg {
  return { host: 'test', domid: TARGET, vcpu, seq, server: SERVER, type: IOREQ_TYPE.COPY, dir: 1, addr: 0x1000 * 600 + 4, size: 4, data: 0, count: 1, df: 0, data_is_ptr: 0, state: IOREQ_STATE.READY, buf: 0, after: 0 };
}

async function setup(name: string): Promise<{ hv: RedisIoreqBus; end: (consumer: string) => RedisServerEnd }> {
  const namespace = `${RUN}:${name}`;
  const hv = await RedisIoreqBus.connect({ url: REDIS_URL, namespace });
  buses.push(hv);
  const end = (consumer: string): RedisServerEnd => {
    const e = new RedisServerEnd({ url: REDIS_URL, namespace, servers: [{ target: TARGET, index: 0 }], page_size_bytes: 4096, consumer });
    ends.push(e);
    return e;
  };
  return { hv, end };
}

/** What the device-model loop does with one request: apply it unless answered, then respond. Returns whether it applied. */
async function serve(end: RedisServerEnd, r: Awaited<ReturnType<RedisServerEnd['recv']>>[number], data: number): Promise<boolean> {
  const before = await end.answered(r);
  await end.respond(r, before ?? { data, fault: 0 });
  return before === undefined;
}

async function recvOne(end: RedisServerEnd): Promise<Awaited<ReturnType<RedisServerEnd['recv']>>> {
  for (let i = 0; i < 50; i++) {
    const got = await end.recv(16, 20);
    if (got.length > 0) return got;
  }
  throw new Error('nothing received');
}

afterAll(async () => {
  for (const e of ends) await e.close().catch(() => undefined);
  for (const b of buses) await b.destroyNamespace().catch(() => undefined);
  for (const b of buses) await b.close();
});

describe.skipIf(!UP)('RedisServerEnd.answered', () => {
  it('applies each new request once; a duplicate XADD of an answered request, before or after newer ones, is answered from the record', async () => {
    const { hv, end } = await setup('dup');
    const dm = end('dm-a');
    const applied: number[] = [];
    for (const seq of [1, 2, 3]) {
      await hv.publishRequest(SERVER, req(seq));
      for (const r of await recvOne(dm)) if (await serve(dm, r, 100 + r.seq)) applied.push(r.seq);
    }
    // ioredis re-sending the dispatcher's XADD: the same request again, as a new entry.
    await hv.publishRequest(SERVER, req(2));
    await hv.publishRequest(SERVER, req(3));
    for (const r of await recvOne(dm)) if (await serve(dm, r, 999)) applied.push(r.seq);
    await hv.publishRequest(SERVER, req(4));
    for (const r of await recvOne(dm)) if (await serve(dm, r, 104)) applied.push(r.seq);
    expect(applied).toEqual([1, 2, 3, 4]);
    expect(dm.duplicates).toBeGreaterThanOrEqual(2);
    // Every answer published is the first one recorded.
    const seen = new Map<number, number>();
    const { items } = await hv.readResponses(TARGET, '0-0', 0, 100);
    for (const it of items) {
      if (isWireError(it)) throw new Error(it.error);
      const was = seen.get(it.seq);
      if (was !== undefined) expect(it.data).toBe(was);
      seen.set(it.seq, it.data);
    }
    expect([...seen.entries()].sort((a, b) => a[0] - b[0])).toEqual([
      [1, 101],
      [2, 102],
      [3, 103],
      [4, 104],
    ]);
  });

  it('a successor never re-applies what its predecessor answered, though its own marks start empty', async () => {
    const { hv, end } = await setup('succ');
    const first = end('dm-first');
    await hv.publishRequest(SERVER, req(7, 1));
    for (const r of await recvOne(first)) expect(await serve(first, r, 70)).toBe(true);
    await first.close();
    // The successor (another consumer) meets a duplicate of 7, then the vCPU's next request.
    const next = end('dm-next');
    await hv.publishRequest(SERVER, req(7, 1));
    await hv.publishRequest(SERVER, req(8, 1));
    const applied: number[] = [];
    for (let got = 0; got < 2; ) {
      for (const r of await recvOne(next)) {
        got++;
        if (await serve(next, r, 80)) applied.push(r.seq);
      }
    }
    expect(applied).toEqual([8]);
    expect(next.duplicates).toBe(1);
  });
});

describe.skipIf(!UP)('RedisServerEnd: order, trust and lost records', () => {
  const bufReq = (seq: number): IoreqMsg => ({ ...req(seq), dir: 0, buf: 1 });

  it('a buffered ioreq after a gap, and a synchronous one after buffered ones not yet applied, are refused; sent again in order they pass', async () => {
    const { hv, end } = await setup('gap');
    const dm = end('dm-gap');
    for (const s of [0, 1, 3]) await hv.publishRequest(SERVER, bufReq(s)); // 2 lost
    await hv.publishRequest(SERVER, { ...req(1), after: 4 }); // a read after posted writes 0…3
    const got: string[] = [];
    for (let i = 0; i < 20 && (got.length < 2 || dm.gaps < 2); i++) for (const r of await dm.recv(16, 20)) {
      got.push(`${r.buffered === true ? 'b' : 's'}${r.seq}`);
      await dm.respond(r, { data: 0, fault: 0 });
    }
    expect(got).toEqual(['b0', 'b1']);
    expect(dm.gaps).toBe(2);
    // The dispatcher sends the server's unanswered requests again, in order.
    for (const s of [2, 3]) await hv.publishRequest(SERVER, bufReq(s));
    await hv.publishRequest(SERVER, { ...req(1), after: 4 });
    for (let i = 0; i < 20 && got.length < 5; i++) for (const r of await dm.recv(16, 20)) {
      got.push(`${r.buffered === true ? 'b' : 's'}${r.seq}`);
      await dm.respond(r, { data: 0, fault: 0 });
    }
    expect(got).toEqual(['b0', 'b1', 'b2', 'b3', 's1']);
  });

  it('a request sent again after Redis lost the answer record is answered from the end\'s own last answer, not applied again', async () => {
    const { hv, end } = await setup('lost-record');
    const dm = end('dm-rec');
    await hv.publishRequest(SERVER, req(1));
    for (const r of await recvOne(dm)) expect(await serve(dm, r, 41)).toBe(true);
    // Redis loses the record (a flush): only the end's memory knows the answer.
    await hv.reader('admin').del(hv.keys.applied(SERVER));
    await hv.publishRequest(SERVER, req(1));
    for (const r of await recvOne(dm)) {
      expect(await dm.answered(r)).toStrictEqual({ data: 41, fault: 0 });
      expect(await serve(dm, r, 99)).toBe(false);
    }
  });

  it('with keys, a request without the dispatcher\'s MAC, or that the check refuses, is acknowledged away and never delivered', async () => {
    const run = newRunKey();
    const namespace = `${RUN}:trust`;
    const hv = await RedisIoreqBus.connect({ url: REDIS_URL, namespace, keys: (s) => serverKey(run, s) });
    buses.push(hv);
    const refused: string[] = [];
    const dm = new RedisServerEnd({ url: REDIS_URL, namespace, servers: [{ target: TARGET, index: 0 }], page_size_bytes: 4096, consumer: 'dm-trust', keys: new Map([[SERVER, serverKey(run, SERVER)]]), check: (r) => (r.seq > 10 ? 'seq from the future' : undefined), onReject: (w) => refused.push(w) });
    ends.push(dm);
    const plain = await RedisIoreqBus.connect({ url: REDIS_URL, namespace });
    buses.push(plain);
    await dm.recv(16, 1); // creates the group
    await plain.publishRequest(SERVER, req(1)); // a stranger's
    await hv.publishRequest(SERVER, { ...req(2), domid: 2 }); // another domain on this server's stream
    await hv.publishRequest(SERVER, req(11)); // the check refuses
    await hv.publishRequest(SERVER, req(3)); // fine
    const got: number[] = [];
    for (let i = 0; i < 20 && got.length < 1; i++) for (const r of await dm.recv(16, 20)) got.push(r.seq);
    expect(got).toEqual([3]);
    expect(refused).toHaveLength(3);
    expect(refused.join('\n')).toMatch(/no MAC/);
    expect(refused.join('\n')).toMatch(/domid 2/);
    expect(refused.join('\n')).toMatch(/future/);
    expect(dm.rejected).toBe(3);
  });
});
