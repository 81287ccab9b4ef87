/** Words for counts and lists in what xgsim prints: "1 check", "2 checks"; "a, b, c … and 4 more". */

/** `n word` with the plural the count needs (`plural(1, 'run')` → "1 run"; an irregular plural as the third argument). */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}

/** The first `max` items joined with `sep`, then "… and N more" for the rest. */
export function listCut(items: readonly string[], max: number, sep = ', '): string {
  if (items.length <= max) return items.join(sep);
  return `${items.slice(0, max).join(sep)} … and ${items.length - max} more`;
}

/** A latency in the unit that fits: µs below 10 000 µs, ms below 10 s, s beyond (3 significant digits past µs). */
export function fmtUs(us: number): string {
  if (us >= 1e7) return `${+(us / 1e6).toPrecision(3)} s`;
  if (us >= 1e4) return `${+(us / 1e3).toPrecision(3)} ms`;
  return `${Math.round(us * 10) / 10} µs`;
}

/** A column of `table`: its heading, and whether its cells line up on the right (numbers) or the left (words). */
export interface Column {
  head: string;
  right?: boolean;
}

/** Characters a terminal gives one cell to: code points, not UTF-16 units (µ, ×, → and ≤ are one each). */
const width = (s: string): number => [...s].length;

/**
 * Rows under headings, each column as wide as its widest cell, two spaces
 * between columns, numbers right-aligned (cli-table3's job without its
 * borders: output that stays greppable). Trailing blanks are trimmed.
 */
export function table(cols: readonly Column[], rows: ReadonlyArray<readonly string[]>, indent = ''): string[] {
  const w = cols.map((c, i) => Math.max(width(c.head), ...rows.map((r) => width(r[i] ?? ''))));
  const line = (cells: readonly string[]): string =>
    `${indent}${cols
      .map((c, i) => {
        const cell = cells[i] ?? '';
        const pad = ' '.repeat(w[i]! - width(cell));
        return c.right === true ? pad + cell : cell + pad;
      })
      .join('  ')}`.trimEnd();
  return [line(cols.map((c) => c.head)), ...rows.map(line)];
}

/** A figure with its unit, rounded to `digits` decimals (trailing zeros dropped): "1.5 ms", "12 ops/s". */
export function withUnit(v: number, unit: string, digits = 2): string {
  const n = Math.round(v * 10 ** digits) / 10 ** digits;
  return unit === '' ? String(n) : `${n} ${unit}`;
}
