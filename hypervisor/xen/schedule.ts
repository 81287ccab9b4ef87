/**
 * The pCPU scheduler — Xen's own (xen/common/sched/core.c schedule(),
 * vcpu_sleep_nosync / vcpu_wake; the credit scheduler's time slice,
 * common/sched/credit.c), so it sits in the Xen core.
 *
 * The host's pCPUs (opt-in, `HostSpec.pcpus`): at most CTL.PCPUS vCPUs are
 * on a pCPU — in GUEST or HYPERVISOR — at once, as on a Xen host with that
 * many pCPUs; the others wait, descheduled (PAUSED or BLOCKED), in FIFO
 * order. A vCPU keeps its pCPU for a slice (PCPU_SLICE_US) and gives it up
 * at a tick (Mmu.tick: a batch boundary, or between two workload steps)
 * once the slice is over and another vCPU waits (Xen's credit scheduler, in
 * miniature). Blocking (yield, sleep, an ioreq,
 * a device model awaiting its transport) gives the pCPU up too.
 *
 * Why: with more vCPU threads than cores, the OS preempts vCPU threads in
 * GUEST state, invisibly. A TLB shootdown must then wait for a thread the
 * OS is not running, and a revoking vCPU can lose its core in the middle of
 * a hypercall, for OS time slices of milliseconds (docs/revoke.md §2(c)).
 * With as many pCPUs as cores, a vCPU in GUEST is one the OS runs, and one
 * that is not on a pCPU acknowledges shootdowns implicitly, as a
 * descheduled vCPU does in Xen (its pCPU is not in the domain's dirty mask).
 *
 * The pCPUs are a ticket semaphore in the control region:
 *   PCPU_TICKET   next ticket (Atomics.add by a vCPU that wants a pCPU)
 *   PCPU_GRANTED  tickets below it may run: PCPUS + every pCPU given back
 *                 (Atomics.add by a vCPU giving one up, then notify)
 * A vCPU holds a pCPU exactly while its VC.PCPU word is 1 (its own thread
 * writes it): taking one asserts it held none, giving one back asserts it
 * held one. It holds one in GUEST and HYPERVISOR, and also while it steps
 * aside for a shootdown (Mmu.stepAside: BLOCKED for ~20 µs).
 */
import { PCPU_SLICE_US } from '../layout/constants.js';
import { CTL } from '../layout/control.js';
import { BUG_ON } from '../layout/region.js';
import { VC } from '../layout/vcpus.js';
import type { Machine } from './machine.js';
import { sched } from './platform.js';

/** pCPUs of this host, 0 when vCPU threads run as the OS schedules them. */
export function pcpuCount(m: Machine): number {
  return Atomics.load(m.control.w, CTL.PCPUS);
}

/** Host, before any vCPU starts: `n` pCPUs (0: none, the OS schedules the vCPU threads). */
export function pcpuInit(m: Machine, n: number): void {
  BUG_ON(!Number.isInteger(n) || n < 0, `pcpus must be a non-negative integer, got ${n}`);
  const w = m.control.w;
  Atomics.store(w, CTL.PCPU_TICKET, 0);
  Atomics.store(w, CTL.PCPU_GRANTED, n);
  Atomics.store(w, CTL.PCPUS, n);
}

/** Wait (FIFO) for a pCPU. The vCPU is in a state that holds none (OFFLINE, BLOCKED, PAUSED). */
export function pcpuTake(m: Machine, slot: number): void {
  if (pcpuCount(m) === 0) return;
  const pw = m.vcpus.idx(slot, VC.PCPU);
  BUG_ON(Atomics.load(m.vcpus.w, pw) !== 0, `vCPU slot ${slot} takes a pCPU while holding one`);
  const w = m.control.w;
  const t = Atomics.add(w, CTL.PCPU_TICKET, 1);
  const s = sched();
  for (;;) {
    const g = Atomics.load(w, CTL.PCPU_GRANTED);
    if (((t - g) | 0) < 0) break;
    s.wait(w, CTL.PCPU_GRANTED, g, 50);
  }
  Atomics.store(m.vcpus.w, pw, 1);
}

/** Give the pCPU back (the vCPU has just left GUEST or HYPERVISOR for a state that holds none). */
export function pcpuGive(m: Machine, slot: number): void {
  if (pcpuCount(m) === 0) return;
  const pw = m.vcpus.idx(slot, VC.PCPU);
  BUG_ON(Atomics.load(m.vcpus.w, pw) !== 1, `vCPU slot ${slot} gives back a pCPU it does not hold`);
  Atomics.store(m.vcpus.w, pw, 0);
  const w = m.control.w;
  // Wake the waiters (the one whose ticket was just granted among them) if a ticket was waiting: TICKET > GRANTED before the add.
  const g = Atomics.add(w, CTL.PCPU_GRANTED, 1);
  if (((Atomics.load(w, CTL.PCPU_TICKET) - g) | 0) > 0) sched().wake(w, CTL.PCPU_GRANTED, Infinity);
}

/** Whether a vCPU waits for a pCPU. */
export function pcpuWanted(m: Machine): boolean {
  const w = m.control.w;
  // A ticket handed out and not granted yet: TICKET > GRANTED.
  return ((Atomics.load(w, CTL.PCPU_TICKET) - Atomics.load(w, CTL.PCPU_GRANTED)) | 0) > 0;
}

/** A slice is over: time to give the pCPU to a waiting vCPU. */
export function pcpuSliceOver(since_us: number): boolean {
  return sched().now_us() - since_us >= PCPU_SLICE_US;
}
