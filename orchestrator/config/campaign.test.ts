import { describe, expect, it } from 'vitest';
import { jobSeed, loadCampaignPlan, materializeJobs, parseCampaignPlan } from './campaign.js';

describe('campaign plans', () => {
  it('loads examples/campaigns/revoke-chaos.yaml: stress-revoke templates and a chaos one', () => {
    const p = loadCampaignPlan('examples/campaigns/revoke-chaos.yaml');
    expect(p.name).toBe('revoke-chaos');
    expect(p.templates.length).toBeGreaterThanOrEqual(3);
    expect(new Set(p.templates.map((t) => t.kind))).toEqual(new Set(['stress-revoke', 'chaos']));
    expect(p.timeout_ms).toBe(60_000);
  });

  it('draws the same jobs from the same seed, each job from its index alone, in proportion to the weights', () => {
    const p = parseCampaignPlan(
      ['name: w', 'jobs:', '  - { name: a, kind: stress-revoke, weight: 3, duration: { min: 300ms, max: 800ms } }', '  - { name: b, kind: stress-revoke, weight: 1, duration: 500ms, timeout: 9s }', '  - { name: off, kind: stress-revoke, weight: 0, duration: 1s }'].join('\n'),
      'w.yaml',
    );
    const jobs = materializeJobs(p, { seed: 42, runs: 2000, buggify: ['no-scrub'] });
    expect(materializeJobs(p, { seed: 42, runs: 10, buggify: ['no-scrub'] })).toEqual(jobs.slice(0, 10));
    expect(materializeJobs(p, { seed: 43, runs: 10, buggify: [] }).map((j) => j.seed)).not.toEqual(jobs.slice(0, 10).map((j) => j.seed));
    expect(jobs.every((j, i) => j.index === i && j.seed === jobSeed(42, i) && j.seed <= 2 ** 31 - 1)).toBe(true);
    expect(new Set(jobs.map((j) => j.seed)).size).toBeGreaterThan(1990);
    const a = jobs.filter((j) => j.template === 'a');
    expect(jobs.some((j) => j.template === 'off')).toBe(false);
    expect(a.length / jobs.length).toBeGreaterThan(0.7);
    expect(a.length / jobs.length).toBeLessThan(0.8);
    const ds = a.map((j) => Number(String(j.flags['duration']).replace('ms', '')));
    expect(Math.min(...ds)).toBeGreaterThanOrEqual(300);
    expect(Math.max(...ds)).toBeLessThanOrEqual(800);
    expect(new Set(ds).size).toBeGreaterThan(100);
    expect(a[0]!.timeout_ms).toBe(60_000 + 3 * ds[0]!);
    const b = jobs.find((j) => j.template === 'b')!;
    expect(b).toMatchObject({ kind: 'stress-revoke', timeout_ms: 9000, buggify: ['no-scrub'], flags: { guests: '4', vcpus: '2', 'backend-vcpus': '2', pages: '8', adversary: 'none', duration: '500ms' } });
  });

  it('resolves topology paths against the campaign file', () => {
    const p = parseCampaignPlan('jobs:\n  - { kind: up, topology: ../two-guests.yaml, transport: ring }\n', 'examples/campaigns/x.yaml');
    expect(p.name).toBe('x');
    const [j] = materializeJobs(p, { seed: 1, runs: 1, buggify: [] });
    expect(j).toMatchObject({ kind: 'up', file: 'examples/two-guests.yaml', flags: { transport: 'ring' } });
  });

  it('sim templates: steps drawn per job, mixed resolved to a named strategy per job, chaos and liveness off and the full mix as flags, timeout 60 s + 1 ms a step', () => {
    const p = parseCampaignPlan(
      ['jobs:', '  - { name: m, kind: sim, steps: { min: 1000, max: 5000 } }', '  - { name: d, kind: sim, topology: ../sim/default.yaml, strategy: pct, chaos: false, liveness: false, full_mix: true, timeout: 9s }'].join('\n'),
      'examples/campaigns/s.yaml',
    );
    expect(p.templates[0]).toMatchObject({ kind: 'sim', steps: { min: 1000, max: 5000 }, strategy: 'mixed', chaos: true, liveness: true, full_mix: false });
    expect(p.templates[0]).not.toHaveProperty('topology');
    const jobs = materializeJobs(p, { seed: 7, runs: 400, buggify: [] });
    expect(materializeJobs(p, { seed: 7, runs: 400, buggify: [] })).toEqual(jobs);
    const m = jobs.filter((j) => j.template === 'm');
    expect(m.every((j) => j.file === undefined && j.flags['chaos'] === undefined && j.flags['liveness'] === undefined && j.flags['full-mix'] === undefined)).toBe(true);
    const steps = m.map((j) => Number(j.flags['steps']));
    expect(Math.min(...steps)).toBeGreaterThanOrEqual(1000);
    expect(Math.max(...steps)).toBeLessThanOrEqual(5000);
    expect(new Set(m.map((j) => j.flags['strategy']))).toEqual(new Set(['random', 'pct']));
    expect(m[0]!.timeout_ms).toBe(60_000 + steps[0]!);
    const d = jobs.find((j) => j.template === 'd')!;
    expect(d).toMatchObject({ kind: 'sim', file: 'examples/sim/default.yaml', timeout_ms: 9000, flags: { steps: '20000', strategy: 'pct', chaos: false, liveness: false, 'full-mix': true } });
  });

  it('loads examples/campaigns/sim-explore.yaml: sim templates only', () => {
    const p = loadCampaignPlan('examples/campaigns/sim-explore.yaml');
    expect(p.name).toBe('sim-explore');
    expect(new Set(p.templates.map((t) => t.kind))).toEqual(new Set(['sim']));
  });
});
