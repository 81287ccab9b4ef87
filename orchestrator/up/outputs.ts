/**
 * `--trace <file>` and `--report <dir>` for `xgsim up` and `xgsim stress
 * revoke`: check the paths before the run (a bad path is exit 2 before
 * anything runs), ask the host for the timeline, and write the Chrome
 * trace, the report and its summary.json after it.
 *
 * The orchestrator writes the files, not the host process: it owns the
 * paths and their errors, and it alone has the Summary (verdict,
 * injections, replay line) both outputs show. The host ships its events
 * over IPC as one base64 string of float64s, bounded by TRACE_MAX_EVENTS
 * (300k events ≈ 13 MB), which costs well under a second. docs/trace-and-report.md.
 */
import { closeSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { HostReport, HostSpec } from '../../hypervisor/host/host.js';
import { UsageError } from '../errors.js';
import { writeReport } from '../report/html.js';
import { SAVED_RUN_FORMAT, SAVED_RUN_VERSION, seriesOf, type SavedRun } from '../report/saved-run.js';
import type { Summary } from './summary.js';
import { chromeTrace, writeChromeTrace } from '../trace/chrome.js';

export interface OutputFlags {
  trace?: string;
  report?: string;
}

export interface Outputs {
  trace: string | undefined;
  report: string | undefined;
  /** What the host spec gets: the timeline when either output wants it; events only for --trace. */
  spec: Pick<HostSpec, 'trace' | 'trace_max_events'>;
}

const why = (e: unknown): string => {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'no such directory' : code === 'ENOTDIR' ? 'a parent is not a directory' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'EROFS' ? 'read-only file system' : code === 'EISDIR' ? 'is a directory' : (code ?? (e as Error).message);
};

/** Can we write `file`? Opened for appending (nothing truncated) and removed again if we created it. */
function probeFile(flag: string, file: string): void {
  let existed = true;
  try {
    statSync(file);
  } catch {
    existed = false;
  }
  try {
    closeSync(openSync(file, 'a'));
  } catch (e) {
    throw new UsageError(`${flag} ${file}: cannot write there (${why(e)})`);
  }
  if (!existed) unlinkSync(file);
}

/**
 * Check the output paths before the run; creates the report directory.
 * `timeline`: capture the plotted series even without --trace or --report
 * (a run the store keeps has a report).
 */
export function prepareOutputs(f: OutputFlags, timeline = false): Outputs {
  if (f.trace !== undefined) {
    if (f.trace === '') throw new UsageError('--trace: expected a file name');
    probeFile('--trace', f.trace);
  }
  if (f.report !== undefined) {
    if (f.report === '') throw new UsageError('--report: expected a directory');
    try {
      mkdirSync(f.report, { recursive: true });
    } catch (e) {
      throw new UsageError(`--report ${f.report}: cannot create the directory (${why(e)})`);
    }
    if (!statSync(f.report).isDirectory()) throw new UsageError(`--report ${f.report}: not a directory`);
    probeFile('--report', join(f.report, 'index.html'));
  }
  const on = f.trace !== undefined || f.report !== undefined || timeline;
  return {
    trace: f.trace,
    report: f.report,
    spec: on ? { trace: true, ...(f.trace === undefined ? { trace_max_events: 0 } : {}) } : {},
  };
}

/** The command line as typed (for the report and the trace's metadata). */
export function commandLine(argv: readonly string[] = process.argv.slice(2)): string {
  return ['xgsim', ...argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))].join(' ');
}

/** What `--report` and the run store keep of a run: the summary and the series the plots draw. */
export function savedRunOf(r: { report: HostReport; summary: Summary; replay: string | null; command?: string }): SavedRun {
  const data = r.report.trace;
  return {
    format: SAVED_RUN_FORMAT,
    version: SAVED_RUN_VERSION,
    command: r.command ?? commandLine(),
    replay: r.replay,
    summary: r.summary,
    rtt_hist: r.report.rtt_hist,
    series: data !== undefined ? seriesOf(data) : null,
  };
}

/** Write what was asked for; returns the lines to tell the user where it went. */
export function writeOutputs(o: Outputs, r: { report: HostReport; summary: Summary; replay: string | null; command?: string }): string[] {
  const lines: string[] = [];
  const command = r.command ?? commandLine();
  const data = r.report.trace;
  if (o.trace !== undefined) {
    if (data === undefined) throw new UsageError(`--trace ${o.trace}: the host sent no timeline`);
    const t = chromeTrace(data, { seed: r.summary.seed, verdict: r.summary.verdict, command, faults_injected: r.summary.faults_injected });
    try {
      writeChromeTrace(o.trace, t);
    } catch (e) {
      throw new UsageError(`--trace ${o.trace}: cannot write (${why(e)})`);
    }
    const dropped = data.dropped.over_cap + data.dropped.ring_full.reduce((a, b) => a + b, 0);
    lines.push(`trace: ${o.trace} (${t.traceEvents.length} trace events from ${data.events} recorded${dropped > 0 ? `, ${dropped} dropped` : ''}; open in https://ui.perfetto.dev)`);
  }
  if (o.report !== undefined) {
    const run = savedRunOf({ ...r, command });
    try {
      const w = writeReport(o.report, run);
      lines.push(`report: ${resolve(w.index)}`);
    } catch (e) {
      throw new UsageError(`--report ${o.report}: cannot write (${why(e)})`);
    }
  }
  return lines;
}

/** `xgsim report <summary.json> <dir>`: render a saved run again. */
export function writeReportDir(dir: string, run: SavedRun): string {
  if (dir === '') throw new UsageError('report: expected an output directory');
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UsageError(`${dir}: cannot create the directory (${why(e)})`);
  }
  try {
    return resolve(writeReport(dir, run).index);
  } catch (e) {
    throw new UsageError(`${dir}: cannot write the report (${why(e)})`);
  }
}
