/**
 * Bounds and defaults of the input formats. Machine limits come from
 * hypervisor/layout/constants.ts (docs/style.md §6: one place); the rest are the input
 * layer's own choices, asserted against them.
 */
import {
  DEFAULT_PAGE_SIZE_BYTES,
  MAX_DOMAINS,
  MAX_PCPUS,
  MAX_VCPUS,
  MAX_VCPUS_PER_DOMAIN,
  MIN_PAGE_SIZE_BYTES,
  P2M_DEFAULT_PADDR_BITS,
  P2M_MAX_PADDR_BITS,
  P2M_MIN_PADDR_BITS,
  XEN_MAX_GRANT_FRAMES,
  XEN_MAX_MAPTRACK_FRAMES,
} from '../../hypervisor/layout/constants.js';

export { DEFAULT_PAGE_SIZE_BYTES, MAX_DOMAINS, MAX_PCPUS, MAX_VCPUS, MAX_VCPUS_PER_DOMAIN, MIN_PAGE_SIZE_BYTES, P2M_DEFAULT_PADDR_BITS, P2M_MAX_PADDR_BITS, P2M_MIN_PADDR_BITS, XEN_MAX_GRANT_FRAMES, XEN_MAX_MAPTRACK_FRAMES };

/** Pages a grant-ping guest offers at most (refs of the first grant frame, which every table has). */
export const MAX_GRANT_PING_PAGES = 256;

/** Largest page size a topology may ask for (a power of two). */
export const MAX_PAGE_SIZE_BYTES = 65536;
/** Host RAM bound: frames × page size is one SharedArrayBuffer. */
export const MAX_HOST_FRAMES = 1 << 24;
export const MAX_HOST_RAM_BYTES = 16 * 1024 ** 3;
export const DEFAULT_VCPUS = 1;
/**
 * Memory of a domain that gives neither `memory` nor `frames` (the `evil`
 * domain of docs/formats.md has none): 4MiB, a whole number of pages for every
 * allowed page size.
 */
export const DEFAULT_DOMAIN_MEMORY_BYTES = 4 * 1024 * 1024;
/**
 * A topology without `host.frames`/`host.ram` gets Σ domain memory plus this
 * many free frames (for populate, Steal's `into`, Return, scrub-and-reuse).
 */
export const DEFAULT_FREE_FRAMES = 1024;
/** Workload defaults (render/compute-svm) — the docs/formats.md example's values. */
export const DEFAULT_BUFFERS = 16;
export const DEFAULT_BUFFER_PAGES = 8;
export const MAX_BUFFERS = 4096;
export const MAX_BUFFER_PAGES = 4096;
/** grant-ping grants this many pages per round unless told. */
export const DEFAULT_GRANT_PING_PAGES = 1;
/** Largest seed (seeds are 32-bit so every PRNG in the project can take one). */
export const MAX_SEED = 0xffff_ffff;

/** Scenario bounds. */
export const MAX_SCENARIO_STEPS = 10_000;
export const MAX_REPEAT = 100_000;
/**
 * Threads of one `concurrently` step: thread t runs as vCPU 1 + t of every
 * domain it names (vCPU 0 runs the sequential steps, and an `on_hook` block
 * needs one more), so a domain's vCPU limit bounds them: 6.
 */
export const MAX_THREADS = MAX_VCPUS_PER_DOMAIN - 2;
export const MAX_STEP_COUNT_PAGES = 1 << 20;
export const MAX_COPY_BYTES = 1 << 30;

function assert(cond: boolean, what: string): void {
  if (!cond) throw new Error(`config limits: ${what}`);
}
assert(DEFAULT_DOMAIN_MEMORY_BYTES % MAX_PAGE_SIZE_BYTES === 0, 'default memory is whole pages at every page size');
assert(MIN_PAGE_SIZE_BYTES <= DEFAULT_PAGE_SIZE_BYTES && DEFAULT_PAGE_SIZE_BYTES <= MAX_PAGE_SIZE_BYTES, 'default page size in range');
assert(DEFAULT_VCPUS <= MAX_VCPUS_PER_DOMAIN, 'default vCPUs within the per-domain limit');
assert(1 + MAX_THREADS + 1 <= MAX_VCPUS_PER_DOMAIN, 'a scenario thread per vCPU, with vCPU 0 and a hook vCPU, within the per-domain limit');
assert(DEFAULT_GRANT_PING_PAGES <= MAX_GRANT_PING_PAGES, 'grant-ping fits the grant table');
