/**
 * `xgsim scenario`: run declarative step-by-step scenarios (docs/formats.md),
 * XTF style — one verdict per file.
 *
 * Sequential steps run on the main thread, each on vCPU 0 of the domain
 * that issues it (only that vCPU is in guest mode meanwhile, so TLB
 * shootdowns never wait on an idle context). A `concurrently` step runs its
 * lists on separate worker threads, as vCPUs 1, 2, … of the domains they
 * use, released together by a gate; its outcomes are then explained: some
 * interleaving of the lists (each step atomic), replayed sequentially on a
 * copy of the machine taken just before, must give exactly the outcomes
 * seen — a linearizability check against the implementation's own
 * sequential semantics, which the rest of the scenarios pin down.
 */
// Registers the memory-sharing designs with the Xen core before any Machine is built (xen/design.ts).
import '../../hypervisor/designs/index.js';
import { Piscina } from 'piscina';
import type { CopySide as GuestCopySide, GuestOp, OpOutcome, Ref } from '../../domains/scenario-ops.js';
import { describeOutcome } from '../../domains/scenario-ops.js';
import { checkFramesConserved, checkNoLeaks, checkQuiescent } from '../../hypervisor/checker/checker.js';
import { domainCreate, domainDestroy, populateRange } from '../../hypervisor/xen/domain.js';
import { grantLimitsOf, toolstackSpec, p2mPoolPages, p2mSpec } from '../../hypervisor/host/host.js';
import { iomemAdd } from '../../hypervisor/xen/iomem.js';
import { DOM, DS } from '../../hypervisor/layout/domains.js';
import { createMachineSabs, Machine, type MachineSabs } from '../../hypervisor/xen/machine.js';
import { VcpuContext } from '../../hypervisor/xen/guest-cpu.js';
import { EFAULT, ENOENT, ESRCH } from '../../hypervisor/public/errno.js';
import { IOREQ_STATE } from '../../hypervisor/public/ioreq.js';
import { IOS } from '../../hypervisor/layout/ioreq-slots.js';
import { P2M } from '../../hypervisor/public/types.js';
import { entryMfn, entryType } from '../../hypervisor/layout/p2m.js';
import { p2mGet } from '../../hypervisor/xen/p2m.js';
import { getPage, putPage } from '../../hypervisor/xen/mm.js';
import { dmReturnRevokePhase } from '../../hypervisor/designs/primitives/return.js';
import { runOnVcpu, type ScenarioThreadResult, type ScenarioThreadTask, type ThreadOp } from '../../hypervisor/host/scenario-worker.js';
import { distModule } from '../../hypervisor/host/worker-path.js';
import type { CopySide, Expect, HandleRef, Scenario, Step } from '../config/scenario.js';
import { interleavings } from '../../hypervisor/model/interleave.js';
import { armHook, disarmHooks } from '../../hypervisor/xen/hooks.js';
import { HypervisorBug } from '../../hypervisor/layout/region.js';
import { LockFault } from '../../hypervisor/xen/locks.js';
import { type BugSet } from '../../hypervisor/xen/buggify.js';

/** Orders enumerated to check the `expect`s of a `concurrently` step; beyond it they are not checked. */
const EXPECT_CHECK_ORDERS = 400;

export type Verdict = 'SUCCESS' | 'FAILURE' | 'ERROR' | 'SKIP';
export interface ScenarioResult {
  file: string;
  name: string;
  verdict: Verdict;
  reason: string;
  step?: number;
  expected?: string;
  got?: string;
  /** Wall time of the run (JUnit's `time`); reported, never asserted on. */
  time_ms?: number;
}

export interface RunOptions {
  buggify: BugSet;
  seed: number;
  pool?: Piscina;
}

class StepFailure extends Error {
  constructor(
    readonly line: number,
    readonly expected: string,
    readonly got: string,
    message: string,
  ) {
    super(message);
  }
}

type Leaf = Exclude<Step, { op: 'concurrently' } | { op: 'check' } | { op: 'on_hook' }>;
type OnHook = Extract<Step, { op: 'on_hook' }>;

/**
 * What one leaf step becomes: the issuing domain and its guest op, a
 * toolstack action, or a device model's store into its ioreq page.
 */
type Plan =
  | { kind: 'guest'; domid: number; op: GuestOp }
  | { kind: 'toolstack-destroy'; domid: number }
  | { kind: 'ioreq-store'; by: number; domid: number; state: number; data: number };

export function maxThreads(steps: readonly Step[]): number {
  return steps.reduce((n, s) => (s.op === 'concurrently' ? Math.max(n, s.threads.length) : n), 0);
}

export function newScenarioPool(threads: number): Piscina {
  return new Piscina({ filename: distModule('hypervisor/host/scenario-worker'), minThreads: threads, maxThreads: threads, idleTimeout: Infinity, concurrentTasksPerWorker: 1 });
}

export async function runScenario(file: string, sc: Scenario, o: RunOptions): Promise<ScenarioResult> {
  const base = { file, name: sc.name };
  if (sc.skip !== undefined) return { ...base, verdict: 'SKIP', reason: sc.skip };
  const runner = new Runner(sc, o);
  try {
    await runner.run();
    const v = runner.m.log.records();
    if (v.length > 0) return { ...base, verdict: 'FAILURE', reason: `invariant ${v[0]!.invariant}: ${v[0]!.text}` };
    return { ...base, verdict: 'SUCCESS', reason: `${sc.steps.length} steps` };
  } catch (e) {
    if (e instanceof StepFailure) return { ...base, verdict: 'FAILURE', reason: e.message, step: e.line, expected: e.expected, got: e.got };
    return { ...base, verdict: 'ERROR', reason: e instanceof Error ? e.message : String(e) };
  } finally {
    await runner.close();
  }
}

class Runner {
  readonly sabs: MachineSabs;
  readonly m: Machine;
  private readonly domid = new Map<string, number>();
  private readonly bars = new Map<string, { base: number; pages: number }>();
  private readonly names = new Map<string, number>();
  private readonly threads: number;
  /** The vCPU offset `on_hook` steps run on: one past the `concurrently` threads' (0 when the scenario has none). */
  private readonly hookOffset: number;
  private pool: Piscina | undefined;
  /** Machine copies for `concurrently`'s snapshots and the explainer, recycled (Copies). */
  private readonly copies = new Copies();
  private readonly ownPool: boolean;

  constructor(
    readonly sc: Scenario,
    readonly o: RunOptions,
  ) {
    const t = sc.topology;
    this.threads = maxThreads(sc.steps);
    const hooks = sc.steps.some((s) => s.op === 'on_hook');
    this.hookOffset = hooks ? 1 + this.threads : 0;
    const vcpus = (n: number): number => Math.max(n, 1 + this.threads + (hooks ? 1 : 0));
    const specs = t.domains.map((d) => ({ ...d, vcpus: vcpus(d.vcpus) }));
    this.sabs = createMachineSabs({
      nr_frames: t.host.frames,
      page_size_bytes: t.host.page_size_bytes,
      p2m_pool_pages: specs.reduce((a, d) => a + p2mPoolPages(d), 0),
      bars: t.domains.flatMap((d) => d.devices.map((dev) => ({ name: dev.name, owner: d.domid, nr_pages: dev.bar_pages }))),
      checking: true,
      buggify: o.buggify,
      seed: o.seed,
      transitive_revoke: t.transitive_revoke,
      // Only the slots the scenario uses: `concurrently` copies the machine per replayed order.
      max_domains: t.domains.length,
      grant_limits: grantLimitsOf(t.domains),
      ...(t.design !== undefined ? { design: t.design } : {}),
    });
    this.m = new Machine(this.sabs);
    for (const d of t.domains) this.domid.set(d.name, d.domid);
    for (const d of specs) {
      const backend = d.backend !== undefined ? this.domid.get(d.backend) : undefined;
      const id = domainCreate(this.m, { domid: d.domid, max_pages: d.max_pages, nr_vcpus: d.vcpus, ...p2mSpec(d), ...toolstackSpec(d), privileged: d.privileged, ...(backend !== undefined ? { backend } : {}) });
      if (id !== d.domid) throw new Error(`creating ${d.name}: ${id}`);
      const rc = populateRange(this.m, d.domid, 0, d.memory_pages);
      if (rc < 0) throw new Error(`populating ${d.name}: ${rc}`);
    }
    for (const b of this.sabs.bars) {
      iomemAdd(this.m, b.owner, b.base_mfn, b.nr_pages);
      this.bars.set(b.name, { base: b.base_mfn, pages: b.nr_pages });
    }
    this.ownPool = o.pool === undefined;
    this.pool = o.pool;
  }

  async close(): Promise<void> {
    if (this.ownPool && this.pool !== undefined) await this.pool.destroy();
  }

  async run(): Promise<void> {
    const main = new Contexts(this.m, 0, this.o.seed);
    const interposer = new Contexts(this.m, this.hookOffset, this.o.seed);
    let hook: OnHook | undefined;
    for (const step of this.sc.steps) {
      if (step.op === 'on_hook') hook = step;
      else if (step.op === 'check') this.check(step.checks, step.line);
      else if (step.op === 'concurrently') await this.concurrently(step);
      else {
        this.leafStep(step, main, interposer, hook);
        hook = undefined;
      }
    }
    // Every scenario ends with the machine checked at rest.
    checkQuiescent(this.m);
  }

  /**
   * One sequential step; with `hook`, the hook's steps run at its point
   * inside this one, on vCPUs of their own (`interposer`), and their
   * `expect`s are checked after this step's. A fatal hypervisor assertion
   * (HypervisorBug, LockFault) is the run failing loudly (docs/semantics.md §3): a
   * FAILURE of the step, not an ERROR of the scenario.
   */
  private leafStep(step: Leaf, main: Contexts, interposer: Contexts, hook: OnHook | undefined): void {
    const nested: Array<[Leaf, OpOutcome]> = [];
    const armed = hook === undefined ? undefined : this.armOnHook(hook, interposer, nested);
    let got: OpOutcome;
    let missed = false;
    try {
      got = execPlan(this.m, main, this.plan(step), this.names);
    } catch (e) {
      if (e instanceof HypervisorBug || e instanceof LockFault) {
        throw new StepFailure(step.line, expectName(step.expect), `${e.name}: ${e.message}`, `line ${step.line}: ${step.op}: fatal hypervisor assertion: ${e.message}`);
      }
      throw e;
    } finally {
      if (hook !== undefined) missed = disarmHooks(hook.hook) && armed?.done !== true;
    }
    if (hook !== undefined && missed) {
      const what = armed !== undefined && armed.ran > 0 ? `reached only ${armed.ran} time(s), for ${hook.steps.length} steps,` : 'never reached';
      throw new StepFailure(hook.line, `hook ${hook.hook} reached`, what, `line ${hook.line}: on_hook ${hook.hook}: the hook point was ${what} during the step at line ${step.line}`);
    }
    this.expectOne(step, got);
    for (const [s, o] of nested) this.expectOne(s, o);
  }

  /**
   * Arm `hook`'s point for the next step. At `ioreq.wait` the steps run one
   * per wait, so the waiting vCPU sees each state a device model stores
   * before the next is stored (a backward move needs two); once they are
   * all done, a further wait means the ioreq was left pending, which no
   * one else would ever answer here: the scenario is an ERROR. `done`:
   * every step ran; `ran`: how often the point was reached.
   */
  private armOnHook(hook: OnHook, interposer: Contexts, nested: Array<[Leaf, OpOutcome]>): { done: boolean; ran: number } {
    const state = { done: false, ran: 0 };
    const queue = [...hook.steps];
    const perWait = hook.hook === 'ioreq.wait';
    const fire = (): void => {
      state.ran++;
      for (const s of perWait ? queue.splice(0, 1) : queue.splice(0)) nested.push([s as Leaf, execPlan(this.m, interposer, this.leaf(s), this.names)]);
      if (queue.length > 0) armHook(hook.hook, fire);
      else if (perWait) {
        state.done = true;
        armHook(hook.hook, () => {
          throw new Error(`line ${hook.line}: on_hook ioreq.wait: the ioreq still waits after the last of its steps; end it with IORESP_READY, or a state the hypervisor refuses`);
        });
      }
    };
    armHook(hook.hook, fire);
    return state;
  }

  private check(checks: readonly string[], line: number): void {
    const before = this.m.log.totalViolations();
    for (const c of checks) {
      if (c === 'invariants') checkQuiescent(this.m);
      else if (c === 'frames_conserved') checkFramesConserved(this.m);
      else if (c === 'no_leaks') checkNoLeaks(this.m);
    }
    if (this.m.log.totalViolations() > before) {
      const v = this.m.log.records().slice(-1)[0];
      throw new StepFailure(line, checks.join(', '), v === undefined ? 'violations' : `${v.invariant}: ${v.text}`, `line ${line}: check ${checks.join(', ')}: ${v?.invariant}: ${v?.text}`);
    }
  }

  private expectOne(step: Leaf, got: OpOutcome): void {
    if (!matches(step.expect, got)) {
      const exp = expectName(step.expect);
      throw new StepFailure(step.line, exp, describeOutcome(got), `line ${step.line}: ${step.op} expected ${exp}, got ${describeOutcome(got)}`);
    }
  }

  /** Resolve names and numbers: which domain issues the step, and what it does. */
  plan(s: Leaf): Plan {
    const dom = (name: string): number => {
      const d = this.domid.get(name);
      if (d === undefined) throw new Error(`unknown domain ${name}`);
      return d;
    };
    const ref = (h: HandleRef): Ref => (h.kind === 'name' ? { kind: 'name', name: h.name } : { kind: 'raw', value: h.value });
    const g = (d: number, op: GuestOp): Plan => ({ kind: 'guest', domid: d, op });
    switch (s.op) {
      case 'populate':
      case 'balloon_out':
        return g(dom(s.domain), { op: s.op, gfn: s.gfn, count: s.count });
      case 'grant':
        return g(dom(s.domain), { op: 'grant', ref: s.ref, to: dom(s.to), gfn: s.gfn, readonly: s.readonly });
      case 'end_grant':
        return g(dom(s.domain), { op: 'end_grant', ref: s.ref });
      case 'map_grant':
        return g(dom(s.domain), { op: 'map_grant', from: dom(s.from), ref: s.ref, at: s.at, readonly: s.readonly, ...(typeof s.handle === 'string' ? { name: s.handle } : {}) });
      case 'unmap_grant':
        return g(dom(s.domain), { op: 'unmap_grant', ...(s.handle !== undefined ? { handle: ref(s.handle) } : {}), ...(s.at !== undefined ? { at: s.at } : {}) });
      case 'grant_copy': {
        const side = (c: CopySide): GuestCopySide => (c.kind === 'ref' ? { kind: 'ref', dom: dom(c.domain), ref: c.ref, offset: c.offset } : c);
        return g(dom(s.domain), { op: 'grant_copy', src: side(s.src), dst: side(s.dst), len: s.len });
      }
      case 'foreign_map':
        return g(dom(s.by), { op: 'foreign_map', from: dom(s.from), gfn: s.gfn, at: s.at });
      case 'foreign_unmap':
        return g(dom(s.by), { op: 'foreign_unmap', at: s.at });
      case 'map': {
        // (bar, offset) names machine frames of that BAR; a range leaving the
        // BAR becomes an MFN no BAR has, so the dm_op refuses it (-EINVAL).
        const barMfn = (bar: string, offset: number, count: number): number => {
          const b = this.bars.get(bar);
          return b === undefined || offset < 0 || offset + count > b.pages ? -1 : b.base + offset;
        };
        const source = s.source.kind === 'ram' ? { kind: 'ram' as const, gfn: s.source.gfn } : { kind: 'bar' as const, mfn: barMfn(s.source.bar, s.source.offset, s.count) };
        return g(dom(s.by), { op: 'map', fe: dom(s.to), source, count: s.count, at: s.at, type: s.type ?? 'mmio_direct', ...(s.id !== undefined ? { name: s.id } : {}) });
      }
      case 'revoke': {
        const t = s.target;
        const fe = (r: Exclude<typeof t, { kind: 'id' }>): number => ('domid' in r ? r.domid : dom(r.domain));
        return g(dom(s.by), { op: 'revoke', target: t.kind === 'id' ? { kind: 'id', id: ref(t.id) } : { kind: 'range', fe: fe(t), gfn: t.gfn, count: t.count } });
      }
      case 'steal':
        return g(dom(s.by), { op: 'steal', fe: dom(s.from), gfn: s.gfn, count: s.count, ...(s.into !== undefined ? { into: s.into } : {}) });
      case 'return':
        return g(dom(s.by), { op: 'return', fe: dom(s.to), gfn: s.gfn, count: s.count, ...(s.at !== undefined ? { at: s.at } : {}) });
      case 'read':
        return g(dom(s.domain), { op: 'read', gfn: s.gfn, offset: s.offset, width: s.width });
      case 'write':
        return g(dom(s.domain), { op: 'write', gfn: s.gfn, offset: s.offset, width: s.width, value: s.value });
      case 'hypercall_copy':
        return g(dom(s.domain), { op: 'hypercall_copy', gfn: s.gfn, dir: s.dir, bytes: s.bytes });
      case 'dma_read':
        return g(dom(s.domain), { op: 'dma_read', gfn: s.gfn, offset: s.offset });
      case 'dma_write':
        return g(dom(s.domain), { op: 'dma_write', gfn: s.gfn, offset: s.offset, value: s.value });
      case 'iomem_permit':
        return g(dom(s.by), { op: 'iomem_permit', dom: dom(s.domain), start: s.start, count: s.count, allow: s.allow });
      case 'current_reservation':
      case 'maximum_reservation':
        return g(dom(s.domain), { op: s.op, ...(s.of !== undefined ? { of: dom(s.of) } : {}) });
      case 'set_mem_type':
        return g(dom(s.by), { op: 'set_mem_type', fe: dom(s.domain), gfn: s.gfn, count: s.count, type: s.type });
      case 'ioreq_server':
        return g(dom(s.by), {
          op: 'ioreq_server', fe: dom(s.for), ranges: s.ranges.map((r) => ({ start: r.start, count: r.count })), policy: s.fault_policy, ...(s.id !== undefined ? { name: s.id } : {}),
        });
      case 'set_ioreq_server_state':
        return g(dom(s.by), { op: 'set_ioreq_server_state', fe: dom(s.for), id: ref(s.id), enabled: s.enabled });
      case 'ioreq_answer':
        return { kind: 'ioreq-store', by: dom(s.by), domid: dom(s.domain), state: s.state, data: s.data };
      case 'destroy': {
        const d = dom(s.domain);
        // dom0 destroys others with a domctl; dom0 itself (or anything once dom0 is gone) goes by the toolstack.
        return d === 0 || this.m.dom.state(0) !== DS.RUNNING ? { kind: 'toolstack-destroy', domid: d } : g(0, { op: 'destroy', dom: d });
      }
      case 'crash':
        return g(dom(s.domain), { op: 'crash' });
    }
  }

  private async concurrently(step: Extract<Step, { op: 'concurrently' }>): Promise<void> {
    this.pool ??= newScenarioPool(this.threads);
    for (let rep = 0; rep < step.repeat; rep++) {
      const plans = step.threads.map((list) => list.map((s) => this.leaf(s)));
      const snapshot = this.copies.copy(this.sabs);
      const namesBefore = new Map(this.names);
      const gate = new SharedArrayBuffer(8);
      const tasks = plans.map((list, t) => {
        const ops: ThreadOp[] = list.map((p) => {
          if (p.kind !== 'guest') throw new Error('destroy of dom0 cannot run inside `concurrently`');
          return { domid: p.domid, slot: this.m.dom.at(p.domid, DOM.VCPU_BASE) + 1 + t, op: p.op };
        });
        const task: ScenarioThreadTask = { kind: 'scenario-thread', sabs: this.sabs, gate, ops, names: [...this.names], seed: this.o.seed + rep };
        return this.pool!.run(task) as Promise<ScenarioThreadResult>;
      });
      const g = new Int32Array(gate);
      while (Atomics.load(g, 1) < tasks.length) await new Promise((r) => setImmediate(r));
      Atomics.store(g, 0, 1);
      const results = await Promise.all(tasks);
      const observed = results.map((r) => r.outcomes.map(describeOutcome));
      for (const r of results) for (const [k, v] of r.names) if (!namesBefore.has(k) || namesBefore.get(k) !== v) this.names.set(k, v);
      if (!explainable(this.copies, snapshot, plans, observed, namesBefore, this.o.seed)) {
        const seen = observed.map((o) => `[${o.join(', ')}]`).join(' ');
        throw new StepFailure(step.line, 'an outcome some sequential order allows', seen, `line ${step.line}: concurrently (repetition ${rep + 1}): outcomes ${seen} are not those of any sequential order`);
      }
      // An `expect` inside `concurrently` must be what some order gives
      // (checked on the first repetition, where the orders are few enough).
      const possible = rep === 0 ? possibleOutcomes(this.copies, snapshot, plans, namesBefore, this.o.seed, EXPECT_CHECK_ORDERS) : undefined;
      if (possible !== undefined) {
        step.threads.forEach((list, t) =>
          list.forEach((s, k) => {
            if (s.op === 'concurrently' || s.op === 'check' || s.op === 'on_hook') return;
            const can = possible[t]![k]!;
            if (![...can].some((o) => matchesDescribed(s.expect, o))) {
              throw new StepFailure(s.line, expectName(s.expect), [...can].join(' | '), `line ${s.line}: expected ${expectName(s.expect)}, but no sequential order gives it (possible: ${[...can].join(' | ')})`);
            }
          }),
        );
      }
      this.copies.give(snapshot);
    }
  }

  private leaf(s: Step): Plan {
    if (s.op === 'concurrently' || s.op === 'check' || s.op === 'on_hook') throw new Error(`${s.op} cannot be nested in concurrently`);
    return this.plan(s);
  }
}

/** vCPU contexts of one thread for every domain: slot = domain's first vCPU + offset. */
class Contexts {
  private readonly byDom = new Map<number, VcpuContext>();
  constructor(
    readonly m: Machine,
    readonly offset: number,
    readonly seed: number,
  ) {}
  get(d: number): VcpuContext {
    let c = this.byDom.get(d);
    if (c === undefined) {
      c = new VcpuContext(this.m, { domid: d, vcpu: this.offset, slot: this.m.dom.at(d, DOM.VCPU_BASE) + this.offset, memory_pages: 0, seed: this.seed + d });
      this.byDom.set(d, c);
    }
    return c;
  }
}

function execPlan(m: Machine, ctx: Contexts, p: Plan, names: Map<string, number>): OpOutcome {
  if (p.kind === 'toolstack-destroy') return { kind: 'rc', rc: domainDestroy(m, p.domid) };
  if (p.kind === 'ioreq-store') return { kind: 'rc', rc: ioreqStore(m, p) };
  if (m.dom.state(p.domid) !== DS.RUNNING) return { kind: 'rc', rc: -ESRCH };
  return runOnVcpu(ctx.get(p.domid), p.op, names);
}

/**
 * `ioreq_answer`: device model `by` stores into the ioreq page it has
 * mapped (in Xen, acquired with XENMEM_acquire_resource and written by the
 * emulator directly, no hypercall): the data, then the state, of the
 * ioreq a vCPU of `domid` waits on for one of `by`'s servers. The
 * hypervisor's wait (ioreq.ts sendIoreq, Xen's wait_for_io) judges the
 * state it then sees. No such ioreq → -ENOENT.
 */
function ioreqStore(m: Machine, p: Extract<Plan, { kind: 'ioreq-store' }>): number {
  const slots = m.ios.slots;
  const base = m.dom.at(p.domid, DOM.VCPU_BASE);
  for (let v = 0; v < m.dom.at(p.domid, DOM.NR_VCPUS); v++) {
    const i = m.ios.idx(base + v);
    const st = Atomics.load(slots, i + IOS.STATE);
    if ((st !== IOREQ_STATE.READY && st !== IOREQ_STATE.INPROCESS) || slots[i + IOS.TARGET] !== p.domid) continue;
    if (m.ioreq.owner(p.domid, slots[i + IOS.SERVER]!) !== p.by) continue;
    slots[i + IOS.DATA] = p.data | 0;
    Atomics.store(slots, i + IOS.STATE, p.state);
    Atomics.notify(slots, i + IOS.STATE);
    return 0;
  }
  return -ENOENT;
}

/** `s` copied byte for byte into `into`'s buffers (a machine of the same config), or into new ones. */
function copySabs(s: MachineSabs, into: MachineSabs | undefined): MachineSabs {
  const copy = (b: SharedArrayBuffer, to: SharedArrayBuffer | undefined): SharedArrayBuffer => {
    const n = to ?? new SharedArrayBuffer(b.byteLength);
    if (n.byteLength !== b.byteLength) throw new Error('copySabs: machines of different sizes');
    new Uint8Array(n).set(new Uint8Array(b));
    return n;
  };
  return {
    config: s.config,
    control: copy(s.control, into?.control),
    frames: copy(s.frames, into?.frames),
    frametable: copy(s.frametable, into?.frametable),
    heap: copy(s.heap, into?.heap),
    domains: copy(s.domains, into?.domains),
    p2m: copy(s.p2m, into?.p2m),
    grants: copy(s.grants, into?.grants),
    vcpus: copy(s.vcpus, into?.vcpus),
    locks: copy(s.locks, into?.locks),
    log: copy(s.log, into?.log),
    store: copy(s.store, into?.store),
    design: copy(s.design, into?.design),
    ioreq: copy(s.ioreq, into?.ioreq),
    ioreqSlots: copy(s.ioreqSlots, into?.ioreqSlots),
    reach: copy(s.reach, into?.reach),
    bars: s.bars.map((b, k) => ({ ...b, sab: copy(b.sab, into?.bars[k]?.sab) })),
  };
}

/**
 * A scenario's machine copies (the snapshots and the explainer's branches),
 * recycled: the explainer tries many orders, each on a copy of an 11 MB
 * machine, and V8 collects shared memory late — adversary-fault-storm (3
 * threads × 20 repetitions) allocated 260 copies, and with them the scenario
 * list grew its process past 8 GB (2026-12-07). A copy no longer looked at
 * is given back and overwritten by the next.
 */
class Copies {
  private readonly free: MachineSabs[] = [];
  /** Buffers holding `s`'s memory, byte for byte. */
  copy(s: MachineSabs): MachineSabs {
    return copySabs(s, this.free.pop());
  }
  /** A machine whose memory is `s`'s. */
  take(s: MachineSabs): Machine {
    return new Machine(this.copy(s));
  }
  /** `s` will not be looked at again: its buffers go to the next copy. */
  give(s: MachineSabs): void {
    this.free.push(s);
  }
}

/**
 * How a step looks to the sequential rules. Most steps are atomic. Two are
 * not, because other vCPUs can see them half done: a hypercall copy holds
 * its page references while it copies (a Steal meanwhile is -EBUSY), and a
 * Return revokes the pages' Maps before it hands them back (an access
 * meanwhile faults). Those replay as two events; the outcome is the first
 * event's for a copy, the second's for a Return.
 */
type Event = { plan: Plan; phase: 'whole' | 'begin' | 'end' | 'prepare'; step: number };

function events(list: readonly Plan[]): Event[] {
  return list.flatMap((plan, step): Event[] => {
    if (plan.kind === 'guest' && plan.op.op === 'hypercall_copy') return [{ plan, phase: 'begin', step }, { plan, phase: 'end', step }];
    if (plan.kind === 'guest' && plan.op.op === 'return') return [{ plan, phase: 'prepare', step }, { plan, phase: 'whole', step }];
    return [{ plan, phase: 'whole', step }];
  });
}

/** A replay branch: a machine of its own, its vCPU contexts, names, references held by half-done copies. */
class Branch {
  readonly ctxs: Contexts[];
  constructor(
    readonly m: Machine,
    threads: number,
    seed: number,
    readonly names: Map<string, number>,
    readonly held: Map<string, number[]>,
  ) {
    this.ctxs = Array.from({ length: threads }, (_, t) => new Contexts(m, 1 + t, seed));
  }
  fork(copies: Copies, seed: number): Branch {
    return new Branch(copies.take(this.m.sabs), this.ctxs.length, seed, new Map(this.names), new Map([...this.held].map(([k, v]) => [k, [...v]])));
  }
}

/** Apply one event; returns the step's outcome when this event decides it. */
function applyEvent(b: Branch, t: number, e: Event): string | undefined {
  const p = e.plan;
  if (e.phase === 'whole') return describeOutcome(execPlan(b.m, b.ctxs[t]!, p, b.names));
  if (p.kind !== 'guest') return undefined;
  const key = `${t}:${e.step}`;
  if (e.phase === 'prepare' && p.op.op === 'return') {
    dmReturnRevokePhase(b.m, p.domid, { fe: p.op.fe, gfn: p.op.gfn, count: p.op.count, ...(p.op.at !== undefined ? { at: p.op.at } : {}) });
    return undefined;
  }
  if (p.op.op !== 'hypercall_copy') return undefined;
  if (e.phase === 'begin') {
    if (b.m.dom.state(p.domid) !== DS.RUNNING) return describeOutcome({ kind: 'rc', rc: -ESRCH });
    const rc = holdBufferPages(b.m, p.domid, p.op.gfn, p.op.bytes, p.op.dir, b.held, key);
    return describeOutcome({ kind: 'rc', rc });
  }
  for (const mfn of b.held.get(key) ?? []) putPage(b.m, mfn);
  b.held.delete(key);
  return undefined;
}

/** The first half of copy_{from,to}_guest: look up and reference every page of the buffer. */
function holdBufferPages(m: Machine, d: number, gfn: number, bytes: number, dir: 'from_guest' | 'to_guest', held: Map<string, number[]>, key: string): number {
  const ps = m.config.page_size_bytes;
  const got: number[] = [];
  for (let g = gfn; g < gfn + Math.max(1, Math.ceil(bytes / ps)); g++) {
    const e = p2mGet(m, d, g);
    const t = entryType(e);
    const mfn = entryMfn(e);
    const usable = e !== 0 && (t === P2M.ram_rw || (dir === 'from_guest' && t === P2M.ram_ro));
    if (!usable || !getPage(m, mfn, d)) {
      for (const x of got) putPage(m, x);
      return -EFAULT;
    }
    got.push(mfn);
  }
  held.set(key, got);
  return 0;
}

/**
 * Is there an interleaving of the threads' events, each step atomic but for
 * the splits above, whose outcomes are exactly `observed`? Depth-first from
 * the snapshot, cloning only where the search branches and abandoning an
 * order at its first mismatch.
 */
function explainable(copies: Copies, snapshot: MachineSabs, plans: Plan[][], observed: string[][], names: Map<string, number>, seed: number): boolean {
  const evs = plans.map(events);
  const pos = evs.map(() => 0);
  const go = (b: Branch): boolean => {
    const ready = evs.map((_, t) => t).filter((t) => pos[t]! < evs[t]!.length);
    if (ready.length === 0) return true;
    for (let k = 0; k < ready.length; k++) {
      const t = ready[k]!;
      const next = k === ready.length - 1 ? b : b.fork(copies, seed);
      const e = evs[t]![pos[t]!]!;
      const o = applyEvent(next, t, e);
      let ok = false;
      if (o === undefined || o === observed[t]![e.step]) {
        pos[t]!++;
        ok = go(next);
        pos[t]!--;
      }
      // Found or not, the copy made for this order is never looked at again (`b` is the caller's to give).
      if (next !== b) copies.give(next.m.sabs);
      if (ok) return true;
    }
    return false;
  };
  const root = new Branch(copies.take(snapshot), plans.length, seed, new Map(names), new Map());
  const ok = go(root);
  copies.give(root.m.sabs);
  return ok;
}

/** Every outcome each step can have over all interleavings (bounded; for checking `expect`s). */
function possibleOutcomes(copies: Copies, snapshot: MachineSabs, plans: Plan[][], names: Map<string, number>, seed: number, limit: number): Array<Array<Set<string>>> | undefined {
  const evs = plans.map(events);
  const possible = plans.map((l) => l.map(() => new Set<string>()));
  let n = 0;
  // Each list's events named by its thread index: a merge of them is an order of threads.
  for (const order of interleavings(evs.map((l, t) => l.map(() => t)))) {
    if (++n > limit) return undefined;
    const b = new Branch(copies.take(snapshot), plans.length, seed, new Map(names), new Map());
    const pos = evs.map(() => 0);
    for (const t of order) {
      const e = evs[t]![pos[t]!++]!;
      const o = applyEvent(b, t, e);
      if (o !== undefined) possible[t]![e.step]!.add(o);
    }
    copies.give(b.m.sabs);
  }
  return possible;
}

export function matches(e: Expect, o: OpOutcome): boolean {
  switch (e.kind) {
    case 'ok':
      if (o.kind === 'extents') return o.done === o.count;
      if (o.kind === 'pages') return true;
      return o.kind === 'rc' ? o.rc === 0 : o.kind === 'gntst' ? o.status === 0 : o.access === 'ok' || o.access === 'null_io';
    case 'errno':
      return o.kind === 'rc' && o.rc === -e.errno;
    case 'gntst':
      return o.kind === 'gntst' && o.status === e.status;
    case 'fault':
      return (o.kind === 'read' || o.kind === 'write') && (o.access === 'fault' || o.access === 'gp');
    case 'ioreq':
      return (o.kind === 'read' || o.kind === 'write') && o.access === 'ioreq';
    case 'iommu_fault':
      return (o.kind === 'read' || o.kind === 'write') && o.access === 'iommu_fault';
    case 'value':
      // A read's value — one the guest got: a faulting access gives it none — or the extents a memory_op did.
      return (
        (o.kind === 'read' && o.access !== 'fault' && o.access !== 'gp' && o.access !== 'iommu_fault' && o.value === e.value) ||
        (o.kind === 'extents' && BigInt(o.done) === e.value) ||
        (o.kind === 'pages' && BigInt(o.value) === e.value)
      );
  }
}

/** The same test on an outcome's description (for the outcomes of replayed orders). */
function matchesDescribed(e: Expect, d: string): boolean {
  switch (e.kind) {
    case 'ok':
      return d === 'OK' || d === 'GNTST 0' || d === 'ok' || d === 'null_io' || d.startsWith('ok ') || d.startsWith('null_io ') || d.endsWith(' pages');
    case 'errno':
      return d === `rc ${-e.errno}`;
    case 'gntst':
      return d === `GNTST ${e.status}`;
    case 'fault':
      return /^(fault|gp)\b/.test(d);
    case 'ioreq':
      return /^ioreq\b/.test(d);
    case 'iommu_fault':
      return /^iommu_fault\b/.test(d);
    case 'value':
      return (!/^(fault|gp|iommu_fault)\b/.test(d) && new RegExp(`^\\w+ 0x${e.value.toString(16)}$`).test(d)) || d.startsWith(`${e.value} of `) || d === `${e.value} pages`;
  }
}

export function expectName(e: Expect): string {
  switch (e.kind) {
    case 'ok':
      return 'OK';
    case 'errno':
    case 'gntst':
      return e.name;
    case 'fault':
      return 'FAULT';
    case 'ioreq':
      return 'IOREQ';
    case 'iommu_fault':
      return 'IOMMU_FAULT';
    case 'value':
      return `0x${e.value.toString(16)}`;
  }
}
