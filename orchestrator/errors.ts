/** The CLI's error ladder: bad input → exit 2 with one line; a failed run → exit 1. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const EXIT = { PASS: 0, FAIL: 1, BAD_INPUT: 2 } as const;
