/**
 * STYLE §1: the ABI is the only door. Guest code (domains/) imports nothing
 * from hypervisor/ but hypervisor/public/; hypervisor/public/ imports only
 * itself; only transport/ imports ioredis; and value imports have no cycles.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';

const DIRS = ['hypervisor', 'domains', 'transport', 'orchestrator'];

function sources(dir: string): string[] {
  const abs = join(PROJECT_ROOT, dir);
  let out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(abs);
  } catch {
    return [];
  }
  for (const n of names) {
    const p = join(abs, n);
    if (statSync(p).isDirectory()) out = out.concat(sources(join(dir, n)));
    else if (n.endsWith('.ts') && !n.endsWith('.test.ts')) out.push(join(dir, n));
  }
  return out;
}

interface Imp {
  spec: string;
  typeOnly: boolean;
}
function importsOf(file: string): Imp[] {
  const text = readFileSync(join(PROJECT_ROOT, file), 'utf8');
  const out: Imp[] = [];
  const re = /^\s*(import|export)\s+(type\s+)?[^'";]*?from\s+'([^']+)'/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) out.push({ spec: m[3]!, typeOnly: m[2] !== undefined });
  const dyn = /import\('([^']+)'\)/g;
  for (let m = dyn.exec(text); m !== null; m = dyn.exec(text)) out.push({ spec: m[1]!, typeOnly: true });
  return out;
}
function resolveLocal(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  return relative(PROJECT_ROOT, resolve(PROJECT_ROOT, dirname(from), spec)).replace(/\.js$/, '.ts');
}

const files = DIRS.flatMap(sources);

describe('import rules', () => {
  it('finds the sources', () => {
    expect(files.length).toBeGreaterThan(20);
  });

  it('domains/ reaches the hypervisor only through hypervisor/public/', () => {
    const bad: string[] = [];
    for (const f of files.filter((x) => x.startsWith('domains/'))) {
      for (const i of importsOf(f)) {
        const t = resolveLocal(f, i.spec);
        if (t !== undefined && t.startsWith('hypervisor/') && !t.startsWith('hypervisor/public/')) bad.push(`${f} → ${t}`);
        if (t !== undefined && (t.startsWith('orchestrator/') || t.startsWith('transport/'))) bad.push(`${f} → ${t}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('hypervisor/public/ depends on nothing but itself', () => {
    const bad: string[] = [];
    for (const f of files.filter((x) => x.startsWith('hypervisor/public/'))) {
      for (const i of importsOf(f)) {
        const t = resolveLocal(f, i.spec);
        if (t === undefined || !t.startsWith('hypervisor/public/')) bad.push(`${f} → ${i.spec}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('only transport/ imports ioredis', () => {
    const bad = files.filter((f) => !f.startsWith('transport/') && importsOf(f).some((i) => i.spec === 'ioredis'));
    expect(bad).toEqual([]);
  });

  it('value imports have no cycles', () => {
    const graph = new Map<string, string[]>();
    for (const f of files) {
      graph.set(
        f,
        importsOf(f)
          .filter((i) => !i.typeOnly)
          .flatMap((i) => {
            const t = resolveLocal(f, i.spec);
            return t === undefined ? [] : [t];
          }),
      );
    }
    const state = new Map<string, 1 | 2>();
    const cycles: string[] = [];
    const visit = (n: string, path: string[]): void => {
      if (state.get(n) === 2) return;
      if (state.get(n) === 1) {
        cycles.push([...path.slice(path.indexOf(n)), n].join(' → '));
        return;
      }
      state.set(n, 1);
      for (const m of graph.get(n) ?? []) visit(m, [...path, n]);
      state.set(n, 2);
    };
    for (const f of graph.keys()) visit(f, []);
    expect(cycles).toEqual([]);
  });
});
