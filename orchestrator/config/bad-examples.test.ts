/**
 * Every file under examples/bad/ must be rejected with the error its first
 * line announces: `# expect: <substring of the error line>, line L, col C`.
 * Files named scenario-*.yaml are scenarios, chaos-*.yaml chaos plans,
 * campaign-*.yaml campaign plans, the others topologies.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isInputError } from './errors.js';
import { loadChaosPlan } from './chaos-plan.js';
import { loadCampaignPlan } from './campaign.js';
import { loadScenario } from './scenario.js';
import { loadTopology } from './topology.js';

const dir = fileURLToPath(new URL('../../examples/bad/', import.meta.url));
const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
const EXPECT_RE = /^# expect: (.+), line (\d+), col (\d+)\s*$/;

describe('examples/bad', () => {
  it('has at least 30 malformed inputs of every kind together, and some of each', () => {
    expect(files.length).toBeGreaterThanOrEqual(30);
    expect(files.some((f) => f.startsWith('scenario-'))).toBe(true);
    expect(files.some((f) => f.startsWith('topology-'))).toBe(true);
    expect(files.some((f) => f.startsWith('campaign-'))).toBe(true);
    expect(files.some((f) => f.startsWith('chaos-'))).toBe(true);
  });

  it.each(files)('%s', (name) => {
    const file = relative(process.cwd(), `${dir}${name}`);
    const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? '';
    const m = EXPECT_RE.exec(first);
    if (m === null) throw new Error(`${name}: first line must be "# expect: <substring>, line L, col C"`);
    const [, substring = '', line = '', col = ''] = m;
    let got: string | undefined;
    try {
      (name.startsWith('scenario-') ? loadScenario : name.startsWith('chaos-') ? loadChaosPlan : name.startsWith('campaign-') ? loadCampaignPlan : loadTopology)(file);
    } catch (e) {
      if (!isInputError(e)) throw e;
      got = e.toString();
    }
    expect(got, 'the file was accepted').toBeDefined();
    expect(got).not.toContain('\n');
    expect(got).toContain(`${file}:${line}:${col}: `);
    expect(got).toContain(substring);
  });
});
