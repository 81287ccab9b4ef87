/**
 * ioreq.ts at its edges, on one thread: the IOREQ servers' create and
 * set-state refusals with their codes (xen/common/ioreq.c
 * ioreq_server_create / ioreq_server_set_state, behind dm_op's prologue in
 * xen/arch/x86/hvm/dm.c), the servers a dying domain takes with it
 * (ioreq_server_destroy_all), what an access to a non-RAM gfn becomes,
 * and the vCPU's side of an ioreq (hvm_send_ioreq / ioreq_send,
 * wait_for_io, ioreq_send_buffered): the slot's fields, every state the
 * device model stores checked to move forward (a backward move crashes
 * the guest, not the hypervisor), the wait given up when the run stops or
 * the domain dies. The device model's stores run at the `ioreq.wait` hook,
 * where the vCPU waits; no timing is asserted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { VcpuContext } from './guest-cpu.js';
import { emulateAccess, ioreqServerCreate, ioreqServerSetState, ioreqServersDomainDying, openServerEnd, setServerEndMaker, type ServerEndMaker } from './ioreq.js';
import { makeServerEnd } from '../host/transport-ends.js';
import { domainCrash } from './domain-crash.js';
import { armHook, disarmHooks } from './hooks.js';
import { clearTracer, setVcpuTracer } from './trace.js';
import { dmMap } from '../designs/primitives/map.js';
import { dmRevoke } from '../designs/primitives/revoke.js';
import { MAX_IOREQ_RANGES, MAX_IOREQ_SERVERS_PER_DOMAIN } from '../layout/constants.js';
import { CTL } from '../layout/control.js';
import { DOM, DS } from '../layout/domains.js';
import { BUF, BUF_SLOTS, FAULT_POLICY, SRV, SRV_STATE, type FaultPolicy } from '../layout/ioreq.js';
import { IOS, PENDING_WORDS } from '../layout/ioreq-slots.js';
import { P2M_REVOKED } from '../layout/p2m.js';
import { EV, IO_END, TK, extraOf, kindOf } from '../layout/trace.js';
import { STAT, VC } from '../layout/vcpus.js';
import { EINVAL, ENOENT, ENOSPC, EPERM, ESRCH } from '../public/errno.js';
import { ACCESS } from '../public/guest.js';
import { FAULT_ANSWER, IOREQ_DIR, IOREQ_STATE, IOREQ_TYPE } from '../public/ioreq.js';
import { VS } from './vcpu.js';
import { realSched, setSched } from './platform.js';
import { pcpuInit } from './schedule.js';
import { RTT_BUCKETS, rttBucket } from '../layout/rtt-hist.js';
import { KEPT_WORDS, TraceCollector, decodeEvents } from '../host/trace-collector.js';
import type { Machine } from './machine.js';
import type { IoreqServerEnd } from '../public/ioreq.js';

const MMIO = 600;

/**
 * d0 privileged (d1's backend), d1 the frontend (two vCPUs), d2 whose
 * backend is d1 (not privileged), d3 privileged but nobody's backend.
 */
function rig(o: { trace?: boolean } = {}): Machine {
  return testMachine({
    domains: [{ memory_pages: 64, privileged: true }, { memory_pages: 64, backend: 0, vcpus: 2 }, { memory_pages: 16, backend: 1 }, { memory_pages: 16, privileged: true }],
    ...(o.trace === true ? { trace: { rings: 8, ring_events: 64 } } : {}),
  });
}

/** d1's vCPU `v`, started (GUEST). */
function frontend(m: Machine, v = 1): VcpuContext {
  const cpu = new VcpuContext(m, { domid: 1, vcpu: v, slot: m.dom.at(1, DOM.VCPU_BASE) + v, memory_pages: 64, seed: 1 });
  cpu.start();
  return cpu;
}

/** d0 Maps d1's gfn 4 at d1's gfn 100 and Revokes it: gfn 100 faults to d0's newest server for d1. */
function revokeAt100(m: Machine): void {
  const id = dmMap(m, 0, { fe: 1, source: { kind: 'ram', gfn: 4 }, count: 1, at: 100 }).id;
  expect(dmRevoke(m, 0, { id })).toBe(0);
}

const words = (m: Machine, d: number, s: number): number[] => Array.from(m.ioreq.w.subarray(m.ioreq.idx(d, s), m.ioreq.idx(d, s) + SRV.WORDS));
const sum = (a: Int32Array): number => a.reduce((x, y) => x + y, 0);

/**
 * The device model, at each wait of the vCPU in `slot`: step k runs at the
 * k-th wait (given the slot's words and index). After the last, the run is
 * stopped, so an ioreq still waiting is given up (at its next check)
 * rather than waited for forever. Returns how many waits there were.
 */
function deviceModel(m: Machine, slot: number, steps: Array<(s: Int32Array, i: number) => void>): { waits: number } {
  const seen = { waits: 0 };
  const s = m.ios.slots;
  const i = m.ios.idx(slot);
  const fire = (): void => {
    const step = steps[seen.waits++];
    armHook('ioreq.wait', fire);
    if (step === undefined) Atomics.store(m.control.w, CTL.STOP, 1);
    else step(s, i);
  };
  armHook('ioreq.wait', fire);
  return seen;
}

const answer = (data: number, fault = 0) => (s: Int32Array, i: number): void => {
  s[i + IOS.DATA] = data;
  s[i + IOS.FAULT] = fault;
  Atomics.store(s, i + IOS.STATE, IOREQ_STATE.IORESP_READY);
};
const store = (state: number) => (s: Int32Array, i: number): void => {
  Atomics.store(s, i + IOS.STATE, state);
};

afterEach(() => {
  disarmHooks();
  clearTracer();
  setSched(realSched);
});

describe('a device model\'s end of the transport (openServerEnd)', () => {
  it('is made by the maker the host installed in this thread, and refused loudly when none is', () => {
    const m = rig();
    const fake = { kind: 'ring' } as unknown as IoreqServerEnd;
    const asked: number[] = [];
    try {
      setServerEndMaker(null as unknown as ServerEndMaker);
      expect(() => openServerEnd(m, 0)).toThrow('no ioreq transport installed in this thread (import hypervisor/host/transport-ends.js)');
      setServerEndMaker((mm, owner) => (asked.push(owner), mm === m ? fake : (undefined as never)));
      expect(openServerEnd(m, 3)).toBe(fake);
      expect(asked).toEqual([3]);
    } finally {
      setServerEndMaker(makeServerEnd);
    }
  });
});

describe('ioreq_server_create', () => {
  it('refuses a target that is not a running domain (-ESRCH), itself (-EINVAL), a caller neither its backend nor privileged (-EPERM), bad ranges (-EINVAL), and a ninth server (-ENOSPC)', () => {
    const m = rig();
    for (const t of [1.5, -1, m.nd, 5]) expect(ioreqServerCreate(m, 0, t, [], 'none'), `target ${t}`).toBe(-ESRCH);
    expect(domainCrash(m, 2, 'test')).toBe(true);
    expect(ioreqServerCreate(m, 0, 2, [], 'none')).toBe(-ESRCH);
    // Itself: -EINVAL before the permission test (d1 is not its own backend, not privileged). Xen's dm_op says -EPERM
    // (rcu_lock_remote_domain_by_id): a known difference, docs/fidelity.md D17, pinned by fidelity-ioreq-server-self.yaml.
    expect(ioreqServerCreate(m, 0, 0, [], 'none')).toBe(-EINVAL);
    expect(ioreqServerCreate(m, 1, 1, [], 'none')).toBe(-EINVAL);
    // d2 is neither d1's backend nor privileged.
    expect(ioreqServerCreate(m, 2, 1, [], 'none')).toBe(-EPERM);
    const too = Array.from({ length: MAX_IOREQ_RANGES + 1 }, (_, k) => ({ start: 1000 + k, count: 1 }));
    expect(ioreqServerCreate(m, 0, 1, too, 'none')).toBe(-EINVAL);
    for (const r of [{ start: 0.5, count: 1 }, { start: 0, count: 1.5 }, { start: -1, count: 1 }, { start: 0, count: 0 }]) {
      expect(ioreqServerCreate(m, 0, 1, [{ start: 600, count: 1 }, r], 'none'), JSON.stringify(r)).toBe(-EINVAL);
    }
    // Nothing was taken by a refusal.
    for (let s = 0; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) expect(m.ioreq.active(1, s)).toBe(false);
    // The limits themselves pass: MAX_IOREQ_RANGES ranges, gfn 0, a count of 1; the privileged d3 (not the backend); then -ENOSPC.
    expect(ioreqServerCreate(m, 0, 1, too.slice(0, MAX_IOREQ_RANGES), 'none')).toBe(0);
    expect(ioreqServerCreate(m, 0, 1, [{ start: 0, count: 1 }], 'none')).toBe(1);
    expect(ioreqServerCreate(m, 3, 1, [], 'none')).toBe(2);
    for (let s = 3; s < MAX_IOREQ_SERVERS_PER_DOMAIN; s++) expect(ioreqServerCreate(m, 0, 1, [], 'none')).toBe(s);
    expect(ioreqServerCreate(m, 0, 1, [], 'none')).toBe(-ENOSPC);
    // The lock was given back on -ENOSPC too (a second take would be a lock fault).
    expect(ioreqServerCreate(m, 0, 1, [], 'none')).toBe(-ENOSPC);
    // d1, not privileged, is d2's backend: allowed (d2 crashed above, so on a fresh machine).
    const m2 = rig();
    expect(ioreqServerCreate(m2, 1, 2, [], 'none')).toBe(0);
    expect(m2.ioreq.owner(2, 0)).toBe(1);
  });

  it('writes the whole server: owner, policy, ranges and posted mask, ring, state; a reused place keeps nothing of the last server but its ring positions', () => {
    const m = rig();
    const ranges = [{ start: 600, count: 2, posted: true }, { start: 700, count: 1 }, { start: 800, count: 3, posted: true }, { start: 900, count: 1, posted: false }];
    expect(ioreqServerCreate(m, 3, 1, ranges, 'remap', { bufioreq: true })).toBe(0);
    expect(words(m, 1, 0).slice(0, SRV.RANGES + 8)).toEqual([SRV_STATE.INLINE, 3, FAULT_POLICY.remap, 4, 0, 1, 0b101, 0, 600, 2, 700, 1, 800, 3, 900, 1]);
    expect(m.ioreq.claiming(1, 801)).toBe(0);
    // The server goes with its owner; the ring had positions moved on meanwhile.
    const b = m.ioreq.bufIdx(1, 0);
    Atomics.store(m.ioreq.buf, b + BUF.WRITE, 37);
    ioreqServersDomainDying(m, 3);
    expect(m.ioreq.active(1, 0)).toBe(false);
    expect(ioreqServerCreate(m, 0, 1, [{ start: 650, count: 1 }], 'fail')).toBe(0);
    const expected = new Array<number>(SRV.WORDS).fill(0);
    expected[SRV.STATE] = SRV_STATE.INLINE;
    expected[SRV.POLICY] = FAULT_POLICY.fail;
    expected[SRV.NR_RANGES] = 1;
    expected[SRV.RANGES] = 650;
    expected[SRV.RANGES + 1] = 1;
    expect(words(m, 1, 0)).toEqual(expected);
    expect([BUF.WRITE, BUF.READ, BUF.APPLIED].map((k) => Atomics.load(m.ioreq.buf, b + k))).toEqual([37, 37, 37]);
    // bufioreq given false, and a posted range without a ring.
    expect(ioreqServerCreate(m, 0, 1, [{ start: 660, count: 1, posted: true }], 'retry', { bufioreq: false })).toBe(1);
    expect([m.ioreq.bufioreq(1, 1), m.ioreq.posted(1, 1, 660), m.ioreq.policy(1, 1)]).toEqual([false, false, FAULT_POLICY.retry]);
    expect(m.ioreq.w[m.ioreq.idx(1, 1) + SRV.POSTED]).toBe(1);
  });
});

describe('ioreq_server_destroy_all (the servers a dying domain takes with it)', () => {
  it('frees the servers for d and the servers d runs, no other', () => {
    const m = rig();
    const s01 = ioreqServerCreate(m, 0, 1, [], 'none');
    const s31 = ioreqServerCreate(m, 3, 1, [], 'none');
    const s12 = ioreqServerCreate(m, 1, 2, [], 'none');
    const s32 = ioreqServerCreate(m, 3, 2, [], 'none');
    const s03 = ioreqServerCreate(m, 0, 3, [], 'none');
    const live = (): string[] => [[1, s01, '0→1'], [1, s31, '3→1'], [2, s12, '1→2'], [2, s32, '3→2'], [3, s03, '0→3']].filter(([t, s]) => m.ioreq.active(t as number, s as number)).map(([, , n]) => n as string);
    expect(live()).toEqual(['0→1', '3→1', '1→2', '3→2', '0→3']);
    ioreqServersDomainDying(m, 3);
    expect(live()).toEqual(['0→1', '1→2']);
    ioreqServersDomainDying(m, 1);
    expect(live()).toEqual([]);
  });
});

describe('XEN_DMOP_set_ioreq_server_state', () => {
  it('refuses through dm_op\'s prologue (-ESRCH, -EPERM), xsm_dm_op (-EPERM), get_ioreq_server (-ENOENT) and the emulator test (-EPERM); a domain reference is never kept', () => {
    const m = rig();
    const s0 = ioreqServerCreate(m, 0, 1, [], 'none');
    const s3 = ioreqServerCreate(m, 3, 1, [], 'none');
    const s1 = ioreqServerCreate(m, 1, 2, [], 'none');
    const refs = [1, 2].map((d) => m.dom.at(d, DOM.REFCNT));
    for (const t of [-1, 1.5, m.nd, 5]) expect(ioreqServerSetState(m, 0, t, s0, true), `target ${t}`).toBe(-ESRCH);
    expect(ioreqServerSetState(m, 1, 1, s0, true)).toBe(-EPERM);
    // d2: not d1's backend, not privileged — refused by xsm_dm_op before any server is looked up.
    expect(ioreqServerSetState(m, 2, 1, s0, true)).toBe(-EPERM);
    expect(ioreqServerSetState(m, 2, 1, 5, true)).toBe(-EPERM);
    for (const s of [1.5, -1, MAX_IOREQ_SERVERS_PER_DOMAIN, 5]) expect(ioreqServerSetState(m, 0, 1, s, true), `server ${s}`).toBe(-ENOENT);
    // d0 may act on d1, but s3 is d3's.
    expect(ioreqServerSetState(m, 0, 1, s3, true)).toBe(-EPERM);
    expect(m.ioreq.state(1, s3)).toBe(SRV_STATE.INLINE);
    // Each its own: d0 (backend and privileged), d3 (privileged only), d1 (d2's backend only).
    expect(ioreqServerSetState(m, 0, 1, s0, true)).toBe(0);
    expect(ioreqServerSetState(m, 3, 1, s3, true)).toBe(0);
    expect(ioreqServerSetState(m, 1, 2, s1, true)).toBe(0);
    expect([m.ioreq.state(1, s0), m.ioreq.state(1, s3), m.ioreq.state(2, s1)]).toEqual([SRV_STATE.ENABLED, SRV_STATE.ENABLED, SRV_STATE.ENABLED]);
    expect(ioreqServerSetState(m, 0, 1, s0, false)).toBe(0);
    expect(m.ioreq.state(1, s0)).toBe(SRV_STATE.INLINE);
    expect([1, 2].map((d) => m.dom.at(d, DOM.REFCNT))).toEqual(refs);
  });
});

describe('XEN_DMOP_set_ioreq_server_state: an index that names no server of the target', () => {
  it('is -ENOENT even where the words it would read (past either end of the target\'s servers, or between two) belong to a server of the caller', () => {
    const m = rig();
    // d3's servers: all eight of d0's (server −1 of d1 would read d0's 8th), d2's first (server 8 of d1 would read it),
    // and d1's first, whose third range is (700, 3) — the two words server 0.5 of d1 would read as its state and owner.
    for (let k = 0; k < MAX_IOREQ_SERVERS_PER_DOMAIN; k++) expect(ioreqServerCreate(m, 3, 0, [], 'none')).toBe(k);
    expect(ioreqServerCreate(m, 3, 2, [], 'none')).toBe(0);
    expect(ioreqServerCreate(m, 3, 1, [{ start: 600, count: 1 }, { start: 650, count: 1 }, { start: 700, count: 3 }], 'none')).toBe(0);
    const before = Array.from(m.ioreq.w);
    for (const s of [-1, MAX_IOREQ_SERVERS_PER_DOMAIN, 0.5]) expect(ioreqServerSetState(m, 3, 1, s, true), `server ${s}`).toBe(-ENOENT);
    expect(Array.from(m.ioreq.w)).toEqual(before);
  });
});

describe('what an access to a non-RAM gfn becomes, with no device model attached', () => {
  it('no server: the null handler; a server\'s range: an ioreq answered inline; outside its ranges: the null handler', () => {
    const m = rig();
    const fe = frontend(m);
    expect(emulateAccess(fe.mmu, MMIO, 0, 4, false, 0)).toEqual({ outcome: ACCESS.NULL_IO, value: -1 });
    const s = ioreqServerCreate(m, 0, 1, [{ start: MMIO, count: 2 }], 'fail');
    for (const write of [false, true]) expect(emulateAccess(fe.mmu, MMIO + 1, 0, 4, write, 5)).toEqual({ outcome: ACCESS.IOREQ, value: -1 });
    expect(emulateAccess(fe.mmu, MMIO + 2, 0, 4, false, 0)).toEqual({ outcome: ACCESS.NULL_IO, value: -1 });
    expect(m.ioreq.state(1, s)).toBe(SRV_STATE.INLINE);
    expect(m.vcpus.stat(fe.id.slot, STAT.IOREQS_SENT)).toBe(0);
  });

  it('a revoked gfn is a FAULT answered by the policy of the server of the backend whose mapping it was', () => {
    const want: Record<FaultPolicy, { outcome: number; value: number }> = {
      none: { outcome: ACCESS.IOREQ_FAULT, value: -1 },
      fail: { outcome: ACCESS.FAULT, value: -1 },
      remap: { outcome: ACCESS.IOREQ_FAULT, value: -1 },
      retry: { outcome: ACCESS.RETRY, value: 0 },
    };
    for (const policy of ['none', 'fail', 'remap', 'retry'] as const) {
      const m = rig();
      // A server claiming the gfn as MMIO too: a revoked gfn faults to its fault owner's server, not a claimer.
      ioreqServerCreate(m, 3, 1, [{ start: 100, count: 1 }], 'none');
      ioreqServerCreate(m, 0, 1, [], policy);
      revokeAt100(m);
      const fe = frontend(m);
      fe.mmu.seenEntry = P2M_REVOKED; // as the MMU's walk of gfn 100 leaves it
      expect(emulateAccess(fe.mmu, 100, 0, 4, false, 0), policy).toEqual(want[policy]);
      // Not revoked (the walk saw a hole): the claimer's MMIO.
      fe.mmu.seenEntry = 0;
      expect(emulateAccess(fe.mmu, 100, 0, 4, false, 0), policy).toEqual({ outcome: ACCESS.IOREQ, value: -1 });
    }
  });
});

describe('hvm_send_ioreq and wait_for_io: an enabled server answers over the transport', () => {
  /** A server of d0 for d1 claiming MMIO…MMIO+1, enabled; `revoked`: gfn 100 of d1 revoked (before its vCPU runs: the Revoke's shootdown would wait for it). */
  function enabled(o: { revoked?: boolean } = {}): { m: Machine; fe: VcpuContext; s: number } {
    const m = rig();
    const s = ioreqServerCreate(m, 0, 1, [{ start: MMIO, count: 2 }], 'none');
    expect(ioreqServerSetState(m, 0, 1, s, true)).toBe(0);
    if (o.revoked === true) revokeAt100(m);
    const fe = frontend(m);
    if (o.revoked === true) fe.mmu.seenEntry = P2M_REVOKED; // as the MMU's walk of gfn 100 leaves it
    return { m, fe, s };
  }

  it('a read: the slot holds the request, the vCPU is BLOCKED while it waits and its owner was kicked; the answer\'s data comes back unsigned', () => {
    const { m, fe, s } = enabled();
    const sl = m.ios.slots;
    const i = m.ios.idx(fe.id.slot);
    // Garbage a correct publish overwrites.
    sl[i + IOS.DATA] = 77;
    sl[i + IOS.FAULT] = 9;
    sl[i + IOS.SERVER] = 5;
    const checks = m.log.counts().ioreq_forward.checks;
    const events = m.ios.events[0]!;
    let seen: number[] = [];
    let during: number[] = [];
    const dm = deviceModel(m, fe.id.slot, [
      (w, k) => {
        seen = Array.from(w.subarray(k, k + IOS.WORDS));
        during = [m.vcpus.at(fe.id.slot, VC.STATE), m.ios.pending[fe.id.slot >> 5]! & (1 << (fe.id.slot & 31)), m.ios.events[0]! - events, Atomics.load(m.control.w, CTL.DISPATCH)];
        answer(-2)(w, k);
      },
    ]);
    expect(emulateAccess(fe.mmu, MMIO + 1, 8, 4, false, 5)).toEqual({ outcome: ACCESS.IOREQ, value: 0xfffffffe });
    expect(dm.waits).toBe(1);
    const want = new Array<number>(IOS.WORDS).fill(0);
    Object.assign(want, { [IOS.STATE]: IOREQ_STATE.READY, [IOS.TYPE]: IOREQ_TYPE.COPY, [IOS.DIR]: IOREQ_DIR.READ, [IOS.SIZE]: 4, [IOS.GFN]: MMIO + 1, [IOS.OFFSET]: 8, [IOS.DATA]: 0, [IOS.SEQ]: 1, [IOS.TARGET]: 1, [IOS.SERVER]: s, [IOS.FAULT]: 0, [IOS.DOMID]: 1, [IOS.VCPU]: 1, [IOS.WAITING]: 1 });
    expect(seen).toEqual(want);
    expect(during).toEqual([VS.BLOCKED, 1 << (fe.id.slot & 31), 1, 0]);
    // Step 4: NONE, no longer waiting, back in the guest; counted once each.
    expect([sl[i + IOS.STATE], sl[i + IOS.WAITING], m.vcpus.at(fe.id.slot, VC.STATE)]).toEqual([IOREQ_STATE.NONE, 0, VS.GUEST]);
    expect([STAT.IOREQS_SENT, STAT.IOREQS_DONE, STAT.IOREQS_ABANDONED].map((k) => m.vcpus.stat(fe.id.slot, k))).toEqual([1, 1, 0]);
    expect(sum(m.vcpus.rtt)).toBe(1);
    expect(sum(m.vcpus.faultRtt)).toBe(0);
    // The publish and the one state it saw move.
    expect(m.log.counts().ioreq_forward.checks - checks).toBe(2);
    expect(m.dom.state(1)).toBe(DS.RUNNING);
    expect(m.log.records()).toEqual([]);
  });

  it('a write: its data, size and direction in the slot, a fresh seq; an answer through INPROCESS is two moves forward', () => {
    const { m, fe } = enabled();
    let seen: number[] = [];
    const dm = deviceModel(m, fe.id.slot, [
      store(IOREQ_STATE.INPROCESS),
      (w, k) => {
        seen = [w[k + IOS.DIR]!, w[k + IOS.SIZE]!, w[k + IOS.DATA]!, w[k + IOS.SEQ]!, w[k + IOS.OFFSET]!];
        answer(0)(w, k);
      },
    ]);
    fe.mmu.ioreqSeq = 41;
    expect(emulateAccess(fe.mmu, MMIO, 6, 2, true, 0x1234)).toEqual({ outcome: ACCESS.IOREQ, value: 0 });
    expect(dm.waits).toBe(2);
    expect(seen).toEqual([IOREQ_DIR.WRITE, 2, 0x1234, 42, 6]);
    expect(m.dom.state(1)).toBe(DS.RUNNING);
    expect(m.log.records()).toEqual([]);
  });

  it('under the redis transport the host\'s dispatcher is kicked, not the owner\'s pending bit', () => {
    const { m, fe } = enabled();
    Atomics.store(m.control.w, CTL.TRANSPORT, 1);
    let during: number[] = [];
    deviceModel(m, fe.id.slot, [
      (w, k) => {
        during = [Atomics.load(m.control.w, CTL.DISPATCH), sum(m.ios.pending.subarray(0, PENDING_WORDS)), m.ios.events[0]!];
        answer(3)(w, k);
      },
    ]);
    expect(emulateAccess(fe.mmu, MMIO, 0, 4, false, 0)).toEqual({ outcome: ACCESS.IOREQ, value: 3 });
    expect(during).toEqual([1, 0, 0]);
  });

  it('a FAULT ioreq of a revoked gfn: its type in the slot, the answer says what the access gets; a FAULT answer out of range crashes the guest', () => {
    const cases: Array<[number, { outcome: number; value: number }]> = [
      [FAULT_ANSWER.NONE, { outcome: ACCESS.IOREQ_FAULT, value: -1 }],
      [FAULT_ANSWER.FAIL, { outcome: ACCESS.FAULT, value: -1 }],
      [FAULT_ANSWER.RETRY, { outcome: ACCESS.RETRY, value: 0 }],
      [FAULT_ANSWER.NONE - 1, { outcome: ACCESS.NULL_IO, value: -1 }],
      [FAULT_ANSWER.RETRY + 1, { outcome: ACCESS.NULL_IO, value: -1 }],
    ];
    for (const [fault, want] of cases) {
      const { m, fe, s } = enabled({ revoked: true });
      let type = -1;
      deviceModel(m, fe.id.slot, [
        (w, k) => {
          type = w[k + IOS.TYPE]!;
          answer(0, fault)(w, k);
        },
      ]);
      expect(emulateAccess(fe.mmu, 100, 0, 4, false, 0), `fault ${fault}`).toEqual(want);
      expect(type).toBe(IOREQ_TYPE.FAULT);
      const broke = want.outcome === ACCESS.NULL_IO;
      expect(m.dom.state(1), `fault ${fault}`).toBe(broke ? DS.CRASHED : DS.RUNNING);
      expect([STAT.IOREQS_DONE, STAT.IOREQS_ABANDONED].map((k) => m.vcpus.stat(fe.id.slot, k))).toEqual(broke ? [0, 1] : [1, 0]);
      expect(sum(m.vcpus.faultRtt)).toBe(broke ? 0 : 1);
      expect(m.ios.slots[m.ios.idx(fe.id.slot) + IOS.STATE]).toBe(IOREQ_STATE.NONE);
      if (broke) expect(m.log.events()).toEqual([`ioreq protocol error, crashing d1: d1: FAULT ioreq 1 answered with ${fault}`]);
      expect(s).toBe(0);
    }
    // A COPY ioreq's FAULT word is not looked at.
    const { m, fe } = enabled();
    deviceModel(m, fe.id.slot, [answer(9, 7)]);
    expect(emulateAccess(fe.mmu, MMIO, 0, 4, false, 0)).toEqual({ outcome: ACCESS.IOREQ, value: 9 });
    expect(m.dom.state(1)).toBe(DS.RUNNING);
  });

  it('a state that does not move forward crashes the guest, never the hypervisor: back to READY, NONE, past IORESP_READY, another seq', () => {
    const cases: Array<[string, Array<(s: Int32Array, i: number) => void>, string]> = [
      ['backwards', [store(IOREQ_STATE.INPROCESS), store(IOREQ_STATE.READY)], '2 → 1'],
      ['NONE', [store(IOREQ_STATE.NONE)], '1 → 0'],
      ['past IORESP_READY', [store(IOREQ_STATE.IORESP_READY + 1)], '1 → 4'],
      ['another seq', [(w, k) => (Atomics.store(w, k + IOS.SEQ, 99), store(IOREQ_STATE.INPROCESS)(w, k))], '1 → 2'],
    ];
    for (const [name, steps, moved] of cases) {
      const { m, fe } = enabled();
      const dm = deviceModel(m, fe.id.slot, steps);
      expect(emulateAccess(fe.mmu, MMIO, 0, 4, false, 0), name).toEqual({ outcome: ACCESS.NULL_IO, value: -1 });
      expect(dm.waits, name).toBe(steps.length);
      expect(m.dom.state(1), name).toBe(DS.CRASHED);
      expect(m.log.events(), name).toEqual([`ioreq protocol error, crashing d1: d1 vCPU slot ${fe.id.slot}: ioreq 1 state went ${moved}`]);
      expect(m.ios.slots[m.ios.idx(fe.id.slot) + IOS.STATE], name).toBe(IOREQ_STATE.NONE);
      expect([STAT.IOREQS_SENT, STAT.IOREQS_DONE, STAT.IOREQS_ABANDONED].map((k) => m.vcpus.stat(fe.id.slot, k)), name).toEqual([1, 0, 1]);
      expect(m.vcpus.at(fe.id.slot, VC.STATE), name).toBe(VS.GUEST);
      expect(Atomics.load(m.control.w, CTL.STOP), name).toBe(0);
    }
  });

  it('the wait is given up when the run stops (counted as abandoned at stop) or the domain dies (not), before it ever sleeps; a death found at the 16th wait\'s check', () => {
    {
      const { m, fe } = enabled();
      Atomics.store(m.control.w, CTL.STOP, 1);
      const dm = deviceModel(m, fe.id.slot, []);
      expect(emulateAccess(fe.mmu, MMIO, 0, 4, true, 1)).toEqual({ outcome: ACCESS.NULL_IO, value: -1 });
      expect(dm.waits).toBe(0);
      expect(Atomics.load(m.control.w, CTL.IOREQS_ABANDONED_AT_STOP)).toBe(1);
      expect([STAT.IOREQS_SENT, STAT.IOREQS_DONE, STAT.IOREQS_ABANDONED].map((k) => m.vcpus.stat(fe.id.slot, k))).toEqual([1, 0, 1]);
      expect(m.ios.slots[m.ios.idx(fe.id.slot) + IOS.STATE]).toBe(IOREQ_STATE.NONE);
    }
    {
      const { m, fe } = enabled();
      expect(domainCrash(m, 1, 'test')).toBe(true);
      const dm = deviceModel(m, fe.id.slot, []);
      expect(emulateAccess(fe.mmu, MMIO, 0, 4, false, 0)).toEqual({ outcome: ACCESS.NULL_IO, value: -1 });
      expect(dm.waits).toBe(0);
      expect(Atomics.load(m.control.w, CTL.IOREQS_ABANDONED_AT_STOP)).toBe(0);
      expect(m.vcpus.stat(fe.id.slot, STAT.IOREQS_ABANDONED)).toBe(1);
    }
    {
      // Crashed while it waits: the check runs at every 16th wait (the first, the 17th…), not at each.
      const { m, fe } = enabled();
      const crash = (): void => void domainCrash(m, 1, 'test');
      const dm = deviceModel(m, fe.id.slot, Array.from({ length: 17 }, (_, k) => (k === 0 ? crash : () => undefined)));
      expect(emulateAccess(fe.mmu, MMIO, 0, 4, false, 0)).toEqual({ outcome: ACCESS.NULL_IO, value: -1 });
      expect(dm.waits).toBe(16);
      expect(Atomics.load(m.control.w, CTL.IOREQS_ABANDONED_AT_STOP)).toBe(0);
    }
  });
});

describe('how long the vCPU spins before it sleeps (the adaptive spin, as KVM\'s halt polling)', () => {
  /**
   * A clock that moves 1 µs each time it is read: a spin of 10 µs is then 10
   * reads (one per 16 polls), one that does not spin is one; the ioreq's
   * start and its round trip are one read each. `during(n)` runs at the
   * n-th read of an ioreq (1: its start): the device model storing while
   * the vCPU spins. The device model answers at the first wait otherwise.
   */
  function clocked(o: { parked?: boolean; pcpus?: boolean } = {}): {
    m: Machine;
    fe: VcpuContext;
    ioreq: (during?: (n: number, s: Int32Array, i: number) => void, steps?: Array<(s: Int32Array, i: number) => void>) => number;
  } {
    const m = rig();
    const s = ioreqServerCreate(m, 0, 1, [{ start: MMIO, count: 1 }], 'none');
    expect(ioreqServerSetState(m, 0, 1, s, true)).toBe(0);
    if (o.pcpus === true) pcpuInit(m, 2);
    const fe = frontend(m);
    if (o.parked === true) Atomics.store(m.ios.parked, 0, 1);
    // Far from 0: a round trip of 2 µs and one of 2 000 002 fall in different buckets.
    let now = 1_000_000;
    let reads = 0;
    let during: ((n: number, s: Int32Array, i: number) => void) | undefined;
    const sl = m.ios.slots;
    const i = m.ios.idx(fe.id.slot);
    setSched({
      ...realSched,
      now_us: () => {
        reads++;
        during?.(reads, sl, i);
        return ++now;
      },
    });
    return {
      m,
      fe,
      ioreq: (f, steps = [answer(1)]) => {
        reads = 0;
        during = f;
        deviceModel(m, fe.id.slot, steps);
        expect(emulateAccess(fe.mmu, MMIO, 0, 4, false, 0)).toEqual({ outcome: ACCESS.IOREQ, value: 1 });
        disarmHooks();
        return reads;
      },
    };
  }
  const SPUN = 12;
  const DIRECT = 3;

  it('a spin that runs out with the ioreq unclaimed stops the spinning; every 32nd ioreq spins once more (a probe)', () => {
    const { m, fe, ioreq } = clocked();
    const got = Array.from({ length: 66 }, () => ioreq());
    expect(got).toEqual([SPUN, ...new Array<number>(31).fill(DIRECT), SPUN, ...new Array<number>(31).fill(DIRECT), SPUN, DIRECT]);
    // Each round trip on the clock: 2 µs (start, poll, end) or 11 (start, 10 spin reads, end).
    const hist = m.vcpus.rtt.subarray(fe.id.slot * RTT_BUCKETS, (fe.id.slot + 1) * RTT_BUCKETS);
    expect([hist[rttBucket(2)], hist[rttBucket(11)]]).toEqual([63, 3]);
  });

  it('a spin that pays (the answer came during it) spins again next time; one that ran out with the ioreq claimed changes nothing', () => {
    const { ioreq } = clocked();
    // Claimed at the 2nd read, answered at the wait: the window stays.
    expect(ioreq((n, s, i) => n === 2 && Atomics.store(s, i + IOS.STATE, IOREQ_STATE.INPROCESS))).toBe(SPUN);
    // Claimed at the first wait, answered at the second: no clock read between the two waits. The spin ran out unclaimed:
    // no spin until the probe, which pays.
    expect(ioreq(undefined, [store(IOREQ_STATE.INPROCESS), answer(1)])).toBe(SPUN);
    for (let k = 0; k < 31; k++) expect(ioreq()).toBe(DIRECT);
    const paid = ioreq((n, s, i) => {
      if (n !== 3) return;
      s[i + IOS.DATA] = 1;
      Atomics.store(s, i + IOS.STATE, IOREQ_STATE.IORESP_READY);
    });
    // The start, two spin reads (the answer seen after the second), the round trip.
    expect(paid).toBe(4);
    expect(ioreq()).toBe(SPUN);
  });

  it('a parked device model (woken by a futex) is never spun for, not even by a probe; that says nothing of the next, awake one', () => {
    const { m, ioreq } = clocked({ parked: true });
    expect(Array.from({ length: 40 }, () => ioreq())).toEqual(new Array<number>(40).fill(DIRECT));
    Atomics.store(m.ios.parked, 0, 0);
    expect(ioreq()).toBe(SPUN);
  });

  it('on a host with pCPUs the vCPU gives its pCPU up while it waits and takes it back; an answer already there when it first looks, with no spin, is no spin that paid', () => {
    const { m, fe, ioreq } = clocked({ pcpus: true });
    const pcpu = (): number[] => [m.vcpus.at(fe.id.slot, VC.PCPU), Atomics.load(m.control.w, CTL.PCPU_IDLE)];
    expect(pcpu()).toEqual([1, 1]);
    let during: number[] = [];
    const atWait = (w: Int32Array, k: number): void => {
      during = pcpu();
      answer(1)(w, k);
    };
    const spun = ioreq(undefined, [atWait]);
    expect(during).toEqual([0, 2]);
    expect(pcpu()).toEqual([1, 1]);
    // Not spinning now. Answered at the first clock read after the publish (giving the pCPU up): seen at the first poll.
    const early = (_n: number, s: Int32Array, i: number): void => {
      if (Atomics.load(s, i + IOS.STATE) !== IOREQ_STATE.READY) return;
      s[i + IOS.DATA] = 1;
      Atomics.store(s, i + IOS.STATE, IOREQ_STATE.IORESP_READY);
    };
    ioreq(early);
    const direct = ioreq();
    expect(direct).toBeLessThan(spun);
    expect(ioreq()).toBe(direct);
    // In a hypercall (not GUEST): the pCPU is kept.
    m.vcpus.set(fe.id.slot, VC.STATE, VS.HYPERVISOR);
    ioreq(undefined, [atWait]);
    expect(during).toEqual([1, 1]);
    expect(pcpu()).toEqual([1, 1]);
  });

  it('a vCPU not in guest mode (an access emulated inside a hypercall) is not made BLOCKED, and stays as it was', () => {
    const m = rig();
    const s = ioreqServerCreate(m, 0, 1, [{ start: MMIO, count: 1 }], 'none');
    expect(ioreqServerSetState(m, 0, 1, s, true)).toBe(0);
    const fe = frontend(m);
    m.vcpus.set(fe.id.slot, VC.STATE, VS.HYPERVISOR);
    let during = -1;
    deviceModel(m, fe.id.slot, [
      (w, k) => {
        during = m.vcpus.at(fe.id.slot, VC.STATE);
        answer(2)(w, k);
      },
    ]);
    expect(emulateAccess(fe.mmu, MMIO, 0, 4, false, 0)).toEqual({ outcome: ACCESS.IOREQ, value: 2 });
    expect([during, m.vcpus.at(fe.id.slot, VC.STATE)]).toEqual([VS.HYPERVISOR, VS.HYPERVISOR]);
  });
});

describe('ioreq_send_buffered', () => {
  function posted(): { m: Machine; fe: VcpuContext; s: number; b: number } {
    const m = rig();
    const s = ioreqServerCreate(m, 0, 1, [{ start: MMIO, count: 1, posted: true }], 'none', { bufioreq: true });
    expect(ioreqServerSetState(m, 0, 1, s, true)).toBe(0);
    return { m, fe: frontend(m), s, b: m.ioreq.bufIdx(1, s) };
  }

  it('one entry, complete before the write pointer moves past it; the owner\'s bufioreq event set; one place left is room', () => {
    const { m, fe, s, b } = posted();
    const buf = m.ioreq.buf;
    Atomics.store(buf, b + BUF.WRITE, BUF_SLOTS - 1);
    const events = m.ios.events[0]!;
    expect(emulateAccess(fe.mmu, MMIO, 12, 2, true, 0xffffffff)).toEqual({ outcome: ACCESS.IOREQ, value: 0 });
    const e = m.ioreq.bufEntry(b, BUF_SLOTS - 1);
    expect([buf[e + BUF.GFN], buf[e + BUF.OFFSET], buf[e + BUF.META], buf[e + BUF.DATA]]).toEqual([MMIO, 12, 2 | (IOREQ_TYPE.COPY << 4) | (1 << 8), -1]);
    expect(Atomics.load(buf, b + BUF.WRITE)).toBe(BUF_SLOTS);
    expect([m.vcpus.stat(fe.id.slot, STAT.BUFIOREQS), m.vcpus.stat(fe.id.slot, STAT.BUFIOREQ_FULL), m.vcpus.stat(fe.id.slot, STAT.IOREQS_SENT)]).toEqual([1, 0, 0]);
    expect([m.ios.bufPending[0], m.ios.events[0]! - events, Atomics.load(m.control.w, CTL.DISPATCH)]).toEqual([1, 1, 0]);
    expect(m.ioreq.state(1, s)).toBe(SRV_STATE.ENABLED);
    // Now full: the synchronous way (stopped here, so given up at once); the lock was given back both times.
    Atomics.store(m.control.w, CTL.STOP, 1);
    expect(emulateAccess(fe.mmu, MMIO, 0, 4, true, 1).outcome).toBe(ACCESS.NULL_IO);
    expect(m.vcpus.stat(fe.id.slot, STAT.BUFIOREQ_FULL)).toBe(1);
    Atomics.store(m.control.w, CTL.STOP, 0);
    Atomics.store(buf, b + BUF.READ, 1);
    expect(emulateAccess(fe.mmu, MMIO, 0, 4, true, 1)).toEqual({ outcome: ACCESS.IOREQ, value: 0 });
    expect(Atomics.load(buf, b + BUF.WRITE)).toBe(BUF_SLOTS + 1);
  });

  it('under the redis transport the host\'s dispatcher is kicked instead', () => {
    const { m, fe } = posted();
    Atomics.store(m.control.w, CTL.TRANSPORT, 1);
    const events = m.ios.events[0]!;
    expect(emulateAccess(fe.mmu, MMIO, 0, 4, true, 1)).toEqual({ outcome: ACCESS.IOREQ, value: 0 });
    expect([m.ios.bufPending[0], m.ios.events[0]! - events, Atomics.load(m.control.w, CTL.DISPATCH)]).toEqual([0, 0, 1]);
  });

  it('a read of a posted range is not posted', () => {
    const { m, fe } = posted();
    deviceModel(m, fe.id.slot, [answer(4)]);
    expect(emulateAccess(fe.mmu, MMIO, 0, 4, false, 0)).toEqual({ outcome: ACCESS.IOREQ, value: 4 });
    expect([m.vcpus.stat(fe.id.slot, STAT.BUFIOREQS), m.vcpus.stat(fe.id.slot, STAT.IOREQS_SENT)]).toEqual([0, 1]);
  });
});

describe('the timeline of an ioreq (layout/trace.ts)', () => {
  it('IO_SEND, FAULT, IO_POST and IO_DONE with how each ended, on the vCPU\'s ring', () => {
    const m = rig({ trace: true });
    const fe = frontend(m);
    setVcpuTracer(m.trace, fe.id.slot);
    const s = ioreqServerCreate(m, 0, 1, [{ start: MMIO, count: 1, posted: true }], 'none', { bufioreq: true });
    expect(ioreqServerSetState(m, 0, 1, s, true)).toBe(0);
    deviceModel(m, fe.id.slot, [answer(1)]);
    emulateAccess(fe.mmu, MMIO, 0, 4, false, 0); // answered, seq 1
    emulateAccess(fe.mmu, MMIO, 0, 4, true, 5); // posted at position 0
    deviceModel(m, fe.id.slot, [store(IOREQ_STATE.NONE)]);
    emulateAccess(fe.mmu, MMIO, 0, 4, false, 0); // a protocol error, seq 2
    // d1 is crashed now; a revoked gfn on a fresh machine: a FAULT given up at stop.
    const m2 = rig({ trace: true });
    const s2 = ioreqServerCreate(m2, 0, 1, [], 'none');
    expect(ioreqServerSetState(m2, 0, 1, s2, true)).toBe(0);
    revokeAt100(m2);
    const fe2 = frontend(m2);
    setVcpuTracer(m2.trace, fe2.id.slot);
    fe2.mmu.seenEntry = P2M_REVOKED;
    Atomics.store(m2.control.w, CTL.STOP, 1);
    emulateAccess(fe2.mmu, 100, 0, 4, true, 0);
    const evs = (mm: Machine, slot: number): string[] => {
      const c = new TraceCollector(mm, { domains: [{ domid: 1, name: 'fe' }], threads: [], stats: () => ({ hypercalls: 0 }) });
      const f = decodeEvents(c.finish());
      const out: string[] = [];
      for (let o = 0; o < f.length; o += KEPT_WORDS) {
        const w = f[o + 1 + EV.KIND]!;
        if (f[o] === slot && [TK.IO_SEND, TK.IO_DONE, TK.IO_POST, TK.FAULT].includes(kindOf(w) as never)) out.push(`${kindOf(w)}:${extraOf(w)}:${f[o + 1 + EV.A]}:${f[o + 1 + EV.B]}`);
      }
      return out;
    };
    const R = IOREQ_DIR.READ << 4;
    const W = IOREQ_DIR.WRITE << 4;
    expect(evs(m, fe.id.slot)).toEqual([
      `${TK.IO_SEND}:${IOREQ_TYPE.COPY | R}:1:${MMIO}`,
      `${TK.IO_DONE}:${IO_END.ANSWERED}:1:0`,
      `${TK.IO_POST}:${s}:0:${MMIO}`,
      `${TK.IO_SEND}:${IOREQ_TYPE.COPY | R}:2:${MMIO}`,
      `${TK.IO_DONE}:${IO_END.PROTOCOL_ERROR}:2:0`,
    ]);
    expect(evs(m2, fe2.id.slot)).toEqual([`${TK.FAULT}:${s2}:100:0`, `${TK.IO_SEND}:${IOREQ_TYPE.FAULT | W}:1:100`, `${TK.IO_DONE}:${IO_END.ABANDONED}:1:0`]);
  });
});
