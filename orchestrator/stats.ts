import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js';

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
 * Latencies as an HdrHistogram (hdr-histogram-js), so that runs can be
 * merged and their percentiles taken over the merged set (a percentile of
 * percentiles is not a percentile), with HDR_DIGITS significant digits: a
 * figure read back is within 0.1 % of a recorded value. Values are kept in
 * tenths of a microsecond (HDR records integers); the histogram travels as
 * HdrHistogram's compressed base64 encoding, which every HdrHistogram
 * port reads.
 */
export interface LatencyHistogram {
  /** HdrHistogram V2 compressed encoding, base64; values in HDR_UNIT_US. */
  hdr: string;
  n: number;
  max_us: number;
}

/** Significant decimal digits kept (HdrHistogram's numberOfSignificantValueDigits). */
export const HDR_DIGITS = 3;
/** One recorded unit: 0.1 µs. */
export const HDR_UNIT_US = 0.1;
/** Anything slower than an hour is recorded as an hour. */
const HDR_MAX_UNITS = 3600e6 / HDR_UNIT_US;

function fresh(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: HDR_MAX_UNITS, numberOfSignificantValueDigits: HDR_DIGITS });
}

function decode(h: LatencyHistogram): Histogram {
  if (h.n === 0) return fresh();
  const d = decodeFromCompressedBase64(h.hdr);
  if (d.totalCount !== h.n) throw new RangeError(`latency histogram: its encoding holds ${d.totalCount} values, it says ${h.n}`);
  return d;
}

function encode(x: Histogram, max_us: number): LatencyHistogram {
  return { hdr: x.totalCount === 0 ? '' : encodeIntoCompressedBase64(x), n: x.totalCount, max_us };
}

export function histogramOf(xs: readonly number[]): LatencyHistogram {
  const x = fresh();
  let max_us = 0;
  for (const v of xs) {
    x.recordValue(Math.min(HDR_MAX_UNITS, Math.max(0, Math.round(v / HDR_UNIT_US))));
    if (v > max_us) max_us = v;
  }
  return encode(x, max_us);
}

/** The sum of two histograms; neither argument changes. */
export function mergeHistograms(a: LatencyHistogram, b: LatencyHistogram): LatencyHistogram {
  const x = decode(a);
  x.add(decode(b));
  return encode(x, Math.max(a.max_us, b.max_us));
}

/** Percentiles of a histogram (HdrHistogram's getValueAtPercentile: the highest value equivalent to the rank's), capped at the recorded max. */
export function histogramPercentiles(h: LatencyHistogram): Percentiles {
  if (h.n === 0) return { n: 0, p50: 0, p99: 0, max: 0 };
  const x = decode(h);
  const at = (q: number): number => Math.min(h.max_us, x.getValueAtPercentile(q) * HDR_UNIT_US);
  const r = (v: number): number => Math.round(v * 10) / 10;
  return { n: h.n, p50: r(at(50)), p99: r(at(99)), max: r(h.max_us) };
}

/** HdrHistogram's percentile plot: the latency at each of `nines` steps of 1/(1−p), from p50 up to the max. */
export interface PercentileCurve {
  /** −log10(1 − p): 0.3 = p50, 1 = p90, 2 = p99, 3 = p99.9 … */
  nines: number[];
  us: number[];
}

/** The percentile curve of a histogram, a point every 0.1 nine up to the rank of the last value. */
export function percentileCurve(h: LatencyHistogram): PercentileCurve {
  if (h.n === 0) return { nines: [], us: [] };
  const x = decode(h);
  const top = Math.log10(h.n);
  const nines: number[] = [];
  const us: number[] = [];
  for (let k = 3; k / 10 <= top + 1e-9; k++) {
    const p = 100 * (1 - 10 ** (-k / 10));
    nines.push(k / 10);
    us.push(Math.round(Math.min(h.max_us, x.getValueAtPercentile(p) * HDR_UNIT_US) * 10) / 10);
  }
  nines.push(Math.max(top, 0.3));
  us.push(Math.round(h.max_us * 10) / 10);
  return { nines, us };
}

/** p50, p90, p99, p99.9 and max of a histogram (µs). */
export function histogramTable(h: LatencyHistogram): Array<[string, number]> {
  if (h.n === 0) return [];
  const x = decode(h);
  const at = (q: number): number => Math.round(Math.min(h.max_us, x.getValueAtPercentile(q) * HDR_UNIT_US) * 10) / 10;
  return [
    ['p50', at(50)],
    ['p90', at(90)],
    ['p99', at(99)],
    ['p99.9', at(99.9)],
    ['max', Math.round(h.max_us * 10) / 10],
  ];
}
