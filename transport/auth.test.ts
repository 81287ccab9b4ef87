/** The entry MACs of transport/auth.ts and the fault classes of transport/faults.ts (no Redis needed). */
import { describe, expect, it } from 'vitest';
import { entryMac, keysFromWire, keysToWire, macOk, newRunKey, serverKey } from './auth.js';
import { MAC_BYTES } from './constants.js';
import { classify, isLostGroup, isTransient, isTransportFault, TransportFault } from './faults.js';

function replyError(message: string): Error {
  const e = new Error(message);
  e.name = 'ReplyError';
  return e;
}

describe('entry MACs', () => {
  const run = newRunKey();
  const payload = Buffer.from('a request');
  it('verify under the key and stream they were made for, and under no other', () => {
    const k = serverKey(run, 8);
    const mac = entryMac(k, 'ns:req:8', payload);
    expect(mac).toHaveLength(MAC_BYTES);
    expect(macOk(k, 'ns:req:8', payload, mac)).toBe(true);
    expect(macOk(serverKey(run, 9), 'ns:req:8', payload, mac)).toBe(false);
    expect(macOk(serverKey(newRunKey(), 8), 'ns:req:8', payload, mac)).toBe(false);
    expect(macOk(k, 'ns:req:9', payload, mac)).toBe(false);
    expect(macOk(k, 'ns:req:8', Buffer.from('a requesT'), mac)).toBe(false);
    expect(macOk(k, 'ns:req:8', payload, undefined)).toBe(false);
    expect(macOk(k, 'ns:req:8', payload, mac.subarray(0, 8))).toBe(false);
  });
  it('server keys differ per server and per run, and cross a thread boundary intact', () => {
    expect(serverKey(run, 8).equals(serverKey(run, 8))).toBe(true);
    expect(serverKey(run, 8).equals(serverKey(run, 16))).toBe(false);
    const keys = new Map([[8, serverKey(run, 8)], [16, serverKey(run, 16)]]);
    const back = keysFromWire(keysToWire(keys));
    expect([...back.keys()]).toEqual([8, 16]);
    expect(back.get(16)!.equals(keys.get(16)!)).toBe(true);
    expect(() => serverKey(Buffer.alloc(3), 8)).toThrow(/run key/);
  });
});

describe('what a Redis error means for the run', () => {
  it('connection errors and lost groups are transient; OOM, WRONGTYPE and an exhausted stream end the run', () => {
    expect(isTransient(new Error('Connection is closed.'))).toBe(true);
    expect(isLostGroup(replyError('NOGROUP No such key'))).toBe(true);
    expect(isLostGroup(replyError('UNBLOCKED the stream key no longer exists'))).toBe(true);
    expect(isTransient(replyError('LOADING Redis is loading the dataset in memory'))).toBe(true);
    for (const m of ["OOM command not allowed when used memory > 'maxmemory'.", 'WRONGTYPE Operation against a key holding the wrong kind of value', 'ERR The stream has exhausted the last possible ID, unable to add more items']) {
      const c = classify(replyError(m), 'publish requests');
      expect(c).toBeInstanceOf(TransportFault);
      expect(isTransportFault(c)).toBe(true);
      expect((c as Error).message).toContain(m.split(' ')[0]!);
    }
    const conn = new Error('Connection is closed.');
    expect(classify(conn, 'x')).toBe(conn);
  });
  it('a TransportFault is recognised after crossing a thread (its message only)', () => {
    const e = new TransportFault('device model dm-0: answer: Redis answered OOM');
    expect(isTransportFault(new Error(`Error: ${e.message}`))).toBe(true);
    expect(isTransportFault(e.message)).toBe(true);
    expect(isTransportFault(new Error('HypervisorBug: a transport fault somewhere'))).toBe(false);
  });
});
