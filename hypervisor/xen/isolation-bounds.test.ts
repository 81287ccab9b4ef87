/**
 * isolation.ts's two questions at their bounds: a reach is a violation only
 * when the oracle says no (false), not when it could not judge (undefined),
 * and a frame is judged allocated only in PS.INUSE; the texts name the
 * domain, the access, the frame and why.
 */
import { describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { PS } from '../layout/frametable.js';
import { REACH } from '../layout/reach.js';
import { entryMfn } from '../layout/p2m.js';
import { checkAllocated, checkReach } from './isolation.js';
import { p2mGet } from './p2m.js';

const texts = (m: ReturnType<typeof testMachine>, inv: string): string[] => m.log.records().filter((r) => r.invariant === inv).map((r) => r.text);

describe('isolation oracle questions', () => {
  it('checkReach: the owner may, another domain may not, an overflowed frame is not judged', () => {
    const m = testMachine();
    const mfn = entryMfn(p2mGet(m, 1, 3));
    checkReach(m, 1, mfn, 'read gfn 3, reaching');
    expect(m.log.records()).toEqual([]);
    checkReach(m, 2, mfn, 'wrote gfn 9, reaching');
    expect(texts(m, 'isolation')).toEqual([`d2 wrote gfn 9, reaching mfn ${mfn}, which no right of d's explains (rights: d1 owner×1)`]);
    // Six rights more than the owner's: the last finds no slot, and may is undefined — no verdict.
    const others = [3, 4, 5, 6, 7, 8];
    for (const d of others) m.reach.grant(mfn, d, REACH.MAP);
    expect(m.reach.may(mfn, 2)).toBe(undefined);
    checkReach(m, 2, mfn, 'read');
    expect(m.log.records().length).toBe(1);
    for (const d of others) m.reach.release(mfn, d, REACH.MAP);
    expect(m.reach.may(mfn, 2)).toBe(false);
  });

  it('checkAllocated: INUSE passes; free and being freed are told apart', () => {
    const m = testMachine();
    const mfn = entryMfn(p2mGet(m, 1, 3));
    checkAllocated(m, 1, mfn, 'read gfn 3, reaching');
    expect(m.log.records()).toEqual([]);
    m.ft.setState(mfn, PS.FREEING);
    checkAllocated(m, 1, mfn, 'read gfn 3, reaching');
    m.ft.setState(mfn, PS.FREE);
    checkAllocated(m, 2, mfn, 'DMA wrote gfn 4, reaching');
    m.ft.setState(mfn, PS.INUSE);
    expect(texts(m, 'reachable_not_free')).toEqual([
      `d1 read gfn 3, reaching mfn ${mfn}, which is being freed (its count reached 0)`,
      `d2 DMA wrote gfn 4, reaching mfn ${mfn}, which is free (on the heap)`,
    ]);
  });
});
