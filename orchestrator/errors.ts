/** The CLI's error ladder: bad input → exit 2 with one line; a failed run → exit 1. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const EXIT = { PASS: 0, FAIL: 1, BAD_INPUT: 2, INTERRUPTED: 130, BROKEN_PIPE: 141 } as const;

/** A run stopped by a second Ctrl-C or SIGTERM, without waiting for its summary: exit 130, as a shell gives for SIGINT. */
export class RunInterrupted extends Error {
  override readonly name = 'RunInterrupted';
}
