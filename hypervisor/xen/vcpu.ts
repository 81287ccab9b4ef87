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
  if (((LEGAL_MASK[from] ?? 0) & (1 << to)) === 0) illegal(slot, from, to);
  const got = Atomics.compareExchange(m.vcpus.w, m.vcpus.idx(slot, VC.STATE), from, to);
  if (got !== from) unexpected(slot, from, to, got);
}

/** The gate's transitions (hypercall entry and exit), legal by the table: checked once here, not per call. */
for (const [from, to] of [[VS.GUEST, VS.HYPERVISOR], [VS.HYPERVISOR, VS.GUEST]] as const) if (((LEGAL_MASK[from] ?? 0) & (1 << to)) === 0) illegal(-1, from, to);

/**
 * vcpuTransition for the hypercall gate's two transitions, on the state
 * word's index looked up once (the gate runs on every hypercall): the same
 * one compare-and-swap and the same named error. Two functions of constant
 * states rather than one taking the pair (the pair destructured per call):
 * a null hypercall 87 → 83 ns of CPU, about the noise (BENCHMARKS.md).
 */
export function vcpuGateEnter(w: Int32Array, idx: number, slot: number): void {
  const got = Atomics.compareExchange(w, idx, VS.GUEST, VS.HYPERVISOR);
  if (got !== VS.GUEST) unexpected(slot, VS.GUEST, VS.HYPERVISOR, got);
}

export function vcpuGateExit(w: Int32Array, idx: number, slot: number): void {
  const got = Atomics.compareExchange(w, idx, VS.HYPERVISOR, VS.GUEST);
  if (got !== VS.HYPERVISOR) unexpected(slot, VS.HYPERVISOR, VS.GUEST, got);
}

function illegal(slot: number, from: VcpuState, to: VcpuState): never {
  throw new VcpuStateError(`vCPU slot ${slot}: illegal transition ${VS_NAMES[from]} → ${VS_NAMES[to]}`);
}

function unexpected(slot: number, from: VcpuState, to: VcpuState, got: number): never {
  throw new VcpuStateError(`vCPU slot ${slot}: expected ${VS_NAMES[from]}, found ${VS_NAMES[got] ?? got} (→ ${VS_NAMES[to]})`);
}
