/**
 * The XSA-class regression suite (docs/xsa.md): every scenario under
 * examples/xsa/ is SUCCESS with the bugs off, and FAILURE — for the reason
 * its header announces — with the bug its `buggify:` field names switched
 * on. Both runs go through `scenarioCommand`, the code path of
 * `xgsim scenario` (and `--own-bug`); one run also goes through the CLI.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUG_NAMES, parseBuggify, NO_BUGS } from '../hypervisor/xen/buggify.js';
import { PROJECT_ROOT } from '../hypervisor/host/worker-path.js';
import { loadScenario } from '../orchestrator/config/scenario.js';
import { scenarioCommand } from '../orchestrator/scenario/command.js';

const DIR = join('examples', 'xsa');

/** Per file: its bug, and what must fire with the bug on (a pattern of the FAILURE's reason). */
const SUITE: Record<string, { bug: string; fires: RegExp }> = {
  'xsa-217-grant-unmap-tlb-flush': { bug: 'skip-tlb-flush-on-unmap', fires: /^invariant no_use_after_revoke: .* through a TLB entry whose removal completed/ },
  'xsa-228-maptrack-handle-twice': { bug: 'maptrack-racy-pop', fires: /check invariants: grant_flags: d1 ref 2: 1 pins but 0 maptrack handles/ },
  'xsa-287-steal-unlocked-transfer': { bug: 'steal-unlocked-transfer', fires: /foreign_map expected EINVAL, got OK/ },
  'xsa-387-nested-map-outlives-revoke': { bug: 'revoke-skip-nested', fires: /read expected 0xffffffff, got ok 0x5ec7e7/ },
  'xsa-380-grant-copy-two-grant-locks': { bug: 'gnttab-copy-double-lock', fires: /^invariant lock_order: nest_never grant: .*grant\.copy\.double_gt_lock/ },
  'xsa-411-p2m-lock-inversion': { bug: 'foreign-map-p2m-lock-inversion', fires: /^invariant lock_order: nest_order p2m: key 0 .* while holding key 1/ },
  'xsa-262-device-model-retry-loop': { bug: 'ioreq-retry-unbounded', fires: /read: fatal hypervisor assertion: watchdog: .* unbounded loop/ },
  'xsa-155-grant-entry-double-fetch': { bug: 'grant-double-fetch', fires: /check invariants: refcounts: mfn \d+: count 2, references that exist 1/ },
};

const files = readdirSync(join(PROJECT_ROOT, DIR))
  .filter((f) => f.endsWith('.yaml'))
  .sort();

describe('XSA-class suite (examples/xsa/)', () => {
  it('has one scenario per class, each naming a known bug of its own in `buggify:`', () => {
    expect(files.map((f) => f.replace(/\.yaml$/, ''))).toEqual(Object.keys(SUITE).sort());
    for (const f of files) {
      const sc = loadScenario(join(DIR, f));
      const want = SUITE[f.replace(/\.yaml$/, '')]!;
      expect(sc.buggify, f).toBe(want.bug);
      expect(BUG_NAMES, f).toContain(want.bug);
    }
    expect(new Set(Object.values(SUITE).map((s) => s.bug)).size).toBe(files.length);
  });

  it('every scenario is SUCCESS with the bugs off', async () => {
    const { results, exitCode } = await scenarioCommand(files.map((f) => join(DIR, f)), { buggify: NO_BUGS, quiet: true });
    expect(results.map((r) => `${r.name}: ${r.verdict} — ${r.reason}`).filter((l) => !l.includes(': SUCCESS —'))).toEqual([]);
    expect(exitCode).toBe(0);
  });

  for (const [name, { bug, fires }] of Object.entries(SUITE)) {
    it(`${name}: FAILURE with XGSIM_BUGGIFY=${bug}, for the reason the bug predicts`, async () => {
      const file = join(DIR, `${name}.yaml`);
      // As `XGSIM_BUGGIFY=<bug> xgsim scenario <file>` does it…
      const env = await scenarioCommand([file], { buggify: parseBuggify(bug), quiet: true });
      // …and as `xgsim scenario <file> --own-bug` does.
      const own = await scenarioCommand([file], { buggify: NO_BUGS, quiet: true, ownBug: true });
      for (const { results, exitCode } of [env, own]) {
        const r = results[0]!;
        expect(r.verdict, r.reason).toBe('FAILURE');
        expect(r.reason).toMatch(fires);
        expect(exitCode).toBe(5);
      }
    });
  }

  it('the CLI: `xgsim scenario examples/xsa/*.yaml --own-bug` fails every file (exit 5, FAILURE as xtf-runner says it), and without it passes (exit 0)', () => {
    const bin = join(PROJECT_ROOT, 'bin', 'xgsim.js');
    const run = (extra: string[]): { code: number; out: string } => {
      const r = spawnSync(process.execPath, [bin, 'scenario', ...files.map((f) => join(DIR, f)), ...extra], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 120_000 });
      return { code: r.status ?? -1, out: r.stdout + r.stderr };
    };
    const off = run([]);
    expect(off.code, off.out).toBe(0);
    expect(off.out).toContain(`${files.length} scenarios: ${files.length} SUCCESS, 0 FAILURE, 0 ERROR`);
    const on = run(['--own-bug']);
    expect(on.code, on.out).toBe(5);
    expect(on.out).toContain(`${files.length} scenarios: 0 SUCCESS, ${files.length} FAILURE, 0 ERROR`);
  });
});
