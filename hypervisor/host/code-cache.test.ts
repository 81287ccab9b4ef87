import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadCjs } from './code-cache.js';
import { distModule } from './worker-path.js';

const bundle = fileURLToPath(distModule('bundle/vcpu-worker', '.cjs'));

describe('the vCPU bundle’s code cache', () => {
  it('is accepted by this Node: the build made it from the bundle as it is', () => {
    // In a plain node, as xgsim runs: V8 checks its flags against the cache's,
    // and a test worker's flags need not be xgsim's.
    const probe = `const { loadCjs } = await import(${JSON.stringify(distModule('hypervisor/host/code-cache', '.js'))}); const fs = await import('node:fs');
const r = loadCjs(${JSON.stringify(bundle)}, fs.readFileSync(${JSON.stringify(`${bundle}.cache`)}));
console.log(JSON.stringify({ rejected: r.rejected, exports: typeof r.exports.default }));`;
    const p = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
    expect(p.status, p.stderr).toBe(0);
    expect(JSON.parse(p.stdout)).toEqual({ rejected: false, exports: 'function' });
  });

  it('a cache V8 does not accept is ignored, and the bundle still loads', () => {
    const bad = Buffer.from(readFileSync(`${bundle}.cache`));
    bad.fill(0x5a, 0, 64);
    const r = loadCjs(bundle, bad);
    expect(r.rejected).toBe(true);
    expect(typeof (r.exports as { default: unknown }).default).toBe('function');
  });
});
