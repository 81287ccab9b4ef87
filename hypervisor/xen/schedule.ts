/**
 * The pCPU scheduler — Xen's own (xen/common/sched/core.c schedule(),
 * vcpu_sleep_nosync, vcpu_wake; the policy of common/sched/credit2.c, in
 * miniature), so it sits in the Xen core.
 *
 * The host has CTL.PCPUS pCPUs, one per core unless the host says
 * otherwise (HostSpec.pcpus; 0: none, every vCPU thread runs whenever the
 * OS runs it). At most that many vCPUs are on a pCPU — in GUEST or
 * HYPERVISOR — at once; the others wait, descheduled (PAUSED or BLOCKED),
 * in a run queue. Why: with more vCPU threads than cores, the OS preempts
 * vCPU threads in GUEST, invisibly, and a TLB shootdown waits for a thread
 * the OS is not running; it also preempts a revoking vCPU in the middle of
 * its hypercall, for OS time slices of milliseconds (docs/revoke.md §2(c),
 * §3b). In Xen a vCPU off its pCPU is not in the domain's dirty mask (a
 * flush IPI skips it) and the hypervisor is not preempted: softirqs, the
 * scheduler's among them, run only on the way back to the guest
 * (vmx_asm_do_vmentry's softirq check, arch/x86/hvm/vmx/entry.S).
 *
 * What Xen does, and what is done here:
 *   - a vCPU blocks (vcpu_block: _VPF_blocked, SCHEDULE_SOFTIRQ) when it
 *     sleeps, waits for an ioreq's answer, or a device model waits for
 *     work: it gives its pCPU back (pcpuGive, GIVE.BLOCK);
 *   - a woken vCPU (vcpu_wake → sched_wake: csched2_unit_wake puts it on the
 *     runqueue, sorted by credit, and runq_tickle preempts a pCPU running
 *     one with less credit) takes a pCPU, or queues. Credit is simplified
 *     to one rule: a vCPU woken with a slice's worth of credit left (it ran
 *     less than PCPU_SLICE_US since it last had to queue behind everyone)
 *     joins RUNQ.BOOST, served before RUNQ.NORMAL; otherwise, and after a
 *     yield or a preemption, it joins the tail of RUNQ.NORMAL. This keeps a
 *     device model or dom0 vCPU that blocks and wakes all the time from
 *     waiting behind every CPU-bound vCPU, without letting it starve them:
 *     it spends at most a slice boosted per turn of the normal queue;
 *   - at a tick (Mmu.tick: a batch boundary, or between two workload
 *     steps) a vCPU that held its pCPU for a slice while another waits is
 *     preempted (GIVE.PREEMPT): credit2's runq_candidate keeps the running
 *     unit for the rate limit (SCHED_DEFAULT_RATELIMIT_US, 1 ms), then picks
 *     the runqueue's head; the timer that ends the slice is csched2_runtime's;
 *   - a vCPU in HYPERVISOR keeps its pCPU (a lock holder is never
 *     descheduled; pcpuTake asserts no lock is held), except while
 *     domctl_destroy waits for the victim's vCPUs to go offline;
 *   - SCHEDOP_yield (vcpu_yield; credit2's __CSFLAG_unit_yield) puts the
 *     vCPU back on the run queue, behind the others (GIVE.YIELD).
 *
 * The run queues live in the control region under CTL.RUNQ_LOCK (Xen's
 * per-runqueue schedule lock, a spinlock taken with no other lock held):
 * two FIFO lists threaded through VC.RUNQ_NEXT, CTL.PCPU_IDLE pCPUs nobody
 * holds, CTL.RUNQ_LEN waiters. A vCPU giving its pCPU back hands it to the
 * head of a queue directly (VC.PCPU_GRANT, then a wake of that one thread),
 * so a given-back pCPU wakes one waiter, not all of them. A vCPU holds a
 * pCPU exactly while its VC.PCPU word is 1 (its own thread writes it).
 *
 * Statistics (STAT.SCHED_*, per vCPU, written by its own thread): what
 * `xl debug-keys r` and Xen's runstate times tell an engineer — context
 * switches, preemptions, blocks, yields, time running and time runnable.
 */
import { MAX_PCPUS, MAX_VCPUS, PCPU_SLICE_US } from '../layout/constants.js';
import { CTL } from '../layout/control.js';
import { BUG, BUG_ON } from '../layout/region.js';
import { STAT, VC } from '../layout/vcpus.js';
import type { Machine } from './machine.js';
import { sched } from './platform.js';

/** The two run queues: woken vCPUs with credit left first, then everyone else in FIFO order. */
export const RUNQ = { BOOST: 0, NORMAL: 1 } as const;
/** Why a vCPU gives its pCPU back (the scheduler's counters). */
export const GIVE = { BLOCK: 0, YIELD: 1, PREEMPT: 2, OFFLINE: 3 } as const;
export type GiveReason = (typeof GIVE)[keyof typeof GIVE];

/**
 * Per vCPU slot, this thread's own view (only a vCPU's thread takes and
 * gives its pCPU): when it took the one it holds, and the pCPU time it has
 * used since it last queued in RUNQ.NORMAL or found a pCPU idle — the
 * credit it has burnt.
 */
const since_us = new Float64Array(MAX_VCPUS);
const burnt_us = new Float64Array(MAX_VCPUS);

/** pCPUs of this host, 0 when vCPU threads run as the OS schedules them. */
export function pcpuCount(m: Machine): number {
  return Atomics.load(m.control.w, CTL.PCPUS);
}

/** Host, before any vCPU starts: `n` pCPUs (0: none, the OS schedules the vCPU threads). */
export function pcpuInit(m: Machine, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > MAX_PCPUS) BUG(`pcpus must be an integer 0…${MAX_PCPUS}, got ${n}`);
  const w = m.control.w;
  for (const k of [CTL.RUNQ_LOCK, CTL.RUNQ_LEN, CTL.RUNQ_HEAD, CTL.RUNQ_HEAD + 1, CTL.RUNQ_TAIL, CTL.RUNQ_TAIL + 1]) Atomics.store(w, k, 0);
  Atomics.store(w, CTL.PCPU_IDLE, n);
  Atomics.store(w, CTL.PCPUS, n);
}

function runqLock(w: Int32Array): void {
  const s = sched();
  for (let i = 0; Atomics.compareExchange(w, CTL.RUNQ_LOCK, 0, 1) !== 0; i++) s.relax(i);
}

function runqUnlock(w: Int32Array): void {
  BUG_ON(Atomics.exchange(w, CTL.RUNQ_LOCK, 0) !== 1, 'run queue unlocked while not locked');
}

/**
 * Wait for a pCPU (the vCPU is OFFLINE, BLOCKED or PAUSED and holds no
 * lock); `woken`: it blocked (or was offline) rather than yielded or was
 * preempted, so it may be boosted. Returns how long it waited, in µs.
 */
export function pcpuTake(m: Machine, slot: number, woken = true): number {
  if (pcpuCount(m) === 0) return 0;
  if (m.vcpus.at(slot, VC.PCPU) !== 0) BUG(`vCPU slot ${slot} takes a pCPU while holding one`);
  if (m.locks.heldCount() !== 0) BUG(`vCPU slot ${slot} waits for a pCPU holding ${m.locks.heldCount()} lock(s): the vCPUs on the pCPUs could spin on them for ever`);
  const w = m.control.w;
  const q = woken && burnt_us[slot]! < PCPU_SLICE_US ? RUNQ.BOOST : RUNQ.NORMAL;
  runqLock(w);
  const idle = Atomics.load(w, CTL.PCPU_IDLE);
  if (idle > 0 && Atomics.load(w, CTL.RUNQ_LEN) !== 0) BUG(`${idle} pCPU(s) idle while vCPUs wait`);
  if (idle > 0) Atomics.store(w, CTL.PCPU_IDLE, idle - 1);
  else runqAppend(m, q, slot);
  runqUnlock(w);
  const s = sched();
  const t0 = s.now_us();
  let waited = 0;
  if (idle === 0) {
    const gi = m.vcpus.idx(slot, VC.PCPU_GRANT);
    while (Atomics.load(m.vcpus.w, gi) === 0) s.wait(m.vcpus.w, gi, 0, 50);
    Atomics.store(m.vcpus.w, gi, 0);
    waited = s.now_us() - t0;
    countWait(m, slot, waited, q);
  }
  if (idle > 0 || q === RUNQ.NORMAL) burnt_us[slot] = 0;
  Atomics.store(m.vcpus.w, m.vcpus.idx(slot, VC.PCPU), 1);
  m.vcpus.addStat(slot, STAT.SCHED_RUNS, 1);
  since_us[slot] = t0 + waited;
  return waited;
}

/** Give the pCPU back (the vCPU has just left GUEST or HYPERVISOR for a state that holds none). */
export function pcpuGive(m: Machine, slot: number, why: GiveReason = GIVE.BLOCK): void {
  if (pcpuCount(m) === 0) return;
  const pw = m.vcpus.idx(slot, VC.PCPU);
  if (Atomics.load(m.vcpus.w, pw) !== 1) BUG(`vCPU slot ${slot} gives back a pCPU it does not hold`);
  const ran = sched().now_us() - since_us[slot]!;
  burnt_us[slot]! += ran;
  m.vcpus.addStat(slot, STAT.SCHED_RUN_US, ran);
  if (why === GIVE.BLOCK) m.vcpus.addStat(slot, STAT.SCHED_BLOCKS, 1);
  else if (why === GIVE.YIELD) m.vcpus.addStat(slot, STAT.SCHED_YIELDS, 1);
  else if (why === GIVE.PREEMPT) m.vcpus.addStat(slot, STAT.SCHED_PREEMPTS, 1);
  Atomics.store(m.vcpus.w, pw, 0);
  const w = m.control.w;
  runqLock(w);
  const next = runqPop(m);
  if (next < 0) Atomics.add(w, CTL.PCPU_IDLE, 1);
  runqUnlock(w);
  if (Atomics.load(w, CTL.PCPU_IDLE) > pcpuCount(m)) BUG(`more pCPUs idle than the host has (${pcpuCount(m)})`);
  if (next >= 0) {
    // Straight to the head of the queue: it runs on the pCPU we leave, as schedule() switches to the unit it picked.
    const gi = m.vcpus.idx(next, VC.PCPU_GRANT);
    Atomics.store(m.vcpus.w, gi, 1);
    sched().wake(m.vcpus.w, gi, 1);
  }
}

/** Under the lock: `slot` joins the tail of queue `q`. */
function runqAppend(m: Machine, q: number, slot: number): void {
  const w = m.control.w;
  m.vcpus.set(slot, VC.RUNQ_NEXT, 0);
  const tail = Atomics.load(w, CTL.RUNQ_TAIL + q);
  if (tail === 0) Atomics.store(w, CTL.RUNQ_HEAD + q, slot + 1);
  else m.vcpus.set(tail - 1, VC.RUNQ_NEXT, slot + 1);
  Atomics.store(w, CTL.RUNQ_TAIL + q, slot + 1);
  Atomics.add(w, CTL.RUNQ_LEN, 1);
}

/** Under the lock: the head of the boost queue, else of the normal one; -1 if nobody waits. */
function runqPop(m: Machine): number {
  const w = m.control.w;
  for (const q of [RUNQ.BOOST, RUNQ.NORMAL]) {
    const head = Atomics.load(w, CTL.RUNQ_HEAD + q);
    if (head === 0) continue;
    const next = m.vcpus.at(head - 1, VC.RUNQ_NEXT);
    Atomics.store(w, CTL.RUNQ_HEAD + q, next);
    if (next === 0) Atomics.store(w, CTL.RUNQ_TAIL + q, 0);
    BUG_ON(Atomics.sub(w, CTL.RUNQ_LEN, 1) <= 0, 'run queue length below zero');
    return head - 1;
  }
  BUG_ON(Atomics.load(w, CTL.RUNQ_LEN) !== 0, 'run queues empty, length not zero');
  return -1;
}

function countWait(m: Machine, slot: number, us: number, q: number): void {
  m.vcpus.addStat(slot, STAT.SCHED_WAITS, 1);
  if (q === RUNQ.BOOST) m.vcpus.addStat(slot, STAT.SCHED_BOOSTS, 1);
  m.vcpus.addStat(slot, STAT.SCHED_WAIT_US, us);
  m.vcpus.maxStat(slot, STAT.SCHED_WAIT_MAX_US, us);
  m.vcpus.countSchedWait(slot, us);
}

/** Whether a vCPU waits for a pCPU. */
export function pcpuWanted(m: Machine): boolean {
  return Atomics.load(m.control.w, CTL.RUNQ_LEN) > 0;
}

/** A slice is over: time to give the pCPU to a waiting vCPU. */
export function pcpuSliceOver(since_us: number): boolean {
  return sched().now_us() - since_us >= PCPU_SLICE_US;
}

/** Who waits in each run queue, head first (a racy snapshot: diagnostics and tests). */
export function pcpuRunqueues(m: Machine): { boost: number[]; normal: number[] } {
  const walk = (q: number): number[] => {
    const out: number[] = [];
    for (let e = Atomics.load(m.control.w, CTL.RUNQ_HEAD + q); e !== 0 && out.length < MAX_VCPUS; e = m.vcpus.at(e - 1, VC.RUNQ_NEXT)) out.push(e - 1);
    return out;
  };
  return { boost: walk(RUNQ.BOOST), normal: walk(RUNQ.NORMAL) };
}
