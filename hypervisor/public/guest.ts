/**
 * What a guest sees of the machine (docs/style.md §1: the ABI is the only door).
 * Domain code receives a `GuestCpu` for the vCPU it runs on and may import
 * nothing else from hypervisor/ but this folder.
 */
import type { DomId, Gfn, GrantHandle, GrantRef, P2mTypeName, VcpuId } from './types.js';
import type { IoreqServerEnd } from './ioreq.js';

export type AccessWidth = 1 | 2 | 4 | 8;

/** Result of an access that did not reach RAM. */
export const ACCESS = {
  /** Reached memory. */
  OK: 0,
  /** Became an ioreq that the null handler answered (no IOREQ server): reads all ones, writes dropped. */
  NULL_IO: 1,
  /** A fault was injected into the guest (#GP: write to a read-only grant mapping). */
  FAULT: 2,
  /** Became an ioreq answered by an IOREQ server. */
  IOREQ: 3,
  /** Became an IOREQ_TYPE_FAULT (revoked range). */
  IOREQ_FAULT: 4,
  /** Internal: the server re-mapped the gfn; the MMU retries the access. Never seen by guests. */
  RETRY: 5,
} as const;
export type AccessOutcome = (typeof ACCESS)[keyof typeof ACCESS];

export interface MapGrantRef {
  dom: DomId;
  ref: GrantRef;
  /** Guest frame where the grant appears (GNTMAP_host_map on an HVM guest). */
  host_gfn: Gfn;
  readonly: boolean;
}
export interface MapGrantResult {
  status: number; // GNTST_*
  handle: GrantHandle;
}

/** One side of GNTTABOP_copy: a grant ref of `domid`, or a gfn of the caller. */
export type CopyPtr = { kind: 'ref'; domid: DomId; ref: GrantRef; offset: number } | { kind: 'gfn'; gfn: Gfn; offset: number };
export interface GrantCopy {
  src: CopyPtr;
  dst: CopyPtr;
  len: number;
}

/** Source of a Map: backend RAM (its gfns) or machine frames of a BAR. */
export type MapSource = { kind: 'ram'; gfn: Gfn } | { kind: 'bar'; mfn: number };
/** The p2m type Map makes: mmio_direct or mmio_dm (any other is -EINVAL). */
export type MapType = P2mTypeName;
/** What XEN_DMOP_set_mem_type may make of RAM here (HVMMEM_ram_rw, HVMMEM_ram_ro). */
export type MemType = 'ram_rw' | 'ram_ro';
export interface DmResult {
  /** 0 or a negative errno. */
  rc: number;
  /** First failing page (all-or-nothing), −1 if none or an argument error. */
  index: number;
  /** The mapping made (Map, Steal's implicit Map), 0 if none. */
  id: number;
}
export type RevokeTarget = { id: number } | { fe: DomId; gfn: Gfn; count: number };
export type FaultPolicy = 'remap' | 'fail' | 'none' | 'retry';

export interface Hypercalls {
  // memory_op (XENMEM_*)
  /**
   * XENMEM_populate_physmap / XENMEM_decrease_reservation: the number of
   * extents done, in order, up to the first that failed (0 if the first
   * did), never an errno (Xen's do_memory_op returns nr_done).
   */
  populate_physmap(gfns: readonly Gfn[]): number;
  decrease_reservation(gfns: readonly Gfn[]): number;
  /**
   * XENMEM_current_reservation: `dom`'s tot_pages (default: the caller's);
   * of another domain only for the control domain or `dom`'s device model
   * (-EPERM), of one that exists (-ESRCH).
   */
  current_reservation(dom?: DomId): number;
  /** XENMEM_maximum_reservation: `dom`'s max_pages, on the same terms. */
  maximum_reservation(dom?: DomId): number;
  // grant_table_op (GNTTABOP_*)
  gnttab_map_grant_ref(op: MapGrantRef): MapGrantResult;
  gnttab_unmap_grant_ref(handle: GrantHandle): number;
  gnttab_copy(op: GrantCopy): number;
  gnttab_query_size(): { nr_frames: number; max_nr_frames: number; status: number };
  /**
   * Foreign mapping (XENMEM_add_to_physmap_batch, XENMAPSPACE_gmfn_foreign):
   * by the control domain, or by `from`'s device model (its backend), of a
   * domain that still exists (crashed ones too); 0 or a negative errno.
   */
  foreign_map(from: DomId, gfn: Gfn, at: Gfn): number;
  /** XENMEM_remove_from_physmap of a foreign map or of the caller's RAM at `at`; anything else -ENOENT. */
  remove_from_physmap(at: Gfn): number;
  /**
   * A hypercall whose argument is a guest buffer: copies `bytes` between the
   * caller's memory at (gfn, offset) and the hypervisor, holding a page
   * reference for each page during the copy (copy_from_guest/copy_to_guest).
   */
  buffer_copy(dir: 'from_guest' | 'to_guest', gfn: Gfn, offset: number, bytes: number): number;
  // domctl (privileged)
  domctl_max_mem(dom: DomId, max_pages: number): number;
  domctl_iomem_permission(dom: DomId, first_mfn: number, nr_mfns: number, allow: boolean): number;
  domctl_destroy(dom: DomId): number;
  // dm_op on a frontend this domain serves (docs/primitives.md)
  dm_map(fe: DomId, source: MapSource, count: number, at: Gfn, type?: MapType): DmResult;
  dm_revoke(target: RevokeTarget): number;
  dm_steal(fe: DomId, gfn: Gfn, count: number, into?: Gfn): DmResult;
  dm_return(fe: DomId, gfn: Gfn, count: number, at?: Gfn): DmResult;
  /**
   * `bufioreq`: the server gets a buffered ioreq ring (Xen's handle_bufioreq);
   * writes to its `posted` ranges then go through it without the vCPU
   * waiting, unless it is full (docs/ioreq.md §13).
   */
  dm_create_ioreq_server(fe: DomId, ranges: ReadonlyArray<{ start: number; count: number; posted?: boolean }>, fault_policy: FaultPolicy, opts?: { bufioreq?: boolean }): number;
  /** SCHEDOP_shutdown(SHUTDOWN_crash): the calling domain crashes itself. */
  sched_crash(): number;
  /** Xen's set_ioreq_server_state: enabled → the server's ioreqs go to this domain's device model. */
  dm_set_ioreq_server_state(fe: DomId, server: number, enabled: boolean): number;
  /**
   * XEN_DMOP_set_mem_type on `fe`'s RAM gfns [gfn, gfn+count): ram_rw ↔
   * ram_ro (writes to ram_ro are discarded); 0, or the errno of the first
   * gfn refused (earlier ones stay changed).
   */
  dm_set_mem_type(fe: DomId, gfn: Gfn, count: number, type: MemType): number;
}

/** The guest's own grant table (shared, guest-writable entries). */
export interface GrantTable {
  /** Entries the table may grow to: max_grant_frames × 512 (within xgsim's storage). */
  readonly nr_entries: number;
  /**
   * gnttab_grant_foreign_access_ref: frame and domid first, then flags (Linux order). A ref past the frames the table
   * has grows it first (Linux's gnttab_expand: a hypercall); one past nr_entries is not the guest's, and is ignored.
   */
  grant_access(ref: GrantRef, to: DomId, gfn: Gfn, readonly: boolean): void;
  /** gnttab_end_foreign_access_ref: succeeds only if no one is reading or writing. */
  end_access(ref: GrantRef): boolean;
  /** Raw words of an entry (flags | domid << 16, frame) — for adversaries. */
  write_raw(ref: GrantRef, word0: number, frame: number): void;
  read_raw(ref: GrantRef): [number, number];
}

/**
 * A vCPU's memory accesses through the p2m, as its MMU makes them: the
 * same methods as on GuestCpu, on the MMU itself. `GuestCpu.mem` is one
 * call and one object fewer per access than `GuestCpu.read32`; take it
 * once, outside a hot loop.
 */
export interface GuestMemory {
  /** Memory access through the p2m, as the guest's MMU would. */
  read32(gfn: Gfn, offset: number): number;
  write32(gfn: Gfn, offset: number, value: number): void;
  /**
   * Runs of 32-bit words: `into.length` (`from.length`) consecutive words
   * from (gfn, offset) on, running on into the following gfns — exactly
   * what a loop of read32 (write32) over them would do, word by word (each
   * word one access, with its own translation and outcome; `last_access`
   * is the last word's), in one call.
   */
  readWords(gfn: Gfn, offset: number, into: Uint32Array): void;
  writeWords(gfn: Gfn, offset: number, from: Uint32Array): void;
  read(gfn: Gfn, offset: number, width: AccessWidth): bigint;
  write(gfn: Gfn, offset: number, width: AccessWidth, value: bigint): void;
  /** Atomic compare-and-exchange of a 32-bit word of guest memory (LOCK CMPXCHG); returns the old value. */
  cmpxchg32(gfn: Gfn, offset: number, expected: number, value: number): number;
  /** Outcome of the last access (ACCESS.*), whichever door it went through. */
  readonly last_access: AccessOutcome;
}

/** What a DMA of the domain's passthrough device came to (GuestCpu.dma_read32, dma_write32). */
export interface DmaResult {
  /** The IOMMU let it through; false: an IOMMU fault (no mapping there, or no writable one), the access reached nothing. */
  ok: boolean;
  /** A read's word; all ones after a fault (and after a write). */
  value: number;
}

/** A vCPU: its memory accesses (GuestMemory, also reachable as `mem`), hypercalls, grants and the rest. */
export interface GuestCpu extends GuestMemory {
  readonly domid: DomId;
  readonly vcpu: VcpuId;
  readonly nr_vcpus: number;
  /** Pages of RAM populated at gfn 0 … at creation. */
  readonly memory_pages: number;
  readonly page_size_bytes: number;
  readonly hc: Hypercalls;
  readonly grants: GrantTable;
  /** This vCPU's memory, the MMU itself (see GuestMemory): the same accesses as the methods below. */
  readonly mem: GuestMemory;
  /** True once the host asked this vCPU to stop (or its domain died). */
  readonly stopping: boolean;
  /** Deterministic per-vCPU random numbers in [0, 1). */
  random(): number;
  /** Give the physical CPU away briefly. */
  yield(): void;
  /** Block (descheduled, holding no TLB the hypervisor waits for) for about `ms`. */
  sleep(ms: number): void;
  /** Monotonic time in microseconds (simulated under a deterministic scheduler). */
  now_us(): number;
  /**
   * Guest work whose time the simulator's cost model knows (a GPU command
   * a device model executes): under the deterministic scheduler the clock
   * moves by its cost; on real threads the work takes its own time.
   */
  work(kind: 'gpu_command', n?: number): void;
  /** Await something outside the guest (an event channel, a socket) descheduled: no TLB is held meanwhile. */
  idle<T>(p: Promise<T>): Promise<T>;
  /**
   * The same for a synchronous poll (`IoreqServerEnd.recvHot`): run `f`
   * descheduled and return what it returns. `f` must not touch guest memory.
   */
  idleNow<T>(f: () => T): T;
  /** A device model's end of the IOREQ transport, serving this domain's enabled servers. */
  ioreqServerEnd(): IoreqServerEnd;
  /** A mailbox shared by all guests (a tiny xenstore): 32-bit words. */
  readonly store: Int32Array;
  /**
   * DMA by the domain's passthrough device (topology `passthrough:`), which this vCPU's driver programmed: one
   * 32-bit word at (gfn, offset), translated by the domain's IOMMU, not by the vCPU's MMU (hypervisor/xen/iommu.ts).
   * A domain without a device faults every DMA.
   */
  dma_read32(gfn: Gfn, offset: number): DmaResult;
  dma_write32(gfn: Gfn, offset: number, value: number): DmaResult;
}
