/**
 * The invariants of docs/semantics.md §6 and their shared counters. Every thread that
 * checks or breaks an invariant records it here; the summary reads it.
 *
 * Region layout (Int32 words):
 *   [0 .. 2·N)            checks/violations per invariant (Atomics.add by anyone)
 *   [2·N]                 next log slot (Atomics.add)
 *   [2·N+1 ..)            log: VIOLATION_LOG_ENTRIES × (1 word invariant + text bytes)
 * Publish protocol for a log entry: (1) claim a slot with Atomics.add,
 * (2) write text bytes, (3) Atomics.store the invariant id + 1 — a reader
 * that sees 0 skips the slot.
 */
import { VIOLATION_LOG_ENTRIES, VIOLATION_TEXT_BYTES } from './constants.js';

export const INVARIANTS = [
  'no_use_after_revoke', // 1
  'refcounts', // 2
  'frames_conserved', // 3
  'mapped_not_ram', // 4
  'grant_flags', // 5
  'ioreq_forward', // 6
  'lock_order', // 7
  'no_leaks', // 8
  'scrubbed', // 9
  'isolation', // 10: every reach of a frame explained by a right (layout/reach.ts)
  'records_match_frames', // 11: every live record of a design names frames owned by whom it says
  'p2m_tables', // 12: each p2m's tables are its own and counted; superpages aligned, on frames of one kind (layout/p2m.ts)
  'reachable_not_free', // 13: a frame reached (TLB fill, hypercall or grant copy) or named by a p2m entry is allocated: not on the heap, not being freed
] as const;
export type Invariant = (typeof INVARIANTS)[number];
const N = INVARIANTS.length;
const index = new Map<Invariant, number>(INVARIANTS.map((n, i) => [n, i]));

const LOG_BASE = 2 * N + 1;
const EVENT_TAG = 0x7f;
const ENTRY_WORDS = 1 + VIOLATION_TEXT_BYTES / 4;

export interface ViolationRecord {
  invariant: Invariant;
  text: string;
}

export class InvariantLog {
  readonly words: Int32Array;
  private readonly bytes: Uint8Array;

  static bytes(): number {
    return (LOG_BASE + VIOLATION_LOG_ENTRIES * ENTRY_WORDS) * 4;
  }

  constructor(readonly sab: SharedArrayBuffer) {
    if (sab.byteLength !== InvariantLog.bytes()) throw new Error('InvariantLog: region size mismatch');
    this.words = new Int32Array(sab);
    this.bytes = new Uint8Array(sab);
  }

  checked(inv: Invariant, n = 1): void {
    Atomics.add(this.words, 2 * idx(inv), n);
  }

  /** Record a violation: counted always, its text kept while the log has room. */
  violated(inv: Invariant, text: string): void {
    Atomics.add(this.words, 2 * idx(inv) + 1, 1);
    this.append(idx(inv) + 1, text);
  }

  /** Something worth knowing that is not a violation (a guest crashed for a protocol error, …). */
  event(text: string): void {
    this.append(EVENT_TAG, text);
  }

  /** Claim a log slot, write the text, publish the tag (the protocol in the file comment). */
  private append(tag: number, text: string): void {
    const slot = Atomics.add(this.words, LOG_BASE - 1, 1);
    if (slot >= VIOLATION_LOG_ENTRIES) return;
    const base = LOG_BASE + slot * ENTRY_WORDS;
    const enc = new TextEncoder().encode(text).subarray(0, VIOLATION_TEXT_BYTES - 1);
    const at = (base + 1) * 4;
    this.bytes.fill(0, at, at + VIOLATION_TEXT_BYTES);
    this.bytes.set(enc, at);
    Atomics.store(this.words, base, tag);
  }

  events(): string[] {
    return this.entries(true).map((r) => r.text);
  }

  counts(): Record<Invariant, { checks: number; violations: number }> {
    const out = {} as Record<Invariant, { checks: number; violations: number }>;
    INVARIANTS.forEach((name, i) => {
      out[name] = { checks: Atomics.load(this.words, 2 * i), violations: Atomics.load(this.words, 2 * i + 1) };
    });
    return out;
  }

  totalViolations(): number {
    let n = 0;
    for (let i = 0; i < N; i++) n += Atomics.load(this.words, 2 * i + 1);
    return n;
  }

  records(): ViolationRecord[] {
    return this.entries(false);
  }

  private entries(events: boolean): ViolationRecord[] {
    const out: ViolationRecord[] = [];
    const n = Math.min(Atomics.load(this.words, LOG_BASE - 1), VIOLATION_LOG_ENTRIES);
    const dec = new TextDecoder();
    for (let slot = 0; slot < n; slot++) {
      const base = LOG_BASE + slot * ENTRY_WORDS;
      const tag = Atomics.load(this.words, base);
      if (tag === 0 || (tag === EVENT_TAG) !== events) continue;
      const at = (base + 1) * 4;
      const raw = this.bytes.slice(at, at + VIOLATION_TEXT_BYTES);
      const end = raw.indexOf(0);
      out.push({ invariant: (INVARIANTS[tag - 1] ?? 'no_leaks') as Invariant, text: dec.decode(end < 0 ? raw : raw.subarray(0, end)) });
    }
    return out;
  }
}

function idx(inv: Invariant): number {
  const i = index.get(inv);
  if (i === undefined) throw new Error(`unknown invariant ${inv}`);
  return i;
}
