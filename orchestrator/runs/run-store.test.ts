import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeRecord, type RunRecord } from './record.js';
import { listRuns, pruneRuns, runName, storeRun } from './run-store.js';
import type { Summary } from '../up/summary.js';

function rec(kind: 'up' | 'stress-revoke', seed: number, verdict: 'pass' | 'fail', at: string): RunRecord {
  const summary = { verdict, seed } as unknown as Summary;
  const r = kind === 'up'
    ? makeRecord({ kind, file: 'examples/two-guests.yaml', flags: { duration: '1s', transport: 'ring' }, seed, buggify: [], transport: 'ring', summary, replay: `npx xgsim up examples/two-guests.yaml --seed ${seed}` })
    : makeRecord({ kind, flags: { guests: '1', vcpus: '2', 'backend-vcpus': '1', pages: '8', adversary: 'none', duration: '1s' }, seed, buggify: [], transport: 'ring', summary, replay: `npx xgsim stress revoke --seed ${seed}` });
  return { ...r, created_at: at };
}

describe('the run store', () => {
  it('keeps each run in <name>/<time>/ with its record, points latest at the newest, and lists newest first', () => {
    const root = mkdtempSync(join(tmpdir(), 'xgsim-store-'));
    const a = storeRun(rec('up', 1, 'pass', '2026-12-07T01:00:00.000Z'), null, root);
    const b = storeRun(rec('up', 2, 'fail', '2026-12-07T02:00:00.000Z'), null, root);
    const c = storeRun(rec('stress-revoke', 3, 'pass', '2026-12-07T01:30:00.000Z'), null, root);
    expect(a).toBe(join(root, 'two-guests', '20261207T010000.000'));
    expect(JSON.parse(readFileSync(join(b, 'record.json'), 'utf8'))).toMatchObject({ seed: 2, verdict: 'fail' });
    expect(readlinkSync(join(root, 'two-guests', 'latest'))).toBe('20261207T020000.000');
    // `latest` at the top is the last one kept (not the newest by time: runs end in the order they end).
    expect(readlinkSync(join(root, 'latest'))).toBe(join('stress-revoke', '20261207T013000.000'));
    expect(listRuns(root).map((r) => [r.name, r.seed, r.verdict])).toEqual([['two-guests', 2, 'fail'], ['stress-revoke', 3, 'pass'], ['two-guests', 1, 'pass']]);
    const index = readFileSync(join(root, 'index.html'), 'utf8');
    expect(index.match(/<tr class=/g)).toHaveLength(3);
    expect(index).toContain('two-guests/20261207T020000.000/record.json');
    expect(c).toBe(join(root, 'stress-revoke', '20261207T013000.000'));
  });

  it('two runs in the same millisecond get two directories; foreign directories are not runs', () => {
    const root = mkdtempSync(join(tmpdir(), 'xgsim-store-'));
    const x = storeRun(rec('up', 1, 'pass', '2026-12-07T01:00:00.000Z'), null, root);
    const y = storeRun(rec('up', 2, 'pass', '2026-12-07T01:00:00.000Z'), null, root);
    expect(y).toBe(`${x}-2`);
    mkdirSync(join(root, 'campaign-x1', 'job-3'), { recursive: true });
    writeFileSync(join(root, 'campaign-x1', 'campaign.json'), '{}');
    expect(listRuns(root)).toHaveLength(2);
  });

  it('prunes by count per name and by age, and moves latest to what is left', () => {
    const root = mkdtempSync(join(tmpdir(), 'xgsim-store-'));
    for (let h = 1; h <= 4; h++) storeRun(rec('up', h, 'pass', `2026-12-0${h}T00:00:00.000Z`), null, root);
    storeRun(rec('stress-revoke', 9, 'pass', '2026-12-01T12:00:00.000Z'), null, root);
    const removed = pruneRuns(root, { keep: 2 });
    expect(removed.map((d) => d.slice(root.length + 1)).sort()).toEqual(['two-guests/20261201T000000.000', 'two-guests/20261202T000000.000']);
    expect(listRuns(root).map((r) => r.seed)).toEqual([4, 3, 9]);
    const day = 24 * 3600 * 1000;
    // On Dec 5, older than a day and a half: seed 3 (Dec 3) and seed 9 (Dec 1); seed 4 (Dec 4) stays.
    const old = pruneRuns(root, { olderThan_ms: 1.5 * day }, Date.parse('2026-12-05T00:00:00.000Z'));
    expect(old).toHaveLength(2);
    expect(listRuns(root).map((r) => r.seed)).toEqual([4]);
    expect(existsSync(join(root, 'stress-revoke', 'latest'))).toBe(false);
    expect(readlinkSync(join(root, 'latest'))).toBe(join('two-guests', '20261204T000000.000'));
  });

  it('names a run after its topology or plan file, or its command', () => {
    expect(runName(rec('up', 1, 'pass', '2026-12-07T00:00:00.000Z'))).toBe('two-guests');
    expect(runName(rec('stress-revoke', 1, 'pass', '2026-12-07T00:00:00.000Z'))).toBe('stress-revoke');
  });
});

describe('xgsim runs', () => {
  const bin = join(import.meta.dirname, '..', '..', 'bin', 'xgsim.js');
  const xgsim = (args: string[]): { code: number; out: string; err: string } => {
    const r = spawnSync(process.execPath, [bin, 'runs', ...args], { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
  };
  it('lists the store (a table, or --json), prunes it, and refuses a prune that says nothing', () => {
    const root = mkdtempSync(join(tmpdir(), 'xgsim-store-'));
    for (let h = 1; h <= 3; h++) storeRun(rec('up', h, h === 2 ? 'fail' : 'pass', `2026-12-0${h}T00:00:00.000Z`), null, root);
    const table = xgsim(['--dir', root]);
    expect(table.code, table.err).toBe(0);
    expect(table.out.split('\n')[1]).toMatch(/^2026-12-03T00:00:00\.000Z\s+two-guests\s+up\s+PASS\s+3\s+npx xgsim replay .*record\.json$/);
    expect(table.out).toContain(`3 runs in ${root}`);
    expect((JSON.parse(xgsim(['--dir', root, '--json']).out) as Array<{ seed: number }>).map((r) => r.seed)).toEqual([3, 2, 1]);
    const pruned = xgsim(['--dir', root, '--prune', '--keep', '1', '--json']);
    expect(pruned.err).toContain('removed 2 runs');
    expect((JSON.parse(pruned.out) as unknown[]).length).toBe(1);
    const vague = xgsim(['--dir', root, '--prune']);
    expect(vague.code).toBe(2);
    expect(vague.err).toMatch(/--prune: say what to keep/);
    expect(xgsim(['--dir', root, '--prune', '--older-than', 'a while']).code).toBe(2);
  });
});
