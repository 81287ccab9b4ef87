/**
 * Sizes and durations as users write them. Both parsers return a result
 * instead of throwing, so the schema layer can attach the YAML position of the
 * value to the message.
 *
 * Decisions (documented for users in docs/formats.md terms):
 * - Sizes: a plain integer (or decimal/hex string of one) is bytes. Suffixes
 *   `B`, `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB` are binary (powers of 1024),
 *   as in xl.cfg and QEMU. `KB`/`MB`/`GB` are rejected as ambiguous (SI or
 *   binary?) with a hint. A decimal mantissa is allowed (`1.5MiB`) when the
 *   result is a whole number of bytes. Zero and negative sizes are rejected.
 * - Durations: a plain number is milliseconds; suffixes `ms`, `s`, `m`, `h`,
 *   compounds like `1m30s`. The result must be a whole number of ms. Zero is
 *   allowed here (a chaos event `at: 0s`); callers that need a positive
 *   duration check that themselves.
 */

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  k: 1024, kib: 1024,
  m: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tib: 1024 ** 4,
};
const AMBIGUOUS_SIZE_UNITS: ReadonlySet<string> = new Set(['kb', 'mb', 'gb', 'tb']);

const SIZE_RE = /^([0-9]+(?:\.[0-9]+)?|0x[0-9a-f]+)\s*([a-z]*)$/i;

function show(x: unknown): string {
  return typeof x === 'string' ? `\`${x}\`` : String(x);
}

/** Parse a size (bytes). Accepts 4096, "4096", "0x1000", "16MiB", "4K", "1.5GiB". */
export function parseSize(x: number | string | bigint): Parsed<number> {
  if (typeof x === 'bigint') {
    if (x <= 0n) return fail(`size must be positive, got ${x}`);
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) return fail(`size ${x} is too large`);
    return ok(Number(x));
  }
  if (typeof x === 'number') {
    if (!Number.isFinite(x)) return fail(`size must be a finite number, got ${x}`);
    if (x <= 0) return fail(`size must be positive, got ${x}`);
    if (!Number.isInteger(x)) return fail(`size ${x} is not a whole number of bytes`);
    if (!Number.isSafeInteger(x)) return fail(`size ${x} is too large`);
    return ok(x);
  }
  const text = x.trim();
  if (text.startsWith('-')) return fail(`size must be positive, got ${show(x)}`);
  const m = SIZE_RE.exec(text);
  if (m === null) return fail(`invalid size ${show(x)}: expected a byte count or a number with a unit (KiB, MiB, GiB), e.g. 16MiB`);
  const [, digits = '', unitRaw = ''] = m;
  const unit = unitRaw.toLowerCase();
  if (AMBIGUOUS_SIZE_UNITS.has(unit)) {
    return fail(`ambiguous size unit \`${unitRaw}\` in ${show(x)}: write ${unitRaw[0]?.toUpperCase() ?? ''}iB (binary) or a byte count`);
  }
  const mult = unit === '' ? 1 : SIZE_UNITS[unit];
  if (mult === undefined) return fail(`unknown size unit \`${unitRaw}\` in ${show(x)}: use B, KiB, MiB, GiB or TiB`);
  const isHex = /^0x/i.test(digits);
  if (isHex && unit !== '') return fail(`invalid size ${show(x)}: a hex number takes no unit`);
  const mantissa = isHex ? Number.parseInt(digits, 16) : Number(digits);
  const bytes = mantissa * mult;
  if (bytes <= 0) return fail(`size must be positive, got ${show(x)}`);
  if (!Number.isInteger(bytes)) return fail(`size ${show(x)} is not a whole number of bytes`);
  if (!Number.isSafeInteger(bytes)) return fail(`size ${show(x)} is too large`);
  return ok(bytes);
}

/** Convert a byte size to pages; it must be a whole, positive number of pages. */
export function bytesToPages(bytes: number, pageSizeBytes: number): Parsed<number> {
  if (bytes <= 0) return fail(`size must be positive, got ${bytes}`);
  if (bytes % pageSizeBytes !== 0) {
    return fail(`${formatBytes(bytes)} is not a whole number of ${pageSizeBytes}-byte pages`);
  }
  return ok(bytes / pageSizeBytes);
}

/** Human-readable byte count: `16MiB` when exact, else the plain number of bytes. */
export function formatBytes(bytes: number): string {
  for (const [suffix, mult] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= mult && bytes % mult === 0) return `${bytes / mult}${suffix}`;
  }
  return `${bytes} bytes`;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_PART_RE = /([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)/gy;

/** Parse a duration (ms). Accepts 500, "500", "500ms", "10s", "2m", "1h", "1m30s". */
export function parseDuration(x: number | string | bigint): Parsed<number> {
  if (typeof x === 'bigint') {
    if (x < 0n) return fail(`duration must not be negative, got ${x}`);
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) return fail(`duration ${x} is too large`);
    return ok(Number(x));
  }
  if (typeof x === 'number') {
    if (!Number.isFinite(x) || x < 0) return fail(`duration must be a non-negative number of ms, got ${x}`);
    if (!Number.isInteger(x)) return fail(`duration ${x} is not a whole number of milliseconds`);
    return ok(x);
  }
  const text = x.trim();
  if (text.startsWith('-')) return fail(`duration must not be negative, got ${show(x)}`);
  if (/^[0-9]+$/.test(text)) return ok(Number(text));
  let total = 0;
  let pos = 0;
  DURATION_PART_RE.lastIndex = 0;
  for (;;) {
    while (text[pos] === ' ') pos++;
    if (pos >= text.length) break;
    DURATION_PART_RE.lastIndex = pos;
    const m = DURATION_PART_RE.exec(text);
    if (m === null) {
      return fail(`invalid duration ${show(x)}: expected a number of ms or a number with a unit (ms, s, m, h), e.g. 10s`);
    }
    const [, num = '', unit = ''] = m;
    total += Number(num) * (DURATION_UNITS[unit] ?? Number.NaN);
    pos = DURATION_PART_RE.lastIndex;
  }
  if (pos === 0) return fail(`invalid duration ${show(x)}: expected e.g. 500ms, 10s, 2m`);
  // Float noise: 0.1s * 1000 = 100.00000000000001.
  const rounded = Math.round(total * 1e6) / 1e6;
  if (!Number.isInteger(rounded)) return fail(`duration ${show(x)} is not a whole number of milliseconds`);
  if (!Number.isSafeInteger(rounded)) return fail(`duration ${show(x)} is too large`);
  return ok(rounded);
}
