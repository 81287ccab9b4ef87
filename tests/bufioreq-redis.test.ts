/**
 * Buffered ioreqs over the `redis` transport, against a real Redis
 * (REDIS_URL, default redis://127.0.0.1:6379): the hypervisor's dispatcher
 * publishes a frontend's posted writes from its buffered ring in pipelines;
 * the device model applies them in order and once, records the position
 * it reached, and says so on the response stream, which frees their places
 * in the ring. The frontend vCPU, the dispatcher and the device model's
 * loop all run on this thread (a posted write never blocks). Without a
 * Redis the tests skip, loudly — unless CI is set, where the file fails.
 * Nothing asserts on timing.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect } from 'vitest';
import { dmAndFrontend, testMachine } from './test-machine.js';
import { VcpuContext } from '../hypervisor/xen/guest-cpu.js';
import { ioreqServerCreate } from '../hypervisor/xen/ioreq.js';
import { DS } from '../hypervisor/layout/domains.js';
import { BUF } from '../hypervisor/layout/ioreq.js';
import { STAT } from '../hypervisor/layout/vcpus.js';
import { RedisDispatcher } from '../hypervisor/host/redis-dispatcher.js';
import { setServerEndFactory } from '../hypervisor/host/transport-ends.js';
import { IOREQ_STATE, IOREQ_TYPE, type IoreqRequest } from '../hypervisor/public/ioreq.js';
import { gfn } from '../hypervisor/public/types.js';
import type { Machine } from '../hypervisor/xen/machine.js';
import { RedisIoreqBus } from '../transport/redis-bus.js';
import { RedisServerEnd, serverId } from '../transport/redis-end.js';
import { RingServerEnd } from '../transport/ring.js';
import { ioreqLoop } from '../domains/ioreq-loop.js';
import { REDIS_URL, itIf, redisGate } from './redis-gate.js';

const UP = await redisGate('tests/bufioreq-redis.test.ts', 'the buffered ioreq tests over Redis', 2000);
const it = itIf(UP);

const MMIO = 600;
const cleanup: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => undefined);
  setServerEndFactory((m, owner) => new RingServerEnd(m, owner));
});

interface Rig {
  m: Machine;
  fe: VcpuContext;
  server: number;
  ns: string;
  dispatcher: RedisDispatcher;
  applied: IoreqRequest[];
  /** A device model (a new one each call: a successor takes over from Redis's record). */
  dm(): { step: () => void | Promise<void>; end: RedisServerEnd };
  read(): number;
}

async function rig(name: string): Promise<Rig> {
  const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }] });
  const server = ioreqServerCreate(m, 0, 1, [{ start: MMIO, count: 1, posted: true }], 'none', { bufioreq: true });
  const ns = `xgsim:test-bufioreq:${process.pid}:${randomBytes(4).toString('hex')}:${name}`;
  const dispatcher = await RedisDispatcher.start(m, REDIS_URL, ns, [1]);
  cleanup.push(() => dispatcher.stop());
  const { dm: dmCpu, fe } = dmAndFrontend(m, 1, server);
  const applied: IoreqRequest[] = [];
  let n = 0;
  const dm = (): { step: () => void | Promise<void>; end: RedisServerEnd } => {
    const end = new RedisServerEnd({ url: REDIS_URL, namespace: ns, servers: [{ target: 1, index: server }], page_size_bytes: 4096, consumer: `dm-${n++}` });
    cleanup.push(() => end.close());
    setServerEndFactory(() => end);
    const step = ioreqLoop(dmCpu, dmCpu.ioreqServerEnd(), { apply: (r) => (applied.push(r), { data: 0, fault: 0 }) });
    return { step, end };
  };
  const b = m.ioreq.bufIdx(1, server);
  return { m, fe, server, ns, dispatcher, applied, dm, read: () => Atomics.load(m.ioreq.buf, b + BUF.READ) };
}

/** Device-model steps until `upto` were applied and the dispatcher heard so (its ring is empty, nothing in flight). */
async function until(r: Rig, step: () => void | Promise<void>, upto: number): Promise<void> {
  const done = (): boolean => r.applied.length === upto && r.read() === upto && r.dispatcher.bufInFlight() === 0;
  for (let k = 0; k < 500 && !done(); k++) {
    await step();
    await new Promise((res) => setTimeout(res, 1));
  }
  expect(r.applied.length).toBe(upto);
  expect(r.read()).toBe(upto);
  expect(r.dispatcher.bufInFlight()).toBe(0);
}

describe('buffered ioreqs over Redis', () => {
  it('posted writes go out in pipelines and are applied in order, once; the dispatcher frees their places once on the stream, and hears what was applied', async () => {
    const r = await rig('order');
    const { step } = r.dm();
    let k = 0;
    for (let round = 0; round < 4; round++) {
      for (let j = 0; j < 400; j++, k++) r.fe.write32(gfn(MMIO), 4 * (k % 4), k);
      await until(r, step, k);
    }
    expect(r.applied.map((q) => q.data)).toEqual(Array.from({ length: 1600 }, (_, j) => j));
    expect(r.applied.every((q) => q.buffered === true && q.domid === 1 && q.vcpu === 0 && q.type === IOREQ_TYPE.COPY)).toBe(true);
    expect(r.applied.map((q) => q.seq)).toEqual(Array.from({ length: 1600 }, (_, j) => j));
    // Every write was posted (none found the ring full), and they went out many to a pipeline.
    expect(r.m.vcpus.stat(r.fe.id.slot, STAT.BUFIOREQS)).toBe(1600);
    expect(r.m.vcpus.stat(r.fe.id.slot, STAT.IOREQS_SENT)).toBe(0);
    expect(r.dispatcher.stats.published).toBe(1600);
    expect(r.dispatcher.stats.pipelines).toBeLessThan(1600);
    expect(r.m.log.records()).toEqual([]);
  });

  it('a duplicate delivery is not applied, by the device model or by its successor reading the recorded position', async () => {
    const r = await rig('dup');
    const first = r.dm();
    for (let j = 0; j < 50; j++) r.fe.write32(gfn(MMIO), 0, j);
    await until(r, first.step, 50);
    await first.end.close();
    // ioredis re-sending the dispatcher's pipeline: entries 10..19 again.
    const bus = await RedisIoreqBus.connect({ url: REDIS_URL, namespace: r.ns });
    cleanup.push(() => bus.close());
    const server = serverId(1, r.server);
    const again = Array.from({ length: 10 }, (_, j) => ({ server, msg: { host: 'test', domid: 1, vcpu: 0, seq: 10 + j, server, type: IOREQ_TYPE.COPY, dir: 0 as const, addr: MMIO * 4096, size: 4 as const, data: 10 + j, count: 1, df: 0 as const, data_is_ptr: 0 as const, state: IOREQ_STATE.READY, buf: 1 as const, after: 0 } }));
    await bus.publishRequests(again);
    const second = r.dm();
    // The successor meets only the duplicates first: it applies none, and the recorded position stays where it was.
    for (let k = 0; k < 5; k++) await second.step();
    await second.end.close();
    expect(await bus.bufMark(serverId(1, r.server), `1:${r.server}`)).toBe(50);
    const third = r.dm();
    for (let j = 50; j < 60; j++) r.fe.write32(gfn(MMIO), 0, j);
    await until(r, third.step, 60);
    for (let k = 0; k < 5; k++) await third.step(); // nothing more comes: the duplicates were dropped
    expect(r.applied.map((q) => q.data)).toEqual(Array.from({ length: 60 }, (_, j) => j));
    expect(r.m.log.records()).toEqual([]);
  });

  it('a device model that says it applied more than was published gets its guest crashed', async () => {
    const r = await rig('hostile');
    for (let j = 0; j < 5; j++) r.fe.write32(gfn(MMIO), 0, j);
    const bus = await RedisIoreqBus.connect({ url: REDIS_URL, namespace: r.ns });
    cleanup.push(() => bus.close());
    // Let the dispatcher publish the five.
    for (let k = 0; k < 200 && r.dispatcher.stats.published < 5; k++) await new Promise((res) => setTimeout(res, 2));
    expect(r.dispatcher.stats.published).toBe(5);
    await bus.bufApplied(serverId(1, r.server), [], `1:${r.server}`, { host: 'evil', domid: 1, vcpu: r.server, seq: 1000, data: 0, state: IOREQ_STATE.IORESP_READY, error: 0, buf: 1 });
    for (let k = 0; k < 200 && r.m.dom.state(1) === DS.RUNNING; k++) await new Promise((res) => setTimeout(res, 2));
    expect(r.m.dom.state(1)).not.toBe(DS.RUNNING);
    expect(r.dispatcher.stats.guests_crashed).toBe(1);
  });
});
