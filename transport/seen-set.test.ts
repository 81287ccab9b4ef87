import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SeenSet } from './seen-set.js';

const SEED = process.env.XGSIM_SEED !== undefined ? Number(process.env.XGSIM_SEED) : Math.floor(Math.random() * 2 ** 31);
console.log(`transport/seen-set.test.ts: fast-check seed ${SEED} (replay with XGSIM_SEED=${SEED})`);

describe('SeenSet', () => {
  it('keys ioreqs by domid:vcpu:seq and reports duplicates', () => {
    const s = new SeenSet(4);
    const k = SeenSet.key(1, 2, 3);
    expect(k).toBe('1:2:3');
    expect(s.has(k)).toBe(false);
    expect(s.add(k)).toBe(true);
    expect(s.add(k)).toBe(false);
    expect(s.has(k)).toBe(true);
    expect(s.size).toBe(1);
  });

  it('forgets the oldest key once full', () => {
    const s = new SeenSet(3);
    for (const k of ['a', 'b', 'c', 'd']) s.add(k);
    expect(s.has('a')).toBe(false);
    expect(['b', 'c', 'd'].every((k) => s.has(k))).toBe(true);
    expect(s.size).toBe(3);
  });

  it('rejects a capacity that is not a positive integer', () => {
    expect(() => new SeenSet(0)).toThrow(/capacity/);
    expect(() => new SeenSet(1.5)).toThrow(/capacity/);
  });

  it('matches a reference model: the last `capacity` distinct keys', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 200 }), (cap, keys) => {
        const s = new SeenSet(cap);
        const model: string[] = []; // insertion order of keys still remembered
        for (const n of keys) {
          const k = String(n);
          const fresh = !model.includes(k);
          expect(s.add(k)).toBe(fresh);
          if (fresh) {
            model.push(k);
            if (model.length > cap) model.shift();
          }
          expect(s.size).toBe(model.length);
          for (let i = 0; i <= 20; i++) expect(s.has(String(i))).toBe(model.includes(String(i)));
        }
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});
