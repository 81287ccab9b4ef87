/**
 * The simulated physical machine: every shared region, created once by the
 * host main thread and attached by every thread (vCPU workers, pCPU
 * workers). `MachineSabs` is what crosses thread boundaries (structured
 * clone shares SharedArrayBuffers); `Machine` is a thread's typed view.
 * Xen has no one counterpart: these are the machine's RAM and BARs and
 * Xen's own global data (frame_table, the heap, struct domain and
 * struct vcpu, the grant tables, the ioreq servers), each laid out by one
 * module of hypervisor/layout/.
 */
import { MAX_DOMAINS, XENSTORE_WORDS } from '../layout/constants.js';
import { InvariantLog } from '../layout/invariants.js';
import { CTL, ControlRegion } from '../layout/control.js';
import { DOM, DomainTable } from '../layout/domains.js';
import { Frames } from '../layout/frames.js';
import { FrameTable } from '../layout/frametable.js';
import { GrantRegion, grantSlots, type GrantLimits, type GrantSlot } from '../layout/grants.js';
import { HEAP, HeapRegion } from '../layout/heap.js';
import { P2mPool } from '../layout/p2m.js';
import { VcpuTable } from '../layout/vcpus.js';
import { IoreqServers } from '../layout/ioreq.js';
import { IoreqSlots } from '../layout/ioreq-slots.js';
import { ReachTable } from '../layout/reach.js';
import { TraceRegion, ringEventsFor } from '../layout/trace.js';
import { type LockId, LockSpace } from './locks.js';
import { LOCK_CLASS as LOCK_CLASSES } from './lock-classes.js';
import type { BugSet } from './buggify.js';

export interface BarConfig {
  name: string;
  owner: number;
  nr_pages: number;
}

export interface MachineConfig {
  nr_frames: number;
  page_size_bytes: number;
  /** Table pages of the p2m pool all domains' p2ms take theirs from (layout/p2m.ts). */
  p2m_pool_pages: number;
  /** Domain slots (domids 0 … max_domains−1); shared regions are sized by it. Default MAX_DOMAINS. */
  max_domains?: number;
  /** The memory-sharing design this machine runs (xen/design.ts); default 'primitives'. */
  design?: string;
  /** Each slot's grant limits, by domid, which size its grant storage (layout/grants.ts); a slot not listed: Xen's defaults. */
  grant_limits?: ReadonlyArray<GrantLimits | undefined>;
  /** Nested Map allowed (and revoked transitively); off: re-Mapping a received range is -EPERM. */
  transitive_revoke?: boolean;
  bars: readonly BarConfig[];
  checking: boolean;
  buggify: BugSet;
  seed: number;
  /** Timeline rings (layout/trace.ts): one per vCPU slot plus the host's; absent or 0: no tracing. */
  trace_rings?: number;
  /** Events per ring (default TRACE_RING_EVENTS, less when many rings would pass TRACE_REGION_MAX_BYTES). */
  trace_ring_events?: number;
}

export interface BarSab {
  name: string;
  owner: number;
  base_mfn: number;
  nr_pages: number;
  sab: SharedArrayBuffer;
}

export interface MachineSabs {
  config: MachineConfig;
  control: SharedArrayBuffer;
  frames: SharedArrayBuffer;
  frametable: SharedArrayBuffer;
  heap: SharedArrayBuffer;
  domains: SharedArrayBuffer;
  p2m: SharedArrayBuffer;
  grants: SharedArrayBuffer;
  vcpus: SharedArrayBuffer;
  locks: SharedArrayBuffer;
  log: SharedArrayBuffer;
  /** A tiny xenstore: words guests use to advertise grant refs to each other. */
  store: SharedArrayBuffer;
  /** The design's own shared region (its records), sized by MemoryDesign.regionBytes. */
  design: SharedArrayBuffer;
  ioreq: SharedArrayBuffer;
  ioreqSlots: SharedArrayBuffer;
  /** The isolation oracle's rights (layout/reach.ts). */
  reach: SharedArrayBuffer;
  bars: BarSab[];
  /** The timeline rings, only when tracing was asked for. */
  trace?: SharedArrayBuffer;
}

/** Lock ids of the global locks; per-domain ones live in the domain table. */
export const GLOBAL_LOCK = { DOMCTL: 0, REGISTRY: 1, HEAP: 2, P2M_POOL: 3 } as const;
const PER_DOMAIN_LOCKS = 6;
/** The global locks, then per slot its own and one per grant entry it stores (Xen's active entry locks). */
const nrLocks = (slots: readonly GrantSlot[]): number => 4 + slots.reduce((a, s) => a + PER_DOMAIN_LOCKS + s.entries, 0);

export class Machine {
  readonly control: ControlRegion;
  readonly frames: Frames;
  readonly ft: FrameTable;
  readonly heap: HeapRegion;
  readonly dom: DomainTable;
  readonly p2m: P2mPool;
  readonly grants: GrantRegion;
  readonly vcpus: VcpuTable;
  readonly locks: LockSpace;
  readonly log: InvariantLog;
  readonly ioreq: IoreqServers;
  readonly ios: IoreqSlots;
  readonly reach: ReachTable;
  readonly trace: TraceRegion | undefined;
  /** Word views of RAM (region 0) and each BAR (regions 1…), indexed by region. */
  readonly regions: Int32Array[];
  readonly regionBase: number[];
  readonly config: MachineConfig;
  /** Domain slots of this machine. */
  readonly nd: number;

  constructor(readonly sabs: MachineSabs) {
    const c = sabs.config;
    this.config = c;
    this.control = new ControlRegion(sabs.control);
    this.frames = new Frames(sabs.frames, c.nr_frames, c.page_size_bytes);
    this.ft = new FrameTable(sabs.frametable, c.nr_frames);
    this.heap = new HeapRegion(sabs.heap, c.nr_frames);
    this.nd = c.max_domains ?? MAX_DOMAINS;
    this.dom = new DomainTable(sabs.domains, this.nd);
    this.p2m = new P2mPool(sabs.p2m, c.p2m_pool_pages);
    this.grants = new GrantRegion(sabs.grants, grantSlots(this.nd, c.grant_limits));
    this.vcpus = new VcpuTable(sabs.vcpus);
    this.log = new InvariantLog(sabs.log);
    this.ioreq = new IoreqServers(sabs.ioreq, this.nd);
    this.ios = new IoreqSlots(sabs.ioreqSlots, this.nd);
    this.reach = new ReachTable(sabs.reach, c.nr_frames, this.control.w);
    this.trace = sabs.trace !== undefined ? new TraceRegion(sabs.trace) : undefined;
    this.locks = new LockSpace(sabs.locks, this.log, { checking: c.checking });
    this.regions = [this.frames.i32, ...sabs.bars.map((b) => new Int32Array(b.sab))];
    this.regionBase = [0, ...sabs.bars.map((b) => b.base_mfn)];
  }

  get checking(): boolean {
    return this.control.checking;
  }

  lock(id: number, site: string, key = 0): void {
    this.locks.lock(id as LockId, site, key);
  }

  unlock(id: number): void {
    this.locks.unlock(id as LockId);
  }

  /** Region index and word offset of an MFN (RAM or BAR), or -1. */
  regionOf(mfn: number): number {
    if (mfn < this.config.nr_frames) return mfn >= 0 ? 0 : -1;
    for (let r = 1; r < this.regionBase.length; r++) {
      const b = this.sabs.bars[r - 1];
      if (b !== undefined && mfn >= b.base_mfn && mfn < b.base_mfn + b.nr_pages) return r;
    }
    return -1;
  }

  /** Total MFNs including BARs (one past the highest BAR MFN). */
  get mfnLimit(): number {
    const last = this.sabs.bars[this.sabs.bars.length - 1];
    return last === undefined ? this.config.nr_frames : last.base_mfn + last.nr_pages;
  }
}

/**
 * The size of the design's region for a config: installed by xen/design.ts
 * when it loads (the design the config names decides), so that this module
 * needs nothing of the designs.
 */
let designRegionBytes: ((config: MachineConfig) => number) | null = null;

export function setDesignRegionSizer(f: (config: MachineConfig) => number): void {
  designRegionBytes = f;
}

const attached = new WeakMap<SharedArrayBuffer, Machine>();

/** This thread's view of a machine (cached: a worker thread may run many tasks of one host). */
export function attachMachine(sabs: MachineSabs): Machine {
  let m = attached.get(sabs.control);
  if (m === undefined) {
    m = new Machine(sabs);
    attached.set(sabs.control, m);
  }
  return m;
}

/** Allocate and initialise every region. Host main thread only, before any worker starts. */
export function createMachineSabs(config: MachineConfig): MachineSabs {
  const { nr_frames, page_size_bytes } = config;
  const nd = config.max_domains ?? MAX_DOMAINS;
  if (!Number.isInteger(nd) || nd < 1 || nd > MAX_DOMAINS) throw new Error(`max_domains must be 1…${MAX_DOMAINS}, got ${nd}`);
  if (nr_frames <= 0 || !Number.isInteger(nr_frames)) throw new Error(`nr_frames must be a positive integer, got ${nr_frames}`);
  let next_mfn = nr_frames;
  const bars: BarSab[] = config.bars.map((b) => {
    const bar: BarSab = {
      name: b.name,
      owner: b.owner,
      base_mfn: next_mfn,
      nr_pages: b.nr_pages,
      sab: new SharedArrayBuffer(b.nr_pages * page_size_bytes),
    };
    next_mfn += b.nr_pages;
    return bar;
  });
  if (designRegionBytes === null) throw new Error('no design registered in this thread (import hypervisor/designs/index.js first)');
  const slots = grantSlots(nd, config.grant_limits);
  const log = new SharedArrayBuffer(InvariantLog.bytes());
  const sabs: MachineSabs = {
    config,
    control: new SharedArrayBuffer(ControlRegion.bytes()),
    frames: new SharedArrayBuffer(Frames.bytes(nr_frames, page_size_bytes)),
    frametable: new SharedArrayBuffer(FrameTable.bytes(nr_frames)),
    heap: new SharedArrayBuffer(HeapRegion.bytes(nr_frames)),
    domains: new SharedArrayBuffer(DomainTable.bytes(nd)),
    p2m: new SharedArrayBuffer(P2mPool.bytes(config.p2m_pool_pages)),
    grants: new SharedArrayBuffer(GrantRegion.bytes(slots)),
    vcpus: new SharedArrayBuffer(VcpuTable.bytes()),
    locks: new SharedArrayBuffer(LockSpace.bytes(nrLocks(slots))),
    log,
    store: new SharedArrayBuffer(XENSTORE_WORDS * 4),
    design: new SharedArrayBuffer(designRegionBytes(config)),
    ioreq: new SharedArrayBuffer(IoreqServers.bytes(nd)),
    ioreqSlots: new SharedArrayBuffer(IoreqSlots.bytes(nd)),
    reach: new SharedArrayBuffer(ReachTable.bytes(nr_frames)),
    bars,
  };
  if (config.trace_rings !== undefined && config.trace_rings > 0) {
    sabs.trace = TraceRegion.create({ nr_rings: config.trace_rings, ring_events: config.trace_ring_events ?? ringEventsFor(config.trace_rings) }, performance.timeOrigin + performance.now());
  }
  const ctl = new Int32Array(sabs.control);
  ctl[CTL.BUGGIFY] = config.buggify[0];
  ctl[CTL.BUGGIFY_HI] = config.buggify[1];
  ctl[CTL.CHECKING] = config.checking ? 1 : 0;
  ctl[CTL.SEED_LO] = config.seed | 0;
  ctl[CTL.SEED_HI] = Math.floor(config.seed / 2 ** 32) | 0;

  // Every frame starts free, scrubbed (a fresh SAB is zero), on the heap.
  const heap = new Int32Array(sabs.heap);
  for (let i = 0; i < nr_frames; i++) heap[HEAP.STACK + i] = nr_frames - 1 - i;
  heap[HEAP.TOP] = nr_frames;
  heap[HEAP.FREE] = nr_frames;
  heap[HEAP.FRESH] = nr_frames;
  if (!Number.isInteger(config.p2m_pool_pages) || config.p2m_pool_pages < 1) throw new Error(`p2m_pool_pages must be a positive integer, got ${config.p2m_pool_pages}`);
  P2mPool.init(sabs.p2m, config.p2m_pool_pages);

  // Locks: global ones first (ids fixed by GLOBAL_LOCK), then per domain.
  const locks = new LockSpace(sabs.locks, new InvariantLog(log), { checking: config.checking });
  const ids = [locks.alloc(LOCK_CLASSES.domctl), locks.alloc(LOCK_CLASSES.registry), locks.alloc(LOCK_CLASSES.heap), locks.alloc(LOCK_CLASSES.p2m_pool)];
  if (ids[0] !== GLOBAL_LOCK.DOMCTL || ids[1] !== GLOBAL_LOCK.REGISTRY || ids[2] !== GLOBAL_LOCK.HEAP || ids[3] !== GLOBAL_LOCK.P2M_POOL) {
    throw new Error('lock ids of global locks are not as GLOBAL_LOCK says');
  }
  const dom = new DomainTable(sabs.domains, nd);
  for (let d = 0; d < nd; d++) {
    dom.set(d, DOM.LOCK_P2M, locks.alloc(LOCK_CLASSES.p2m));
    dom.set(d, DOM.LOCK_PAGE_ALLOC, locks.alloc(LOCK_CLASSES.page_alloc));
    dom.set(d, DOM.LOCK_GRANT, locks.alloc(LOCK_CLASSES.grant));
    dom.set(d, DOM.LOCK_MAPTRACK, locks.alloc(LOCK_CLASSES.maptrack));
    const ioreqLock = locks.alloc(LOCK_CLASSES.ioreq_server);
    const first = locks.alloc(LOCK_CLASSES.active);
    for (let r = 1; r < slots[d]!.entries; r++) locks.alloc(LOCK_CLASSES.active);
    dom.set(d, DOM.ACTIVE_LOCK_BASE, first);
    dom.set(d, DOM.LOCK_IOREQ, ioreqLock);
    dom.set(d, DOM.LOCK_BUFIOREQ, locks.alloc(LOCK_CLASSES.bufioreq));
  }
  return sabs;
}
