/**
 * The one error type of the input layer (docs/style.md §12: one error type per
 * module). Everything a user wrote wrong — a YAML syntax error, an unknown
 * key, a size that is not a whole number of pages, a backend that does not
 * exist — becomes an InputError naming the file, the position of the
 * offending text and its key path. The CLI prints `toString()` (one line, no
 * stack) and exits 2 (docs/semantics.md §8).
 */
export interface InputErrorOptions {
  /** The file the input came from, as the user named it. */
  readonly file: string;
  /** 1-based line of the offending text, when known. */
  readonly line?: number | undefined;
  /** 1-based column of the offending text, when known. */
  readonly col?: number | undefined;
  /** Key path of the offending value, e.g. `domains[1].memory`. */
  readonly key?: string | undefined;
}

export class InputError extends Error {
  override readonly name = 'InputError';
  readonly file: string;
  readonly line: number | undefined;
  readonly col: number | undefined;
  readonly key: string | undefined;

  constructor(message: string, opts: InputErrorOptions) {
    super(message);
    this.file = opts.file;
    this.line = opts.line;
    this.col = opts.col;
    this.key = opts.key === '' ? undefined : opts.key;
  }

  /** `file:line:col: key: message`, or `file: message` without a position. */
  override toString(): string {
    const where = this.line === undefined ? this.file : `${this.file}:${this.line}:${this.col ?? 1}`;
    return this.key === undefined ? `${where}: ${this.message}` : `${where}: ${this.key}: ${this.message}`;
  }
}

export function isInputError(e: unknown): e is InputError {
  return e instanceof InputError;
}
