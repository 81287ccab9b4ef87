/**
 * The folder map of docs/architecture.md, enforced. The ABI is the only
 * door: guest code (domains/) imports nothing from hypervisor/ but
 * hypervisor/public/, which imports only itself. Each level of hypervisor/
 * imports only the levels below it: public/ ← layout/ ← xen/ ← a design
 * (designs/<name>/) ← checker/ ← host/. The Xen core knows a design only
 * through xen/design.ts; a design knows no other design and nothing of the
 * host. Only transport/ imports ioredis. No cycles, type imports included.
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
  const re = /^\s*(import|export)\s+(type\s+)?(?:[^'";]*?from\s+)?'([^']+)'/gm;
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

  /** Imports of files under `from` that reach outside `allowed` (folders, with their trailing slash). */
  const reachingOutside = (from: string, allowed: (f: string) => string[]): string[] => {
    const bad: string[] = [];
    for (const f of files.filter((x) => x.startsWith(from))) {
      for (const i of importsOf(f)) {
        const t = resolveLocal(f, i.spec);
        if (t !== undefined && !allowed(f).some((a) => t.startsWith(a))) bad.push(`${f} → ${t}`);
      }
    }
    return bad;
  };

  it('finds every level of hypervisor/ (the rules below would pass vacuously without them)', () => {
    for (const level of ['hypervisor/public/', 'hypervisor/layout/', 'hypervisor/xen/', 'hypervisor/designs/primitives/', 'hypervisor/checker/', 'hypervisor/host/']) {
      expect(files.some((f) => f.startsWith(level)), level).toBe(true);
    }
  });

  it('hypervisor/layout/ imports only itself and public/', () => {
    expect(reachingOutside('hypervisor/layout/', () => ['hypervisor/layout/', 'hypervisor/public/'])).toEqual([]);
  });

  it('the Xen core (hypervisor/xen/) imports nothing from the host, a design, the checker or outside hypervisor/', () => {
    expect(reachingOutside('hypervisor/xen/', () => ['hypervisor/xen/', 'hypervisor/layout/', 'hypervisor/public/'])).toEqual([]);
  });

  it('a design imports only the Xen core, layout/ and public/, never another design', () => {
    const own = (f: string): string => f.split('/').slice(0, 3).join('/') + '/';
    const inDesign = (f: string): string[] => (f === 'hypervisor/designs/index.ts' ? ['hypervisor/designs/', 'hypervisor/xen/design.ts'] : [own(f), 'hypervisor/xen/', 'hypervisor/layout/', 'hypervisor/public/']);
    expect(reachingOutside('hypervisor/designs/', inDesign)).toEqual([]);
  });

  it('the checker reads the machine, and a design only through the Xen core', () => {
    expect(reachingOutside('hypervisor/checker/', () => ['hypervisor/checker/', 'hypervisor/xen/', 'hypervisor/layout/', 'hypervisor/public/'])).toEqual([]);
  });

  it('nothing under hypervisor/ or domains/ imports the orchestrator', () => {
    const bad = files.filter((f) => !f.startsWith('orchestrator/')).flatMap((f) => importsOf(f).map((i) => [f, resolveLocal(f, i.spec)] as const)).filter(([, t]) => t?.startsWith('orchestrator/') === true);
    expect(bad).toEqual([]);
  });

  it('only transport/ imports ioredis', () => {
    const bad = files.filter((f) => !f.startsWith('transport/') && importsOf(f).some((i) => i.spec === 'ioredis'));
    expect(bad).toEqual([]);
  });

  it('imports have no cycles, type imports included', () => {
    const graph = new Map<string, string[]>();
    for (const f of files) {
      graph.set(
        f,
        importsOf(f).flatMap((i) => {
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
