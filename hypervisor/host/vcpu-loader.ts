/**
 * What a vCPU thread loads first: the vCPU worker bundle, compiled with the
 * code cache the build wrote beside it (code-cache.ts), its exports as this
 * module's. XGSIM_CODE_CACHE=0 compiles the bundle as without it.
 *
 * Only ever run bundled, as dist/bundle/vcpu-loader.cjs beside the worker
 * bundle: `__dirname` is that folder. (Asking Piscina for its workerData
 * instead would load all of Piscina's pool into every thread.)
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCjs } from './code-cache.js';

const bundle = join(__dirname, 'vcpu-worker.cjs');
const cacheFile = `${bundle}.cache`;
const cache = process.env['XGSIM_CODE_CACHE'] !== '0' && existsSync(cacheFile) ? readFileSync(cacheFile) : undefined;

export default (loadCjs(bundle, cache).exports as { default: unknown }).default;
