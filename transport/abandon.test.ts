/** Waits that end when a run stops (transport/abandon.ts). */
import { describe, expect, it } from 'vitest';
import { ABANDONED, Abandon } from './abandon.js';

describe('Abandon', () => {
  it('passes a result or an error through, and leaves no waiter behind', async () => {
    const a = new Abandon();
    expect(await a.race(Promise.resolve(7))).toBe(7);
    await expect(a.race(Promise.reject(new Error('no')))).rejects.toThrow('no');
    for (let i = 0; i < 1000; i++) await a.race(Promise.resolve(i));
    expect(a.waiting).toBe(0);
  });
  it('fire() ends every wait in progress and every later one; a late rejection is handled', async () => {
    const a = new Abandon();
    let reject: (e: Error) => void = () => undefined;
    const never = new Promise<number>((_, r) => (reject = r));
    const w = a.race(never);
    expect(a.waiting).toBe(1);
    a.fire();
    expect(await w).toBe(ABANDONED);
    expect(await a.race(new Promise(() => undefined))).toBe(ABANDONED);
    reject(new Error('late')); // must not be an unhandled rejection
    await new Promise((r) => setTimeout(r, 10));
    expect(a.waiting).toBe(0);
  });
});
