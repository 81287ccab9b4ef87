/**
 * The `--report` page in a real browser: headless Chromium loads
 * index.html from disk (no network), runs its inline script, and the
 * dumped DOM must hold every plot with real marks — or "no data" where the
 * run had none — and no render error. Without /usr/bin/chromium the tests
 * are skipped loudly, except under CI, where a missing browser fails them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadPlots } from '../orchestrator/report/plot.js';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { PLOTS, writeReport } from '../orchestrator/report/html.js';
import { checkChromeTrace, syntheticRun } from './trace-format.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const inCI = process.env['CI'] !== undefined;
if (!haveChromium) {
  console.warn(`\n!!! ${CHROMIUM} is not installed: the headless report tests are SKIPPED${inCI ? ' — and CI is set, so they FAIL' : ''} !!!\n`);
}
const chromiumIt = haveChromium || inCI ? it : it.skip;

const tmp = (): string => mkdtempSync(join(tmpdir(), 'xgsim-report-'));

/** The DOM after load (and the page's own script), as headless Chromium serializes it. */
function dumpDom(html: string, screenshot?: string): string {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing and CI is set: the report must be checked in a real browser`);
  const profile = tmp();
  try {
    const common = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--virtual-time-budget=2000'];
    const url = pathToFileURL(html).href;
    const r = spawnSync(CHROMIUM, [...common, '--dump-dom', url], { encoding: 'utf8', timeout: 90_000, maxBuffer: 64 * 1024 * 1024 });
    if (r.status !== 0 || r.stdout.trim() === '') throw new Error(`chromium exited ${r.status ?? r.signal}: ${r.stderr.slice(-2000)}`);
    if (screenshot !== undefined) spawnSync(CHROMIUM, [...common, '--window-size=1400,2600', `--screenshot=${screenshot}`, url], { encoding: 'utf8', timeout: 90_000 });
    return r.stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

interface PlotDom {
  /** Data marks (class "mark"): not the nemesis bands behind them. */
  marks: number;
  bands: number;
  /** The `d` of each line. */
  paths: string[];
  /** What the page's script counted (proves it ran). */
  dataMarks: string | undefined;
  noData: boolean;
  renderError: boolean;
}

/** Each `<svg data-plot>` of the dumped DOM, with its marks (paths, rects, circles) counted. */
function plotsOf(dom: string): Map<string, PlotDom> {
  const out = new Map<string, PlotDom>();
  for (const m of dom.matchAll(/<svg\b([^>]*)\bdata-plot="([^"]+)"([^>]*)>([\s\S]*?)<\/svg>/g)) {
    const attrs = `${m[1] ?? ''} ${m[3] ?? ''}`;
    const body = m[4] ?? '';
    out.set(m[2]!, {
      marks: (body.match(/<(path|rect|circle)\b[^>]*\bclass="mark\b/g) ?? []).length,
      bands: (body.match(/<rect\b[^>]*\bclass="band"/g) ?? []).length,
      paths: [...body.matchAll(/<path\b[^>]*\bclass="mark line"[^>]*\bd="([^"]*)"/g)].map((p) => p[1] ?? ''),
      dataMarks: /data-marks="(\d+)"/.exec(attrs)?.[1],
      noData: body.includes('>no data<'),
      renderError: /render-error/.test(attrs) || body.includes('render error'),
    });
  }
  return out;
}

/** The page's text and markup without its own script and style (which name the error marker). */
const withoutCode = (dom: string): string => dom.replace(/<script\b[\s\S]*?<\/script>/g, '').replace(/<style\b[\s\S]*?<\/style>/g, '');


beforeAll(loadPlots);
describe('the report in headless Chromium', () => {
  chromiumIt('a run with data: every plot drawn with marks, the page script ran, nothing fetched', () => {
    const dir = tmp();
    const { index } = writeReport(dir, syntheticRun());
    const shot = join(dir, 'shot.png');
    const dom = dumpDom(index, shot);
    expect(dom).toMatch(/<body[^>]*data-ready="1"/);
    expect(withoutCode(dom)).not.toMatch(/render error/i);
    const plots = plotsOf(dom);
    expect([...plots.keys()].sort()).toEqual([...PLOTS].sort());
    const least: Record<string, number> = { 'revoke-latency-hist': 10, 'revoke-latency-time': 100, 'ops-rate': 5, 'accesses-rate': 1, 'ioreq-rtt-hist': 5, 'faults-timeline': 5, frames: 3 };
    for (const [name, p] of plots) {
      expect(p.renderError, name).toBe(false);
      expect(p.noData, name).toBe(false);
      expect(p.marks, name).toBeGreaterThanOrEqual(least[name] ?? 1);
      expect(p.dataMarks, name).toBe(String(p.marks));
    }
    // The injections are on the fault timeline; the summary table is there.
    expect(dom).toContain('kill-device-model → dom0');
    // Every time plot shades the three nemesis windows; the histograms have no time axis.
    for (const name of ['revoke-latency-time', 'ops-rate', 'accesses-rate', 'faults-timeline', 'frames']) expect(plots.get(name)!.bands, name).toBe(3);
    for (const name of ['revoke-latency-hist', 'ioreq-rtt-hist']) expect(plots.get(name)!.bands, name).toBe(0);
    // One time base: the summary's 1.00 s (from when every vCPU ran, at 0.50 s) is listed at 1.50 s, where the band is drawn.
    expect(dom).toMatch(/1\.50 s kill-device-model → dom0/);
    expect(dom).toMatch(/<rect class="band"[^>]*><title>1\.50 s–1\.70 s: kill-device-model → dom0<\/title>/);
    // The 0.7 s hole in the sampling is a gap: each sampled line is two pieces.
    for (const d of plots.get('frames')!.paths) expect(d.match(/M/g)?.length, d).toBe(2);
    expect(plots.get('accesses-rate')!.paths[0]!.match(/M/g)?.length).toBe(2);
    // Titles give the counts, and say why they differ from the summary's (200 timed vs 10 Revoke + 0 Return calls).
    expect(dom).toContain('Revoke latency: 200 Revokes timed in the hypervisor');
    expect(dom).toContain('summary: 10 Revoke + 0 Return = 10 calls');
    expect(dom).toMatch(/<table class="summary">[\s\S]*seed[\s\S]*>7</);
    // Self-contained: no external references, and Chromium drew it.
    expect(readFileSync(index, 'utf8')).not.toMatch(/\b(src|href)="(https?:)?\/\//);
    if (existsSync(shot)) expect(statSync(shot).size).toBeGreaterThan(20_000);
  }, 120_000);

  chromiumIt('the labels of close injections do not overlap, measured by the browser', () => {
    const dir = tmp();
    const { index } = writeReport(dir, syntheticRun());
    // The report's own page, with a script that measures each label's box after layout and writes what overlaps. The boxes are
    // the browser's on-screen ones (getBoundingClientRect): the plotting library places text by transforms, which getBBox leaves out.
    // A copy of one label moved onto another (data-control) must be seen overlapping: the measurement can fail.
    const measure = `<script>document.addEventListener('DOMContentLoaded',function(){
      var c=document.querySelector('text.marker-label');var copy=c.cloneNode(true);copy.setAttribute('data-control','1');c.parentNode.appendChild(copy);
      var out=[];document.querySelectorAll('svg[data-plot]').forEach(function(svg){var ls=[].slice.call(svg.querySelectorAll('text.marker-label,text.legend,text.title,text.note'));var bs=ls.map(function(t){return t.getBoundingClientRect();});
      for(var i=0;i<bs.length;i++)for(var j=i+1;j<bs.length;j++){var a=bs[i],b=bs[j];if(a.width>0&&b.width>0&&a.x<b.x+b.width&&b.x<a.x+a.width&&a.y<b.y+b.height&&b.y<a.y+a.height)out.push(svg.getAttribute('data-plot')+': '+ls[i].textContent+' / '+ls[j].textContent+(ls[j].hasAttribute('data-control')?' (control)':''));}});
      document.body.setAttribute('data-overlaps',JSON.stringify(out));document.body.setAttribute('data-labels',String(document.querySelectorAll('text.marker-label:not([data-control])').length));});</script>`;
    const page = join(dir, 'measure.html');
    writeFileSync(page, readFileSync(index, 'utf8').replace('</head>', `${measure}</head>`));
    const dom = dumpDom(page);
    expect(dom).toMatch(/data-labels="3"/);
    const overlaps = JSON.parse((/data-overlaps="([^"]*)"/.exec(dom)?.[1] ?? '').replace(/&quot;/g, '"')) as string[];
    expect(overlaps).toEqual(['faults-timeline: kill-device-model → dom0 / kill-device-model → dom0 (control)']);
  }, 120_000);

  chromiumIt('a failed run with no series: every plot says "no data", the replay command and the escaped violation are shown', () => {
    const dir = tmp();
    const { index } = writeReport(dir, syntheticRun({ empty: true }));
    const dom = dumpDom(index);
    const plots = plotsOf(dom);
    expect([...plots.keys()].sort()).toEqual([...PLOTS].sort());
    for (const [name, p] of plots) {
      expect(p.noData, name).toBe(true);
      expect(p.marks, name).toBe(0);
      expect(p.renderError, name).toBe(false);
    }
    expect(dom).toContain('replay: <code>npx xgsim up examples/synthetic.yaml --seed 7 --duration 4000ms</code>');
    expect(dom).toContain('after its Revoke &lt;script&gt;');
    expect(dom).toMatch(/class="verdict fail"/);
  }, 120_000);

  chromiumIt('a real `xgsim stress revoke --trace --report` run: the trace is well formed and the page renders', () => {
    const dir = tmp();
    const trace = join(dir, 'revoke.json');
    const report = join(dir, 'report');
    const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'xgsim.js'), 'stress', 'revoke', '--guests', '2', '--duration', '2s', '--seed', '11', '--trace', trace, '--report', report], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/report: .*index\.html/);
    const facts = checkChromeTrace(JSON.parse(readFileSync(trace, 'utf8')));
    expect(facts.problems.slice(0, 10)).toEqual([]);
    expect(facts.vcpuThreads.size).toBe(2 + 2 * 2);
    const dom = dumpDom(join(report, 'index.html'));
    expect(withoutCode(dom)).not.toMatch(/render error/i);
    const plots = plotsOf(dom);
    expect([...plots.keys()].sort()).toEqual([...PLOTS].sort());
    // A loaded machine may start its vCPUs late: whatever did not happen says "no data"; frames are sampled regardless.
    for (const [name, p] of plots) expect(p.marks > 0 || p.noData, name).toBe(true);
    expect(plots.get('frames')!.marks).toBeGreaterThan(0);
  }, 180_000);
});
