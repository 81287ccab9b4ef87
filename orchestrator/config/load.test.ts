import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InputError, isInputError } from './errors.js';
import { int, list, obj, size } from './fields.js';
import { formatPath, parseYaml, positionOf, readYamlFile, validate } from './load.js';
import { closest, editDistance } from './suggest.js';

function thrown(f: () => unknown): InputError {
  try {
    f();
  } catch (e) {
    if (isInputError(e)) return e;
    throw e;
  }
  throw new Error('expected an InputError');
}

describe('InputError', () => {
  it('prints file:line:col: key: message', () => {
    const e = new InputError('must be at least 1, got 0', { file: 'a.yaml', line: 3, col: 12, key: 'domains[0].vcpus' });
    expect(e.toString()).toBe('a.yaml:3:12: domains[0].vcpus: must be at least 1, got 0');
    expect(e.message).toBe('must be at least 1, got 0');
  });
  it('prints file: message without a position', () => {
    expect(new InputError('cannot read: no such file', { file: 'x.yaml' }).toString()).toBe('x.yaml: cannot read: no such file');
    expect(new InputError('m', { file: 'x.yaml', key: '' }).toString()).toBe('x.yaml: m');
  });
});

describe('suggestions', () => {
  it('measures edits with transpositions', () => {
    expect(editDistance('memroy', 'memory')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
  });
  it('finds close words and prefixes, not unrelated ones', () => {
    const keys = ['name', 'role', 'backend', 'memory', 'frames', 'max_memory', 'vcpus', 'devices', 'workload'];
    expect(closest('memroy', keys)).toBe('memory');
    expect(closest('vcpu', keys)).toBe('vcpus');
    expect(closest('VCPUS', keys)).toBe('vcpus');
    expect(closest('work', keys)).toBe('workload');
    expect(closest('backends', keys)).toBe('backend');
    expect(closest('colour', keys)).toBeUndefined();
    expect(closest('x', ['to', 'by'])).toBeUndefined();
  });
});

describe('parseYaml', () => {
  it('keeps hex ints exact and integers as bigint', () => {
    const src = parseYaml('a: 0x10\nb: 0xffffffffffffffff\nc: 1.5\n', 't.yaml');
    expect(src.data).toEqual({ a: 16n, b: 0xffffffffffffffffn, c: 1.5 });
  });
  it('reports syntax errors with a position', () => {
    const e = thrown(() => parseYaml('a: 1\nb: [1, 2\n', 't.yaml'));
    expect(e.toString()).toMatch(/^t\.yaml:\d+:\d+: YAML syntax error: /);
    expect(e.toString()).not.toContain('\n');
  });
  it('rejects duplicate keys', () => {
    expect(thrown(() => parseYaml('a: 1\na: 2\n', 't.yaml')).toString()).toBe('t.yaml:2:1: YAML syntax error: Map keys must be unique');
  });
  it('names unreadable files', () => {
    expect(thrown(() => readYamlFile('/nonexistent/x.yaml')).toString()).toBe('/nonexistent/x.yaml: cannot read: no such file');
  });
});

describe('positions', () => {
  const src = parseYaml('top:\n  list:\n    - { a: 1, b: two }\n    - c: 3\n  empty:\n', 'p.yaml');
  it('finds values, keys and nearest ancestors', () => {
    expect(positionOf(src, ['top', 'list', 0, 'b'])).toEqual({ line: 3, col: 18 });
    expect(positionOf(src, ['top', 'list', 1, 'c'], { key: true })).toEqual({ line: 4, col: 7 });
    expect(positionOf(src, ['top', 'list', 1, 'missing'])).toEqual({ line: 4, col: 7 });
    expect(positionOf(src, ['top', 'empty'])).toEqual({ line: 5, col: 3 });
  });
  it('formats key paths', () => {
    expect(formatPath(['domains', 1, 'memory'])).toBe('domains[1].memory');
    expect(formatPath(['threads', 0, 1, 'read'])).toBe('threads[0][1].read');
    expect(formatPath([])).toBe('');
  });
  it('resolves aliases', () => {
    const s = parseYaml('base: &b { x: 1, y: oops }\nuse: *b\n', 'a.yaml');
    expect(positionOf(s, ['use', 'y'])).toEqual({ line: 1, col: 21 });
  });
});

describe('validate', () => {
  const schema = obj({ items: list(obj({ n: int({ min: 1 }), s: size().optional() })), other: int().optional() });
  it('returns typed values', () => {
    const src = parseYaml('items:\n  - { n: 3, s: 4KiB }\n', 'v.yaml');
    const out: { items: { n: number; s?: number | undefined }[] } = validate(src, schema);
    expect(out.items).toEqual([{ n: 3, s: 4096 }]);
  });
  it('reports the first issue in document order', () => {
    const src = parseYaml('items:\n  - { n: 3, s: 4KB }\n  - { n: 0 }\nother: x\n', 'v.yaml');
    expect(thrown(() => validate(src, schema)).toString()).toBe(
      'v.yaml:2:16: items[0].s: ambiguous size unit `KB` in `4KB`: write KiB (binary) or a byte count',
    );
  });
  it('points unknown keys at the key, with a suggestion', () => {
    const src = parseYaml('items: []\nothers: 1\n', 'v.yaml');
    expect(thrown(() => validate(src, schema)).toString()).toBe('v.yaml:2:1: others: unknown key `others`; did you mean `other`?');
  });
  it('lists the keys when nothing is close', () => {
    const src = parseYaml('items: []\nzzz: 1\n', 'v.yaml');
    expect(thrown(() => validate(src, schema)).toString()).toBe('v.yaml:2:1: zzz: unknown key `zzz` (expected one of: items, other)');
  });
  it('points missing keys at the enclosing mapping', () => {
    const src = parseYaml('other: 1\n', 'v.yaml');
    expect(thrown(() => validate(src, schema)).toString()).toBe('v.yaml:1:1: items: required key is missing');
  });
  it('validates a sub-value at its path', () => {
    const src = parseYaml('outer:\n  inner: { n: -1 }\n', 'v.yaml');
    const data = src.data as { outer: { inner: unknown } };
    const e = thrown(() => validate(src, obj({ n: int() }), { value: data.outer.inner, path: ['outer', 'inner'] }));
    expect(e.toString()).toBe('v.yaml:2:15: outer.inner.n: must be at least 0, got -1');
  });
  it('handles an empty document', () => {
    const src = parseYaml('# nothing\n', 'e.yaml');
    expect(thrown(() => validate(src, schema)).toString()).toBe('e.yaml: expected a mapping, got an empty value');
  });
  it('accepts plain zod schemas too', () => {
    const src = parseYaml('a: 1\n', 'z.yaml');
    expect(thrown(() => validate(src, z.object({ a: z.string() }))).toString()).toMatch(/^z\.yaml:1:4: a: /);
  });
});
