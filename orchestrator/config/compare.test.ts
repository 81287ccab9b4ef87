import { describe, expect, it } from 'vitest';
import { loadComparePlan, parseComparePlan } from './compare.js';
import { isInputError } from './errors.js';
import { parseYaml } from './load.js';

const parse = (text: string): ReturnType<typeof parseComparePlan> => parseComparePlan(parseYaml(text, 'p.yaml'));
const errorOf = (text: string): string => {
  try {
    parse(text);
  } catch (e) {
    if (isInputError(e)) return e.toString();
    throw e;
  }
  throw new Error('the plan was accepted');
};
const base = ['name: p', 'duration: 1s', 'seeds: [1, 2]'];

describe('comparison plans', () => {
  it.each([['designs-smoke'], ['gpu']])('loads examples/compare/%s.yaml: every design, its unsafe variant, the refusals', (name) => {
    const p = loadComparePlan(`examples/compare/${name}.yaml`);
    expect(p.designs.map((d) => d.design)).toEqual(expect.arrayContaining(['primitives', 'grants', 'pinned-userptr', 'lending']));
    for (const d of ['primitives', 'grants', 'pinned-userptr', 'lending']) expect(p.designs.some((x) => x.design === d && x.buggify.length > 0), d).toBe(true);
    expect(p.workloads.map((w) => w.kind)).toContain('refusals');
  });

  it('examples/compare/gpu.yaml: ≥ 4 designs × ≥ 3 GPU workloads, the pressure storm among them', () => {
    const p = loadComparePlan('examples/compare/gpu.yaml');
    expect(new Set(p.designs.map((d) => d.design)).size).toBeGreaterThanOrEqual(4);
    const gpu = p.workloads.filter((w) => ['render', 'compute-svm', 'adversary', 'pressure'].includes(w.kind));
    expect(gpu.length).toBeGreaterThanOrEqual(3);
    expect(p.workloads.find((w) => w.kind === 'pressure')?.evictions_per_s).toBe(2000);
  });

  it('names designs by their design, variants by their own name, workloads by their kind', () => {
    const p = parse([...base, 'designs: [lending, { design: lending, name: bad, buggify: [lending-revoke-skip-flush] }]', 'workloads: [{ kind: grant-ping }, { kind: refusals, name: r }]'].join('\n'));
    expect(p.designs).toEqual([{ name: 'lending', design: 'lending', buggify: [] }, { name: 'bad', design: 'lending', buggify: ['lending-revoke-skip-flush'] }]);
    const sizes = { buffers: 4, buffer_pages: 4, resident: false };
    expect(p.workloads).toEqual([{ name: 'grant-ping', kind: 'grant-ping', guests: 2, evictions_per_s: 0, ...sizes }, { name: 'r', kind: 'refusals', guests: 2, evictions_per_s: 0, ...sizes }]);
    const m = parse([...base, 'designs: [grants]', 'workloads: [{ kind: render, name: resident, guests: 3, buffers: 16, buffer_pages: 8, resident: true, dom0_max_maptrack_frames: 1 }]'].join('\n'));
    expect(m.workloads[0]).toMatchObject({ buffers: 16, buffer_pages: 8, resident: true, dom0_max_maptrack_frames: 1 });
    const r = parse([...base, 'designs: [grants]', 'workloads: [{ kind: render }, { kind: pressure, name: storm, evictions_per_s: 500 }]'].join('\n'));
    expect(r.workloads.map((w) => [w.name, w.evictions_per_s])).toEqual([['render', 100], ['storm', 500]]);
    expect(p.duration_ms).toBe(1000);
    const z = parse([...base, 'designs: [lending, { design: lending, name: lending-zero, missing_page: zero }]', 'workloads: [{ kind: render }]'].join('\n'));
    expect(z.designs[1]).toEqual({ name: 'lending-zero', design: 'lending', buggify: [], missing_page: 'zero' });
  });

  it('points at the bad value: file:line:col', () => {
    expect(errorOf([...base, 'designs: [lendin]', 'workloads: [{ kind: idle }]'].join('\n'))).toMatch(/^p\.yaml:4:\d+: .*unknown design `lendin`.*lending/);
    expect(errorOf([...base, 'designs: [lending, lending]', 'workloads: [{ kind: idle }]'].join('\n'))).toMatch(/^p\.yaml:4:\d+: .*two designs are called `lending`/);
    expect(errorOf([...base, 'designs: [{ design: grants, buggify: [no-such-bug] }]', 'workloads: [{ kind: idle }]'].join('\n'))).toMatch(/^p\.yaml:4:\d+: .*unknown bug `no-such-bug`/);
    expect(errorOf([...base, 'designs: [grants]', 'workloads: [{ kind: render, guests: 0 }]'].join('\n'))).toMatch(/^p\.yaml:5:\d+: .*at least 1/);
    expect(errorOf([...base, 'designs: [grants]', 'workloads: [{ kind: compute-svm, resident: true }]'].join('\n'))).toMatch(/^p\.yaml:5:\d+: .*resident buffers are render's/);
    expect(errorOf([...base, 'designs: [{ design: grants, missing_page: zero }]', 'workloads: [{ kind: render }]'].join('\n'))).toMatch(/^p\.yaml:4:\d+: .*the lender's answer/);
    expect(errorOf(['name: p', 'duration: 1h', 'seeds: [1]', 'designs: [grants]', 'workloads: [{ kind: idle }]'].join('\n'))).toMatch(/^p\.yaml:2:\d+: .*between/);
    expect(errorOf(['name: p', 'duration: 1s', 'seeds: [3, 3]', 'designs: [grants]', 'workloads: [{ kind: idle }]'].join('\n'))).toMatch(/^p\.yaml:3:\d+: .*seed 3 is listed twice/);
  });
});
