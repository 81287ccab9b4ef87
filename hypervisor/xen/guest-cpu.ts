/**
 * The GuestCpu a workload runs on: its MMU for memory accesses, and the
 * hypercall gate. A hypercall runs inline on this (the vCPU's) thread in
 * "hypervisor mode", as on Xen where it executes on the pCPU of the vCPU
 * that made it: GUEST → HYPERVISOR, the operation under the shared locks,
 * HYPERVISOR → GUEST, then the entry-to-guest TLB check. Xen's side:
 * hvm_hypercall (xen/arch/x86/hvm/hypercall.c) dispatching to
 * do_memory_op, do_grant_table_op, do_domctl and dm_op; the check on the
 * way back is the INVEPT Xen does at the next VM entry.
 */
import { DOM, DS } from '../layout/domains.js';
import { STAT, VC } from '../layout/vcpus.js';
import type { Machine } from './machine.js';
import { Mmu } from './mmu.js';
import { VS, vcpuGateEnter, vcpuGateExit, vcpuTransition } from './vcpu.js';
import { gnttabCopy, gnttabGrowFor, grantEntriesLimit, guestEndAccess, guestGrantAccess, guestStoreBegin, guestStoreEnd, mapGrantRef, nrGrantEntries, unmapGrantRef } from './grant-table.js';
import { bufferCopy, decreaseReservation, foreignMap, memoryStatReservation, populatePhysmap, removeFromPhysmap } from './memory.js';
import { dmSetMemType } from './dm.js';
import { dmaAccess } from './iommu.js';
import { domctlDestroy, domctlIomemPermission, domctlMaxMem } from './domctl.js';
import { designOf, type DmOpResult } from './design.js';
import { ioreqServerCreate, ioreqServerSetState, openServerEnd } from './ioreq.js';
import type { IoreqServerEnd } from '../public/ioreq.js';
import { domainCrash } from './domain.js';
import type { AccessOutcome, AccessWidth, DmaResult, GrantCopy, GrantTable, GuestCpu, GuestMemory, Hypercalls, MapGrantRef, MapGrantResult } from '../public/guest.js';
import { type DomId, type Gfn, type GrantHandle, type GrantRef, type VcpuId, domid, P2M, vcpuid } from '../public/types.js';
import { ESRCH, GNTST_okay } from '../public/errno.js';
import { COST, sched } from './platform.js';
import { exitHook } from './hooks.js';
import { CTL } from '../layout/control.js';
import { HC } from '../layout/trace.js';
import { tracer, type TraceWriter } from './trace.js';
import { GIVE } from './schedule.js';
import { p2mGet, revocationBegin, revocationEnd } from './p2m.js';
import { entryType, P2M_HOLE } from '../layout/p2m.js';

/** Run one revocation and count what it cost (xen/p2m.ts revocationEnd: the comparison's costs). */
function revocation<T>(m: Machine, fn: () => T): T {
  const before = revocationBegin();
  try {
    return fn();
  } finally {
    revocationEnd(m, before);
  }
}

/** Whether d's gfn holds a foreign map just now (a lock-free look; removeFromPhysmap decides under the lock). A gfn past d's p2m reads as a hole. */
function isForeignMap(m: Machine, d: number, gfn: number): boolean {
  const e = p2mGet(m, d, gfn);
  return e !== P2M_HOLE && entryType(e) === P2M.map_foreign;
}

const negative = (r: number): boolean => r < 0;

/** xorshift128+ seeded per vCPU: guests' randomness is replayable. */
export class Rng {
  private s0: number;
  private s1: number;
  constructor(seed: number) {
    this.s0 = (seed ^ 0x9e3779b9) | 0 || 1;
    this.s1 = (Math.imul(seed, 0x85ebca6b) ^ 0xc2b2ae35) | 0 || 2;
    for (let i = 0; i < 8; i++) this.next();
  }
  next(): number {
    let x = this.s0;
    const y = this.s1;
    this.s0 = y;
    x ^= x << 23;
    x ^= x >>> 17;
    x ^= y ^ (y >>> 26);
    this.s1 = x;
    return ((this.s0 + this.s1) >>> 0) / 4294967296;
  }
}

export interface VcpuIdentity {
  domid: number;
  vcpu: number;
  slot: number;
  memory_pages: number;
  seed: number;
}

export class VcpuContext implements GuestCpu {
  /** Assigned in the constructor only (`declare`: why at Mmu.ram). */
  declare readonly mmu: Mmu;
  /** GuestCpu.mem: the MMU, seen through the ABI's GuestMemory. */
  readonly mem: GuestMemory;
  readonly hc: Hypercalls;
  readonly grants: GrantTable;
  readonly domid: DomId;
  readonly vcpu: VcpuId;
  readonly nr_vcpus: number;
  readonly memory_pages: number;
  readonly page_size_bytes: number;
  readonly store: Int32Array;
  private readonly rng: Rng;
  private readonly statBase: number;
  /** This vCPU's stats (m.vcpus.stats) and state word (m.vcpus.w at VC.STATE), looked up once for the gate. */
  private readonly stats: Float64Array;
  private readonly vcpuW: Int32Array;
  private readonly stateIdx: number;
  private readonly scratch: Uint8Array;
  private readonly sleepCell = new Int32Array(new SharedArrayBuffer(4));

  constructor(
    readonly m: Machine,
    readonly id: VcpuIdentity,
  ) {
    this.domid = domid(id.domid);
    this.vcpu = vcpuid(id.vcpu);
    this.nr_vcpus = m.dom.at(id.domid, DOM.NR_VCPUS);
    this.memory_pages = id.memory_pages;
    this.page_size_bytes = m.config.page_size_bytes;
    this.mmu = new Mmu(m, id.domid, id.slot);
    this.mem = this.mmu;
    this.rng = new Rng(id.seed);
    this.statBase = id.slot * STAT.WORDS;
    this.stats = m.vcpus.stats;
    this.vcpuW = m.vcpus.w;
    this.stateIdx = m.vcpus.idx(id.slot, VC.STATE);
    this.scratch = new Uint8Array(m.config.page_size_bytes * 4);
    this.store = new Int32Array(m.sabs.store);
    this.hc = this.makeHypercalls();
    this.grants = this.makeGrantTable();
  }

  /** OFFLINE → GUEST, with the entry-to-guest TLB check. */
  start(): void {
    this.mmu.takePcpu();
    vcpuTransition(this.m, this.id.slot, VS.OFFLINE, VS.GUEST);
    this.mmu.boundary();
  }

  /**
   * → OFFLINE; publishes the access count. The TLB is kept, as a real
   * vCPU's is across a deschedule: an offline vCPU acknowledges shootdowns
   * implicitly and `start` takes any flush that happened meanwhile.
   */
  stop(from: typeof VS.GUEST | typeof VS.HYPERVISOR = VS.GUEST): void {
    this.flushStats();
    vcpuTransition(this.m, this.id.slot, from, VS.OFFLINE);
    this.mmu.givePcpu(GIVE.OFFLINE);
  }

  /**
   * Between two steps of guest code (the vCPU loop's, real or simulated):
   * the timer tick — a guest that spins without touching memory still
   * passes an instruction boundary here — then chaos hang-vcpu: the host's
   * scheduler leaves this vCPU off every pCPU for a while (descheduled: no
   * TLB held, nothing for Revoke to wait on). A plain atomic load every
   * step; the exchange only when a hang is set. `hangIdx` is
   * m.vcpus.idx(slot, VC.HANG_MS).
   */
  endOfStep(hangIdx: number): void {
    this.mmu.tick();
    if (Atomics.load(this.m.vcpus.w, hangIdx) !== 0) {
      const hang = Atomics.exchange(this.m.vcpus.w, hangIdx, 0);
      if (hang > 0) this.sleep(hang);
    }
  }

  /**
   * The deterministic simulator takes the (one) CPU away between steps:
   * GUEST → PAUSED, which acknowledges shootdowns implicitly; the TLB is
   * kept, as a descheduled vCPU's is, and `resume` takes the flushes that
   * came meanwhile before the next access.
   */
  pause(): void {
    vcpuTransition(this.m, this.id.slot, VS.GUEST, VS.PAUSED);
  }
  resume(): void {
    vcpuTransition(this.m, this.id.slot, VS.PAUSED, VS.GUEST);
    this.mmu.boundary();
  }

  flushStats(): void {
    this.m.vcpus.stats[this.statBase + STAT.ACCESSES] = this.mmu.accesses;
  }

  stat(s: number, n = 1): void {
    this.m.vcpus.stats[this.statBase + s]! += n;
  }

  get stopping(): boolean {
    return Atomics.load(this.m.control.w, CTL.STOP) !== 0 || this.m.dom.state(this.id.domid) !== DS.RUNNING;
  }

  get last_access(): AccessOutcome {
    return this.mmu.last;
  }

  read32(gfn: Gfn, offset: number): number {
    return this.mmu.read32(gfn, offset);
  }
  write32(gfn: Gfn, offset: number, value: number): void {
    this.mmu.write32(gfn, offset, value);
  }
  readWords(gfn: Gfn, offset: number, into: Uint32Array): void {
    this.mmu.readWords(gfn, offset, into);
  }
  writeWords(gfn: Gfn, offset: number, from: Uint32Array): void {
    this.mmu.writeWords(gfn, offset, from);
  }
  read(gfn: Gfn, offset: number, width: AccessWidth): bigint {
    return this.mmu.read(gfn, offset, width);
  }
  write(gfn: Gfn, offset: number, width: AccessWidth, value: bigint): void {
    this.mmu.write(gfn, offset, width, value);
  }
  random(): number {
    return this.rng.next();
  }
  yield(): void {
    // Blocked vCPUs hold no TLB entries the hypervisor must wait for.
    vcpuTransition(this.m, this.id.slot, VS.GUEST, VS.BLOCKED);
    this.mmu.givePcpu(GIVE.YIELD);
    sched().yield();
    this.mmu.takePcpu(false);
    vcpuTransition(this.m, this.id.slot, VS.BLOCKED, VS.GUEST);
    this.mmu.boundary();
  }

  sleep(ms: number): void {
    vcpuTransition(this.m, this.id.slot, VS.GUEST, VS.BLOCKED);
    this.mmu.givePcpu();
    sched().wait(this.sleepCell, 0, 0, ms); // nobody wakes it: sleeps the whole time
    this.mmu.takePcpu();
    vcpuTransition(this.m, this.id.slot, VS.BLOCKED, VS.GUEST);
    this.mmu.boundary();
  }

  now_us(): number {
    return sched().now_us();
  }

  work(_kind: 'gpu_command', n = 1): void {
    sched().charge(COST.GPU_COMMAND, n);
  }

  cmpxchg32(gfn: Gfn, offset: number, expected: number, value: number): number {
    return this.mmu.cmpxchg32(gfn, offset, expected, value);
  }

  // The device's DMA runs here, between two boundaries of the vCPU that programmed it (xen/iommu.ts: why).
  dma_read32(gfn: Gfn, offset: number): DmaResult {
    return dmaAccess(this.m, this.id.domid, gfn, offset, false, 0);
  }
  dma_write32(gfn: Gfn, offset: number, value: number): DmaResult {
    return dmaAccess(this.m, this.id.domid, gfn, offset, true, value);
  }

  async idle<T>(p: Promise<T>): Promise<T> {
    vcpuTransition(this.m, this.id.slot, VS.GUEST, VS.BLOCKED);
    this.mmu.givePcpu();
    try {
      return await p;
    } finally {
      this.mmu.takePcpu();
      vcpuTransition(this.m, this.id.slot, VS.BLOCKED, VS.GUEST);
      this.mmu.boundary();
    }
  }

  idleNow<T>(f: () => T): T {
    vcpuTransition(this.m, this.id.slot, VS.GUEST, VS.BLOCKED);
    this.mmu.givePcpu();
    try {
      return f();
    } finally {
      this.mmu.takePcpu();
      vcpuTransition(this.m, this.id.slot, VS.BLOCKED, VS.GUEST);
      this.mmu.boundary();
    }
  }

  ioreqServerEnd(): IoreqServerEnd {
    this.serverEnd ??= openServerEnd(this.m, this.id.domid);
    return this.serverEnd;
  }
  private serverEnd: IoreqServerEnd | undefined;

  /**
   * Run `fn` in hypervisor mode. `op` names it in the timeline (an HC id:
   * a small constant, so naming costs nothing when tracing is off).
   */
  hypercall<T>(fn: () => T, isError: (r: T) => boolean, op: number = HC.other): T {
    const tw = tracer;
    if (tw !== null) return this.hypercallTraced(fn, isError, op, tw);
    this.enter();
    let r: T;
    try {
      r = fn();
    } finally {
      this.leave();
    }
    if (isError(r)) this.stats[this.statBase + STAT.ERRORS]! += 1;
    return r;
  }

  /**
   * The gate for an operation `fn(m, d, a, b)` answering a negative errno
   * on failure, without a closure per call: `hypercall`'s closure and its
   * call were about a fifth of a null hypercall (80 → 64 ns, bench at load
   * 4). Traced, it takes `hypercall`'s way (one closure then).
   */
  private call<A, B>(op: number, fn: (m: Machine, d: number, a: A, b: B) => number, a: A, b: B): number {
    const tw = tracer;
    if (tw !== null) return this.hypercallTraced(() => fn(this.m, this.id.domid, a, b), negative, op, tw);
    this.enter();
    let r: number;
    try {
      r = fn(this.m, this.id.domid, a, b);
    } finally {
      this.leave();
    }
    if (r < 0) this.stats[this.statBase + STAT.ERRORS]! += 1;
    return r;
  }

  /**
   * The gate's entry (hvm_hypercall): counted, charged, GUEST → HYPERVISOR
   * (vcpu.ts's gate transition, on the state word looked up once).
   */
  private enter(): void {
    this.stats[this.statBase + STAT.HYPERCALLS]! += 1;
    sched().charge(COST.HYPERCALL, 1);
    vcpuGateEnter(this.vcpuW, this.stateIdx, this.id.slot);
  }

  /** The gate's exit: the exit hook, HYPERVISOR → GUEST, then the entry-to-guest boundary. */
  private leave(): void {
    if (exitHook !== null) exitHook();
    vcpuGateExit(this.vcpuW, this.stateIdx, this.id.slot);
    this.mmu.boundary();
  }

  /** The gate with its entry and exit on the timeline (one HC event, written at the exit). */
  private hypercallTraced<T>(fn: () => T, isError: (r: T) => boolean, op: number, tw: TraceWriter): T {
    this.stats[this.statBase + STAT.HYPERCALLS]! += 1;
    sched().charge(COST.HYPERCALL, 1);
    const t0_us = tw.now();
    vcpuTransition(this.m, this.id.slot, VS.GUEST, VS.HYPERVISOR);
    let r: T;
    let err = true; // a hypercall that throws (HypervisorBug) is an error on the timeline too
    try {
      r = fn();
      err = isError(r);
    } finally {
      if (exitHook !== null) exitHook();
      vcpuTransition(this.m, this.id.slot, VS.HYPERVISOR, VS.GUEST);
      this.mmu.boundary();
      tw.hypercall(t0_us, op, err);
    }
    if (err) this.stats[this.statBase + STAT.ERRORS]! += 1;
    return r;
  }

  private makeHypercalls(): Hypercalls {
    const m = this.m;
    const d = this.id.domid;
    const neg = (r: number): boolean => r < 0;
    const gnt = (r: number): boolean => r !== GNTST_okay;
    const dmErr = (r: DmOpResult): boolean => r.rc < 0;
    return {
      // do_memory_op: the extents done (nr_done); the call failed if fewer than asked.
      populate_physmap: (gfns: readonly Gfn[]) => {
        this.stat(STAT.POPULATES);
        return this.hypercall(() => populatePhysmap(m, d, gfns), (r) => r !== gfns.length, HC.populate_physmap);
      },
      decrease_reservation: (gfns: readonly Gfn[]) => {
        this.stat(STAT.BALLOONS);
        return this.hypercall(() => decreaseReservation(m, d, gfns), (r) => r !== gfns.length, HC.decrease_reservation);
      },
      current_reservation: (dom?: DomId) => this.call(HC.current_reservation, memoryStatReservation, dom ?? d, 'current'),
      maximum_reservation: (dom?: DomId) => this.call(HC.maximum_reservation, memoryStatReservation, dom ?? d, 'maximum'),
      gnttab_map_grant_ref: (op: MapGrantRef): MapGrantResult => {
        this.stat(STAT.GRANT_MAPS);
        return this.hypercall(() => mapGrantRef(m, d, op), (r) => r.status !== GNTST_okay, HC.gnttab_map_grant_ref);
      },
      gnttab_unmap_grant_ref: (h: GrantHandle) => {
        this.stat(STAT.GRANT_UNMAPS);
        return this.hypercall(() => revocation(m, () => unmapGrantRef(m, d, h)), gnt, HC.gnttab_unmap_grant_ref);
      },
      gnttab_copy: (op: GrantCopy) => {
        this.stat(STAT.GRANT_COPIES);
        return this.hypercall(() => gnttabCopy(m, d, op), gnt, HC.gnttab_copy);
      },
      gnttab_query_size: () =>
        this.hypercall(() => ({ nr_frames: m.dom.at(d, DOM.NR_GRANT_FRAMES), max_nr_frames: m.dom.at(d, DOM.MAX_GRANT_FRAMES), status: GNTST_okay }), () => false, HC.gnttab_query_size),
      foreign_map: (from: DomId, gfn: Gfn, at: Gfn) => {
        this.stat(STAT.FOREIGN_MAPS);
        return this.hypercall(() => foreignMap(m, d, from, gfn, at), neg, HC.foreign_map);
      },
      // A foreign map's removal is a revocation too (the pinned-userptr design's unpin); RAM's is not, and removes no entry counted as one.
      remove_from_physmap: (at: Gfn) => this.hypercall(() => (isForeignMap(m, d, at) ? revocation(m, () => removeFromPhysmap(m, d, at)) : removeFromPhysmap(m, d, at)), neg, HC.remove_from_physmap),
      buffer_copy: (dir, gfn, offset, bytes) => {
        this.stat(STAT.COPIES);
        return this.hypercall(() => bufferCopy(m, d, dir, gfn, offset, bytes, this.scratch), neg, HC.buffer_copy);
      },
      domctl_max_mem: (dom: DomId, pages: number) => this.call(HC.domctl_max_mem, domctlMaxMem, dom, pages),
      domctl_iomem_permission: (dom: DomId, first: number, nr: number, allow: boolean) =>
        this.hypercall(() => domctlIomemPermission(m, d, dom, first, nr, allow), neg, HC.domctl_iomem_permission),
      domctl_destroy: (dom: DomId) => this.hypercall(() => domctlDestroy(m, d, dom, this.id.slot), neg, HC.domctl_destroy),
      dm_map: (fe, source, count, at, type) => {
        this.stat(STAT.MAPS);
        const src = source.kind === 'ram' ? { kind: 'ram' as const, gfn: source.gfn as number } : { kind: 'bar' as const, mfn: source.mfn };
        // Any p2m type passes the gate: Map itself refuses all but mmio_direct and mmio_dm.
        return this.hypercall(() => designOf(m).map(m, d, { fe, source: src, count, at, type: P2M[type ?? 'mmio_direct'] }), dmErr, HC.dm_map);
      },
      dm_revoke: (target) => {
        this.stat(STAT.REVOKES);
        return this.hypercall(() => revocation(m, () => designOf(m).revoke(m, d, target)), neg, HC.dm_revoke);
      },
      dm_steal: (fe, gfn, count, into) => {
        this.stat(STAT.STEALS);
        return this.hypercall(() => designOf(m).steal(m, d, { fe, gfn, count, ...(into !== undefined ? { into } : {}) }), dmErr, HC.dm_steal);
      },
      dm_return: (fe, gfn, count, at) => {
        this.stat(STAT.RETURNS);
        return this.hypercall(() => designOf(m).return(m, d, { fe, gfn, count, ...(at !== undefined ? { at } : {}) }), dmErr, HC.dm_return);
      },
      dm_create_ioreq_server: (fe, ranges, policy, opts) => this.hypercall(() => ioreqServerCreate(m, d, fe, ranges, policy, opts), neg, HC.dm_create_ioreq_server),
      sched_crash: () => this.hypercall(() => (domainCrash(m, d, 'SCHEDOP_shutdown(crash)') ? 0 : -ESRCH), neg, HC.sched_crash),
      dm_set_ioreq_server_state: (fe, server, enabled) => this.hypercall(() => ioreqServerSetState(m, d, fe, server, enabled), neg, HC.dm_set_ioreq_server_state),
      dm_set_mem_type: (fe, gfn, count, type) => this.hypercall(() => dmSetMemType(m, d, fe, gfn, count, P2M[type]), neg, HC.dm_set_mem_type),
    };
  }

  private makeGrantTable(): GrantTable {
    const m = this.m;
    const d = this.id.domid;
    // The entries the guest has: those of the frames its table has grown to.
    const inRange = (ref: number): boolean => Number.isInteger(ref) && ref >= 0 && ref < nrGrantEntries(m, d);
    // Linux's gnttab_expand: a ref past the table grows it first (XENMEM_add_to_physmap, XENMAPSPACE_grant_table).
    const grow = (ref: number): boolean => inRange(ref) || this.hypercall(() => gnttabGrowFor(m, d, ref), (ok) => !ok);
    return {
      get nr_entries() {
        return grantEntriesLimit(m, d);
      },
      grant_access: (ref: GrantRef, to: DomId, gfn: Gfn, readonly: boolean) => {
        if (grow(ref)) guestGrantAccess(m, d, ref, to, gfn, readonly);
      },
      end_access: (ref: GrantRef) => inRange(ref) && guestEndAccess(m, d, ref),
      write_raw: (ref: GrantRef, w0: number, frame: number) => {
        if (!inRange(ref)) return;
        const i = m.grants.sharedIdx(d, ref);
        // A guest may write its entry non-atomically; this is that write.
        guestStoreBegin(m, d, ref);
        m.grants.shared[i + 1] = frame;
        m.grants.shared[i] = w0;
        guestStoreEnd(m, d, ref);
      },
      read_raw: (ref: GrantRef): [number, number] => {
        if (!inRange(ref)) return [0, 0];
        const i = m.grants.sharedIdx(d, ref);
        return [Atomics.load(m.grants.shared, i), Atomics.load(m.grants.shared, i + 1)];
      },
    };
  }
}
