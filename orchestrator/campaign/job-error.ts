/** A job's error as its result says it: the message of an input or usage error, "internal error: …" for anything else. */
import { BuggifyError } from '../../hypervisor/xen/buggify.js';
import { isInputError } from '../config/errors.js';
import { HostDied, UsageError } from '../errors.js';

export function errorText(e: unknown): string {
  if (isInputError(e)) return e.toString();
  if (e instanceof UsageError || e instanceof BuggifyError || e instanceof HostDied) return e.message;
  return `internal error: ${e instanceof Error ? e.message : String(e)}`;
}
