/**
 * locks.ts asserts its layout when it loads (assertLayout). A test file that
 * imports it statically fails to load when one of them breaks, and Stryker's
 * vitest runner counts a file that fails to load as no test run, not as a
 * failure (docs/verification.md §8): so this file imports it only inside its
 * test, where a throw at load fails the test.
 */
import { threadId } from 'node:worker_threads';
import { expect, it } from 'vitest';
import { LOCKDEP_SITE_SLAB_BYTES, MAX_LOCK_CLASSES } from '../layout/constants.js';
import type * as Locks from './locks.js';

it('locks.ts loads: its layout assertions hold, and this thread is tagged threadId + 1', async () => {
  // The query makes it a module of its own, evaluated here whatever other files loaded before.
  const spec = './locks.js?load';
  const locks = (await import(/* @vite-ignore */ spec)) as typeof Locks;
  // Header, edge matrix, report bits, site slab, then four words a lock (the comment at the top of locks.ts).
  const locksAt = 8 + 2 * MAX_LOCK_CLASSES * MAX_LOCK_CLASSES + LOCKDEP_SITE_SLAB_BYTES / 4;
  expect(locks.LockSpace.bytes(1)).toBe((locksAt + 4) * 4);
  expect(locks.threadTag()).toBe(threadId + 1);
});
