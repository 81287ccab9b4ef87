/**
 * JUnit XML for `xgsim scenario --junit <file>`: one testsuite, one testcase
 * per scenario file, in the shape CI systems read (Jenkins, GitLab, GitHub
 * test reporters): FAILURE → <failure>, ERROR → <error>, SKIP → <skipped>.
 * The classname is the scenario's category, its file name's first word
 * (`fidelity-grant-…` → `fidelity`), so reports group by category.
 */
import { basename } from 'node:path';
import type { ScenarioResult } from './run.js';

/** XML 1.0 text: the five entities escaped, and characters XML cannot carry (C0 controls but tab/LF/CR) shown as `\xNN`. */
export function xmlText(s: string): string {
  return s
    // eslint-disable-next-line no-control-regex -- removing what XML 1.0 forbids is the point
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function category(file: string): string {
  const b = basename(file).replace(/\.ya?ml$/, '');
  return b.split('-')[0] ?? b;
}

function testcase(r: ScenarioResult): string {
  const attrs = `classname="${xmlText(category(r.file))}" name="${xmlText(r.name)}" file="${xmlText(r.file)}" time="${((r.time_ms ?? 0) / 1000).toFixed(3)}"`;
  const detail = [r.step !== undefined ? `step at line ${r.step}` : '', r.expected !== undefined ? `expected ${r.expected}` : '', r.got !== undefined ? `got ${r.got}` : '']
    .filter((x) => x !== '')
    .join('; ');
  switch (r.verdict) {
    case 'SUCCESS':
      return `    <testcase ${attrs}/>`;
    case 'SKIP':
      return `    <testcase ${attrs}>\n      <skipped message="${xmlText(r.reason)}"/>\n    </testcase>`;
    case 'FAILURE':
      return `    <testcase ${attrs}>\n      <failure message="${xmlText(r.reason)}" type="FAILURE">${xmlText(detail)}</failure>\n    </testcase>`;
    case 'ERROR':
      return `    <testcase ${attrs}>\n      <error message="${xmlText(r.reason)}" type="ERROR">${xmlText(detail)}</error>\n    </testcase>`;
  }
}

export function junitXml(results: readonly ScenarioResult[]): string {
  const n = (v: string): number => results.filter((r) => r.verdict === v).length;
  const time = results.reduce((t, r) => t + (r.time_ms ?? 0), 0) / 1000;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="xgsim scenario" tests="${results.length}" failures="${n('FAILURE')}" errors="${n('ERROR')}" skipped="${n('SKIP')}" time="${time.toFixed(3)}">`,
    `  <testsuite name="xgsim scenario" tests="${results.length}" failures="${n('FAILURE')}" errors="${n('ERROR')}" skipped="${n('SKIP')}" time="${time.toFixed(3)}">`,
    ...results.map(testcase),
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
