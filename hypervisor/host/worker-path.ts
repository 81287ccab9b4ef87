/**
 * Worker threads always load compiled JavaScript from dist/, whether the
 * caller runs from dist/ (the CLI) or from TypeScript sources (vitest).
 */
import { existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The project root: the nearest folder above this file with a package.json (dist/ has none). */
function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}
const root = findRoot(here);

/** Absolute file URL of a compiled module, given its path from the project root without extension. */
export function distModule(pathFromRoot: string, ext = '.js'): string {
  const file = join(root, 'dist', `${pathFromRoot}${ext}`);
  if (!existsSync(file)) {
    throw new Error(`compiled module ${relative(root, file)} is missing — run \`npm run build\``);
  }
  return pathToFileURL(file).href;
}

export const PROJECT_ROOT = root;
