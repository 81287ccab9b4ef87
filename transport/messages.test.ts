import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { MAX_DOMAINS, MAX_VCPUS_PER_DOMAIN } from '../hypervisor/layout/constants.js';
import { IOREQ_STATE, IOREQ_TYPE } from '../hypervisor/public/ioreq.js';
import { MAX_HOST_CHARS, MAX_IOREQ_SERVER_IDS, MAX_RESP_ERROR, MAX_WIRE_BYTES } from './constants.js';
import { decodeReq, decodeResp, encode, isWireError, type IoreqMsg, type IoreqResp } from './messages.js';

// Every randomized test prints its seed; XGSIM_SEED replays one.
const SEED = process.env.XGSIM_SEED !== undefined ? Number(process.env.XGSIM_SEED) : Math.floor(Math.random() * 2 ** 31);
console.log(`transport/messages.test.ts: fast-check seed ${SEED} (replay with XGSIM_SEED=${SEED})`);
const RUNS = { seed: SEED, numRuns: 500 };

const host = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-.:_~!'.split('')), minLength: 1, maxLength: MAX_HOST_CHARS });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const routing = {
  host,
  domid: fc.integer({ min: 0, max: MAX_DOMAINS - 1 }),
  vcpu: fc.integer({ min: 0, max: MAX_VCPUS_PER_DOMAIN - 1 }),
  seq: fc.maxSafeNat(),
};
const state = fc.constantFrom(...Object.values(IOREQ_STATE));

const reqArb: fc.Arbitrary<IoreqMsg> = fc.record({
  ...routing,
  server: fc.integer({ min: 0, max: MAX_IOREQ_SERVER_IDS - 1 }),
  type: fc.constantFrom(...Object.values(IOREQ_TYPE)),
  dir: fc.constantFrom(0 as const, 1 as const),
  addr: fc.maxSafeNat(),
  size: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
  data: u32,
  count: fc.integer({ min: 1, max: 0xffff_ffff }),
  df: fc.constantFrom(0 as const, 1 as const),
  data_is_ptr: fc.constantFrom(0 as const, 1 as const),
  state,
  buf: fc.constantFrom(0 as const, 1 as const),
  after: fc.maxSafeNat(),
});

const respArb: fc.Arbitrary<IoreqResp> = fc.record({
  ...routing,
  data: u32,
  state,
  error: fc.integer({ min: -MAX_RESP_ERROR, max: MAX_RESP_ERROR }),
  buf: fc.constantFrom(0 as const, 1 as const),
});

const REQ: IoreqMsg = { host: 'h1', domid: 1, vcpu: 0, seq: 7, server: 8, type: IOREQ_TYPE.COPY, dir: 1, addr: 0xfe00_0000, size: 4, data: 0, count: 1, df: 0, data_is_ptr: 0, state: IOREQ_STATE.READY, buf: 0, after: 0 };
const RESP: IoreqResp = { host: 'h1', domid: 1, vcpu: 0, seq: 7, data: 0xffff_ffff, state: IOREQ_STATE.IORESP_READY, error: 0, buf: 0 };
const raw = new Packr({ useRecords: false });

function errorOf(x: IoreqMsg | IoreqResp | { error: string }): string {
  if (!isWireError(x)) throw new Error(`expected a wire error, got ${JSON.stringify(x)}`);
  return x.error;
}

describe('messages: round trip', () => {
  it('decodeReq(encode(m)) is m', () => {
    fc.assert(
      fc.property(reqArb, (m) => {
        expect(decodeReq(encode(m))).toStrictEqual({ ...m });
      }),
      RUNS,
    );
  });

  it('decodeResp(encode(r)) is r', () => {
    fc.assert(
      fc.property(respArb, (r) => {
        expect(decodeResp(encode(r))).toStrictEqual({ ...r });
      }),
      RUNS,
    );
  });

  it('every encoding fits MAX_WIRE_BYTES, even with the longest host', () => {
    const long = 'x'.repeat(MAX_HOST_CHARS);
    const m = { ...REQ, host: long, seq: Number.MAX_SAFE_INTEGER, addr: Number.MAX_SAFE_INTEGER, count: 0xffff_ffff, data: 0xffff_ffff };
    expect(encode(m).length).toBeLessThanOrEqual(MAX_WIRE_BYTES);
    expect(decodeReq(encode(m))).toStrictEqual(m);
  });
});

describe('messages: garbage never throws', () => {
  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2 * MAX_WIRE_BYTES }), (bytes) => {
        const b = Buffer.from(bytes);
        for (const d of [decodeReq(b), decodeResp(b)]) {
          // Either a wire error, or a message that is itself valid.
          if (!isWireError(d)) expect(() => encode(d)).not.toThrow();
          else expect(typeof d.error).toBe('string');
        }
      }),
      RUNS,
    );
  });

  it('random msgpack values', () => {
    fc.assert(
      fc.property(fc.anything({ withBigInt: true, withNullPrototype: true, withMap: true, withSet: true, withDate: true, withTypedArray: true, withSparseArray: true }), (v) => {
        let b: Buffer;
        try {
          b = Buffer.from(raw.pack(v));
        } catch {
          return; // msgpackr cannot encode it: nothing to decode
        }
        expect(isWireError(decodeReq(b))).toBe(true);
        expect(isWireError(decodeResp(b))).toBe(true);
      }),
      RUNS,
    );
  });

  it('a valid encoding with bytes flipped or cut', () => {
    fc.assert(
      fc.property(reqArb, fc.nat(), fc.integer({ min: 1, max: 255 }), fc.nat(), (m, at, xor, cut) => {
        const b = Buffer.from(encode(m));
        b[at % b.length]! ^= xor;
        const d1 = decodeReq(b);
        if (!isWireError(d1)) expect(() => encode(d1)).not.toThrow();
        const d2 = decodeReq(b.subarray(0, cut % b.length));
        expect(isWireError(d2)).toBe(true);
      }),
      RUNS,
    );
  });

  it('one field set to an out-of-range or wrong-typed value names that field', () => {
    const bad = fc.oneof(fc.constant(-1), fc.constant(0.5), fc.constant(2 ** 53), fc.constant('1'), fc.constant(null), fc.constant(true), fc.constant(NaN), fc.constant(0x1_0000_0000), fc.constant([1]));
    fc.assert(
      fc.property(reqArb, fc.constantFrom(...(Object.keys(REQ) as (keyof IoreqMsg)[])), bad, (m, k, v) => {
        const o: Record<string, unknown> = { ...m, [k]: v };
        const d = decodeReq(Buffer.from(raw.pack(o)));
        if (isWireError(d)) expect(d.error).toContain(`.${k} `);
        else expect(d[k]).toStrictEqual(v); // the value was valid for this field after all (e.g. -1 for nothing here)
      }),
      RUNS,
    );
  });
});

describe('messages: field ranges', () => {
  const req = (patch: Record<string, unknown>) => decodeReq(Buffer.from(raw.pack({ ...REQ, ...patch })));
  const resp = (patch: Record<string, unknown>) => decodeResp(Buffer.from(raw.pack({ ...RESP, ...patch })));

  it('size is 1, 2, 4 or 8', () => {
    for (const size of [1, 2, 4, 8]) expect(isWireError(req({ size }))).toBe(false);
    for (const size of [0, 3, 5, 16, -4]) expect(errorOf(req({ size }))).toContain('IoreqMsg.size');
  });

  it('dir, df, data_is_ptr and buf are 0 or 1', () => {
    for (const k of ['dir', 'df', 'data_is_ptr', 'buf']) {
      expect(isWireError(req({ [k]: 1 }))).toBe(false);
      expect(errorOf(req({ [k]: 2 }))).toContain(`IoreqMsg.${k}`);
    }
  });

  it('data is an unsigned 32-bit value', () => {
    expect(isWireError(req({ data: 0xffff_ffff }))).toBe(false);
    expect(errorOf(req({ data: 0x1_0000_0000 }))).toContain('IoreqMsg.data');
    expect(errorOf(req({ data: -1 }))).toContain('IoreqMsg.data');
    expect(errorOf(resp({ data: 1.5 }))).toContain('IoreqResp.data');
  });

  it('routing fields stay within the machine', () => {
    expect(errorOf(req({ domid: MAX_DOMAINS }))).toContain('IoreqMsg.domid');
    expect(errorOf(req({ vcpu: MAX_VCPUS_PER_DOMAIN }))).toContain('IoreqMsg.vcpu');
    expect(errorOf(req({ server: MAX_IOREQ_SERVER_IDS }))).toContain('IoreqMsg.server');
    expect(errorOf(req({ seq: -1 }))).toContain('IoreqMsg.seq');
    expect(errorOf(req({ host: '' }))).toContain('IoreqMsg.host');
    expect(errorOf(req({ host: 'a b' }))).toContain('IoreqMsg.host');
    expect(errorOf(req({ host: 'x'.repeat(MAX_HOST_CHARS + 1) }))).toContain('IoreqMsg.host');
  });

  it('type and state are the ABI values; count is at least 1', () => {
    expect(errorOf(req({ type: 3 }))).toContain('IoreqMsg.type');
    expect(isWireError(req({ type: IOREQ_TYPE.FAULT }))).toBe(false);
    expect(errorOf(req({ state: 4 }))).toContain('IoreqMsg.state');
    expect(errorOf(req({ count: 0 }))).toContain('IoreqMsg.count');
  });

  it('error is 0, a negative errno or a small code', () => {
    expect(isWireError(resp({ error: -22 }))).toBe(false);
    expect(errorOf(resp({ error: MAX_RESP_ERROR + 1 }))).toContain('IoreqResp.error');
    expect(errorOf(resp({ error: 'EINVAL' }))).toContain('IoreqResp.error');
  });

  it('a u64 that is not a safe integer is rejected, not rounded', () => {
    // As a C device model would send it: encode with addr = 0, then splice a
    // msgpack uint64 (0xcf) in place of the positive fixint 0.
    const b = Buffer.from(raw.pack({ ...REQ, addr: 0 }));
    const at = b.indexOf(Buffer.from([0xa4, 0x61, 0x64, 0x64, 0x72])) + 5; // fixstr "addr", then its value
    expect(b[at]).toBe(0x00);
    const big = Buffer.concat([b.subarray(0, at), Buffer.from('cf0020000000000001', 'hex'), b.subarray(at + 1)]);
    expect(errorOf(decodeReq(big))).toContain('IoreqMsg.addr');
    const safe = Buffer.concat([b.subarray(0, at), Buffer.from('cf0000010000000000', 'hex'), b.subarray(at + 1)]);
    expect(decodeReq(safe)).toStrictEqual({ ...REQ, addr: 2 ** 40 });
  });

  it('unexpected, missing and smuggled fields', () => {
    expect(errorOf(req({ extra: 1 }))).toContain('unexpected field "extra"');
    const { seq: _seq, ...noSeq } = REQ;
    expect(errorOf(decodeReq(Buffer.from(raw.pack(noSeq))))).toContain('missing field seq');
    expect(errorOf(decodeResp(encode(REQ)))).toContain('unexpected field');
    expect(errorOf(decodeReq(encode(RESP)))).toContain('IoreqMsg');
  });

  it('shape errors: not a map, empty, too long, trailing bytes', () => {
    expect(errorOf(decodeReq(Buffer.from(raw.pack([1, 2, 3]))))).toContain('expected a map');
    expect(errorOf(decodeReq(Buffer.alloc(0)))).toContain('empty');
    expect(errorOf(decodeReq(Buffer.alloc(MAX_WIRE_BYTES + 1, 0x90)))).toContain('MAX_WIRE_BYTES');
    expect(errorOf(decodeReq(Buffer.concat([encode(REQ), Buffer.from([0x01])])))).toContain('not msgpack');
    expect(errorOf(decodeReq(Buffer.from([0xc1])))).toContain('IoreqMsg');
  });

  it('encode refuses an invalid message, naming the field', () => {
    expect(() => encode({ ...REQ, size: 3 as 4 })).toThrow(/IoreqMsg\.size/);
    expect(() => encode({ ...RESP, data: -1 })).toThrow(/IoreqResp\.data/);
  });

  it('isWireError tells a decode failure from a response with an error code', () => {
    const r = decodeResp(encode({ ...RESP, error: -5 }));
    expect(isWireError(r)).toBe(false);
    expect(isWireError({ error: 'x' })).toBe(true);
  });
});
