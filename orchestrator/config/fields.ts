/**
 * zod 4 building blocks for the input formats, each with a message a user
 * can act on ("expected an integer, got `abc`", "unknown key `memroy`; did
 * you mean `memory`?"). Every field is an `unknown → T` transform so the
 * message, not zod's default wording, is what reaches the user; load.ts
 * attaches the YAML position.
 *
 * Documents are parsed with `intAsBigInt`, so integers arrive as bigint (a
 * 64-bit value written for an 8-byte `write` stays exact) and are narrowed
 * here.
 */
import { z } from 'zod';
import { parseDuration, parseSize, type Parsed } from './units.js';
import { didYouMean } from './suggest.js';

export const MISSING = 'required key is missing';

/** A short description of a value for messages: `abc`, 12, a list, a mapping. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return v.length > 40 ? `\`${v.slice(0, 37)}...\`` : `\`${v}\``;
  return String(v);
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

/** A required field checked by `check`; wrap with .optional()/.default() as needed. */
export function field<T>(check: (v: unknown) => Parsed<T>): z.ZodType<T, unknown> {
  return z.unknown().transform((v, ctx): T => {
    if (v === undefined) {
      ctx.addIssue({ code: 'custom', message: MISSING });
      return z.NEVER;
    }
    const r = check(v);
    if (!r.ok) {
      ctx.addIssue({ code: 'custom', message: r.error });
      return z.NEVER;
    }
    return r.value;
  });
}

const INT_STRING_RE = /^(?:0x[0-9a-f]+|[0-9]+)$/i;

/** An integer as a bigint, from a YAML int, a whole float, or a "0x10"/"16" string. */
export function toBigInt(v: unknown): Parsed<bigint> {
  if (typeof v === 'bigint') return ok(v);
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) return ok(BigInt(v));
    return fail(`expected an integer, got ${describe(v)}`);
  }
  if (typeof v === 'string') {
    const t = v.trim();
    if (INT_STRING_RE.test(t)) return ok(BigInt(t));
    if (/^-(?:0x[0-9a-f]+|[0-9]+)$/i.test(t)) return ok(-BigInt(t.slice(1)));
  }
  return fail(`expected an integer, got ${describe(v)}`);
}

export interface IntOptions {
  readonly min?: number;
  readonly max?: number;
}

function checkInt(v: unknown, opts: IntOptions): Parsed<number> {
  const r = toBigInt(v);
  if (!r.ok) return r;
  const min = opts.min ?? 0;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  if (r.value < BigInt(min)) return fail(min === 1 ? `must be at least 1, got ${r.value}` : `must be at least ${min}, got ${r.value}`);
  if (r.value > BigInt(max)) return fail(`must be at most ${max}, got ${r.value}`);
  return ok(Number(r.value));
}

/** An integer in [min, max] (default [0, 2^53−1]); hex allowed (0x10 or "0x10"). */
export function int(opts: IntOptions = {}): z.ZodType<number, unknown> {
  return field((v) => checkInt(v, opts));
}

/** How a host's vCPUs are scheduled: on `auto` pCPUs (one per core), on n, or by the OS (`os`: no pCPU scheduler). */
export type PcpuChoice = number | 'auto' | 'os';

/** `pcpus` in a topology and `--pcpus` on the command line: auto, os, or an integer 1…max. */
export function checkPcpus(v: unknown, max: number): Parsed<PcpuChoice> {
  if (v === 'auto' || v === 'os') return ok(v);
  const r = checkInt(v, { min: 1, max });
  return r.ok ? r : fail(`expected auto (one pCPU per core), os (the OS schedules the vCPU threads) or an integer 1…${max}, got ${describe(v)}`);
}

/** A `pcpus` field (checkPcpus). */
export function pcpus(max: number): z.ZodType<PcpuChoice, unknown> {
  return field((v) => checkPcpus(v, max));
}

export const U64_MAX = (1n << 64n) - 1n;

/** An unsigned 64-bit value (e.g. a word written to memory), exact. */
export function u64(): z.ZodType<bigint, unknown> {
  return field((v) => {
    const r = toBigInt(v);
    if (!r.ok) return r;
    if (r.value < 0n) return fail(`must not be negative, got ${r.value}`);
    if (r.value > U64_MAX) return fail(`does not fit in 64 bits: ${r.value}`);
    return r;
  });
}

export function str(): z.ZodType<string, unknown> {
  return field((v) => {
    if (typeof v !== 'string') return fail(`expected a string, got ${describe(v)}`);
    if (v.trim() === '') return fail('must not be empty');
    return ok(v);
  });
}

const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
export const MAX_NAME_LENGTH = 64;

/** A name other entries refer to: a letter or `_`, then letters, digits, `_ . -`. */
export function ident(): z.ZodType<string, unknown> {
  return field((v) => {
    if (typeof v !== 'string') return fail(`expected a name, got ${describe(v)}`);
    if (!IDENT_RE.test(v)) return fail(`invalid name ${describe(v)}: use letters, digits, \`_\`, \`.\`, \`-\`, starting with a letter`);
    if (v.length > MAX_NAME_LENGTH) return fail(`name is longer than ${MAX_NAME_LENGTH} characters`);
    return ok(v);
  });
}

export function bool(): z.ZodType<boolean, unknown> {
  return field((v) => (typeof v === 'boolean' ? ok(v) : fail(`expected true or false, got ${describe(v)}`)));
}

/** A size in bytes: 4096, "16MiB", "4K" (see units.ts). */
export function size(): z.ZodType<number, unknown> {
  return field((v) => {
    if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string') return parseSize(v);
    return fail(`expected a size such as 16MiB, got ${describe(v)}`);
  });
}

/** A duration in ms: 500, "500ms", "10s", "2m". */
export function duration(): z.ZodType<number, unknown> {
  return field((v) => {
    if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string') return parseDuration(v);
    return fail(`expected a duration such as 10s, got ${describe(v)}`);
  });
}

/** One of a fixed set of words; `what` names the kind of word in messages. */
export function oneOf<const T extends readonly string[]>(values: T, what: string): z.ZodType<T[number], unknown> {
  return field((v) => {
    if (typeof v === 'string' && (values as readonly string[]).includes(v)) return ok(v as T[number]);
    const list = values.join(', ');
    if (typeof v !== 'string') return fail(`expected a ${what} (${list}), got ${describe(v)}`);
    return fail(`unknown ${what} \`${v}\`${didYouMean(v, values)} (expected one of: ${list})`);
  });
}

/**
 * A mapping with exactly these keys (unknown keys are errors: a misspelt
 * optional key would otherwise be silently ignored).
 */
export function obj<S extends z.ZodRawShape>(shape: S): z.ZodObject<S, z.core.$strict> {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) => {
      if (iss.code === 'unrecognized_keys') {
        const key = iss.keys[0] ?? '';
        const hint = didYouMean(key, known);
        return hint !== '' ? `unknown key \`${key}\`${hint}` : `unknown key \`${key}\` (expected one of: ${known.join(', ')})`;
      }
      if (iss.code === 'invalid_type') return iss.input === undefined ? MISSING : `expected a mapping, got ${describe(iss.input)}`;
      return undefined;
    },
  });
}

export interface ListOptions {
  readonly min?: number;
  readonly max?: number;
}

export function list<T extends z.ZodType>(item: T, opts: ListOptions = {}): z.ZodType<z.output<T>[], unknown> {
  let s = z.array(item, {
    error: (iss) => (iss.input === undefined ? MISSING : `expected a list, got ${describe(iss.input)}`),
  });
  if (opts.min !== undefined) {
    const min = opts.min;
    s = s.min(min, { error: min === 1 ? 'must not be empty' : `needs at least ${min} entries` });
  }
  if (opts.max !== undefined) s = s.max(opts.max, { error: `has more than ${opts.max} entries` });
  return s as unknown as z.ZodType<z.output<T>[], unknown>;
}

/**
 * A mapping whose `tag` key (e.g. `kind`) picks the schema of the rest. Unlike
 * a zod union, a wrong tag gives one message with a suggestion, and a right
 * tag reports the chosen schema's own error.
 */
export function tagged<M extends Record<string, z.ZodType>>(tag: string, options: M, what: string): z.ZodType<z.output<M[keyof M]>, unknown> {
  const names = Object.keys(options);
  return z.unknown().transform((v, ctx): z.output<M[keyof M]> => {
    if (v === undefined) {
      ctx.addIssue({ code: 'custom', message: MISSING });
      return z.NEVER;
    }
    if (!isRecord(v)) {
      ctx.addIssue({ code: 'custom', message: `expected a mapping with \`${tag}\` (${names.join(', ')}), got ${describe(v)}` });
      return z.NEVER;
    }
    const t = v[tag];
    if (t === undefined) {
      ctx.addIssue({ code: 'custom', path: [tag], message: `${MISSING} (one of: ${names.join(', ')})` });
      return z.NEVER;
    }
    const schema = typeof t === 'string' && Object.hasOwn(options, t) ? options[t] : undefined;
    if (schema === undefined) {
      const hint = typeof t === 'string' ? didYouMean(t, names) : '';
      ctx.addIssue({ code: 'custom', path: [tag], message: `unknown ${what} ${describe(t)}${hint} (expected one of: ${names.join(', ')})` });
      return z.NEVER;
    }
    const r = schema.safeParse(v);
    if (!r.success) {
      forwardIssues(ctx, r.error.issues);
      return z.NEVER;
    }
    return r.data as z.output<M[keyof M]>;
  });
}

/** Re-raise issues of a nested parse, keeping their (relative) paths. */
export function forwardIssues(ctx: z.core.$RefinementCtx, issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): void {
  for (const iss of issues) {
    const path = [...prefix, ...iss.path];
    if (iss.code === 'unrecognized_keys') {
      ctx.addIssue({ code: 'unrecognized_keys', keys: iss.keys, message: iss.message, path, input: {} });
    } else {
      ctx.addIssue({ code: 'custom', message: iss.message, path });
    }
  }
}
