/**
 * What a Redis error means for a run (docs/ioreq.md §11): whether waiting
 * or re-sending recovers it, or whether the run must end.
 *
 *  - **Connection errors** (a refused or dropped connection, a command
 *    failed because its connection closed): ioredis reconnects and re-sends;
 *    the run waits, up to `--transport-timeout`.
 *  - **A lost consumer group** (`NOGROUP`; `UNBLOCKED` when the stream a
 *    reader blocked on was deleted): the bus creates the group again.
 *  - **A server not ready yet** (`LOADING`, `BUSY`, `TRYAGAIN`,
 *    `MASTERDOWN`): transient, like a connection error.
 *  - **Any other reply error** (`OOM` at maxmemory, `WRONGTYPE` from a key
 *    of another type, a stream whose last possible ID is used, a script
 *    error): Redis refuses what the run needs, and waiting does not change
 *    that. The run ends, cleanly, as `unknown` (TransportFault).
 */

/** The marker of a TransportFault's message: it survives a worker thread's structured clone, the class does not. */
export const TRANSPORT_FAULT = 'transport fault';

/** A Redis error the run cannot recover from: it ends as `unknown`, never as a hypervisor error. */
export class TransportFault extends Error {
  override readonly name = 'TransportFault';
  constructor(what: string, options?: ErrorOptions) {
    super(`${TRANSPORT_FAULT}: ${what}`, options);
  }
}

/** Whether an error (or a message that crossed a thread) is a TransportFault. */
export function isTransportFault(e: unknown): boolean {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.startsWith(`${TRANSPORT_FAULT}: `) || msg.includes(`Error: ${TRANSPORT_FAULT}: `);
}

/** An error Redis answered (ioredis's ReplyError), as opposed to a connection's. */
export function isReplyError(e: unknown): e is Error {
  return e instanceof Error && e.name === 'ReplyError';
}

/** Redis lost a stream's consumer group, or deleted the stream a reader was blocked on. */
export function isLostGroup(e: unknown): boolean {
  return isReplyError(e) && (e.message.startsWith('NOGROUP') || e.message.startsWith('UNBLOCKED'));
}

const TRANSIENT = ['LOADING', 'BUSY', 'TRYAGAIN', 'MASTERDOWN', 'NOGROUP', 'UNBLOCKED'];

/** Whether waiting (and ioredis's reconnects) may cure the error. */
export function isTransient(e: unknown): boolean {
  if (!isReplyError(e)) return true;
  return TRANSIENT.some((p) => e.message.startsWith(p));
}

/**
 * The error as a TransportFault when the run cannot recover from it
 * (`what` says which operation), else unchanged.
 */
export function classify(e: unknown, what: string): unknown {
  if (e instanceof TransportFault || isTransient(e)) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new TransportFault(`${what}: Redis answered ${msg.split('\n')[0]}`, { cause: e });
}
