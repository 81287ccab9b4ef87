/**
 * Logs of the long-lived processes (`xgsim host`, the hosts a campaign
 * spawns): one human line on a terminal, JSON lines (pino) when stderr is
 * a file or pipe — what people running hosts on many machines collect and
 * grep. `XGSIM_LOG=json` or `XGSIM_LOG=text` chooses either way.
 *
 * JSON lines carry pino's `level`, `time` (ms since the epoch), `pid` and
 * `hostname`, plus `name` (the host's consumer name), `msg`, and the
 * fields the caller gives (`campaign`, `job`, `event`…). Nothing here
 * prints a Redis URL unredacted: callers pass `redactUrl(url)`.
 */
import { pino, type Logger } from 'pino';

export type LogFields = Record<string, string | number | boolean>;
export interface Log {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
}

export function logFormat(): 'json' | 'text' {
  const env = process.env['XGSIM_LOG'];
  if (env === 'json' || env === 'text') return env;
  return process.stderr.isTTY === true ? 'text' : 'json';
}

/** A log on stderr for `who` (e.g. `xgsim host lab-1`); `name` goes into every JSON line. */
export function processLog(who: string, name: string): Log {
  if (logFormat() === 'text') {
    const line = (msg: string): void => void process.stderr.write(`${who}: ${msg}\n`);
    return { info: line, warn: line };
  }
  // Synchronous writes: a host killed by a second Ctrl-C still leaves its last lines.
  const logger: Logger = pino({ name }, pino.destination({ dest: 2, sync: true }));
  return {
    info: (msg, fields) => logger.info(fields ?? {}, msg),
    warn: (msg, fields) => logger.warn(fields ?? {}, msg),
  };
}
