/**
 * A virtio-GPU-like device, as guest driver and device model both know it.
 *
 * MMIO register page (emulated: every access is an ioreq to dom0's device model):
 *   REG_QUEUE    (write) grant ref of the command queue page the guest granted to the backend
 *   REG_DOORBELL (write) index of the queue slot to execute (one slot per guest vCPU)
 *   REG_STATUS   (read)  1 once the device is ready (the queue of this frontend is mapped)
 * The page is a posted range of its IOREQ server, which has a buffered ring:
 * the writes are posted (buffered ioreqs: the vCPU does not wait for them,
 * as a PCIe MMIO write is posted), and a read of REG_STATUS is the flushing
 * read — the device model applies every posted write of that vCPU before
 * it answers (docs/ioreq.md §13). So the driver reads REG_STATUS after a
 * doorbell before it looks at the command's result.
 * Command queue: a guest RAM page, granted to the backend and mapped by it;
 * slot k = words [k·CMD_WORDS, (k+1)·CMD_WORDS): OP, RES, A0, A1, A2, STATUS, RESULT.
 */
export const REG_QUEUE = 0x0;
export const REG_DOORBELL = 0x4;
export const REG_STATUS = 0x8;

export const CMD_WORDS = 8;
export const CMD = { OP: 0, RES: 1, A0: 2, A1: 3, A2: 4, STATUS: 5, RESULT: 6 } as const;
export const CMD_STATUS = { IDLE: 0, PENDING: 1, DONE: 2, ERROR: 3 } as const;
export const OP = {
  CREATE_BLOB: 1, // A0 pages, A1 backing (0 RAM, 1 BAR)
  MAP_BLOB: 2, // A0 frontend gfn
  UNMAP_BLOB: 3,
  CHECK_BLOB: 4, // A0 pattern: RESULT = words dom0 sees that differ from it
  DESTROY_BLOB: 5,
  CREATE_USERPTR: 6, // A0 frontend gfn, A1 pages: the pages are Stolen
  GPU_RUN: 7, // A0 value: the GPU engine writes pattern(value) into the userptr pages
  RELEASE_USERPTR: 8, // the pages are Returned
  DISCARD_USERPTR: 9, // the guest will not take the pages back (it unmapped the buffer): dom0 frees them
} as const;

/** Resources per frontend, pages per blob, and the grant ref of the queue. */
export const RES_PER_FE = 32;
export const MAX_BLOB_PAGES = 8;
/**
 * The device model's blob pool in its backend's RAM (device-model.ts): the
 * backing of frontend f's resource r is at POOL_GFN + (f × RES_PER_FE + r)
 * × MAX_BLOB_PAGES, under the designs whose blobs are the backend's memory
 * (the primitives, lending).
 */
export const POOL_GFN = 64;
/** Pages of RAM the backend needs for frontend `fe`'s pool slots below resource `top` (render blobs: 0…15; the rest: all). */
export const gpuPoolPagesFor = (fe: number, top = RES_PER_FE): number => POOL_GFN + (fe * RES_PER_FE + top) * MAX_BLOB_PAGES;
/** dom0's MMU notifier evicts this many mapped RAM blobs per second at rest (a device's `evictions_per_s`). */
export const DEFAULT_EVICTIONS_PER_S = 20;
export const QUEUE_REF = 1;
/**
 * What the device model answers a FAULT on a gfn it has no page for (a
 * buffer released, or never there): `fault`, an injected guest fault; or,
 * under lending, `zero`, a zeroed page of its own lent at the gfn and the
 * access retried (the RFC's rule 6: the lender's userspace chooses).
 */
export const MISSING_PAGE = ['fault', 'zero'] as const;
export type MissingPage = (typeof MISSING_PAGE)[number];
/** The guest's gfn 0 is its command queue page. */
export const QUEUE_GFN = 0;
/** Words of each page a blob check and a GPU run cover. */
export const CHECK_WORDS = 16;

/** What the GPU writes, and what a guest draws: word w of page p. */
export function pattern(value: number, page: number, word: number): number {
  return (Math.imul(value ^ 0x9e3779b9, 0x85ebca6b) + page * 977 + word * 31) | 0;
}

/**
 * The attacks a hostile frontend plays under each design by default (an
 * attack list in the topology overrides it): those against what the design
 * shares (the primitives: every attack of docs/semantics.md §7 but
 * die-while-mapped, which ends the guest). Under grants and pins the buffer is the guest's own RAM, so
 * hypercalls on it, ballooning it or faulting on it attack nothing; what a
 * guest can do there is end access under dom0's map (grants), balloon a
 * page dom0 pins (pins), and exhaust and flip its grant table.
 */
export const DESIGN_ATTACKS: Record<string, readonly string[]> = {
  primitives: ['grant-then-steal', 'hypercall-on-mapped', 'balloon-mapped', 'flip-grant', 'exhaust-grants', 'exhaust-maptrack', 'exhaust-ioreq', 'race-revoke', 'nested-map-evasion', 'fault-storm', 'memop-probe', 'steal-reuse'],
  lending: ['hypercall-on-mapped', 'balloon-mapped', 'grant-mapped', 'fault-storm', 'flip-grant', 'nested-map-evasion', 'exhaust-grants', 'exhaust-maptrack', 'exhaust-ioreq', 'race-revoke', 'memop-probe'],
  grants: ['end-while-mapped', 'flip-grant', 'exhaust-grants', 'exhaust-maptrack', 'exhaust-ioreq', 'race-revoke'],
  'pinned-userptr': ['balloon-pinned', 'flip-grant', 'exhaust-grants', 'exhaust-maptrack', 'exhaust-ioreq', 'race-revoke'],
};
