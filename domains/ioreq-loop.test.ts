/**
 * The device model's loop over the ring on one thread: a vCPU's publish is
 * played by hand (sendIoreq's stores and kick), the device model's steps run
 * here. What the hot path must keep: a synchronous step (no promise) once
 * hot, exactly-once answers, the kill check between claim and answer, the
 * nemesis through recv, the ledger, and BLOCKED while it polls.
 * No timing is asserted.
 */
import { describe, expect, it } from 'vitest';
import { publishIoreq, testMachine } from '../tests/test-machine.js';
import { VcpuContext } from '../hypervisor/xen/guest-cpu.js';
import { ioreqServerCreate } from '../hypervisor/xen/ioreq.js';
import { CTL, NEMESIS_IOREQ } from '../hypervisor/layout/control.js';
import { DOM } from '../hypervisor/layout/domains.js';
import { IOS } from '../hypervisor/layout/ioreq-slots.js';
import { VC } from '../hypervisor/layout/vcpus.js';
import { DM_KILLED } from '../hypervisor/host/transport-ends.js';
import { VS } from '../hypervisor/xen/vcpu.js';
import { IOREQ_STATE, IOREQ_DIR, type IoreqRequest } from '../hypervisor/public/ioreq.js';
import type { Machine } from '../hypervisor/xen/machine.js';
import { ioreqLoop } from './ioreq-loop.js';

function setup(): { m: Machine; cpu: VcpuContext; server: number; publish: (v?: number) => number; state: (v?: number) => number } {
  const m = testMachine({ domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0, vcpus: 2 }] });
  const server = ioreqServerCreate(m, 0, 1, [{ start: 600, count: 1 }], 'none');
  const cpu = new VcpuContext(m, { domid: 0, vcpu: 0, slot: m.dom.at(0, DOM.VCPU_BASE), memory_pages: 64, seed: 1 });
  cpu.start();
  cpu.hc.dm_set_ioreq_server_state(1 as never, server, true);
  const seqs = [0, 0];
  const slotOf = (v: number): number => m.dom.at(1, DOM.VCPU_BASE) + v;
  // sendIoreq's step 1, by hand: fields, SEQ, READY, kick.
  const publish = (v = 0): number => {
    const seq = ++seqs[v]!;
    publishIoreq(m, { slot: slotOf(v), fe: 1, vcpu: v, server, owner: 0, seq, gfn: 600, dir: IOREQ_DIR.READ });
    return seq;
  };
  const state = (v = 0): number => Atomics.load(m.ios.slots, m.ios.idx(slotOf(v)) + IOS.STATE);
  return { m, cpu, server, publish, state };
}

/** Complete the vCPU's side (step 4): read the answer, NONE. */
function complete(m: Machine, v = 0): number {
  const i = m.ios.idx(m.dom.at(1, DOM.VCPU_BASE) + v);
  const data = m.ios.slots[i + IOS.DATA]! >>> 0;
  Atomics.store(m.ios.slots, i + IOS.STATE, IOREQ_STATE.NONE);
  return data;
}

describe('the device model loop over the ring', () => {
  it('once hot, serves synchronously: the step returns no promise, each request answered once', async () => {
    const { m, cpu, publish, state } = setup();
    const applied: number[] = [];
    const step = ioreqLoop(cpu, cpu.ioreqServerEnd(), { apply: (r) => (applied.push(r.seq), { data: 0x1000 + r.seq, fault: 0 }) });
    publish();
    const first = step();
    expect(first).toBeInstanceOf(Promise); // cold: recv
    await first;
    expect(state()).toBe(IOREQ_STATE.IORESP_READY);
    expect(complete(m)).toBe(0x1001);
    for (let k = 2; k <= 50; k++) {
      publish();
      expect(step()).toBeUndefined(); // hot: no await
      expect(state()).toBe(IOREQ_STATE.IORESP_READY);
      expect(complete(m)).toBe(0x1000 + k);
    }
    expect(applied).toEqual(Array.from({ length: 50 }, (_, k) => k + 1));
    expect(m.log.records()).toEqual([]);
    // GUEST again after each poll (BLOCKED only inside it).
    expect(m.vcpus.at(cpu.id.slot, VC.STATE)).toBe(VS.GUEST);
  });

  it('polls descheduled: BLOCKED inside recvHot, GUEST around it', async () => {
    const { m, cpu, publish } = setup();
    const end = cpu.ioreqServerEnd();
    const seen: number[] = [];
    const hot = end.recvHot!.bind(end);
    end.recvHot = (max: number): IoreqRequest[] => {
      seen.push(m.vcpus.at(cpu.id.slot, VC.STATE));
      return hot(max);
    };
    const step = ioreqLoop(cpu, end, { apply: () => ({ data: 0, fault: 0 }) });
    publish();
    await step();
    complete(m);
    publish();
    step();
    expect(seen).toEqual([VS.BLOCKED]);
    expect(m.vcpus.at(cpu.id.slot, VC.STATE)).toBe(VS.GUEST);
  });

  it('goes back to recv when nothing came, and a nemesis sends every request through recv', async () => {
    const { m, cpu, publish, state } = setup();
    const step = ioreqLoop(cpu, cpu.ioreqServerEnd(), { apply: () => ({ data: 7, fault: 0 }) });
    publish();
    await step();
    complete(m);
    // Nothing there: the hot step finds nothing and falls back to recv (a promise).
    const idle = step();
    expect(idle).toBeInstanceOf(Promise);
    publish(); // arrives while recv looks
    await idle;
    expect(state()).toBe(IOREQ_STATE.IORESP_READY);
    complete(m);
    // Hot again, but a nemesis window opens: recvHot takes nothing, recv applies the nemesis.
    Atomics.store(m.control.w, CTL.IOREQ_NEMESIS, NEMESIS_IOREQ.DUPLICATE);
    publish();
    const r = step();
    expect(r).toBeInstanceOf(Promise);
    await r;
    expect(state()).toBe(IOREQ_STATE.IORESP_READY);
    expect(complete(m)).toBe(7);
    expect(m.log.records()).toEqual([]);
  });

  it('a kill on the hot path lands after the claim and before the answer; the successor answers it once', async () => {
    const { m, cpu, publish, state } = setup();
    const applied: number[] = [];
    const handler = { apply: (r: IoreqRequest) => (applied.push(r.seq), { data: r.seq, fault: 0 }) };
    const step = ioreqLoop(cpu, cpu.ioreqServerEnd(), handler);
    publish();
    await step();
    complete(m);
    publish();
    Atomics.store(m.control.w, CTL.KILL_DM, 1);
    expect(() => step()).toThrow(DM_KILLED);
    expect(state()).toBe(IOREQ_STATE.INPROCESS);
    expect(m.vcpus.at(cpu.id.slot, VC.STATE)).toBe(VS.GUEST);
    // The restarted device model: a new vCPU context on the same slot, a new end; its first scan takes over.
    cpu.stop();
    const cpu2 = new VcpuContext(m, { domid: 0, vcpu: 0, slot: cpu.id.slot, memory_pages: 64, seed: 1 });
    cpu2.start();
    const step2 = ioreqLoop(cpu2, cpu2.ioreqServerEnd(), handler);
    await step2();
    expect(state()).toBe(IOREQ_STATE.IORESP_READY);
    expect(complete(m)).toBe(2);
    expect(applied).toEqual([1, 2]);
    expect(m.log.records()).toEqual([]);
  });

  it('answeredNow and respondNow: a second delivery is recognised as answered, a second answer dropped', () => {
    const { m, cpu, publish } = setup();
    const end = cpu.ioreqServerEnd();
    publish();
    const [req] = end.recvHot!(16);
    expect(req).toBeDefined();
    expect(end.answeredNow!(req!)).toBeUndefined();
    end.respondNow!(req!, { data: 1, fault: 0 });
    // Answered: a second delivery is recognised, and a second answer dropped.
    expect(end.answeredNow!(req!)).toEqual({ data: 0, fault: 0 });
    end.respondNow!(req!, { data: 2, fault: 0 });
    expect(complete(m)).toBe(1);
    expect(m.log.records()).toEqual([]);
  });
});
