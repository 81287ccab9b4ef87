import fc from 'fast-check';
import { runTestWorker } from '../../tests/run-test-worker.js';
import { describe, expect, it } from 'vitest';
import { EINVAL, ENOENT, ENOMEM, ENOSPC, EPERM, ESRCH } from '../public/errno.js';
import { MAX_IOMEM_RANGES } from '../layout/constants.js';
import { DomainTable, type IomemRange } from '../layout/domains.js';
import { testMachine } from '../../tests/test-machine.js';
import type { IomemTestJob, IomemTestResult } from '../../tests/workers/iomem-worker.js';
import { domctlIomemPermission } from './domctl.js';
import { domainDestroy } from './domain.js';
import { iomemPermitted } from './iomem.js';
import { rangesetAddRange, rangesetCanonical, rangesetContainsRange, rangesetRemoveRange } from './rangeset.js';

/** The frames a list of ranges covers. */
function frames(r: readonly IomemRange[]): Set<number> {
  const out = new Set<number>();
  for (const x of r) for (let f = x.s; f <= x.e; f++) out.add(f);
  return out;
}

describe('rangeset (xen/common/rangeset.c)', () => {
  const op = fc.record({ add: fc.boolean(), s: fc.integer({ min: 0, max: 40 }), n: fc.integer({ min: 1, max: 8 }) });

  it('add and remove are union and difference of frames, and keep the set merged', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        let r: IomemRange[] = [];
        const ref = new Set<number>();
        for (const o of ops) {
          const e = o.s + o.n - 1;
          r = o.add ? rangesetAddRange(r, o.s, e) : rangesetRemoveRange(r, o.s, e);
          for (let f = o.s; f <= e; f++) {
            if (o.add) ref.add(f);
            else ref.delete(f);
          }
          expect(rangesetCanonical(r)).toBe(true);
          expect([...frames(r)].sort((a, b) => a - b)).toEqual([...ref].sort((a, b) => a - b));
        }
        for (let s = 0; s < 50; s++) {
          for (let e = s; e < s + 6; e++) {
            let all = true;
            for (let f = s; f <= e; f++) all &&= ref.has(f);
            expect(rangesetContainsRange(r, s, e)).toBe(all);
          }
        }
      }),
    );
  });

  it('merges ranges that only touch, and splits on a deny inside', () => {
    expect(rangesetAddRange([{ s: 0, e: 3 }], 4, 7)).toEqual([{ s: 0, e: 7 }]);
    expect(rangesetAddRange([{ s: 0, e: 3 }, { s: 8, e: 9 }], 4, 7)).toEqual([{ s: 0, e: 9 }]);
    expect(rangesetRemoveRange([{ s: 0, e: 9 }], 4, 5)).toEqual([{ s: 0, e: 3 }, { s: 6, e: 9 }]);
    expect(rangesetRemoveRange([{ s: 0, e: 9 }], 20, 30)).toEqual([{ s: 0, e: 9 }]);
    expect(rangesetContainsRange([{ s: 0, e: 3 }, { s: 5, e: 9 }], 2, 6)).toBe(false);
  });
});

describe('XEN_DOMCTL_iomem_permission', () => {
  // d0 privileged, holding gpu0 (32 pages); d1 its frontend; d2 owns gpu1 (4 pages).
  const machine = (bugs?: string) =>
    testMachine({
      bars: [
        { name: 'gpu0', owner: 0, nr_pages: 32 },
        { name: 'gpu1', owner: 2, nr_pages: 4 },
      ],
      ...(bugs !== undefined ? { bugs } : {}),
    });

  it('checks in Xen\'s order: lookup, wrap, privilege, the caller\'s own caps', () => {
    const m = machine();
    const base = m.sabs.bars[0]!.base_mfn;
    const gpu1 = m.sabs.bars[1]!.base_mfn;
    expect(domctlIomemPermission(m, 1, 9, base, 1, true)).toBe(-EPERM);
    expect(domctlIomemPermission(m, 0, 9, base, 1, true)).toBe(-ESRCH);
    expect(domctlIomemPermission(m, 1, 1, base, 0, true)).toBe(-EINVAL);
    expect(domctlIomemPermission(m, 0, 1, -1, 2, true)).toBe(-EINVAL);
    expect(domctlIomemPermission(m, 0, 1, 2 ** 31 - 1, 2, true)).toBe(-EINVAL);
    expect(domctlIomemPermission(m, 1, 1, base, 1, true)).toBe(-EPERM);
    expect(domctlIomemPermission(m, 0, 1, 5, 1, true)).toBe(-EPERM); // RAM: dom0 does not hold it
    expect(domctlIomemPermission(m, 0, 1, gpu1, 1, true)).toBe(-EPERM); // d2's BAR
    expect(domctlIomemPermission(m, 0, 2, gpu1, 1, false)).toBe(-EPERM); // nor may it take it away
    expect(iomemPermitted(m, 2, gpu1, 4)).toBe(true);
    expect(domctlIomemPermission(m, 0, 1, base, 32, true)).toBe(0);
    expect(iomemPermitted(m, 1, base, 32)).toBe(true);
    expect(domainDestroy(m, 1)).toBe(0);
    expect(domctlIomemPermission(m, 0, 1, base, 1, true)).toBe(-ESRCH);
  });

  it('is a rangeset: a deny splits, twice permitted once denied is gone, adjacent permits join, absent denies are 0', () => {
    const m = machine();
    const b = m.sabs.bars[0]!.base_mfn;
    expect(domctlIomemPermission(m, 0, 1, b, 4, true)).toBe(0);
    expect(domctlIomemPermission(m, 0, 1, b, 4, true)).toBe(0);
    expect(domctlIomemPermission(m, 0, 1, b, 4, false)).toBe(0);
    expect(iomemPermitted(m, 1, b, 1)).toBe(false);
    expect(domctlIomemPermission(m, 0, 1, b, 4, false)).toBe(0);
    expect(domctlIomemPermission(m, 0, 1, b, 4, true)).toBe(0);
    expect(domctlIomemPermission(m, 0, 1, b + 4, 4, true)).toBe(0);
    expect(iomemPermitted(m, 1, b + 2, 4)).toBe(true);
    expect(m.dom.iomemRanges(1)).toEqual([{ s: b, e: b + 7 }]);
    expect(domctlIomemPermission(m, 0, 1, b + 3, 2, false)).toBe(0);
    expect(m.dom.iomemRanges(1)).toEqual([{ s: b, e: b + 2 }, { s: b + 5, e: b + 7 }]);
    expect(iomemPermitted(m, 1, b + 2, 4)).toBe(false);
    // dom0 denies itself: it can no longer grant what it gave up.
    expect(domctlIomemPermission(m, 0, 0, b + 16, 16, false)).toBe(0);
    expect(domctlIomemPermission(m, 0, 1, b + 16, 1, true)).toBe(-EPERM);
    expect(domctlIomemPermission(m, 0, 0, b + 16, 1, true)).toBe(-EPERM);
  });

  it('-ENOMEM past MAX_IOMEM_RANGES disjoint ranges, with nothing changed', () => {
    const m = machine();
    const b = m.sabs.bars[0]!.base_mfn;
    for (let i = 0; i < MAX_IOMEM_RANGES; i++) expect(domctlIomemPermission(m, 0, 1, b + 2 * i, 1, true)).toBe(0);
    const before = m.dom.iomemRanges(1);
    expect(domctlIomemPermission(m, 0, 1, b + 2 * MAX_IOMEM_RANGES, 1, true)).toBe(-ENOMEM);
    expect(m.dom.iomemRanges(1)).toEqual(before);
    expect(domctlIomemPermission(m, 0, 1, b, 3, true)).toBe(0); // joins the first two
    expect(domctlIomemPermission(m, 0, 1, b + 2 * MAX_IOMEM_RANGES, 1, true)).toBe(0);
    const full = m.dom.iomemRanges(1);
    expect(domctlIomemPermission(m, 0, 1, b + 1, 1, false)).toBe(-ENOMEM); // a split needs a ninth range
    expect(m.dom.iomemRanges(1)).toEqual(full);
  });

  it('with iomem-exact-ranges: exact-match denies, no merging, -ENOSPC when full', () => {
    const m = machine('iomem-exact-ranges');
    const b = m.sabs.bars[0]!.base_mfn;
    expect(domctlIomemPermission(m, 0, 1, b, 4, true)).toBe(0);
    expect(domctlIomemPermission(m, 0, 1, b + 4, 4, true)).toBe(0);
    expect(iomemPermitted(m, 1, b + 2, 4)).toBe(false);
    expect(domctlIomemPermission(m, 0, 1, b, 2, false)).toBe(-ENOENT);
    for (let i = 2; i < MAX_IOMEM_RANGES; i++) expect(domctlIomemPermission(m, 0, 1, b, 1, true)).toBe(0);
    expect(domctlIomemPermission(m, 0, 1, b, 1, true)).toBe(-ENOSPC);
  });

  it('with iomem-permission-unchecked-caller: dom0 grants what it does not hold', () => {
    const m = machine('iomem-permission-unchecked-caller');
    const gpu1 = m.sabs.bars[1]!.base_mfn;
    expect(domctlIomemPermission(m, 0, 1, gpu1, 4, true)).toBe(0);
    expect(iomemPermitted(m, 1, gpu1, 4)).toBe(true);
  });
});

function runWorker(job: IomemTestJob): Promise<IomemTestResult> {
  return runTestWorker<IomemTestJob, IomemTestResult>('iomem-worker', job);
}

describe('iomem_caps publish protocol (layout/domains.ts)', () => {
  it('a lock-free reader sees only whole sets while a writer merges and splits', async () => {
    const nd = 2;
    const dom = new SharedArrayBuffer(DomainTable.bytes(nd));
    const done = new SharedArrayBuffer(4);
    // Each step moves entries: a split, more splits, a merge back to one range.
    const sets: IomemRange[][] = [
      [{ s: 100, e: 199 }],
      [{ s: 100, e: 149 }, { s: 160, e: 199 }],
      [{ s: 100, e: 109 }, { s: 120, e: 149 }, { s: 160, e: 169 }, { s: 180, e: 199 }],
      [{ s: 50, e: 59 }, { s: 100, e: 109 }, { s: 120, e: 149 }, { s: 160, e: 169 }, { s: 180, e: 199 }, { s: 300, e: 300 }, { s: 400, e: 401 }, { s: 500, e: 509 }],
      [],
    ];
    new DomainTable(dom, nd).iomemPublish(1, sets[sets.length - 1]!);
    const job = { dom, nd, d: 1, sets, iterations: 200_000, done };
    const [reader, writer] = await Promise.all([runWorker({ ...job, role: 'reader' }), runWorker({ ...job, role: 'writer' })]);
    expect(writer.kind).toBe('done');
    expect(reader.kind === 'done' && reader.reads).toBeGreaterThan(0);
  });
});

// Survivors of the first mutation run (docs/verification.md §7), killed here.
describe('rangeset and iomem edges', () => {
  it('rangesetCanonical: sorted, disjoint, not adjacent, each range s ≤ e', () => {
    expect(rangesetCanonical([])).toBe(true);
    expect(rangesetCanonical([{ s: 0, e: 3 }, { s: 5, e: 9 }])).toBe(true);
    expect(rangesetCanonical([{ s: 3, e: 2 }])).toBe(false);
    expect(rangesetCanonical([{ s: 0, e: 3 }, { s: 4, e: 9 }])).toBe(false); // adjacent: one range
    expect(rangesetCanonical([{ s: 0, e: 5 }, { s: 4, e: 9 }])).toBe(false); // overlapping
    expect(rangesetCanonical([{ s: 5, e: 9 }, { s: 0, e: 3 }])).toBe(false); // unsorted
  });

  it('a range with s > e is a hypervisor bug (ASSERT(s <= e)), named in the message', () => {
    expect(() => rangesetAddRange([], 3, 2)).toThrow(/rangeset_add_range: \[3, 2\]/);
    expect(() => rangesetRemoveRange([], 3, 2)).toThrow(/rangeset_remove_range: \[3, 2\]/);
    expect(() => rangesetContainsRange([], 3, 2)).toThrow(/rangeset_contains_range: \[3, 2\]/);
    expect(rangesetContainsRange([{ s: 2, e: 2 }], 2, 2)).toBe(true);
  });

  it('iomemPermitted refuses what names no range: a fraction, a negative first, no pages', () => {
    const m = testMachine({ bars: [{ name: 'gpu0', owner: 0, nr_pages: 8 }] });
    const b = m.sabs.bars[0]!.base_mfn;
    expect(iomemPermitted(m, 0, b, 8)).toBe(true);
    expect(iomemPermitted(m, 0, b + 7, 1)).toBe(true);
    expect(iomemPermitted(m, 0, b + 0.5, 1)).toBe(false);
    expect(iomemPermitted(m, 0, b, 1.5)).toBe(false);
    expect(iomemPermitted(m, 0, -1, 1)).toBe(false);
    expect(iomemPermitted(m, 0, b, 0)).toBe(false);
    expect(iomemPermitted(m, 0, b, 9)).toBe(false);
  });

  it('with iomem-exact-ranges a deny removes exactly the range named, from the middle of the list too', () => {
    const m = testMachine({ bars: [{ name: 'gpu0', owner: 0, nr_pages: 32 }], bugs: 'iomem-exact-ranges' });
    const b = m.sabs.bars[0]!.base_mfn;
    for (const k of [0, 8, 16]) expect(domctlIomemPermission(m, 0, 1, b + k, 4, true)).toBe(0);
    expect(domctlIomemPermission(m, 0, 1, b + 8, 3, false)).toBe(-ENOENT); // not a range it holds exactly
    expect(domctlIomemPermission(m, 0, 1, b + 9, 4, false)).toBe(-ENOENT);
    expect(domctlIomemPermission(m, 0, 1, b + 8, 4, false)).toBe(0);
    expect(iomemPermitted(m, 1, b + 8, 1)).toBe(false);
    expect(iomemPermitted(m, 1, b, 4)).toBe(true);
    expect(iomemPermitted(m, 1, b + 16, 4)).toBe(true);
    expect(iomemPermitted(m, 1, b + 16, 3)).toBe(true);
    expect(iomemPermitted(m, 1, b + 17, 4)).toBe(false);
    expect(domctlIomemPermission(m, 0, 1, b, 4, false)).toBe(0);
    expect(iomemPermitted(m, 1, b, 1)).toBe(false);
    expect(iomemPermitted(m, 1, b + 16, 4)).toBe(true);
    // The last range of the list, and then none.
    expect(domctlIomemPermission(m, 0, 1, b + 24, 4, true)).toBe(0);
    expect(domctlIomemPermission(m, 0, 1, b + 24, 4, false)).toBe(0);
    expect(iomemPermitted(m, 1, b + 24, 1)).toBe(false);
    expect(iomemPermitted(m, 1, b + 16, 4)).toBe(true);
    expect(domctlIomemPermission(m, 0, 1, b + 16, 4, false)).toBe(0);
    expect(iomemPermitted(m, 1, b + 16, 1)).toBe(false);
  });
});
