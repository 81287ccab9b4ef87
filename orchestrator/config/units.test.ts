import { describe, expect, it } from 'vitest';
import { bytesToPages, formatBytes, parseDuration, parseSize, type Parsed } from './units.js';

function value<T>(r: Parsed<T>): T {
  if (!r.ok) throw new Error(`unexpected error: ${r.error}`);
  return r.value;
}
function error<T>(r: Parsed<T>): string {
  if (r.ok) throw new Error(`expected an error, got ${String(r.value)}`);
  return r.error;
}

describe('parseSize', () => {
  it.each([
    [4096, 4096],
    ['4096', 4096],
    [4096n, 4096],
    ['0x1000', 4096],
    ['4KiB', 4096],
    ['4K', 4096],
    ['4k', 4096],
    ['16MiB', 16 * 1024 ** 2],
    ['16M', 16 * 1024 ** 2],
    ['16 MiB', 16 * 1024 ** 2],
    ['1GiB', 1024 ** 3],
    ['1G', 1024 ** 3],
    ['1TiB', 1024 ** 4],
    ['1.5MiB', 1.5 * 1024 ** 2],
    ['0.5K', 512],
    ['512B', 512],
  ] as const)('%s → %d bytes', (input, bytes) => {
    expect(value(parseSize(input))).toBe(bytes);
  });

  it.each([
    [-1, 'must be positive'],
    [0, 'must be positive'],
    ['0', 'must be positive'],
    ['-4MiB', 'must be positive'],
    [-5n, 'must be positive'],
    [1.5, 'not a whole number of bytes'],
    ['1.1K', 'not a whole number of bytes'],
    ['512KB', 'ambiguous size unit `KB`'],
    ['16MB', 'write MiB'],
    ['4XiB', 'unknown size unit `XiB`'],
    ['lots', 'invalid size'],
    ['', 'invalid size'],
    ['0x10K', 'hex number takes no unit'],
    [Number.POSITIVE_INFINITY, 'finite'],
    ['99999999TiB', 'too large'],
  ] as const)('%s is rejected (%s)', (input, message) => {
    expect(error(parseSize(input))).toContain(message);
  });
});

describe('bytesToPages', () => {
  it('divides evenly', () => {
    expect(value(bytesToPages(16 * 1024 ** 2, 4096))).toBe(4096);
    expect(value(bytesToPages(1024, 256))).toBe(4);
  });
  it('rejects fractional pages and non-positive sizes', () => {
    expect(error(bytesToPages(10_000, 4096))).toBe('10000 bytes is not a whole number of 4096-byte pages');
    expect(error(bytesToPages(6 * 1024, 4096))).toContain('6KiB is not a whole number');
    expect(error(bytesToPages(0, 4096))).toContain('positive');
  });
});

describe('formatBytes', () => {
  it('uses the largest exact unit', () => {
    expect(formatBytes(16 * 1024 ** 2)).toBe('16MiB');
    expect(formatBytes(1536)).toBe('1536 bytes');
    expect(formatBytes(2048)).toBe('2KiB');
  });
});

describe('parseDuration', () => {
  it.each([
    [500, 500],
    [500n, 500],
    ['500', 500],
    ['500ms', 500],
    ['10s', 10_000],
    ['1.5s', 1500],
    ['0.1s', 100],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1h 2m 3s 4ms', 3_723_004],
    ['10 s', 10_000],
    [0, 0],
    ['0s', 0],
  ] as const)('%s → %d ms', (input, ms) => {
    expect(value(parseDuration(input))).toBe(ms);
  });

  it.each([
    [-1, 'non-negative'],
    ['-5s', 'must not be negative'],
    [1.5, 'whole number of milliseconds'],
    ['0.5ms', 'whole number of milliseconds'],
    ['10 sec', 'invalid duration'],
    ['soon', 'invalid duration'],
    ['', 'invalid duration'],
    ['5d', 'invalid duration'],
    ['s', 'invalid duration'],
  ] as const)('%s is rejected (%s)', (input, message) => {
    expect(error(parseDuration(input))).toContain(message);
  });
});
