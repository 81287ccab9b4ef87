/**
 * `xgsim bench --quick` as a smoke test: it runs, measures its floors and
 * prints every figure with a ratio. No assertion on timing (speed belongs
 * to the benchmark itself, not to the tests).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { RedisIoreqBus } from '../transport/redis-bus.js';

const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const haveRedis = await RedisIoreqBus.reachable(REDIS_URL, 500);
const inCI = process.env['CI'] !== undefined;
if (!haveRedis) {
  console.warn(`\n!!! no Redis at ${REDIS_URL}: the Redis rows of the bench smoke test are NOT CHECKED${inCI ? ' — and CI is set, so it FAILS' : ''} !!!\n`);
}

const XGSIM = join(PROJECT_ROOT, 'bin', 'xgsim.js');
const haveRedisServer = spawnSync('redis-server', ['--version']).status === 0;

interface Row {
  figure: string;
  value: number;
  ratio: number;
  floor: string;
  floor_value: number;
  goal: string;
  pass: boolean | null;
  note?: string;
  detail?: string;
}

describe('xgsim bench --quick', () => {
  it('measures the floors and reports every figure as a ratio to one', { timeout: 300_000 }, () => {
    const r = spawnSync(process.execPath, [XGSIM, 'bench', '--quick', '--json'], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout) as { floors: Record<string, number>; rows: Row[]; machine: { cores: number }; load: number[] };
    for (const f of ['raw_access_per_s', 'lock_pair_ns', 'spin_pingpong_p50_us', 'wait_pingpong_p50_us', 'revoke_idle_p50_us', 'raw_page_move_per_s', 'bare_workers_boot_ms', 'bare_workers_cpu_ms']) expect(rep.floors[f], f).toBeGreaterThan(0);
    const figures = rep.rows.map((x) => x.figure);
    for (const f of [
      'guest access through p2m + software TLB',
      'null hypercall on a vCPU thread',
      'ring IOREQ round trip, server hot (p50)',
      'ring IOREQ round trip, server idle (p50)',
      'Revoke p99, 8 vCPUs hammering (1 page), OS-scheduled',
      'Revoke of 1 page, 1M frames of RAM (p50)',
      'Revoke of 512 pages (p50)',
      'Steal + Return, 512 pages per call',
      'sim decisions/s, default topology',
      'sim simulated time / real time',
    ]) expect(figures).toContain(f);
    expect(rep.floors['bare_decisions_per_s']).toBeGreaterThan(0);
    expect(figures.some((f) => /^Revoke p99, 8 vCPUs hammering \(1 page\), \d+ pCPUs$/.test(f))).toBe(true);
    // The hostile Revoke is measured on pCPUs by default (the floor above), and OS-scheduled beside it.
    expect(rep.floors['revoke_idle_os_p50_us']).toBeGreaterThan(0);
    expect(figures.some((f) => f.startsWith('boot, '))).toBe(true);
    expect(figures.some((f) => f.startsWith('RSS, '))).toBe(true);
    expect(figures.some((f) => f.startsWith('boot CPU time, '))).toBe(true);
    if (haveRedis || inCI) {
      // The Redis rows, and the throughput one against its floor of the same run.
      for (const f of ['Redis IOREQ round trip (p50)', 'Redis IOREQ throughput, pipelined']) expect(figures, f).toContain(f);
      expect(rep.floors['redis_pipelined_xadd_per_s']).toBeGreaterThan(0);
      const tp = rep.rows.find((x) => x.figure === 'Redis IOREQ throughput, pipelined')!;
      expect(tp.value).toBeGreaterThan(0);
      expect(tp.floor).toMatch(/^raw pipelined XADD/);
      // Made of posted writes (buffered ioreqs), most of them posted; the synchronous figure beside it.
      expect(tp.detail).toMatch(/^posted writes \(buffered ioreqs\)/);
      expect(Number(/: (\d+)% posted/.exec(tp.detail!)?.[1])).toBeGreaterThan(50);
      expect(figures).toContain('Redis IOREQ throughput, synchronous reads');
      // Where the round trip goes: a row per stage, each from the timeline of a traced run (orchestrator/trace/stages.ts).
      for (const s of ['handover', 'request leg', 'device model', 'answer leg', 'wake-up']) {
        const row = rep.rows.find((x) => x.figure === `Redis IOREQ round trip, stage: ${s} (p50)`);
        expect(row, s).toBeDefined();
        expect(row!.value, s).toBeGreaterThan(0);
      }
      // The same sim jobs on 1 host × 1 core (the floor), 1 host × every core, 2 hosts.
      expect(rep.floors['campaign_1_host_1_core_jobs_per_min']).toBeGreaterThan(0);
      expect(figures.filter((f) => /^campaign throughput, (1 host × \d+ cores?|2 hosts × \d+ cores?)$/.test(f))).toHaveLength(2);
      // Against the machine's own parallel speed-up, and the Redis round trip against the floor of its shape.
      expect(rep.floors['parallel_speedup']).toBeGreaterThan(0);
      expect(figures.some((f) => /^campaign speed-up, 1 host × \d+ cores?, vs the machine's own$/.test(f))).toBe(true);
      expect(rep.floors['redis_stream_rtt_across_p50_us']).toBeGreaterThan(0);
      expect(figures).toContain('Redis IOREQ round trip (p50), vs the server on another thread');
    }
    if (haveRedisServer || inCI) {
      // The cost of the run's ACL users, on a redis-server of the bench's own: against the same without them.
      const acl = rep.rows.find((x) => x.figure === 'Redis IOREQ round trip, ACL user per role (p50)');
      expect(acl, 'no ACL row').toBeDefined();
      expect(acl!.floor).toBe('the same without ACL users, p50');
    }
    for (const x of rep.rows) {
      expect(Number.isFinite(x.ratio), x.figure).toBe(true);
      expect(Number.isFinite(x.value), x.figure).toBe(true);
      expect(x.floor.length, x.figure).toBeGreaterThan(0);
      expect(x.floor_value, x.figure).toBeGreaterThan(0);
      // A figure with a goal says whether it met it; the runs behind it were clean (no violation, no error).
      if (x.goal !== '—') expect(typeof x.pass, x.figure).toBe('boolean');
      expect(x.note, x.figure).toBeUndefined();
    }
    expect(rep.machine.cores).toBeGreaterThan(0);
    expect(rep.load).toHaveLength(3);
  });

  it('--curves sweeps a parameter and reports one point per value', () => {
    const r = spawnSync(process.execPath, [XGSIM, 'bench', '--quick', '--json', '--curves', 'hostile'], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout) as { curves: Array<{ name: string; points: Array<{ x: number; n: number; p50_us: number; p99_us: number; problems: string[] }> }> };
    expect(rep.curves.map((c) => c.name)).toEqual(['hostile']);
    const pts = rep.curves[0]!.points;
    expect(pts.map((p) => p.x)).toEqual([0, 8]); // --quick: the ends of the sweep
    for (const p of pts) {
      expect(p.n, `x=${p.x}`).toBeGreaterThan(0);
      expect(p.p99_us, `x=${p.x}`).toBeGreaterThanOrEqual(p.p50_us);
      expect(p.problems, `x=${p.x}`).toEqual([]);
    }
  });

  it('--curves domains,ioreq-servers: boot time vs domains, ring IOREQ throughput vs pairs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xgsim-curves-'));
    const r = spawnSync(process.execPath, [XGSIM, 'bench', '--quick', '--json', '--curves', 'domains,ioreq-servers', '--report', dir], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    // The report: a plot per curve, each with a line drawn (not "no data").
    const html = readFileSync(join(dir, 'index.html'), 'utf8');
    for (const name of ['domains', 'ioreq-servers']) {
      const svg = new RegExp(`<svg data-plot="curve-${name}"[\\s\\S]*?</svg>`).exec(html)?.[0] ?? '';
      expect(svg, name).toContain('class="mark line"');
      expect(svg, name).not.toContain('no data');
    }
    expect(JSON.parse(readFileSync(join(dir, 'curves.json'), 'utf8'))).toHaveLength(2);
    const rep = JSON.parse(r.stdout) as { curves: Array<{ name: string; kind: string; points: Array<{ x: number; n: number; boot_ms?: number; ioreqs_per_s?: number; problems: string[] }> }> };
    expect(rep.curves.map((c) => [c.name, c.kind])).toEqual([
      ['domains', 'boot'],
      ['ioreq-servers', 'ioreq'],
    ]);
    const [boot, io] = rep.curves;
    expect(boot!.points.map((p) => p.x)).toEqual([2, 4]);
    expect(io!.points.map((p) => p.x)).toEqual([1, 2]);
    for (const p of boot!.points) {
      expect(p.boot_ms, `domains=${p.x}`).toBeGreaterThan(0);
      expect(p.n, `domains=${p.x}`).toBe(2 * p.x);
      expect(p.problems, `domains=${p.x}`).toEqual([]);
    }
    for (const p of io!.points) {
      expect(p.ioreqs_per_s, `pairs=${p.x}`).toBeGreaterThan(0);
      expect(p.n, `pairs=${p.x}`).toBeGreaterThan(0);
    }
  });

  it('--report without --curves: one line, exit 2', () => {
    const r = spawnSync(process.execPath, [XGSIM, 'bench', '--report', join(tmpdir(), 'x')], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--report: only with --curves/);
  });

  it('refuses an unknown curve with a one-line reason', () => {
    const r = spawnSync(process.execPath, [XGSIM, 'bench', '--curves', 'nope'], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--curves: unknown curve `nope`/);
  });
});
