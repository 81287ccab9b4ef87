import { describe, expect, it } from 'vitest';
import { fmtUs, listCut, plural } from './text.js';

describe('text', () => {
  it('counts take the plural they need', () => {
    expect(plural(0, 'check')).toBe('0 checks');
    expect(plural(1, 'check')).toBe('1 check');
    expect(plural(2, 'run')).toBe('2 runs');
    expect(plural(1, 'vCPU')).toBe('1 vCPU');
    expect(plural(3, 'entry', 'entries')).toBe('3 entries');
  });
  it('latencies in the unit that fits', () => {
    expect(fmtUs(5.25)).toBe('5.3 µs');
    expect(fmtUs(9999)).toBe('9999 µs');
    expect(fmtUs(15743)).toBe('15.7 ms');
    expect(fmtUs(460799)).toBe('461 ms');
    expect(fmtUs(12_345_678)).toBe('12.3 s');
  });
  it('a cut list says how many were left out', () => {
    expect(listCut(['a', 'b'], 3)).toBe('a, b');
    expect(listCut(['a', 'b', 'c'], 3)).toBe('a, b, c');
    expect(listCut(['a', 'b', 'c', 'd', 'e'], 2)).toBe('a, b … and 3 more');
  });
});
