/**
 * The pCPU semaphore on one thread: who holds what, in pairs; the
 * behaviour with vCPU threads (at most n on a pCPU, shootdowns still
 * exact) is in tests/stress.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { CTL } from '../layout/control.js';
import { DOM } from '../layout/domains.js';
import { VC } from '../layout/vcpus.js';
import { pcpuCount, pcpuGive, pcpuInit, pcpuTake, pcpuWanted } from './schedule.js';
import { HypervisorBug } from '../layout/region.js';
import { VcpuContext } from './guest-cpu.js';
import { testMachine } from '../../tests/test-machine.js';
import { VS } from './vcpu.js';

describe('pCPUs', () => {
  it('are off unless the host asks: taking and giving do nothing', () => {
    const m = testMachine();
    expect(pcpuCount(m)).toBe(0);
    pcpuTake(m, 0);
    pcpuTake(m, 0);
    expect(m.vcpus.at(0, VC.PCPU)).toBe(0);
    pcpuGive(m, 0);
  });

  it('a vCPU holds one exactly between take and give; taking twice or giving one not held is a hypervisor bug', () => {
    const m = testMachine();
    pcpuInit(m, 2);
    pcpuTake(m, 3);
    pcpuTake(m, 4);
    expect([m.vcpus.at(3, VC.PCPU), m.vcpus.at(4, VC.PCPU)]).toEqual([1, 1]);
    expect(pcpuWanted(m)).toBe(false);
    expect(() => pcpuTake(m, 3)).toThrow(HypervisorBug);
    // A third ticket, handed out and not granted: someone waits (this thread would block on it).
    Atomics.add(m.control.w, CTL.PCPU_TICKET, 1);
    expect(pcpuWanted(m)).toBe(true);
    Atomics.sub(m.control.w, CTL.PCPU_TICKET, 1);
    pcpuGive(m, 3);
    expect(() => pcpuGive(m, 3)).toThrow(HypervisorBug);
    pcpuGive(m, 4);
    expect(m.vcpus.at(4, VC.PCPU)).toBe(0);
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
    // The only pCPU is free again: another vCPU gets it at once.
    pcpuTake(m, 0);
    pcpuGive(m, 0);
  });
});
