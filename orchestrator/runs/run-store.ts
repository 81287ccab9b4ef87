/**
 * The run store, kept as Jepsen keeps its `store/`: every run of `up`,
 * `stress revoke` and `chaos` from the command line, pass or fail, gets a
 * directory of its own,
 *
 *   xgsim-runs/<name>/<YYYYMMDDTHHMMSS.mmm>/
 *     record.json    the run record (`xgsim replay` takes it)
 *     summary.json   the summary and the plotted series (`xgsim report` takes it)
 *     index.html     the report
 *
 * with `xgsim-runs/<name>/latest` and `xgsim-runs/latest` pointing at the
 * newest, and `xgsim-runs/index.html` listing them all. `xgsim runs` lists
 * and prunes. The root is XGSIM_RUNS_DIR, else xgsim-runs/ in the working
 * directory; `<name>` is the topology's or plan's file name, or the command.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import type { SavedRun } from '../report/saved-run.js';
import { writeReport } from '../report/html.js';
import { recordDir, saveRecord, type RunRecord } from './record.js';

export interface StoredRun {
  name: string;
  /** The run's directory name (its time). */
  time: string;
  dir: string;
  kind: string;
  verdict: string;
  seed: number;
  created_at: string;
  replay: string;
}

/** `two-guests` for examples/two-guests.yaml; `stress-revoke`; `sim-<topology>`. */
export function runName(rec: RunRecord): string {
  const file = 'file' in rec && rec.file !== undefined ? basename(rec.file).replace(/\.ya?ml$/, '') : undefined;
  const name = rec.kind === 'up' || rec.kind === 'chaos' ? (file ?? rec.kind) : rec.kind === 'sim' ? `sim${file !== undefined ? `-${file}` : ''}` : rec.kind;
  return name.replace(/[^\w.-]/g, '_').slice(0, 100) || rec.kind;
}

/** `20261207T022501.123` from an ISO time: sorts as it reads. */
function stampOf(created_at: string): string {
  return created_at.replace(/[-:]/g, '').replace(/Z$/, '');
}

/** Point `link` (relative) at `target`, replacing what was there; a store on a file system without symlinks simply has none. */
function relink(link: string, target: string): void {
  try {
    if (existsSync(link) || lstatSync(link, { throwIfNoEntry: false }) !== undefined) unlinkSync(link);
    symlinkSync(target, link);
  } catch {
    // A concurrent run won the race, or no symlinks here: `latest` is a convenience.
  }
}

/** Keep a finished run; returns its directory. `saved` is null when the run has no report (no timeline). */
export function storeRun(rec: RunRecord, saved: SavedRun | null, root: string = recordDir()): string {
  const name = runName(rec);
  const base = join(root, name, stampOf(rec.created_at));
  let dir = base;
  for (let i = 2; existsSync(dir); i++) dir = `${base}-${i}`;
  mkdirSync(dir, { recursive: true });
  saveRecord(rec, join(dir, 'record.json'));
  if (saved !== null) writeReport(dir, saved);
  relink(join(root, name, 'latest'), basename(dir));
  relink(join(root, 'latest'), join(name, basename(dir)));
  writeIndex(root);
  return dir;
}

function readStored(root: string, name: string, time: string): StoredRun | undefined {
  const dir = join(root, name, time);
  try {
    const r = JSON.parse(readFileSync(join(dir, 'record.json'), 'utf8')) as Partial<RunRecord>;
    return { name, time, dir, kind: String(r.kind), verdict: String(r.verdict), seed: Number(r.seed), created_at: String(r.created_at), replay: String(r.replay ?? '') };
  } catch {
    return undefined;
  }
}

const isDir = (p: string): boolean => lstatSync(p, { throwIfNoEntry: false })?.isDirectory() === true;

/** Every stored run, newest first; directories without a readable record.json (a campaign's, a foreign one) are not runs. */
export function listRuns(root: string = recordDir()): StoredRun[] {
  if (!isDir(root)) return [];
  const out: StoredRun[] = [];
  for (const name of readdirSync(root)) {
    if (!isDir(join(root, name))) continue;
    for (const time of readdirSync(join(root, name))) {
      if (!isDir(join(root, name, time))) continue;
      const r = readStored(root, name, time);
      if (r !== undefined) out.push(r);
    }
  }
  return out.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : a.dir < b.dir ? 1 : -1));
}

export interface PruneOptions {
  /** Keep the newest `keep` runs of each name. */
  keep?: number;
  /** Remove runs older than this (ms before now). */
  olderThan_ms?: number;
}

/** Remove stored runs; returns the directories removed. The `latest` links follow, the index is written again. */
export function pruneRuns(root: string, o: PruneOptions, now_ms = Date.now()): string[] {
  const runs = listRuns(root);
  const removed: string[] = [];
  const seen = new Map<string, number>();
  for (const r of runs) {
    const n = (seen.get(r.name) ?? 0) + 1;
    seen.set(r.name, n);
    const tooMany = o.keep !== undefined && n > o.keep;
    const tooOld = o.olderThan_ms !== undefined && now_ms - Date.parse(r.created_at) > o.olderThan_ms;
    if (!tooMany && !tooOld) continue;
    rmSync(r.dir, { recursive: true, force: true });
    removed.push(r.dir);
  }
  const left = listRuns(root);
  for (const name of new Set(runs.map((r) => r.name))) {
    const newest = left.find((r) => r.name === name);
    const link = join(root, name, 'latest');
    if (newest !== undefined) relink(link, newest.time);
    else if (lstatSync(link, { throwIfNoEntry: false }) !== undefined) unlinkSync(link);
  }
  if (left[0] !== undefined) relink(join(root, 'latest'), join(left[0].name, left[0].time));
  else if (lstatSync(join(root, 'latest'), { throwIfNoEntry: false }) !== undefined) unlinkSync(join(root, 'latest'));
  if (isDir(root)) writeIndex(root);
  return removed;
}

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** `<root>/index.html`: one row per run, newest first, linking its report and record. */
export function writeIndex(root: string): string {
  const runs = listRuns(root);
  const rows = runs.map((r) => {
    const rel = relative(root, r.dir).split('/').map(encodeURIComponent).join('/');
    const report = existsSync(join(r.dir, 'index.html')) ? `<a href="${rel}/index.html">report</a>` : '';
    return `<tr class="${r.verdict === 'pass' ? 'ok' : 'bad'}"><td class="mono">${esc(r.created_at)}</td><td>${esc(r.name)}</td><td>${esc(r.kind)}</td><td class="v">${esc(r.verdict.toUpperCase())}</td><td class="mono">${r.seed}</td><td>${report} <a href="${rel}/record.json">record</a></td><td class="mono">${esc(r.replay)}</td></tr>`;
  });
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xgsim runs</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left}.mono{font-family:ui-monospace,monospace;font-size:12px}tr.bad .v{color:#b00;font-weight:bold}tr.ok .v{color:#070}</style>
</head><body><h1>xgsim runs</h1><p>${runs.length} run${runs.length === 1 ? '' : 's'} in ${esc(root)}, newest first. <code>xgsim runs</code> lists them, <code>xgsim runs --prune</code> removes old ones.</p>
<table><thead><tr><th>time (UTC)</th><th>name</th><th>kind</th><th>verdict</th><th>seed</th><th>files</th><th>replay</th></tr></thead><tbody>
${rows.join('\n')}
</tbody></table></body></html>
`;
  mkdirSync(root, { recursive: true });
  const file = join(root, 'index.html');
  writeFileSync(file, html);
  return file;
}
