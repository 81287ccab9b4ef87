/**
 * V8's code cache for the vCPU worker bundle: every thread of a large
 * topology compiles the same 400 KB bundle; with a cache the build wrote,
 * a thread deserializes what the build compiled instead (vcpu-loader.ts).
 * V8 checks a cache against its version, flags and the source; one it does
 * not accept is ignored and the file compiled as without it.
 *
 * Compiled as Node's CommonJS loader compiles a file (vm.compileFunction
 * with the module wrapper's parameters), so the code runs exactly as under
 * `require`, line numbers included.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { compileFunction } from 'node:vm';

const PARAMS = ['exports', 'require', 'module', '__filename', '__dirname'];

/** Compile and run a CommonJS file as `require` would, with `cache` as V8's code cache when given. */
export function loadCjs(file: string, cache?: Buffer): { exports: unknown; rejected: boolean } {
  const fn = compileFunction(readFileSync(file, 'utf8'), PARAMS, { filename: file, ...(cache !== undefined ? { cachedData: cache } : {}) });
  const mod = { exports: {} as unknown };
  fn.call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file));
  const rejected = cache !== undefined && (fn as { cachedDataRejected?: boolean }).cachedDataRejected === true;
  return { exports: mod.exports, rejected };
}

/** Write `file`'s code cache to `out` (compiling it only: nothing of it runs). Returns the cache's size in bytes. */
export function writeCodeCache(file: string, out: string): number {
  const fn = compileFunction(readFileSync(file, 'utf8'), PARAMS, { filename: file, produceCachedData: true });
  const data = (fn as { cachedData?: Buffer }).cachedData;
  if (data === undefined) throw new Error(`V8 made no code cache for ${file}`);
  writeFileSync(out, data);
  return data.length;
}
