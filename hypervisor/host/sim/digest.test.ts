/**
 * The end-of-run state digest skips all-zero chunks by a native compare;
 * it must fold exactly the words the word-by-word loop it replaced folded
 * (a run's hash is its identity: replay files and campaign results name it).
 */
import { describe, expect, it } from 'vitest';
import { digestWords } from './run.js';
import { FNV_OFFSET, fnv, SimRng } from './sim-sched.js';

/** The loop stateDigest ran before: every `stride`-th word, non-zero ones folded as (index, word). */
function naive(h0: number, sab: SharedArrayBuffer, stride: number): number {
  let h = h0;
  const w = new Int32Array(sab);
  for (let i = 0; i < w.length; i += stride) if (w[i] !== 0) h = fnv(fnv(h, i), w[i]!);
  return h;
}

describe('stateDigest', () => {
  it('folds the same words as the word-by-word loop: sparse, dense, empty, and lengths off the chunk size', () => {
    const seed = 0x5eed18;
    console.log(`digest test seed ${seed}`);
    const rng = new SimRng(seed);
    for (const words of [0, 1, 61, 1023, 1024, 1025, 5000, 70_001]) {
      for (const density of [0, 0.0005, 0.05, 1]) {
        const sab = new SharedArrayBuffer(words * 4);
        const w = new Int32Array(sab);
        for (let i = 0; i < words; i++) if (rng.chance(density)) w[i] = rng.u32() | 1;
        // A word at each end and just past a chunk boundary (4096 bytes: word 1024).
        if (words > 0) w[words - 1] = 7;
        if (words > 1024) w[1024] = -3;
        for (const stride of [1, 61]) expect(digestWords(FNV_OFFSET, sab, stride), `${words} words, density ${density}, stride ${stride}`).toBe(naive(FNV_OFFSET, sab, stride));
      }
    }
  });

  it('tells states apart that differ in one word (a chunk that is not all zero is read)', () => {
    const a = new SharedArrayBuffer(64 * 1024);
    const b = new SharedArrayBuffer(64 * 1024);
    new Int32Array(b)[61 * 200] = 1;
    expect(digestWords(FNV_OFFSET, a, 61)).not.toBe(digestWords(FNV_OFFSET, b, 61));
    expect(digestWords(FNV_OFFSET, a, 61)).toBe(FNV_OFFSET);
  });
});
