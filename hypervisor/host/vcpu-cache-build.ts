/**
 * Build step (`npm run bundle:vcpu`): write the vCPU worker bundle's V8
 * code cache beside it, made by the Node that will run it.
 */
import { fileURLToPath } from 'node:url';
import { writeCodeCache } from './code-cache.js';
import { distModule } from './worker-path.js';

const bundle = fileURLToPath(distModule('bundle/vcpu-worker', '.cjs'));
writeCodeCache(bundle, `${bundle}.cache`);
