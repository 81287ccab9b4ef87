/**
 * Small SVG plots for the report, drawn as strings: no library, no network.
 * Every plot is an `<svg data-plot="name">`. Its data marks are paths,
 * rects and circles; the frame, axes and ticks are lines and text only, so
 * counting paths/rects/circles counts data. A plot with no data says
 * "no data"; a plot that fails to draw says "render error: …".
 */

export const W = 640;
export const H = 260;
const M = { left: 62, right: 30, top: 40, bottom: 42 };
/** Width of a character of the 11px labels, for placing labels that must not overlap (generous: a wide glyph). */
const CHAR_W = 6.4;
const ROW_H = 13;
const PLOT_W = W - M.left - M.right;
const PLOT_H = H - M.top - M.bottom;
export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

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

/** Round tick values between lo and hi (1-2-5 steps). */
export function niceTicks(lo: number, hi: number, want = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / want;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

interface Axis {
  lo: number;
  hi: number;
  log: boolean;
}
function scale(a: Axis, r0: number, r1: number): (v: number) => number {
  if (a.log) {
    const l0 = Math.log10(a.lo);
    const l1 = Math.log10(a.hi);
    return (v) => r0 + ((Math.log10(Math.max(v, a.lo)) - l0) / (l1 - l0 || 1)) * (r1 - r0);
  }
  return (v) => r0 + ((v - a.lo) / (a.hi - a.lo || 1)) * (r1 - r0);
}
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) if (10 ** e >= lo * 0.999 && 10 ** e <= hi * 1.001) out.push(10 ** e);
  return out.length > 0 ? out : [lo, hi];
}
const px = (v: number): string => (Math.round(v * 10) / 10).toString();

export interface Shell {
  name: string;
  title: string;
  xLabel: string;
  yLabel: string;
  /** A second line under the title: why its count differs from the summary's, say. */
  note?: string;
}

function open(s: Shell, extraClass = ''): string {
  return `<svg data-plot="${esc(s.name)}" class="plot${extraClass}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(s.title)}" xmlns="http://www.w3.org/2000/svg">
<text class="title" x="${M.left}" y="16">${esc(s.title)}</text>${s.note !== undefined ? `<text class="note" x="${M.left}" y="30">${esc(s.note)}</text>` : ''}
<text class="axis-label" x="${M.left + PLOT_W / 2}" y="${H - 6}" text-anchor="middle">${esc(s.xLabel)}</text>
<text class="axis-label" transform="translate(14 ${M.top + PLOT_H / 2}) rotate(-90)" text-anchor="middle">${esc(s.yLabel)}</text>
`;
}
const close = '</svg>';

/** The frame of an empty plot: axes and the words "no data". */
export function noData(s: Shell, why = 'no data'): string {
  return `${open(s, ' empty')}<line class="axis" x1="${M.left}" y1="${M.top + PLOT_H}" x2="${M.left + PLOT_W}" y2="${M.top + PLOT_H}"/><line class="axis" x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + PLOT_H}"/>
<text class="no-data" x="${M.left + PLOT_W / 2}" y="${M.top + PLOT_H / 2}" text-anchor="middle">${esc(why)}</text>${close}`;
}

/** A plot that threw while drawing: say so where it would have been (the report test looks for it). */
export function renderError(s: Shell, e: unknown): string {
  return `${open(s, ' render-error')}<text class="render-error-text" x="${M.left}" y="${M.top + 20}">render error: ${esc(e instanceof Error ? e.message : String(e))}</text>${close}`;
}

/** Draw with `draw`, or the error in place of the plot. */
export function guarded(s: Shell, draw: () => string): string {
  try {
    return draw();
  } catch (e) {
    return renderError(s, e);
  }
}

function axes(x: Axis, y: Axis, xTick: (v: number) => string, yTick: (v: number) => string, xTicks?: number[]): string {
  const sx = scale(x, M.left, M.left + PLOT_W);
  const sy = scale(y, M.top + PLOT_H, M.top);
  const parts: string[] = [];
  parts.push(`<line class="axis" x1="${M.left}" y1="${M.top + PLOT_H}" x2="${M.left + PLOT_W}" y2="${M.top + PLOT_H}"/>`);
  parts.push(`<line class="axis" x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + PLOT_H}"/>`);
  for (const v of xTicks ?? (x.log ? logTicks(x.lo, x.hi) : niceTicks(x.lo, x.hi, 6))) {
    const p = px(sx(v));
    parts.push(`<line class="tick" x1="${p}" y1="${M.top + PLOT_H}" x2="${p}" y2="${M.top + PLOT_H + 4}"/><text class="tick-label" x="${p}" y="${M.top + PLOT_H + 16}" text-anchor="middle">${esc(xTick(v))}</text>`);
  }
  for (const v of y.log ? logTicks(y.lo, y.hi) : niceTicks(y.lo, y.hi, 5)) {
    const p = px(sy(v));
    parts.push(`<line class="grid" x1="${M.left}" y1="${p}" x2="${M.left + PLOT_W}" y2="${p}"/><text class="tick-label" x="${M.left - 6}" y="${p}" dy="0.32em" text-anchor="end">${esc(yTick(v))}</text>`);
  }
  return parts.join('\n');
}

interface Placed {
  svg: string;
  /** The y below the last row drawn (where the next row of labels may start). */
  bottom: number;
}

/** Swatches and labels across the top of the plot area, wrapping onto more rows when they do not fit. */
function legend(labels: ReadonlyArray<{ label: string; color: string }>): Placed {
  let x = M.left + 8;
  let y = M.top + 6;
  const out: string[] = [];
  for (const l of labels) {
    const w = 26 + l.label.length * CHAR_W;
    if (x > M.left + 8 && x + w > M.left + PLOT_W) {
      x = M.left + 8;
      y += ROW_H;
    }
    out.push(`<line class="legend-swatch" x1="${x}" y1="${y}" x2="${x + 14}" y2="${y}" stroke="${l.color}" stroke-width="3"/><text class="legend" x="${x + 18}" y="${y}" dy="0.32em">${esc(l.label)}</text>`);
    x += w;
  }
  return { svg: out.join(''), bottom: labels.length === 0 ? M.top : y + ROW_H / 2 };
}

/**
 * Labels at x positions, each on the first row where it overlaps no label
 * already placed (greedy interval placement), anchored left of x near the
 * right edge. Rows start at `top`; the rows used are as many as needed.
 */
export function placeLabels(items: ReadonlyArray<{ x: number; text: string }>, top: number): Array<{ x: number; y: number; anchorEnd: boolean }> {
  const rows: Array<Array<[number, number]>> = [];
  return items.map(({ x, text }) => {
    const w = text.length * CHAR_W + 4;
    const anchorEnd = x + w > M.left + PLOT_W;
    const span: [number, number] = anchorEnd ? [x - w, x] : [x, x + w];
    let r = rows.findIndex((row) => row.every(([a, b]) => span[1] <= a || span[0] >= b));
    if (r < 0) r = rows.push([]) - 1;
    rows[r]!.push(span);
    return { x, y: top + 8 + r * ROW_H, anchorEnd };
  });
}

/** A nemesis window (Jepsen's shaded band): from t0 to t1 in ms on the plot's time axis; t1 absent for an instant. */
export interface Band {
  t0_ms: number;
  t1_ms?: number;
  label: string;
}

/** The bands behind a time plot's data: a shaded rect per window, at least 2 px wide (an instant is a thin band). */
function bandsSvg(bands: readonly Band[], sx: (v: number) => number): string {
  return bands
    .map((b) => {
      const x0 = sx(b.t0_ms);
      const w = Math.max(2, sx(b.t1_ms ?? b.t0_ms) - x0);
      const when = `${(b.t0_ms / 1000).toFixed(2)} s${b.t1_ms !== undefined ? `–${(b.t1_ms / 1000).toFixed(2)} s` : ''}`;
      return `<rect class="band" x="${px(x0)}" y="${M.top}" width="${px(w)}" height="${PLOT_H}"><title>${esc(`${when}: ${b.label}`)}</title></rect>`;
    })
    .join('');
}

/** The legend entry of the bands, when there are any. */
const bandLegend = (bands: readonly Band[] | undefined): Array<{ label: string; color: string }> => (bands !== undefined && bands.length > 0 ? [{ label: 'nemesis windows', color: BAND_COLOR }] : []);
export const BAND_COLOR = '#d9c8f0';

/**
 * The path of a series: pen up at a missing value (NaN, or ≤ 0 on a log
 * axis) and across a hole in the sampling — a step over `gapFactor` times
 * the median step — so a gap is drawn as a gap, not a straight line.
 */
export function seriesPath(xs: readonly number[], ys: readonly number[], sx: (v: number) => number, sy: (v: number) => number, positive: boolean, gapFactor = 2.5): string {
  const steps = xs.slice(1).map((x, i) => x - xs[i]!).filter((d) => d > 0).sort((a, b) => a - b);
  const median = steps[Math.floor(steps.length / 2)];
  let d = '';
  let pen = false;
  let last = Number.NaN;
  xs.forEach((xv, i) => {
    const yv = ys[i];
    if (yv === undefined || !Number.isFinite(yv) || !Number.isFinite(xv) || (positive && yv <= 0)) {
      pen = false;
      return;
    }
    if (median !== undefined && xv - last > gapFactor * median) pen = false;
    d += `${pen ? 'L' : 'M'}${px(sx(xv))},${px(sy(yv))}`;
    pen = true;
    last = xv;
  });
  return d;
}

export interface Bar {
  /** Label of the bar (tooltip) and value. */
  label: string;
  value: number;
}

/**
 * A histogram over equal-width bins (log buckets are equal in log space):
 * one rect per non-empty bin, `every`-th bin edge labelled with `edge(i)`.
 */
export function histogram(s: Shell, bars: readonly Bar[], edge: (i: number) => string, every: number): string {
  return guarded(s, () => {
    const total = bars.reduce((a, b) => a + b.value, 0);
    if (bars.length === 0 || total === 0) return noData(s);
    const n = bars.length;
    const ymax = Math.max(...bars.map((b) => b.value));
    const x: Axis = { lo: 0, hi: n, log: false };
    const y: Axis = { lo: 0, hi: ymax * 1.08, log: false };
    const sx = scale(x, M.left, M.left + PLOT_W);
    const sy = scale(y, M.top + PLOT_H, M.top);
    // At most 7 labelled edges, on multiples of `every`.
    const step = every * Math.max(1, Math.ceil(n / every / 7));
    const ticks: number[] = [];
    for (let i = 0; i <= n; i += step) ticks.push(i);
    const parts = [open(s), axes(x, y, (v) => edge(v), fmt, ticks)];
    const bw = PLOT_W / n;
    bars.forEach((b, i) => {
      if (b.value <= 0) return;
      const top = sy(b.value);
      parts.push(`<rect class="mark bar" x="${px(sx(i) + 1)}" y="${px(top)}" width="${px(Math.max(1, bw - 2))}" height="${px(M.top + PLOT_H - top)}"><title>${esc(`${b.label}: ${b.value}`)}</title></rect>`);
    });
    parts.push(close);
    return parts.join('\n');
  });
}

export interface Line {
  label: string;
  xs: readonly number[];
  ys: readonly number[];
}

/** What the time plots share: one time axis (ms from the host's start) and the nemesis windows over it. */
export interface TimeAxis {
  /** The x domain in ms: every time plot of a report spans the same one. */
  domain?: readonly [number, number];
  bands?: readonly Band[];
}

function timeDomain(o: TimeAxis, xs: readonly number[], from0: boolean): Axis {
  const x: Axis = o.domain !== undefined ? { lo: o.domain[0], hi: o.domain[1], log: false } : { lo: from0 ? Math.min(0, ...xs) : Math.min(...xs), hi: Math.max(...xs), log: false };
  if (!(x.hi > x.lo)) x.hi = x.lo + 1;
  return x;
}

/** Lines over a shared x axis (time in ms → shown in s); `logY` for series of very different sizes. */
export function linePlot(s: Shell, lines: readonly Line[], o: TimeAxis & { logY?: boolean; yTick?: (v: number) => string; xTick?: (v: number) => string; xTicks?: number[] } = {}): string {
  return guarded(s, () => {
    const pts = lines.flatMap((l) => l.xs.map((x, i) => [x, l.ys[i] ?? Number.NaN] as const)).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
    if (pts.length === 0 || lines.every((l) => l.ys.every((y) => y === 0))) return noData(s);
    // The x axis spans every sample, also those a log axis cannot show (zeros).
    const x = timeDomain(o, lines.flatMap((l) => l.xs.filter((v) => Number.isFinite(v))), false);
    const ys = pts.map(([, y]) => y);
    const y: Axis = o.logY ? { lo: Math.max(1e-3, Math.min(...ys)) / 1.5, hi: Math.max(...ys) * 1.5, log: true } : { lo: 0, hi: Math.max(1, ...ys) * 1.08, log: false };
    const sx = scale(x, M.left, M.left + PLOT_W);
    const sy = scale(y, M.top + PLOT_H, M.top);
    const parts = [open(s), bandsSvg(o.bands ?? [], sx), axes(x, y, o.xTick ?? ((v) => `${+(v / 1000).toFixed(2)}`), o.yTick ?? fmt, o.xTicks)];
    const shown: Array<{ label: string; color: string }> = [];
    lines.forEach((l, k) => {
      const color = PALETTE[k % PALETTE.length]!;
      const d = seriesPath(l.xs, l.ys, sx, sy, o.logY === true);
      if (d === '') return;
      shown.push({ label: l.label, color });
      parts.push(`<path class="mark line" d="${d}" fill="none" stroke="${color}" stroke-width="1.6"><title>${esc(l.label)}</title></path>`);
    });
    parts.push(legend([...shown, ...bandLegend(o.bands)]).svg, close);
    return parts.join('\n');
  });
}

/** Points (t in ms, value) on a log y axis, with an optional line over them. */
export function scatterPlot(s: Shell, points: ReadonlyArray<readonly [number, number]>, o: TimeAxis & { line?: Line; pointsLabel?: string; yTick?: (v: number) => string } = {}): string {
  return guarded(s, () => {
    const pts = points.filter(([t, v]) => Number.isFinite(t) && Number.isFinite(v) && v > 0);
    if (pts.length === 0) return noData(s);
    const vs = pts.map(([, v]) => v);
    const x = timeDomain(o, pts.map(([t]) => t), true);
    const y: Axis = { lo: Math.min(...vs) / 1.5, hi: Math.max(...vs) * 1.5, log: true };
    const sx = scale(x, M.left, M.left + PLOT_W);
    const sy = scale(y, M.top + PLOT_H, M.top);
    const parts = [open(s), bandsSvg(o.bands ?? [], sx), axes(x, y, (v) => `${+(v / 1000).toFixed(2)}`, o.yTick ?? fmt)];
    for (const [t, v] of pts) {
      parts.push(`<circle class="mark point" cx="${px(sx(t))}" cy="${px(sy(v))}" r="2.2" fill="${PALETTE[0]}" fill-opacity="0.55"><title>${esc(`${(t / 1000).toFixed(3)} s: ${o.yTick ? o.yTick(v) : fmt(v)}`)}</title></circle>`);
    }
    const shown = [{ label: o.pointsLabel ?? 'samples', color: PALETTE[0]! }];
    const d = o.line !== undefined ? seriesPath(o.line.xs, o.line.ys, sx, sy, true) : '';
    if (o.line !== undefined && d !== '') {
      parts.push(`<path class="mark line" d="${d}" fill="none" stroke="${PALETTE[1]}" stroke-width="1.4"><title>${esc(o.line.label)}</title></path>`);
      shown.push({ label: o.line.label, color: PALETTE[1]! });
    }
    parts.push(legend([...shown, ...bandLegend(o.bands)]).svg, close);
    return parts.join('\n');
  });
}

/** Counts per time bin as bars, with the injections as labelled bands over them (labels on rows, never overlapping). */
export function timeline(s: Shell, bin_ms: number, counts: readonly number[], o: TimeAxis & { end_ms: number }): string {
  return guarded(s, () => {
    const bands = o.bands ?? [];
    const total = counts.reduce((a, b) => a + b, 0);
    if (total === 0 && bands.length === 0) return noData(s);
    const x = timeDomain(o, [o.end_ms, counts.length * bin_ms, ...bands.map((b) => b.t1_ms ?? b.t0_ms), 1], true);
    const sx = scale(x, M.left, M.left + PLOT_W);
    const top = legend([{ label: 'FAULT ioreqs per bin', color: PALETTE[1]! }, ...bandLegend(bands)]);
    const placed = placeLabels(bands.map((b) => ({ x: sx(b.t0_ms), text: b.label })), top.bottom);
    // Room above the bars for every row of labels: the y axis reaches past the tallest bar by the labels' height.
    const labelsBottom = Math.max(top.bottom, ...placed.map((p) => p.y + ROW_H / 2));
    const headroom = Math.min(0.8, (labelsBottom - M.top) / PLOT_H);
    const y: Axis = { lo: 0, hi: (Math.max(1, ...counts) * 1.05) / (1 - headroom), log: false };
    const sy = scale(y, M.top + PLOT_H, M.top);
    const parts = [open(s), bandsSvg(bands, sx), axes(x, y, (v) => `${+(v / 1000).toFixed(2)}`, fmt)];
    const bw = Math.max(1, sx(bin_ms) - sx(0) - 0.5);
    counts.forEach((c, i) => {
      if (c <= 0) return;
      const yTop = sy(c);
      parts.push(`<rect class="mark bar fault-bar" x="${px(sx(i * bin_ms))}" y="${px(yTop)}" width="${px(bw)}" height="${px(M.top + PLOT_H - yTop)}"><title>${esc(`${((i * bin_ms) / 1000).toFixed(1)} s: ${c} FAULT ioreqs`)}</title></rect>`);
    });
    placed.forEach((p, i) => {
      parts.push(`<text class="marker-label" x="${px(p.x)}" y="${px(p.y)}" dy="0.32em" ${p.anchorEnd ? 'dx="-2" text-anchor="end"' : 'dx="2"'}>${esc(bands[i]!.label)}</text>`);
    });
    parts.push(top.svg, close);
    return parts.join('\n');
  });
}
