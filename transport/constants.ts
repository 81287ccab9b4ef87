/**
 * The transport's static limits (docs/style.md §6). They sit here rather than in
 * hypervisor/layout/constants.ts only because transport/ is its own module; the
 * relations to the machine's limits are asserted below, at module load.
 */
import { MAX_DOMAINS, MAX_IOREQ_SERVERS_PER_DOMAIN, MAX_VCPUS, MAX_VCPUS_PER_DOMAIN } from '../hypervisor/layout/constants.js';

/**
 * Host-wide IOREQ server ids: `target * MAX_IOREQ_SERVERS_PER_DOMAIN + index`
 * (the same numbering as the ring transport's event words). A request stream
 * is keyed by this id, so two frontends' server 0 never share a stream.
 */
export const MAX_IOREQ_SERVER_IDS = MAX_DOMAINS * MAX_IOREQ_SERVERS_PER_DOMAIN;

/**
 * Entries a stream keeps: every XADD carries `MAXLEN ~ STREAM_MAXLEN_ENTRIES`.
 * `~` lets Redis trim whole radix-tree nodes only (stream-node-max-entries,
 * 100 by default), so a stream may hold up to one node more than this.
 *
 * Trimming drops the oldest entries whether acknowledged or not, so the bound
 * must stay far above what can be outstanding: at most one ioreq per vCPU is
 * in flight (a vCPU blocks on its ioreq, as in Xen's hvm_send_ioreq), plus
 * the duplicates a reconnect re-sends. A request trimmed before it was
 * processed is lost (counted as `lost` in the bus's stats).
 */
export const STREAM_MAXLEN_ENTRIES = 10_000;

/** Largest encoded IoreqMsg/IoreqResp accepted; anything longer is malformed before decoding. */
export const MAX_WIRE_BYTES = 1024;

/** Longest `host` string, printable ASCII (a DNS name is at most 253 characters). */
export const MAX_HOST_CHARS = 255;

/** Keys a SeenSet remembers by default before it forgets the oldest. */
export const SEEN_SET_CAPACITY = 4096;

/** Entries one readRequests/readResponses/reclaim call may return. */
export const MAX_READ_COUNT = 1024;

/** Longest BLOCK a read may ask for; reads loop instead of blocking for ever, so close() stays prompt. */
export const MAX_BLOCK_MS = 60_000;

/**
 * Largest |error| in an IoreqResp: 0, a negative errno (docs/style.md §4; Linux's
 * MAX_ERRNO is 4095), or a small positive server-defined code such as a
 * FAULT_ANSWER.
 */
export const MAX_RESP_ERROR = 4095;

/**
 * Bytes of an entry's MAC (field `a`: HMAC-SHA256 truncated, transport/auth.ts).
 * 128 bits: a forger must guess it, one XADD per guess, within a run.
 */
export const MAC_BYTES = 16;

/**
 * How long the dispatcher waits for the answer to a request it sent (or
 * for the device model's word on a buffered ioreq) before it sends it
 * again; doubled on each further try, up to RESEND_MAX_MS. Re-sending is
 * harmless (answers are idempotent by sequence, docs/ioreq.md §9) and is
 * what recovers entries Redis lost: a flush, a restart without persistence,
 * an XDEL or XTRIM. Well above a round trip on a loaded machine (p99 in
 * the tens of ms), so a slow device model costs few duplicates.
 */
export const RESEND_AFTER_MS = 1000;
export const RESEND_MAX_MS = 8000;

/** Buffered ioreqs re-sent in one pipeline at most (a ring's worth goes in a few). */
export const RESEND_BATCH = 512;

/**
 * `--transport-timeout` when not given: a Redis that has answered nothing
 * for this long is down, and the run ends as `unknown: transport down`.
 * The dispatcher's readers return at least every READ_BLOCK_MS, so a live
 * Redis answers many times a second even when no guest does I/O.
 */
export const DEFAULT_TRANSPORT_TIMEOUT_MS = 3000;

/** How often the dispatcher checks that the run's keys are still there (a flush, a restart without persistence). */
export const LIVENESS_EVERY_MS = 200;

/**
 * How long ending a run may wait on Redis, per step (stopping the
 * transport's loops, deleting the run's keys): a Redis that is down must
 * not hold a stopping run (Ctrl-C, SIGTERM, the end of --duration).
 */
export const TRANSPORT_STOP_BOUND_MS = 1000;

/** Refused messages described in the run's events, per device model and per dispatcher (the rest are only counted): the event log is shared with violations. */
export const REJECT_EVENTS_MAX = 3;

function assert(cond: boolean, what: string): void {
  if (!cond) throw new Error(`transport/constants: ${what}`);
}
assert(STREAM_MAXLEN_ENTRIES >= 16 * MAX_VCPUS, 'streams keep far more entries than can be in flight');
assert(SEEN_SET_CAPACITY >= 4 * MAX_VCPUS, 'a SeenSet outlives the duplicates of every in-flight ioreq');
assert(MAX_READ_COUNT <= STREAM_MAXLEN_ENTRIES, 'one read cannot ask for more than a stream keeps');
assert(MAX_IOREQ_SERVER_IDS > 0 && MAX_VCPUS_PER_DOMAIN > 0, 'non-empty id spaces');
// host is printable ASCII, so one byte a character; the other fields and all
// field names take under 256 bytes.
assert(MAX_WIRE_BYTES >= MAX_HOST_CHARS + 256, 'the longest host name fits in a message');
assert(RESEND_AFTER_MS <= RESEND_MAX_MS && RESEND_AFTER_MS < DEFAULT_TRANSPORT_TIMEOUT_MS, 'a lost entry is re-sent before the transport is called down');
assert(LIVENESS_EVERY_MS < RESEND_AFTER_MS, 'a lost namespace is seen before the first re-send');
