/**
 * The domain table: Xen's `struct domain`, one fixed record per domid.
 *
 * Writers: STATE by compareExchange (domain.ts transition function);
 * TOT_PAGES under the domain's page_alloc lock (read lock-free by
 * anyone); MAX_PAGES under page_alloc (domctl max_mem); FLUSH_EPOCH by
 * Atomics.add from any remover of a p2m entry; the lock ids and the p2m
 * slice are written once at creation before STATE publishes RUNNING.
 */
import { MAX_DOMAINS } from './constants.js';
import { expectBytes } from './region.js';

export const DS = { FREE: 0, CREATING: 1, RUNNING: 2, CRASHED: 3, DYING: 4, ZOMBIE: 5 } as const;
export type DomainState = (typeof DS)[keyof typeof DS];
export const DS_NAMES = ['free', 'creating', 'running', 'crashed', 'dying', 'zombie'] as const;

export const MAX_IOMEM_RANGES = 8;

export const DOM = {
  STATE: 0,
  TOT_PAGES: 1,
  MAX_PAGES: 2,
  REFCNT: 3, // get_domain/put_domain references held by other domains' operations
  NR_VCPUS: 4,
  VCPU_BASE: 5, // first slot in the vCPU table
  FLUSH_EPOCH: 6,
  P2M_BASE: 7,
  P2M_SIZE: 8,
  PRIVILEGED: 9,
  GENERATION: 10, // bumped at each creation in this slot
  LOCK_P2M: 11,
  LOCK_PAGE_ALLOC: 12,
  LOCK_GRANT: 13,
  LOCK_MAPTRACK: 14,
  ACTIVE_LOCK_BASE: 15,
  NR_IOMEM: 16,
  IOMEM: 17, // MAX_IOMEM_RANGES × (first mfn, count)
  /** 1 while max_pages was set below tot_pages by domctl (Xen lets a domain ratchet down). */
  RATCHET: 17 + 2 * MAX_IOMEM_RANGES,
  /** domid + 1 of the domain running this one's IOREQ server (its backend), 0 if none. */
  BACKEND: 18 + 2 * MAX_IOMEM_RANGES,
  LOCK_IOREQ: 19 + 2 * MAX_IOMEM_RANGES,
  /** The lock of the domain's buffered ioreq rings (Xen: each server's bufioreq_lock). */
  LOCK_BUFIOREQ: 20 + 2 * MAX_IOMEM_RANGES,
  WORDS: 21 + 2 * MAX_IOMEM_RANGES,
} as const;

export class DomainTable {
  readonly w: Int32Array;
  static bytes(nd = MAX_DOMAINS): number {
    return nd * DOM.WORDS * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly nd = MAX_DOMAINS,
  ) {
    expectBytes('domains', sab, DomainTable.bytes(nd));
    this.w = new Int32Array(sab);
  }
  at(d: number, field: number): number {
    return Atomics.load(this.w, d * DOM.WORDS + field);
  }
  /** The domids whose slot is not FREE (running, crashed, dying or zombie). */
  inUse(): number[] {
    const out: number[] = [];
    for (let d = 0; d < this.nd; d++) if (this.state(d) !== DS.FREE) out.push(d);
    return out;
  }
  set(d: number, field: number, v: number): void {
    Atomics.store(this.w, d * DOM.WORDS + field, v);
  }
  add(d: number, field: number, delta: number): number {
    return Atomics.add(this.w, d * DOM.WORDS + field, delta) + delta;
  }
  cas(d: number, field: number, expected: number, v: number): boolean {
    return Atomics.compareExchange(this.w, d * DOM.WORDS + field, expected, v) === expected;
  }
  state(d: number): DomainState {
    return this.at(d, DOM.STATE) as DomainState;
  }
  /** Index of the domain's epoch word, for Atomics.wait/load on `w` directly. */
  epochIndex(d: number): number {
    return d * DOM.WORDS + DOM.FLUSH_EPOCH;
  }
}
