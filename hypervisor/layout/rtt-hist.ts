/**
 * IOREQ round trips in a log-linear histogram, HdrHistogram's bucket layout
 * with two significant digits, so that a summary can tell 2.1 ms from 4 ms
 * (a log2 histogram could not). Values are whole microseconds:
 *   0 … 255 µs         one bucket per µs (exact);
 *   256 µs … 2^26 µs   RTT_SUB buckets per octave: [m·2^e, (m+1)·2^e) for
 *                      m in 128 … 255, so a bucket is at most 1/128 (0.8 %)
 *                      of its values wide;
 * anything slower lands in the last bucket. Each vCPU counts its own round
 * trips (VcpuTable.rtt, written by its thread only); the host sums them.
 */

/** Buckets per octave above the linear range (2 significant digits: 2·10² rounded up to a power of two, halved). */
export const RTT_SUB = 128;
const LINEAR = 2 * RTT_SUB;
/** Octaves above the linear range: up to 2^26 µs ≈ 67 s. */
const OCTAVES = 18;
export const RTT_BUCKETS = LINEAR + OCTAVES * RTT_SUB;

/** The bucket of a round trip of `us` microseconds. */
export function rttBucket(us: number): number {
  const v = us >= 0 && us < 2 ** 31 ? Math.floor(us) : us >= 2 ** 31 ? 2 ** 31 - 1 : 0;
  if (v < LINEAR) return v;
  const e = 31 - Math.clz32(v) - 7; // v >> e is in [128, 256)
  if (e > OCTAVES) return RTT_BUCKETS - 1;
  return LINEAR + (e - 1) * RTT_SUB + ((v >> e) - RTT_SUB);
}

/** [low, high) µs of bucket i. */
export function rttBucketRange(i: number): [number, number] {
  if (i < LINEAR) return [i, i + 1];
  const k = i - LINEAR;
  const e = Math.floor(k / RTT_SUB) + 1;
  const m = (k % RTT_SUB) + RTT_SUB;
  return [m * 2 ** e, (m + 1) * 2 ** e];
}

/** The q-quantile (0…1) of a histogram: the highest value of the bucket holding it (HdrHistogram's highestEquivalentValue). */
export function rttQuantile(h: ArrayLike<number>, q: number): number {
  let total = 0;
  for (let i = 0; i < h.length; i++) total += h[i] ?? 0;
  if (total === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < h.length; i++) {
    seen += h[i] ?? 0;
    if (seen >= rank) return rttBucketRange(i)[1] - 1;
  }
  return rttBucketRange(h.length - 1)[1] - 1;
}
