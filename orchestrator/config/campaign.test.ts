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
});
