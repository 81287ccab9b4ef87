/**
 * IOREQ servers (xen/common/ioreq.c: create_ioreq_server,
 * map_io_range_to_ioreq_server, set_ioreq_server_state) and the vCPU's side
 * of an ioreq: which accesses become which ioreq, and the blocking wait for
 * the answer over the transport (docs/ioreq.md).
 */
import { designOf } from './design.js';
import { MAX_IOREQ_RANGES, MAX_IOREQ_SERVERS_PER_DOMAIN } from '../layout/constants.js';
import { DOM, DS } from '../layout/domains.js';
import { BUF, BUF_SLOTS, FAULT_POLICY, type FaultPolicy, SRV, SRV_STATE } from '../layout/ioreq.js';
import { P2M_REVOKED } from '../layout/p2m.js';
import type { Machine } from './machine.js';
import { type Mmu, setDefaultEmulateHook } from './mmu.js';
import { EINVAL, ENOENT, ENOSPC, EPERM, ESRCH } from '../public/errno.js';
import { FAULT_ANSWER, IOREQ_DIR, IOREQ_STATE, IOREQ_TYPE, type IoreqAnswer, type IoreqServerEnd } from '../public/ioreq.js';
import { IOS } from '../layout/ioreq-slots.js';
import { STAT, VC } from '../layout/vcpus.js';
import { CTL } from '../layout/control.js';
import { COST, sched } from './platform.js';
import { VS } from './vcpu.js';
import { domainCrash } from './domain-crash.js';
import { ACCESS, type AccessOutcome } from '../public/guest.js';
import { IO_END, TK, kindWord } from '../layout/trace.js';
import { tracer } from './trace.js';
import { hookPoint } from './hooks.js';
import { lockRemoteDomain } from './memory.js';
import { putDomain } from './domain-ref.js';

/**
 * The device model's end of its ioreq channel (its mapped ioreq pages and
 * event channel, what libxendevicemodel hands QEMU). Which transport
 * carries it is the host's choice, not Xen's: the host installs the maker
 * (hypervisor/host/transport-ends.ts) in every thread that runs a device
 * model, before any asks for its end.
 */
export type ServerEndMaker = (m: Machine, owner: number) => IoreqServerEnd;
let serverEndMaker: ServerEndMaker | null = null;

export function setServerEndMaker(f: ServerEndMaker): void {
  serverEndMaker = f;
}

/** A new end for the device model of domain `owner`. */
export function openServerEnd(m: Machine, owner: number): IoreqServerEnd {
  if (serverEndMaker === null) throw new Error('no ioreq transport installed in this thread (import hypervisor/host/transport-ends.js)');
  return serverEndMaker(m, owner);
}

export interface IoRange {
  start: number;
  count: number;
  /** Writes to this range may be posted (buffered ioreqs) when the server has a buffered ring (docs/ioreq.md §13). */
  posted?: boolean;
}

export interface IoreqServerOptions {
  /** A buffered ioreq ring (Xen's handle_bufioreq, HVM_IOREQSRV_BUFIOREQ_ATOMIC). */
  bufioreq?: boolean;
}

/** Create a server for `target` owned by `by`; returns its index (≥ 0) or a negative errno. */
export function ioreqServerCreate(m: Machine, by: number, target: number, ranges: readonly IoRange[], policy: FaultPolicy, opts: IoreqServerOptions = {}): number {
  if (!Number.isInteger(target) || target < 0 || target >= m.nd || m.dom.state(target) !== DS.RUNNING) return -ESRCH;
  if (by === target) return -EINVAL;
  if (m.dom.at(target, DOM.BACKEND) !== by + 1 && m.dom.at(by, DOM.PRIVILEGED) === 0) return -EPERM;
  if (ranges.length > MAX_IOREQ_RANGES || ranges.some((r) => !Number.isInteger(r.start) || !Number.isInteger(r.count) || r.start < 0 || r.count < 1)) return -EINVAL;
  const lk = m.dom.at(target, DOM.LOCK_IOREQ);
  m.lock(lk, 'ioreq.create_server', target);
  try {
    for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) {
      if (m.ioreq.active(target, s)) continue;
      const i = m.ioreq.idx(target, s);
      const w = m.ioreq.w;
      w.fill(0, i, i + SRV.WORDS);
      w[i + SRV.OWNER] = by;
      w[i + SRV.POLICY] = FAULT_POLICY[policy];
      let posted = 0;
      ranges.forEach((r, k) => {
        w[i + SRV.RANGES + 2 * k] = r.start;
        w[i + SRV.RANGES + 2 * k + 1] = r.count;
        if (r.posted === true) posted |= 1 << k;
      });
      m.ioreq.resetBuf(target, s);
      w[i + SRV.BUFIOREQ] = opts.bufioreq === true ? 1 : 0;
      w[i + SRV.POSTED] = posted;
      Atomics.store(w, i + SRV.NR_RANGES, ranges.length);
      Atomics.store(w, i + SRV.STATE, SRV_STATE.INLINE);
      return s;
    }
    return -ENOSPC;
  } finally {
    m.unlock(lk);
  }
}

/** Servers for d, or owned by d, go when d dies. */
export function ioreqServersDomainDying(m: Machine, d: number): void {
  for (let t = 0; t < m.nd; t++) {
    for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) {
      if (!m.ioreq.active(t, s)) continue;
      const i = m.ioreq.idx(t, s);
      if (t === d || m.ioreq.w[i + SRV.OWNER] === d) Atomics.store(m.ioreq.w, i + SRV.STATE, 0);
    }
  }
}

/**
 * XEN_DMOP_set_ioreq_server_state: `enabled` hands the server's ioreqs to
 * its device model over the transport. dm_op's prologue first
 * (xen/arch/x86/hvm/dm.c): rcu_lock_remote_domain_by_id (the target
 * exists, -ESRCH; is not the caller, -EPERM), xsm_dm_op(XSM_DM_PRIV) (the
 * caller is the target's device model — its topology backend — or the
 * control domain, -EPERM); then ioreq_server_set_state
 * (xen/common/ioreq.c): get_ioreq_server finds no such server, an index out
 * of range included → -ENOENT; `s->emulator != current->domain` → -EPERM.
 */
export function ioreqServerSetState(m: Machine, by: number, target: number, server: number, enabled: boolean): number {
  const rc = lockRemoteDomain(m, by, target);
  if (rc < 0) return rc;
  try {
    if (m.dom.at(by, DOM.PRIVILEGED) === 0 && m.dom.at(target, DOM.BACKEND) !== by + 1) return -EPERM;
    if (!Number.isInteger(server) || server < 0 || server >= MAX_IOREQ_SERVERS_PER_DOMAIN || !m.ioreq.active(target, server)) return -ENOENT;
    if (m.ioreq.owner(target, server) !== by) return -EPERM;
    Atomics.store(m.ioreq.w, m.ioreq.idx(target, server) + SRV.STATE, enabled ? SRV_STATE.ENABLED : SRV_STATE.INLINE);
    return 0;
  } finally {
    putDomain(m, target);
  }
}

/**
 * What an access to a non-RAM gfn becomes (the MMU's emulation hook): a
 * revoked gfn is IOREQ_TYPE_FAULT when a server serves the domain; a gfn a
 * server claims is an IOREQ_TYPE_COPY ioreq; everything else meets Xen's
 * null handler (reads all ones, writes dropped). An enabled server answers
 * over the transport while the vCPU blocks; a server with no device model
 * attached is answered inline by its fault policy.
 */
export function emulateAccess(mmu: Mmu, gfn: number, offset: number, width: number, write: boolean, value: number): { outcome: AccessOutcome; value: number } {
  const m = mmu.m;
  const d = mmu.domid;
  const revoked = mmu.seenEntry === P2M_REVOKED;
  const s = revoked ? designOf(m).faultServer(m, d, gfn) : m.ioreq.claiming(d, gfn);
  if (s < 0) return { outcome: ACCESS.NULL_IO, value: -1 };
  const policy = m.ioreq.policy(d, s);
  if (revoked) {
    const tw = tracer;
    if (tw !== null) tw.put(tw.now(), kindWord(TK.FAULT, s), gfn, 0);
  }
  if (m.ioreq.state(d, s) !== SRV_STATE.ENABLED) {
    if (!revoked) return { outcome: ACCESS.IOREQ, value: -1 };
    // `retry` plays a device model that answers every FAULT with RETRY and
    // never maps anything (buggy or hostile): the MMU's retry bound is all
    // that ends the access (XSA-262 class, docs/xsa.md).
    if (policy === FAULT_POLICY.retry) return { outcome: ACCESS.RETRY, value: 0 };
    return { outcome: policy === FAULT_POLICY.fail ? ACCESS.FAULT : ACCESS.IOREQ_FAULT, value: -1 };
  }
  // A posted write goes into the server's buffered ring, unless it is full (then the normal way, as Xen).
  if (write && !revoked && m.ioreq.posted(d, s, gfn) && sendBuffered(mmu, s, gfn, offset, width, value)) return { outcome: ACCESS.IOREQ, value: 0 };
  const a = sendIoreq(mmu, s, revoked ? IOREQ_TYPE.FAULT : IOREQ_TYPE.COPY, write, gfn, offset, width, value);
  if (a === undefined) return { outcome: ACCESS.NULL_IO, value: -1 }; // the vCPU is going away
  if (!revoked) return { outcome: ACCESS.IOREQ, value: a.data };
  if (a.fault === FAULT_ANSWER.RETRY) return { outcome: ACCESS.RETRY, value: 0 };
  return { outcome: a.fault === FAULT_ANSWER.FAIL ? ACCESS.FAULT : ACCESS.IOREQ_FAULT, value: -1 };
}

/**
 * How long the vCPU spins on the answer of an awake server before it
 * sleeps: a hot server answers within a spin round trip. Measured in time,
 * not iterations: an iteration's cost varies with the load on the machine.
 */
const IOREQ_SPIN_US = 10;
/** A vCPU whose spins stopped paying spins again, once, every this many ioreqs (a probe). */
const IOREQ_SPIN_PROBE_EVERY = 32;

/**
 * Whether spinning pays, per vCPU — adaptive, as KVM's halt polling
 * (`grow_halt_poll_ns` / `shrink_halt_poll_ns`) adapts its window. A spin
 * pays when the answer comes during it. When it runs out with the request
 * still READY, the server never got to claim it while we spun: on a host
 * whose other cores are busy, the spinning vCPU was keeping the device
 * model off the one core the two share (measured: 21 µs round trips with
 * the spin, 2 µs without, BENCHMARKS.md). Then the vCPU goes straight to
 * its futex wait, and probes with one full spin every
 * IOREQ_SPIN_PROBE_EVERY ioreqs. A spin that runs out with the request
 * INPROCESS (a slow command) changes nothing. Keyed by the Mmu: a new
 * machine (the simulator's second run of a seed) starts afresh.
 */
interface SpinPolicy {
  window_us: number;
  sinceProbe: number;
}
const spinPolicies = new WeakMap<Mmu, SpinPolicy>();

/**
 * Build the ioreq in the vCPU's slot, signal the server's owner, block until
 * IORESP_READY (no timeout, as Xen; the host's watchdog reports a vCPU that
 * waits too long). Every state seen must move forward: a server that moves
 * one backwards, or answers garbage, crashes the guest (never the
 * hypervisor). Returns undefined if the vCPU must stop instead.
 */
export function sendIoreq(mmu: Mmu, server: number, type: number, write: boolean, gfn: number, offset: number, size: number, data: number): IoreqAnswer | undefined {
  const m = mmu.m;
  const d = mmu.domid;
  const slots = m.ios.slots;
  const i = m.ios.idx(mmu.slot);
  const seq = ++mmu.ioreqSeq;
  // The transport's part of the round trip (the device model's own steps are charged as they run).
  sched().charge(COST.IOREQ, 1);
  slots[i + IOS.TYPE] = type;
  slots[i + IOS.DIR] = write ? IOREQ_DIR.WRITE : IOREQ_DIR.READ;
  slots[i + IOS.SIZE] = size;
  slots[i + IOS.GFN] = gfn;
  slots[i + IOS.OFFSET] = offset;
  slots[i + IOS.DATA] = write ? data : 0;
  slots[i + IOS.TARGET] = d;
  slots[i + IOS.SERVER] = server;
  slots[i + IOS.FAULT] = 0;
  slots[i + IOS.DOMID] = d;
  slots[i + IOS.VCPU] = m.vcpus.at(mmu.slot, VC.VCPU);
  Atomics.store(slots, i + IOS.SEQ, seq);
  m.log.checked('ioreq_forward');
  const t0_us = sched().now_us();
  // On the timeline before the publish: a hot device model may answer before a preempted vCPU runs again.
  const tw = tracer;
  if (tw !== null) tw.put(tw.now(), kindWord(TK.IO_SEND, type | ((write ? IOREQ_DIR.WRITE : IOREQ_DIR.READ) << 4)), seq, gfn);
  let how: number = IO_END.ABANDONED;
  Atomics.store(slots, i + IOS.STATE, IOREQ_STATE.READY);
  mmu.stat(STAT.IOREQS_SENT);
  // Spin for the answer only if the server is awake: waking a parked one
  // takes a futex wake-up, and spinning meanwhile only keeps a core from it.
  let awake = true;
  if (Atomics.load(m.control.w, CTL.TRANSPORT) === 1) {
    // redis: the host's dispatcher publishes it on the server's stream.
    Atomics.add(m.control.w, CTL.DISPATCH, 1);
    Atomics.notify(m.control.w, CTL.DISPATCH);
  } else {
    // The owner's pending bit, its event word, and a futex wake only if it sleeps.
    if (m.ios.kick(m.ioreq.owner(d, server), mmu.slot)) awake = false;
  }
  // And only while spinning pays (SpinPolicy).
  let pol = spinPolicies.get(mmu);
  if (pol === undefined) spinPolicies.set(mmu, (pol = { window_us: IOREQ_SPIN_US, sinceProbe: 0 }));
  let spin_us = awake ? pol.window_us : 0;
  if (awake && spin_us === 0 && ++pol.sinceProbe >= IOREQ_SPIN_PROBE_EVERY) {
    pol.sinceProbe = 0;
    spin_us = IOREQ_SPIN_US;
  }
  // Waiting for the device model is being blocked: no TLB the hypervisor
  // must wait for, and not a guest that runs.
  const st = m.vcpus.idx(mmu.slot, VC.STATE);
  const wasGuest = Atomics.compareExchange(m.vcpus.w, st, VS.GUEST, VS.BLOCKED) === VS.GUEST;
  if (wasGuest) mmu.givePcpu();
  try {
    let prev: number = IOREQ_STATE.READY;
    let spinning = true;
    let waits = 0;
    for (let k = 0; ; k++) {
      const cur = Atomics.load(slots, i + IOS.STATE);
      if (cur !== prev) {
        m.log.checked('ioreq_forward');
        if (cur < prev || cur > IOREQ_STATE.IORESP_READY || cur === IOREQ_STATE.NONE || Atomics.load(slots, i + IOS.SEQ) !== seq) {
          how = IO_END.PROTOCOL_ERROR;
          serverBroke(m, d, `d${d} vCPU slot ${mmu.slot}: ioreq ${seq} state went ${prev} → ${cur}`);
          Atomics.store(slots, i + IOS.STATE, IOREQ_STATE.NONE);
          mmu.stat(STAT.IOREQS_ABANDONED);
          return undefined;
        }
        prev = cur;
      }
      if (cur === IOREQ_STATE.IORESP_READY) {
        if (spinning && spin_us > 0) pol.window_us = IOREQ_SPIN_US; // the spin paid
        break;
      }
      if (spinning) {
        if ((k & 15) !== 15 || sched().now_us() - t0_us < spin_us) continue;
        spinning = false;
        // Never claimed while we spun: the spin kept the server off its core, or it is not running.
        if (spin_us > 0 && cur === IOREQ_STATE.READY) pol.window_us = 0;
      }
      if ((waits++ & 15) === 0 && (Atomics.load(m.control.w, CTL.STOP) !== 0 || m.dom.state(d) !== DS.RUNNING)) {
        Atomics.store(slots, i + IOS.STATE, IOREQ_STATE.NONE);
        mmu.stat(STAT.IOREQS_ABANDONED);
        // A dying domain's ioreqs go with it, as in Xen; one the run stopped under a live domain was never seen answered.
        if (m.dom.state(d) === DS.RUNNING) Atomics.add(m.control.w, CTL.IOREQS_ABANDONED_AT_STOP, 1);
        return undefined;
      }
      // Say we sleep before sleeping, so the server knows to wake us (layout/ioreq-slots.ts).
      Atomics.store(slots, i + IOS.WAITING, 1);
      hookPoint('ioreq.wait', d, mmu.slot);
      sched().wait(slots, i + IOS.STATE, cur, 50);
      Atomics.store(slots, i + IOS.WAITING, 0);
    }
    const answer = { data: slots[i + IOS.DATA]! >>> 0, fault: slots[i + IOS.FAULT]! };
    if (type === IOREQ_TYPE.FAULT && (answer.fault < FAULT_ANSWER.NONE || answer.fault > FAULT_ANSWER.RETRY)) {
      how = IO_END.PROTOCOL_ERROR;
      serverBroke(m, d, `d${d}: FAULT ioreq ${seq} answered with ${answer.fault}`);
      Atomics.store(slots, i + IOS.STATE, IOREQ_STATE.NONE);
      mmu.stat(STAT.IOREQS_ABANDONED);
      return undefined;
    }
    Atomics.store(slots, i + IOS.STATE, IOREQ_STATE.NONE);
    how = IO_END.ANSWERED;
    mmu.stat(STAT.IOREQS_DONE);
    const rtt = sched().now_us() - t0_us;
    m.vcpus.countRtt(mmu.slot, rtt);
    if (type === IOREQ_TYPE.FAULT) m.vcpus.countFaultRtt(rtt);
    return answer;
  } finally {
    if (tw !== null) tw.put(tw.now(), kindWord(TK.IO_DONE, how), seq, 0);
    if (wasGuest) {
      mmu.takePcpu();
      Atomics.store(m.vcpus.w, st, VS.GUEST);
      mmu.boundary();
    }
  }
}

/**
 * Xen's ioreq_send_buffered: put a posted write into server s's buffered
 * ring and notify its owner; the vCPU goes on without waiting. False when
 * the ring is full (the caller sends it the synchronous way; xen/common/
 * ioreq.c does the same). A device model applies buffered ioreqs in
 * position order, and those of a server before that server's next
 * synchronous ioreq is handled (QEMU's handle_buffered_iopage first), so a
 * read that follows posted writes sees them.
 */
function sendBuffered(mmu: Mmu, s: number, gfn: number, offset: number, size: number, data: number): boolean {
  const m = mmu.m;
  const d = mmu.domid;
  const buf = m.ioreq.buf;
  const b = m.ioreq.bufIdx(d, s);
  const lk = m.dom.at(d, DOM.LOCK_BUFIOREQ);
  let pos: number;
  m.lock(lk, 'ioreq.send_buffered', d);
  try {
    pos = buf[b + BUF.WRITE]!;
    if (((pos - Atomics.load(buf, b + BUF.READ)) | 0) >= BUF_SLOTS) {
      mmu.stat(STAT.BUFIOREQ_FULL);
      return false;
    }
    const e = m.ioreq.bufEntry(b, pos);
    buf[e + BUF.GFN] = gfn;
    buf[e + BUF.OFFSET] = offset;
    buf[e + BUF.META] = size | (IOREQ_TYPE.COPY << 4) | (m.vcpus.at(mmu.slot, VC.VCPU) << 8);
    buf[e + BUF.DATA] = data | 0;
    // The entry before the write pointer (Xen's smp_wmb): below WRITE, every entry is complete.
    Atomics.store(buf, b + BUF.WRITE, (pos + 1) | 0);
  } finally {
    m.unlock(lk);
  }
  mmu.stat(STAT.BUFIOREQS);
  const tw = tracer;
  if (tw !== null) tw.put(tw.now(), kindWord(TK.IO_POST, s), pos, gfn);
  if (Atomics.load(m.control.w, CTL.TRANSPORT) === 1) {
    Atomics.add(m.control.w, CTL.DISPATCH, 1);
    Atomics.notify(m.control.w, CTL.DISPATCH);
  } else {
    m.ios.kickBuffered(m.ioreq.owner(d, s));
  }
  return true;
}

/** A device model broke the ioreq protocol: the guest it served is crashed, the event logged. */
function serverBroke(m: Machine, d: number, what: string): void {
  m.log.event(`ioreq protocol error, crashing d${d}: ${what}`);
  domainCrash(m, d, what);
}

setDefaultEmulateHook(emulateAccess);
