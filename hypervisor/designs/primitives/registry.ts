/**
 * The mapping registry (new in xgsim): one record per Map or Steal.
 *
 * Record (Int32 words), written only under the global registry lock:
 *   STATE   0 free, 1 active, 2 revoked (a tombstone: its id and backend
 *           stay known so a repeated Revoke of it is 0; the slot is reused
 *           once no free one is left)
 *   KIND    MAP_RAM, MAP_BAR, MAP_NESTED (re-Map of a received range), STEAL
 *   BACKEND, FRONTEND  domids
 *   SRC     MAP_RAM/MAP_NESTED: first backend gfn; MAP_BAR: first mfn;
 *           STEAL: first backend gfn the pages went to (`into`)
 *   FE_GFN  first frontend gfn (Map destination; Steal: where stolen from)
 *   COUNT   pages covered; LIVE pages not yet revoked/returned
 *   TYPE    p2m type given to the frontend (Maps)
 *   PARENT  record + 1 of the mapping a MAP_NESTED re-maps, else 0;
 *           PARENT_ID its id (a record slot may be reused, an id never)
 *   LINK    STEAL ↔ its implicit Map: record + 1 of the other, else 0
 *   ID      the handle given to the caller (unique over the run)
 *   LIVEMAP one bit per page (MAX_PAGES_PER_OP bits)
 * Readers outside the lock (the checker) take the lock too.
 *
 * After the records and their header, two tables of the primitives' region:
 *
 * Stolen frames, one entry per RAM frame (STOLEN.*), written and read under
 * the registry lock: the Steal that holds the frame — FROM the frontend it
 * was stolen from (domid + 1; 0: not stolen), FREES the frame's free count
 * (frametable FREES) when it was stolen, REC the Steal record + 1 and IDX
 * its page there. A Steal is tied to the frame and the frontend it came
 * from, not to a gfn: the entry is current only while FREES still equals
 * the frame's, so once the backend frees the frame that Steal is over,
 * whatever lands at its gfn later (stolenFrom).
 *
 * Fault owners, one word per p2m arena entry: for a revoked gfn, the domid
 * + 1 of the backend whose mapping was revoked there. The revoked gfns of
 * one frontend that share an owner are that backend's IOREQ server's FAULT
 * set (Roger Pau Monné's per-ioreq-server rangeset in the seed thread),
 * kept here per gfn, exactly. Written by Revoke under the registry lock
 * and the frontend's p2m lock, before the entry becomes revoked; read
 * lock-free by the fault path (Atomics.load) once it has seen the revoked
 * entry, so it reads the owner the entry was revoked with or a later one.
 *
 * Last, the records' index (IDX.*), so that no look-up scans the 2048
 * records: which records are not free (a bitmap), the tombstones in a heap
 * on their ids (alloc takes the oldest), ids hashed to their records (find),
 * and the live records on lists by frontend, by backend and — nested Maps —
 * by the slot their PARENT names. Written with the records, under the
 * registry lock, by alloc / activate / retire / free only (so a record's
 * STATE, KIND, BACKEND, FRONTEND, PARENT and ID are set before `activate`
 * and never changed while it is live); read under the lock. A list's order
 * is not the records' order: who walks one sorts what it found, so every
 * look-up answers what the scan in record order answered. The index is
 * derived from the records (checkIndex compares them every checker pass),
 * not state of its own: the simulator's digest leaves it out (stateBytes).
 */
import { MAX_DOMAINS, MAX_MAPPINGS, MAX_PAGES_PER_OP } from '../../layout/constants.js';
import { RecordTable } from '../../xen/record-table.js';
import { expectBytes } from '../../layout/region.js';

export const REC = {
  STATE: 0,
  KIND: 1,
  BACKEND: 2,
  FRONTEND: 3,
  SRC: 4,
  FE_GFN: 5,
  COUNT: 6,
  LIVE: 7,
  TYPE: 8,
  PARENT: 9,
  LINK: 10,
  ID: 11,
  PARENT_ID: 12,
  LIVEMAP: 16,
  WORDS: 16 + MAX_PAGES_PER_OP / 32,
} as const;
export const KIND = { MAP_RAM: 1, MAP_BAR: 2, MAP_NESTED: 3, STEAL: 4 } as const;
export const KIND_NAMES = ['', 'map-ram', 'map-bar', 'map-nested', 'steal'] as const;
export const STOLEN = { FROM: 0, FREES: 1, REC: 2, IDX: 3, WORDS: 4 } as const;

/** Buckets of the id hash (ids are dense: a power of two above MAX_MAPPINGS keeps chains short). */
const ID_BUCKETS = 2 * MAX_MAPPINGS;
/**
 * The index's words, from its start (a list's head or link is record + 1, 0 for none):
 *   USED     records not free (live, tombstones, and allocated ones not yet live)
 *   LIVE_N   live records; TOMBS tombstones; HEAP_N entries of the heap
 *   USED_BITS  one bit per record: set while it is not free
 *   HEAP     tombstones, a binary min-heap on their ids; HEAP_POS a record's place + 1
 *   ID_HEAD  per bucket (id & (ID_BUCKETS − 1)) the first record with an id there; ID_NEXT the next
 *   FE_*, BE_*  live records by FRONTEND, by BACKEND (per domain a doubly linked list)
 *   CH_*     live MAP_NESTED records by the slot their PARENT names (PARENT − 1)
 */
export const IDX = (() => {
  const at = { USED: 0, LIVE_N: 1, TOMBS: 2, HEAP_N: 3, USED_BITS: 4 } as const;
  let o: number = at.USED_BITS + MAX_MAPPINGS / 32;
  const take = (n: number): number => {
    const here = o;
    o += n;
    return here;
  };
  const r = {
    ...at,
    HEAP: take(MAX_MAPPINGS),
    HEAP_POS: take(MAX_MAPPINGS),
    ID_HEAD: take(ID_BUCKETS),
    ID_NEXT: take(MAX_MAPPINGS),
    FE_HEAD: take(MAX_DOMAINS),
    FE_NEXT: take(MAX_MAPPINGS),
    FE_PREV: take(MAX_MAPPINGS),
    BE_HEAD: take(MAX_DOMAINS),
    BE_NEXT: take(MAX_MAPPINGS),
    BE_PREV: take(MAX_MAPPINGS),
    CH_HEAD: take(MAX_MAPPINGS),
    CH_NEXT: take(MAX_MAPPINGS),
    CH_PREV: take(MAX_MAPPINGS),
  };
  return { ...r, WORDS: o };
})();

/** A doubly linked list family of the index: heads per key, links per record. */
interface ListOf {
  readonly head: number;
  readonly next: number;
  readonly prev: number;
}
const FE_LIST: ListOf = { head: IDX.FE_HEAD, next: IDX.FE_NEXT, prev: IDX.FE_PREV };
const BE_LIST: ListOf = { head: IDX.BE_HEAD, next: IDX.BE_NEXT, prev: IDX.BE_PREV };
const CH_LIST: ListOf = { head: IDX.CH_HEAD, next: IDX.CH_NEXT, prev: IDX.CH_PREV };

export class Registry extends RecordTable {
  /** STOLEN.WORDS per RAM frame (above). */
  readonly stolen: Int32Array;
  /** Per p2m entry of the pool (entryOrdinal of a revoked gfn's 4 KiB leaf, layout/p2m.ts): the backend + 1 whose revoked mapping left it (above). */
  readonly faultOwner: Int32Array;
  /** The records' index (IDX, above). */
  readonly ix: Int32Array;
  /** Bytes of the records, their header and the two tables: the region's state, without the index after them. */
  static stateBytes(nr_frames: number, p2m_entries: number): number {
    return (RecordTable.words(MAX_MAPPINGS, REC.WORDS) + nr_frames * STOLEN.WORDS + p2m_entries) * 4;
  }
  static bytes(nr_frames: number, p2m_entries: number): number {
    return Registry.stateBytes(nr_frames, p2m_entries) + IDX.WORDS * 4;
  }
  constructor(
    readonly sab: SharedArrayBuffer,
    nr_frames: number,
    p2m_entries: number,
  ) {
    expectBytes('registry', sab, Registry.bytes(nr_frames, p2m_entries));
    super(sab, MAX_MAPPINGS, REC.WORDS, REC.LIVEMAP);
    const recWords = RecordTable.words(MAX_MAPPINGS, REC.WORDS);
    this.stolen = new Int32Array(sab, recWords * 4, nr_frames * STOLEN.WORDS);
    this.faultOwner = new Int32Array(sab, (recWords + nr_frames * STOLEN.WORDS) * 4, p2m_entries);
    this.ix = new Int32Array(sab, Registry.stateBytes(nr_frames, p2m_entries), IDX.WORDS);
  }
  /** Record index of an id, live or revoked, or -1. */
  find(id: number): number {
    if (!Number.isInteger(id)) return -1;
    for (let r = this.ix[IDX.ID_HEAD + (id & (ID_BUCKETS - 1))]! - 1; r >= 0; r = this.ix[IDX.ID_NEXT + r]! - 1) {
      if (this.at(r, REC.ID) === id && this.at(r, REC.STATE) !== 0) return r;
    }
    return -1;
  }
  /**
   * A record for a new mapping, cleared, or -1: the lowest free one, else
   * the oldest tombstone (lowest id). Not live until `activate`, and not
   * handed out again meanwhile.
   */
  alloc(): number {
    const ix = this.ix;
    if (ix[IDX.USED]! < MAX_MAPPINGS) {
      for (let k = 0; k < MAX_MAPPINGS / 32; k++) {
        const used = ix[IDX.USED_BITS + k]!;
        if (used === -1) continue;
        const bit = 31 - Math.clz32(~used & (used + 1)); // lowest clear bit
        ix[IDX.USED_BITS + k] = used | (1 << bit);
        ix[IDX.USED]!++;
        return this.clear(k * 32 + bit);
      }
      throw new Error('registry index: USED below MAX_MAPPINGS but no free record');
    }
    if (ix[IDX.HEAP_N] === 0) return -1;
    const r = ix[IDX.HEAP]!;
    this.heapRemove(r);
    ix[IDX.TOMBS]!--;
    this.idUnlink(r);
    return this.clear(r);
  }
  /** Record r (from alloc, every field set) becomes live. */
  activate(r: number): void {
    this.set(r, REC.STATE, 1);
    this.ix[IDX.LIVE_N]!++;
    this.idLink(r);
    this.listAdd(FE_LIST, this.at(r, REC.FRONTEND), r);
    this.listAdd(BE_LIST, this.at(r, REC.BACKEND), r);
    if (this.at(r, REC.KIND) === KIND.MAP_NESTED) this.listAdd(CH_LIST, this.at(r, REC.PARENT) - 1, r);
  }
  private clear(r: number): number {
    this.w.fill(0, r * REC.WORDS, (r + 1) * REC.WORDS);
    return r;
  }
  /** A Map whose last page went: keep id, kind and backend as a tombstone. */
  retire(r: number): void {
    const keep = [this.at(r, REC.KIND), this.at(r, REC.BACKEND), this.at(r, REC.FRONTEND), this.at(r, REC.ID)] as const;
    this.unlist(r);
    this.clear(r);
    this.set(r, REC.KIND, keep[0]);
    this.set(r, REC.BACKEND, keep[1]);
    this.set(r, REC.FRONTEND, keep[2]);
    this.set(r, REC.ID, keep[3]);
    this.set(r, REC.STATE, 2);
    this.ix[IDX.TOMBS]!++;
    this.heapAdd(r);
  }
  free(r: number): void {
    const st = this.at(r, REC.STATE);
    if (st === 1) this.unlist(r);
    if (st === 2) {
      this.heapRemove(r);
      this.ix[IDX.TOMBS]!--;
    }
    if (st !== 0) this.idUnlink(r);
    const k = IDX.USED_BITS + (r >> 5);
    if ((this.ix[k]! & (1 << (r & 31))) !== 0) {
      this.ix[k] = this.ix[k]! & ~(1 << (r & 31));
      this.ix[IDX.USED]!--;
    }
    this.clear(r);
  }
  /** Allocatable records (free or tombstones), counting up to `enough`. */
  freeCount(enough: number): number {
    return Math.min(enough, MAX_MAPPINGS - this.ix[IDX.USED]! + this.ix[IDX.TOMBS]!);
  }
  activeCount(): number {
    return this.ix[IDX.LIVE_N]!;
  }

  /** Live records whose frontend is fe, in record order. */
  byFrontend(fe: number): number[] {
    return this.listed(FE_LIST, fe);
  }
  /** Live records whose backend is be, in record order. */
  byBackend(be: number): number[] {
    return this.listed(BE_LIST, be);
  }
  /** Live nested Maps whose PARENT names slot r (whatever record is there now), in record order. */
  childrenOf(r: number): number[] {
    return this.listed(CH_LIST, r);
  }
  /**
   * A walk of the live records whose frontend is fe, in no order (for a
   * look-up whose answer does not depend on it), without an array:
   * `for (let r = reg.firstOfFrontend(fe); r >= 0; r = reg.nextOfFrontend(r))`.
   */
  firstOfFrontend(fe: number): number {
    return fe >= 0 && fe < MAX_DOMAINS ? this.ix[IDX.FE_HEAD + fe]! - 1 : -1;
  }
  nextOfFrontend(r: number): number {
    return this.ix[IDX.FE_NEXT + r]! - 1;
  }
  /** The same walk of the live records whose backend is be. */
  firstOfBackend(be: number): number {
    return be >= 0 && be < MAX_DOMAINS ? this.ix[IDX.BE_HEAD + be]! - 1 : -1;
  }
  nextOfBackend(r: number): number {
    return this.ix[IDX.BE_NEXT + r]! - 1;
  }

  /**
   * The index against the records, from scratch: what differs, or []. The
   * checker's pass (check.ts) asks it under the registry lock.
   */
  checkIndex(): string[] {
    const out: string[] = [];
    const ix = this.ix;
    let used = 0;
    let live = 0;
    let tombs = 0;
    for (let r = 0; r < MAX_MAPPINGS; r++) {
      const st = this.at(r, REC.STATE);
      const bit = (ix[IDX.USED_BITS + (r >> 5)]! >>> (r & 31)) & 1;
      if (st !== 0 && bit === 0) out.push(`record ${r} (state ${st}) marked free`);
      // Under the registry lock no alloc is half done: a free record marked used was allocated and never made live (lost to alloc for good).
      if (st === 0 && bit === 1) out.push(`record ${r} free but marked used`);
      used += bit;
      if (st === 1) live++;
      if (st === 2) tombs++;
      if ((st === 2) !== (ix[IDX.HEAP_POS + r] !== 0)) out.push(`record ${r} (state ${st}) ${st === 2 ? 'not in' : 'in'} the tombstone heap`);
      if (st !== 0 && this.find(this.at(r, REC.ID)) !== r) out.push(`record ${r}: its id ${this.at(r, REC.ID)} not found`);
    }
    const counts: Array<[string, number, number]> = [
      ['used', ix[IDX.USED]!, used],
      ['live', ix[IDX.LIVE_N]!, live],
      ['tombstones', ix[IDX.TOMBS]!, tombs],
      ['heap', ix[IDX.HEAP_N]!, tombs],
    ];
    for (const [name, said, is] of counts) if (said !== is) out.push(`${name}: index says ${said}, records ${is}`);
    for (let k = 1; k < ix[IDX.HEAP_N]!; k++) {
      const p = ix[IDX.HEAP + ((k - 1) >> 1)]!;
      const c = ix[IDX.HEAP + k]!;
      if (this.at(p, REC.ID) > this.at(c, REC.ID) || ix[IDX.HEAP_POS + c] !== k + 1) out.push(`tombstone heap broken at ${k}`);
    }
    const lists: Array<[string, ListOf, number, (r: number) => number]> = [
      ['frontend', FE_LIST, MAX_DOMAINS, (r) => this.at(r, REC.FRONTEND)],
      ['backend', BE_LIST, MAX_DOMAINS, (r) => this.at(r, REC.BACKEND)],
      ['parent', CH_LIST, MAX_MAPPINGS, (r) => (this.at(r, REC.KIND) === KIND.MAP_NESTED ? this.at(r, REC.PARENT) - 1 : -1)],
    ];
    for (const [name, l, keys, keyOf] of lists) {
      let listed = 0;
      for (let key = 0; key < keys; key++) {
        let prev = -1;
        for (let r = ix[l.head + key]! - 1; r >= 0 && listed <= MAX_MAPPINGS; r = ix[l.next + r]! - 1) {
          listed++;
          if (this.at(r, REC.STATE) !== 1 || keyOf(r) !== key) out.push(`record ${r} on the ${name} list of ${key}`);
          if (ix[l.prev + r]! - 1 !== prev) out.push(`record ${r}: broken back link on the ${name} list of ${key}`);
          prev = r;
        }
      }
      let want = 0;
      for (let r = 0; r < MAX_MAPPINGS; r++) if (this.at(r, REC.STATE) === 1 && keyOf(r) >= 0) want++;
      if (listed !== want) out.push(`${name} lists hold ${listed} records, ${want} live ones belong there`);
    }
    return out;
  }

  private listed(l: ListOf, key: number): number[] {
    if (!(key >= 0)) return [];
    const buf = this.scratch;
    let n = 0;
    for (let r = this.ix[l.head + key]! - 1; r >= 0 && n < MAX_MAPPINGS; r = this.ix[l.next + r]! - 1) buf[n++] = r;
    // In record order, as the scan they replace (a list is newest first: a numeric sort, not an insertion sort).
    return Array.from(buf.subarray(0, n).sort());
  }
  private readonly scratch = new Int32Array(MAX_MAPPINGS);
  private listAdd(l: ListOf, key: number, r: number): void {
    const ix = this.ix;
    const first = ix[l.head + key]!;
    ix[l.next + r] = first;
    ix[l.prev + r] = 0;
    if (first !== 0) ix[l.prev + first - 1] = r + 1;
    ix[l.head + key] = r + 1;
  }
  private listDel(l: ListOf, key: number, r: number): void {
    const ix = this.ix;
    const next = ix[l.next + r]!;
    const prev = ix[l.prev + r]!;
    if (prev !== 0) ix[l.next + prev - 1] = next;
    else ix[l.head + key] = next;
    if (next !== 0) ix[l.prev + next - 1] = prev;
    ix[l.next + r] = 0;
    ix[l.prev + r] = 0;
  }
  /** Live record r leaves its lists (it is retired or freed). */
  private unlist(r: number): void {
    this.ix[IDX.LIVE_N]!--;
    this.listDel(FE_LIST, this.at(r, REC.FRONTEND), r);
    this.listDel(BE_LIST, this.at(r, REC.BACKEND), r);
    if (this.at(r, REC.KIND) === KIND.MAP_NESTED) this.listDel(CH_LIST, this.at(r, REC.PARENT) - 1, r);
  }
  private idLink(r: number): void {
    const b = IDX.ID_HEAD + (this.at(r, REC.ID) & (ID_BUCKETS - 1));
    this.ix[IDX.ID_NEXT + r] = this.ix[b]!;
    this.ix[b] = r + 1;
  }
  private idUnlink(r: number): void {
    const ix = this.ix;
    let at = IDX.ID_HEAD + (this.at(r, REC.ID) & (ID_BUCKETS - 1));
    while (ix[at] !== 0 && ix[at] !== r + 1) at = IDX.ID_NEXT + ix[at]! - 1;
    if (ix[at] === r + 1) ix[at] = ix[IDX.ID_NEXT + r]!;
    ix[IDX.ID_NEXT + r] = 0;
  }
  // The tombstone heap: ix[HEAP + k] a record, ordered on its ID (ids are unique).
  private heapKey(k: number): number {
    return this.at(this.ix[IDX.HEAP + k]!, REC.ID);
  }
  private heapPut(k: number, r: number): void {
    this.ix[IDX.HEAP + k] = r;
    this.ix[IDX.HEAP_POS + r] = k + 1;
  }
  private heapAdd(r: number): void {
    const k = this.ix[IDX.HEAP_N]!++;
    this.heapPut(k, r);
    this.siftUp(k);
  }
  private heapRemove(r: number): void {
    const ix = this.ix;
    const k = ix[IDX.HEAP_POS + r]! - 1;
    const last = --ix[IDX.HEAP_N]!;
    ix[IDX.HEAP_POS + r] = 0;
    if (k === last) return;
    const moved = ix[IDX.HEAP + last]!;
    this.heapPut(k, moved);
    this.siftUp(k);
    this.siftDown(ix[IDX.HEAP_POS + moved]! - 1);
  }
  private siftUp(k0: number): void {
    let k = k0;
    while (k > 0) {
      const p = (k - 1) >> 1;
      if (this.heapKey(p) <= this.heapKey(k)) return;
      this.swap(p, k);
      k = p;
    }
  }
  private siftDown(k0: number): void {
    const n = this.ix[IDX.HEAP_N]!;
    let k = k0;
    for (;;) {
      const l = 2 * k + 1;
      if (l >= n) return;
      const c = l + 1 < n && this.heapKey(l + 1) < this.heapKey(l) ? l + 1 : l;
      if (this.heapKey(k) <= this.heapKey(c)) return;
      this.swap(k, c);
      k = c;
    }
  }
  private swap(a: number, b: number): void {
    const ra = this.ix[IDX.HEAP + a]!;
    this.heapPut(a, this.ix[IDX.HEAP + b]!);
    this.heapPut(b, ra);
  }
}
