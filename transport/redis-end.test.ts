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
