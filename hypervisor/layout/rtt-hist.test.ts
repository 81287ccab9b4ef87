import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RTT_BUCKETS, rttBucket, rttBucketRange, rttQuantile } from './rtt-hist.js';

describe('RTT histogram layout', () => {
  it('every value falls in its bucket, buckets tile the range in order, and none is wider than 1/128 of its values', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 26 - 1 }), (v) => {
        const i = rttBucket(v);
        const [lo, hi] = rttBucketRange(i);
        expect(v).toBeGreaterThanOrEqual(lo);
        expect(v).toBeLessThan(hi);
        expect(hi - lo).toBeLessThanOrEqual(Math.max(1, lo / 128));
      }),
    );
    for (let i = 1; i < RTT_BUCKETS; i++) expect(rttBucketRange(i)[0]).toBe(rttBucketRange(i - 1)[1]);
    expect(rttBucketRange(RTT_BUCKETS - 1)[1]).toBe(2 ** 26);
    expect(rttBucket(2 ** 40)).toBe(RTT_BUCKETS - 1);
    expect(rttBucket(-3)).toBe(0);
    expect(rttBucket(12.7)).toBe(12);
  });

  it('tells 2.1 ms from 4 ms, to two significant digits', () => {
    const h = new Array<number>(RTT_BUCKETS).fill(0);
    for (const v of [2100, 2110, 2120, 4000]) h[rttBucket(v)]! += 1;
    expect(rttQuantile(h, 0.5)).toBeGreaterThanOrEqual(2110);
    expect(rttQuantile(h, 0.5)).toBeLessThan(2110 * 1.01);
    expect(rttQuantile(h, 0.99)).toBeGreaterThanOrEqual(4000);
    expect(rttQuantile(h, 0.99)).toBeLessThan(4000 * 1.01);
    expect(rttQuantile(new Array<number>(RTT_BUCKETS).fill(0), 0.5)).toBe(0);
  });
});
