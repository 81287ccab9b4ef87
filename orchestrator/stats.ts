/** Percentiles of measured series (nearest rank). */
export interface Percentiles {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export function percentiles(xs: readonly number[]): Percentiles {
  if (xs.length === 0) return { n: 0, p50: 0, p99: 0, max: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  const r = (x: number): number => Math.round(x * 10) / 10;
  return { n: s.length, p50: r(at(0.5)), p99: r(at(0.99)), max: r(s[s.length - 1]!) };
}

/**
 * Latencies in log buckets, so that runs can be merged and their
 * percentiles taken over the merged set (a percentile of percentiles is
 * not a percentile). Bucket 0 holds [0, 1) µs; bucket i ≥ 1 holds
 * [2^((i−1)/SUB), 2^(i/SUB)) µs, so a figure read back is at most
 * 2^(1/SUB) − 1 ≈ 9 % above the truth (and never above the true max).
 */
export interface LatencyHistogram {
  /** Buckets per octave (HIST_SUB). */
  sub: number;
  /** counts[i]: samples in bucket i; trailing empty buckets are dropped. */
  counts: number[];
  n: number;
  max_us: number;
}

export const HIST_SUB = 8;
/** 2^(MAX_BUCKETS/SUB) µs ≈ 1.8 h: anything slower lands in the last bucket. */
export const HIST_MAX_BUCKETS = 8 * 32;

function bucketOf(us: number, sub: number): number {
  if (!(us >= 1)) return 0;
  return Math.min(HIST_MAX_BUCKETS - 1, 1 + Math.floor(Math.log2(us) * sub));
}

export function histogramOf(xs: readonly number[]): LatencyHistogram {
  const h: LatencyHistogram = { sub: HIST_SUB, counts: [], n: 0, max_us: 0 };
  for (const x of xs) {
    const b = bucketOf(x, HIST_SUB);
    while (h.counts.length <= b) h.counts.push(0);
    h.counts[b] = (h.counts[b] ?? 0) + 1;
    h.n++;
    if (x > h.max_us) h.max_us = x;
  }
  return h;
}

/** The sum of two histograms (same `sub`); neither argument changes. */
export function mergeHistograms(a: LatencyHistogram, b: LatencyHistogram): LatencyHistogram {
  if (a.sub !== b.sub) throw new RangeError(`mergeHistograms: ${a.sub} vs ${b.sub} buckets per octave`);
  const counts = Array.from({ length: Math.max(a.counts.length, b.counts.length) }, (_, i) => (a.counts[i] ?? 0) + (b.counts[i] ?? 0));
  return { sub: a.sub, counts, n: a.n + b.n, max_us: Math.max(a.max_us, b.max_us) };
}

/** Nearest-rank percentiles of a histogram: each figure is its bucket's upper bound, capped at the max. */
export function histogramPercentiles(h: LatencyHistogram): Percentiles {
  if (h.n === 0) return { n: 0, p50: 0, p99: 0, max: 0 };
  const at = (q: number): number => {
    const rank = Math.max(1, Math.ceil(q * h.n));
    let seen = 0;
    for (let i = 0; i < h.counts.length; i++) {
      seen += h.counts[i] ?? 0;
      if (seen >= rank) return Math.min(h.max_us, i === 0 ? 1 : 2 ** (i / h.sub));
    }
    return h.max_us;
  };
  const r = (x: number): number => Math.round(x * 10) / 10;
  return { n: h.n, p50: r(at(0.5)), p99: r(at(0.99)), max: r(h.max_us) };
}
