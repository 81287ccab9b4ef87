/**
 * `xgsim stress revoke`: concurrent Map / access / Revoke load on a host
 * of dom0 + N frontends (see domains/stress.ts), in a forked host process.
 */
import { MAP_WINDOW_PAGES, type HostSpec } from '../../hypervisor/host/host.js';
import { fmtUs } from '../text.js';
import { UsageError } from '../errors.js';
import { formatSummary, summarize } from './summary.js';
import { buggifyPrefix } from '../runs/record.js';
import { finishRun, runHost, type RunOutcome } from './up.js';
import { DEFAULT_CHECK_INTERVAL_MS, describePcpus, parseIntFlag, parsePcpusFlag, parseRunFlags, pcpusFlag, pcpusOf, type RunFlags } from './run-flags.js';
import { STRESS_FE_PAGES, stressMachineSpec, type FrontendMode } from './stress-spec.js';

import { ADVERSARIES, type Adversary } from '../cli-words.js';
import { type BugSet } from '../../hypervisor/xen/buggify.js';
import { drawModes } from './swarm.js';
export { ADVERSARIES, type Adversary };
const MIX = ['hammer', 'spin', 'fault-flood', 'descheduled'] as const;

export interface StressOptions extends RunFlags {
  /** `--full-mix`: with `--adversary mix`, every mode every seed (default: swarm, a subset per seed). */
  fullMix?: boolean;
  guests?: string;
  vcpus?: string;
  backendVcpus?: string;
  pages?: string;
  adversary?: string;
}

export function stressSpec(o: { guests: number; vcpus: number; backendVcpus: number; pages: number; adversary: Adversary; seed: number; buggify: BugSet; pcpus?: number | undefined; modes?: readonly FrontendMode[] }): HostSpec {
  const mix = o.modes ?? MIX;
  const mode = (i: number): FrontendMode => (o.adversary === 'none' ? 'hammer' : o.adversary === 'mix' ? mix[i % mix.length]! : o.adversary);
  return stressMachineSpec({
    frontends: Array.from({ length: o.guests }, (_, i) => ({ vcpus: o.vcpus, mode: mode(i), max_pages: STRESS_FE_PAGES })),
    backend_vcpus: o.backendVcpus,
    pages: o.pages,
    seed: o.seed,
    buggify: o.buggify,
    check_interval_ms: DEFAULT_CHECK_INTERVAL_MS,
    pcpus: o.pcpus,
  });
}

export async function stressRevoke(o: StressOptions): Promise<RunOutcome> {
  const guests = parseIntFlag('--guests', o.guests, 1, 64) ?? 4;
  const vcpus = parseIntFlag('--vcpus', o.vcpus, 1, 8) ?? 2;
  const backendVcpus = parseIntFlag('--backend-vcpus', o.backendVcpus, 1, 8) ?? 2;
  const pages = parseIntFlag('--pages', o.pages, 1, MAP_WINDOW_PAGES - 8) ?? 8;
  const adversary = (o.adversary ?? 'none') as Adversary;
  if (!ADVERSARIES.includes(adversary)) throw new UsageError(`--adversary: expected one of ${ADVERSARIES.join(', ')}, got \`${o.adversary}\``);
  const { print, duration_ms, seed, outputs, bugs } = parseRunFlags(o, { duration_ms: 10_000 });
  const pcpus = pcpusOf(parsePcpusFlag(o.pcpus) ?? 'auto');
  // Swarm (docs/verification.md §2): a mix of adversaries takes turns in a subset of the modes, drawn from the seed.
  const modes = adversary === 'mix' && o.fullMix !== true ? drawModes(seed, MIX) : undefined;
  const mixLine = adversary !== 'mix' ? '' : modes === undefined ? ' (full mix)' : ` (swarm: ${modes.join(',')})`;
  const startLine = `xgsim stress revoke: seed ${seed}, ${guests} guests × ${vcpus} vCPUs, dom0 × ${backendVcpus}, ${pages} pages per buffer, adversary ${adversary}${mixLine}, ${describePcpus(pcpus)}, ${duration_ms} ms${bugs.length > 0 ? `, BUGGIFY ${bugs.join(',')}` : ''}`;
  const report = await runHost({ ...stressSpec({ guests, vcpus, backendVcpus, pages, adversary, seed, buggify: o.buggify, pcpus, ...(modes !== undefined ? { modes } : {}) }), ...outputs.spec }, duration_ms, { quiet: !print, startLine });
  const summary = summarize(report, { seed, transport: 'ring', buggify: bugs });
  const cycles = summary.ops['revoke'] ?? 0;
  const extended = { ...summary, stress: { cycles, cycles_per_s: Math.round((cycles * 1000) / Math.max(1, summary.duration_ms)), adversary } };
  if (print && o.json === true) process.stdout.write(`${JSON.stringify(extended, null, 2)}\n`);
  else if (print) {
    process.stdout.write(`${formatSummary(summary)}\n`);
    process.stdout.write(`revoke: ${cycles} cycles (${extended.stress.cycles_per_s}/s), latency p50 ${fmtUs(summary.revoke_us.p50)}, p99 ${fmtUs(summary.revoke_us.p99)}, max ${fmtUs(summary.revoke_us.max)}\n`);
  }
  const replay = `${buggifyPrefix(bugs)}npx xgsim stress revoke --guests ${guests} --vcpus ${vcpus} --backend-vcpus ${backendVcpus} --pages ${pages} --adversary ${adversary} --pcpus ${pcpusFlag(pcpus)} --seed ${seed} --duration ${duration_ms}ms${o.fullMix === true ? ' --full-mix' : ''}`;
  const flags = { guests: String(guests), vcpus: String(vcpus), 'backend-vcpus': String(backendVcpus), pages: String(pages), adversary, duration: `${duration_ms}ms`, pcpus: pcpusFlag(pcpus), ...(o.fullMix === true ? { 'full-mix': true } : {}) };
  return finishRun({ kind: 'stress-revoke', flags, seed, buggify: bugs, transport: 'ring', summary, replay }, { print, save: o.save, store: o.store !== false, outputs, report, shown: extended });
}
