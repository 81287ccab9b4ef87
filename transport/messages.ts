/**
 * The IOREQ transport's wire format: one msgpackr map per stream entry.
 *
 * Fields mirror Xen's ioreq_t (xen/include/public/hvm/ioreq.h) plus the
 * routing the simulator needs (host, domid, vcpu, seq, server). Whatever
 * arrives from Redis was written by another process — possibly a buggy or
 * hostile device model — so it is decoded once, every field is range-checked,
 * and a fresh object is built from the checked locals (the double-fetch rule
 * of docs/style.md §3). Decoding never throws: a malformed entry becomes
 * `{ error }`, naming the first field that was wrong. Encoding validates
 * too, and throws, because an invalid outgoing message is the caller's bug.
 *
 * Note that IoreqResp has a numeric `error` field while the failure shape
 * has a string one: tell them apart with `isWireError`, not `'error' in x`.
 */
import { Packr, Unpackr } from 'msgpackr';
import { MAX_DOMAINS, MAX_VCPUS_PER_DOMAIN } from '../hypervisor/layout/constants.js';
import { IOREQ_STATE, IOREQ_TYPE } from '../hypervisor/public/ioreq.js';
import { MAX_HOST_CHARS, MAX_IOREQ_SERVER_IDS, MAX_RESP_ERROR, MAX_WIRE_BYTES } from './constants.js';

/** An ioreq on its way from the hypervisor to an IOREQ server. */
export interface IoreqMsg {
  /** The host process (simulated machine) that sent it; printable ASCII. */
  host: string;
  /** Frontend domain and vCPU that made the access. */
  domid: number;
  vcpu: number;
  /** Per-vCPU sequence number: (domid, vcpu, seq) names one ioreq for ever. */
  seq: number;
  /** Host-wide server id: `target * MAX_IOREQ_SERVERS_PER_DOMAIN + index`; the request stream's key. */
  server: number;
  /** IOREQ_TYPE.* (hypervisor/public/ioreq.ts). */
  type: number;
  /** IOREQ_DIR: 0 write, 1 read. */
  dir: 0 | 1;
  /** Guest physical address (a safe integer). */
  addr: number;
  size: 1 | 2 | 4 | 8;
  /** Unsigned 32-bit (0 … 2^32−1); store into an Int32Array with `| 0`, read back with `>>> 0`. */
  data: number;
  /** Repetitions (≥ 1, as Xen's hvmemul_do_io never sends 0). */
  count: number;
  df: 0 | 1;
  data_is_ptr: 0 | 1;
  /** IOREQ_STATE.* — READY on a fresh request. */
  state: number;
  /**
   * 1: a buffered ioreq (a posted write from the server's buffered ring);
   * `seq` is then its position in that ring, counted from the ring's
   * creation without wrapping, and `vcpu` the vCPU that made it.
   */
  buf: 0 | 1;
  /**
   * A synchronous ioreq (buf 0): the server's buffered ioreqs at positions
   * below `after` were made before it, and are applied before it (a read
   * flushes the posted writes before it, docs/ioreq.md §13), whatever the
   * stream lost and the dispatcher sent again. 0 for a buffered ioreq, and
   * for a server without a buffered ring.
   */
  after: number;
}

/** A server's answer, on its way back to the hypervisor. */
export interface IoreqResp {
  host: string;
  domid: number;
  vcpu: number;
  seq: number;
  /** Unsigned 32-bit, as in IoreqMsg. */
  data: number;
  /** IOREQ_STATE.* — IORESP_READY from a correct server; the hypervisor judges the transition. */
  state: number;
  /** 0, a negative errno, or a small positive server code (|error| ≤ MAX_RESP_ERROR). */
  error: number;
  /**
   * 1: not an answer but the device model's word that it applied the
   * buffered ioreqs of server `vcpu` (the server's index among the
   * frontend's) below position `seq`: the hypervisor may reuse their places
   * in the ring (Xen: the device model advancing read_pointer).
   */
  buf: 0 | 1;
}

export interface WireError {
  error: string;
}

/** The failure shape of decodeReq/decodeResp (IoreqResp's own `error` is a number). */
export function isWireError(x: IoreqMsg | IoreqResp | WireError): x is WireError {
  return typeof (x as { error?: unknown }).error === 'string';
}

type Check = (v: unknown) => string | undefined;

const U32_MAX = 0xffff_ffff;

function intIn(min: number, max: number): Check {
  return (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? undefined : `must be an integer in [${min}, ${max}], got ${show(v)}`);
}
function oneOf(values: readonly number[]): Check {
  return (v) => (typeof v === 'number' && values.includes(v) ? undefined : `must be one of {${values.join(', ')}}, got ${show(v)}`);
}
const hostCheck: Check = (v) =>
  typeof v === 'string' && v.length >= 1 && v.length <= MAX_HOST_CHARS && /^[\x21-\x7e]+$/.test(v)
    ? undefined
    : `must be 1–${MAX_HOST_CHARS} printable ASCII characters, got ${show(v)}`;

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'an array' : typeof v;
}

const IOREQ_TYPES: readonly number[] = Object.values(IOREQ_TYPE);
const IOREQ_STATES: readonly number[] = Object.values(IOREQ_STATE);

const ROUTING = {
  host: hostCheck,
  domid: intIn(0, MAX_DOMAINS - 1),
  vcpu: intIn(0, MAX_VCPUS_PER_DOMAIN - 1),
  seq: intIn(0, Number.MAX_SAFE_INTEGER),
} as const;

const REQ_FIELDS = {
  ...ROUTING,
  server: intIn(0, MAX_IOREQ_SERVER_IDS - 1),
  type: oneOf(IOREQ_TYPES),
  dir: oneOf([0, 1]),
  addr: intIn(0, Number.MAX_SAFE_INTEGER),
  size: oneOf([1, 2, 4, 8]),
  data: intIn(0, U32_MAX),
  count: intIn(1, U32_MAX),
  df: oneOf([0, 1]),
  data_is_ptr: oneOf([0, 1]),
  state: oneOf(IOREQ_STATES),
  buf: oneOf([0, 1]),
  after: intIn(0, Number.MAX_SAFE_INTEGER),
} as const satisfies Record<keyof IoreqMsg, Check>;

const RESP_FIELDS = {
  ...ROUTING,
  data: intIn(0, U32_MAX),
  state: oneOf(IOREQ_STATES),
  error: intIn(-MAX_RESP_ERROR, MAX_RESP_ERROR),
  buf: oneOf([0, 1]),
} as const satisfies Record<keyof IoreqResp, Check>;

/**
 * Checks `o` has exactly the fields of `spec`, each valid; returns a fresh
 * object holding the checked values (in spec order), or the first problem.
 */
function validate(what: string, spec: Record<string, Check>, o: unknown): Record<string, unknown> | WireError {
  const proto: unknown = typeof o === 'object' && o !== null ? Object.getPrototypeOf(o) : undefined;
  if (typeof o !== 'object' || o === null || (proto !== Object.prototype && proto !== null)) {
    return { error: `${what}: expected a map, got ${show(o)}` };
  }
  const rec = o as Record<string, unknown>;
  for (const k of Object.keys(rec)) if (!Object.hasOwn(spec, k)) return { error: `${what}: unexpected field ${show(k)}` };
  const out: Record<string, unknown> = {};
  for (const [k, check] of Object.entries(spec)) {
    if (!Object.hasOwn(rec, k)) return { error: `${what}: missing field ${k}` };
    const v = rec[k]; // read once: the check and the copy see the same value
    const bad = check(v);
    if (bad !== undefined) return { error: `${what}.${k} ${bad}` };
    out[k] = v;
  }
  return out;
}

const packr = new Packr({ useRecords: false });
// int64AsType 'auto': a peer that encodes a u64 still decodes to a number
// when it is safe, and to a bigint (which validation rejects) when it is not.
// (msgpackr 2.1 supports 'auto' at run time; its typings lag behind.)
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'number' });

function unpack(what: string, b: unknown): { ok: unknown } | WireError {
  if (!Buffer.isBuffer(b)) return { error: `${what}: expected a Buffer, got ${show(b)}` };
  if (b.length === 0) return { error: `${what}: empty entry` };
  if (b.length > MAX_WIRE_BYTES) return { error: `${what}: ${b.length} bytes, more than MAX_WIRE_BYTES (${MAX_WIRE_BYTES})` };
  try {
    // unpack() also throws when bytes are left over after the first value.
    return { ok: unpackr.unpack(b) as unknown };
  } catch (e) {
    return { error: `${what}: not msgpack (${e instanceof Error ? e.message : String(e)})` };
  }
}

function decode(what: string, spec: Record<string, Check>, b: Buffer): Record<string, unknown> | WireError {
  const r = unpack(what, b);
  if ('error' in r) return r;
  return validate(what, spec, r.ok);
}

/** Decodes a request entry; never throws. */
export function decodeReq(b: Buffer): IoreqMsg | WireError {
  return decode('IoreqMsg', REQ_FIELDS, b) as IoreqMsg | WireError;
}

/** Decodes a response entry; never throws. */
export function decodeResp(b: Buffer): IoreqResp | WireError {
  return decode('IoreqResp', RESP_FIELDS, b) as IoreqResp | WireError;
}

/** True when `x` has IoreqMsg's fields (its `server` tells it from a response). */
function looksLikeReq(x: IoreqMsg | IoreqResp): x is IoreqMsg {
  return Object.hasOwn(x, 'server');
}

/** Encodes a request or response; throws a TypeError naming the field when `x` is invalid. */
export function encode(x: IoreqMsg | IoreqResp): Buffer {
  const what = looksLikeReq(x) ? 'IoreqMsg' : 'IoreqResp';
  const v = validate(what, what === 'IoreqMsg' ? REQ_FIELDS : RESP_FIELDS, x);
  if (typeof v.error === 'string') throw new TypeError(`encode: ${v.error}`);
  const b = packr.pack(v);
  if (b.length > MAX_WIRE_BYTES) throw new TypeError(`encode: ${what} is ${b.length} bytes, more than MAX_WIRE_BYTES`);
  return b;
}
