/**
 * The sequential reference model of the machine (docs/primitives.md).
 *
 * Plain data, one thread, no SharedArrayBuffers and no locks: frames with
 * owner / reference count / PGC_allocated and their bytes, domains with
 * their p2m (a Map per domain), grant tables with pins, maptrack handles,
 * the mapping registry of Map / Steal records, iomem_caps and IOREQ
 * servers. Every operation is atomic here; the real, concurrent
 * implementation is correct if what it shows a scenario — status codes,
 * values read, tot_pages, which gfns are RAM / Map'd / revoked — can be
 * produced by applying the same steps to this model in *some* order that
 * respects each thread's order (see interleave.ts).
 *
 * MFNs are never compared with the real implementation: the allocator here
 * simply hands out the lowest free frame. Frames are scrubbed when freed, so
 * the choice of frame is not observable.
 *
 * Guest and backend errors are return values; only a caller bug in the
 * harness (an access width that is not 1/2/4/8, an offset past the page)
 * throws a RangeError.
 */
import { GRANT_ENTRIES_PER_FRAME, INITIAL_NR_GRANT_FRAMES, MAPTRACK_PER_FRAME, MAX_IOREQ_SERVERS_PER_DOMAIN, P2M_DEFAULT_PADDR_BITS, XEN_MAX_MAPTRACK_FRAMES } from '../layout/constants.js';
import { grantStorage } from '../layout/grants.js';
import { LEVEL_SPAN } from '../layout/p2m.js';
import {
  E2BIG, EBUSY, EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, ENXIO, EPERM, ESRCH,
  GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_general_error, GNTST_no_space, GNTST_okay,
} from '../public/errno.js';
import { GTF_permit_access, GTF_reading, GTF_readonly, GTF_sub_page, GTF_type_mask, GTF_writing, type P2mTypeName } from '../public/types.js';

/** docs/primitives.md, common check 1. */
export const MAX_PAGES_PER_OP = 512;
/** Disjoint ranges a domain's iomem_caps may hold (constants.ts MAX_IOMEM_RANGES). */
export const MAX_IOMEM_RANGES = 8;
/** One past the highest MFN an iomem range may name (constants.ts IOMEM_MFN_LIMIT). */
export const IOMEM_MFN_LIMIT = 2 ** 31;
/** Default size of the mapping registry (constants.ts MAX_MAPPINGS): live Map records + live Steal records. */
export const DEFAULT_MAX_MAPPINGS = 2048;
/** I/O ranges per IOREQ server (constants.ts MAX_IOREQ_RANGES). */
export const MAX_IOREQ_RANGES = 8;
/** Pages of the per-domain hypercall scratch buffer (guest-cpu.ts: 4 pages per vCPU). */
export const SCRATCH_PAGES = 4;

// ------------------------------------------------------------------ types

export type DomainStateName = 'running' | 'crashed' | 'dying' | 'zombie' | 'free';
export type P2mView = 'ram_rw' | 'ram_ro' | 'mmio_direct' | 'mmio_dm' | 'revoked' | 'grant_map_rw' | 'grant_map_ro' | 'map_foreign';
export type MapType = 'mmio_direct' | 'mmio_dm';
export type AccessOutcome = 'ok' | 'null_io' | 'fault' | 'ioreq' | 'gp';
export type FaultPolicy = 'remap' | 'fail' | 'none';
export type MappingKind = 'ram' | 'bar' | 'nested' | 'steal';

export type MapSource = { kind: 'ram'; gfn: number } | { kind: 'bar'; mfn: number };
export type RevokeTarget = { id: number } | { fe: number; gfn: number; count: number };

export interface PrimitiveResult {
  rc: number;
  index: number;
  id: number;
}
export interface ReturnResult {
  rc: number;
  index: number;
}
export interface GrantMapResult {
  status: number;
  handle: number;
}
export interface ReadResult {
  value: bigint;
  outcome: AccessOutcome;
}
export interface WriteResult {
  outcome: AccessOutcome;
}

/** Whatever one step of a scenario can produce. */
export type Outcome =
  | { rc: number }
  | ReturnResult
  | PrimitiveResult
  | GrantMapResult
  | ReadResult
  | WriteResult
  | { ok: boolean }
  | { none: true };

export interface ModelDomainConfig {
  /** RAM populated at gfns 0 … memory_pages − 1, as the toolstack does at boot. */
  memory_pages: number;
  max_pages: number;
  privileged: boolean;
  /** The domain running this one's IOREQ server (authority for the primitives). */
  backend?: number;
  /** Guest physical address width (default 36): gfns below 2^(paddr_bits − 12) exist (hypervisor/layout/p2m.ts). */
  paddr_bits?: number;
  /** Grant frames its table may grow to (default XEN_MAX_GRANT_FRAMES), within the storage (layout/grants.ts). */
  max_grant_frames?: number;
  /** Maptrack frames it may grow (default XEN_MAX_MAPTRACK_FRAMES): grant maps held at once ≤ × MAPTRACK_PER_FRAME. */
  max_maptrack_frames?: number;
}

export interface ModelBarConfig {
  owner: number;
  nr_pages: number;
  base_mfn: number;
}

export interface ModelConfig {
  page_size_bytes: number;
  nr_frames: number;
  /** Domain i has domid i. */
  domains: ModelDomainConfig[];
  /** Each BAR is put in its owner's iomem_caps at boot. */
  bars: ModelBarConfig[];
  /** Nested Map (and so transitive Revoke) allowed; default true. */
  transitive_revoke?: boolean;
  /**
   * Registry slots (default 2048): a Map takes one, a Steal two (its record
   * and its implicit Map) while any of its pages is still stolen.
   */
  max_mappings?: number;
}

export interface Observation {
  domains: Array<{ state: DomainStateName; tot_pages: number }>;
  p2m: Array<Array<[number, P2mView]>>;
  free_frames: number;
}

export interface MappingInfo {
  id: number;
  kind: MappingKind;
  be: number;
  fe: number;
  type: MapType;
  /** First source: be's gfn (ram, nested, steal: where be received the page) or first MFN (bar). */
  src: number;
  /** First frontend gfn. */
  at: number;
  count: number;
  /** Parent mapping of a nested Map, else 0. */
  parent: number;
  /** Pages not yet revoked. */
  live: number;
}

export interface PageInfo {
  type: P2mView;
  /** −1 for a revoked entry. */
  mfn: number;
  /** Owner of a RAM frame, −1 for BAR or none. */
  owner: number;
  /** General reference count including the allocation reference. */
  count: number;
  allocated: boolean;
  /** Domain the frame was stolen from, or −1. */
  stolen_from: number;
}

// ------------------------------------------------------------------ internal state

/** A p2m entry. Immutable: every update replaces the object. */
interface Entry {
  readonly t: P2mView;
  /** Frame (RAM or BAR); −1 when revoked. */
  readonly mfn: number;
  /** For a Map'd page: the mapping record id and page index; 0 / −1 otherwise. */
  readonly rec: number;
  readonly page: number;
  /** A revoked gfn: the backend whose mapping was revoked there (its IOREQ server gets the FAULTs); −1 otherwise. */
  readonly by: number;
}

interface GrantEntry {
  /** Low 16 bits of word 0: GTF_* including the status bits reading/writing. */
  flags: number;
  domid: number;
  frame: number;
}

interface ActiveEntry {
  rpin: number;
  wpin: number;
  /** Grantee domid + 1 while pinned, else 0. */
  domid: number;
  gfn: number;
  mfn: number;
}

interface Handle {
  granter: number;
  ref: number;
  gfn: number;
  ro: boolean;
}

interface IoreqServer {
  by: number;
  ranges: Array<{ start: number; count: number }>;
  fault_policy: FaultPolicy;
}

interface Dom {
  state: DomainStateName;
  tot_pages: number;
  max_pages: number;
  privileged: boolean;
  backend: number;
  /** One past the highest gfn: 2^(paddr_bits − 12). */
  gfn_limit: number;
  p2m: Map<number, Entry>;
  /**
   * The superpage entries of its p2m: first gfn → gfns covered (512: 2 MiB,
   * 512²: 1 GiB). Boot populates every aligned run of RAM as one, as
   * domain.ts populateRange does on a new machine (meminit_hvm's order).
   */
  supers: Map<number, number>;
  /** The 2 MiB ranges (gfn / 512) that have a 4 KiB table: any entry ever set there, or a split. Tables stay while the domain lives. */
  tabled: Set<number>;
  /** iomem_caps: sorted, disjoint, non-adjacent inclusive MFN ranges (a rangeset). */
  iomem: IomemSpan[];
  grants: Map<number, GrantEntry>;
  active: Map<number, ActiveEntry>;
  maptrack: Map<number, Handle>;
  /** Maptrack free list = mtFreed (top first) followed by mtFresh, mtFresh + 1, … (grants.ts reset). */
  mtFreed: number[];
  mtFresh: number;
  /** Grant maps it may hold at once (get_maptrack_handle's limit), and the handles stored. */
  mtLimit: number;
  mtStored: number;
  /** Entries its grant table has grown to (nr_grant_entries), and may grow to. */
  grantEntries: number;
  grantLimit: number;
  /** Server slots (index = the id ioreqServer returns); undefined = free. */
  ioreq: Array<IoreqServer | undefined>;
  scratch: Uint8Array | undefined;
}

interface IomemSpan {
  s: number;
  e: number;
}

/**
 * The rangeset a domain's iomem_caps is (Xen's rangeset.c): `spans` with
 * [s, e] added (join = true) or taken out, merged so that overlapping and
 * touching spans are one, sorted.
 */
function iomemUpdate(spans: readonly IomemSpan[], s: number, e: number, join: boolean): IomemSpan[] {
  const pieces: IomemSpan[] = [];
  for (const x of spans) {
    if (join || x.e < s || x.s > e) pieces.push({ ...x });
    else {
      if (x.s < s) pieces.push({ s: x.s, e: s - 1 });
      if (x.e > e) pieces.push({ s: e + 1, e: x.e });
    }
  }
  if (join) pieces.push({ s, e });
  pieces.sort((a, b) => a.s - b.s);
  const out: IomemSpan[] = [];
  for (const p of pieces) {
    const last = out[out.length - 1];
    if (last !== undefined && p.s <= last.e + 1) last.e = Math.max(last.e, p.e);
    else out.push(p);
  }
  return out;
}

interface Rec {
  id: number;
  kind: MappingKind;
  be: number;
  fe: number;
  type: MapType;
  src: number;
  at: number;
  count: number;
  parent: number;
  mfns: number[];
  live: boolean[];
  liveCount: number;
}

interface Stolen {
  fe: number;
  gfn: number;
  /** Id of the Steal's implicit Map. */
  id: number;
  /** Id of the Steal record (the id after the implicit Map's). */
  steal: number;
}

/** A Steal record: occupies a registry slot while any of its pages is still stolen. */
interface StealRec {
  be: number;
  fe: number;
  live: number;
}

const HOLE_FREE = -1;
/** Constructor tag for clone(): skip boot. Not exported, so only clone() can pass it. */
const CLONE: unique symbol = Symbol('clone');

function entry(t: P2mView, mfn: number, rec = 0, page = -1): Entry {
  return { t, mfn, rec, page, by: -1 };
}

/** A gfn revoked from backend `by`'s mapping: in the FAULT set of by's IOREQ server. */
function revokedBy(by: number): Entry {
  return { ...entry('revoked', -1), by };
}

function allOnes(width: number): bigint {
  return (1n << BigInt(8 * width)) - 1n;
}

// ------------------------------------------------------------------ the model

/** The superpages boot makes of RAM at gfns 0 … pages − 1: 1 GiB runs, then 2 MiB runs, where aligned (domain.ts populateRange). */
function bootSuperpages(pages: number): Map<number, number> {
  const out = new Map<number, number>();
  let g = 0;
  while (g < pages) {
    const span = [LEVEL_SPAN[3]!, LEVEL_SPAN[2]!].find((sp) => g % sp === 0 && g + sp <= pages);
    if (span === undefined) g++;
    else {
      out.set(g, span);
      g += span;
    }
  }
  return out;
}

export class Model {
  readonly page_size: number;
  readonly nr_frames: number;
  readonly transitive: boolean;
  readonly max_mappings: number;
  private readonly bars: readonly ModelBarConfig[];
  private readonly mfnLimit: number;

  private owner!: Int32Array;
  private count!: Int32Array;
  private allocated!: Uint8Array;
  private freeCount = 0;
  private lowFree = 0;
  /** Frame bytes by MFN (RAM and BAR); absent = zeros. Copy-on-write across clones. */
  private mem = new Map<number, Uint8Array>();
  private memOwned = new Set<number>();
  private stolen = new Map<number, Stolen>();
  private steals = new Map<number, StealRec>();
  private doms: Dom[] = [];
  /** Records with at least one live page. */
  private recs = new Map<number, Rec>();
  /** Records whose pages were all revoked: id → backend (for Revoke {id}). */
  private retired = new Map<number, number>();
  private nextId = 1;

  constructor(cfg: ModelConfig, clone?: typeof CLONE) {
    this.page_size = cfg.page_size_bytes;
    this.nr_frames = cfg.nr_frames;
    this.transitive = cfg.transitive_revoke ?? true;
    this.max_mappings = cfg.max_mappings ?? DEFAULT_MAX_MAPPINGS;
    this.bars = cfg.bars.map((b) => ({ ...b }));
    this.mfnLimit = this.bars.reduce((a, b) => Math.max(a, b.base_mfn + b.nr_pages), cfg.nr_frames);
    if (clone === CLONE) return;

    if (!Number.isInteger(cfg.page_size_bytes) || cfg.page_size_bytes < 8) throw new RangeError(`page_size_bytes ${cfg.page_size_bytes}`);
    if (!Number.isInteger(cfg.nr_frames) || cfg.nr_frames <= 0) throw new RangeError(`nr_frames ${cfg.nr_frames}`);
    for (const b of this.bars) {
      if (b.base_mfn < cfg.nr_frames) throw new RangeError(`BAR at mfn ${b.base_mfn} overlaps RAM`);
    }
    this.owner = new Int32Array(cfg.nr_frames).fill(-1);
    this.count = new Int32Array(cfg.nr_frames);
    this.allocated = new Uint8Array(cfg.nr_frames);
    this.freeCount = cfg.nr_frames;
    this.doms = cfg.domains.map((d) => ({
      state: 'running',
      tot_pages: 0,
      max_pages: d.max_pages,
      privileged: d.privileged,
      backend: d.backend ?? -1,
      gfn_limit: 2 ** ((d.paddr_bits ?? P2M_DEFAULT_PADDR_BITS) - 12),
      p2m: new Map(),
      supers: new Map(),
      tabled: new Set(),
      iomem: [],
      grants: new Map(),
      active: new Map(),
      maptrack: new Map(),
      mtFreed: [],
      mtFresh: 0,
      mtLimit: Math.min(grantStorage(d).handles, (d.max_maptrack_frames ?? XEN_MAX_MAPTRACK_FRAMES) * MAPTRACK_PER_FRAME),
      mtStored: grantStorage(d).handles,
      grantEntries: INITIAL_NR_GRANT_FRAMES * GRANT_ENTRIES_PER_FRAME,
      grantLimit: grantStorage(d).entries,
      ioreq: [],
      scratch: undefined,
    }));
    cfg.domains.forEach((d, i) => {
      const rc = this.populate(i, 0, d.memory_pages);
      if (d.memory_pages > 0 && rc !== d.memory_pages) throw new RangeError(`model: populating d${i}: ${rc}`);
      const x = this.doms[i]!;
      x.supers = bootSuperpages(d.memory_pages);
      x.tabled = new Set([...x.tabled].filter((r) => ![...x.supers].some(([g, span]) => r * LEVEL_SPAN[2]! >= g && r * LEVEL_SPAN[2]! < g + span)));
    });
    for (const b of this.bars) {
      const o = this.doms[b.owner];
      if (o === undefined) continue;
      const next = iomemUpdate(o.iomem, b.base_mfn, b.base_mfn + b.nr_pages - 1, true);
      if (next.length <= MAX_IOMEM_RANGES) o.iomem = next;
    }
  }

  /** A deep copy (frame bytes are shared copy-on-write). */
  clone(): Model {
    const c = new Model(
      { page_size_bytes: this.page_size, nr_frames: this.nr_frames, domains: [], bars: [...this.bars], transitive_revoke: this.transitive, max_mappings: this.max_mappings },
      CLONE,
    );
    c.owner = this.owner.slice();
    c.count = this.count.slice();
    c.allocated = this.allocated.slice();
    c.freeCount = this.freeCount;
    c.lowFree = this.lowFree;
    c.mem = new Map(this.mem);
    // Neither copy may now write a shared array in place.
    this.memOwned = new Set();
    c.memOwned = new Set();
    c.stolen = new Map(this.stolen);
    c.steals = new Map([...this.steals].map(([k, v]) => [k, { ...v }]));
    c.doms = this.doms.map((d) => ({
      ...d,
      p2m: new Map(d.p2m),
      supers: new Map(d.supers),
      tabled: new Set(d.tabled),
      iomem: d.iomem.map((r) => ({ ...r })),
      grants: new Map([...d.grants].map(([k, g]) => [k, { ...g }])),
      active: new Map([...d.active].map(([k, a]) => [k, { ...a }])),
      maptrack: new Map(d.maptrack),
      mtFreed: [...d.mtFreed],
      ioreq: d.ioreq.map((s) => (s === undefined ? undefined : { ...s, ranges: s.ranges.map((r) => ({ ...r })) })),
      scratch: d.scratch?.slice(),
    }));
    c.recs = new Map([...this.recs].map(([k, r]) => [k, { ...r, mfns: [...r.mfns], live: [...r.live] }]));
    c.retired = new Map(this.retired);
    c.nextId = this.nextId;
    c.splits = this.splits;
    return c;
  }

  // ================================================================ helpers

  private dom(d: number): Dom | undefined {
    return Number.isInteger(d) && d >= 0 ? this.doms[d] : undefined;
  }
  private running(d: number): boolean {
    return this.dom(d)?.state === 'running';
  }
  private privileged(d: number): boolean {
    return this.dom(d)?.privileged === true;
  }
  private inP2m(d: number, gfn: number): boolean {
    const x = this.dom(d);
    return x !== undefined && Number.isInteger(gfn) && gfn >= 0 && gfn < x.gfn_limit;
  }
  private ent(d: number, gfn: number): Entry | undefined {
    return this.dom(d)?.p2m.get(gfn);
  }
  private isRam(mfn: number): boolean {
    return mfn >= 0 && mfn < this.nr_frames;
  }
  private authority(be: number, fe: number): boolean {
    return this.dom(fe)?.backend === be || this.privileged(be);
  }

  /** get_page: a general reference on a RAM frame owned by d. */
  private getPage(mfn: number, d: number): boolean {
    if (!this.isRam(mfn) || this.count[mfn]! === 0 || this.owner[mfn] !== d) return false;
    this.count[mfn]! += 1;
    return true;
  }

  private putPage(mfn: number): void {
    if (!this.isRam(mfn)) return;
    const n = this.count[mfn]! - 1;
    if (n < 0) throw new Error(`model: put_page on mfn ${mfn} with count 0`);
    this.count[mfn] = n;
    if (n === 0) this.freeFrame(mfn);
  }

  /** Drop the allocation reference (guest_remove_page). */
  private relinquish(mfn: number): void {
    if (this.allocated[mfn] === 0) return;
    this.allocated[mfn] = 0;
    this.putPage(mfn);
  }

  private freeFrame(mfn: number): void {
    const o = this.owner[mfn]!;
    const d = this.dom(o);
    this.owner[mfn] = HOLE_FREE;
    this.allocated[mfn] = 0;
    this.mem.delete(mfn); // scrubbed
    this.memOwned.delete(mfn);
    this.unsteal(mfn);
    this.freeCount++;
    if (mfn < this.lowFree) this.lowFree = mfn;
    if (d !== undefined) {
      d.tot_pages--;
      if (d.tot_pages === 0 && d.state === 'zombie') d.state = 'free';
    }
  }

  /** The frame is no longer stolen (returned, freed, or its Steal record dropped). */
  private unsteal(mfn: number): void {
    const st = this.stolen.get(mfn);
    if (st === undefined) return;
    this.stolen.delete(mfn);
    const s = this.steals.get(st.steal);
    if (s !== undefined && --s.live === 0) this.steals.delete(st.steal);
  }

  /** Registry slots in use: live Map records and live Steal records. */
  private registryUsed(): number {
    return this.recs.size + this.steals.size;
  }

  /** alloc_domheap_page: the lowest free frame, owned by d. */
  private allocFrame(d: number): number {
    if (this.freeCount === 0) return -ENOMEM;
    const x = this.dom(d);
    if (x === undefined || x.state !== 'running') return -ESRCH;
    if (x.tot_pages >= x.max_pages) return -E2BIG;
    let mfn = this.lowFree;
    while (this.owner[mfn] !== HOLE_FREE || this.count[mfn] !== 0) mfn++;
    this.lowFree = mfn + 1;
    this.freeCount--;
    this.owner[mfn] = d;
    this.count[mfn] = 1;
    this.allocated[mfn] = 1;
    x.tot_pages++;
    return mfn;
  }

  private bytesOf(mfn: number): Uint8Array | undefined {
    return this.mem.get(mfn);
  }
  private writableBytes(mfn: number): Uint8Array {
    let b = this.mem.get(mfn);
    if (b !== undefined && this.memOwned.has(mfn)) return b;
    b = b === undefined ? new Uint8Array(this.page_size) : b.slice();
    this.mem.set(mfn, b);
    this.memOwned.add(mfn);
    return b;
  }

  // ================================================================ memory_op

  /**
   * XENMEM_populate_physmap of gfn … gfn + count − 1: the extents done, up
   * to the first failure (do_memory_op's nr_done). Per extent, as
   * memory.ts populateExtent: the frame is charged first, then by what the
   * gfn holds — a hole is filled; RAM is replaced and the old page stays
   * allocated, unmapped; a Map'd mmio_dm or revoked gfn keeps its mapping
   * and the new page stays allocated, unmapped; anything else (mmio_direct,
   * grant and foreign maps) crashes the domain (p2m_add_page).
   */
  populate(d: number, gfn: number, count: number): number {
    let done = 0;
    for (let i = 0; i < count; i++) {
      const g = gfn + i;
      if (!this.inP2m(d, g)) return done;
      const mfn = this.allocFrame(d);
      if (mfn < 0) return done;
      const x = this.dom(d)!;
      const e = x.p2m.get(g);
      if (e === undefined || e.t === 'ram_rw' || e.t === 'ram_ro') {
        this.pset(x, g, entry('ram_rw', mfn));
      } else if (e.t !== 'mmio_dm' && e.t !== 'revoked') {
        this.relinquish(mfn);
        this.crash(d);
        return done;
      }
      done++;
    }
    return done;
  }

  /** XENMEM_decrease_reservation: RAM (rw or ro) owned by d goes; the first other gfn ends it. Extents done. */
  balloonOut(d: number, gfn: number, count: number): number {
    let done = 0;
    for (let i = 0; i < count; i++) {
      const g = gfn + i;
      const e = this.ent(d, g);
      if (e === undefined || (e.t !== 'ram_rw' && e.t !== 'ram_ro') || this.owner[e.mfn] !== d) return done;
      this.pdel(this.dom(d)!, g);
      this.relinquish(e.mfn);
      done++;
    }
    return done;
  }

  // ================================================================ grant tables

  private grantEntry(d: Dom, ref: number): GrantEntry {
    let g = d.grants.get(ref);
    if (g === undefined) {
      g = { flags: 0, domid: 0, frame: 0 };
      d.grants.set(ref, g);
    }
    return g;
  }
  /** A ref of x's table as it has grown (nr_grant_entries). */
  private static refOk(x: Dom, ref: number): boolean {
    return Number.isInteger(ref) && ref >= 0 && ref < x.grantEntries;
  }

  /**
   * gnttab_grant_foreign_access_ref: the whole entry is rewritten (status
   * bits included); a ref past the table grows it first, to the frames it
   * needs (gnttab_grow_table), up to its limit — past that, ignored.
   */
  grant(d: number, ref: number, to: number, gfn: number, readonly: boolean): void {
    const x = this.dom(d);
    if (x === undefined || !Number.isInteger(ref) || ref < 0 || ref >= x.grantLimit) return;
    x.grantEntries = Math.max(x.grantEntries, (Math.floor(ref / GRANT_ENTRIES_PER_FRAME) + 1) * GRANT_ENTRIES_PER_FRAME);
    x.grants.set(ref, { flags: GTF_permit_access | (readonly ? GTF_readonly : 0), domid: to & 0xffff, frame: gfn | 0 });
  }

  /** gnttab_end_foreign_access_ref: clears the flags unless reading/writing is set. */
  endGrant(d: number, ref: number): boolean {
    const x = this.dom(d);
    if (x === undefined || !Model.refOk(x, ref)) return false;
    const g = this.grantEntry(x, ref);
    if ((g.flags & (GTF_reading | GTF_writing)) !== 0) return false;
    g.flags = 0;
    return true;
  }

  /**
   * map_grant_ref's look-up of the granter (rcu_lock_domain_by_id): any
   * domain not yet freed — running, crashed, dying or a zombie (which still
   * has pages) — not only a running one.
   */
  private granterFound(d: number): boolean {
    const s = this.dom(d)?.state;
    return s === 'running' || s === 'crashed' || s === 'dying' || s === 'zombie';
  }

  /**
   * pinGrant (grant-table.ts) for a map: status, and the frame with a page
   * reference taken; a refusal leaves flags, pins and counts as they were.
   */
  private pin(rd: number, ref: number, ld: number, ro: boolean): { status: number; mfn: number } {
    const x = this.dom(rd)!;
    const g = this.grantEntry(x, ref);
    let act = x.active.get(ref);
    if (act === undefined) {
      act = { rpin: 0, wpin: 0, domid: 0, gfn: 0, mfn: 0 };
      x.active.set(ref, act);
    }
    const pinned = act.rpin + act.wpin > 0;
    const refuse = (status: number): { status: number; mfn: number } => {
      this.reduceStatus(g, act, ro);
      return { status, mfn: -1 };
    };
    // Pinned already: by ld only, and at most PIN_LIMIT pins of each kind.
    if (pinned && (act.domid !== ld + 1 || (ro ? act.rpin : act.wpin) >= Model.PIN_LIMIT)) return { status: GNTST_general_error, mfn: -1 };
    if (!pinned || (!ro && act.wpin === 0)) {
      // _set_status_v1: type and grantee only for an entry with no pins.
      if (!pinned && ((g.flags & (GTF_type_mask | GTF_sub_page)) !== GTF_permit_access || g.domid !== ld)) return { status: GNTST_general_error, mfn: -1 };
      if (!ro && (g.flags & GTF_readonly) !== 0) return { status: GNTST_general_error, mfn: -1 };
      g.flags |= GTF_reading | (ro ? 0 : GTF_writing);
    }
    if (!pinned) {
      const e = this.ent(rd, g.frame);
      const okType = e !== undefined && (e.t === 'ram_rw' || (ro && e.t === 'ram_ro'));
      if (!okType || !this.getPage(e.mfn, rd)) return refuse(GNTST_bad_page);
      act.domid = ld + 1;
      act.gfn = g.frame;
      act.mfn = e.mfn;
    } else if (!this.getPage(act.mfn, rd)) {
      return refuse(GNTST_general_error);
    }
    if (ro) act.rpin++;
    else act.wpin++;
    return { status: GNTST_okay, mfn: act.mfn };
  }

  /** Xen's GNTPIN_incr2oflow_mask: 8-bit pin counters take no pin once their top bit is set. */
  private static readonly PIN_LIMIT = 128;

  /** reduce_status_for_pin: drop the status bits the pins no longer justify. */
  private reduceStatus(g: GrantEntry, act: ActiveEntry, ro: boolean): void {
    if (!ro && act.wpin === 0) g.flags &= ~GTF_writing;
    if (act.rpin + act.wpin === 0) g.flags &= ~GTF_reading;
  }

  private unpin(rd: number, ref: number, ro: boolean): void {
    const x = this.dom(rd)!;
    const act = x.active.get(ref)!;
    const g = this.grantEntry(x, ref);
    const mfn = act.mfn;
    if (ro) act.rpin--;
    else act.wpin--;
    this.reduceStatus(g, act, ro);
    if (act.rpin + act.wpin === 0) act.domid = 0;
    this.putPage(mfn);
  }

  private maptrackAlloc(x: Dom): number {
    if (x.maptrack.size >= x.mtLimit) return -1;
    const h = x.mtFreed.pop();
    if (h !== undefined) return h;
    if (x.mtFresh >= x.mtStored) return -1;
    return x.mtFresh++;
  }

  /**
   * GNTTABOP_map_grant_ref by d of `from`'s grant `ref` at d's gfn `at`, in
   * map_grant_ref's order: granter, maptrack handle, ref, pin, host mapping
   * (outside d's p2m or not empty: GNTST_general_error, the pin undone).
   */
  mapGrant(d: number, from: number, ref: number, at: number, readonly: boolean): GrantMapResult {
    const fail = (status: number): GrantMapResult => ({ status, handle: -1 });
    if (!this.granterFound(from)) return fail(GNTST_bad_domain);
    const x = this.dom(d);
    if (x === undefined) return fail(GNTST_general_error); // no such caller (the model's own guard)
    const h = this.maptrackAlloc(x);
    if (h < 0) return fail(GNTST_no_space);
    const g = this.dom(from);
    const p = g !== undefined && Model.refOk(g, ref) ? this.pin(from, ref, d, readonly) : { status: GNTST_bad_gntref, mfn: -1 };
    if (p.status !== GNTST_okay) {
      x.mtFreed.push(h);
      return fail(p.status);
    }
    if (!this.inP2m(d, at) || x.p2m.has(at)) {
      this.unpin(from, ref, readonly);
      x.mtFreed.push(h);
      return fail(GNTST_general_error);
    }
    this.pset(x, at, entry(readonly ? 'grant_map_ro' : 'grant_map_rw', p.mfn));
    x.maptrack.set(h, { granter: from, ref, gfn: at, ro: readonly });
    return { status: GNTST_okay, handle: h };
  }

  /** GNTTABOP_unmap_grant_ref. */
  unmapGrant(d: number, handle: number): number {
    const x = this.dom(d);
    if (!Number.isInteger(handle) || handle < 0 || handle >= (x?.mtStored ?? 0)) return GNTST_bad_handle;
    const h = x?.maptrack.get(handle);
    if (x === undefined || h === undefined) return GNTST_bad_handle;
    this.unmapHandle(x, handle, h);
    return GNTST_okay;
  }

  private unmapHandle(x: Dom, handle: number, h: Handle): void {
    x.maptrack.delete(handle);
    this.pdel(x, h.gfn);
    this.unpin(h.granter, h.ref, h.ro);
    x.mtFreed.push(handle);
  }

  // ================================================================ foreign mapping

  /**
   * XENMAPSPACE_gmfn_foreign (p2m_add_foreign): `by` maps `from`'s RAM gfn
   * at its own gfn `at`. `from` must still exist (crashed and zombie
   * domains too; −ESRCH) and not be `by` (−EPERM); `by` is dom0 or `from`'s
   * backend (XSM_TARGET; −EPERM); the source is RAM of `from` (−EINVAL);
   * `at` is inside the p2m (−EINVAL). The destination: a hole is filled;
   * `by`'s own RAM is freed and replaced; a Map'd or revoked gfn answers 0
   * and keeps its mapping (a BAR-backed mmio_direct one crashes `by`);
   * anything else (grant and foreign maps) is −ENXIO.
   */
  foreignMap(by: number, from: number, gfn: number, at: number): number {
    const f = this.dom(from);
    if (f === undefined || f.state === 'free') return -ESRCH;
    if (from === by) return -EPERM;
    if (!this.privileged(by) && f.backend !== by) return -EPERM;
    const e = this.ent(from, gfn);
    if (e === undefined || (e.t !== 'ram_rw' && e.t !== 'ram_ro') || !this.getPage(e.mfn, from)) return -EINVAL;
    if (!this.inP2m(by, at)) {
      this.putPage(e.mfn);
      return -EINVAL;
    }
    const x = this.dom(by)!;
    const prev = x.p2m.get(at);
    if (prev === undefined) {
      this.pset(x, at, entry('map_foreign', e.mfn));
      return 0;
    }
    if (prev.t === 'mmio_direct' || prev.t === 'mmio_dm' || prev.t === 'revoked') {
      this.putPage(e.mfn);
      if (prev.t === 'mmio_direct' && !this.isRam(prev.mfn)) {
        this.crash(by);
        return -EPERM;
      }
      return 0;
    }
    if ((prev.t === 'ram_rw' || prev.t === 'ram_ro') && this.owner[prev.mfn] === by) {
      this.pset(x, at, entry('map_foreign', e.mfn));
      this.relinquish(prev.mfn);
      return 0;
    }
    this.putPage(e.mfn);
    return -ENXIO;
  }

  /**
   * XENMEM_remove_from_physmap: a foreign map drops its reference; RAM `by`
   * owns loses its gfn and stays allocated; anything else is −ENOENT.
   */
  foreignUnmap(by: number, at: number): number {
    const x = this.dom(by);
    const e = x?.p2m.get(at);
    if (x === undefined || e === undefined) return -ENOENT;
    if (e.t === 'map_foreign') {
      this.pdel(x, at);
      this.putPage(e.mfn);
      return 0;
    }
    if ((e.t === 'ram_rw' || e.t === 'ram_ro') && this.owner[e.mfn] === by) {
      this.pdel(x, at);
      return 0;
    }
    return -ENOENT;
  }

  // ================================================================ hypercall buffers

  /** copy_{from,to}_guest of `bytes` at (gfn, offset 0) of d's own RAM. */
  hypercallCopy(d: number, gfn: number, dir: 'from_guest' | 'to_guest', bytes: number): number {
    const ps = this.page_size;
    const x = this.dom(d);
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > SCRATCH_PAGES * ps) return -EINVAL;
    let done = 0;
    let g = gfn;
    while (done < bytes) {
      const e = this.ent(d, g);
      if (x === undefined || e === undefined || !(e.t === 'ram_rw' || (dir === 'from_guest' && e.t === 'ram_ro'))) return -EFAULT;
      if (!this.getPage(e.mfn, d)) return -EFAULT;
      const n = Math.min(ps, bytes - done);
      x.scratch ??= new Uint8Array(SCRATCH_PAGES * ps);
      if (dir === 'from_guest') {
        const src = this.bytesOf(e.mfn);
        if (src === undefined) x.scratch.fill(0, done, done + n);
        else x.scratch.set(src.subarray(0, n), done);
      } else {
        this.writableBytes(e.mfn).set(x.scratch.subarray(done, done + n), 0);
      }
      this.putPage(e.mfn);
      done += n;
      g++;
    }
    return 0;
  }

  // ================================================================ domctl

  /**
   * XEN_DOMCTL_iomem_permission (xen/common/domctl.c): target not found →
   * -ESRCH (-EPERM for an unprivileged caller); a range that is not whole
   * numbers, empty, or reaches IOMEM_MFN_LIMIT → -EINVAL; unprivileged →
   * -EPERM; the caller's own caps do not cover the range → -EPERM; then the
   * target's caps gain or lose it, -ENOMEM (unchanged) if the result has
   * more than MAX_IOMEM_RANGES ranges. Denying what is not there is 0.
   */
  iomemPermit(by: number, d: number, first_mfn: number, count: number, allow: boolean): number {
    const x = this.dom(d);
    if (x === undefined || (x.state !== 'running' && x.state !== 'crashed')) return this.privileged(by) ? -ESRCH : -EPERM;
    if (!Number.isInteger(first_mfn) || !Number.isInteger(count) || first_mfn < 0 || count < 1 || first_mfn + count > IOMEM_MFN_LIMIT) return -EINVAL;
    if (!this.privileged(by)) return -EPERM;
    if (!this.iomemPermitted(by, first_mfn, count)) return -EPERM;
    const next = iomemUpdate(x.iomem, first_mfn, first_mfn + count - 1, allow);
    if (next.length > MAX_IOMEM_RANGES) return -ENOMEM;
    x.iomem = next;
    return 0;
  }

  /** iomem_access_permitted: one range of d's caps covers all `count` frames from `first`. */
  private iomemPermitted(d: number, first: number, count: number): boolean {
    return (this.dom(d)?.iomem ?? []).some((r) => first >= r.s && first + count - 1 <= r.e);
  }

  /**
   * dm_op create IOREQ server run by `by` for `forDom` (xen/ioreq.ts):
   * the server's slot (0 … 7) or a negative errno.
   */
  ioreqServer(by: number, forDom: number, ranges: ReadonlyArray<{ start: number; count: number }>, fault_policy: FaultPolicy): number {
    const x = this.dom(forDom);
    if (x === undefined || x.state !== 'running') return -ESRCH;
    if (by === forDom) return -EINVAL;
    if (!this.authority(by, forDom)) return -EPERM;
    if (ranges.length > MAX_IOREQ_RANGES || ranges.some((r) => !Number.isInteger(r.start) || !Number.isInteger(r.count) || r.start < 0 || r.count < 1)) return -EINVAL;
    if (fault_policy !== 'remap' && fault_policy !== 'fail' && fault_policy !== 'none') return -EINVAL;
    for (let slot = 0; slot < MAX_IOREQ_SERVERS_PER_DOMAIN; slot++) {
      if (x.ioreq[slot] !== undefined) continue;
      x.ioreq[slot] = { by, ranges: ranges.map((r) => ({ start: r.start, count: r.count })), fault_policy };
      return slot;
    }
    return -ENOSPC;
  }

  /** domain_crash: running → crashed (the toolstack destroys it later). */
  crash(d: number): number {
    const x = this.dom(d);
    if (x === undefined || x.state !== 'running') return -ESRCH;
    x.state = 'crashed';
    return 0;
  }

  /**
   * XEN_DOMCTL_destroydomain by privileged `by`: every Map d made is
   * revoked (nested ones first), every mapping into d is torn down, its
   * IOREQ servers go, its grant maps are unmapped, its p2m is emptied
   * (RAM drops its allocation reference, foreign maps their reference).
   * d is a zombie until its last page is freed.
   */
  destroy(by: number, d: number): number {
    if (!this.privileged(by)) return -EPERM;
    if (d === by) return -EINVAL;
    const x = this.dom(d);
    if (x === undefined || (x.state !== 'running' && x.state !== 'crashed')) return -ESRCH;
    x.state = 'dying';
    // 1. Maps d made, as a backend: revoked in their (live) frontends.
    for (const r of [...this.recs.values()]) if (r.be === d) this.revokeRecord(r);
    // 2. Mappings into d, as a frontend: torn down (nested ones, made by d, went in 1).
    for (const r of [...this.recs.values()]) if (r.fe === d) this.revokeRecord(r);
    // Steal records with d on either side go: pages stolen from d stay the
    // backend's (no longer returnable), pages d stole go with d's RAM.
    for (const [mfn, st] of [...this.stolen]) {
      const r = this.steals.get(st.steal);
      if (r !== undefined && (r.fe === d || r.be === d)) this.unsteal(mfn);
    }
    // 3. IOREQ servers run by d, or serving d.
    x.ioreq = [];
    for (const o of this.doms) o.ioreq = o.ioreq.map((s) => (s?.by === d ? undefined : s));
    // 4. Grant maps d holds.
    for (const [h, m] of [...x.maptrack]) this.unmapHandle(x, h, m);
    // 5. Its p2m.
    const old = [...x.p2m.values()];
    x.p2m.clear();
    x.supers.clear(); // p2mClearLocked: superpages go whole, no split (the tables stay until the slot is freed)
    for (const e of old) {
      if (e.t === 'ram_rw' || e.t === 'ram_ro') {
        if (this.owner[e.mfn] === d) this.relinquish(e.mfn);
      } else if (e.t === 'map_foreign') {
        this.putPage(e.mfn);
      }
    }
    // Pages d still owns that no gfn holds (left by populate, remove_from_physmap): relinquish_memory.
    for (let mfn = 0; mfn < this.nr_frames; mfn++) if (this.owner[mfn] === d && this.allocated[mfn] === 1) this.relinquish(mfn);
    // iomem_caps stay with the dead domain (Xen frees rangesets in _domain_destroy).
    x.scratch = undefined;
    x.state = x.tot_pages === 0 ? 'free' : 'zombie';
    return 0;
  }

  // ================================================================ the four primitives

  /**
   * Common checks 1–3 (docs/primitives.md); 0 when they pass. `feLive`
   * says which frontends count as present: Map/Steal/Return need it
   * running; Revoke by range only needs it not gone (a crashed frontend's
   * mappings stand until it is destroyed, and Revoke must reach them).
   */
  private common(be: number, fe: number, count: number, op: 'map' | 'revoke'): number {
    if (!Number.isInteger(count) || count < 1 || count > MAX_PAGES_PER_OP) return -EINVAL;
    const f = this.dom(fe);
    if (op === 'revoke' ? f === undefined || f.state === 'free' : f?.state !== 'running') return -ESRCH;
    // Not in the doc: a backend that is not running cannot issue Map/Steal/Return
    // (a Steal into a dead backend would leak the pages).
    if (op === 'map' && !this.running(be)) return -ESRCH;
    if (be === fe) return -EINVAL;
    if (!this.authority(be, fe)) return -EPERM;
    return 0;
  }

  private liveEntryRec(e: Entry | undefined): Rec | undefined {
    if (e === undefined || (e.t !== 'mmio_direct' && e.t !== 'mmio_dm') || e.rec === 0) return undefined;
    const r = this.recs.get(e.rec);
    return r !== undefined && r.live[e.page] === true ? r : undefined;
  }

  /** Map(be, fe, source, count, at, type). */
  map(be: number, fe: number, source: MapSource, count: number, at: number, type: P2mTypeName = 'mmio_direct'): PrimitiveResult {
    const fail = (rc: number, index = -1): PrimitiveResult => ({ rc, index, id: 0 });
    const c = this.common(be, fe, count, 'map');
    if (c !== 0) return fail(c);
    if (type !== 'mmio_direct' && type !== 'mmio_dm') return fail(-EINVAL);
    if (source.kind === 'bar') {
      const first = source.mfn;
      const inOne = Number.isInteger(first) && this.bars.some((b) => first >= b.base_mfn && first + count <= b.base_mfn + b.nr_pages);
      if (!inOne) return fail(-EINVAL);
      if (!this.iomemPermitted(be, first, count)) return fail(-EPERM);
    } else if (source.kind !== 'ram') {
      return fail(-EINVAL);
    }
    const mfns: number[] = [];
    let kind: MappingKind = source.kind === 'bar' ? 'bar' : 'ram';
    let parent = 0;
    for (let i = 0; i < count; i++) {
      let mfn: number;
      if (source.kind === 'ram') {
        const e = this.ent(be, source.gfn + i);
        let pk: MappingKind;
        let pp = 0;
        const pr = this.liveEntryRec(e);
        if (e !== undefined && e.t === 'ram_rw' && this.isRam(e.mfn) && this.owner[e.mfn] === be) {
          pk = 'ram';
        } else if (e !== undefined && pr !== undefined && pr.fe === be) {
          if (!this.transitive) return fail(-EPERM, i);
          pk = 'nested';
          pp = pr.id;
        } else {
          return fail(-EINVAL, i);
        }
        if (i === 0) {
          kind = pk;
          parent = pp;
        } else if (pk !== kind || pp !== parent) {
          return fail(-EINVAL, i);
        }
        mfn = e.mfn;
      } else {
        mfn = source.mfn + i;
      }
      if (!this.inP2m(fe, at + i)) return fail(-EINVAL, i);
      const d = this.ent(fe, at + i);
      if (d !== undefined && d.t !== 'revoked') return fail(-EEXIST, i);
      mfns.push(mfn);
    }
    if (this.registryUsed() + 1 > this.max_mappings) return fail(-ENOSPC);
    const r = this.addRecord(kind, be, fe, type, source.kind === 'ram' ? source.gfn : source.mfn, at, parent, mfns);
    for (const mfn of mfns) if (this.isRam(mfn)) this.count[mfn]! += 1;
    return { rc: 0, index: -1, id: r.id };
  }

  private addRecord(kind: MappingKind, be: number, fe: number, type: MapType, src: number, at: number, parent: number, mfns: number[]): Rec {
    const r: Rec = { id: this.nextId++, kind, be, fe, type, src, at, count: mfns.length, parent, mfns, live: mfns.map(() => true), liveCount: mfns.length };
    this.recs.set(r.id, r);
    const x = this.dom(fe)!;
    const span = LEVEL_SPAN[2]!;
    // A BAR Map's aligned 2 MiB chunk over a range with no table is one superpage (map.ts superChunks, Xen's mmio_order).
    const superAt = (i: number): boolean => kind === 'bar' && (at + i) % span === 0 && (mfns[i]! % span) === 0 && i + span <= mfns.length && !x.tabled.has((at + i) / span) && x.supers.get(at + i - ((at + i) % LEVEL_SPAN[3]!)) !== LEVEL_SPAN[3] && [...Array(span).keys()].every((k) => !x.p2m.has(at + i + k));
    for (let i = 0; i < mfns.length; i++) {
      if (superAt(i)) {
        for (let k = 0; k < span; k++) x.p2m.set(at + i + k, entry(type, mfns[i + k]!, r.id, i + k));
        x.supers.set(at + i, span);
        i += span - 1;
      } else this.pset(x, at + i, entry(type, mfns[i]!, r.id, i));
    }
    return r;
  }

  /**
   * Revoke page i of mapping r: nested mappings made from it first, then
   * fe's entry becomes revoked (removed if fe is being destroyed), then the
   * page reference goes.
   */
  private revokePage(r: Rec, i: number): void {
    if (r.live[i] !== true) return;
    const g = r.at + i;
    for (const c of [...this.recs.values()]) {
      if (c.parent !== r.id || c.be !== r.fe) continue;
      for (let j = 0; j < c.count; j++) if (c.src + j === g) this.revokePage(c, j);
    }
    r.live[i] = false;
    r.liveCount--;
    const x = this.dom(r.fe)!;
    if (x.state === 'dying') this.pdel(x, g);
    else this.pset(x, g, revokedBy(r.be));
    if (r.liveCount === 0) {
      this.recs.delete(r.id);
      this.retired.set(r.id, r.be);
    }
    this.putPage(r.mfns[i]!);
  }

  private revokeRecord(r: Rec): void {
    for (let i = 0; i < r.count; i++) this.revokePage(r, i);
  }

  /** Revoke(be, target): 0 for valid arguments. */
  revoke(be: number, target: RevokeTarget): number {
    if ('id' in target) {
      const r = this.recs.get(target.id);
      if (r !== undefined) {
        if (r.be !== be) return -ENOENT;
        this.revokeRecord(r);
        return 0;
      }
      return this.retired.get(target.id) === be ? 0 : -ENOENT;
    }
    // A frontend that is gone: its teardown revoked everything, nothing left to do.
    if (Number.isInteger(target.count) && target.count >= 1 && target.count <= MAX_PAGES_PER_OP && this.dom(target.fe)?.state === 'free') return 0;
    const c = this.common(be, target.fe, target.count, 'revoke');
    if (c !== 0) return c;
    for (let i = 0; i < target.count; i++) {
      const e = this.ent(target.fe, target.gfn + i);
      const r = this.liveEntryRec(e);
      if (r !== undefined && r.be === be && r.fe === target.fe) this.revokePage(r, e!.page);
    }
    return 0;
  }

  private grantsFrame(x: Dom, gfn: number): boolean {
    for (const g of x.grants.values()) if ((g.flags & GTF_type_mask) === GTF_permit_access && g.frame === gfn) return true;
    return false;
  }

  /** Lowest run of `count` holes above be's highest RAM gfn. */
  private holeRun(be: number, count: number): number {
    const x = this.dom(be)!;
    let top = -1;
    for (const [g, e] of x.p2m) if ((e.t === 'ram_rw' || e.t === 'ram_ro') && this.owner[e.mfn] === be && g > top) top = g;
    let run = 0;
    for (let g = top + 1; g < x.gfn_limit; g++) {
      run = x.p2m.has(g) ? 0 : run + 1;
      if (run === count) return g - count + 1;
    }
    return -1;
  }

  /**
   * Steal(be, fe, gfn, count, into). Order as primitives.ts: every source
   * page, then the destination (default or given), then the registry, then
   * be's quota.
   */
  steal(be: number, fe: number, gfn: number, count: number, into?: number): PrimitiveResult {
    const fail = (rc: number, index = -1): PrimitiveResult => ({ rc, index, id: 0 });
    const c = this.common(be, fe, count, 'map');
    if (c !== 0) return fail(c);
    const f = this.dom(fe)!;
    const b = this.dom(be)!;
    const mfns: number[] = [];
    for (let i = 0; i < count; i++) {
      const e = this.ent(fe, gfn + i);
      if (e === undefined || e.t !== 'ram_rw' || !this.isRam(e.mfn) || this.owner[e.mfn] !== fe) return fail(-EINVAL, i);
      if (this.grantsFrame(f, gfn + i)) return fail(-EBUSY, i);
      if (this.allocated[e.mfn] !== 1 || this.count[e.mfn] !== 1) return fail(-EBUSY, i);
      mfns.push(e.mfn);
    }
    const dst = into ?? this.holeRun(be, count);
    if (dst < 0) return fail(-ENOSPC);
    for (let i = 0; i < count; i++) {
      if (!this.inP2m(be, dst + i)) return fail(-EINVAL, i);
      if (b.p2m.has(dst + i)) return fail(-EEXIST, i);
    }
    if (this.registryUsed() + 2 > this.max_mappings) return fail(-ENOSPC);
    // The quota moves with the pages (the seed), so no E2BIG for the backend.
    f.tot_pages -= count;
    b.tot_pages += count;
    f.max_pages -= count;
    b.max_pages += count;
    mfns.forEach((mfn, i) => {
      this.owner[mfn] = be;
      this.pset(b, dst + i, entry('ram_rw', mfn));
    });
    const r = this.addRecord('steal', be, fe, 'mmio_direct', dst, gfn, 0, mfns);
    // The Steal record takes the next id (primitives.ts hands out two).
    const steal = this.nextId++;
    this.steals.set(steal, { be, fe, live: count });
    mfns.forEach((mfn, i) => {
      this.count[mfn]! += 1;
      this.stolen.set(mfn, { fe, gfn: gfn + i, id: r.id, steal });
    });
    return { rc: 0, index: -1, id: r.id };
  }

  /** Return(be, fe, gfn, count, at): be's gfns back to fe. */
  ret(be: number, fe: number, gfn: number, count: number, at?: number): ReturnResult {
    const fail = (rc: number, index = -1): ReturnResult => ({ rc, index });
    const c = this.common(be, fe, count, 'map');
    if (c !== 0) return fail(c);
    const f = this.dom(fe)!;
    const b = this.dom(be)!;
    const pages: Array<{ mfn: number; dst: number }> = [];
    for (let i = 0; i < count; i++) {
      const e = this.ent(be, gfn + i);
      const st = e === undefined ? undefined : this.stolen.get(e.mfn);
      if (e === undefined || e.t !== 'ram_rw' || !this.isRam(e.mfn) || this.owner[e.mfn] !== be || st === undefined || st.fe !== fe) return fail(-EINVAL, i);
      const dst = at === undefined ? st.gfn : at + i;
      if (!this.inP2m(fe, dst)) return fail(-EINVAL, i);
      const d = f.p2m.get(dst);
      // A Map of this very frame at the return gfn (the implicit one or
      // another) is revoked with the others; anything else is in the way.
      const mapOfThis = d !== undefined && d.mfn === e.mfn && this.liveEntryRec(d) !== undefined;
      if (d !== undefined && d.t !== 'revoked' && !mapOfThis) return fail(-EEXIST, i);
      // Its references: the allocation and one per live page of a mapping of it (which Return revokes); nothing else.
      let maps = 0;
      for (const r of this.recs.values()) for (let j = 0; j < r.count; j++) if (r.live[j] === true && r.mfns[j] === e.mfn) maps++;
      if (this.allocated[e.mfn] !== 1 || this.count[e.mfn] !== 1 + maps) return fail(-EBUSY, i);
      pages.push({ mfn: e.mfn, dst });
    }
    // All checked: every outstanding Map of those frames goes, transitively.
    for (const p of pages) {
      for (const r of [...this.recs.values()]) {
        for (let j = 0; j < r.count; j++) if (r.live[j] === true && r.mfns[j] === p.mfn) this.revokePage(r, j);
      }
    }
    b.tot_pages -= count;
    f.tot_pages += count;
    b.max_pages -= count;
    f.max_pages += count;
    pages.forEach((p, i) => {
      this.owner[p.mfn] = fe;
      this.unsteal(p.mfn);
      this.pdel(b, gfn + i);
      this.pset(f, p.dst, entry('ram_rw', p.mfn));
    });
    return { rc: 0, index: -1 };
  }

  // ================================================================ guest accesses

  private checkAccess(offset: number, width: number): void {
    if (width !== 1 && width !== 2 && width !== 4 && width !== 8) throw new RangeError(`access width ${width}`);
    if (!Number.isInteger(offset) || offset < 0 || offset + width > this.page_size) throw new RangeError(`access at offset ${offset} width ${width} leaves the page`);
  }

  private serverClaims(x: Dom, gfn: number): boolean {
    return x.ioreq.some((s) => s !== undefined && s.ranges.some((r) => gfn >= r.start && gfn < r.start + r.count));
  }

  /** What an access to d's gfn turns into; 'mem' reaches the frame. */
  private classify(d: number, gfn: number, write: boolean): { kind: 'mem'; mfn: number } | { kind: AccessOutcome } {
    const x = this.dom(d);
    const e = x?.p2m.get(gfn);
    if (x === undefined) return { kind: 'null_io' };
    // Holes (and gfns outside the p2m) are emulated like mmio_dm.
    if (e === undefined) return { kind: this.serverClaims(x, gfn) ? 'ioreq' : 'null_io' };
    switch (e.t) {
      case 'ram_rw':
      case 'grant_map_rw':
      case 'map_foreign':
      case 'mmio_direct':
        return { kind: 'mem', mfn: e.mfn };
      case 'ram_ro':
        return write ? { kind: 'ok' } : { kind: 'mem', mfn: e.mfn };
      case 'grant_map_ro':
        return write ? { kind: 'gp' } : { kind: 'mem', mfn: e.mfn };
      case 'mmio_dm':
        return { kind: this.serverClaims(x, gfn) ? 'ioreq' : 'null_io' };
      case 'revoked':
        // To the IOREQ server of the backend whose mapping was revoked here, if it runs one for d.
        return { kind: x.ioreq.some((s) => s !== undefined && s.by === e.by) ? 'fault' : 'null_io' };
    }
  }

  /**
   * A guest read of `width` bytes (little-endian). Anything that does not
   * reach memory reads all ones of the width: the null handler, a fault,
   * and an ioreq (as xen/ioreq.ts answers until a transport exists).
   */
  read(d: number, gfn: number, offset: number, width: number): ReadResult {
    this.checkAccess(offset, width);
    const k = this.classify(d, gfn, false);
    if (k.kind !== 'mem') return { value: allOnes(width), outcome: k.kind };
    const b = this.bytesOf(k.mfn);
    let v = 0n;
    if (b !== undefined) for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[offset + i]!);
    return { value: v, outcome: 'ok' };
  }

  /** A guest write (little-endian, value truncated to the width). */
  write(d: number, gfn: number, offset: number, width: number, value: bigint): WriteResult {
    this.checkAccess(offset, width);
    const k = this.classify(d, gfn, true);
    if (k.kind !== 'mem') return { outcome: k.kind };
    const b = this.writableBytes(k.mfn);
    let v = BigInt.asUintN(8 * width, value);
    for (let i = 0; i < width; i++) {
      b[offset + i] = Number(v & 0xffn);
      v >>= 8n;
    }
    return { outcome: 'ok' };
  }

  // ================================================================ superpages

  /** p2m_set_entry of one gfn: a superpage it lies in is split first (ept_split_super_page), then the entry changes. */
  private pset(x: Dom, g: number, e: Entry): void {
    this.splitAt(x, g);
    x.tabled.add(Math.floor(g / LEVEL_SPAN[2]!));
    x.p2m.set(g, e);
  }
  private pdel(x: Dom, g: number): void {
    this.splitAt(x, g);
    x.tabled.add(Math.floor(g / LEVEL_SPAN[2]!));
    x.p2m.delete(g);
  }
  /** A 1 GiB superpage splits into 512 of 2 MiB, the one holding g into 4 KiB pages: a split per level, as splitSuper counts. */
  private splitAt(x: Dom, g: number): void {
    for (const span of [LEVEL_SPAN[3]!, LEVEL_SPAN[2]!]) {
      const base = g - (g % span);
      if (x.supers.get(base) !== span) continue;
      x.supers.delete(base);
      this.splits++;
      if (span === LEVEL_SPAN[3]!) for (let b = base; b < base + span; b += LEVEL_SPAN[2]!) x.supers.set(b, LEVEL_SPAN[2]!);
    }
  }

  /** Superpages split so far (the machine's CTL.P2M_SPLITS). */
  splits = 0;

  /** d's superpage entries: [first gfn, level] by gfn (level 2: 2 MiB, 3: 1 GiB), as p2mForEachLeaf sees them. */
  superpages(d: number): Array<[number, number]> {
    const x = this.dom(d);
    if (x === undefined) return [];
    return [...x.supers].sort((a, b) => a[0] - b[0]).map(([g, span]): [number, number] => [g, span === LEVEL_SPAN[3] ? 3 : 2]);
  }

  // ================================================================ observation

  observe(): Observation {
    return {
      domains: this.doms.map((d) => ({ state: d.state, tot_pages: d.tot_pages })),
      p2m: this.doms.map((d) => [...d.p2m].sort((a, b) => a[0] - b[0]).map(([g, e]): [number, P2mView] => [g, e.t])),
      free_frames: this.freeCount,
    };
  }

  /** The entry at (d, gfn) with its frame's bookkeeping, or undefined for a hole. For tests and debugging. */
  page(d: number, gfn: number): PageInfo | undefined {
    const e = this.ent(d, gfn);
    if (e === undefined) return undefined;
    const ram = this.isRam(e.mfn);
    return {
      type: e.t,
      mfn: e.mfn,
      owner: ram ? this.owner[e.mfn]! : -1,
      count: ram ? this.count[e.mfn]! : 0,
      allocated: ram && this.allocated[e.mfn] === 1,
      stolen_from: this.stolen.get(e.mfn)?.fe ?? -1,
    };
  }

  /** Live registry records (at least one page not revoked). */
  mappings(): MappingInfo[] {
    return [...this.recs.values()].map((r) => ({
      id: r.id, kind: r.kind, be: r.be, fe: r.fe, type: r.type, src: r.src, at: r.at, count: r.count, parent: r.parent, live: r.liveCount,
    }));
  }

  /** Grant entry flags (GTF_*, status bits included) of d's `ref`. */
  grantFlags(d: number, ref: number): number {
    return this.dom(d)?.grants.get(ref)?.flags ?? 0;
  }

  /** Internal consistency (for tests): reference counts equal the references that exist. */
  checkConsistency(): string[] {
    const errs: string[] = [];
    const want = new Int32Array(this.nr_frames);
    for (let m = 0; m < this.nr_frames; m++) if (this.allocated[m] === 1) want[m]! += 1;
    for (const x of this.doms) {
      for (const e of x.p2m.values()) if (e.t === 'map_foreign') want[e.mfn]! += 1;
      for (const a of x.active.values()) if (a.rpin + a.wpin > 0) want[a.mfn]! += a.rpin + a.wpin;
    }
    for (const r of this.recs.values()) r.mfns.forEach((m, i) => { if (r.live[i] === true && this.isRam(m)) want[m]! += 1; });
    let free = 0;
    const tot = this.doms.map(() => 0);
    for (let m = 0; m < this.nr_frames; m++) {
      if (want[m] !== this.count[m]) errs.push(`mfn ${m}: count ${this.count[m]}, references ${want[m]}`);
      if (this.count[m] === 0) {
        free++;
        if (this.owner[m] !== HOLE_FREE) errs.push(`mfn ${m}: free but owned by d${this.owner[m]}`);
      } else if (this.owner[m]! >= 0) {
        tot[this.owner[m]!]! += 1;
      }
    }
    if (free !== this.freeCount) errs.push(`free frames ${this.freeCount}, counted ${free}`);
    this.doms.forEach((x, d) => {
      if (x.tot_pages !== tot[d]) errs.push(`d${d}: tot_pages ${x.tot_pages}, owns ${tot[d]}`);
      if (x.state === 'running' && x.tot_pages > x.max_pages) errs.push(`d${d}: tot_pages over max_pages`);
      for (const [g, e] of x.p2m) {
        if ((e.t === 'ram_rw' || e.t === 'ram_ro') && this.owner[e.mfn] !== d) errs.push(`d${d} gfn ${g}: RAM of mfn ${e.mfn} owned by d${this.owner[e.mfn]}`);
      }
    });
    return errs;
  }
}
