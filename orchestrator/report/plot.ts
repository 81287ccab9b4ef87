/**
 * The plots of xgsim's HTML pages (the run report, the campaign page, the
 * bench curves, the designs comparison), drawn by Observable Plot
 * (@observablehq/plot) into a DOM that linkedom provides in Node. Each call
 * returns one static `<svg data-plot="name">` string: no script is needed to
 * see it and nothing is fetched, so a page stays one self-contained file.
 *
 * The API — its names and signatures are kept stable, other pages call it:
 *   timeSeriesPlot(shell, series, options)  lines, points and per-bin bars over
 *       time (ms from the host's start), the nemesis windows shaded as bands
 *       (Jepsen's habit), a hole in the sampling drawn as a gap
 *   xyPlot(shell, series, options)          lines over any x (cost curves, percentiles)
 *   histogramPlot(shell, bins, options)     counts over bins [x0, x1), linear or log x
 *   barPlot(shell, rows, options)           a value per category and series, grouped
 *
 * What the pages and their tests rely on: data marks (each line's path,
 * each point, each bar) carry class "mark"; a band is a `rect.band` with a
 * `<title>` saying its window; legend labels are `text.legend`, band labels
 * `text.marker-label`, placed in rows above the plot area so that no two
 * overlap (widths are over-estimated: a wide glyph per character). A plot
 * with nothing to show says "no data"; one that fails to draw says
 * "render error: …" where it would have been.
 *
 * The library (d3, Plot, linkedom) takes 0.1–0.5 s to import, so it is
 * loaded only when a page is drawn: `await loadPlots()` first (every
 * command that writes a page does); until then each plot is a render error
 * saying so.
 */
import type * as PlotLib from '@observablehq/plot';
import { esc, fmt, fmtS } from './format.js';

/** The part of linkedom's DOM this module touches (the project's TypeScript has no DOM lib). */
interface El {
  readonly tagName: string;
  readonly children: ArrayLike<El>;
  readonly outerHTML: string;
  getAttribute(name: string): string | null;
  getAttributeNames(): string[];
  setAttribute(name: string, value: string): void;
  removeAttribute(name: string): void;
  querySelectorAll(selector: string): ArrayLike<El>;
  scale(name: string): { apply(v: number): number } | undefined;
}

// The library once loaded, and one document for every plot: Plot creates its elements in it, detached (never appended), so
// they are freed with the string.
let Plot: typeof PlotLib | undefined;
let document: unknown;

/** Load the plotting library (once; later calls return at once). */
export async function loadPlots(): Promise<void> {
  if (Plot !== undefined) return;
  const [lib, { parseHTML }] = await Promise.all([import('@observablehq/plot'), import('linkedom')]);
  document = parseHTML('<!doctype html><html><head></head><body></body></html>').document;
  Plot = lib;
}

/** The library, or the reason there is none (a render error in place of the plot). */
function lib(): typeof PlotLib {
  if (Plot === undefined) throw new Error('the plotting library is not loaded (await loadPlots() before drawing)');
  return Plot;
}

export const W = 640;
/** Height of the plot area; the header above it grows with its rows of legend and labels. */
const PLOT_H = 178;
const M = { left: 72, right: 30, bottom: 42 };
const PLOT_W = W - M.left - M.right;
/** Width of a character of the 11px labels, for placing labels that must not overlap (generous: a wide glyph). */
const CHAR_W = 6.4;
const ROW_H = 14;
const TOP_MIN = 40;
export const PALETTE: readonly [string, ...string[]] = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
export const BAND_COLOR = '#d9c8f0';
const TEXT_COLOR = '#555';

/** What every plot has: its name (`data-plot`), title, axis labels, and an optional second line under the title. */
export interface Shell {
  name: string;
  title: string;
  xLabel: string;
  yLabel: string;
  /** A second line under the title: why its count differs from the summary's, say. */
  note?: string;
}

/** A nemesis window: from t0 to t1 in ms on the plot's time axis; t1 absent for an instant (drawn 2 px wide). */
export interface Band {
  t0_ms: number;
  t1_ms?: number;
  label: string;
}

/** A series: y at each x; NaN (or ≤ 0 on a log axis) is a gap. */
export interface Series {
  label: string;
  xs: readonly number[];
  ys: readonly number[];
}
/** The earlier name of Series. */
export type Line = Series;

/** What the time plots of one page share: one time axis (ms from the host's start) and the nemesis windows on it. */
export interface TimeAxis {
  /** The x domain in ms: every time plot of a report spans the same one. */
  domain?: readonly [number, number];
  bands?: readonly Band[];
}

export interface TimeSeriesOptions extends TimeAxis {
  logY?: boolean;
  yTick?: (v: number) => string;
  /** Single samples (a scatter), drawn under the lines; on a log y axis like everything else. */
  points?: { label: string; t_ms: readonly number[]; ys: readonly number[] };
  /** Counts per fixed time bin from 0, as bars. */
  bins?: { label: string; bin_ms: number; counts: readonly number[] };
  /** Write each band's label above the plot area (rows as needed, never overlapping). */
  labelBands?: boolean;
  /** A step over this many times the median step of a series is a hole in the sampling: the line breaks there. Default 2.5. */
  gapFactor?: number;
}

export interface XYOptions {
  logX?: boolean;
  logY?: boolean;
  xTick?: (v: number) => string;
  yTick?: (v: number) => string;
  /** Where the x ticks go (default: the library's). */
  xTicks?: readonly number[];
}

/** A bin of a histogram: [x0, x1) holding value; label for its tooltip (default "x0–x1"). */
export interface Bin {
  x0: number;
  x1: number;
  value: number;
  label?: string;
}

export interface HistogramOptions {
  logX?: boolean;
  xTick?: (v: number) => string;
  xTicks?: readonly number[];
  color?: string;
}

/** One bar of a grouped bar plot: its category (a group on the x axis), its series (a colour) and its value. */
export interface BarRow {
  category: string;
  series: string;
  value: number;
}

export interface BarOptions {
  logY?: boolean;
  yTick?: (v: number) => string;
}

interface LegendItem {
  label: string;
  color: string;
  opacity?: number;
}

interface Header {
  marks: PlotLib.Markish[];
  /** The y of the plot area's top edge. */
  top: number;
}

/**
 * Labels at x positions (px), each on the first row where it overlaps no
 * label already placed (greedy interval placement), anchored left of x near
 * the right edge. Returns the row of each.
 */
export function placeLabels(items: ReadonlyArray<{ x: number; text: string }>): Array<{ row: number; anchorEnd: boolean }> {
  const rows: Array<Array<[number, number]>> = [];
  return items.map(({ x, text }) => {
    const w = text.length * CHAR_W + 4;
    const anchorEnd = x + w > W - M.right;
    const span: [number, number] = anchorEnd ? [x - w, x] : [x, x + w];
    let r = rows.findIndex((row) => row.every(([a, b]) => span[1] <= a || span[0] >= b));
    if (r < 0) r = rows.push([]) - 1;
    rows[r]!.push(span);
    return { row: r, anchorEnd };
  });
}

/** Text at an absolute (x, y) of the svg, as a Plot mark anchored at the plot area's top left. */
function textAt(text: string, x: number, y: number, top: number, o: { className: string; fontSize?: number; fontWeight?: number; fill?: string; textAnchor?: 'start' | 'end' | 'middle'; facet?: 'super' }): PlotLib.Markish {
  return lib().text([text], { text: (d: string) => d, frameAnchor: 'top-left', dx: x - M.left, dy: y - top, lineAnchor: 'middle', textAnchor: o.textAnchor ?? 'start', fill: o.fill ?? TEXT_COLOR, fontSize: o.fontSize ?? 11, ...(o.fontWeight !== undefined ? { fontWeight: o.fontWeight } : {}), ...(o.facet !== undefined ? { facet: o.facet } : {}), className: o.className });
}

/**
 * The rows above the plot area — title, note, legend (wrapped), the bands'
 * labels (rows as placeLabels gives) — laid out top to bottom so that none
 * overlaps another, and the plot area's top below them.
 */
function header(s: Shell, legend: readonly LegendItem[], labels: ReadonlyArray<{ x: number; text: string }> = [], facet?: 'super'): Header {
  const f = facet !== undefined ? { facet } : {};
  const rows: Array<(top: number) => PlotLib.Markish[]> = [];
  let y = 14;
  const titleY = y;
  rows.push((top) => [textAt(s.title, M.left, titleY, top, { className: 'title', fontSize: 13, fontWeight: 600, fill: '#222', ...f })]);
  if (s.note !== undefined) {
    y += ROW_H;
    const noteY = y;
    rows.push((top) => [textAt(s.note!, M.left, noteY, top, { className: 'note', fill: '#777', ...f })]);
  }
  if (legend.length > 0) {
    y += ROW_H + 2;
    let x = M.left + 8;
    for (const l of legend) {
      const w = 26 + l.label.length * CHAR_W;
      if (x > M.left + 8 && x + w > W - M.right) {
        x = M.left + 8;
        y += ROW_H;
      }
      const at = { x, y };
      rows.push((top) => [
        lib().dot([0], { frameAnchor: 'top-left', dx: at.x + 5 - M.left, dy: at.y - top, r: 4.5, symbol: 'square', fill: l.color, fillOpacity: l.opacity ?? 1, className: 'legend-swatch', ...f }),
        textAt(l.label, at.x + 14, at.y, top, { className: 'legend', ...f }),
      ]);
      x += w;
    }
  }
  if (labels.length > 0) {
    const placed = placeLabels(labels);
    const first = y + ROW_H + 2;
    placed.forEach((p, i) => {
      const l = labels[i]!;
      const at = first + p.row * ROW_H;
      rows.push((top) => [textAt(l.text, l.x + (p.anchorEnd ? -2 : 2), at, top, { className: 'marker-label', textAnchor: p.anchorEnd ? 'end' : 'start', fill: '#444' })]);
    });
    y = first + Math.max(...placed.map((p) => p.row)) * ROW_H;
  }
  const top = Math.max(TOP_MIN, y + ROW_H);
  return { marks: rows.flatMap((r) => r(top)), top };
}

/** The plot's svg as a string, tagged for the page: its name, class and role; class moved from each mark's group onto its elements. */
function finish(svg: El, s: Shell, extraClass = ''): string {
  const cls = svg.getAttribute('class') ?? '';
  svg.setAttribute('class', `plot ${cls}${extraClass}`);
  // linkedom writes the attribute last set first: data-plot leads, as pages and tests look for `<svg data-plot="…"`.
  svg.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
  svg.setAttribute('aria-label', s.title);
  svg.setAttribute('role', 'img');
  svg.setAttribute('data-plot', s.name);
  // Plot numbers its clip paths from a counter of the process: named after the plot instead, a report renders the same twice.
  Array.from(svg.querySelectorAll('clipPath')).forEach((cp, k) => {
    const old = cp.getAttribute('id');
    const id = `${s.name.replace(/[^A-Za-z0-9_-]/g, '-')}-clip-${k}`;
    cp.setAttribute('id', id);
    for (const el of Array.from(svg.querySelectorAll(`[clip-path="url(#${old})"]`))) el.setAttribute('clip-path', `url(#${id})`);
  });
  const groups = Array.from(svg.querySelectorAll('g[class]'));
  for (const g of groups) {
    const c = g.getAttribute('class')!;
    g.removeAttribute('class');
    // linkedom writes the attribute last set first: class leads, easy to read and to grep.
    for (const el of Array.from(g.children)) el.setAttribute('class', c);
  }
  return svg.outerHTML;
}

function plot(o: PlotLib.PlotOptions): El {
  return lib().plot({ document: document as unknown as PlotLib.PlotOptions['document'], width: W, marginLeft: M.left, marginRight: M.right, marginBottom: M.bottom, className: 'xgsim-plot', style: { fontSize: '11px', color: TEXT_COLOR, background: '#fff' }, ...o }) as unknown as El;
}

const axisLabels = (s: Shell): { x: PlotLib.ScaleOptions; y: PlotLib.ScaleOptions } => ({
  x: { label: s.xLabel, labelAnchor: 'center', labelArrow: 'none' },
  // The rotated y label at the svg's left edge, clear of tick labels up to 8 characters ("512 µs", "1.02 ms").
  y: { label: s.yLabel, labelAnchor: 'center', labelArrow: 'none', labelOffset: M.left - 4 },
});

/** The frame of an empty plot: the title and the words "no data" (or why). */
export function noData(s: Shell, why = 'no data'): string {
  const h = header(s, []);
  const svg = plot({ height: h.top + PLOT_H + M.bottom, marginTop: h.top, x: { domain: [0, 1], axis: null }, y: { domain: [0, 1], axis: null }, marks: [lib().frame({ stroke: '#ccc' }), lib().text([why], { text: (d: string) => d, frameAnchor: 'middle', fontSize: 15, fill: '#999', className: 'no-data' }), ...h.marks] });
  return finish(svg, s, ' empty');
}

/** A plot that threw while drawing: say so where it would have been (the report test looks for it). Drawn by hand: the library may be what threw. */
export function renderError(s: Shell, e: unknown): string {
  const H = TOP_MIN + PLOT_H + M.bottom;
  return `<svg data-plot="${esc(s.name)}" class="plot render-error" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(s.title)}" xmlns="http://www.w3.org/2000/svg"><text class="title" x="${M.left}" y="16">${esc(s.title)}</text><text class="render-error-text" x="${M.left}" y="${TOP_MIN + 20}">render error: ${esc(e instanceof Error ? e.message : String(e))}</text></svg>`;
}

/** Draw with `draw`, or the error in place of the plot. */
export function guarded(s: Shell, draw: () => string): string {
  try {
    return draw();
  } catch (e) {
    return renderError(s, e);
  }
}

/**
 * The points of a series with a NaN put in each hole of the sampling — a
 * step over `gapFactor` times the median step — and at each missing value
 * (NaN, or ≤ 0 on a log axis), so the line breaks there instead of joining
 * across.
 */
export function withGaps(xs: readonly number[], ys: readonly number[], positive: boolean, gapFactor = 2.5): Array<{ x: number; y: number }> {
  const steps = xs
    .slice(1)
    .map((x, i) => x - xs[i]!)
    .filter((d) => d > 0)
    .sort((a, b) => a - b);
  const median = steps[Math.floor(steps.length / 2)];
  const out: Array<{ x: number; y: number }> = [];
  let last = Number.NaN;
  xs.forEach((x, i) => {
    if (!Number.isFinite(x)) return;
    const y = ys[i];
    const ok = y !== undefined && Number.isFinite(y) && (!positive || y > 0);
    if (median !== undefined && x - last > gapFactor * median) out.push({ x: (x + last) / 2, y: Number.NaN });
    out.push({ x, y: ok ? y : Number.NaN });
    last = x;
  });
  return out;
}

/** The shaded windows, full height, at least 2 px wide; each with a tooltip saying when. */
function bandMarks(bands: readonly Band[], x: readonly [number, number]): PlotLib.Markish[] {
  if (bands.length === 0) return [];
  const minW = (2 * (x[1] - x[0])) / PLOT_W;
  const data = bands.map((b) => ({ x1: b.t0_ms, x2: Math.max(b.t1_ms ?? b.t0_ms, b.t0_ms + minW), title: `${(b.t0_ms / 1000).toFixed(2)} s${b.t1_ms !== undefined ? `–${(b.t1_ms / 1000).toFixed(2)} s` : ''}: ${b.label}` }));
  return [lib().rect(data, { x1: 'x1', x2: 'x2', fill: BAND_COLOR, fillOpacity: 0.45, title: 'title', clip: true, className: 'band' })];
}

const bandLegend = (bands: readonly Band[] | undefined): LegendItem[] => (bands !== undefined && bands.length > 0 ? [{ label: 'nemesis windows', color: BAND_COLOR, opacity: 0.8 }] : []);

/** Pixel x of v on a time plot's axis (Plot's linear x scale with no insets; checked against the library after drawing). */
const pxOf = (x: readonly [number, number]) => (v: number): number => M.left + ((v - x[0]) / (x[1] - x[0])) * PLOT_W;

function assertScale(svg: El, x: readonly [number, number]): void {
  const sc = svg.scale('x');
  const want = pxOf(x);
  for (const v of x) if (sc !== undefined && Math.abs(sc.apply(v) - want(v)) > 0.5) throw new Error(`plot: x scale maps ${v} to ${sc.apply(v)}, the labels assumed ${want(v)}`);
}

/**
 * Lines, points and per-bin bars over time (x in ms from the host's start,
 * shown in s), with the nemesis windows as bands behind them (and their
 * labels above when `labelBands`). One time domain for all time plots of a
 * page: pass the same `domain`.
 */
export function timeSeriesPlot(s: Shell, series: readonly Series[], o: TimeSeriesOptions = {}): string {
  return guarded(s, () => {
    const logY = o.logY === true;
    const bands = o.bands ?? [];
    const lines = series.map((l) => ({ label: l.label, pts: withGaps(l.xs, l.ys, logY, o.gapFactor) }));
    // A series with no value to draw is left out (and off the legend); all of them zero is no data, as nothing happened.
    const drawn = lines.filter((l) => l.pts.some((p) => Number.isFinite(p.y)));
    const allZero = drawn.every((l) => l.pts.every((p) => !Number.isFinite(p.y) || p.y === 0));
    const points = (o.points?.t_ms ?? []).map((t, i) => ({ t, y: o.points!.ys[i] ?? Number.NaN })).filter((p) => Number.isFinite(p.t) && Number.isFinite(p.y) && (!logY || p.y > 0));
    const bins = o.bins;
    const binned = (bins?.counts ?? []).map((c, i) => ({ x1: i * bins!.bin_ms, x2: (i + 1) * bins!.bin_ms, c, title: `${((i * bins!.bin_ms) / 1000).toFixed(1)} s: ${c} ${bins!.label}` })).filter((b) => b.c > 0);
    if ((drawn.length === 0 || allZero) && points.length === 0 && binned.length === 0 && !(o.labelBands === true && bands.length > 0)) return noData(s);

    const xsAll = [...series.flatMap((l) => l.xs), ...points.map((p) => p.t), ...binned.map((b) => b.x2), ...bands.map((b) => b.t1_ms ?? b.t0_ms)].filter((v) => Number.isFinite(v));
    const x: [number, number] = o.domain !== undefined ? [o.domain[0], o.domain[1]] : [Math.min(0, ...xsAll), Math.max(1, ...xsAll)];
    if (!(x[1] > x[0])) x[1] = x[0] + 1;
    const ys = [...drawn.flatMap((l) => l.pts.map((p) => p.y)), ...points.map((p) => p.y), ...binned.map((b) => b.c)].filter((v) => Number.isFinite(v) && (!logY || v > 0));
    const y: [number, number] = logY ? [Math.max(1e-3, Math.min(...ys)) / 1.5, Math.max(...ys) * 1.5] : [0, Math.max(1, ...ys) * 1.08];

    const legend: LegendItem[] = [];
    const ySc = yScale(s, y, logY, o.yTick ?? fmt);
    const marks: PlotLib.Markish[] = [...bandMarks(bands, x), grid(ySc)];
    if (binned.length > 0) {
      legend.push({ label: bins!.label, color: PALETTE[1]! });
      marks.push(lib().rectY(binned, { x1: 'x1', x2: 'x2', y: 'c', fill: PALETTE[1]!, insetRight: 0.5, title: 'title', className: 'mark bar fault-bar' }));
    }
    if (points.length > 0) {
      const tick = o.yTick ?? fmt;
      legend.push({ label: o.points!.label, color: PALETTE[0]!, opacity: 0.55 });
      marks.push(lib().dot(points, { x: 't', y: 'y', r: 2.2, fill: PALETTE[0], fillOpacity: 0.55, stroke: null, title: (p: { t: number; y: number }) => `${(p.t / 1000).toFixed(3)} s: ${tick(p.y)}`, clip: true, className: 'mark point' }));
    }
    drawn.forEach((l) => {
      const color = PALETTE[(series.findIndex((sr) => sr.label === l.label) + (points.length > 0 ? 1 : 0)) % PALETTE.length]!;
      legend.push({ label: l.label, color });
      marks.push(lib().line(l.pts, { x: 'x', y: 'y', stroke: color, strokeWidth: 1.6, title: () => l.label, clip: true, className: 'mark line' }));
    });
    legend.push(...bandLegend(bands));
    const px = pxOf(x);
    const h = header(s, legend, o.labelBands === true ? bands.map((b) => ({ x: px(b.t0_ms), text: b.label })) : []);
    const ax = axisLabels(s);
    const svg = plot({
      height: h.top + PLOT_H + M.bottom,
      marginTop: h.top,
      x: { ...ax.x, domain: x, nice: false, tickFormat: fmtS },
      y: ySc,
      marks: [...marks, lib().ruleY([y[0]], { stroke: '#888' }), ...h.marks],
    });
    assertScale(svg, x);
    return finish(svg, s);
  });
}

/** Lines over any x (no time axis, no bands): cost curves, percentile plots. Holes are where y is NaN. */
export function xyPlot(s: Shell, series: readonly Series[], o: XYOptions = {}): string {
  return guarded(s, () => {
    const logY = o.logY === true;
    const logX = o.logX === true;
    const lines = series.map((l) => ({ label: l.label, pts: l.xs.map((x, i) => ({ x, y: l.ys[i] ?? Number.NaN })).map((p) => ({ x: p.x, y: Number.isFinite(p.y) && (!logY || p.y > 0) ? p.y : Number.NaN })).filter((p) => Number.isFinite(p.x) && (!logX || p.x > 0)) }));
    const drawn = lines.filter((l) => l.pts.some((p) => Number.isFinite(p.y)));
    if (drawn.length === 0 || drawn.every((l) => l.pts.every((p) => !Number.isFinite(p.y) || p.y === 0))) return noData(s);
    const ys = drawn.flatMap((l) => l.pts.map((p) => p.y)).filter((v) => Number.isFinite(v));
    const xs = drawn.flatMap((l) => l.pts.map((p) => p.x));
    const y: [number, number] = logY ? [Math.max(1e-3, Math.min(...ys)) / 1.5, Math.max(...ys) * 1.5] : [0, Math.max(1, ...ys) * 1.08];
    const x: [number, number] = [Math.min(...xs), Math.max(...xs)];
    if (!(x[1] > x[0])) x[1] = x[0] + 1;
    const legend: LegendItem[] = [];
    const ySc = yScale(s, y, logY, o.yTick ?? fmt);
    const marks: PlotLib.Markish[] = [grid(ySc)];
    drawn.forEach((l) => {
      const color = PALETTE[series.findIndex((sr) => sr.label === l.label) % PALETTE.length]!;
      legend.push({ label: l.label, color });
      marks.push(lib().line(l.pts, { x: 'x', y: 'y', stroke: color, strokeWidth: 1.6, title: () => l.label, className: 'mark line' }));
      // Each measured point as a dot too: a curve of 3 points should not look like a continuum.
      marks.push(lib().dot(l.pts.filter((p) => Number.isFinite(p.y) && l.pts.length <= 40), { x: 'x', y: 'y', r: 2.5, fill: color, stroke: null }));
    });
    const h = header(s, legend);
    const ax = axisLabels(s);
    const svg = plot({
      height: h.top + PLOT_H + M.bottom,
      marginTop: h.top,
      x: { ...ax.x, ...(logX ? logScale(x) : { type: 'linear', domain: x }), nice: false, tickFormat: o.xTick ?? fmt, ...(o.xTicks !== undefined ? { ticks: [...o.xTicks] } : {}) },
      y: ySc,
      marks: [...marks, lib().ruleY([y[0]], { stroke: '#888' }), ...h.marks],
    });
    return finish(svg, s);
  });
}

/** Counts over bins [x0, x1): one bar per non-empty bin, on a log x axis when `logX` (latency buckets). */
export function histogramPlot(s: Shell, bins: readonly Bin[], o: HistogramOptions = {}): string {
  return guarded(s, () => {
    const logX = o.logX === true;
    const shown = bins.filter((b) => b.value > 0 && Number.isFinite(b.x0) && Number.isFinite(b.x1) && b.x1 > b.x0 && (!logX || b.x0 > 0));
    if (shown.length === 0) return noData(s);
    const x: [number, number] = [Math.min(...bins.filter((b) => !logX || b.x0 > 0).map((b) => b.x0)), Math.max(...bins.map((b) => b.x1))];
    const ymax = Math.max(...shown.map((b) => b.value));
    const tick = o.xTick ?? fmt;
    const ax = axisLabels(s);
    const ySc = yScale(s, [0, ymax * 1.08], false, fmt);
    const h = header(s, []);
    const svg = plot({
      height: h.top + PLOT_H + M.bottom,
      marginTop: h.top,
      x: { ...ax.x, ...(logX ? logScale(x, true) : { type: 'linear', domain: x, ticks: 7 }), nice: false, tickFormat: tick, ...(o.xTicks !== undefined ? { ticks: [...o.xTicks] } : {}) },
      y: ySc,
      marks: [
        grid(ySc),
        lib().rectY(shown, { x1: 'x0', x2: 'x1', y: 'value', fill: o.color ?? PALETTE[0], insetLeft: 1, insetRight: 1, title: (b: Bin) => `${b.label ?? `${tick(b.x0)}–${tick(b.x1)}`}: ${b.value}`, className: 'mark bar' }),
        lib().ruleY([0], { stroke: '#888' }),
        ...h.marks,
      ],
    });
    return finish(svg, s);
  });
}

/** A value per category (groups along x) and series (colours within a group): the designs side by side, say. */
export function barPlot(s: Shell, rows: readonly BarRow[], o: BarOptions = {}): string {
  return guarded(s, () => {
    const logY = o.logY === true;
    const shown = rows.filter((r) => Number.isFinite(r.value) && (logY ? r.value > 0 : r.value >= 0));
    if (shown.length === 0 || shown.every((r) => r.value === 0)) return noData(s);
    const seriesNames = [...new Set(rows.map((r) => r.series))];
    const categories = [...new Set(rows.map((r) => r.category))];
    const color = (name: string): string => PALETTE[seriesNames.indexOf(name) % PALETTE.length]!;
    const vs = shown.map((r) => r.value);
    const y: [number, number] = logY ? [Math.min(...vs) / 1.5, Math.max(...vs) * 1.5] : [0, Math.max(...vs) * 1.08];
    const tick = o.yTick ?? fmt;
    const ySc = yScale(s, y, logY, tick);
    const h = header(s, seriesNames.length > 1 ? seriesNames.map((n) => ({ label: n, color: color(n) })) : [], [], 'super');
    const svg = plot({
      height: h.top + PLOT_H + M.bottom,
      marginTop: h.top,
      fx: { domain: categories, label: s.xLabel, labelAnchor: 'center', padding: 0.15 },
      x: { domain: seriesNames, axis: null, padding: 0.05 },
      y: ySc,
      color: { domain: seriesNames, range: seriesNames.map(color) },
      marks: [
        grid(ySc),
        lib().barY(shown, { fx: 'category', x: 'series', y1: y[0], y2: 'value', fill: 'series', title: (r: BarRow) => `${r.category}, ${r.series}: ${tick(r.value)}`, className: 'mark bar' }),
        ...h.marks,
      ],
    });
    return finish(svg, s);
  });
}

/**
 * Ticks of a log axis and the scale's base: powers of 10 when two or more
 * fit, else powers of 2 (octave buckets, narrow ranges); at most 8. Only
 * powers of the scale's base: d3's log tickFormat, which Plot applies over
 * ours, blanks the others.
 */
export function logAxis(d: readonly [number, number], prefer2 = false): { ticks: number[]; base: number } {
  const [lo, hi] = d;
  const powers = (b: number): number[] => {
    const out: number[] = [];
    for (let e = Math.ceil(Math.log(lo) / Math.log(b) - 1e-9); b ** e <= hi * (1 + 1e-9); e++) out.push(b ** e);
    return out;
  };
  const tens = powers(10);
  const base = tens.length >= 2 && !(prefer2 && tens.length < 4) ? 10 : 2;
  const all = base === 10 ? tens : powers(2);
  const every = Math.ceil(all.length / 8);
  return { ticks: all.filter((_, i) => i % every === 0), base };
}

/** A log scale's options: domain, base and ticks from logAxis. */
function logScale(d: readonly [number, number], prefer2 = false): PlotLib.ScaleOptions {
  const a = logAxis(d, prefer2);
  return { type: 'log', domain: [...d], base: a.base, ticks: a.ticks };
}

/** A log domain of a decade or more widened to whole decades, so that its ticks are powers of 10 (at least two). */
export function niceLog(d: readonly [number, number]): [number, number] {
  if (!(d[1] / d[0] >= 10)) return [d[0], d[1]];
  return [10 ** Math.floor(Math.log10(d[0]) + 1e-9), 10 ** Math.ceil(Math.log10(d[1]) - 1e-9)];
}

/** The y scale: log (logAxis, whole decades when it spans one) or linear from 0 with about 5 ticks. */
function yScale(s: Shell, y: readonly [number, number], logY: boolean, tick: (v: number) => string): PlotLib.ScaleOptions {
  return { ...axisLabels(s).y, ...(logY ? logScale(niceLog(y)) : { type: 'linear', domain: [...y], ticks: 5 }), tickFormat: tick };
}

/** Grid lines at the y ticks. */
function grid(y: PlotLib.ScaleOptions): PlotLib.Markish {
  return lib().gridY({ stroke: '#eee', strokeOpacity: 1, ...(Array.isArray(y.ticks) ? { ticks: y.ticks } : {}) });
}
