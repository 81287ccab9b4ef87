/**
 * The plotting API (plot.ts) in Node, without a browser: what the pages and
 * their tests rely on — marks tagged "mark", bands on time plots, gaps as
 * breaks in a line, labels placed without overlap, ticks the library does
 * not blank, "no data", a render error before the library is loaded, and
 * the same string for the same input. The pages in Chromium are checked by
 * tests/report.test.ts and tests/campaign-page.test.ts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { barPlot, histogramPlot, loadPlots, logAxis, niceLog, placeLabels, timeSeriesPlot, withGaps, xyPlot, type Shell } from './plot.js';

const shell = (name: string): Shell => ({ name, title: `${name} title`, xLabel: 'x', yLabel: 'y' });
const count = (svg: string, re: RegExp): number => (svg.match(re) ?? []).length;

// Runs first: vitest gives each test file its own modules, and the describe below loads the library only in its beforeAll.
describe('before the library is loaded', () => {
  it('a plot is a render error that says why (not a blank or a crash)', () => {
    const svg = timeSeriesPlot(shell('t'), [{ label: 'a', xs: [0, 1], ys: [1, 2] }]);
    expect(svg).toMatch(/class="plot render-error"/);
    expect(svg).toContain('render error: the plotting library is not loaded');
  });
});

describe('plots', () => {
  beforeAll(loadPlots);

  it('a time plot: one path per series with class "mark line", a band per window with its time in a title, the domain given', () => {
    const svg = timeSeriesPlot(shell('t'), [{ label: 'a', xs: [0, 100, 200, 300], ys: [1, 2, 3, 4] }, { label: 'b', xs: [0, 100, 200, 300], ys: [4, 3, 2, 1] }], {
      domain: [0, 1000],
      bands: [{ t0_ms: 500, t1_ms: 700, label: 'kill → dom0' }, { t0_ms: 800, label: 'instant' }],
    });
    // data-plot first: pages and tests look for `<svg data-plot="…"`.
    expect(svg).toMatch(/^<svg data-plot="t"/);
    expect(count(svg, /<path class="mark line"/g)).toBe(2);
    expect(count(svg, /<rect class="band"/g)).toBe(2);
    expect(svg).toContain('<title>0.50 s–0.70 s: kill → dom0</title>');
    expect(svg).toContain('<title>0.80 s: instant</title>');
    // The last tick is the domain's end (1 s), not the data's (0.3 s).
    expect(svg).toMatch(/>1<\/text><\/g>/);
    expect(svg).toContain('nemesis windows');
  });

  it('a series of zeros beside others is drawn (a domain at 0 pages is data); only all of them at zero is no data', () => {
    const svg = timeSeriesPlot(shell('z'), [{ label: 'a', xs: [0, 1, 2], ys: [1, 2, 3] }, { label: 'zero', xs: [0, 1, 2], ys: [0, 0, 0] }]);
    expect(count(svg, /<path class="mark line"/g)).toBe(2);
    expect(svg).toContain('>zero<');
  });

  it('a hole in the sampling is a gap: the path starts again (M) after it', () => {
    const pts = withGaps([0, 100, 200, 300, 1000, 1100, 1200], [1, 1, 1, 1, 1, 1, 1], false);
    expect(pts.filter((p) => Number.isNaN(p.y))).toHaveLength(1);
    const svg = timeSeriesPlot(shell('g'), [{ label: 'a', xs: [0, 100, 200, 300, 1000, 1100, 1200], ys: [1, 2, 1, 2, 1, 2, 1] }]);
    const d = /<path class="mark line"[^>]*\bd="([^"]*)"/.exec(svg)?.[1] ?? '';
    expect(d.match(/M/g)).toHaveLength(2);
    // On a log axis a zero is a gap too; evenly sampled data has none.
    expect(withGaps([0, 1, 2, 3], [1, 0, 1, 1], true).filter((p) => Number.isNaN(p.y))).toHaveLength(1);
    expect(withGaps([0, 1, 2, 3], [1, 2, 1, 1], false).filter((p) => Number.isNaN(p.y))).toHaveLength(0);
  });

  it('labels of close bands go on separate rows, and never share a row where they would overlap', () => {
    const items = Array.from({ length: 6 }, (_, i) => ({ x: 300 + i * 5, text: `kill-device-model → dom${i}` }));
    const placed = placeLabels(items);
    expect(new Set(placed.map((p) => p.row)).size).toBe(6);
    // Far apart: one row. Near the right edge: anchored at its end.
    expect(placeLabels([{ x: 80, text: 'a' }, { x: 300, text: 'b' }]).map((p) => p.row)).toEqual([0, 0]);
    expect(placeLabels([{ x: 600, text: 'a long label near the edge' }])[0]!.anchorEnd).toBe(true);
    const svg = timeSeriesPlot(shell('l'), [], { labelBands: true, bins: { label: 'per bin', bin_ms: 100, counts: [1, 2, 3] }, bands: items.map((it, i) => ({ t0_ms: 100 + i, label: it.text })) });
    expect(count(svg, /<text class="marker-label"/g)).toBe(6);
    expect(count(svg, /<rect class="mark bar fault-bar"/g)).toBe(3);
  });

  it('log axes tick at powers of the scale base only (d3 blanks the others), whole decades when the data spans one', () => {
    expect(logAxis([16, 1024])).toEqual({ ticks: [100, 1000], base: 10 });
    expect(logAxis([16, 1024], true)).toEqual({ ticks: [16, 32, 64, 128, 256, 512, 1024], base: 2 });
    expect(logAxis([100, 300])).toEqual({ ticks: [128, 256], base: 2 });
    expect(niceLog([107, 6450])).toEqual([100, 10_000]);
    expect(niceLog([100, 300])).toEqual([100, 300]);
    const svg = histogramPlot(shell('h'), [16, 32, 64, 128, 256, 512].map((x0, i) => ({ x0, x1: x0 * 2, value: i + 1 })), { logX: true, xTick: (v) => `${v}us` });
    for (const t of ['16us', '32us', '64us', '128us', '256us', '512us', '1024us']) expect(svg).toContain(`>${t}<`);
    expect(count(svg, /<rect class="mark bar"/g)).toBe(6);
  });

  it('nothing to show says "no data": no series, all zeros, empty bins, no bars', () => {
    for (const svg of [timeSeriesPlot(shell('a'), []), timeSeriesPlot(shell('b'), [{ label: 'z', xs: [0, 1], ys: [0, 0] }]), histogramPlot(shell('c'), [{ x0: 1, x1: 2, value: 0 }]), barPlot(shell('d'), []), xyPlot(shell('e'), [{ label: 'n', xs: [1], ys: [Number.NaN] }])]) {
      expect(svg).toContain('>no data<');
      expect(svg).toMatch(/class="plot [^"]*empty"/);
      expect(svg).not.toMatch(/class="mark/);
    }
  });

  it('grouped bars: one mark per row, a legend per series, the categories on the axis', () => {
    const rows = ['seed', 'lending', 'grants'].flatMap((series, k) => ['desktop', 'hostile'].map((category, j) => ({ category, series, value: 10 * (k + 1) + j })));
    const svg = barPlot(shell('b'), rows);
    expect(count(svg, /<rect class="mark bar"/g)).toBe(6);
    expect(count(svg, /<text class="legend"/g)).toBe(3);
    expect(svg).toContain('>desktop<');
    expect(svg).toContain('<title>hostile, lending: 21</title>');
  });

  it('the same input gives the same string (clip ids are per plot, not per process)', () => {
    const draw = (): string => timeSeriesPlot(shell('d'), [{ label: 'a', xs: [0, 1, 2], ys: [1, 2, 3] }], { bands: [{ t0_ms: 1, t1_ms: 2, label: 'w' }] });
    const a = draw();
    expect(a).toContain('id="d-clip-0"');
    expect(draw()).toBe(a);
  });
});
