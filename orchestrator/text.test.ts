import { describe, expect, it } from 'vitest';
import { listCut, plural } from './text.js';

describe('text', () => {
  it('counts take the plural they need', () => {
    expect(plural(0, 'check')).toBe('0 checks');
    expect(plural(1, 'check')).toBe('1 check');
    expect(plural(2, 'run')).toBe('2 runs');
    expect(plural(1, 'vCPU')).toBe('1 vCPU');
    expect(plural(3, 'entry', 'entries')).toBe('3 entries');
  });
  it('a cut list says how many were left out', () => {
    expect(listCut(['a', 'b'], 3)).toBe('a, b');
    expect(listCut(['a', 'b', 'c'], 3)).toBe('a, b, c');
    expect(listCut(['a', 'b', 'c', 'd', 'e'], 2)).toBe('a, b … and 3 more');
  });
});
