/**
 * `xgsim compare` on real threads, a shorter plan than
 * examples/compare/gpu.yaml: every design and its unsafe variant on the GPU
 * workloads (each design sharing through its own adapter) and the
 * refusals. Every cell of a design as shipped must pass its checks; every
 * unsafe variant must come out UNSAFE in a threaded cell, not only in its
 * refusal scenarios; the report page has the table and the plots side by
 * side. Workers come from dist/: `npm run build` first.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testSeed } from '../../tests/harness.js';
import { compare, formatCompareTable } from './compare.js';
import { NO_BUGS } from '../../hypervisor/xen/buggify.js';

const DESIGNS = ['primitives', 'lending', 'grants', 'pinned-userptr'];
const UNSAFE: Record<string, string> = {
  primitives: 'skip-tlb-flush-on-revoke',
  lending: 'lending-revoke-skip-flush',
  grants: 'grants-end-access-while-mapped',
  'pinned-userptr': 'pinned-userptr-unpin-while-mapped',
};

describe('xgsim compare', () => {
  it('GPU plan: every design as shipped passes every cell, every unsafe variant is UNSAFE on a threaded workload', async () => {
    const seed = testSeed('xgsim compare GPU plan');
    const dir = mkdtempSync(join(tmpdir(), 'xgsim-compare-'));
    try {
      const plan = join(dir, 'gpu-short.yaml');
      const designs = [...DESIGNS.map((d) => `  - ${d}`), ...DESIGNS.map((d) => `  - { design: ${d}, name: ${d}-unsafe, buggify: [${UNSAFE[d]}] }`)];
      writeFileSync(plan, ['name: gpu-short', 'duration: 800ms', `seeds: [${seed}]`, 'pcpus: 2', 'designs:', ...designs, 'workloads:', '  - { kind: render, guests: 2 }', '  - { kind: compute-svm, guests: 2 }', '  - { kind: refusals }', ''].join('\n'));
      const out = join(dir, 'out');
      const { exitCode, report } = await compare(plan, { buggify: NO_BUGS, quiet: true, json: true, report: out });
      const cells = report.cells;
      expect(cells).toHaveLength(8 * 3);
      const why = (d: string): string => JSON.stringify(cells.filter((c) => c.design === d).map((c) => [c.workload, c.safety, c.failed, c.note]));
      for (const d of DESIGNS) {
        // The design as shipped: every cell ran and passed its checks (every invariant, the isolation oracle, the data).
        for (const c of cells.filter((x) => x.design === d)) {
          expect(c.safety, `${d} × ${c.workload}: ${why(d)}`).toBe('safe');
          expect(c.runs).toBeGreaterThan(0);
        }
        // Its unsafe variant: caught where guests share buffers through the design, not only in a scenario.
        const variant = cells.filter((x) => x.design === `${d}-unsafe`);
        expect(variant.every((c) => c.base_design === d && c.buggify.includes(UNSAFE[d]!)), why(`${d}-unsafe`)).toBe(true);
        expect(variant.some((c) => c.workload !== 'refusals' && c.safety === 'UNSAFE'), why(`${d}-unsafe`)).toBe(true);
        expect(variant.find((c) => c.workload === 'refusals')?.safety, why(`${d}-unsafe`)).toBe('UNSAFE');
      }
      // The designs' own behaviour shows in the counts the hypervisor and the kernels kept.
      const cell = (d: string, w: string) => cells.find((c) => c.design === d && c.workload === w)!;
      expect(cell('grants', 'render').costs['end_access_refused']).toBeGreaterThan(0);
      expect(cell('pinned-userptr', 'render').costs['pinned_peak_pages']).toBeGreaterThan(0);
      expect(cell('lending', 'render').costs['faults_served']).toBeGreaterThan(0);
      expect(cell('primitives', 'compute-svm').costs['svm_jobs_checked']).toBeGreaterThan(0);
      expect(exitCode).toBe(0); // the designs as shipped are safe; the variants' UNSAFE is the point

      const table = formatCompareTable(report).split('\n');
      expect(table[1]).toMatch(/^design\s+workload\s+runs\s+safety\s+failed \(violations\)\s+revoke µs p50\/p99\/max\s+jobs\/s\s+revocations\s+p2m removed\/rev\s+shootdowns\/rev\s+vCPUs paused\/rev\s+pause µs\/rev \(max\)\s+splits\/rev\s+faults\s+fault µs p50\/p99\s+evictions\s+evictions refused\s+end-access refused\s+reclaim µs p99\s+pinned peak pg\s+held peak pg\s+grant frames\s+maptrack frames\s+grant maps no_space$/);
      expect(table).toContain('  lending-unsafe*: XGSIM_BUGGIFY=lending-revoke-skip-flush');
      expect(JSON.parse(readFileSync(join(out, 'compare.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(report)));
      // The page: the table first, then per workload the run report's plots, one column per design.
      const html = readFileSync(join(out, 'index.html'), 'utf8');
      expect(html.indexOf('<table class="cmp-table">')).toBeGreaterThan(0);
      expect(html.indexOf('<table class="cmp-table">')).toBeLessThan(html.indexOf('data-workload="render"'));
      expect(html).not.toMatch(/<script src=|<link [^>]*href=|class="plot render-error"/);
      const sections = html.split('data-workload="').slice(1);
      expect(sections.map((x) => x.slice(0, x.indexOf('"')))).toEqual(['render', 'compute-svm']);
      for (const x of sections) expect(x.match(/data-plot="revoke-latency-hist"/g)).toHaveLength(8);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);

  it('--sim: the same plan in the deterministic simulator gives the same table twice; the unsafe variant is UNSAFE there too', async () => {
    const seed = testSeed('xgsim compare --sim');
    const dir = mkdtempSync(join(tmpdir(), 'xgsim-compare-sim-'));
    try {
      const plan = join(dir, 'sim.yaml');
      writeFileSync(plan, ['name: sim', 'duration: 1s', `seeds: [${seed}]`, 'designs:', '  - lending', '  - { design: grants, name: grants-unsafe, buggify: [grants-end-access-while-mapped] }', 'workloads:', '  - { kind: render, guests: 2 }', ''].join('\n'));
      const a = await compare(plan, { buggify: NO_BUGS, quiet: true, json: true, sim_steps: 8000 });
      const b = await compare(plan, { buggify: NO_BUGS, quiet: true, json: true, sim_steps: 8000 });
      expect(b.report).toEqual(a.report);
      expect(a.report.sim_steps).toBe(8000);
      const cell = (d: string) => a.report.cells.find((c) => c.design === d)!;
      expect(cell('lending')).toMatchObject({ safety: 'safe', runs: 1 });
      expect(cell('lending').costs['revocations']).toBeGreaterThan(0);
      expect(cell('grants-unsafe').safety).toBe('UNSAFE');
      expect(formatCompareTable(a.report).split('\n')[0]).toContain('8000 steps per run in the deterministic simulator');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
