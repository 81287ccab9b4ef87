/**
 * The campaign's HTML page (orchestrator/report/campaign-page.ts) rendered
 * in headless Chromium from a synthetic campaign: while running (progress
 * that adds up, a page that reloads itself) and over (verdict, pass/fail per
 * job, failing seeds with replay commands, merged latency percentiles and
 * their plot, per-host throughput). The counts the progress bar shows are
 * checked to add up. Without /usr/bin/chromium the browser tests are
 * skipped loudly (failed under CI), as in tests/report.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadPlots } from '../orchestrator/report/plot.js';
import { noteActivity, progressCounts, type CampaignReport } from '../orchestrator/campaign/campaign.js';
import type { HostActivity } from '../orchestrator/campaign/report-types.js';
import { writeCampaignPage, type CampaignPageState } from '../orchestrator/report/campaign-page.js';
import { histogramOf } from '../orchestrator/stats.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`\n!!! ${CHROMIUM} is not installed: the campaign page tests are SKIPPED${process.env['CI'] !== undefined ? ' — and CI is set, so they FAIL' : ''} !!!\n`);
const chromiumIt = haveChromium || process.env['CI'] !== undefined ? it : it.skip;
const tmp = (): string => mkdtempSync(join(tmpdir(), 'xgsim-campaign-page-'));

function dumpDom(html: string): string {
  const profile = tmp();
  try {
    const r = spawnSync(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', `--user-data-dir=${profile}`, '--virtual-time-budget=1000', '--dump-dom', pathToFileURL(html).href], { encoding: 'utf8', timeout: 90_000, maxBuffer: 64 * 1024 * 1024 });
    if (r.error !== undefined) throw new Error(`${CHROMIUM} could not run (${r.error.message}): the campaign page must be checked in a real browser`);
    if (r.status !== 0 || r.stdout.trim() === '') throw new Error(`chromium exited ${r.status ?? r.signal}: ${r.stderr.slice(-2000)}`);
    return r.stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

/** Ten jobs: seven passed on two hosts, one failed with a replay command, one timed out, one without a result. */
function state(running: boolean): CampaignPageState {
  const report: CampaignReport = {
    campaign: 'tiny-7-abc',
    name: 'tiny',
    file: 'tiny.yaml',
    seed: 7,
    buggify: [],
    pool: 'default',
    runs: 10,
    accounted: 9,
    missing: running ? [] : [9],
    duplicates_dropped: 1,
    malformed_results: 0,
    reclaimed: 0,
    pass: 7,
    fail: 1,
    error: 0,
    timeout: 1,
    wall_ms: 30_000,
    hosts: { 'box-a': 6, 'box-b': 3 },
    // box-b joined 20 s in: over its own 10 s it ran faster than box-a, though over the campaign's 30 s it would look slower.
    host_activity: { 'box-a': { first_ms: 0, last_ms: 30_000, active_ms: 30_000, busy_ms: 29_000 }, 'box-b': { first_ms: 20_000, last_ms: 30_000, active_ms: 10_000, busy_ms: 9_000 } },
    templates: { tiny: { kind: 'stress-revoke', runs: 9, failed: 2 } },
    revoke_us: { n: 0, p50: 0, p99: 0, max: 0 },
    violations: 3,
    failed_invariants: { no_use_after_revoke: 1 },
    failing: [
      { index: 4, seed: 1234, template: 'tiny', kind: 'stress-revoke', status: 'fail', host: 'box-a', violations: 3, failed: ['no_use_after_revoke'], error: '', record: '/x/job-4-seed-1234.json', replay: 'npx xgsim replay /x/job-4-seed-1234.json', direct: 'npx xgsim stress revoke --seed 1234 <&>' },
      { index: 6, seed: 99, template: 'tiny', kind: 'stress-revoke', status: 'timeout', host: 'box-b', violations: 0, failed: [], error: 'outlived 60 s', direct: 'npx xgsim stress revoke --seed 99' },
    ],
    dir: '/x',
    interrupted: !running,
    timed_out: !running,
    verdict: 'fail',
  };
  const latencies = Array.from({ length: 5000 }, (_, i) => 10 + (i % 100) * 3 + (i % 997 === 0 ? 4000 : 0));
  return { report, running, progress: progressCounts(10, 9, { queued: 3, hosts: 2 }), statuses: 'pppppfptp.'.slice(0, 10), hist: histogramOf(latencies) };
}


beforeAll(loadPlots);
describe('campaign progress counts', () => {
  it('add up to the runs even when the queue counts lag the results (the `3/3 … queued 1` bug)', () => {
    expect(progressCounts(3, 3, { queued: 1, hosts: 1 })).toEqual({ done: 3, running: 0, queued: 0, hosts: 1 });
    expect(progressCounts(10, 4, { queued: 3, hosts: 2 })).toEqual({ done: 4, running: 3, queued: 3, hosts: 2 });
    expect(progressCounts(10, 0, { queued: 10, hosts: 0 })).toEqual({ done: 0, running: 0, queued: 10, hosts: 0 });
    for (let done = 0; done <= 20; done++)
      for (const queued of [0, 5, 20, 30]) {
        const c = progressCounts(20, done, { queued, hosts: 1 });
        expect(c.done + c.running + c.queued, `${done} ${queued}`).toBe(20);
        expect(Math.min(c.running, c.queued)).toBeGreaterThanOrEqual(0);
      }
  });
});

describe("a host's active time", () => {
  it('spans the start of its first job to its last result, on the campaign clock; busy sums its jobs', () => {
    const a = new Map<string, HostActivity>();
    noteActivity(a, 'late', 20_000, 4_000);
    noteActivity(a, 'late', 25_000, 5_000);
    noteActivity(a, 'early', 3_000, 3_000);
    // A result read before its elapsed time could have passed (clock rounding) starts at 0, not before.
    noteActivity(a, 'early', 500, 900);
    expect(a.get('late')).toEqual({ first_ms: 16_000, last_ms: 25_000, active_ms: 9_000, busy_ms: 9_000 });
    expect(a.get('early')).toEqual({ first_ms: 0, last_ms: 3_000, active_ms: 3_000, busy_ms: 3_900 });
  });
});

describe('the campaign page in headless Chromium', () => {
  chromiumIt('while running: reloads itself, progress adds up, a cell per job', () => {
    const dir = tmp();
    const dom = dumpDom(writeCampaignPage(dir, state(true)));
    expect(dom).toMatch(/<body[^>]*data-state="running"/);
    expect(dom).toMatch(/<meta http-equiv="refresh" content="3">/);
    expect(dom).toContain('RUNNING');
    expect(dom).toMatch(/9<\/span>\/10 done \(<span class="bad">2 failed<\/span>\), 0 running, 1 queued; 2 hosts active/);
    expect(dom.match(/class="job job-[a-z]+" title="job \d+/g)).toHaveLength(10);
    expect(dom.match(/class="job job-none" title/g)).toHaveLength(1);
  }, 120_000);

  chromiumIt('over: verdict, failing seeds with replay commands (escaped), merged percentiles and their plot, per-host throughput', () => {
    const dir = tmp();
    const dom = dumpDom(writeCampaignPage(dir, state(false)));
    expect(dom).toMatch(/<body[^>]*data-state="done"/);
    expect(dom).toMatch(/<body[^>]*data-ready="1"/);
    expect(dom).not.toMatch(/http-equiv="refresh"/);
    expect(dom).toContain('TIMED OUT');
    expect(dom).toContain('1 never accounted');
    expect(dom).toContain('<code>npx xgsim replay /x/job-4-seed-1234.json</code>');
    expect(dom).toContain('npx xgsim stress revoke --seed 1234 &lt;&amp;&gt;');
    expect(dom).toContain('outlived 60 s');
    // Percentiles of the 5000 latencies merged: p50 is 10 + 49·3 or 50·3 µs.
    expect(dom).toMatch(/<th>p50<\/th><td class="num">1[56][0-9] µs<\/td>/);
    expect(dom).toMatch(/<th>max<\/th><td class="num">4\.3[0-9]? ms<\/td>/);
    const plot = /<svg[^>]*data-plot="campaign-revoke-percentiles"[^>]*data-marks="(\d+)"/.exec(dom);
    expect(Number(plot?.[1])).toBeGreaterThan(0);
    // Each host over its own active time: box-a 6 runs in 30 s, 12 runs/min; box-b 3 runs in its 10 s, 18 runs/min (not 6 over the campaign's 30 s).
    expect(dom).toMatch(/box-a<\/td><td class="num">6<\/td><td class="num">0\.0 s – 30\.0 s<\/td><td class="num">30\.0 s<\/td><td class="num">97 %<\/td><td class="num">12 runs\/min/);
    expect(dom).toMatch(/box-b<\/td><td class="num">3<\/td><td class="num">20\.0 s – 30\.0 s<\/td><td class="num">10\.0 s<\/td><td class="num">90 %<\/td><td class="num">18 runs\/min/);
    expect(dom).not.toMatch(/class="render-error/);
  }, 120_000);
});
