/**
 * A vCPU's MMU: a private, direct-mapped software TLB filled from the
 * shared p2m, and the guest's memory accesses through it. This is the
 * hardware's part (the EPT/NPT walk and the TLB); Xen's begins where an
 * access misses the p2m: hvm_hap_nested_page_fault (xen/arch/x86/hvm/hvm.c)
 * sending it to emulation (handle_mmio → hvmemul_do_io, here the emulate
 * hook, xen/ioreq.ts emulateAccess).
 *
 * The flush protocol (p2m.ts) relies on two things here:
 *  - `boundary()` runs at least every TLB_BATCH_ACCESSES accesses and on
 *    every entry to guest mode; it loads the domain's flush epoch with
 *    Atomics.load (a plain read could be hoisted by the JIT, docs/semantics.md §9),
 *    drops the whole TLB if it moved, and acknowledges the new epoch.
 *  - A fill reads GEN, the entry, and GEN again (seqlock); it caches only a
 *    stable, even GEN, and remembers it. With checking on, every access
 *    through a cached entry re-loads GEN: a value two or more above the
 *    remembered one means a removal of that entry *completed* after the
 *    fill — a use after unmap/revoke, reported exactly, on whatever thread.
 *
 * The hit path (read32/write32) is one tag compare and the budget: a slot
 * has a tag for reads and one for writes, each the gfn when the cached
 * translation allows that access and `~slot` otherwise — a value no gfn
 * indexing that slot can equal, so an empty or flushed slot can never hit,
 * whatever number a guest passes as a gfn (an empty tag of -1 once let gfn
 * -1 hit slot 63's stale translation after a flush). Those two tags hold
 * RAM translations only, and only with checking off, so the hit path
 * indexes RAM directly and has no GEN check to branch over; a slot holding
 * a BAR frame, or any frame with checking on, has its own pair of tags,
 * which only the slow path looks at (and checks GEN there, on every
 * access). A hit stores nothing but the budget: `last` is derived.
 */
import { notAllocated, reachViolated } from './isolation.js';
import { EMULATION_WATCHDOG_RETRIES, TLB_BATCH_ACCESSES, TLB_ENTRIES, TLB_GFN_LIMIT } from '../layout/constants.js';
import { BUGS } from './buggify.js';
import { HypervisorBug } from '../layout/region.js';
import { PS } from '../layout/frametable.js';
import { DOM } from '../layout/domains.js';
import { entryMfn, entryType, isTableEntry, P2M_HOLE, PAGE_GEN } from '../layout/p2m.js';
import { leafFor, p2mGfnLimit, p2mWalkFrom, type Walk } from './p2m.js';
import { STAT, VC } from '../layout/vcpus.js';
import { CTL } from '../layout/control.js';
import { COST, sched } from './platform.js';
import { GIVE, type GiveReason, pcpuCount, pcpuGive, pcpuSliceOver, pcpuTake, pcpuWanted } from './schedule.js';
import { VS } from './vcpu.js';
import type { Machine } from './machine.js';
import { ACCESS, type AccessOutcome, type GuestMemory } from '../public/guest.js';
import { P2M } from '../public/types.js';

const PERM_NONE = 0;
const PERM_RO = 1;
const PERM_RW = 2;

/** How a p2m type may be accessed by the CPU, and what else happens. */
function permOf(type: number): number {
  switch (type) {
    case P2M.ram_rw:
    case P2M.grant_map_rw:
    case P2M.map_foreign:
    case P2M.mmio_direct:
    case P2M.ram_logdirty:
      return PERM_RW;
    case P2M.ram_ro:
    case P2M.grant_map_ro:
    case P2M.ram_shared:
      return PERM_RO;
    default:
      return PERM_NONE;
  }
}

/** Hook for accesses that become ioreqs (mmio_dm, holes). The IOREQ path plugs in here. */
export type EmulateHook = (mmu: Mmu, gfn: number, offset: number, width: number, write: boolean, value: number) => { outcome: AccessOutcome; value: number };

/** Xen's null handler (hvm_ioreq / null_handler): reads all ones, writes dropped. */
export const nullHandler: EmulateHook = () => ({ outcome: ACCESS.NULL_IO, value: -1 });

let defaultHook: EmulateHook = nullHandler;
/** Set by the IOREQ layer (xen/ioreq.ts) for every MMU created afterwards. */
export function setDefaultEmulateHook(h: EmulateHook): void {
  defaultHook = h;
}

const TLB_MASK = TLB_ENTRIES - 1;
/** A slot's tag when it holds nothing for that kind of access: `~s` indexes slot TLB_MASK − s, never s. */
const EMPTY_TAGS = Int32Array.from({ length: TLB_ENTRIES }, (_, s) => ~s);

export class Mmu implements GuestMemory {
  /** Per slot, the hit path's tags: the gfn if the slot caches a RAM frame that may be read through (checking off), else ~slot. */
  private readonly rtag = EMPTY_TAGS.slice();
  /** Per slot: the gfn if the slot caches a RAM frame that may be written through (checking off), else ~slot. */
  private readonly wtag = EMPTY_TAGS.slice();
  /**
   * The same two for a slot only the slow path may use: one caching a BAR
   * frame (MMIO mapped direct), or any frame when checking is on, so that
   * the GEN check runs on every access through a cached entry without a
   * branch on the hit path.
   */
  private readonly slowRtag = EMPTY_TAGS.slice();
  private readonly slowWtag = EMPTY_TAGS.slice();
  /** Per slot: the region (RAM or a BAR) the frame is in, for the slow path. */
  private readonly sview: Int32Array[];
  /**
   * RAM's words: the hit path's region. `declare` (here, on `wordMask` and
   * on VcpuContext.mmu): a declared class field is defined as undefined
   * before the constructor assigns it, and V8 then treats it as a mutable
   * field of any type, which the hit path pays on every access — a wrapper
   * with such a field ran a guest loop at 254–270 M/s, the same wrapper
   * assigning its field only in the constructor at 361–390 (load 4–5).
   */
  declare private readonly ram: Int32Array;
  /** Word index of the frame's first word in its region. */
  private readonly wbase = new Int32Array(TLB_ENTRIES);
  private readonly tgen = new Int32Array(TLB_ENTRIES);
  private readonly tidx = new Int32Array(TLB_ENTRIES);
  /** The RAM frame a slot caches (−1: a BAR frame, which the isolation oracle does not watch). */
  private readonly tmfn = new Int32Array(TLB_ENTRIES);
  /** Accesses left before the next instruction boundary; every access takes one, hit or miss. */
  private budget = 0;
  /** accesses = this + TLB_BATCH_ACCESSES − budget (the budget starts at 0: a boundary is due). */
  private accessesBefore = -TLB_BATCH_ACCESSES;
  private epoch = -1;
  private readonly epochIdx: number;
  /** The shared words a boundary touches, looked up once. */
  private readonly domW: Int32Array;
  private readonly vcpuW: Int32Array;
  private readonly controlW: Int32Array;
  private readonly heartbeatIdx: number;
  /** The domain's p2m: its root table, levels and gfn limit, fixed while the domain lives (layout/p2m.ts). */
  private readonly p2mRoot: number;
  private readonly p2mLevels: number;
  private readonly gfnLimit: number;
  private readonly p2mW: Int32Array;
  private readonly walk: Walk = { idx: 0, level: 0 };
  private readonly wordsShift: number;
  private readonly pageMask: number;
  /** Words per page − 1: `(offset >> 2) & wordMask` is `(offset & pageMask) >> 2`. */
  declare private readonly wordMask: number;
  private readonly statBase: number;
  private readonly checking: boolean;
  /**
   * The p2m entry the last failed translation saw (a hole, revoked, mmio_dm…):
   * the emulation path decides on it rather than re-reading the p2m, which
   * may have changed since (no double fetch).
   */
  seenEntry = 0;
  /** Sequence of this vCPU's ioreqs: (domid, vcpu, seq) names one for ever. */
  ioreqSeq = 0;
  /**
   * The outcome of the last slow-path access, and the access count right
   * after it (`accesses` never repeats a value: every access takes one
   * from the budget, and a boundary keeps the count). A hit sets neither,
   * so it stores nothing but the budget; `last` derives its OK.
   */
  private outcome: AccessOutcome = ACCESS.OK;
  private outcomeAt = -1;
  emulate: EmulateHook = defaultHook;
  /**
   * The deterministic simulator's point between two accesses (docs/sim.md §2, "the TLB protocol"): when this count
   * reaches 0 on a slow-path access, `accessPoint` runs before the access, with this vCPU in GUEST and its TLB and
   * budget as they are — another vCPU may run a step there, as on another pCPU, and a shootdown it makes must flush
   * this vCPU remotely (`flushIpi`). −1 and null on real threads: a decrement that never reaches 0 again. With
   * checking on (the simulator's case) every access is a slow-path one.
   */
  preemptIn = -1;
  accessPoint: (() => void) | null = null;

  constructor(
    readonly m: Machine,
    readonly domid: number,
    readonly slot: number,
  ) {
    this.epochIdx = m.dom.epochIndex(domid);
    this.domW = m.dom.w;
    this.vcpuW = m.vcpus.w;
    this.controlW = m.control.w;
    this.heartbeatIdx = m.vcpus.idx(slot, VC.HEARTBEAT);
    this.p2mRoot = m.dom.at(domid, DOM.P2M_ROOT);
    this.p2mLevels = m.dom.at(domid, DOM.P2M_LEVELS);
    this.gfnLimit = p2mGfnLimit(m, domid);
    this.p2mW = m.p2m.w;
    this.wordsShift = m.frames.shift - 2;
    this.pageMask = m.config.page_size_bytes - 1;
    this.wordMask = (m.config.page_size_bytes >> 2) - 1;
    this.statBase = slot * STAT.WORDS;
    this.checking = m.checking;
    this.ram = m.frames.i32;
    this.sview = Array.from({ length: TLB_ENTRIES }, () => m.frames.i32);
    this.scratchView = m.frames.i32;
    this.pcpus = pcpuCount(m);
  }

  /** The host's pCPUs (0: none, hypervisor/xen/schedule.ts); fixed before any vCPU starts. */
  private readonly pcpus: number;
  /** When this vCPU last took a pCPU: its slice runs from there. */
  private pcpuSince_us = 0;

  /**
   * Wait for a pCPU (the vCPU is OFFLINE, BLOCKED or PAUSED); its slice
   * starts. `woken`: it had blocked (or was offline), so it may be boosted;
   * false after a yield or a preemption (schedule.ts).
   */
  takePcpu(woken = true): void {
    if (this.pcpus === 0) return;
    pcpuTake(this.m, this.slot, woken);
    this.pcpuSince_us = sched().now_us();
  }

  /** Give the pCPU back (the vCPU has just left GUEST for a state that holds none), saying why. */
  givePcpu(why: GiveReason = GIVE.BLOCK): void {
    if (this.pcpus !== 0) pcpuGive(this.m, this.slot, why);
  }

  /** Guest accesses made so far (each read or write, hit, miss or emulated). */
  get accesses(): number {
    return this.accessesBefore + TLB_BATCH_ACCESSES - this.budget;
  }

  /**
   * The instruction boundary: take pending TLB flushes, acknowledge them.
   * Two atomic loads (the epoch, CTL.SHOOTDOWNS) and the heartbeat. The
   * heartbeat is a plain load and store: this vCPU is its only writer
   * while it runs (domain.ts zeroes it before), and its readers (the
   * host's and chaos's watchdogs) only compare it with an earlier value;
   * an `Atomics.add` here was a locked read-modify-write per batch for
   * nothing.
   */
  boundary(): void {
    const done = TLB_BATCH_ACCESSES - this.budget;
    if (done > 0) sched().charge(COST.ACCESS, done);
    this.accessesBefore += done;
    this.budget = TLB_BATCH_ACCESSES;
    this.ack();
    const vw = this.vcpuW;
    vw[this.heartbeatIdx] = vw[this.heartbeatIdx]! + 1;
    if (Atomics.load(this.controlW, CTL.SHOOTDOWNS) > 0) this.stepAside();
  }

  /**
   * The timer tick: a boundary after guest time passed (a batch of
   * accesses, a workload step), where the pCPU slice may end. Not at the
   * boundaries of an entry to guest mode (hypercall exit, end of a wait):
   * a vCPU is descheduled while running guest code, not on its way back.
   */
  tick(): void {
    this.boundary();
    if (this.pcpus !== 0 && pcpuWanted(this.m) && pcpuSliceOver(this.pcpuSince_us)) this.deschedule();
  }

  /**
   * The slice is over and a vCPU waits for a pCPU: GUEST → PAUSED (which
   * acknowledges shootdowns implicitly), give the pCPU, wait for one in
   * turn, back to GUEST, then take the flushes that came meanwhile. Only at
   * a tick, so never in the middle of a batch of accesses.
   */
  private deschedule(): void {
    const st = this.m.vcpus.idx(this.slot, VC.STATE);
    if (Atomics.compareExchange(this.m.vcpus.w, st, VS.GUEST, VS.PAUSED) !== VS.GUEST) return;
    this.givePcpu(GIVE.PREEMPT);
    this.takePcpu(false);
    Atomics.store(this.m.vcpus.w, st, VS.GUEST);
    this.ack();
  }

  /**
   * A flush IPI taken between two accesses (the simulator, for a vCPU it suspended at an access point while a
   * shootdown waits for it): the TLB dropped and the epoch acknowledged as at a boundary, the budget left as it is.
   * Only where this vCPU makes no access: a real vCPU takes the IPI between instructions, never inside one.
   */
  flushIpi(): void {
    this.ack();
  }

  private ack(): void {
    const e = Atomics.load(this.domW, this.epochIdx);
    if (e !== this.epoch) {
      this.dropAll();
      this.epoch = e;
      Atomics.store(this.m.vcpus.w, this.m.vcpus.idx(this.slot, VC.ACK_EPOCH), e);
      this.m.vcpus.stats[this.statBase + STAT.TLB_FLUSHES]! += 1;
    }
  }

  /**
   * A shootdown is waiting somewhere: give this core away for a moment
   * (descheduled: BLOCKED, which acknowledges our own domain's shootdowns
   * too), so a preempted vCPU it waits for can run — the "yield to a
   * preempted vCPU" of paravirtual spinlocks, done by everyone else. With
   * pCPUs the vCPU keeps its pCPU meanwhile (it is back in 20 µs); the
   * pause still matters there: without it, a vCPU thread that never sleeps
   * was the one a shootdown waited for, preempted by other processes'
   * threads for 0.1–1 ms (p50 125 µs with one hammering vCPU on 2 pCPUs,
   * 8 µs with the pause).
   */
  private stepAside(): void {
    const st = this.m.vcpus.idx(this.slot, VC.STATE);
    if (Atomics.compareExchange(this.m.vcpus.w, st, VS.GUEST, VS.BLOCKED) !== VS.GUEST) return;
    sched().yield();
    Atomics.store(this.m.vcpus.w, st, VS.GUEST);
    this.ack();
  }

  stat(s: number, n = 1): void {
    this.m.vcpus.stats[this.statBase + s]! += n;
  }

  /** Drop every cached translation (on leaving guest mode for good). */
  flushAll(): void {
    this.dropAll();
  }

  private dropAll(): void {
    this.rtag.set(EMPTY_TAGS);
    this.wtag.set(EMPTY_TAGS);
    this.slowRtag.set(EMPTY_TAGS);
    this.slowWtag.set(EMPTY_TAGS);
  }

  /**
   * Translate for an access; returns the TLB slot, or -1 when the access
   * must be emulated (or faulted: `this.outcome` says which).
   */
  private translate(gfn: number, write: boolean): number {
    // The boundary comes before the access that would exceed the batch, so
    // a batch is exactly TLB_BATCH_ACCESSES accesses (Revoke's bound).
    if (this.budget <= 0) this.tick();
    if (--this.preemptIn === 0) this.accessPoint!();
    this.budget--;
    const s = gfn & TLB_MASK;
    if ((write ? this.wtag[s] : this.rtag[s]) === gfn || (write ? this.slowWtag[s] : this.slowRtag[s]) === gfn) {
      if (this.checking) this.checkStale(s, gfn, write);
      return s;
    }
    return this.fill(s, gfn, write);
  }

  private checkStale(s: number, gfn: number, write: boolean): void {
    const cur = Atomics.load(this.p2mW, this.tidx[s]! + PAGE_GEN);
    if (cur - this.tgen[s]! >= 2) {
      this.m.log.violated(
        'no_use_after_revoke',
        `d${this.domid} slot ${this.slot} ${write ? 'wrote' : 'read'} gfn ${gfn} through a TLB entry whose removal completed (gen ${this.tgen[s]} → ${cur})`,
      );
      // Report once per entry.
      this.tgen[s] = cur & ~1;
    }
    // Every access with checking on comes here or through fill: the
    // isolation oracle is asked about each (layout/reach.ts), after the
    // more specific stale-entry check above.
    const mfn = this.tmfn[s]!;
    // The text only on a failure: this runs on every checked access.
    if (mfn >= 0 && this.m.reach.may(mfn, this.domid) === false) reachViolated(this.m, this.domid, mfn, `${write ? 'wrote' : 'read'} gfn ${gfn}, reaching`);
  }


  /**
   * A TLB miss: the walk (ept_next_level from the root, lock-free), then
   * the leaf read as a seqlock — GEN, the entry, GEN. A superpage hit
   * caches the 4 KiB translation (its frame + gfn's offset) with the
   * superpage entry's GEN, which a removal splitting it bumps.
   */
  private fill(s: number, gfn: number, write: boolean): number {
    if (!(gfn >= 0 && gfn < this.gfnLimit) || !Number.isInteger(gfn)) {
      this.outcome = ACCESS.NULL_IO;
      this.seenEntry = P2M_HOLE;
      return -1;
    }
    const w = this.p2mW;
    const wk = this.walk;
    let g1: number;
    let g2: number;
    let leaf: number;
    for (;;) {
      p2mWalkFrom(w, this.p2mRoot, this.p2mLevels, gfn, wk);
      g1 = Atomics.load(w, wk.idx + PAGE_GEN);
      leaf = Atomics.load(w, wk.idx);
      g2 = Atomics.load(w, wk.idx + PAGE_GEN);
      // A split linked a table there since the walk read the superpage: walk again.
      if (!isTableEntry(leaf)) break;
    }
    const i = wk.idx;
    const e = leafFor(leaf, wk.level, gfn);
    this.seenEntry = e;
    if (e === P2M_HOLE) {
      this.outcome = ACCESS.NULL_IO;
      return -1;
    }
    const type = entryType(e);
    const p = permOf(type);
    if (p === PERM_NONE) {
      this.outcome = ACCESS.NULL_IO;
      return -1;
    }
    if (write && p === PERM_RO) {
      // Xen: a write to p2m_grant_map_ro injects #GP; to p2m_ram_ro it is discarded.
      this.outcome = type === P2M.grant_map_ro ? ACCESS.FAULT : ACCESS.OK;
      return -1;
    }
    const mfn = entryMfn(e);
    const r = this.m.regionOf(mfn);
    if (r < 0) {
      this.outcome = ACCESS.NULL_IO;
      return -1;
    }
    const base = (mfn - this.m.regionBase[r]!) << this.wordsShift;
    const view = this.m.regions[r]!;
    if (this.checking && r === 0) {
      if (this.m.reach.may(mfn, this.domid) === false) reachViolated(this.m, this.domid, mfn, `${write ? 'wrote' : 'read'} gfn ${gfn}, reaching`);
      const st = this.m.ft.state(mfn);
      if (st !== PS.INUSE) notAllocated(this.m, this.domid, mfn, st, `${write ? 'wrote' : 'read'} gfn ${gfn} (TLB fill), reaching`);
    }
    if ((g1 & 1) !== 0 || g1 !== g2 || gfn >= TLB_GFN_LIMIT) {
      // A removal is in flight: this one access may still use the old
      // translation (the remover cannot finish before our next boundary),
      // but it must not be cached. A gfn past the Int32 tags is never cached.
      this.clearSlot(s);
      this.scratchView = view;
      this.scratchBase = base;
      return TLB_ENTRIES;
    }
    this.sview[s] = view;
    this.wbase[s] = base;
    this.tgen[s] = g1;
    this.tidx[s] = i;
    this.tmfn[s] = r === 0 ? mfn : -1;
    this.clearSlot(s);
    const hit = r === 0 && !this.checking;
    const rt = hit ? this.rtag : this.slowRtag;
    const wt = hit ? this.wtag : this.slowWtag;
    rt[s] = gfn;
    wt[s] = p === PERM_RW ? gfn : ~s;
    return s;
  }
  private scratchView: Int32Array;

  private clearSlot(s: number): void {
    this.rtag[s] = ~s;
    this.wtag[s] = ~s;
    this.slowRtag[s] = ~s;
    this.slowWtag[s] = ~s;
  }
  private scratchBase = 0;

  private view(s: number): Int32Array {
    return s === TLB_ENTRIES ? this.scratchView : this.sview[s]!;
  }
  private wordOf(s: number, offset: number): number {
    return (s === TLB_ENTRIES ? this.scratchBase : this.wbase[s]!) + ((offset & this.pageMask) >> 2);
  }

  /** A server that answers a FAULT with RETRY has mapped the gfn again; accesses retry this often. */
  private static readonly RETRIES = 4;

  /**
   * After `r` retries of an access to `gfn`, whether to give up. The bound
   * is what keeps a device model from holding the vCPU in the hypervisor
   * for ever (XSA-262: a device model driving Xen into an unbounded loop).
   * The watchdog is the simulator's NMI watchdog: a loop that goes on far
   * beyond any bound is a fatal assertion, never a hang of the run. Only
   * the retry path pays for either.
   */
  private retriesExhausted(gfn: number, r: number): boolean {
    if (r >= EMULATION_WATCHDOG_RETRIES) {
      throw new HypervisorBug(`watchdog: d${this.domid} vCPU slot ${this.slot} retried an emulated access to gfn ${gfn} ${r} times; the device model's answers drive the hypervisor in an unbounded loop`);
    }
    // The bug: retry for as long as the device model answers RETRY.
    return r >= Mmu.RETRIES && !this.m.control.buggy(BUGS['ioreq-retry-unbounded']);
  }

  /** Outcome of the last access (ACCESS.*): OK unless the last access was a slow-path one that ended otherwise. */
  get last(): AccessOutcome {
    return this.outcomeAt === this.accesses ? this.outcome : ACCESS.OK;
  }

  get last_access(): AccessOutcome {
    return this.last;
  }

  /** A slow-path access ends here: `outcome` is now the outcome of access number `accesses`. */
  private settle(): void {
    this.outcomeAt = this.accesses;
  }

  /**
   * A 32-bit read. The hit path is inline: one tag compare and the budget
   * (a boundary is due when it is 0: the slow path passes it), one store
   * (the budget), the load. Everything else (a miss, a boundary, a BAR
   * frame, any frame with checking on, an emulated access, a retry) is the
   * slow path, which counts the access itself.
   */
  read32(gfn: number, offset: number): number {
    const s = gfn & TLB_MASK;
    const b = this.budget;
    if (this.rtag[s] === gfn && b > 0) {
      this.budget = b - 1;
      return this.ram[this.wbase[s]! + ((offset >> 2) & this.wordMask)]! >>> 0;
    }
    return this.read32Slow(gfn, offset);
  }

  private read32Slow(gfn: number, offset: number): number {
    for (let r = 0; ; r++) {
      let v = this.read32Once(gfn, offset);
      if (this.outcome === ACCESS.RETRY) {
        if (!this.retriesExhausted(gfn, r)) continue;
        v = this.gaveUp();
      }
      this.settle();
      return v;
    }
  }

  /** A 32-bit write; the hit path is inline, as for read32. */
  write32(gfn: number, offset: number, value: number): void {
    const s = gfn & TLB_MASK;
    const b = this.budget;
    if (this.wtag[s] === gfn && b > 0) {
      this.budget = b - 1;
      this.ram[this.wbase[s]! + ((offset >> 2) & this.wordMask)] = value | 0;
      return;
    }
    this.write32Slow(gfn, offset, value);
  }

  private write32Slow(gfn: number, offset: number, value: number): void {
    for (let r = 0; ; r++) {
      this.write32Once(gfn, offset, value);
      if (this.outcome === ACCESS.RETRY) {
        if (!this.retriesExhausted(gfn, r)) continue;
        this.gaveUp();
      }
      this.settle();
      return;
    }
  }

  /**
   * A run of 32-bit reads: `into.length` consecutive words from (gfn,
   * offset) on — offset taken as read32 takes it, the word in the page —
   * running on into gfn + 1, gfn + 2… Exactly the reads a loop of read32
   * would make, in the same order, each word one access with its own
   * outcome (`last` is the last word's): the same budget, the boundary
   * before the access that would exceed a batch, a miss or an emulated
   * word through the slow path. What it saves is the call and the tag
   * compare per word: a run of hits on one slot (at most the rest of the
   * page and of the batch, so no boundary and no fill falls inside it,
   * and nothing but a boundary or a fill changes a tag) is one compare,
   * one budget store and a copy loop.
   */
  readWords(gfn: number, offset: number, into: Uint32Array): void {
    const words = this.wordMask + 1;
    const n = into.length;
    let g = gfn;
    let w = (offset >> 2) & this.wordMask;
    let k = 0;
    while (k < n) {
      const s = g & TLB_MASK;
      const b = this.budget;
      if (this.rtag[s] === g && b > 0) {
        const run = Math.min(n - k, words - w, b);
        this.budget = b - run;
        const ram = this.ram;
        const from = this.wbase[s]! + w - k;
        for (const end = k + run; k < end; k++) into[k] = ram[from + k]!;
        w += run;
      } else {
        into[k++] = this.read32Slow(g, w << 2);
        w++;
      }
      if (w === words) {
        w = 0;
        g++;
      }
    }
  }

  /** A run of 32-bit writes, `from.length` words: as readWords, the writes of a loop of write32. */
  writeWords(gfn: number, offset: number, from: Uint32Array): void {
    const words = this.wordMask + 1;
    const n = from.length;
    let g = gfn;
    let w = (offset >> 2) & this.wordMask;
    let k = 0;
    while (k < n) {
      const s = g & TLB_MASK;
      const b = this.budget;
      if (this.wtag[s] === g && b > 0) {
        const run = Math.min(n - k, words - w, b);
        this.budget = b - run;
        const ram = this.ram;
        const to = this.wbase[s]! + w - k;
        for (const end = k + run; k < end; k++) ram[to + k] = from[k]!;
        w += run;
      } else {
        this.write32Slow(g, w << 2, from[k++]!);
        w++;
      }
      if (w === words) {
        w = 0;
        g++;
      }
    }
  }

  read(gfn: number, offset: number, width: 1 | 2 | 4 | 8): bigint {
    for (let r = 0; ; r++) {
      let v = this.readOnce(gfn, offset, width);
      if (this.outcome === ACCESS.RETRY) {
        if (!this.retriesExhausted(gfn, r)) continue;
        this.gaveUp();
        v = (1n << BigInt(8 * width)) - 1n;
      }
      this.settle();
      return v;
    }
  }

  write(gfn: number, offset: number, width: 1 | 2 | 4 | 8, value: bigint): void {
    for (let r = 0; ; r++) {
      this.writeOnce(gfn, offset, width, value);
      if (this.outcome === ACCESS.RETRY) {
        if (!this.retriesExhausted(gfn, r)) continue;
        this.gaveUp();
      }
      this.settle();
      return;
    }
  }

  /** LOCK CMPXCHG on guest memory: only on memory the vCPU may write; elsewhere the value is all ones. */
  cmpxchg32(gfn: number, offset: number, expected: number, value: number): number {
    const s = this.translate(gfn, true);
    let v = 0xffffffff;
    if (s < 0) {
      if (this.outcome === ACCESS.OK) this.outcome = ACCESS.FAULT;
    } else {
      this.outcome = ACCESS.OK;
      v = Atomics.compareExchange(this.view(s), this.wordOf(s, offset), expected | 0, value | 0) >>> 0;
    }
    this.settle();
    return v;
  }

  private gaveUp(): number {
    this.outcome = ACCESS.IOREQ_FAULT;
    return 0xffffffff;
  }

  private read32Once(gfn: number, offset: number): number {
    const s = this.translate(gfn, false);
    if (s < 0) return this.emulated(gfn, offset, 4, false, 0);
    this.outcome = ACCESS.OK;
    return this.view(s)[this.wordOf(s, offset)]! >>> 0;
  }

  private write32Once(gfn: number, offset: number, value: number): void {
    const s = this.translate(gfn, true);
    if (s < 0) {
      if (this.outcome !== ACCESS.OK) this.emulated(gfn, offset, 4, true, value);
      return;
    }
    this.outcome = ACCESS.OK;
    this.view(s)[this.wordOf(s, offset)] = value | 0;
  }

  private readOnce(gfn: number, offset: number, width: 1 | 2 | 4 | 8): bigint {
    const s = this.translate(gfn, false);
    if (s < 0) {
      const v = this.emulated(gfn, offset, width, false, 0);
      // An emulated read of all ones is all ones of the access width.
      if (v === 0xffffffff) return (1n << BigInt(8 * width)) - 1n;
      return BigInt(v >>> 0) & ((1n << BigInt(8 * width)) - 1n);
    }
    this.outcome = ACCESS.OK;
    const v = this.view(s);
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    const at = (this.wordOf(s, 0) << 2) + (offset & this.pageMask);
    let out = 0n;
    for (let b = width - 1; b >= 0; b--) out = (out << 8n) | BigInt(bytes[at + b] ?? 0);
    return out;
  }

  private writeOnce(gfn: number, offset: number, width: 1 | 2 | 4 | 8, value: bigint): void {
    const s = this.translate(gfn, true);
    if (s < 0) {
      if (this.outcome !== ACCESS.OK) this.emulated(gfn, offset, width, true, Number(value & 0xffffffffn));
      return;
    }
    this.outcome = ACCESS.OK;
    const v = this.view(s);
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    const at = (this.wordOf(s, 0) << 2) + (offset & this.pageMask);
    let x = value;
    for (let b = 0; b < width; b++) {
      bytes[at + b] = Number(x & 0xffn);
      x >>= 8n;
    }
  }

  private emulated(gfn: number, offset: number, width: number, write: boolean, value: number): number {
    if (this.outcome === ACCESS.FAULT) {
      this.m.vcpus.stats[this.statBase + STAT.GUEST_FAULTS]! += 1;
      return 0xffffffff;
    }
    if (this.outcome === ACCESS.OK) return 0; // write discarded (ram_ro)
    const r = this.emulate(this, gfn, offset, width, write, value);
    this.outcome = r.outcome;
    const st = this.m.vcpus.stats;
    if (r.outcome === ACCESS.NULL_IO) st[this.statBase + STAT.NULL_IO]! += 1;
    else if (r.outcome === ACCESS.IOREQ) st[this.statBase + STAT.IOREQS]! += 1;
    else if (r.outcome === ACCESS.IOREQ_FAULT || r.outcome === ACCESS.FAULT || r.outcome === ACCESS.RETRY) st[this.statBase + STAT.IOREQ_FAULTS]! += 1;
    return r.value >>> 0;
  }
}
