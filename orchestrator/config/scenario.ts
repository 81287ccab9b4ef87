/**
 * Scenarios (docs/formats.md §3): a topology and a list of steps, each
 * normalized to a typed union member that keeps its source line for verdict
 * messages. The step table of docs/formats.md is the vocabulary; argument names
 * are kept as written there.
 *
 * Decisions:
 * - A step is a one-key mapping `op: {arguments}`; `expect` goes inside the
 *   arguments (a sibling `expect:` is the usual indentation slip and is
 *   reported as such). `check` takes a word or a list of words.
 * - Numbers may be YAML ints (0x10 is an int in YAML 1.2) or strings ("0x10").
 * - Counts default to 1, `readonly` to false, `offset` to 0, `width` to 4
 *   bytes, `hypercall_copy.bytes` to one page, `concurrently.repeat` to 1.
 *   read/write accesses are naturally aligned and inside one page.
 * - `expect` defaults to OK. A numeric expect is a read's value (`value:` on
 *   a read means the same), or the extents a populate / balloon_out did
 *   (memory_op returns nr_done; OK means all of them). Handles (`map_grant.handle`) and ids (`map.id`)
 *   are names defined by an earlier step; an integer is passed through raw,
 *   for tests of bogus handles.
 * - Range-like arguments (gfns, refs, mfns) are not checked against the
 *   topology: probing holes and bad refs is what scenarios are for.
 * - The topology's workloads and duration are ignored (validated, then set
 *   to idle); host frames default to Σ memory + 1024.
 */
import { z } from 'zod';
import { ERRNO_NAMES, GNTST_NAMES } from '../../hypervisor/public/errno.js';
import { P2M, type P2mTypeName } from '../../hypervisor/public/types.js';
import { BUG_NAMES, type BugName } from '../../hypervisor/xen/buggify.js';
import { HOOK_NAMES, type HookName } from '../../hypervisor/xen/hooks.js';
import { bool, describe, duration, field, ident, int, isRecord, list, obj, oneOf, str, toBigInt, u64 } from './fields.js';
import { didYouMean, errorAt, lineOf, parseYaml, readYamlFile, validate, type Path, type YamlSource } from './load.js';
import { MAX_COPY_BYTES, MAX_REPEAT, MAX_SCENARIO_STEPS, MAX_SEED, MAX_STEP_COUNT_PAGES, MAX_THREADS } from './limits.js';
import { baseName, normalizeTopology, topologySchema, type Topology } from './topology.js';
import type { Parsed } from './units.js';

// ---------------------------------------------------------------- expect

export const ERRNO_LIST: readonly string[] = Object.values(ERRNO_NAMES);
export const GNTST_LIST: readonly string[] = Object.values(GNTST_NAMES);

export type Expect =
  | { readonly kind: 'ok' }
  /** `errno` is positive (EBUSY = 16); the hypercall returns −errno. */
  | { readonly kind: 'errno'; readonly name: string; readonly errno: number }
  /** `status` is the GNTST_* code (negative, or 0 for GNTST_okay). */
  | { readonly kind: 'gntst'; readonly name: string; readonly status: number }
  /** The access became an IOREQ_TYPE_FAULT. */
  | { readonly kind: 'fault' }
  /** The access became another ioreq (e.g. to an emulated range). */
  | { readonly kind: 'ioreq' }
  /** A DMA (dma_read, dma_write) the domain's IOMMU refused. */
  | { readonly kind: 'iommu_fault' }
  /** A read returned this value. */
  | { readonly kind: 'value'; readonly value: bigint };

const ERRNO_BY_NAME = new Map(Object.entries(ERRNO_NAMES).map(([code, name]) => [name, Number(code)]));
const GNTST_BY_NAME = new Map(Object.entries(GNTST_NAMES).map(([code, name]) => [name, Number(code)]));
const EXPECT_WORDS = ['OK', 'FAULT', 'IOREQ', 'IOMMU_FAULT', ...ERRNO_LIST, ...GNTST_LIST];

/** Parse an `expect:` value: OK, EBUSY, GNTST_bad_gntref, FAULT, IOREQ, IOMMU_FAULT, or a number. */
export function parseExpect(v: unknown): Parsed<Expect> {
  const okv = (value: Expect): Parsed<Expect> => ({ ok: true, value });
  if (typeof v === 'string') {
    const w = v.trim();
    if (w === 'OK') return okv({ kind: 'ok' });
    if (w === 'FAULT') return okv({ kind: 'fault' });
    if (w === 'IOREQ') return okv({ kind: 'ioreq' });
    if (w === 'IOMMU_FAULT') return okv({ kind: 'iommu_fault' });
    const errno = ERRNO_BY_NAME.get(w);
    if (errno !== undefined) return okv({ kind: 'errno', name: w, errno });
    const status = GNTST_BY_NAME.get(w);
    if (status !== undefined) return okv({ kind: 'gntst', name: w, status });
  }
  if (typeof v === 'bigint' || typeof v === 'number' || (typeof v === 'string' && /^\s*(0x[0-9a-f]+|[0-9]+)\s*$/i.test(v))) {
    const r = toBigInt(v);
    if (r.ok && r.value >= 0n) return okv({ kind: 'value', value: r.value });
  }
  const hint = typeof v === 'string' ? didYouMean(v, EXPECT_WORDS) : '';
  return {
    ok: false,
    error: `unknown expect ${describe(v)}${hint} (expected OK, an errno name such as EBUSY, a GNTST_* name, FAULT, IOREQ, IOMMU_FAULT, or a number: a read's value, the extents a populate or balloon_out did)`,
  };
}

const expectSchema = () => field(parseExpect).optional();

// ---------------------------------------------------------------- steps (public types)

export const CHECKS = ['invariants', 'frames_conserved', 'no_leaks'] as const;
export type CheckName = (typeof CHECKS)[number];
/**
 * Any p2m type may be named: the hypervisor, not the schema, refuses what
 * Map does not make (everything but mmio_direct and mmio_dm is -EINVAL).
 */
export const MAP_TYPES = Object.keys(P2M) as readonly P2mTypeName[];
export type MapType = P2mTypeName;
/** XEN_DMOP_set_mem_type's types that xgsim implements (HVMMEM_ram_rw, HVMMEM_ram_ro). */
export const MEM_TYPES = ['ram_rw', 'ram_ro'] as const;
export type MemType = (typeof MEM_TYPES)[number];
/** ioreq_t states a device model may write (xen/include/public/hvm/ioreq.h), or a raw number. */
export const IOREQ_STATES = ['NONE', 'READY', 'INPROCESS', 'IORESP_READY'] as const;
export const COPY_DIRS = ['from_guest', 'to_guest'] as const;
export type CopyDir = (typeof COPY_DIRS)[number];
export const FAULT_POLICIES = ['remap', 'fail', 'none', 'retry'] as const;
export type FaultPolicy = (typeof FAULT_POLICIES)[number];
export const WIDTHS = [1, 2, 4, 8] as const;
export type Width = (typeof WIDTHS)[number];

/** A mapping handle or Map id: a name from an earlier step, or a raw number. */
export type HandleRef = { readonly kind: 'name'; readonly name: string } | { readonly kind: 'raw'; readonly value: number };

interface At {
  /** 1-based source line of the step. */
  readonly line: number;
}
interface Expecting extends At {
  readonly expect: Expect;
}

export type Step =
  | (Expecting & { readonly op: 'populate' | 'balloon_out'; readonly domain: string; readonly gfn: number; readonly count: number })
  | (Expecting & { readonly op: 'grant'; readonly domain: string; readonly ref: number; readonly to: string; readonly gfn: number; readonly readonly: boolean })
  | (Expecting & { readonly op: 'end_grant'; readonly domain: string; readonly ref: number; readonly to?: string; readonly gfn?: number; readonly readonly?: boolean })
  | (Expecting & {
      readonly op: 'map_grant'; readonly domain: string; readonly from: string; readonly ref: number; readonly at: number;
      readonly readonly: boolean; readonly handle?: string;
    })
  | (Expecting & {
      readonly op: 'unmap_grant'; readonly domain: string; readonly handle?: HandleRef; readonly at?: number;
      readonly from?: string; readonly ref?: number;
    })
  | (Expecting & { readonly op: 'grant_copy'; readonly domain: string; readonly src: CopySide; readonly dst: CopySide; readonly len: number })
  | (Expecting & { readonly op: 'foreign_map'; readonly by: string; readonly from: string; readonly gfn: number; readonly at: number })
  | (Expecting & { readonly op: 'foreign_unmap'; readonly by: string; readonly at: number; readonly from?: string; readonly gfn?: number })
  | (Expecting & {
      readonly op: 'map'; readonly by: string; readonly to: string; readonly source: MapSource; readonly count: number;
      readonly at: number; readonly type?: MapType; readonly id?: string;
    })
  | (Expecting & { readonly op: 'revoke'; readonly by: string; readonly target: RevokeTarget })
  | (Expecting & { readonly op: 'steal'; readonly by: string; readonly from: string; readonly gfn: number; readonly count: number; readonly into?: number })
  | (Expecting & { readonly op: 'return'; readonly by: string; readonly to: string; readonly gfn: number; readonly count: number; readonly at?: number })
  | (Expecting & { readonly op: 'read'; readonly domain: string; readonly gfn: number; readonly offset: number; readonly width: Width })
  | (Expecting & {
      readonly op: 'write'; readonly domain: string; readonly gfn: number; readonly offset: number; readonly width: Width; readonly value: bigint;
    })
  | (Expecting & { readonly op: 'hypercall_copy'; readonly domain: string; readonly gfn: number; readonly dir: CopyDir; readonly bytes: number })
  /** A 32-bit DMA of `domain`'s passthrough device, through its IOMMU (hypervisor/xen/iommu.ts). */
  | (Expecting & { readonly op: 'dma_read'; readonly domain: string; readonly gfn: number; readonly offset: number })
  | (Expecting & { readonly op: 'dma_write'; readonly domain: string; readonly gfn: number; readonly offset: number; readonly value: number })
  | (Expecting & {
      readonly op: 'iomem_permit'; readonly by: string; readonly domain: string; readonly start: number; readonly count: number; readonly allow: boolean;
    })
  /** XENMEM_current_reservation / XENMEM_maximum_reservation of `of` (default: the issuing `domain` itself). */
  | (Expecting & { readonly op: 'current_reservation' | 'maximum_reservation'; readonly domain: string; readonly of?: string })
  /** XEN_DMOP_set_mem_type by `by` on `domain`'s gfns. */
  | (Expecting & { readonly op: 'set_mem_type'; readonly by: string; readonly domain: string; readonly gfn: number; readonly count: number; readonly type: MemType })
  | (Expecting & {
      readonly op: 'ioreq_server'; readonly by: string; readonly for: string; readonly ranges: readonly GfnRange[];
      readonly fault_policy: FaultPolicy; readonly id?: string;
    })
  /** XEN_DMOP_set_ioreq_server_state by `by` on server `id` (a name from `ioreq_server`, or a raw index) of `for`. */
  | (Expecting & { readonly op: 'set_ioreq_server_state'; readonly by: string; readonly for: string; readonly id: HandleRef; readonly enabled: boolean })
  /**
   * The device model `by` stores into its ioreq page: the state (and data)
   * of the ioreq `domain`'s vCPU waits on. Only inside `on_hook: ioreq.wait`.
   */
  | (Expecting & { readonly op: 'ioreq_answer'; readonly by: string; readonly domain: string; readonly state: number; readonly data: number })
  | (Expecting & { readonly op: 'destroy' | 'crash'; readonly domain: string })
  | (At & { readonly op: 'concurrently'; readonly repeat: number; readonly threads: readonly (readonly Step[])[] })
  | (At & { readonly op: 'check'; readonly checks: readonly CheckName[] })
  /** Run `steps` at hook point `hook` inside the next step (docs/xsa.md). */
  | (At & { readonly op: 'on_hook'; readonly hook: HookName; readonly steps: readonly Step[] });

export type StepOp = Step['op'];

/** One side of a `grant_copy`: a grant ref of `domain`, or a gfn of the calling domain. */
export type CopySide =
  | { readonly kind: 'ref'; readonly domain: string; readonly ref: number; readonly offset: number }
  | { readonly kind: 'gfn'; readonly gfn: number; readonly offset: number };
/** Map's source: backend RAM at `gfn`, or page `offset` of device `bar`'s BAR. */
export type MapSource = { readonly kind: 'ram'; readonly gfn: number } | { readonly kind: 'bar'; readonly bar: string; readonly offset: number };
/** Revoke's target: a Map by id, or a frontend range (a domain of the topology, or a raw domid). */
export type RevokeTarget =
  | { readonly kind: 'id'; readonly id: HandleRef }
  | { readonly kind: 'range'; readonly domain: string; readonly gfn: number; readonly count: number }
  | { readonly kind: 'range'; readonly domid: number; readonly gfn: number; readonly count: number };
export interface GfnRange {
  readonly start: number;
  readonly count: number;
}

export interface Scenario {
  readonly name: string;
  readonly description?: string;
  /** When set, the scenario is reported SKIP with this reason. */
  readonly skip?: string;
  readonly seed?: number;
  readonly timeout_ms?: number;
  /**
   * The deliberate bug (XGSIM_BUGGIFY name) this scenario guards against:
   * documentation, and what `xgsim scenario --own-bug` switches on. It does
   * not change the verdict of a normal run.
   */
  readonly buggify?: BugName;
  readonly topology: Topology;
  readonly steps: readonly Step[];
}

// ---------------------------------------------------------------- argument schemas

const name = () => ident();
const num = () => int();
const count = () => int({ min: 1, max: MAX_STEP_COUNT_PAGES }).default(1);
const ref = () => int({ max: 0xffff_ffff });
const handleRef = () =>
  field((v): Parsed<HandleRef> => {
    if (typeof v === 'string' && /^[A-Za-z_]/.test(v)) return { ok: true, value: { kind: 'name', name: v } };
    const r = toBigInt(v);
    if (r.ok && r.value >= 0n && r.value <= 0xffff_ffffn) return { ok: true, value: { kind: 'raw', value: Number(r.value) } };
    return { ok: false, error: `expected a handle name or number, got ${describe(v)}` };
  });
/** An ioreq state: a name of IOREQ_STATES, or a raw number (a device model may store garbage). */
const ioreqState = () =>
  field((v): Parsed<number> => {
    const k = typeof v === 'string' ? (IOREQ_STATES as readonly string[]).indexOf(v) : -1;
    if (k >= 0) return { ok: true, value: k };
    const r = toBigInt(v);
    if (r.ok && r.value >= 0n && r.value <= 0xffn) return { ok: true, value: Number(r.value) };
    const hint = typeof v === 'string' ? didYouMean(v, IOREQ_STATES) : '';
    return { ok: false, error: `expected an ioreq state (${IOREQ_STATES.join(', ')}) or a number 0…255, got ${describe(v)}${hint}` };
  });
const width = () =>
  field((v): Parsed<Width> => {
    const r = toBigInt(v);
    const w = r.ok ? Number(r.value) : Number.NaN;
    return (WIDTHS as readonly number[]).includes(w) ? { ok: true, value: w as Width } : { ok: false, error: `width must be 1, 2, 4 or 8 bytes, got ${describe(v)}` };
  });

const ARGS = {
  populate: obj({ domain: name(), gfn: num(), count: count(), expect: expectSchema() }),
  balloon_out: obj({ domain: name(), gfn: num(), count: count(), expect: expectSchema() }),
  grant: obj({ domain: name(), ref: ref(), to: name(), gfn: num(), readonly: bool().default(false), expect: expectSchema() }),
  end_grant: obj({ domain: name(), ref: ref(), to: name().optional(), gfn: num().optional(), readonly: bool().optional(), expect: expectSchema() }),
  map_grant: obj({
    domain: name(), from: name(), ref: ref(), at: num(), readonly: bool().default(false), handle: ident().optional(), expect: expectSchema(),
  }),
  unmap_grant: obj({
    domain: name(), handle: handleRef().optional(), at: num().optional(), from: name().optional(), ref: ref().optional(), readonly: bool().optional(),
    expect: expectSchema(),
  }),
  grant_copy: obj({
    domain: name(), from: name().optional(), ref: ref().optional(), gfn: num().optional(), src_offset: num().default(0),
    to: name().optional(), to_ref: ref().optional(), to_gfn: num().optional(), dst_offset: num().default(0),
    len: int({ min: 0, max: MAX_COPY_BYTES }).default(4), expect: expectSchema(),
  }),
  foreign_map: obj({ by: name(), from: name(), gfn: num(), at: num(), expect: expectSchema() }),
  foreign_unmap: obj({ by: name(), at: num(), from: name().optional(), gfn: num().optional(), expect: expectSchema() }),
  map: obj({
    by: name(), to: name(), gfn: num().optional(), bar: ident().optional(), offset: num().optional(), count: count(), at: num(),
    type: oneOf(MAP_TYPES, 'map type').optional(), id: ident().optional(), expect: expectSchema(),
  }),
  revoke: obj({
    by: name(), id: handleRef().optional(), domain: name().optional(), domid: int({ max: 0xffff }).optional(), gfn: num().optional(), count: count(),
    expect: expectSchema(),
  }),
  steal: obj({ by: name(), from: name(), gfn: num(), count: count(), into: num().optional(), expect: expectSchema() }),
  return: obj({ by: name(), to: name(), gfn: num(), count: count(), at: num().optional(), expect: expectSchema() }),
  read: obj({ domain: name(), gfn: num(), offset: num().default(0), width: width().default(4), value: u64().optional(), expect: expectSchema() }),
  write: obj({ domain: name(), gfn: num(), offset: num().default(0), width: width().default(4), value: u64(), expect: expectSchema() }),
  hypercall_copy: obj({
    domain: name(), gfn: num(), dir: oneOf(COPY_DIRS, 'copy direction'), bytes: int({ min: 1, max: MAX_COPY_BYTES }).optional(),
    expect: expectSchema(),
  }),
  dma_read: obj({ domain: name(), gfn: num(), offset: num().default(0), value: u64().optional(), expect: expectSchema() }),
  dma_write: obj({ domain: name(), gfn: num(), offset: num().default(0), value: u64(), expect: expectSchema() }),
  // `start` is a u64 MFN, as XEN_DOMCTL_iomem_permission's first_mfn: a range may wrap.
  iomem_permit: obj({ by: name().optional(), domain: name(), start: u64(), count: count(), allow: bool().default(true), expect: expectSchema() }),
  current_reservation: obj({ domain: name(), of: name().optional(), expect: expectSchema() }),
  maximum_reservation: obj({ domain: name(), of: name().optional(), expect: expectSchema() }),
  set_mem_type: obj({ by: name(), domain: name(), gfn: num(), count: count(), type: oneOf(MEM_TYPES, 'memory type'), expect: expectSchema() }),
  ioreq_server: obj({
    by: name(), for: name(), ranges: list(obj({ start: num(), count: count() })).default([]),
    fault_policy: oneOf(FAULT_POLICIES, 'fault policy').default('none'), id: ident().optional(), expect: expectSchema(),
  }),
  set_ioreq_server_state: obj({ by: name(), for: name(), id: handleRef(), enabled: bool().default(true), expect: expectSchema() }),
  ioreq_answer: obj({ by: name(), domain: name(), state: ioreqState(), data: int({ max: 0xffff_ffff }).default(0), expect: expectSchema() }),
  destroy: obj({ domain: name(), expect: expectSchema() }),
  crash: obj({ domain: name(), expect: expectSchema() }),
  on_hook: obj({ hook: oneOf(HOOK_NAMES, 'hook point'), steps: list(z.unknown(), { min: 1 }) }),
  concurrently: obj({ repeat: int({ min: 1, max: MAX_REPEAT }).default(1), threads: list(list(z.unknown(), { min: 1 }), { min: 1, max: MAX_THREADS }) }),
} as const;

export const STEP_OPS = [...Object.keys(ARGS), 'check'] as readonly string[];

/** Argument keys that name a domain of the topology. */
const DOMAIN_KEYS = ['domain', 'by', 'from', 'to', 'for', 'of'] as const;

// ---------------------------------------------------------------- scenario schema

export const scenarioSchema = obj({
  name: str().optional(),
  description: str().optional(),
  skip: str().optional(),
  seed: int({ max: MAX_SEED }).optional(),
  timeout: duration().optional(),
  buggify: str().optional(),
  topology: topologySchema,
  steps: list(z.unknown(), { min: 1, max: MAX_SCENARIO_STEPS }),
});

// ---------------------------------------------------------------- step normalization

interface StepContext {
  readonly src: YamlSource;
  readonly topology: Topology;
  readonly domainNames: readonly string[];
  readonly deviceNames: readonly string[];
}

/** `inHook`: the steps of an `on_hook` (they run inside another step's hypercall or access). */
function parseSteps(ctx: StepContext, items: readonly unknown[], base: Path, defined: Set<string>, nested: boolean, inHook = false): Step[] {
  return items.map((item, i) => parseStep(ctx, item, [...base, i], defined, nested, inHook));
}

function parseStep(ctx: StepContext, item: unknown, path: Path, defined: Set<string>, nested: boolean, inHook: boolean): Step {
  const { src } = ctx;
  const line = lineOf(src, path);
  if (!isRecord(item)) throw errorAt(src, path, `expected a step such as \`grant: {...}\`, got ${describe(item)}`);
  const keys = Object.keys(item);
  const op = keys[0];
  if (op === undefined) throw errorAt(src, path, 'empty step; expected one operation such as `grant: {...}`');
  if (!STEP_OPS.includes(op)) {
    const hint = didYouMean(op, STEP_OPS);
    throw errorAt(src, [...path, op], hint !== '' ? `unknown step \`${op}\`${hint}` : `unknown step \`${op}\` (steps are: ${STEP_OPS.join(', ')})`, { key: true });
  }
  const extra = keys[1];
  if (extra !== undefined) {
    const msg = STEP_OPS.includes(extra)
      ? `a step has one operation, found \`${op}\` and \`${extra}\`; start each step with \`- \``
      : `\`${extra}\` sits beside \`${op}\`; arguments (and \`expect\`) go inside \`${op}: {...}\``;
    throw errorAt(src, [...path, extra], msg, { key: true });
  }
  const argsPath = [...path, op];
  const value = item[op];

  if (op === 'check') {
    const words = Array.isArray(value) ? value : [value];
    const checks = words.map((w, j): CheckName => {
      if (typeof w === 'string' && (CHECKS as readonly string[]).includes(w)) return w as CheckName;
      const p = Array.isArray(value) ? [...argsPath, j] : argsPath;
      const hint = typeof w === 'string' ? didYouMean(w, CHECKS) : '';
      throw errorAt(src, p, `unknown check ${describe(w)}${hint} (expected one of: ${CHECKS.join(', ')})`);
    });
    if (checks.length === 0) throw errorAt(src, argsPath, `empty check list (expected some of: ${CHECKS.join(', ')})`);
    return { op: 'check', checks, line };
  }

  const key = op as keyof typeof ARGS;
  if (key === 'concurrently' && nested) {
    throw errorAt(src, [...path, op], '`concurrently` cannot be nested; put its steps in the outer block\'s threads', { key: true });
  }
  if (key === 'on_hook' && nested) {
    throw errorAt(src, [...path, op], '`on_hook` runs only between sequential steps, not inside `concurrently` or another `on_hook`', { key: true });
  }
  const args = validate(src, ARGS[key], { value, path: argsPath }) as Record<string, unknown>;
  const argsOf = <K extends keyof typeof ARGS>(_k: K): z.output<(typeof ARGS)[K]> => args as z.output<(typeof ARGS)[K]>;
  const at = (k: string): Path => [...argsPath, k];
  const fail = (k: string, msg: string): never => {
    throw errorAt(src, at(k), msg);
  };

  for (const k of DOMAIN_KEYS) {
    const d = args[k];
    if (typeof d === 'string' && !ctx.domainNames.includes(d)) {
      fail(k, `unknown domain \`${d}\`; domains are: ${ctx.domainNames.join(', ')}${didYouMean(d, ctx.domainNames)}`);
    }
  }
  const useRef = (k: string, h: HandleRef | undefined, what: string): void => {
    if (h?.kind === 'name' && !defined.has(h.name)) {
      fail(k, `${what} \`${h.name}\` is not defined by an earlier step${didYouMean(h.name, defined)}`);
    }
  };
  /**
   * `numeric`: the step answers a number — a memory_op's extents done (at
   * most `count`), or a reservation in pages ('pages').
   */
  const exp = (a: { expect?: Expect | undefined }, numeric?: number | 'pages'): Expect => {
    if (a.expect?.kind === 'value') {
      if (numeric === undefined) {
        fail('expect', `a value is expected only of a read, of populate and balloon_out (the extents done), or of a reservation (pages); use OK, an errno name, a GNTST_* name, FAULT, IOREQ or IOMMU_FAULT`);
      } else if (numeric !== 'pages' && a.expect.value > BigInt(numeric)) fail('expect', `${a.expect.value} extents done, but the step asks for ${numeric}`);
    }
    return a.expect ?? { kind: 'ok' };
  };
  const opt = <K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } => (v === undefined ? {} : ({ [k]: v } as { [P in K]?: V }));
  const pageSize = ctx.topology.host.page_size_bytes;
  const checkFits = (v: bigint, w: Width, k: string): void => {
    if (v >= 1n << BigInt(8 * w)) fail(k, `value 0x${v.toString(16)} does not fit in ${w} byte${w === 1 ? '' : 's'}`);
  };
  const checkAccess = (offset: number, w: Width): void => {
    if (offset % w !== 0) fail('offset', `offset ${offset} is not a multiple of the access width ${w} (accesses are naturally aligned)`);
    if (offset + w > pageSize) fail('offset', `offset ${offset} + width ${w} runs past the ${pageSize}-byte page`);
  };

  switch (key) {
    case 'populate':
    case 'balloon_out': {
      const a = argsOf(key);
      return { op: key, domain: a.domain, gfn: a.gfn, count: a.count, expect: exp(a, a.count), line };
    }
    case 'grant': {
      const a = argsOf('grant');
      return { op: 'grant', domain: a.domain, ref: a.ref, to: a.to, gfn: a.gfn, readonly: a.readonly, expect: exp(a), line };
    }
    case 'end_grant': {
      const a = argsOf('end_grant');
      return { op: 'end_grant', domain: a.domain, ref: a.ref, ...opt('to', a.to), ...opt('gfn', a.gfn), ...opt('readonly', a.readonly), expect: exp(a), line };
    }
    case 'map_grant': {
      const a = argsOf('map_grant');
      if (a.handle !== undefined) defined.add(a.handle);
      return { op: 'map_grant', domain: a.domain, from: a.from, ref: a.ref, at: a.at, readonly: a.readonly, ...opt('handle', a.handle), expect: exp(a), line };
    }
    case 'unmap_grant': {
      const a = argsOf('unmap_grant');
      if (a.handle === undefined && a.at === undefined) fail('handle', 'unmap_grant needs `handle` (from map_grant) or `at` (the mapped gfn)');
      useRef('handle', a.handle, 'handle');
      return {
        op: 'unmap_grant', domain: a.domain, ...opt('handle', a.handle), ...opt('at', a.at), ...opt('from', a.from), ...opt('ref', a.ref),
        expect: exp(a), line,
      };
    }
    case 'grant_copy': {
      const a = argsOf('grant_copy');
      const side = (domain: string | undefined, r: number | undefined, g: number | undefined, offset: number, keys: [string, string, string]): CopySide => {
        const [dk, rk, gk] = keys;
        if (g !== undefined && (domain !== undefined || r !== undefined)) fail(gk, `give either \`${gk}\` (a gfn of the caller) or \`${dk}\` and \`${rk}\` (a grant ref), not both`);
        if (g !== undefined) return { kind: 'gfn', gfn: g, offset };
        if (domain === undefined || r === undefined) return fail(domain === undefined ? dk : rk, `grant_copy needs \`${dk}\` and \`${rk}\` (a grant ref) or \`${gk}\` (a gfn of the caller)`);
        return { kind: 'ref', domain, ref: r, offset };
      };
      const srcSide = side(a.from, a.ref, a.gfn, a.src_offset, ['from', 'ref', 'gfn']);
      const dstSide = side(a.to, a.to_ref, a.to_gfn, a.dst_offset, ['to', 'to_ref', 'to_gfn']);
      return { op: 'grant_copy', domain: a.domain, src: srcSide, dst: dstSide, len: a.len, expect: exp(a), line };
    }
    case 'foreign_map': {
      const a = argsOf('foreign_map');
      return { op: 'foreign_map', by: a.by, from: a.from, gfn: a.gfn, at: a.at, expect: exp(a), line };
    }
    case 'foreign_unmap': {
      const a = argsOf('foreign_unmap');
      return { op: 'foreign_unmap', by: a.by, at: a.at, ...opt('from', a.from), ...opt('gfn', a.gfn), expect: exp(a), line };
    }
    case 'map': {
      const a = argsOf('map');
      let source: MapSource;
      if (a.gfn !== undefined && a.bar !== undefined) return fail('bar', 'give either `gfn` (backend RAM) or `bar` (+ `offset`), not both');
      if (a.bar !== undefined) {
        if (!ctx.deviceNames.includes(a.bar)) {
          const known = ctx.deviceNames.length === 0 ? 'the topology has no devices' : `devices are: ${ctx.deviceNames.join(', ')}`;
          fail('bar', `unknown device \`${a.bar}\`; ${known}${didYouMean(a.bar, ctx.deviceNames)}`);
        }
        source = { kind: 'bar', bar: a.bar, offset: a.offset ?? 0 };
      } else if (a.gfn !== undefined) {
        if (a.offset !== undefined) fail('offset', '`offset` goes with `bar`; with `gfn` the source starts at that gfn');
        source = { kind: 'ram', gfn: a.gfn };
      } else {
        return fail('gfn', 'map needs a source: `gfn` (backend RAM) or `bar` (a device name) with `offset`');
      }
      if (a.id !== undefined) defined.add(a.id);
      return {
        op: 'map', by: a.by, to: a.to, source, count: a.count, at: a.at, ...opt('type', a.type), ...opt('id', a.id), expect: exp(a), line,
      };
    }
    case 'revoke': {
      const a = argsOf('revoke');
      let target: RevokeTarget;
      if (a.id !== undefined) {
        if (a.domain !== undefined || a.domid !== undefined || a.gfn !== undefined) fail('id', 'give either `id` or (`domain`, `gfn`, `count`), not both');
        useRef('id', a.id, 'map id');
        target = { kind: 'id', id: a.id };
      } else if (a.domain !== undefined && a.domid !== undefined) {
        return fail('domid', 'give either `domain` (a name) or `domid` (a raw number), not both');
      } else if (a.domain !== undefined && a.gfn !== undefined) {
        target = { kind: 'range', domain: a.domain, gfn: a.gfn, count: a.count };
      } else if (a.domid !== undefined && a.gfn !== undefined) {
        target = { kind: 'range', domid: a.domid, gfn: a.gfn, count: a.count };
      } else {
        return fail(a.domain === undefined && a.domid === undefined ? 'domain' : 'gfn', 'revoke needs `id` (from map) or `domain` (or a raw `domid`) and `gfn` (and `count`)');
      }
      return { op: 'revoke', by: a.by, target, expect: exp(a), line };
    }
    case 'steal': {
      const a = argsOf('steal');
      return { op: 'steal', by: a.by, from: a.from, gfn: a.gfn, count: a.count, ...opt('into', a.into), expect: exp(a), line };
    }
    case 'return': {
      const a = argsOf('return');
      return { op: 'return', by: a.by, to: a.to, gfn: a.gfn, count: a.count, ...opt('at', a.at), expect: exp(a), line };
    }
    case 'read': {
      const a = argsOf('read');
      checkAccess(a.offset, a.width);
      if (a.value !== undefined && a.expect !== undefined) fail('value', 'give the expected value as `value` or `expect`, not both');
      const expect: Expect = a.value !== undefined ? { kind: 'value', value: a.value } : (a.expect ?? { kind: 'ok' });
      if (expect.kind === 'value') checkFits(expect.value, a.width, a.value !== undefined ? 'value' : 'expect');
      return { op: 'read', domain: a.domain, gfn: a.gfn, offset: a.offset, width: a.width, expect, line };
    }
    case 'write': {
      const a = argsOf('write');
      checkAccess(a.offset, a.width);
      checkFits(a.value, a.width, 'value');
      return { op: 'write', domain: a.domain, gfn: a.gfn, offset: a.offset, width: a.width, value: a.value, expect: exp(a), line };
    }
    case 'hypercall_copy': {
      const a = argsOf('hypercall_copy');
      return { op: 'hypercall_copy', domain: a.domain, gfn: a.gfn, dir: a.dir, bytes: a.bytes ?? pageSize, expect: exp(a), line };
    }
    case 'dma_read':
    case 'dma_write': {
      const a = argsOf(key);
      const dom = ctx.topology.domains.find((d) => d.name === a.domain);
      if (dom?.passthrough === undefined) fail('domain', `\`${a.domain}\` has no passthrough device to do DMA (give it \`passthrough: sync_pt\` or \`share_pt\` in the topology)`);
      checkAccess(a.offset, 4);
      if (key === 'dma_write') {
        checkFits(a.value!, 4, 'value');
        return { op: 'dma_write', domain: a.domain, gfn: a.gfn, offset: a.offset, value: Number(a.value), expect: exp(a), line };
      }
      if (a.value !== undefined && a.expect !== undefined) fail('value', 'give the expected value as `value` or `expect`, not both');
      const expect: Expect = a.value !== undefined ? { kind: 'value', value: a.value } : (a.expect ?? { kind: 'ok' });
      if (expect.kind === 'value') checkFits(expect.value, 4, a.value !== undefined ? 'value' : 'expect');
      return { op: 'dma_read', domain: a.domain, gfn: a.gfn, offset: a.offset, expect, line };
    }
    case 'iomem_permit': {
      const a = argsOf('iomem_permit');
      // dom0 (the first domain) issues it unless `by` says who. Above 2^53 the MFN is the nearest double: every such range is refused alike.
      return { op: 'iomem_permit', by: a.by ?? ctx.domainNames[0]!, domain: a.domain, start: Number(a.start), count: a.count, allow: a.allow, expect: exp(a), line };
    }
    case 'current_reservation':
    case 'maximum_reservation': {
      const a = argsOf(key);
      return { op: key, domain: a.domain, ...opt('of', a.of), expect: exp(a, 'pages'), line };
    }
    case 'set_mem_type': {
      const a = argsOf('set_mem_type');
      return { op: 'set_mem_type', by: a.by, domain: a.domain, gfn: a.gfn, count: a.count, type: a.type, expect: exp(a), line };
    }
    case 'set_ioreq_server_state': {
      const a = argsOf('set_ioreq_server_state');
      useRef('id', a.id, 'ioreq server id');
      return { op: 'set_ioreq_server_state', by: a.by, for: a.for, id: a.id, enabled: a.enabled, expect: exp(a), line };
    }
    case 'ioreq_answer': {
      const a = argsOf('ioreq_answer');
      if (!inHook) fail('state', '`ioreq_answer` is the device model storing into its ioreq page while a vCPU waits: put it in the steps of `on_hook: { hook: ioreq.wait }`');
      return { op: 'ioreq_answer', by: a.by, domain: a.domain, state: a.state, data: a.data, expect: exp(a), line };
    }
    case 'ioreq_server': {
      const a = argsOf('ioreq_server');
      if (a.id !== undefined) defined.add(a.id);
      return {
        op: 'ioreq_server', by: a.by, for: a.for, ranges: a.ranges.map((r) => ({ start: r.start, count: r.count })),
        fault_policy: a.fault_policy, ...opt('id', a.id), expect: exp(a), line,
      };
    }
    case 'destroy':
    case 'crash': {
      const a = argsOf(key);
      return { op: key, domain: a.domain, expect: exp(a), line };
    }
    case 'on_hook': {
      const a = argsOf('on_hook');
      const steps = parseSteps(ctx, a.steps, [...argsPath, 'steps'], defined, true, true);
      const k = steps.findIndex((s) => s.op === 'check');
      if (k >= 0) throw errorAt(src, [...argsPath, 'steps', k], '`check` cannot run inside a hypercall; put it after the step `on_hook` interposes in');
      return { op: 'on_hook', hook: a.hook, steps, line };
    }
    case 'concurrently': {
      const a = argsOf('concurrently');
      const after = new Set(defined);
      const threads = a.threads.map((t, j) => {
        const mine = new Set(defined);
        const steps = parseSteps(ctx, t, [...argsPath, 'threads', j], mine, true);
        for (const n of mine) after.add(n);
        return steps;
      });
      for (const n of after) defined.add(n);
      return { op: 'concurrently', repeat: a.repeat, threads, line };
    }
  }
}

// ---------------------------------------------------------------- loading

function fromSource(src: YamlSource): Scenario {
  const raw = validate(src, scenarioSchema);
  const name = raw.name ?? baseName(src.file);
  const topology = normalizeTopology(src, raw.topology, { path: ['topology'], forScenario: true, defaultName: name });
  const ctx: StepContext = {
    src,
    topology,
    domainNames: topology.domains.map((d) => d.name),
    deviceNames: topology.domains.flatMap((d) => d.devices.map((dev) => dev.name)),
  };
  const steps = parseSteps(ctx, raw.steps, ['steps'], new Set(), false);
  steps.forEach((s, i) => {
    const next = steps[i + 1];
    if (s.op === 'on_hook' && (next === undefined || next.op === 'on_hook' || next.op === 'check' || next.op === 'concurrently')) {
      throw errorAt(src, ['steps', i, 'on_hook'], '`on_hook` arms its hook point for the next step, which must be an operation (not `check`, `concurrently` or another `on_hook`)', { key: true });
    }
  });
  if (raw.buggify !== undefined && !(BUG_NAMES as readonly string[]).includes(raw.buggify)) {
    throw errorAt(src, ['buggify'], `unknown bug \`${raw.buggify}\`${didYouMean(raw.buggify, BUG_NAMES)} (known: ${BUG_NAMES.join(', ')})`);
  }
  return {
    name,
    ...(raw.description !== undefined ? { description: raw.description } : {}),
    ...(raw.skip !== undefined ? { skip: raw.skip } : {}),
    ...(raw.seed !== undefined ? { seed: raw.seed } : {}),
    ...(raw.timeout !== undefined ? { timeout_ms: raw.timeout } : {}),
    ...(raw.buggify !== undefined ? { buggify: raw.buggify as BugName } : {}),
    topology,
    steps,
  };
}

/** Parse scenario text; throws InputError naming `file:line:col` of the first problem. */
export function parseScenario(text: string, file: string): Scenario {
  return fromSource(parseYaml(text, file));
}

/** Read and parse a scenario file; throws InputError. */
export function loadScenario(file: string): Scenario {
  return fromSource(readYamlFile(file));
}
