/**
 * The campaign streams' wire format: one msgpackr map per entry, a job on
 * the jobs stream and a result on the results stream. Whatever arrives was
 * written by another process (another version of xgsim, a host on another
 * machine), so it is decoded once, every field checked, and a fresh object
 * built from the checked values. Decoding never throws: a malformed entry
 * becomes `{ error }`. Encoding validates and throws: an invalid outgoing
 * message is the caller's bug.
 */
import { Packr, Unpackr } from 'msgpackr';

export const CAMPAIGN_WIRE_VERSION = 2;
/** Largest job entry: a job is a few hundred bytes. */
export const MAX_JOB_BYTES = 16 * 1024;
/** Largest result entry: a failing run's record carries its summary (≤ 256 violation texts). */
export const MAX_RESULT_BYTES = 1024 * 1024;
const MAX_NAME = 200;
const MAX_FLAGS = 16;
/** Every BUGGIFY switch at once: two words of 32 (hypervisor/xen/buggify.ts BUG_WORDS). */
const MAX_BUGS = 64;
const MAX_TEXT = 4096;
/** An encoded histogram of 3 significant digits over 0.1 µs…1 h is a few KB; this is far above. */
const MAX_HDR_CHARS = 1 << 20;

/** 'sim' came later under the same wire version: a host that predates it answers a sim job 'error' (malformed job), never runs it wrong. */
export const JOB_KINDS = ['stress-revoke', 'up', 'chaos', 'sim'] as const;
export type WireJobKind = (typeof JOB_KINDS)[number];
export const RESULT_STATUSES = ['pass', 'fail', 'error', 'timeout'] as const;
export type ResultStatus = (typeof RESULT_STATUSES)[number];

export interface JobMsg {
  v: typeof CAMPAIGN_WIRE_VERSION;
  campaign: string;
  /** 0 … runs−1: the job's identity within its campaign (results are deduplicated by it). */
  index: number;
  template: string;
  kind: WireJobKind;
  /** Topology or chaos plan; '' when the kind takes none (stress-revoke) or uses its default (sim). */
  file: string;
  flags: Record<string, string | boolean>;
  seed: number;
  buggify: string[];
  timeout_ms: number;
}

/** What the campaign needs of a run's Summary. */
export interface ResultSummary {
  verdict: 'pass' | 'fail';
  transport: string;
  duration_ms: number;
  violations: number;
  /** Invariants with violations. */
  failed: string[];
  /** First lines of the run's errors (at most 3). */
  errors: string[];
  revokes: number;
  accesses: number;
}

/** orchestrator/stats.ts LatencyHistogram: an HdrHistogram's compressed base64 encoding, its count and max. */
export interface WireHistogram {
  hdr: string;
  n: number;
  max_us: number;
}

export interface ResultMsg {
  v: typeof CAMPAIGN_WIRE_VERSION;
  campaign: string;
  index: number;
  /** The host (consumer) that ran it. */
  host: string;
  /** pass/fail: the run's verdict; error: the job could not run (bad input, a host process that died); timeout: it outlived timeout_ms. */
  status: ResultStatus;
  elapsed_ms: number;
  /** Times the job was handed out (> 1: reclaimed from a host that died or gave up). */
  deliveries: number;
  /** Why, for error and timeout, and for a failing sim run (its first violation or error, one line); '' otherwise. */
  error: string;
  summary: ResultSummary | null;
  revoke_hist: WireHistogram | null;
  /** The run record (runs/record.ts) of a failing run; null for passing runs and errors. */
  record: Record<string, unknown> | null;
}

export interface WireError {
  error: string;
}

/** The failure shape of the decoders: exactly one field, a string `error` (a ResultMsg has an `error` field too, among ten others). */
export function isWireError<T extends object>(x: T | WireError): x is WireError {
  return typeof (x as { error?: unknown }).error === 'string' && Object.keys(x).length === 1;
}

type Check = (v: unknown) => string | undefined;

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined || typeof v === 'bigint') return String(v);
  return Array.isArray(v) ? 'an array' : typeof v;
}
const isPlain = (o: unknown): o is Record<string, unknown> => {
  const proto: unknown = typeof o === 'object' && o !== null ? Object.getPrototypeOf(o) : undefined;
  return typeof o === 'object' && o !== null && !Array.isArray(o) && (proto === Object.prototype || proto === null);
};
const intIn = (min: number, max: number): Check => (v) =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? undefined : `must be an integer in [${min}, ${max}], got ${show(v)}`;
const numIn = (min: number, max: number): Check => (v) => (typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max ? undefined : `must be a number in [${min}, ${max}], got ${show(v)}`);
const text = (min: number, max: number): Check => (v) => (typeof v === 'string' && v.length >= min && v.length <= max ? undefined : `must be a string of ${min}–${max} characters, got ${show(v)}`);
const base64 = (max: number): Check => (v) => (typeof v === 'string' && v.length <= max && /^[A-Za-z0-9+/]*={0,2}$/.test(v) ? undefined : `must be base64 of at most ${max} characters, got ${show(v)}`);
const name: Check = (v) => (typeof v === 'string' && /^[\x21-\x7e]{1,200}$/.test(v) ? undefined : `must be 1–${MAX_NAME} printable ASCII characters, got ${show(v)}`);
const oneOf = (values: readonly unknown[]): Check => (v) => (values.includes(v) ? undefined : `must be one of ${values.map(show).join(', ')}, got ${show(v)}`);
const listOf = (max: number, item: Check): Check => (v) => {
  if (!Array.isArray(v)) return `must be a list, got ${show(v)}`;
  if (v.length > max) return `has ${v.length} items, more than ${max}`;
  for (const [i, x] of v.entries()) {
    const bad = item(x);
    if (bad !== undefined) return `[${i}] ${bad}`;
  }
  return undefined;
};
const flags: Check = (v) => {
  if (!isPlain(v)) return `must be a map, got ${show(v)}`;
  const es = Object.entries(v);
  if (es.length > MAX_FLAGS) return `has ${es.length} flags, more than ${MAX_FLAGS}`;
  for (const [k, x] of es) {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(k)) return `has a bad flag name ${show(k)}`;
    if (typeof x !== 'boolean' && (typeof x !== 'string' || x.length > 200)) return `.${k} must be a string or a boolean, got ${show(x)}`;
  }
  return undefined;
};
const nullOr = (c: Check): Check => (v) => (v === null ? undefined : c(v));

/** Checks `o` has exactly the fields of `spec`; returns a fresh object of the checked values, or the first problem. */
function validate(what: string, spec: Record<string, Check>, o: unknown): Record<string, unknown> | WireError {
  if (!isPlain(o)) return { error: `${what}: expected a map, got ${show(o)}` };
  for (const k of Object.keys(o)) if (!Object.hasOwn(spec, k)) return { error: `${what}: unexpected field ${show(k)}` };
  const out: Record<string, unknown> = {};
  for (const [k, check] of Object.entries(spec)) {
    if (!Object.hasOwn(o, k)) return { error: `${what}: missing field ${k}` };
    const v = o[k]; // read once: the check and the copy see the same value
    const bad = check(v);
    if (bad !== undefined) return { error: `${what}.${k} ${bad}` };
    out[k] = v;
  }
  return out;
}
const sub = (what: string, spec: Record<string, Check>): Check => (v) => {
  const r = validate(what, spec, v);
  return isWireError(r) ? `(${r.error})` : undefined;
};

const JOB_FIELDS = {
  v: oneOf([CAMPAIGN_WIRE_VERSION]),
  campaign: name,
  index: intIn(0, 10_000_000),
  template: text(1, MAX_NAME),
  kind: oneOf(JOB_KINDS),
  file: text(0, MAX_TEXT),
  flags,
  seed: intIn(0, 2 ** 31 - 1),
  buggify: listOf(MAX_BUGS, text(1, 64)),
  timeout_ms: intIn(1, 24 * 3600_000),
} as const satisfies Record<keyof JobMsg, Check>;

const SUMMARY_FIELDS = {
  verdict: oneOf(['pass', 'fail']),
  transport: text(0, 64),
  duration_ms: numIn(0, Number.MAX_SAFE_INTEGER),
  violations: intIn(0, Number.MAX_SAFE_INTEGER),
  failed: listOf(64, text(1, 64)),
  errors: listOf(3, text(0, MAX_TEXT)),
  revokes: intIn(0, Number.MAX_SAFE_INTEGER),
  accesses: intIn(0, Number.MAX_SAFE_INTEGER),
} as const satisfies Record<keyof ResultSummary, Check>;

const HIST_FIELDS = {
  hdr: base64(MAX_HDR_CHARS),
  n: intIn(0, Number.MAX_SAFE_INTEGER),
  max_us: numIn(0, Number.MAX_SAFE_INTEGER),
} as const satisfies Record<keyof WireHistogram, Check>;

const RESULT_FIELDS = {
  v: oneOf([CAMPAIGN_WIRE_VERSION]),
  campaign: name,
  index: intIn(0, 10_000_000),
  host: name,
  status: oneOf(RESULT_STATUSES),
  elapsed_ms: numIn(0, Number.MAX_SAFE_INTEGER),
  deliveries: intIn(0, 1_000_000),
  error: text(0, MAX_TEXT),
  summary: nullOr(sub('summary', SUMMARY_FIELDS)),
  revoke_hist: nullOr(sub('revoke_hist', HIST_FIELDS)),
  record: (v) => (v === null || isPlain(v) ? undefined : `must be a map or null, got ${show(v)}`),
} as const satisfies Record<keyof ResultMsg, Check>;

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'number' });

function decode(what: string, spec: Record<string, Check>, max: number, b: unknown): Record<string, unknown> | WireError {
  if (!Buffer.isBuffer(b)) return { error: `${what}: expected bytes, got ${show(b)}` };
  if (b.length === 0) return { error: `${what}: empty entry` };
  if (b.length > max) return { error: `${what}: ${b.length} bytes, more than ${max}` };
  let o: unknown;
  try {
    o = unpackr.unpack(b);
  } catch (e) {
    return { error: `${what}: not msgpack (${e instanceof Error ? e.message : String(e)})` };
  }
  return validate(what, spec, o);
}

function encode(what: string, spec: Record<string, Check>, max: number, x: object): Buffer {
  const v = validate(what, spec, x);
  if (isWireError(v)) throw new TypeError(`encode: ${v.error}`);
  const b = packr.pack(v);
  if (b.length > max) throw new TypeError(`encode: ${what} is ${b.length} bytes, more than ${max}`);
  return b;
}

export const decodeJob = (b: unknown): JobMsg | WireError => decode('JobMsg', JOB_FIELDS, MAX_JOB_BYTES, b) as JobMsg | WireError;
export const decodeResult = (b: unknown): ResultMsg | WireError => decode('ResultMsg', RESULT_FIELDS, MAX_RESULT_BYTES, b) as ResultMsg | WireError;
export const encodeJob = (j: JobMsg): Buffer => encode('JobMsg', JOB_FIELDS, MAX_JOB_BYTES, j);
export const encodeResult = (r: ResultMsg): Buffer => encode('ResultMsg', RESULT_FIELDS, MAX_RESULT_BYTES, r);

/**
 * The campaign and index of a job entry that failed validation, when they
 * can still be read, so a host can answer a malformed job with an 'error'
 * result instead of leaving its campaign waiting for it.
 */
export function jobIdentity(b: unknown): { campaign: string; index: number } | undefined {
  if (!Buffer.isBuffer(b) || b.length === 0 || b.length > MAX_JOB_BYTES) return undefined;
  try {
    const o: unknown = unpackr.unpack(b);
    if (!isPlain(o)) return undefined;
    const campaign = o['campaign'];
    const index = o['index'];
    if (name(campaign) === undefined && intIn(0, 10_000_000)(index) === undefined) return { campaign: campaign as string, index: index as number };
  } catch {
    return undefined;
  }
  return undefined;
}
