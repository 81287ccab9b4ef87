/**
 * The words the command line's help names — adversaries, curves, the
 * default pool — kept in a module with no imports, so that `xgsim --help`
 * loads none of the modules that run things (cli.ts imports those only
 * when a command runs). The modules that use them import them from here.
 */

/** `stress revoke --adversary`, and campaign jobs' `adversary:`. */
export const ADVERSARIES = ['none', 'spin', 'fault-flood', 'descheduled', 'mix'] as const;
export type Adversary = (typeof ADVERSARIES)[number];

/** `bench --curves` (bench/curves.ts CURVES has exactly these keys). */
export const CURVE_NAMES = ['hostile', 'pages', 'domains', 'ioreq-servers'] as const;
/** The sections of `xgsim bench` that `--filter` picks from (a section runs when its name contains the filter). */
export const BENCH_SECTIONS = ['access', 'hypercall', 'ioreq', 'revoke', 'steal', 'sim', 'campaign', 'topology'] as const;
export type CurveName = (typeof CURVE_NAMES)[number];

/** The pool `campaign` and `host` use when none is named. */
export const DEFAULT_POOL = 'default';
