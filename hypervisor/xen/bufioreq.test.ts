/**
 * Buffered ioreqs (posted writes) over the ring, on one thread: a frontend
 * vCPU's writes to a posted range go into its server's buffered ring
 * without waiting; the device model's loop applies them in order, exactly
 * once, before the synchronous ioreq its vCPU made after them; a full ring
 * sends the write the synchronous way (as xen/common/ioreq.c). The device
 * model's steps run here by hand; no timing is asserted.
 */
import { describe, expect, it } from 'vitest';
import { dmAndFrontend, publishIoreq, testMachine } from '../../tests/test-machine.js';
import { VcpuContext } from './guest-cpu.js';
import { ioreqServerCreate } from './ioreq.js';
import { CTL, NEMESIS_IOREQ } from '../layout/control.js';
import { BUF, BUF_SLOTS } from '../layout/ioreq.js';
import { IOS } from '../layout/ioreq-slots.js';
import { STAT } from '../layout/vcpus.js';
import { DM_KILLED } from '../host/transport-ends.js';
import { IOREQ_DIR, IOREQ_STATE, IOREQ_TYPE, type IoreqRequest } from '../public/ioreq.js';
import { gfn } from '../public/types.js';
import type { Machine } from './machine.js';
import { ioreqLoop } from '../../domains/ioreq-loop.js';

const MMIO = 600;

function setup(opts: { posted?: boolean; bufioreq?: boolean } = {}): { m: Machine; dm: VcpuContext; fe: VcpuContext; server: number; applied: IoreqRequest[]; step: () => void | Promise<void> } {
  const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0, vcpus: 2 }] });
  const server = ioreqServerCreate(m, 0, 1, [{ start: MMIO, count: 2, posted: opts.posted ?? true }], 'none', { bufioreq: opts.bufioreq ?? true });
  expect(server).toBeGreaterThanOrEqual(0);
  const { dm, fe } = dmAndFrontend(m, 1, server);
  const applied: IoreqRequest[] = [];
  const step = ioreqLoop(dm, dm.ioreqServerEnd(), { apply: (r) => (applied.push(r), { data: 0x5a5a, fault: 0 }) });
  return { m, dm, fe, server, applied, step };
}

const ring = (m: Machine, server: number): { write: number; read: number } => {
  const b = m.ioreq.bufIdx(1, server);
  return { write: Atomics.load(m.ioreq.buf, b + BUF.WRITE), read: Atomics.load(m.ioreq.buf, b + BUF.READ) };
};

/** Run the device model's steps until the ring is applied up to its last reservation. */
async function drain(m: Machine, server: number, step: () => void | Promise<void>): Promise<void> {
  for (let k = 0; k < 100 && ring(m, server).read !== ring(m, server).write; k++) await step();
}

describe('buffered ioreqs over the ring', () => {
  it('posted writes do not wait, and are applied in the order made, each once', async () => {
    const { m, fe, server, applied, step } = setup();
    for (let k = 0; k < 300; k++) fe.write32(gfn(MMIO + (k & 1)), 4 * (k % 8), 0x1000 + k);
    // Nothing applied yet: the vCPU did not wait.
    expect(applied).toEqual([]);
    expect(ring(m, server)).toEqual({ write: 300, read: 0 });
    await drain(m, server, step);
    expect(applied.map((r) => r.data)).toEqual(Array.from({ length: 300 }, (_, k) => 0x1000 + k));
    expect(applied.every((r) => r.buffered === true && r.dir === IOREQ_DIR.WRITE && r.type === IOREQ_TYPE.COPY && r.size === 4 && r.domid === 1 && r.vcpu === 0)).toBe(true);
    expect(applied.map((r) => r.gfn)).toEqual(Array.from({ length: 300 }, (_, k) => MMIO + (k & 1)));
    expect(applied.map((r) => r.seq)).toEqual(Array.from({ length: 300 }, (_, k) => k));
    expect(ring(m, server)).toEqual({ write: 300, read: 300 });
    expect(m.vcpus.stat(fe.id.slot, STAT.BUFIOREQS)).toBe(300);
    expect(m.vcpus.stat(fe.id.slot, STAT.IOREQS_SENT)).toBe(0);
    expect(m.log.records()).toEqual([]);
  });

  it('keeps its order across the int32 wrap of the positions', async () => {
    const { m, fe, server, applied, step } = setup();
    const b = m.ioreq.bufIdx(1, server);
    const start = 0x7fff_fff0 | 0;
    for (const w of [BUF.WRITE, BUF.READ, BUF.APPLIED]) Atomics.store(m.ioreq.buf, b + w, start);
    for (let k = 0; k < 40; k++) fe.write32(gfn(MMIO), 0, k);
    await drain(m, server, step);
    expect(applied.map((r) => r.data)).toEqual(Array.from({ length: 40 }, (_, k) => k));
    expect(ring(m, server).read).toBe((start + 40) | 0);
    expect(m.log.records()).toEqual([]);
  });

  it('a synchronous ioreq comes after the posted writes its vCPU made before it, even when their event was taken', async () => {
    const { m, fe, server, applied, step } = setup();
    // Warm the device model (its first scan is a full one).
    fe.write32(gfn(MMIO), 0, 1);
    await drain(m, server, step);
    applied.length = 0;
    for (let k = 0; k < 5; k++) fe.write32(gfn(MMIO), 0, 0x100 + k);
    // The bufioreq event lost (taken by a scan that ran before the writes completed): the claim of the read must still drain them first.
    Atomics.store(m.ios.bufPending, 0, 0);
    // The vCPU's read, published by hand (sendIoreq's step 1: it would block here).
    publishIoreq(m, { slot: fe.id.slot, fe: 1, vcpu: 0, server, owner: 0, seq: 1, gfn: MMIO, dir: IOREQ_DIR.READ });
    const s = m.ios.slots;
    const i = m.ios.idx(fe.id.slot);
    for (let k = 0; k < 10 && Atomics.load(s, i + IOS.STATE) !== IOREQ_STATE.IORESP_READY; k++) await step();
    expect(Atomics.load(s, i + IOS.STATE)).toBe(IOREQ_STATE.IORESP_READY);
    expect(applied.map((r) => (r.buffered === true ? `w${r.data - 0x100}` : 'read'))).toEqual(['w0', 'w1', 'w2', 'w3', 'w4', 'read']);
    expect(m.log.records()).toEqual([]);
  });

  it('a full ring sends the write the synchronous way; reads, unposted ranges and servers without a ring never post', () => {
    const { m, fe, server } = setup();
    const b = m.ioreq.bufIdx(1, server);
    // Full: every place taken and none applied.
    Atomics.store(m.ioreq.buf, b + BUF.WRITE, BUF_SLOTS);
    const sent = m.vcpus.stat(fe.id.slot, STAT.BUFIOREQ_FULL);
    // The write would block on the synchronous path; take the server's state away so the vCPU gets no answer and gives up at once.
    Atomics.store(m.control.w, CTL.STOP, 1);
    fe.write32(gfn(MMIO), 0, 7);
    expect(m.vcpus.stat(fe.id.slot, STAT.BUFIOREQ_FULL)).toBe(sent + 1);
    expect(m.vcpus.stat(fe.id.slot, STAT.IOREQS_SENT)).toBe(1);
    expect(m.vcpus.stat(fe.id.slot, STAT.IOREQS_ABANDONED)).toBe(1);
    expect(Atomics.load(m.ioreq.buf, b + BUF.WRITE)).toBe(BUF_SLOTS);
    expect(m.ioreq.posted(1, server, MMIO)).toBe(true);
    expect(m.ioreq.posted(1, server, MMIO + 2)).toBe(false);
    const plain = setup({ posted: false });
    expect(plain.m.ioreq.posted(1, plain.server, MMIO)).toBe(false);
    const noRing = setup({ bufioreq: false });
    expect(noRing.m.ioreq.posted(1, noRing.server, MMIO)).toBe(false);
  });

  it('a killed device model applies nothing; its successor applies every posted write once, in order; duplicates are not applied', async () => {
    const { m, dm, fe, server, applied, step } = setup();
    fe.write32(gfn(MMIO), 0, 0);
    await drain(m, server, step);
    for (let k = 1; k <= 20; k++) fe.write32(gfn(MMIO), 0, k);
    Atomics.store(m.control.w, CTL.KILL_DM, 1);
    let killed = false;
    try {
      await step();
    } catch (e) {
      killed = e instanceof Error && e.message === DM_KILLED;
    }
    expect(killed).toBe(true);
    expect(applied.length).toBe(1);
    dm.stop();
    const dm2 = new VcpuContext(m, { domid: 0, vcpu: 0, slot: dm.id.slot, memory_pages: 64, seed: 1 });
    dm2.start();
    // And a nemesis that duplicates deliveries: the second ones must be recognised.
    Atomics.store(m.control.w, CTL.IOREQ_NEMESIS, NEMESIS_IOREQ.DUPLICATE | NEMESIS_IOREQ.REORDER | NEMESIS_IOREQ.DROP);
    const step2 = ioreqLoop(dm2, dm2.ioreqServerEnd(), { apply: (r) => (applied.push(r), { data: 0, fault: 0 }) });
    await drain(m, server, step2);
    for (let k = 0; k < 5; k++) await step2(); // the held duplicates come through
    expect(applied.map((r) => r.data)).toEqual(Array.from({ length: 21 }, (_, k) => k));
    expect(Atomics.load(m.control.w, CTL.NEM_DUPLICATED)).toBeGreaterThan(0);
    expect(m.log.records()).toEqual([]);
  });

  it('the ledger catches a device model that applies a buffered ioreq twice (ioreq-no-dedup)', async () => {
    const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0 }], bugs: 'ioreq-no-dedup' });
    const server = ioreqServerCreate(m, 0, 1, [{ start: MMIO, count: 1, posted: true }], 'none', { bufioreq: true });
    const { dm, fe } = dmAndFrontend(m, 1, server);
    const step = ioreqLoop(dm, dm.ioreqServerEnd(), { apply: () => ({ data: 0, fault: 0 }) });
    Atomics.store(m.control.w, CTL.IOREQ_NEMESIS, NEMESIS_IOREQ.DUPLICATE);
    for (let k = 0; k < 30; k++) fe.write32(gfn(MMIO), 0, k);
    for (let k = 0; k < 10; k++) await step();
    expect(m.log.records().some((r) => r.invariant === 'ioreq_forward' && r.text.includes('buffered ioreq') && r.text.includes('applied twice or out of order'))).toBe(true);
  });
});
