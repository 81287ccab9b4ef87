import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { CAMPAIGN_WIRE_VERSION, decodeJob, decodeResult, encodeJob, encodeResult, isWireError, jobIdentity, type JobMsg, type ResultMsg } from './campaign-messages.js';

const job: JobMsg = { v: CAMPAIGN_WIRE_VERSION, campaign: 'c-1', index: 3, template: 't', kind: 'stress-revoke', file: '', flags: { guests: '1', checks: false }, seed: 9, buggify: ['no-scrub'], timeout_ms: 1000 };
const result: ResultMsg = {
  v: CAMPAIGN_WIRE_VERSION, campaign: 'c-1', index: 3, host: 'h', status: 'fail', elapsed_ms: 12.5, deliveries: 2, error: '',
  summary: { verdict: 'fail', transport: 'ring', duration_ms: 300, violations: 4, failed: ['no_use_after_revoke'], errors: [], revokes: 10, accesses: 99 },
  revoke_hist: { hdr: 'HISTFAAAAB14nJNpmSzMwMDAxQABzFCaEUzKf4AIAEJ8Ayk=', n: 3, max_us: 1.5 },
  record: { version: 1 },
};

describe('campaign wire format', () => {
  it('round-trips jobs and results', () => {
    expect(decodeJob(encodeJob(job))).toEqual(job);
    expect(decodeResult(encodeResult(result))).toEqual(result);
    expect(isWireError(decodeResult(encodeResult(result)))).toBe(false);
    const sim: JobMsg = { ...job, kind: 'sim', flags: { steps: '20000', strategy: 'pct', chaos: false } };
    expect(decodeJob(encodeJob(sim))).toEqual(sim);
    expect(decodeJob(pack({ ...job, kind: 'simulate' }))).toEqual({ error: expect.stringContaining('JobMsg.kind must be one of') });
  });

  it('names the first bad field of whatever arrives, and never throws', () => {
    expect(decodeJob(Buffer.from([0x92, 0x01]))).toMatchObject({ error: expect.stringContaining('not msgpack') });
    expect(isWireError(decodeJob(Buffer.from([0xc1])))).toBe(true);
    expect(decodeJob(pack({ ...job, seed: -1 }))).toEqual({ error: expect.stringContaining('JobMsg.seed must be an integer') });
    expect(decodeJob(pack({ ...job, extra: 1 }))).toEqual({ error: 'JobMsg: unexpected field "extra"' });
    expect(decodeJob(pack({ ...job, flags: { 'Bad Flag': 'x' } }))).toEqual({ error: expect.stringContaining('bad flag name') });
    expect(decodeResult(pack({ ...result, summary: { ...result.summary, violations: 'lots' } }))).toEqual({ error: expect.stringContaining('violations') });
    expect(decodeResult(pack({ ...result, status: 'meh' }))).toEqual({ error: expect.stringContaining('ResultMsg.status') });
    expect(decodeResult(pack({ ...result, revoke_hist: { ...result.revoke_hist, hdr: 'not base64!' } }))).toEqual({ error: expect.stringContaining('revoke_hist') });
    expect(() => encodeJob({ ...job, timeout_ms: 0 })).toThrow(/timeout_ms/);
  });

  it('finds the identity of a job that fails validation, so it can be answered', () => {
    expect(jobIdentity(pack({ ...job, seed: -1 }))).toEqual({ campaign: 'c-1', index: 3 });
    expect(jobIdentity(Buffer.from([0xc1]))).toBeUndefined();
  });
});
