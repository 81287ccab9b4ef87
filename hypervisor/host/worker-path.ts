/**
 * Worker threads always load compiled JavaScript from dist/, whether the
 * caller runs from dist/ (the CLI) or from TypeScript sources (vitest).
 */
import { existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const inDist = here.split(/[\\/]/).includes('dist');
const root = inDist ? join(here, '..', '..') : join(here, '..');

/** Absolute file URL of a compiled module, given its path from the project root without extension. */
export function distModule(pathFromRoot: string, ext = '.js'): string {
  const file = join(root, 'dist', `${pathFromRoot}${ext}`);
  if (!existsSync(file)) {
    throw new Error(`compiled module ${relative(root, file)} is missing — run \`npm run build\``);
  }
  return pathToFileURL(file).href;
}

export const PROJECT_ROOT = root;
