/**
 * Comparison plans (`xgsim compare <plan.yaml>`, docs/designs.md, issue 15):
 * designs × workloads × seeds, each cell run on real threads.
 *
 *   name: designs-smoke
 *   duration: 1500ms            # each run of a threaded workload
 *   seeds: [11, 12]             # the same seeds for every design
 *   pcpus: 2                    # optional (default: the host's `auto`)
 *   designs:
 *     - primitives
 *     - { design: lending, name: lending-unsafe, buggify: [lending-revoke-skip-flush] }
 *   workloads:
 *     - { kind: grant-ping, guests: 2 }
 *     - { kind: render, guests: 1, name: render }
 *     - { kind: refusals }       # the design's refusal scenarios (design-<name>-*.yaml)
 *
 * Decisions:
 * - A design entry is a registered design's name, or a variant of one: a
 *   name of its own and the XGSIM_BUGGIFY bugs it runs with (an "unsafe
 *   variant", which the table must show unsafe). The plan's variants add to
 *   the bugs of XGSIM_BUGGIFY, which apply to every cell.
 * - A workload is a kind the topology knows (idle, grant-ping, render,
 *   compute-svm, adversary) run by `guests` frontends of dom0; `pressure`:
 *   a memory-pressure storm in dom0 (its MMU notifier evicting at
 *   `evictions_per_s`, default 2000/s) under guests that alternate render
 *   and compute-svm; or `refusals`: the design's refusal scenarios, run as
 *   `xgsim scenario` runs them. Every design runs every kind, each sharing
 *   buffers through its own adapter (domains/gpu/sharing.ts).
 * - `missing_page: zero` (a lending design entry): the GPU device model
 *   answers a FAULT it has no page for with a zeroed page of its own lent
 *   there (docs/designs.md §2 rule 6), not an injected fault.
 * - `buffers`, `buffer_pages` (GPU kinds): per guest, default 4 of up to 4
 *   pages; `resident` (render): the guests keep their buffers shared
 *   between rounds (full size), as a compositor keeps its windows' surfaces;
 *   `dom0_max_maptrack_frames`: dom0's maptrack limit (Xen's
 *   max_maptrack_frames) — with resident buffers, a cell where grants, which
 *   needs a maptrack handle per shared page, runs out (GNTST_no_space).
 * - `evictions_per_s` (GPU kinds): dom0's memory pressure; default 100/s
 *   for render and compute-svm (blob eviction), 20/s for the adversary.
 * - Names (a design's `name`, a workload's `name`, default its kind) are
 *   unique: they are the table's rows and columns.
 */
import { z } from 'zod';
import { DESIGN_NAMES } from '../../hypervisor/designs/index.js';
import { BUG_NAMES } from '../../hypervisor/xen/buggify.js';
import { MAX_BLOB_PAGES, MISSING_PAGE, RES_PER_FE, type MissingPage } from '../../domains/gpu/protocol.js';
import { XEN_MAX_MAPTRACK_FRAMES } from './limits.js';
import { bool, duration, ident, int, list, obj, oneOf, pcpus, type PcpuChoice } from './fields.js';
import { errorAt, readYamlFile, validate, type YamlSource } from './load.js';

export const COMPARE_WORKLOAD_KINDS = ['idle', 'grant-ping', 'render', 'compute-svm', 'adversary', 'pressure', 'refusals'] as const;
/** dom0's MMU-notifier evictions per second in a cell, by kind, unless the plan says (`evictions_per_s`): a `pressure` cell is a storm. */
export const DEFAULT_CELL_EVICTIONS_PER_S: Record<string, number> = { render: 100, 'compute-svm': 100, adversary: 20, pressure: 2000 };
/** A GPU cell's buffers per guest and their largest size, unless the plan says. */
export const DEFAULT_CELL_BUFFERS = 4;
export const DEFAULT_CELL_BUFFER_PAGES = 4;
export type CompareWorkloadKind = (typeof COMPARE_WORKLOAD_KINDS)[number];
/** A cell runs at most this long: a comparison is many short runs (the plan's total is printed before it starts). */
export const MAX_COMPARE_DURATION_MS = 5 * 60_000;
export const MAX_COMPARE_SEEDS = 64;
export const MAX_COMPARE_GUESTS = 8;
export const MAX_COMPARE_ENTRIES = 32;
const MAX_PCPUS = 64;

export interface CompareDesign {
  readonly name: string;
  readonly design: string;
  readonly buggify: readonly string[];
  /** Lending: the GPU device model's answer to a FAULT it has no page for (a zero page, or absent: an injected fault). */
  readonly missing_page?: MissingPage;
}
export interface CompareWorkload {
  readonly name: string;
  readonly kind: CompareWorkloadKind;
  readonly guests: number;
  /** dom0's memory pressure: MMU-notifier evictions per second (GPU kinds; default DEFAULT_CELL_EVICTIONS_PER_S). */
  readonly evictions_per_s: number;
  /** GPU kinds: buffers per guest and their largest size (default 4 and 4 pages); `resident`: render's buffers stay shared. */
  readonly buffers: number;
  readonly buffer_pages: number;
  readonly resident: boolean;
  /** dom0's max_maptrack_frames (default Xen's 1024): grant maps it may hold at once ≤ × 256. */
  readonly dom0_max_maptrack_frames?: number;
}
export interface ComparePlan {
  readonly name: string;
  readonly duration_ms: number;
  readonly seeds: readonly number[];
  readonly pcpus?: PcpuChoice;
  readonly designs: readonly CompareDesign[];
  readonly workloads: readonly CompareWorkload[];
}

// A bare name is `{ design: <name> }`, so one schema checks both spellings and reports a bad name at the name.
const designEntry = z.preprocess(
  (v) => (typeof v === 'string' ? { design: v } : v),
  obj({ design: oneOf(DESIGN_NAMES, 'design'), name: ident().optional(), buggify: list(oneOf(BUG_NAMES, 'bug')).optional(), missing_page: oneOf(MISSING_PAGE, 'missing_page').optional() }),
);

const schema = obj({
  name: ident(),
  duration: duration(),
  seeds: list(int({ min: 0, max: 2 ** 31 - 1 }), { min: 1, max: MAX_COMPARE_SEEDS }),
  pcpus: pcpus(MAX_PCPUS).optional(),
  designs: list(designEntry, { min: 1, max: MAX_COMPARE_ENTRIES }),
  workloads: list(
    obj({
      kind: oneOf(COMPARE_WORKLOAD_KINDS, 'workload kind'), name: ident().optional(), guests: int({ min: 1, max: MAX_COMPARE_GUESTS }).optional(), evictions_per_s: int({ min: 0, max: 100_000 }).optional(),
      buffers: int({ min: 1, max: RES_PER_FE / 2 }).optional(), buffer_pages: int({ min: 1, max: MAX_BLOB_PAGES }).optional(), resident: bool().optional(),
      dom0_max_maptrack_frames: int({ min: 0, max: XEN_MAX_MAPTRACK_FRAMES }).optional(),
    }),
    { min: 1, max: MAX_COMPARE_ENTRIES },
  ),
});

export function parseComparePlan(src: YamlSource): ComparePlan {
  const raw = validate(src, schema);
  if (raw.duration < 1 || raw.duration > MAX_COMPARE_DURATION_MS) throw errorAt(src, ['duration'], `must be between 1ms and ${MAX_COMPARE_DURATION_MS / 60_000}m, got ${raw.duration}ms`);
  const designs = raw.designs.map((d, i): CompareDesign => {
    if (d.missing_page === 'zero' && d.design !== 'lending') throw errorAt(src, ['designs', i, 'missing_page'], `a zero page for a missing page is the lender's answer (design \`lending\`), not \`${d.design}\`'s`);
    return { name: d.name ?? d.design, design: d.design, buggify: d.buggify ?? [], ...(d.missing_page !== undefined ? { missing_page: d.missing_page } : {}) };
  });
  const workloads = raw.workloads.map((w, i): CompareWorkload => {
    if (w.resident === true && w.kind !== 'render') throw errorAt(src, ['workloads', i, 'resident'], `resident buffers are render's (its guests keep them shared between rounds), not ${w.kind}'s`);
    return {
      name: w.name ?? w.kind, kind: w.kind, guests: w.guests ?? 2, evictions_per_s: w.evictions_per_s ?? DEFAULT_CELL_EVICTIONS_PER_S[w.kind] ?? 0,
      buffers: w.buffers ?? DEFAULT_CELL_BUFFERS, buffer_pages: w.buffer_pages ?? DEFAULT_CELL_BUFFER_PAGES, resident: w.resident === true,
      ...(w.dom0_max_maptrack_frames !== undefined ? { dom0_max_maptrack_frames: w.dom0_max_maptrack_frames } : {}),
    };
  });
  unique(src, 'designs', designs.map((d) => d.name));
  unique(src, 'workloads', workloads.map((w) => w.name));
  const seen = new Set<number>();
  raw.seeds.forEach((s, i) => {
    if (seen.has(s)) throw errorAt(src, ['seeds', i], `seed ${s} is listed twice`);
    seen.add(s);
  });
  return { name: raw.name, duration_ms: raw.duration, seeds: raw.seeds, ...(raw.pcpus !== undefined ? { pcpus: raw.pcpus } : {}), designs, workloads };
}

function unique(src: YamlSource, key: string, names: readonly string[]): void {
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) throw errorAt(src, [key, i], `two ${key} are called \`${n}\` (give one a \`name:\`)`);
  });
}

export function loadComparePlan(file: string): ComparePlan {
  return parseComparePlan(readYamlFile(file));
}
