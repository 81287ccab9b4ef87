/** Escaping and number formats the report pages and their plots share. */

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** 1234 → 1.2k, 0.5 → 0.5, 3e6 → 3M. */
export function fmt(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e9) return `${+(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(n / 1e3).toFixed(0)}k`;
  if (a >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  if (a >= 10 || a === 0) return `${Math.round(n)}`;
  return `${+n.toPrecision(2)}`;
}

/** A duration in µs: 750 µs, 1.5 ms, 2 s. */
export function fmtUs(us: number): string {
  if (us >= 1e6) return `${+(us / 1e6).toPrecision(3)} s`;
  if (us >= 1e3) return `${+(us / 1e3).toPrecision(3)} ms`;
  return `${+us.toPrecision(3)} µs`;
}

/** ms on a time axis, shown in s: 1500 → 1.5. */
export const fmtS = (ms: number): string => `${+(ms / 1000).toFixed(2)}`;
