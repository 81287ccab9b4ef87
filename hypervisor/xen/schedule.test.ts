/**
 * The pCPU scheduler on one thread: who holds what, the run queues' order
 * (a scripted scheduler stands in for the other vCPUs: its `wait` runs
 * what they do while this one waits), the counters; the behaviour with
 * vCPU threads (at most n on a pCPU, shootdowns still exact) is in
 * tests/stress.test.ts and every run of a host.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CTL } from '../layout/control.js';
import { DOM } from '../layout/domains.js';
import { PCPU_SLICE_US } from '../layout/constants.js';
import { STAT, VC } from '../layout/vcpus.js';
import { GIVE, pcpuCount, pcpuGive, pcpuInit, pcpuRunqueues, pcpuTake, pcpuWanted } from './schedule.js';
import { HypervisorBug } from '../layout/region.js';
import { VcpuContext } from './guest-cpu.js';
import { testMachine } from '../../tests/test-machine.js';
import { VS } from './vcpu.js';
import { GLOBAL_LOCK } from './machine.js';
import { realSched, setSched } from './platform.js';
import { scripted } from '../../tests/scripted-sched.js';

afterEach(() => setSched(realSched));

describe('pCPUs', () => {
  it('are off unless the host asks: taking and giving do nothing', () => {
    const m = testMachine();
    expect(pcpuCount(m)).toBe(0);
    pcpuTake(m, 0);
    pcpuTake(m, 0);
    expect(m.vcpus.at(0, VC.PCPU)).toBe(0);
    pcpuGive(m, 0);
    expect(m.vcpus.stat(0, STAT.SCHED_RUNS)).toBe(0);
  });

  it('a vCPU holds one exactly between take and give; taking twice or giving one not held is a hypervisor bug', () => {
    const m = testMachine();
    pcpuInit(m, 2);
    pcpuTake(m, 3);
    pcpuTake(m, 4);
    expect([m.vcpus.at(3, VC.PCPU), m.vcpus.at(4, VC.PCPU)]).toEqual([1, 1]);
    expect(Atomics.load(m.control.w, CTL.PCPU_IDLE)).toBe(0);
    expect(pcpuWanted(m)).toBe(false);
    expect(() => pcpuTake(m, 3)).toThrow(HypervisorBug);
    pcpuGive(m, 3);
    expect(() => pcpuGive(m, 3)).toThrow(HypervisorBug);
    pcpuGive(m, 4);
    expect(m.vcpus.at(4, VC.PCPU)).toBe(0);
    expect(Atomics.load(m.control.w, CTL.PCPU_IDLE)).toBe(2);
    expect(() => pcpuInit(m, 65)).toThrow(HypervisorBug);
  });

  it('a vCPU that would wait for a pCPU holding a lock is a hypervisor bug (the vCPUs on the pCPUs could spin on it for ever)', () => {
    const m = testMachine();
    pcpuInit(m, 1);
    m.lock(GLOBAL_LOCK.DOMCTL, 'test');
    expect(() => pcpuTake(m, 3)).toThrow(/holding 1 lock/);
    m.unlock(GLOBAL_LOCK.DOMCTL);
    pcpuTake(m, 3);
    expect(m.vcpus.at(3, VC.PCPU)).toBe(1);
  });

  it('a pCPU given back goes to the head of the run queues: woken vCPUs first, then the others in FIFO order', () => {
    const m = testMachine();
    pcpuInit(m, 2);
    pcpuTake(m, 0);
    pcpuTake(m, 9);
    const grant = (slot: number): number => m.vcpus.at(slot, VC.PCPU_GRANT);
    let seen: ReturnType<typeof pcpuRunqueues> | undefined;
    // While slot 1 (preempted) waits: slot 5 (preempted) queues, then slot 2 (woken); then slots 0 and 9 give
    // their pCPUs back. On one thread the later waiters return first, so the order is read from the grants.
    setSched(
      scripted([
        () => pcpuTake(m, 5, false),
        () => pcpuTake(m, 2, true),
        () => {
          seen = pcpuRunqueues(m);
          pcpuGive(m, 0, GIVE.PREEMPT);
          expect([grant(2), grant(1), grant(5)]).toEqual([1, 0, 0]);
        },
        () => {
          pcpuGive(m, 9, GIVE.BLOCK);
          expect([grant(1), grant(5)]).toEqual([1, 0]);
        },
        () => {
          pcpuGive(m, 2, GIVE.YIELD);
          expect(grant(5)).toBe(1);
        },
      ]),
    );
    pcpuTake(m, 1, false);
    expect(seen).toEqual({ boost: [2], normal: [1, 5] });
    expect([1, 5].map((v) => m.vcpus.at(v, VC.PCPU))).toEqual([1, 1]);
    expect(pcpuWanted(m)).toBe(false);
    expect(pcpuRunqueues(m)).toEqual({ boost: [], normal: [] });
    // The counters: each of 1, 2, 5 waited once, 2 as a woken vCPU; one preemption, one block, one yield.
    const st = (slot: number, k: number): number => m.vcpus.stat(slot, k);
    expect([1, 2, 5].map((v) => st(v, STAT.SCHED_WAITS))).toEqual([1, 1, 1]);
    expect([1, 2, 5].map((v) => st(v, STAT.SCHED_BOOSTS))).toEqual([0, 1, 0]);
    expect([st(0, STAT.SCHED_PREEMPTS), st(9, STAT.SCHED_BLOCKS), st(2, STAT.SCHED_YIELDS)]).toEqual([1, 1, 1]);
    expect(st(1, STAT.SCHED_RUNS)).toBe(1);
  });

  it('a woken vCPU is queued ahead only while it has a slice of credit left: one that ran a slice since it last queued behind everyone waits its turn', () => {
    const m = testMachine();
    pcpuInit(m, 1);
    const s = scripted([]);
    setSched(s);
    pcpuTake(m, 3); // an idle pCPU: its credit is whole
    s.now += 2 * PCPU_SLICE_US;
    pcpuGive(m, 3, GIVE.BLOCK);
    expect(m.vcpus.stat(3, STAT.SCHED_RUN_US)).toBe(2 * PCPU_SLICE_US);
    pcpuTake(m, 0);
    const queues: Array<ReturnType<typeof pcpuRunqueues>> = [];
    const handOver = (): void => {
      queues.push(pcpuRunqueues(m));
      s.now += 700;
      pcpuGive(m, 0, GIVE.PREEMPT);
    };
    setSched(scripted([handOver]));
    // Woken, but it ran two slices: the normal queue. Its wait is timed on the scripted clock.
    pcpuTake(m, 3, true);
    expect(queues[0]).toEqual({ boost: [], normal: [3] });
    // Having queued behind everyone, its credit is whole again: woken next time, it goes ahead.
    pcpuGive(m, 3, GIVE.BLOCK);
    pcpuTake(m, 0);
    setSched(scripted([handOver]));
    pcpuTake(m, 3, true);
    expect(queues[1]).toEqual({ boost: [3], normal: [] });
    expect(m.vcpus.stat(3, STAT.SCHED_BOOSTS)).toBe(1);
  });

  it('a vCPU context takes one to run guest code and gives it up whenever it blocks or stops', () => {
    const m = testMachine();
    pcpuInit(m, 1);
    const slot = m.dom.at(1, DOM.VCPU_BASE);
    const c = new VcpuContext(m, { domid: 1, vcpu: 0, slot, memory_pages: 64, seed: 1 });
    c.start();
    expect(m.vcpus.at(slot, VC.PCPU)).toBe(1);
    c.yield();
    c.sleep(1);
    expect(c.hc.current_reservation()).toBe(64);
    c.read32(0 as never, 0);
    expect(m.vcpus.at(slot, VC.PCPU)).toBe(1);
    expect(m.vcpus.at(slot, VC.STATE)).toBe(VS.GUEST);
    c.stop();
    expect(m.vcpus.at(slot, VC.PCPU)).toBe(0);
    // start, yield, sleep: three pCPUs taken; a yield and a block given (stop is neither).
    expect([STAT.SCHED_RUNS, STAT.SCHED_YIELDS, STAT.SCHED_BLOCKS, STAT.SCHED_WAITS].map((k) => m.vcpus.stat(slot, k))).toEqual([3, 1, 1, 0]);
    // The only pCPU is free again: another vCPU gets it at once.
    pcpuTake(m, 0);
    pcpuGive(m, 0);
  });
});
