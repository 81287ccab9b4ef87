/**
 * YAML in, validated values out, and every error pointing at the text that
 * caused it: `file:line:col: key.path: message` (docs/semantics.md §8: bad input exits 2
 * with a one-line reason, never a stack trace).
 *
 * The document is parsed once with positions (parseDocument + LineCounter);
 * validation runs on its plain JS value, and each error's key path is mapped
 * back to the YAML node it came from.
 */
import { closeSync, constants, existsSync, fstatSync, openSync, readFileSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { InputError } from './errors.js';

export { didYouMean, closest } from './suggest.js';

export type PathSegment = string | number;
export type Path = readonly PathSegment[];

export interface YamlSource {
  readonly file: string;
  readonly text: string;
  readonly doc: Document.Parsed;
  readonly lines: LineCounter;
  /** The document as plain JS; integers are bigint (see fields.ts). */
  readonly data: unknown;
}

export interface Position {
  readonly line: number;
  readonly col: number;
}

/**
 * Input files larger than this are refused (a YAML of many megabytes takes
 * gigabytes to parse: 2 MiB took 2.7 s and 290 MB here): 4 MiB, or XGSIM_MAX_INPUT_MIB.
 */
export function maxInputBytes(): number {
  const env = process.env['XGSIM_MAX_INPUT_MIB'];
  return (env !== undefined && /^\d+$/.test(env) && Number(env) > 0 ? Number(env) : 4) * 1024 * 1024;
}

/**
 * Read an input file as text; an unreadable one is an InputError (`file:
 * cannot read[ what]: why`). Only a regular file, no larger than
 * maxInputBytes (`/dev/zero` or a FIFO would be read for ever). Opened
 * without blocking (a FIFO with no writer would hang the open), then
 * judged and read through the same descriptor, so what was checked is
 * what is read.
 */
export function readInputFile(file: string, what = ''): string {
  const cannot = (why: string): InputError => new InputError(`cannot read${what === '' ? '' : ` ${what}`}: ${why}`, { file });
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw cannot(code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : String((e as Error).message));
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw cannot('is a directory');
    if (!st.isFile()) throw cannot('not a regular file');
    const max = maxInputBytes();
    if (st.size > max) throw cannot(`${(st.size / 1024 / 1024).toFixed(1)} MiB, over the ${max / 1024 / 1024} MiB limit (XGSIM_MAX_INPUT_MIB raises it)`);
    return readFileSync(fd, 'utf8');
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw cannot(String((e as Error).message));
  } finally {
    closeSync(fd);
  }
}

/** Read and parse a YAML file; unreadable files and syntax errors are InputErrors. */
export function readYamlFile(file: string): YamlSource {
  return parseYaml(readInputFile(file), file);
}

/** Parse YAML text; the first syntax error becomes an InputError with its position. */
export function parseYaml(text: string, file: string): YamlSource {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, intAsBigInt: true, uniqueKeys: true });
  const err = doc.errors[0];
  if (err !== undefined) {
    const pos = lines.linePos(err.pos[0]);
    // The yaml package's messages may carry a source excerpt after a newline.
    const message = (err.message.split('\n')[0] ?? err.message).replace(/ at line \d+, column \d+:?$/, '');
    throw new InputError(`YAML syntax error: ${message}`, { file, line: pos.line, col: pos.col });
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    throw new InputError(`YAML error: ${(e as Error).message}`, { file });
  }
  return { file, text, doc, lines, data };
}

/** `domains[1].memory`, `steps[0].grant.ref`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

function resolve(src: YamlSource, node: unknown): unknown {
  return isAlias(node) ? node.resolve(src.doc) : node;
}

function keyMatches(key: unknown, seg: PathSegment): boolean {
  if (isScalar(key)) return String(key.value) === String(seg);
  return false;
}

interface Found {
  readonly node: Node | undefined;
  /** Whether `node` is the node at the full path (not an ancestor). */
  readonly exact: boolean;
}

/**
 * The YAML node at `path`, or its nearest ancestor that exists. With `key`,
 * the key node of the last segment (for "unknown key" errors).
 */
function findNode(src: YamlSource, path: Path, key: boolean): Found {
  let node = resolve(src, src.doc.contents) as Node | null | undefined;
  if (node === null || node === undefined) return { node: undefined, exact: false };
  for (let i = 0; i < path.length; i++) {
    const seg = path[i] as PathSegment;
    const last = i === path.length - 1;
    let next: unknown;
    if (isMap(node)) {
      const pair = node.items.find((p) => keyMatches(p.key, seg));
      if (pair === undefined) return { node, exact: false };
      if (last && key) return { node: pair.key as Node, exact: true };
      // `key:` with no value: point at the key, not at the empty space after it.
      const v = pair.value as Node | null;
      const empty = v === null || (isScalar(v) && v.value === null && v.range != null && v.range[0] === v.range[1]);
      next = empty ? pair.key : v;
    } else if (isSeq(node) && typeof seg === 'number') {
      next = node.items[seg];
    } else {
      return { node, exact: false };
    }
    next = resolve(src, next);
    if (next === null || next === undefined) return { node, exact: false };
    node = next as Node;
  }
  return { node, exact: true };
}

/** 1-based line and column of the value (or key) at `path`, or of its nearest ancestor. */
export function positionOf(src: YamlSource, path: Path, opts: { key?: boolean } = {}): Position | undefined {
  const { node } = findNode(src, path, opts.key ?? false);
  const range = node?.range;
  if (range === undefined || range === null) return undefined;
  return src.lines.linePos(range[0]);
}

/** Source offset for ordering errors; Infinity when nothing is found. */
function offsetOf(src: YamlSource, path: Path, key: boolean): number {
  return findNode(src, path, key).node?.range?.[0] ?? Number.POSITIVE_INFINITY;
}

/** An InputError at the value (or, with `key`, the key) at `path`. */
export function errorAt(src: YamlSource, path: Path, message: string, opts: { key?: boolean } = {}): InputError {
  const pos = positionOf(src, path, opts);
  return new InputError(message, { file: src.file, line: pos?.line, col: pos?.col, key: formatPath(path) });
}

/** The position of a path's node for use in normalized output (e.g. a step's line). */
export function lineOf(src: YamlSource, path: Path): number {
  return positionOf(src, path)?.line ?? 0;
}

interface Located {
  readonly path: Path;
  readonly message: string;
  readonly key: boolean;
}

function locate(issue: z.core.$ZodIssue, base: Path): Located {
  const path: PathSegment[] = [...base, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
  if (issue.code === 'unrecognized_keys') {
    return { path: [...path, issue.keys[0] ?? ''], message: issue.message, key: true };
  }
  return { path, message: issue.message, key: false };
}

export interface ValidateOptions {
  /** The value to validate (default: the whole document). */
  readonly value?: unknown;
  /** Where `value` sits in the document (default: the root). */
  readonly path?: Path;
}

/**
 * Validate with a zod schema; on failure throw an InputError for the issue
 * that comes first in the document, so the user fixes errors top to bottom.
 */
export function validate<S extends z.ZodType>(src: YamlSource, schema: S, opts: ValidateOptions = {}): z.output<S> {
  const base = opts.path ?? [];
  const value = 'value' in opts ? opts.value : src.data;
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  let best: Located | undefined;
  let bestOffset = Number.POSITIVE_INFINITY;
  for (const issue of r.error.issues) {
    const loc = locate(issue, base);
    const off = offsetOf(src, loc.path, loc.key);
    if (best === undefined || off < bestOffset) {
      best = loc;
      bestOffset = off;
    }
  }
  if (best === undefined) throw new InputError('invalid input', { file: src.file });
  throw errorAt(src, best.path, best.message, { key: best.key });
}

/** XGSIM_ALLOW_OUTSIDE_PATHS=1 (or `--allow-outside-paths`): a plan may name files outside the trees planPath confines it to. */
export const ALLOW_OUTSIDE_PATHS_ENV = 'XGSIM_ALLOW_OUTSIDE_PATHS';

function inside(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * A file a plan names (a campaign job's topology or plan, a chaos plan's
 * topology), resolved against the plan's directory. It must lie, symlinks
 * followed, inside the plan's directory tree or the working directory's
 * tree (where hosts resolve jobs' files), so that a plan from elsewhere
 * cannot make xgsim read — and quote in a report — any file the user can
 * read (/etc/shadow). XGSIM_ALLOW_OUTSIDE_PATHS=1 lifts the rule. A file
 * that does not exist is left to the caller's own message.
 */
export function planPath(src: YamlSource, at: Path, p: string): string {
  const abs = path.resolve(path.dirname(src.file), p);
  if (process.env[ALLOW_OUTSIDE_PATHS_ENV] === '1' || !existsSync(abs)) return abs;
  const real = realpathSync(abs);
  const roots = [path.dirname(src.file), process.cwd()].map((d) => (existsSync(d) ? realpathSync(d) : path.resolve(d)));
  if (roots.some((r) => inside(r, real))) return abs;
  throw errorAt(src, at, `\`${p}\` is outside the plan's directory and the working directory (${ALLOW_OUTSIDE_PATHS_ENV}=1 or --allow-outside-paths allows it)`);
}
