/**
 * vcpu.ts at its bounds: every pair of run states against the table of legal
 * transitions (vcpu_runstate_change's states, xen/common/sched/core.c), the
 * compare-and-swap finding another state, and the hypercall gate's two
 * transitions — each refusal a VcpuStateError naming the slot and states,
 * and the state word left as it was.
 *
 * vcpu.ts (and the test machine, which reaches it) are imported inside the
 * tests: the module checks the gate's two transitions against its table when
 * it loads, and a file whose static import throws reports no failed test to
 * the mutation runner — a dynamic import that throws fails the test that made it.
 */
import { describe, expect, it } from 'vitest';
import { VC } from '../layout/vcpus.js';
import type { Machine } from './machine.js';
import type { VcpuState } from './vcpu.js';

const LEGAL: Record<string, readonly string[]> = {
  offline: ['guest'],
  guest: ['hypervisor', 'blocked', 'paused', 'offline'],
  hypervisor: ['guest', 'blocked', 'offline'],
  blocked: ['guest', 'hypervisor', 'offline'],
  paused: ['guest', 'offline'],
};
const slot = 0;

interface Setup {
  V: typeof import('./vcpu.js');
  m: Machine;
  i: number;
  put: (s: number) => void;
  state: () => number;
}
async function setup(): Promise<Setup> {
  const V = await import('./vcpu.js');
  const { testMachine } = await import('../../tests/test-machine.js');
  const m = testMachine({ domains: [{ memory_pages: 4, privileged: true }] });
  const i = m.vcpus.idx(slot, VC.STATE);
  const put = (s: number): void => {
    Atomics.store(m.vcpus.w, i, s);
  };
  return { V, m, i, put, state: () => Atomics.load(m.vcpus.w, i) };
}

describe('vcpu run states', () => {
  it('the module loads; the names follow the states', async () => {
    const { V } = await setup();
    expect(Object.values(V.VS).map((s) => V.VS_NAMES[s])).toEqual(['offline', 'guest', 'hypervisor', 'blocked', 'paused']);
  });

  it('each of the 25 pairs is taken or refused as the table says; a refusal leaves the word', async () => {
    const { V, m, put, state } = await setup();
    const states = Object.values(V.VS) as VcpuState[];
    for (const from of states) {
      for (const to of states) {
        put(from);
        const legal = LEGAL[V.VS_NAMES[from]]!.includes(V.VS_NAMES[to]);
        if (legal) {
          V.vcpuTransition(m, slot, from, to);
          expect(state(), `${V.VS_NAMES[from]} → ${V.VS_NAMES[to]}`).toBe(to);
        } else {
          expect(() => V.vcpuTransition(m, slot, from, to)).toThrow(`vCPU slot ${slot}: illegal transition ${V.VS_NAMES[from]} → ${V.VS_NAMES[to]}`);
          expect(state()).toBe(from);
        }
      }
    }
  });

  it('a state outside the table is refused as illegal', async () => {
    const { V, m, put, state } = await setup();
    put(V.VS.GUEST);
    expect(() => V.vcpuTransition(m, 3, 7 as VcpuState, V.VS.GUEST)).toThrow('vCPU slot 3: illegal transition undefined → guest');
    expect(state()).toBe(V.VS.GUEST);
  });

  it('a legal transition from a state the word does not hold is refused, and the word kept', async () => {
    const { V, m, put, state } = await setup();
    put(V.VS.BLOCKED);
    let e: unknown;
    try {
      V.vcpuTransition(m, slot, V.VS.GUEST, V.VS.HYPERVISOR);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(V.VcpuStateError);
    expect((e as Error).name).toBe('VcpuStateError');
    expect((e as Error).message).toBe(`vCPU slot ${slot}: expected guest, found blocked (→ hypervisor)`);
    expect(state()).toBe(V.VS.BLOCKED);
    put(9);
    expect(() => V.vcpuTransition(m, slot, V.VS.PAUSED, V.VS.GUEST)).toThrow(`vCPU slot ${slot}: expected paused, found 9 (→ guest)`);
    expect(state()).toBe(9);
  });

  it('the gate: enter from guest, exit from hypervisor; anything else refused with the state found', async () => {
    const { V, m, i, put, state } = await setup();
    put(V.VS.GUEST);
    V.vcpuGateEnter(m.vcpus.w, i, slot);
    expect(state()).toBe(V.VS.HYPERVISOR);
    expect(() => V.vcpuGateEnter(m.vcpus.w, i, 5)).toThrow(new V.VcpuStateError('vCPU slot 5: expected guest, found hypervisor (→ hypervisor)'));
    expect(state()).toBe(V.VS.HYPERVISOR);
    V.vcpuGateExit(m.vcpus.w, i, slot);
    expect(state()).toBe(V.VS.GUEST);
    expect(() => V.vcpuGateExit(m.vcpus.w, i, 6)).toThrow(new V.VcpuStateError('vCPU slot 6: expected hypervisor, found guest (→ guest)'));
    expect(state()).toBe(V.VS.GUEST);
    put(V.VS.OFFLINE);
    expect(() => V.vcpuGateEnter(m.vcpus.w, i, slot)).toThrow('expected guest, found offline');
    expect(() => V.vcpuGateExit(m.vcpus.w, i, slot)).toThrow('expected hypervisor, found offline');
    expect(state()).toBe(V.VS.OFFLINE);
  });
});
