/**
 * Who wrote an entry (docs/security.md): every entry of a run's streams
 * carries, beside its message (`m`), a MAC (`a`) — HMAC-SHA256, cut to
 * MAC_BYTES — over the stream's key and the message bytes, keyed per IOREQ
 * server. The host draws a run key that never leaves the process (not in
 * Redis, not on a command line, not in a run record); the dispatcher derives
 * every server's key from it, and a device model is handed only the keys of
 * the servers it serves. So a Redis writer without the keys can delete,
 * delay and replay entries, but cannot forge one a reader accepts, and one
 * device model cannot answer for another's server.
 *
 * The MAC names the stream, so an entry copied to another stream (another
 * server, another domain, another run) does not verify. Replays of a
 * genuine entry on its own stream are duplicates, which idempotency by
 * (domid, vcpu, seq) already makes harmless (docs/ioreq.md §9).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { MAC_BYTES } from './constants.js';

/** Bytes of a run key. */
const RUN_KEY_BYTES = 32;

/** A fresh run key (the host's, once per run). */
export function newRunKey(): Buffer {
  return randomBytes(RUN_KEY_BYTES);
}

/** The key of IOREQ server `server` (host-wide id) in the run keyed by `run`. */
export function serverKey(run: Buffer, server: number): Buffer {
  if (run.length !== RUN_KEY_BYTES) throw new RangeError(`serverKey: a run key has ${RUN_KEY_BYTES} bytes, got ${run.length}`);
  if (!Number.isInteger(server) || server < 0) throw new RangeError(`serverKey: bad server id ${server}`);
  return createHmac('sha256', run).update(`xgsim-ioreq-server:${server}`).digest();
}

/** The MAC of `payload` on stream `stream` under `key`. */
export function entryMac(key: Buffer, stream: string, payload: Buffer): Buffer {
  return createHmac('sha256', key).update(stream).update('\0').update(payload).digest().subarray(0, MAC_BYTES);
}

/** Whether `mac` is the MAC of `payload` on `stream` under `key` (in constant time). */
export function macOk(key: Buffer, stream: string, payload: Buffer, mac: Buffer | undefined): boolean {
  if (mac === undefined || mac.length !== MAC_BYTES) return false;
  return timingSafeEqual(entryMac(key, stream, payload), mac);
}

/** Keys as they cross a thread boundary (a vCPU task): server id → base64. */
export type WireKeys = Record<number, string>;

export function keysToWire(keys: ReadonlyMap<number, Buffer>): WireKeys {
  const out: WireKeys = {};
  for (const [s, k] of keys) out[s] = k.toString('base64');
  return out;
}

export function keysFromWire(w: WireKeys): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const [s, k] of Object.entries(w)) out.set(Number(s), Buffer.from(k, 'base64'));
  return out;
}
