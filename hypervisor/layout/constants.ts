/**
 * Every static limit of the simulated machine, in one place (docs/style.md §6).
 * Shared memory is allocated up front from these; relations between them are
 * asserted at module load.
 */
import { XS_MAX_DOMAINS, XS_STORE_WORDS } from '../public/xenstore.js';

export const DEFAULT_PAGE_SIZE_BYTES = 4096;
export const MIN_PAGE_SIZE_BYTES = 256;

/** Domains per host, including dom0 (Xen: DOMID_FIRST_RESERVED is 0x7ff0). */
export const MAX_DOMAINS = 128;
/** vCPUs per domain. */
export const MAX_VCPUS_PER_DOMAIN = 8;
/** vCPUs per host (all domains). */
export const MAX_VCPUS = MAX_DOMAINS * 2;
/** pCPUs a host may have (hypervisor/xen/schedule.ts); by default it has one per core. */
export const MAX_PCPUS = 64;

/** Grant table v1 entries per frame (4 KiB / sizeof(grant_entry_v1_t)). */
export const GRANT_ENTRIES_PER_FRAME = 512;
/** Maptrack handles per frame (grant_table.c MAPTRACK_PER_PAGE: 4 KiB / sizeof(struct grant_mapping)). */
export const MAPTRACK_PER_FRAME = 256;
/**
 * Xen's defaults for a domain's grant limits (xen/common/grant_table.c
 * opt_max_grant_frames, opt_max_maptrack_frames; grant_table_init takes a
 * toolstack value per domain, at least INITIAL_NR_GRANT_FRAMES = 1 grant
 * frame, any number of maptrack frames from 0). A domain's limit in entries
 * is the smaller of its frames' worth and the storage above.
 */
export const XEN_MAX_GRANT_FRAMES = 64;
export const XEN_MAX_MAPTRACK_FRAMES = 1024;
/** Xen's INITIAL_NR_GRANT_FRAMES: the frames a grant table has from creation (gnttab_grow_table's least). */
export const INITIAL_NR_GRANT_FRAMES = 1;
/**
 * The shared-memory budget for a domain's grants (layout/grants.ts): its
 * grant table is stored for at most this many frames, its maptrack for at
 * most this many. A domain's own limits bind below them; above them —
 * Xen's defaults, 64 and 1024 frames, or Qubes' 2048 and 4096 — xgsim's
 * storage does (a ref past it is GNTST_bad_gntref, a map past it
 * GNTST_no_space, as past the limits).
 */
export const GNTTAB_STORAGE_FRAMES = 2;
export const MAPTRACK_STORAGE_FRAMES = 2;

/** Software TLB entries per vCPU (direct mapped, power of two). */
export const TLB_ENTRIES = 64;
/**
 * Guest accesses between two checks of the domain's flush epoch — the
 * simulated "instruction boundary". A TLB shootdown waits at most for every
 * running vCPU to finish one such batch, so this is part of Revoke's bound.
 */
export const TLB_BATCH_ACCESSES = 64;

/**
 * How long a vCPU keeps its pCPU before giving it to a waiting vCPU, when
 * the host has pCPUs (hypervisor/xen/schedule.ts): Xen's scheduling rate
 * limit, SCHED_DEFAULT_RATELIMIT_US (common/sched/private.h), below which
 * credit2's runq_candidate keeps the running unit; it is also a slice's
 * credit worth for a woken vCPU's boost.
 */
export const PCPU_SLICE_US = 1000;

/** Spins before a lock or waiter falls back to Atomics.wait (docs/semantics.md §9). */
export const SPIN_BEFORE_WAIT = 256;
/**
 * Longest a TLB shootdown waits for one vCPU's acknowledgement before the
 * hypervisor treats it as a broken invariant (a guest cannot extend it: the
 * epoch check is in the MMU, not in guest code).
 */
export const TLB_SHOOTDOWN_BOUND_MS = 5000;
/**
 * The watchdog on one emulated access's retries (Mmu.retriesExhausted): far
 * above the protocol's bound of 4, so only a broken bound reaches it, where
 * it is a fatal assertion instead of a hung vCPU (XSA-262 class).
 */
export const EMULATION_WATCHDOG_RETRIES = 1000;

/** Lock classes and lockdep sizes. */
export const MAX_LOCK_CLASSES = 64;
export const LOCKDEP_SITE_SLAB_BYTES = 64 * 1024;
/** The checker holds every page_alloc lock at once (frames conserved). */
export const MAX_HELD_LOCKS = MAX_DOMAINS + 32;

/** Violation log entries kept in shared memory (the rest are only counted). */
export const VIOLATION_LOG_ENTRIES = 256;
export const VIOLATION_TEXT_BYTES = 240;

/** Mapping records (Map and Steal) per host. */
export const MAX_MAPPINGS = 2048;
/** Pages one Map/Steal/Return/Revoke may cover. */
export const MAX_PAGES_PER_OP = 512;
/** Live lend records of the `lending` design, host-wide (hypervisor/designs/lending/store.ts; xgsim's bound, as MAX_MAPPINGS). */
export const MAX_LENDS = 2048;
/** I/O ranges per IOREQ server. */
export const MAX_IOREQ_RANGES = 8;
/**
 * Disjoint ranges one domain's iomem_caps may hold (layout/domains.ts).
 * Xen's d->iomem_caps is an unlimited rangeset (domain_create calls
 * rangeset_new and no rangeset_limit); xgsim's is a fixed table, and a
 * permit or deny whose result would need more ranges is -ENOMEM, what
 * rangeset_add_range/rangeset_remove_range return when alloc_range fails
 * (docs/decisions.md, "iomem_caps").
 */
export const MAX_IOMEM_RANGES = 8;
/**
 * One past the highest MFN an iomem range may name: a range's ends are
 * Int32 words of the domain table. XEN_DOMCTL_iomem_permission refuses a
 * range that wraps (-EINVAL); xgsim also refuses one that reaches this.
 */
export const IOMEM_MFN_LIMIT = 2 ** 31;
/** 2^64: XEN_DOMCTL_iomem_permission's MFNs are unsigned longs; a range reaching this wraps (a double holds it exactly). */
export const MFN_WRAP = 2 ** 64;

/**
 * The p2m's shape (layout/p2m.ts), as EPT's (xen/arch/x86/mm/p2m-ept.c):
 * 9 bits of gfn per table level (EPT_TABLE_ORDER), 512 entries a table.
 */
export const P2M_TABLE_ORDER = 9;
export const P2M_TABLE_ENTRIES = 1 << P2M_TABLE_ORDER;
/** The highest table level whose entries may be leaves: 2 → 2 MiB, 3 → 1 GiB (EPT with hap_has_1gb). */
export const P2M_SUPERPAGE_MAX_LEVEL = 3;
/**
 * A domain's guest physical address width, in bits (topology field
 * `paddr_bits`). The default is Xen's for an HVM guest on a host that does
 * not report one: hap_paddr_bits = 36 (xen/arch/x86/cpu/common.c), which
 * domain_max_paddr_bits (xen/arch/x86/domain.c) caps at 48 ("p2m-ept and
 * p2m-pt only support 4-level page tables"); the guest's CPUID maxphysaddr
 * is never below 32 (recalculate_cpuid_policy, xen/arch/x86/cpu-policy.c).
 */
export const P2M_DEFAULT_PADDR_BITS = 36;
export const P2M_MIN_PADDR_BITS = 32;
export const P2M_MAX_PADDR_BITS = 48;
/**
 * Table pages a domain's p2m pool holds beyond what its RAM and windows
 * need mapped at 4 KiB (host.ts p2mPoolPages): room for mappings at gfns
 * far from them (a BAR at 32 GiB needs a new path of tables). Xen sizes
 * the HAP pool likewise from RAM plus a per-vCPU part
 * (libxl_get_required_shadow_memory).
 */
export const P2M_POOL_SLACK_PAGES = 16;
/**
 * The soft TLB's tags are Int32 (mmu.ts): a gfn at or above this is
 * translated on every access, never cached (a 48-bit space has gfns up to 2^36).
 */
export const TLB_GFN_LIMIT = 2 ** 31;

/** Words of the guests' shared mailbox (a tiny xenstore). */
export const XENSTORE_WORDS = 64 * 1024;

/** IOREQ servers per target domain (Xen: MAX_NR_IOREQ_SERVERS). */
export const MAX_IOREQ_SERVERS_PER_DOMAIN = 8;

/**
 * Timeline capture (`--trace`, `--report`; docs/trace-and-report.md): events
 * per vCPU ring (a power of two; 4 float64 each, so 512 KiB a ring), how
 * often the host drains the rings, and how many drained events the host
 * keeps for the trace file (the rest are only counted; the report's
 * aggregates see every drained event).
 */
export const TRACE_RING_EVENTS = 16 * 1024;
/** The whole trace region at most (a host with hundreds of vCPUs gets smaller rings). */
export const TRACE_REGION_MAX_BYTES = 64 * 1024 * 1024;
export const TRACE_DRAIN_MS = 100;
export const TRACE_MAX_EVENTS = 300_000;

function assert(cond: boolean, what: string): void {
  if (!cond) throw new Error(`constants: ${what}`);
}
assert((TLB_ENTRIES & (TLB_ENTRIES - 1)) === 0, 'TLB_ENTRIES is a power of two');
assert(MAX_VCPUS >= MAX_DOMAINS, 'at least one vCPU per domain');
assert(MAX_VCPUS % 32 === 0, 'the drain keeps one bit per vCPU slot in whole control words (layout/control.ts CTL.DRAINED)');
assert(INITIAL_NR_GRANT_FRAMES <= GNTTAB_STORAGE_FRAMES && GNTTAB_STORAGE_FRAMES <= XEN_MAX_GRANT_FRAMES && MAPTRACK_STORAGE_FRAMES <= XEN_MAX_MAPTRACK_FRAMES, 'the grant storage budget lies between Xen\'s least and its defaults');
assert(MAX_DOMAINS < 0x7ff0, 'domids below DOMID_FIRST_RESERVED');
assert(XENSTORE_WORDS === XS_STORE_WORDS && MAX_DOMAINS === XS_MAX_DOMAINS, 'public/xenstore.ts knows the store and the domain limit');
assert(MAX_IOMEM_RANGES >= 2, 'iomem_caps can hold a range split in two (rangeset_remove_range)');
assert(MAX_PAGES_PER_OP % 32 === 0, 'a mapping record keeps one bit per page in whole words');
assert(P2M_MIN_PADDR_BITS <= P2M_DEFAULT_PADDR_BITS && P2M_DEFAULT_PADDR_BITS <= P2M_MAX_PADDR_BITS, 'the default address width is a valid one');
assert(P2M_MAX_PADDR_BITS - 12 <= 4 * P2M_TABLE_ORDER, 'four levels of tables reach every gfn (EPT\'s walk length)');
assert((P2M_MAX_PADDR_BITS - 12) <= 52, 'every gfn is a safe integer');
assert((TRACE_RING_EVENTS & (TRACE_RING_EVENTS - 1)) === 0, 'TRACE_RING_EVENTS is a power of two (ring indices wrap with a mask)');
assert(TRACE_MAX_EVENTS >= TRACE_RING_EVENTS, 'the host keeps at least one full ring');
