import { describe, expect, it } from 'vitest';
import { histogramOf, histogramPercentiles, mergeHistograms, percentiles } from './stats.js';

describe('latency histograms', () => {
  it('percentiles of merged histograms are those of the merged samples, to three significant digits', () => {
    // Two runs with very different distributions: averaging their p99s would say ~505 µs.
    const a = Array.from({ length: 990 }, (_, i) => 5 + (i % 10));
    const b = Array.from({ length: 10 }, (_, i) => 1000 + i * 10);
    const merged = histogramPercentiles(mergeHistograms(histogramOf(a), histogramOf(b)));
    const exact = percentiles([...a, ...b]);
    expect(merged.n).toBe(1000);
    expect(merged.max).toBe(exact.max);
    for (const k of ['p50', 'p99'] as const) {
      expect(merged[k]).toBeGreaterThanOrEqual(exact[k]);
      expect(merged[k]).toBeLessThanOrEqual(exact[k] * 1.001 + 0.1);
    }
  });

  it('tells 2.1 ms from 4 ms (power-of-two buckets could not), and survives its own encoding', () => {
    const h = histogramOf([2100, 2110, 2120, 4000]);
    const p = histogramPercentiles(h);
    expect(p.p50).toBeGreaterThanOrEqual(2110);
    expect(p.p50).toBeLessThan(2113);
    expect(p.max).toBe(4000);
    expect(histogramPercentiles(mergeHistograms(h, histogramOf([])))).toEqual(p);
    expect(() => histogramPercentiles({ ...h, n: 5 })).toThrow(/holds 4 values, it says 5/);
  });

  it('handles empty input, sub-microsecond values and one sample', () => {
    expect(histogramPercentiles(histogramOf([]))).toEqual({ n: 0, p50: 0, p99: 0, max: 0 });
    expect(histogramPercentiles(histogramOf([0.2, 0.3])).p99).toBeLessThanOrEqual(1);
    expect(histogramPercentiles(histogramOf([42]))).toEqual({ n: 1, p50: 42, p99: 42, max: 42 });
  });
});
