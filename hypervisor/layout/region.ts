/**
 * Helpers shared by the layout modules: each shared region names its record
 * size and field offsets once, and asserts the SAB it is handed matches.
 */
export function expectBytes(region: string, sab: SharedArrayBuffer, bytes: number): void {
  if (sab.byteLength !== bytes) {
    throw new Error(`${region}: region is ${sab.byteLength} bytes, layout expects ${bytes}`);
  }
}

/** Fatal hypervisor assertion (docs/style.md §4: a broken hypervisor invariant fails loudly). */
export class HypervisorBug extends Error {
  override readonly name = 'HypervisorBug';
}

export function BUG_ON(cond: boolean, what: string): void {
  if (cond) throw new HypervisorBug(what);
}

/**
 * The same assertion where its text is built from values: `if (cond)
 * BUG(`…`)` builds the text only when it fails (BUG_ON's argument would be
 * built on every call, on paths that run per page or per access).
 */
export function BUG(what: string): never {
  throw new HypervisorBug(what);
}
