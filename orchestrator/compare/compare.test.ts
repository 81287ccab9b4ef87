/**
 * `xgsim compare` on a tiny plan, on real threads: the table has a row per
 * design × workload with its columns; the lending design as shipped is safe
 * on grant-ping and its refusal scenarios; its unsafe variant
 * (lending-revoke-skip-flush) shows UNSAFE on its refusals, naming the
 * scenario that caught it. Workers come from dist/: `npm run build` first.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testSeed } from '../../tests/harness.js';
import { compare, formatCompareTable } from './compare.js';
import { NO_BUGS } from '../../hypervisor/xen/buggify.js';

describe('xgsim compare', () => {
  it('tiny plan: one row per design × workload; the unsafe variant shows UNSAFE, the design as shipped safe', async () => {
    const seed = testSeed('xgsim compare tiny plan');
    const dir = mkdtempSync(join(tmpdir(), 'xgsim-compare-'));
    try {
      const plan = join(dir, 'tiny.yaml');
      writeFileSync(plan, ['name: tiny', 'duration: 400ms', `seeds: [${seed}]`, 'pcpus: 2', 'designs:', '  - lending', '  - { design: lending, name: lending-unsafe, buggify: [lending-revoke-skip-flush] }', 'workloads:', '  - { kind: grant-ping, guests: 2 }', '  - { kind: render, guests: 1 }', '  - { kind: refusals }', ''].join('\n'));
      const { exitCode, report } = await compare(plan, { buggify: NO_BUGS, quiet: true, json: true, report: join(dir, 'out') });
      const cell = (d: string, w: string) => report.cells.find((c) => c.design === d && c.workload === w)!;
      expect(report.cells.map((c) => `${c.design}×${c.workload}`)).toEqual(['lending×grant-ping', 'lending×render', 'lending×refusals', 'lending-unsafe×grant-ping', 'lending-unsafe×render', 'lending-unsafe×refusals']);
      expect(cell('lending', 'grant-ping')).toMatchObject({ safety: 'safe', runs: 1, violations: 0 });
      expect(cell('lending', 'grant-ping').costs['grant_map']).toBeGreaterThan(0);
      expect(cell('lending', 'render')).toMatchObject({ safety: 'n/a', runs: 0 });
      expect(cell('lending', 'refusals')).toMatchObject({ safety: 'safe', failed: {} });
      expect(cell('lending-unsafe', 'refusals')).toMatchObject({ base_design: 'lending', safety: 'UNSAFE', buggify: ['lending-revoke-skip-flush'], failed: { 'design-lending-refusals': 1 } });
      expect(exitCode).toBe(0); // the design as shipped is safe; the variant's UNSAFE is the point
      const table = formatCompareTable(report).split('\n');
      expect(table[1]).toMatch(/^design\s+workload\s+runs\s+safety\s+failed \(violations\)\s+revoke µs p50\/p99\/max\s+jobs\/s\s+revokes\s+shootdowns\/revoke\s+p2m splits\s+maps\s+grant maps\s+foreign maps\s+evictions\s+faults$/);
      expect(table.slice(3, 9).map((l) => l.split(/\s{2,}/).slice(0, 4).join('|'))).toEqual(['lending|grant-ping|1|safe', 'lending|render|0|n/a: no lending adapter for render yet', 'lending|refusals|1|safe', 'lending-unsafe*|grant-ping|1|safe', 'lending-unsafe*|render|0|n/a: no lending adapter for render yet', 'lending-unsafe*|refusals|1|UNSAFE']);
      expect(table).toContain('  lending-unsafe*: XGSIM_BUGGIFY=lending-revoke-skip-flush');
      expect(JSON.parse(readFileSync(join(dir, 'out', 'compare.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(report)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
