/**
 * How a GPU buffer is shared under each memory-sharing design (docs/designs.md):
 * one interface, one adapter per design, so the GPU workloads (`render`,
 * `compute-svm`, `adversary`, and dom0's memory-pressure storm) run the same
 * on every design and differ only where the design does.
 *
 *   design          whose memory        dom0 reaches it by      taken back by            a later frontend access
 *   primitives      dom0's (blob)       its own RAM / BAR       Revoke (dm_op)           faults to dom0's IOREQ server
 *                   the frontend's      Steal (userptr)         Return
 *   lending         dom0's (lent)       its own RAM             reclaim (dm_op)          faults to the lender, which
 *                                                                                        lends a page again (RETRY)
 *   grants          the frontend's      grant map (gntdev)      the frontend's           reaches its own RAM (no fault);
 *                                                               end-access, refused      the backend's map is gone
 *                                                               until dom0 unmaps
 *   pinned-userptr  the frontend's      foreign map (the pin)   the buffer's destroy     reaches its own RAM (no fault)
 *
 * dom0's memory pressure (device-model.ts gpuKernel) evicts a shared buffer
 * where the design lets it — primitives Revoke it, lending reclaims it and
 * migrates its contents to another page of the lender's (the RFC: "usually a
 * different one") — and is refused where it does not: a granted or pinned
 * page is the frontend's and dom0 holds a reference it cannot drop
 * ("evictions refused").
 *
 * Frontend side: FrontendSharing (the driver's). Backend side:
 * BackendSharing (the device model's), one adapter per design.
 */
import type { GuestCpu } from '../../hypervisor/public/guest.js';
import { ACCESS } from '../../hypervisor/public/guest.js';
import { domid, gfn, grantHandle, grantRef } from '../../hypervisor/public/types.js';
import { EINVAL } from '../../hypervisor/public/errno.js';
import type { GpuFrontendEnv } from '../workload.js';
import { bump } from '../counters.js';
import { CHECK_WORDS, MAX_BLOB_PAGES } from './protocol.js';

export const SHARING_DESIGNS = ['primitives', 'lending', 'grants', 'pinned-userptr'] as const;
export type SharingDesign = (typeof SHARING_DESIGNS)[number];

export function sharingDesign(name: string | undefined): SharingDesign {
  const d = name ?? 'primitives';
  if (!(SHARING_DESIGNS as readonly string[]).includes(d)) throw new Error(`no GPU sharing adapter for design '${d}' (known: ${SHARING_DESIGNS.join(', ')})`);
  return d as SharingDesign;
}

/** The frontend's buffers are its own RAM under these designs (it grants or lends nothing of dom0's). */
const OWN_RAM: ReadonlySet<SharingDesign> = new Set(['grants', 'pinned-userptr']);

/**
 * Frontend gfns of its own-RAM buffers (grants, pinned userptr): resource r
 * at RAM_BUF_GFN + (r mod 16) × MAX_BLOB_PAGES — the userptr pages
 * compute-svm always used (driver.ts), and the same place for render blobs.
 */
export const RAM_BUF_GFN = 16;
/** Grant refs of a buffer's pages (grants): ref GRANT_REF_BASE + (r mod 16) × MAX_BLOB_PAGES + page; below the adversary's own refs (100…). */
export const GRANT_REF_BASE = 2;
const slotOf = (res: number): number => res % 16;
export const bufferRef = (res: number, page: number): number => GRANT_REF_BASE + slotOf(res) * MAX_BLOB_PAGES + page;

interface Report {
  out: Record<string, number>;
  samples: Record<string, number[]>;
  fails: number;
}

/** The frontend's part of sharing a buffer. */
export class FrontendSharing {
  readonly design: SharingDesign;
  /** The buffer is the frontend's own RAM: it keeps it after the backend lets go, and a later access reaches it. */
  readonly ownRam: boolean;
  /** A userptr's pages are the frontend's again once released (Return; grants and pins never took them). Lent memory is not. */
  readonly userptrComesBack: boolean;
  /** Blobs may be backed by the device's BAR (only a Map can put a BAR in a guest's p2m; a BAR is not lent). */
  readonly bar: boolean;
  /** Lending with zero pages: an access where dom0 has nothing to lend reads a zeroed page instead of faulting. */
  readonly zeroPages: boolean;

  constructor(
    private readonly cpu: GuestCpu,
    private readonly env: GpuFrontendEnv,
    private readonly backend: number,
    private readonly report: Report,
    design: string | undefined,
  ) {
    this.design = sharingDesign(design);
    this.ownRam = OWN_RAM.has(this.design);
    this.userptrComesBack = this.design !== 'lending';
    this.bar = this.design === 'primitives';
    this.zeroPages = this.design === 'lending' && env.missing_page === 'zero';
  }

  /**
   * After dom0 took a buffer of its own memory back (Revoke, reclaim), what
   * an access at `g` comes to: a fault, or — where the lender answers with
   * zero pages — a zeroed page; `reached` is anything else (the buffer, or
   * a page that is not zero).
   */
  afterRevoke(g: number): 'fault' | 'zero' | 'reached' {
    const got = this.cpu.read32(gfn(g), 0);
    if (this.cpu.last_access !== ACCESS.OK) return 'fault';
    return this.zeroPages && got === 0 ? 'zero' : 'reached';
  }

  /** The same, counted: `after_revoke_faults`, `after_revoke_zero_pages`, or a failure. */
  checkGone(g: number): void {
    const how = this.afterRevoke(g);
    if (how === 'reached') this.report.fails++;
    else bump(this.report.out, how === 'fault' ? 'after_revoke_faults' : 'after_revoke_zero_pages');
  }

  /** Where the frontend reaches buffer `res`: its own RAM, or the device window where dom0 maps or lends it. */
  bufferGfn(res: number): number {
    return this.ownRam ? RAM_BUF_GFN + slotOf(res) * MAX_BLOB_PAGES : this.env.window_gfn + res * MAX_BLOB_PAGES;
  }

  /** Where a userptr (shared virtual memory) buffer lives: the primitives Steal RAM; lending lends into the window. */
  userptrGfn(res: number): number {
    return this.design === 'lending' ? this.env.window_gfn + res * MAX_BLOB_PAGES : RAM_BUF_GFN + slotOf(res) * MAX_BLOB_PAGES;
  }

  /** Before the backend shares the buffer: grants — grant its pages to the backend (GTF_permit_access). */
  offer(res: number, at: number, pages: number): void {
    if (this.design !== 'grants') return;
    for (let p = 0; p < pages; p++) this.cpu.grants.grant_access(grantRef(bufferRef(res, p)), domid(this.backend), gfn(at + p), false);
  }

  /** The backend never mapped what was offered (it refused): take the grants back; nothing maps them. */
  cancel(res: number, pages: number): void {
    if (this.design !== 'grants') return;
    for (let p = 0; p < pages; p++) this.endAccess(res, p, 'cancel');
  }

  /**
   * Take the buffer back. `unshare` is the device's command that makes dom0
   * let go of it (UNMAP_BLOB, RELEASE_USERPTR); its result is returned.
   * grants: the frontend first ends access — refused while dom0 maps the
   * page (`end_access_refused`: revocation needs the backend) — then asks
   * dom0 to unmap, then ends access, which must succeed; the time from the
   * first try to the last is a `reclaim_us` sample.
   */
  withdraw(res: number, pages: number, unshare: () => number): number {
    if (this.design !== 'grants') return unshare();
    const t0 = this.cpu.now_us();
    const ended = new Array<boolean>(pages).fill(false);
    let refused = 0;
    for (let p = 0; p < pages; p++) {
      ended[p] = this.cpu.grants.end_access(grantRef(bufferRef(res, p)));
      if (!ended[p]) refused++;
    }
    if (refused > 0) bump(this.report.out, 'end_access_refused', refused);
    const rc = unshare();
    if (rc !== 0) return rc; // dom0 did not unmap (going away with the host): the grants stay, nothing to judge
    for (let p = 0; p < pages; p++) if (!ended[p]) this.endAccess(res, p, 'after_unmap');
    (this.report.samples['reclaim_us'] ??= []).push(this.cpu.now_us() - t0);
    return 0;
  }

  private endAccess(res: number, p: number, when: string): void {
    if (this.cpu.grants.end_access(grantRef(bufferRef(res, p)))) return;
    bump(this.report.out, `failed_end_access_${when}`);
    this.report.fails++;
  }
}

/** A buffer as the device model keeps it (device-model.ts's resource table). */
export interface BackendBuffer {
  pages: number;
  bar: boolean;
  /** dom0's own memory behind a blob or lent buffer: a dom0 gfn, or a BAR mfn; −1 for none. */
  backing: number;
  /** The frontend gfn of the buffer's first page. */
  at: number;
  /** dom0 gfn where dom0 reaches the frontend's pages (stolen, grant-mapped or pinned), −1 for none. */
  into: number;
  /** grants: the maptrack handle of each page's grant map. */
  handles: number[];
  /** primitives, lending: the id of the Map or lend. */
  map_id: number;
}

/** What the device model lends an adapter. */
export interface BackendContext {
  cpu: GuestCpu;
  report: Report;
  /** A failed check: an answer the design's rules would not give. */
  failed(what: string): void;
  /** A free chunk of MAX_BLOB_PAGES dom0 gfns to map frontend pages at, or −1. */
  freeChunk(): number;
  /** The other page of the lender's pool for a buffer's backing (where an eviction migrates it), or −1 for none. */
  altBacking(backing: number): number;
  /** Lending: the device model lends zero pages at gfns it has nothing for (protocol.ts MISSING_PAGE). */
  zeroPages: boolean;
}

/** The device model's part of sharing a buffer. */
export interface BackendSharing {
  readonly design: SharingDesign;
  /** Make the buffer reachable by both sides: fills `into`, `handles`, `map_id`. 0 or a negative errno (nothing done). */
  share(fe: number, res: number, b: BackendBuffer): number;
  /** Let go of it (the buffer's release): 0, or a failed check was counted. */
  unshare(fe: number, b: BackendBuffer): number;
  /**
   * dom0's memory pressure wants the buffer's memory: `evicted` (the
   * frontend's next access faults to dom0, whose answer is share() again),
   * or `refused` (the design does not let dom0 take it).
   */
  evict(fe: number, b: BackendBuffer): 'evicted' | 'refused';
  /** Where dom0 reads and writes the buffer's contents. */
  dataGfn(b: BackendBuffer): number;
}

export function backendSharing(design: string | undefined, ctx: BackendContext): BackendSharing {
  switch (sharingDesign(design)) {
    case 'primitives':
      return mapping('primitives', ctx);
    case 'lending':
      return mapping('lending', ctx);
    case 'grants':
      return granting(ctx);
    case 'pinned-userptr':
      return pinning(ctx);
  }
}

/**
 * primitives and lending: dom0 puts its own memory in the frontend's p2m
 * (Map / lend, the same dm_op) and takes it out again (Revoke / reclaim),
 * whenever it likes. Lending's eviction migrates the contents to another
 * page of dom0's before the fault lends it (the RFC's lender supplies "a
 * different page"); the primitives map the same backing again.
 */
function mapping(design: 'primitives' | 'lending', ctx: BackendContext): BackendSharing {
  const { cpu } = ctx;
  const revoke = (b: BackendBuffer, what: string): number => {
    const rc = cpu.hc.dm_revoke({ id: b.map_id });
    // Revoke/reclaim of a mapping dom0 made "never fails for valid arguments" (the seed; the RFC: never permanently).
    if (rc !== 0) ctx.failed(`${what}_revoke_got_${rc}`);
    return rc;
  };
  return {
    design,
    share(fe, _res, b) {
      // Zero pages the device model lent in the buffer's window meanwhile go first (a lend needs empty gfns):
      // the buffer is not lent now, so they are all this lender has there.
      if (ctx.zeroPages && cpu.hc.dm_revoke({ fe: domid(fe), gfn: gfn(b.at), count: MAX_BLOB_PAGES }) !== 0) ctx.failed('zero_page_reclaim');
      const src = b.bar ? ({ kind: 'bar', mfn: b.backing } as const) : ({ kind: 'ram', gfn: gfn(b.backing) } as const);
      const r = cpu.hc.dm_map(domid(fe), src, b.pages, gfn(b.at), 'mmio_direct');
      if (r.rc === 0) b.map_id = r.id;
      return r.rc;
    },
    unshare: (_fe, b) => revoke(b, 'unmap'),
    evict(_fe, b) {
      revoke(b, 'eviction');
      const alt = design === 'lending' && !b.bar ? ctx.altBacking(b.backing) : -1;
      if (alt >= 0) {
        // Migrate: the borrower reaches neither page now, so the copy is whole.
        for (let p = 0; p < b.pages; p++) for (let w = 0; w < CHECK_WORDS; w++) cpu.write32(gfn(alt + p), w * 4, cpu.read32(gfn(b.backing + p), w * 4));
        b.backing = alt;
        bump(ctx.report.out, 'migrations');
      }
      return 'evicted';
    },
    dataGfn: (b) => (b.into >= 0 ? b.into : b.backing),
  };
}

/** After dom0 let go of pages it reached at `into`: an access there must not reach them any more. */
function checkGone(ctx: BackendContext, b: BackendBuffer, what: string): void {
  for (let p = 0; p < b.pages; p++) {
    ctx.cpu.read32(gfn(b.into + p), 0);
    if (ctx.cpu.last_access === ACCESS.OK) ctx.failed(`${what}_still_reached`);
  }
}

/**
 * grants (the status quo): the frontend granted the buffer's pages; dom0
 * maps them (GNTTABOP_map_grant_ref into a chunk of its own gfns, as gntdev
 * does) and unmaps them; it can evict nothing (the pages are the
 * frontend's, and the map pins them).
 */
function granting(ctx: BackendContext): BackendSharing {
  const { cpu } = ctx;
  const unmapAll = (b: BackendBuffer): number => {
    let bad = 0;
    for (const h of b.handles) if (cpu.hc.gnttab_unmap_grant_ref(grantHandle(h)) !== 0) bad++;
    b.handles = [];
    return bad;
  };
  return {
    design: 'grants',
    share(fe, res, b) {
      const into = ctx.freeChunk();
      if (into < 0) return -EINVAL;
      b.handles = [];
      for (let p = 0; p < b.pages; p++) {
        const r = cpu.hc.gnttab_map_grant_ref({ dom: domid(fe), ref: grantRef(bufferRef(res, p)), host_gfn: gfn(into + p), readonly: false });
        if (r.status !== 0) {
          bump(ctx.report.out, `grant_map_refused_${-r.status}`);
          unmapAll(b);
          return -EINVAL;
        }
        b.handles.push(r.handle as number);
      }
      b.into = into;
      return 0;
    },
    unshare(_fe, b) {
      if (unmapAll(b) > 0) ctx.failed('grant_unmap');
      checkGone(ctx, b, 'grant_unmap');
      b.into = -1;
      return 0;
    },
    evict: () => 'refused',
    dataGfn: (b) => b.into,
  };
}

/**
 * pinned userptr (AMD's v3): dom0 pins the frontend's pages for the
 * buffer's lifetime — a foreign map of each (its page reference is the
 * pin) — and unpins them when the buffer goes; dom0's memory pressure
 * cannot evict them.
 */
function pinning(ctx: BackendContext): BackendSharing {
  const { cpu } = ctx;
  const unpin = (into: number, pages: number): number => {
    let bad = 0;
    for (let p = 0; p < pages; p++) if (cpu.hc.remove_from_physmap(gfn(into + p)) !== 0) bad++;
    return bad;
  };
  return {
    design: 'pinned-userptr',
    share(fe, _res, b) {
      const into = ctx.freeChunk();
      if (into < 0) return -EINVAL;
      for (let p = 0; p < b.pages; p++) {
        const rc = cpu.hc.foreign_map(domid(fe), gfn(b.at + p), gfn(into + p));
        if (rc !== 0) {
          bump(ctx.report.out, `pin_refused_${-rc}`);
          unpin(into, p);
          return rc;
        }
      }
      b.into = into;
      return 0;
    },
    unshare(_fe, b) {
      if (unpin(b.into, b.pages) > 0) ctx.failed('unpin');
      checkGone(ctx, b, 'unpin');
      b.into = -1;
      return 0;
    },
    evict: () => 'refused',
    dataGfn: (b) => b.into,
  };
}
