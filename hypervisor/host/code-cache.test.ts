import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadCjs } from './code-cache.js';
import { distModule } from './worker-path.js';

const bundle = fileURLToPath(distModule('bundle/vcpu-worker', '.cjs'));

describe('the vCPU bundle’s code cache', () => {
  it('is accepted by this Node: the build made it from the bundle as it is', () => {
    const r = loadCjs(bundle, readFileSync(`${bundle}.cache`));
    expect(r.rejected).toBe(false);
    expect(typeof (r.exports as { default: unknown }).default).toBe('function');
  });

  it('a cache V8 does not accept is ignored, and the bundle still loads', () => {
    const bad = Buffer.from(readFileSync(`${bundle}.cache`));
    bad.fill(0x5a, 0, 64);
    const r = loadCjs(bundle, bad);
    expect(r.rejected).toBe(true);
    expect(typeof (r.exports as { default: unknown }).default).toBe('function');
  });
});
