/**
 * Spinlocks in shared memory (xen/common/spinlock.c _spin_lock /
 * _spin_unlock, and its lock profiling's per-lock site), with a
 * lockdep-style order checker (Linux's lockdep; Xen has only the mm lock
 * levels, lock-classes.ts) whose
 * knowledge (the class graph) lives in the same SharedArrayBuffer, so an
 * A→B on one thread and a B→A on another are reported even if the two never
 * overlap in time — the report does not need the deadlock to happen.
 *
 * One layout module for the lock region (docs/style.md §2). Int32 words:
 *
 *   [0 .. HEADER_WORDS)              header, see H_* below
 *   [EDGES_AT .. +C²)                edge matrix, C = MAX_LOCK_CLASSES:
 *                                    word[h·C + c] = 0 (no edge h→c seen),
 *                                    slab offset + 1 of the edge's sites, or
 *                                    EDGE_NO_SITE (slab was full)
 *   [REPORTED_AT .. +C²)             report-once bits per class pair (R_*)
 *   [SLAB_AT .. +SLAB_WORDS)         site slab, LOCKDEP_SITE_SLAB_BYTES bytes
 *   [LOCKS_AT .. +nlocks·LOCK_WORDS) locks, see L_* below
 *
 * Who writes what (docs/style.md §3):
 *   L_STATE      any thread, only with Atomics RMW (protocol in docs/locks.md):
 *                FREE 0, HELD 1, CONTENDED 2 (held, maybe waiters).
 *   L_CLASS      host set-up thread in alloc() (class id + 1), then read-only;
 *                workers receive the SAB after set-up, so the postMessage that
 *                carries it orders the write before their reads.
 *   L_OWNER      the holder only: its thread tag, stored plainly after the
 *                acquiring CAS, cleared before the releasing exchange. Only
 *                the owner's own reads of it decide anything (heldByMe);
 *                others read it for diagnostics.
 *   L_CONTENDED  anyone entering the slow path (Atomics.add); statistics.
 *   edge matrix  any checking thread. Publish: (1) claim slab bytes with
 *                Atomics.add on H_SLAB_NEXT, (2) write the site bytes plainly,
 *                (3) Atomics.compareExchange(word, 0, offset + 1) — the
 *                release; a loser's bytes are abandoned. Readers Atomics.load
 *                the word (the acquire) before reading the bytes.
 *   reported     any checking thread, Atomics.or; the thread that flips a bit
 *                writes the report, so each is written once per region.
 */
import { threadId } from 'node:worker_threads';
import { LOCKDEP_SITE_SLAB_BYTES, MAX_HELD_LOCKS, MAX_LOCK_CLASSES, SPIN_BEFORE_WAIT } from '../layout/constants.js';
import type { InvariantLog } from '../layout/invariants.js';
import {
  freezeLockClasses,
  lockClassCount,
  lockClassInfo,
  type LockClass,
  type LockClassInfo,
} from './lock-classes.js';
import { sched } from './platform.js';

export {
  defineLockClass,
  lockClassInfo,
  LOCK_CLASS,
  TEST_A,
  TEST_B,
  type LockClass,
  type LockClassInfo,
  type LockClassSpec,
  type LockNest,
  type LockScope,
} from './lock-classes.js';

export type LockId = number & { readonly __brand: 'LockId' };

// ---- layout -----------------------------------------------------------------

const MAGIC = 0x4b4c4758; // 'XGLK'

const H_MAGIC = 0;
const H_NLOCKS = 1;
const H_CLASS_FP = 2; // fingerprint of the class table (lock-classes.ts)
const H_NCLASSES = 3;
const H_NEXT_LOCK = 4; // next lock id handed out by alloc()
const H_SLAB_NEXT = 5; // slab bytes claimed (may overshoot the slab)
const H_EDGES = 6; // edges recorded
const H_SITES_LOST = 7; // edges recorded without sites (slab full)
const HEADER_WORDS = 8;

const C = MAX_LOCK_CLASSES;
const EDGES_AT = HEADER_WORDS;
const REPORTED_AT = EDGES_AT + C * C;
const SLAB_AT = REPORTED_AT + C * C;
const SLAB_WORDS = LOCKDEP_SITE_SLAB_BYTES / 4;
const LOCKS_AT = SLAB_AT + SLAB_WORDS;

const L_STATE = 0;
const L_CLASS = 1;
const L_OWNER = 2;
const L_CONTENDED = 3;
const LOCK_WORDS = 4;

const FREE = 0;
const HELD = 1;
const CONTENDED = 2;
const NO_OWNER = 0;

const EDGE_NO_SITE = -1;

const R_INVERSION = 1; // on cell min(h,c)·C + max(h,c)
const R_RANK = 2; // on cell h·C + c
const R_NEST = 4; // on cell c·C + c

/** Site strings are clipped to this in the slab (two per edge). */
const MAX_SITE_BYTES = 120;
/** Sites are clipped to this in violation texts, so both fit in VIOLATION_TEXT_BYTES. */
const REPORT_SITE_CHARS = 48;

function assertLayout(cond: boolean, what: string): void {
  if (!cond) throw new Error(`locks layout: ${what}`);
}
assertLayout(LOCKDEP_SITE_SLAB_BYTES % 4 === 0, 'site slab is whole words');
assertLayout(LOCKDEP_SITE_SLAB_BYTES < 0x7fffffff - 1, 'slab offsets + 1 fit an Int32 edge word');
assertLayout(MAX_SITE_BYTES <= 0xffff, 'site lengths fit u16');
assertLayout(MAX_HELD_LOCKS >= 2, 'a thread can hold two locks');
assertLayout(C * C <= REPORTED_AT - EDGES_AT, 'edge matrix fits before the report bits');

// ---- thread identity ----------------------------------------------------------

/** Holder identity: worker threadId + 1 (the main thread is 1), or setThreadTag's value. */
let myTag = threadId + 1;

/** Give this thread another holder identity (e.g. a vCPU number under a deterministic scheduler). */
export function setThreadTag(tag: number): void {
  if (!Number.isSafeInteger(tag) || tag <= 0 || tag > 0x7fffffff) {
    throw new Error(`setThreadTag: tag ${tag} must be an integer in 1..2^31-1 (0 means "no owner")`);
  }
  myTag = tag;
}

export function threadTag(): number {
  return myTag;
}

// ---- errors -------------------------------------------------------------------

/** A held stack set aside (LockSpace.stashHeld). */
export interface HeldStash {
  lock: Int32Array;
  cls: Int32Array;
  key: Float64Array;
  site: string[];
}

export type LockFaultKind = 'not_held' | 'recursive' | 'too_many_held' | 'corrupt' | 'config' | 'bad_lock';

/**
 * A broken invariant of the lock code or its caller: fatal (docs/semantics.md §3 — the
 * hypervisor's own bug, like Xen's BUG_ON in _spin_unlock's check_lock).
 * Lock-order violations are not faults: they are reported to the InvariantLog
 * and the run continues, as lockdep does.
 */
export class LockFault extends Error {
  constructor(
    readonly kind: LockFaultKind,
    message: string,
  ) {
    super(message);
    this.name = 'LockFault';
  }
}

// ---- the lock space -------------------------------------------------------------

export interface LockSpaceOptions {
  /** Run the lockdep checker on this thread (docs/semantics.md §6 invariant 7). */
  checking: boolean;
  /** Allow alloc() of test-only classes (TEST_A, TEST_B). Default false. */
  testClasses?: boolean;
}

export interface LockdepEdge {
  from: string;
  to: string;
  /** Where `to` was taken while `from` was held. */
  acquiredAt: string;
  /** Where the held `from` had been taken. */
  heldFrom: string;
}

interface EdgeSites {
  acquiredAt: string;
  heldFrom: string;
}

/**
 * One thread's view of a lock region. Build one per thread per region: the
 * held stack and the edge cache are per-object, and they stand for "this
 * thread".
 */
export class LockSpace {
  readonly nlocks: number;
  readonly checking: boolean;
  private readonly words: Int32Array;
  private readonly slab: Uint8Array;
  private readonly testClasses: boolean;
  private readonly nclasses: number;
  private readonly rank: Int32Array;
  private readonly ordered: Uint8Array;
  private readonly names: string[];

  // Per-thread held stack (checking only).
  private depth = 0;
  private readonly heldLock = new Int32Array(MAX_HELD_LOCKS);
  private readonly heldClass = new Int32Array(MAX_HELD_LOCKS);
  private readonly heldKey = new Float64Array(MAX_HELD_LOCKS);
  private readonly heldSite: string[] = new Array<string>(MAX_HELD_LOCKS).fill('');
  /** Edges this thread already knows are in the shared matrix: skips the Atomics.load on the hot path. */
  private readonly seen = new Uint8Array(C * C);

  static bytes(nlocks: number): number {
    if (!Number.isSafeInteger(nlocks) || nlocks < 1) throw new Error(`LockSpace.bytes: nlocks ${nlocks} must be a positive integer`);
    return (LOCKS_AT + nlocks * LOCK_WORDS) * 4;
  }

  constructor(
    readonly sab: SharedArrayBuffer,
    private readonly log: InvariantLog,
    options: LockSpaceOptions,
  ) {
    if (typeof options.checking !== 'boolean') throw new LockFault('config', 'LockSpace: options.checking must be a boolean');
    const fixed = LOCKS_AT * 4;
    const per = LOCK_WORDS * 4;
    if (sab.byteLength <= fixed || (sab.byteLength - fixed) % per !== 0) {
      throw new LockFault('config', `LockSpace: region of ${sab.byteLength} bytes is not LockSpace.bytes(n) for any n`);
    }
    this.nlocks = (sab.byteLength - fixed) / per;
    this.checking = options.checking;
    this.testClasses = options.testClasses ?? false;
    this.words = new Int32Array(sab);
    this.slab = new Uint8Array(sab, SLAB_AT * 4, LOCKDEP_SITE_SLAB_BYTES);

    // Every thread must agree on the region and the class table; the first
    // constructor writes each header field, the others compare (CAS makes
    // the order of constructors irrelevant).
    const fp = freezeLockClasses();
    this.nclasses = lockClassCount();
    this.initField(H_MAGIC, MAGIC, 'magic (not a lock region)');
    this.initField(H_NLOCKS, this.nlocks, 'lock count');
    this.initField(H_CLASS_FP, fp, 'lock class table (lock-classes.ts differs between threads)');
    this.initField(H_NCLASSES, this.nclasses, 'lock class count');

    this.rank = new Int32Array(this.nclasses);
    this.ordered = new Uint8Array(this.nclasses);
    this.names = [];
    for (let c = 0; c < this.nclasses; c++) {
      const info = lockClassInfo(c as LockClass);
      this.rank[c] = info.rank;
      this.ordered[c] = info.nest === 'ordered' ? 1 : 0;
      this.names.push(info.name);
    }
  }

  private initField(at: number, value: number, what: string): void {
    const prev = Atomics.compareExchange(this.words, at, 0, value);
    if (prev !== 0 && prev !== value) {
      throw new LockFault('config', `LockSpace: ${what}: region has ${prev}, this thread has ${value}`);
    }
  }

  /** Allocate a lock of class `cls`. Host set-up only; ids are dense from 0. */
  alloc(cls: LockClass): LockId {
    const info = lockClassInfo(cls);
    if (info.testOnly && !this.testClasses) {
      throw new LockFault('config', `alloc(${info.name}): test-only class; build the LockSpace with testClasses: true`);
    }
    const id = Atomics.add(this.words, H_NEXT_LOCK, 1);
    if (id >= this.nlocks) {
      Atomics.sub(this.words, H_NEXT_LOCK, 1);
      throw new LockFault('config', `alloc(${info.name}): all ${this.nlocks} locks of the region are allocated`);
    }
    const base = LOCKS_AT + id * LOCK_WORDS;
    if (Atomics.load(this.words, base + L_STATE) !== FREE) throw new LockFault('corrupt', `alloc: lock ${id} is not free`);
    Atomics.store(this.words, base + L_CLASS, cls + 1);
    return id as LockId;
  }

  /** Locks allocated so far. */
  allocated(): number {
    return Math.min(Atomics.load(this.words, H_NEXT_LOCK), this.nlocks);
  }

  classOf(id: LockId): LockClass {
    return (this.classWord(id) - 1) as LockClass;
  }

  /**
   * Acquire. `site` names the call site for lockdep reports; `key` orders
   * same-class nesting (the domid for per-domain locks).
   */
  lock(id: LockId, site: string, key = 0): void {
    const base = LOCKS_AT + id * LOCK_WORDS;
    const cls = this.checking ? this.beforeAcquire(id, site, key) : -1;
    // Fast path: one CAS, as Xen's _spin_lock fast path is one atomic.
    if (Atomics.compareExchange(this.words, base + L_STATE, FREE, HELD) !== FREE) this.lockSlow(id, base);
    this.words[base + L_OWNER] = myTag;
    if (this.checking) this.push(id, cls, key, site);
  }

  /**
   * Try once. A trylock cannot deadlock, so, as in Linux lockdep, it adds no
   * edge into its class; later locks taken under it still get edges from it.
   */
  tryLock(id: LockId, site: string, key = 0): boolean {
    const base = LOCKS_AT + id * LOCK_WORDS;
    let cls = -1;
    if (this.checking) {
      cls = this.validate(id);
      if (this.depth >= MAX_HELD_LOCKS) this.tooMany(id, site);
      this.log.checked('lock_order');
    }
    if (Atomics.compareExchange(this.words, base + L_STATE, FREE, HELD) !== FREE) return false;
    this.words[base + L_OWNER] = myTag;
    if (this.checking) this.push(id, cls, key, site);
    return true;
  }

  unlock(id: LockId): void {
    const base = LOCKS_AT + id * LOCK_WORDS;
    const w = this.words;
    if (w[base + L_OWNER] !== myTag) {
      throw new LockFault('not_held', `unlock(${this.describe(id)}): not held by thread ${myTag} (owner ${w[base + L_OWNER] ?? '?'})`);
    }
    if (this.checking) this.pop(id);
    w[base + L_OWNER] = NO_OWNER;
    // The exchange is the release (step 5 in docs/locks.md). V8 compiles a
    // seq-cst Atomics.store to xchg on x86 anyway, so this costs "a store"
    // and also tells us whether anyone announced waiting.
    const prev = Atomics.exchange(w, base + L_STATE, FREE);
    if (prev === CONTENDED) sched().wake(w, base + L_STATE, 1);
    else if (prev !== HELD) throw new LockFault('corrupt', `unlock(${this.describe(id)}): lock word was ${prev}`);
  }

  /** Held by anyone (a racy snapshot, for assertions and diagnostics). */
  isHeld(id: LockId): boolean {
    return Atomics.load(this.words, LOCKS_AT + id * LOCK_WORDS + L_STATE) !== FREE;
  }

  /** Held by this thread: exact, since only this thread writes its own tag there. */
  heldByMe(id: LockId): boolean {
    return this.words[LOCKS_AT + id * LOCK_WORDS + L_OWNER] === myTag;
  }

  /** Fatal unless this thread holds `id` (Xen: ASSERT(spin_is_locked(...)), but exact about who). */
  assertHeld(id: LockId): void {
    if (!this.heldByMe(id)) throw new LockFault('not_held', `assertHeld(${this.describe(id)}): not held by thread ${myTag}`);
  }

  /** Slow-path entries of this lock so far (contention statistics). */
  contended(id: LockId): number {
    return Atomics.load(this.words, LOCKS_AT + id * LOCK_WORDS + L_CONTENDED);
  }

  /**
   * Set this thread's held stack aside, and put it back: the deterministic
   * simulator runs another vCPU's operation on this thread at a point where
   * this one holds locks (hypervisor/sim), and lockdep must see that
   * operation as the other thread it stands for.
   */
  stashHeld(): HeldStash {
    const d = this.depth;
    const out: HeldStash = { lock: this.heldLock.slice(0, d), cls: this.heldClass.slice(0, d), key: this.heldKey.slice(0, d), site: this.heldSite.slice(0, d) };
    for (let i = 0; i < d; i++) this.heldSite[i] = '';
    this.depth = 0;
    return out;
  }
  unstashHeld(h: HeldStash): void {
    if (this.depth !== 0) throw new LockFault('not_held', `unstashHeld: the operation run in between left ${this.depth} lock(s) held`);
    this.heldLock.set(h.lock);
    this.heldClass.set(h.cls);
    this.heldKey.set(h.key);
    h.site.forEach((x, i) => (this.heldSite[i] = x));
    this.depth = h.lock.length;
  }

  /** Number of locks this thread holds (checking only; 0 otherwise). */
  heldCount(): number {
    return this.depth;
  }

  /** Every edge recorded in the region, by any thread. */
  edges(): LockdepEdge[] {
    const out: LockdepEdge[] = [];
    for (let h = 0; h < this.nclasses; h++) {
      for (let c = 0; c < this.nclasses; c++) {
        const sites = this.edgeSites(h, c);
        if (sites !== null) out.push({ from: this.className(h), to: this.className(c), ...sites });
      }
    }
    return out;
  }

  // ---- slow path ------------------------------------------------------------

  /**
   * Futex-style contention (Drepper, "Futexes are tricky", mutex #3), steps
   * 2–4 of docs/locks.md: spin briefly, because a futex hand-over costs about
   * 100 µs here (docs/semantics.md §9) while most hold times are sub-microsecond; then
   * announce a waiter with CONTENDED and sleep on the word.
   */
  private lockSlow(id: LockId, base: number): void {
    const w = this.words;
    const at = base + L_STATE;
    // Xen's spinlocks are not recursive: a second spin_lock by the holder
    // spins forever. Fail loudly instead; free here, since we only get to
    // the slow path when the word is taken.
    if (w[base + L_OWNER] === myTag) {
      throw new LockFault('recursive', `lock(${this.describe(id)}): already held by this thread (${myTag}); it would deadlock`);
    }
    Atomics.add(w, base + L_CONTENDED, 1);
    const s = sched();
    for (let i = 0; i < SPIN_BEFORE_WAIT; i++) {
      s.relax(i);
      // Test before test-and-set: spinning on a load keeps the line shared.
      if (Atomics.load(w, at) === FREE && Atomics.compareExchange(w, at, FREE, HELD) === FREE) return;
    }
    // Whoever sees FREE from the exchange owns the lock, in state CONTENDED
    // (conservative: its unlock may wake nobody, never misses a waiter).
    while (Atomics.exchange(w, at, CONTENDED) !== FREE) s.wait(w, at, CONTENDED, Infinity);
  }

  // ---- lockdep ---------------------------------------------------------------

  private classWord(id: LockId): number {
    const v = this.words[LOCKS_AT + id * LOCK_WORDS + L_CLASS];
    if (v === undefined || v <= 0 || v > this.nclasses) {
      throw new LockFault('bad_lock', `lock ${id}: not an allocated lock of this region (${this.allocated()} allocated)`);
    }
    return v;
  }

  private validate(id: LockId): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.nlocks) throw new LockFault('bad_lock', `lock id ${id} out of range 0..${this.nlocks - 1}`);
    return this.classWord(id) - 1;
  }

  /** Runs before the acquiring CAS, so a would-be deadlock is reported before it can happen. */
  private beforeAcquire(id: LockId, site: string, key: number): number {
    const cls = this.validate(id);
    if (this.depth >= MAX_HELD_LOCKS) this.tooMany(id, site);
    this.log.checked('lock_order');
    for (let i = 0; i < this.depth; i++) {
      if (this.heldLock[i] === id) {
        throw new LockFault('recursive', `lock(${this.describe(id)}) at '${site}': already held by this thread since '${this.heldSite[i]}'; it would deadlock`);
      }
      const h = this.heldClass[i] as number;
      if (h === cls) this.checkNesting(cls, i, site, key);
      else if (this.seen[h * C + cls] === 0) this.noteEdge(h, cls, i, site);
    }
    return cls;
  }

  private tooMany(id: LockId, site: string): never {
    throw new LockFault('too_many_held', `lock(${this.describe(id)}) at '${site}': thread ${myTag} already holds MAX_HELD_LOCKS (${MAX_HELD_LOCKS})`);
  }

  private push(id: LockId, cls: number, key: number, site: string): void {
    const d = this.depth;
    this.heldLock[d] = id;
    this.heldClass[d] = cls;
    this.heldKey[d] = key;
    this.heldSite[d] = site;
    this.depth = d + 1;
  }

  /** Locks may be released in any order (as in Xen); remove from wherever it sits. */
  private pop(id: LockId): void {
    let i = this.depth - 1;
    while (i >= 0 && this.heldLock[i] !== id) i--;
    if (i < 0) throw new LockFault('corrupt', `unlock(${this.describe(id)}): owner word says this thread, held stack disagrees`);
    for (let j = i + 1; j < this.depth; j++) {
      this.heldLock[j - 1] = this.heldLock[j] as number;
      this.heldClass[j - 1] = this.heldClass[j] as number;
      this.heldKey[j - 1] = this.heldKey[j] as number;
      this.heldSite[j - 1] = this.heldSite[j] as string;
    }
    this.depth--;
    this.heldSite[this.depth] = '';
  }

  /**
   * Same-class nesting. 'ordered' classes follow Xen's double locking
   * (double_gt_lock, get_two_gfns): a fixed order by key — here ascending
   * domid — so two threads locking the same pair cannot ABBA. 'never'
   * classes may not nest at all (two grant tables: docs/semantics.md §3).
   */
  private checkNesting(cls: number, i: number, site: string, key: number): void {
    const heldKey = this.heldKey[i] as number;
    const name = this.className(cls);
    if (this.ordered[cls] === 1) {
      if (key > heldKey) return;
      if (!this.claimReport(cls * C + cls, R_NEST)) return;
      this.log.violated(
        'lock_order',
        `nest_order ${name}: key ${key} at '${clip(site)}' while holding key ${heldKey} from '${clip(this.heldSite[i] ?? '')}'; same-class locks go in ascending key (domid) order`,
      );
      return;
    }
    if (!this.claimReport(cls * C + cls, R_NEST)) return;
    this.log.violated(
      'lock_order',
      `nest_never ${name}: key ${key} at '${clip(site)}' while holding key ${heldKey} from '${clip(this.heldSite[i] ?? '')}'; this class never nests`,
    );
  }

  /** Edge h→cls not yet known to this thread: look it up, record it if new. */
  private noteEdge(h: number, cls: number, i: number, site: string): void {
    const at = EDGES_AT + h * C + cls;
    if (Atomics.load(this.words, at) === 0) {
      const rec = this.writeSites(site, this.heldSite[i] ?? '');
      // Racing recorders of one edge: one CAS wins with a complete record;
      // only the winner runs the checks, so each new edge is judged once.
      if (Atomics.compareExchange(this.words, at, 0, rec) === 0) {
        Atomics.add(this.words, H_EDGES, 1);
        this.judgeNewEdge(h, cls, i, site);
      }
    }
    this.seen[h * C + cls] = 1;
  }

  private judgeNewEdge(h: number, cls: number, i: number, site: string): void {
    const heldSite = this.heldSite[i] ?? '';
    const hn = this.className(h);
    const cn = this.className(cls);
    // The documented hierarchy, even before any reverse edge exists (as Xen's
    // mm-locks.h level check fires on the first wrong acquisition).
    if ((this.rank[h] as number) > (this.rank[cls] as number) && this.claimReport(h * C + cls, R_RANK)) {
      this.log.violated(
        'lock_order',
        `rank ${hn}>${cn}: ${cn} (rank ${this.rank[cls]}) at '${clip(site)}' while holding ${hn} (rank ${this.rank[h]}) from '${clip(heldSite)}'`,
      );
    }
    // Cycle: is h reachable from cls? Both edges of an ABBA are published by
    // a seq-cst CAS before each recorder searches with seq-cst loads, so at
    // least one of two racing recorders sees the other's edge.
    const path = this.findPath(cls, h);
    if (path === null) return;
    const lo = Math.min(h, cls);
    const hi = Math.max(h, cls);
    if (!this.claimReport(lo * C + hi, R_INVERSION)) return;
    const reverse: string[] = [];
    for (let k = 0; k + 1 < path.length; k++) {
      const a = path[k] as number;
      const b = path[k + 1] as number;
      const s = this.edgeSites(a, b);
      reverse.push(`${this.className(a)}->${this.className(b)} at '${clip(s?.acquiredAt ?? '?')}'`);
    }
    const heldRev = this.edgeSites(path[0] as number, path[1] as number)?.heldFrom ?? '?';
    this.log.violated(
      'lock_order',
      `inversion ${hn}<->${cn}: ${hn}->${cn} at '${clip(site)}' vs ${reverse.join(', ')} [held from '${clip(heldSite)}', '${clip(heldRev)}']`,
    );
  }

  /** Depth-first search over the shared class graph; the path from→…→to, or null. */
  private findPath(from: number, to: number): number[] | null {
    const n = this.nclasses;
    const parent = new Int32Array(n).fill(-1);
    const visited = new Uint8Array(n);
    const stack: number[] = [from];
    visited[from] = 1;
    while (stack.length > 0) {
      const a = stack.pop() as number;
      if (a === to) {
        const path = [a];
        for (let p = parent[a] as number; p !== -1; p = parent[p] as number) path.push(p);
        return path.reverse();
      }
      for (let b = 0; b < n; b++) {
        if (visited[b] === 0 && b !== a && Atomics.load(this.words, EDGES_AT + a * C + b) !== 0) {
          visited[b] = 1;
          parent[b] = a;
          stack.push(b);
        }
      }
    }
    return null;
  }

  /** True for exactly one caller per (cell, bit) in the whole region. */
  private claimReport(cell: number, bit: number): boolean {
    return (Atomics.or(this.words, REPORTED_AT + cell, bit) & bit) === 0;
  }

  /**
   * Slab record: u16 LE length of the acquire site, u16 LE length of the
   * held site, then both UTF-8 strings. Returns the edge word to publish.
   */
  private writeSites(acquiredAt: string, heldFrom: string): number {
    const a = encodeSite(acquiredAt);
    const b = encodeSite(heldFrom);
    const need = 4 + a.length + b.length;
    const off = Atomics.add(this.words, H_SLAB_NEXT, need);
    if (off + need > LOCKDEP_SITE_SLAB_BYTES) {
      Atomics.add(this.words, H_SITES_LOST, 1);
      return EDGE_NO_SITE;
    }
    const s = this.slab;
    s[off] = a.length & 0xff;
    s[off + 1] = a.length >>> 8;
    s[off + 2] = b.length & 0xff;
    s[off + 3] = b.length >>> 8;
    s.set(a, off + 4);
    s.set(b, off + 4 + a.length);
    return off + 1;
  }

  private edgeSites(h: number, c: number): EdgeSites | null {
    const word = Atomics.load(this.words, EDGES_AT + h * C + c);
    if (word === 0) return null;
    if (word === EDGE_NO_SITE) return { acquiredAt: '(site slab full)', heldFrom: '(site slab full)' };
    const off = word - 1;
    const s = this.slab;
    if (off < 0 || off + 4 > LOCKDEP_SITE_SLAB_BYTES) throw new LockFault('corrupt', `edge ${h}->${c}: slab offset ${off}`);
    const la = (s[off] as number) | ((s[off + 1] as number) << 8);
    const lb = (s[off + 2] as number) | ((s[off + 3] as number) << 8);
    if (la > MAX_SITE_BYTES || lb > MAX_SITE_BYTES || off + 4 + la + lb > LOCKDEP_SITE_SLAB_BYTES) {
      throw new LockFault('corrupt', `edge ${h}->${c}: slab record lengths ${la}/${lb}`);
    }
    // slice() copies out of shared memory: TextDecoder refuses shared views.
    const dec = new TextDecoder();
    return {
      acquiredAt: dec.decode(s.slice(off + 4, off + 4 + la)),
      heldFrom: dec.decode(s.slice(off + 4 + la, off + 4 + la + lb)),
    };
  }

  private className(c: number): string {
    return this.names[c] ?? `class#${c}`;
  }

  private describe(id: LockId): string {
    const v = this.words[LOCKS_AT + id * LOCK_WORDS + L_CLASS];
    return v !== undefined && v > 0 && v <= this.nclasses ? `${this.className(v - 1)}#${id}` : `#${id}`;
  }
}

function encodeSite(site: string): Uint8Array {
  const buf = new Uint8Array(MAX_SITE_BYTES);
  // encodeInto never splits a character, so a clipped site is valid UTF-8.
  const { written } = new TextEncoder().encodeInto(site, buf);
  return buf.subarray(0, written);
}

function clip(site: string): string {
  return site.length <= REPORT_SITE_CHARS ? site : `${site.slice(0, REPORT_SITE_CHARS - 1)}…`;
}

/** Human-readable list of the recorded edges (debugging). */
export function lockdepReport(space: LockSpace): string {
  const edges = space.edges();
  if (edges.length === 0) return 'lockdep: no edges recorded';
  const lines = edges.map((e) => `  ${e.from} -> ${e.to}: ${e.to} taken at '${e.acquiredAt}' holding ${e.from} from '${e.heldFrom}'`);
  return [`lockdep: ${edges.length} edge(s)`, ...lines].join('\n');
}

/** Class information for a lock, for callers that only have ids. */
export function lockClassOf(space: LockSpace, id: LockId): LockClassInfo {
  return lockClassInfo(space.classOf(id));
}
