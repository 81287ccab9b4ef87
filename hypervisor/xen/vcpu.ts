/**
 * The vCPU run-state machine (docs/style.md §8; Firecracker-style explicit states);
 * Xen's struct vcpu runstate (RUNSTATE_running / runnable / blocked /
 * offline), changed by vcpu_runstate_change in xen/common/sched/core.c.
 *
 *   OFFLINE ──start──▶ GUEST ◀──────────▶ HYPERVISOR   (hypercall entry/exit)
 *                        │  ▲
 *                        ▼  │
 *                      BLOCKED                          (ioreq wait, yield)
 *                      PAUSED                           (descheduled by the host)
 *   any ──stop──▶ OFFLINE
 *
 * Only the vCPU's own thread changes its state (compareExchange, so a
 * broken transition is caught rather than lost). Only GUEST may hold live
 * TLB entries: any other state acknowledges TLB shootdowns implicitly, and
 * re-entering GUEST re-checks the flush epoch before the next access.
 */
import { VC } from '../layout/vcpus.js';
import type { Machine } from './machine.js';

export const VS = { OFFLINE: 0, GUEST: 1, HYPERVISOR: 2, BLOCKED: 3, PAUSED: 4 } as const;
export type VcpuState = (typeof VS)[keyof typeof VS];
export const VS_NAMES = ['offline', 'guest', 'hypervisor', 'blocked', 'paused'] as const;

const LEGAL: ReadonlyArray<readonly VcpuState[]> = [
  /* OFFLINE    */ [VS.GUEST],
  /* GUEST      */ [VS.HYPERVISOR, VS.BLOCKED, VS.PAUSED, VS.OFFLINE],
  /* HYPERVISOR */ [VS.GUEST, VS.BLOCKED, VS.OFFLINE],
  /* BLOCKED    */ [VS.GUEST, VS.HYPERVISOR, VS.OFFLINE],
  /* PAUSED     */ [VS.GUEST, VS.OFFLINE],
];

/** LEGAL as one bit per target state, indexed by the state left: the check on every hypercall entry and exit. */
const LEGAL_MASK: readonly number[] = LEGAL.map((to) => to.reduce<number>((a, s) => a | (1 << s), 0));

export class VcpuStateError extends Error {
  override readonly name = 'VcpuStateError';
}

export function vcpuTransition(m: Machine, slot: number, from: VcpuState, to: VcpuState): void {
  if (((LEGAL_MASK[from] ?? 0) & (1 << to)) === 0) {
    throw new VcpuStateError(`vCPU slot ${slot}: illegal transition ${VS_NAMES[from]} → ${VS_NAMES[to]}`);
  }
  const got = Atomics.compareExchange(m.vcpus.w, m.vcpus.idx(slot, VC.STATE), from, to);
  if (got !== from) {
    throw new VcpuStateError(`vCPU slot ${slot}: expected ${VS_NAMES[from]}, found ${VS_NAMES[got] ?? got} (→ ${VS_NAMES[to]})`);
  }
}
