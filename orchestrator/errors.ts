/** The CLI's error ladder: bad input → exit 2 with one line; a failed run → exit 1. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * Exit codes. UNKNOWN (3): the run found nothing against the hypervisor but
 * could not see everything it was asked to — its transport went down or
 * refused its writes, Redis lost its keys, ioreqs were still unanswered when
 * the drain at the end gave up, the periodic checks were held up (verdict
 * `unknown`); neither a pass nor a failure, and not bad input.
 */
export const EXIT = { PASS: 0, FAIL: 1, BAD_INPUT: 2, UNKNOWN: 3, INTERRUPTED: 130, BROKEN_PIPE: 141 } as const;

/**
 * `xgsim scenario`'s exit codes are xtf-runner's (xen-test-framework's
 * `exit_code()`): the worst result decides, in the order of its
 * `all_results` — SUCCESS 0, SKIP 3, ERROR 4, FAILURE 5. xtf-runner keeps 1
 * and 2 for the interpreter; xgsim keeps 2 for bad input, as everywhere.
 */
export const SCENARIO_EXIT = { SUCCESS: 0, SKIP: 3, ERROR: 4, FAILURE: 5 } as const;

/** The host process of a run died (a signal, a crash) before its report: exit 1 with its seed. */
export class HostDied extends Error {
  override readonly name = 'HostDied';
}

/** A run stopped by a second Ctrl-C or SIGTERM, without waiting for its summary: exit 130, as a shell gives for SIGINT. */
export class RunInterrupted extends Error {
  override readonly name = 'RunInterrupted';
}

/**
 * Text from outside (a file, a flag, a record) made fit for a terminal:
 * control characters (C0, DEL, C1), line breaks and bidirectional
 * overrides become `\xNN` / `\u{NNNN}`, so an error stays one line and no
 * escape sequence reaches the terminal.
 */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const n = c.codePointAt(0)!;
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
  });
}
