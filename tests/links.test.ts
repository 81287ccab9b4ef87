/**
 * Every relative link and anchor in the repository's Markdown leads
 * somewhere: the file exists, and a `#fragment` names a heading of it (by
 * GitHub's slug rule) or an explicit `<a id>` / `<a name>`. External links
 * (http:, https:, mailto:) are not fetched.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';

const files = execFileSync('git', ['ls-files', '*.md'], { cwd: PROJECT_ROOT, encoding: 'utf8' }).split('\n').filter((f) => f !== '');

/** GitHub's heading anchor: lower case, markup and punctuation dropped, spaces to hyphens, repeats numbered -1, -2… */
export function slug(heading: string): string {
  return heading
    .replace(/`([^`]*)`/g, '$1')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[*_~]/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s-]/gu, '')
    .replace(/\s/g, '-');
}

/** Markdown outside fenced code blocks and inline code. */
function prose(text: string): string {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '');
}

const anchorsCache = new Map<string, Set<string>>();
function anchors(file: string): Set<string> {
  const hit = anchorsCache.get(file);
  if (hit !== undefined) return hit;
  const seen = new Map<string, number>();
  const out = new Set<string>();
  const text = readFileSync(file, 'utf8').replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
  for (const m of text.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  for (const m of text.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) out.add(m[1]!);
  anchorsCache.set(file, out);
  return out;
}

function brokenLinks(file: string): string[] {
  const abs = join(PROJECT_ROOT, file);
  const bad: string[] = [];
  const text = prose(readFileSync(abs, 'utf8'));
  const targets = [...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g), ...text.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((m) => m[1]!);
  for (const t of targets) {
    if (/^(https?|mailto|ftp):/i.test(t)) continue;
    const [path, fragment] = t.split('#', 2) as [string, string | undefined];
    const target = path === '' ? abs : join(dirname(abs), decodeURIComponent(path));
    if (!target.startsWith(PROJECT_ROOT)) {
      bad.push(`${file}: ${t} leaves the repository`);
      continue;
    }
    if (!existsSync(target)) {
      bad.push(`${file}: ${t}: no ${relative(PROJECT_ROOT, target)}`);
      continue;
    }
    if (fragment !== undefined && fragment !== '' && target.endsWith('.md') && statSync(target).isFile() && !anchors(target).has(decodeURIComponent(fragment))) {
      bad.push(`${file}: ${t}: no heading #${fragment} in ${relative(PROJECT_ROOT, target)}`);
    }
  }
  return bad;
}

describe('Markdown links', () => {
  it('the slug rule is GitHub\'s', () => {
    expect(slug('9. Exit codes')).toBe('9-exit-codes');
    expect(slug('`xgsim scenario` — exit codes (XTF)')).toBe('xgsim-scenario--exit-codes-xtf');
    expect(slug('Map / Revoke: 2026-12-07')).toBe('map--revoke-2026-12-07');
  });

  it('a link to a missing file or heading is found (the checker can fail)', () => {
    expect(brokenLinks('tests/fixtures/links-broken.md').sort()).toEqual([
      'tests/fixtures/links-broken.md: ../../README.md#no-such-heading: no heading #no-such-heading in README.md',
      'tests/fixtures/links-broken.md: nowhere.md: no tests/fixtures/nowhere.md',
    ]);
  });

  it.each(files.filter((f) => !f.startsWith('tests/fixtures/')))('%s: every relative link and anchor resolves', (file) => {
    expect(brokenLinks(file)).toEqual([]);
  });
});
