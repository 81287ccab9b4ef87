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
