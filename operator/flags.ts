/**
 * A small flag library in the manner of Go's pflag: each setting is one {@link flag} entry (its name, environment
 * variable, value type, default, range and help), and a {@link FlagSet} of them derives everything else: the
 * commander options, the environment lookup, the parsing and validation, the `--help` text and the Markdown table
 * of the documentation. A default is written once, as the text a user would type, and parsed by the flag's own
 * type, so the help and the docs show exactly the value the program uses.
 *
 * Rules: every flag `--foo-bar` also reads the variable `<prefix>FOO_BAR` unless the entry names another; a flag
 * wins over its variable; an empty variable counts as unset. Anything invalid is a {@link ConfigError} naming the
 * flag or variable, the value and what is allowed.
 */
import { Command, CommanderError, Option } from 'commander';
import { parseDuration } from '../core/api/validation.ts';

/**
 * Invalid configuration, or `--help`. The message names the flag or environment variable, the bad value and what
 * is allowed. When `helpRequested` is true the message is the help text: print it and exit 0.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The flag or environment variable at fault, when there is one. */
  readonly setting: string | undefined;
  readonly helpRequested: boolean;
  constructor(
    message: string,
    options?: ErrorOptions & { setting?: string | undefined; helpRequested?: boolean | undefined },
  ) {
    super(message, options);
    this.setting = options?.setting;
    this.helpRequested = options?.helpRequested ?? false;
  }
}

/** What a rejected value should have been: the error message says `is invalid: expected <what>`. */
export class Expected {
  readonly what: string;
  constructor(what: string) {
    this.what = what;
  }
}

/** How a flag's text becomes a value, and how the help and docs describe the values it takes. */
export interface FlagType<T> {
  /** The value's placeholder in `--help`, e.g. `<duration>`; in square brackets when it may be left out. */
  readonly arg: string;
  /** What valid values look like, for the docs table (Markdown). */
  readonly doc: string;
  /** A range or list for `--help` ("1-64", "error, warn, info or debug"), when the placeholder is not enough. */
  readonly summary?: string | undefined;
  /** The value of `text`, or what was expected instead. */
  parse(text: string): T | Expected;
}

/** A default computed when the process starts, described by `text` in the help and the docs. */
export interface ComputedDefault<T> {
  readonly text: string;
  readonly value: () => T;
}

interface FlagInfo {
  /** One line for `--help` and the docs. */
  readonly help: string;
  /** More for the docs only. */
  readonly doc?: string;
  /** The environment variable, when it is not `<prefix>FOO_BAR`. */
  readonly env?: string;
  /** The flag applies only when an earlier flag has this value; given otherwise, it is an error. */
  readonly when?: { readonly flag: string; readonly is: string };
  /** A boolean flag that also has `--no-<name>`: the help of that negation. */
  readonly negation?: string;
}

/**
 * How a flag gets a value when it is not given: `default` is text parsed like a value from the command line
 * (`<other-flag>` in it stands for that earlier flag's value) or computed at start-up; `required` flags must be
 * given; otherwise the value is undefined and `unset` says what the program does instead.
 */
type Presence<T> =
  | { readonly default: string | ComputedDefault<T>; readonly required?: never; readonly unset?: never }
  | { readonly required: true; readonly default?: never; readonly unset?: never }
  | { readonly unset?: string; readonly default?: never; readonly required?: never };

/** The options of one {@link flag}. */
export type FlagOptions<T> = FlagInfo & Presence<T>;

/** One setting. `V` is the type of its value: undefined is possible unless it has a default or is required. */
export interface Flag<N extends string = string, V = unknown> {
  readonly name: N;
  readonly type: FlagType<V>;
  readonly options: FlagOptions<unknown>;
}

type ValueOf<T, O> = O extends { readonly when: object }
  ? T | undefined
  : O extends { readonly default: unknown } | { readonly required: true }
    ? T
    : T | undefined;

/** One table entry: `--<name>`, whose text `type` parses. */
export function flag<const N extends string, T, const O extends FlagOptions<T>>(
  name: N,
  type: FlagType<T>,
  options: O,
): Flag<N, ValueOf<T, O>> {
  // ValueOf<T, O> is T, or T | undefined: a parser of T is a parser of either.
  return { name, type: type as FlagType<ValueOf<T, O>>, options };
}

/** The values of a flag set's flags, by flag name. */
export type FlagValues<F extends readonly Flag[]> = {
  readonly [E in F[number] as E['name']]: E extends Flag<string, infer V> ? V : never;
};

/** Parsed flags: their values, and where each given value came from (the flag or the variable). */
export interface ParsedFlags<F extends readonly Flag[]> {
  readonly values: FlagValues<F>;
  /** `--foo-bar` or `FOO_BAR` for a given value; undefined for a default. */
  readonly from: Readonly<Partial<Record<F[number]['name'], string>>>;
}

/** A raw value and where it came from, for error messages. */
interface Raw {
  readonly value: string;
  readonly from: string;
}

const HELP_WIDTH = 100;
/** `<flag-name>` in a default's text: the value of that earlier flag. */
const REFERENCE = /<([a-z0-9-]+)>/g;

/** The command line and environment of one program, from its flag table. */
export class FlagSet<const F extends readonly Flag[]> {
  readonly command: string;
  readonly description: string;
  readonly envPrefix: string;
  readonly flags: F;

  constructor(info: { command: string; description: string; envPrefix: string }, flags: F) {
    this.command = info.command;
    this.description = info.description;
    this.envPrefix = info.envPrefix;
    this.flags = flags;
    const seen = new Set<string>();
    for (const f of flags) {
      const refs = [
        ...(f.options.when ? [f.options.when.flag] : []),
        ...(typeof f.options.default === 'string'
          ? [...f.options.default.matchAll(REFERENCE)].map((match) => match[1] ?? '')
          : []),
      ];
      for (const ref of refs) if (!seen.has(ref)) throw new Error(`--${f.name} refers to --${ref} before it`);
      if (seen.has(f.name)) throw new Error(`--${f.name} is defined twice`);
      seen.add(f.name);
    }
  }

  /** The environment variable of a flag. */
  env(f: Flag): string {
    return f.options.env ?? `${this.envPrefix}${f.name.toUpperCase().replaceAll('-', '_')}`;
  }

  /**
   * Parses `argv` (without the node binary and script) and `env`, flags first. Throws {@link ConfigError} for
   * anything unknown, invalid or missing, and for `--help` (the message is then the help text).
   */
  parse(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedFlags<F> {
    const output = { out: '', err: '' };
    const command = this.#command(output);
    try {
      command.parse([...argv], { from: 'user' });
    } catch (err) {
      if (err instanceof CommanderError) {
        if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help') {
          throw new ConfigError(output.out, { cause: err, helpRequested: true });
        }
        throw new ConfigError(err.message.replace(/^error: /, ''), { cause: err });
      }
      throw err;
    }
    const given = command.opts();
    const values: Record<string, unknown> = {};
    const from: Record<string, string> = {};
    for (const f of this.flags) {
      const raw = this.#raw(f, given, env);
      const when = f.options.when;
      if (when && values[when.flag] !== when.is) {
        if (raw) {
          const actual = String(values[when.flag]);
          throw new ConfigError(
            `${raw.from} does not apply to --${when.flag} ${actual}; remove it or choose the right --${when.flag}`,
            { setting: raw.from },
          );
        }
        values[f.name] = undefined;
      } else if (raw) {
        values[f.name] = parseRaw(f, raw);
        from[f.name] = raw.from;
      } else if (f.options.required) {
        const needs = when ? `--${when.flag} ${when.is} needs --${f.name}` : `--${f.name}`;
        throw new ConfigError(`${needs} (or ${this.env(f)})${when ? '' : ' is required'}`, {
          setting: `--${f.name}`,
        });
      } else {
        values[f.name] = defaultValue(f, values);
      }
    }
    return { values: values as FlagValues<F>, from: from as ParsedFlags<F>['from'] };
  }

  /** The flags as a Markdown table: flag, variable, default, values, description. */
  markdownTable(): string {
    const rows = this.flags.map((f) => {
      const optional = f.type.arg.startsWith('[');
      const names = [
        literal(`--${f.name}${optional ? `[=${f.type.arg.slice(1, -1)}]` : ''}`, 'docs'),
        ...(f.options.negation === undefined ? [] : [literal(`--no-${f.name}`, 'docs')]),
      ];
      const fallback = fallbackNote(f, 'docs') ?? '–';
      const condition = conditionNote(f, 'docs');
      const description = [
        `${f.options.help}${condition === undefined ? '' : ` (${condition})`}`,
        ...(f.options.doc === undefined ? [] : [f.options.doc]),
      ].join('; ');
      return [names.join(', '), literal(this.env(f), 'docs'), fallback, f.type.doc, description];
    });
    const lines = [
      ['Flag', 'Variable', 'Default', 'Values', 'Description'],
      ['---', '---', '---', '---', '---'],
      ...rows,
    ].map((cells) => `| ${cells.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`);
    return `${lines.join('\n')}\n`;
  }

  #command(output: { out: string; err: string }): Command {
    const command = new Command(this.command)
      .description(`${this.description} Every flag --foo-bar also reads ${this.envPrefix}FOO_BAR; flags win.`)
      .exitOverride()
      .configureOutput({
        writeOut: (text) => {
          output.out += text;
        },
        writeErr: (text) => {
          output.err += text;
        },
        outputError: () => undefined,
        getOutHelpWidth: () => HELP_WIDTH,
        getErrHelpWidth: () => HELP_WIDTH,
      })
      .allowExcessArguments(false)
      .allowUnknownOption(false)
      .helpOption('-h, --help', 'show this help');
    for (const f of this.flags) {
      command.addOption(new Option(`--${f.name} ${f.type.arg}`, this.#describe(f)));
      if (f.options.negation !== undefined) {
        command.addOption(new Option(`--no-${f.name}`, f.options.negation));
      }
    }
    return command;
  }

  /** The help of one flag: its line, then its range, default and condition, then its variable. */
  #describe(f: Flag): string {
    const notes = [f.type.summary, fallbackNote(f, 'help'), conditionNote(f, 'help')].filter(
      (note) => note !== undefined,
    );
    return `${f.options.help}${notes.length > 0 ? ` (${notes.join('; ')})` : ''} [env ${this.env(f)}]`;
  }

  #raw(f: Flag, given: Record<string, unknown>, env: NodeJS.ProcessEnv): Raw | undefined {
    const value = given[attributeName(f)];
    // An optional value left out (`--leader-elect`) is true; `--no-<name>` is false.
    if (value === true) return { value: 'true', from: `--${f.name}` };
    if (value === false) return { value: 'false', from: `--no-${f.name}` };
    if (typeof value === 'string') return { value, from: `--${f.name}` };
    const name = this.env(f);
    const variable = env[name];
    if (variable !== undefined && variable !== '') return { value: variable, from: name };
    return undefined;
  }
}

function attributeName(f: Flag): string {
  return new Option(`--${f.name} ${f.type.arg}`).attributeName();
}

function parseRaw<V>(f: Flag<string, V>, raw: Raw): V {
  const value = f.type.parse(raw.value);
  if (value instanceof Expected) {
    throw new ConfigError(`${raw.from}=${JSON.stringify(raw.value)} is invalid: expected ${value.what}`, {
      setting: raw.from,
    });
  }
  return value;
}

/** The help is plain text; the docs are Markdown, where flags and values are code. */
type Style = 'help' | 'docs';

function literal(text: string, style: Style): string {
  return style === 'docs' ? `\`${text}\`` : text;
}

/**
 * What a flag is when not given: "required" (with its condition), its default ("default 15s" in the help; "`15s`"
 * in the docs, whose column says Default), or what leaving it unset means.
 */
function fallbackNote(f: Flag, style: Style): string | undefined {
  const { required, default: fallback, unset, when } = f.options;
  if (required === true)
    return `required${when ? ` with ${literal(`--${when.flag} ${when.is}`, style)}` : ''}`;
  if (fallback !== undefined) {
    const text = typeof fallback === 'string' ? fallback : fallback.text;
    return style === 'docs' ? literal(text, style) : `default ${text}`;
  }
  return unset === undefined || style === 'docs' ? unset : `unset: ${unset}`;
}

/** The condition of an optional flag ("only with --kms gcp"); a required one's is in {@link fallbackNote}. */
function conditionNote(f: Flag, style: Style): string | undefined {
  const { required, when } = f.options;
  return when && required !== true ? `only with ${literal(`--${when.flag} ${when.is}`, style)}` : undefined;
}

function defaultValue(f: Flag, values: Readonly<Record<string, unknown>>): unknown {
  const fallback = f.options.default;
  if (fallback === undefined) return undefined;
  if (typeof fallback !== 'string') return fallback.value();
  const text = fallback.replaceAll(REFERENCE, (_, name: string) => String(values[name]));
  const value = f.type.parse(text);
  if (value instanceof Expected) {
    throw new Error(`the default ${JSON.stringify(text)} of --${f.name} is invalid: expected ${value.what}`);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------------------
// Value types

/** A string that `isValid` accepts, kept as given. */
export function checked(
  arg: string,
  doc: string,
  expected: string,
  isValid: (text: string) => boolean,
): FlagType<string> {
  return { arg, doc, parse: (text) => (isValid(text) ? text : new Expected(expected)) };
}

/** Any text but an empty or blank one. */
export function text(arg: string, doc: string): FlagType<string> {
  return checked(arg, doc, 'a non-empty value', (value) => value.trim() !== '');
}

/** One of a few words, case-sensitive. */
export function oneOf<const W extends string>(arg: string, words: readonly W[]): FlagType<W> {
  const sentence = `${words.slice(0, -1).join(', ')} or ${words.at(-1) ?? ''}`;
  // A short list reads as a sentence ("local, gcp or pkcs11"), a longer one as a list.
  const expected = words.length > 3 ? `one of ${words.join(', ')}` : sentence;
  return {
    arg,
    doc: words.map((word) => `\`${word}\``).join(', '),
    summary: sentence,
    parse: (value) => words.find((word) => word === value) ?? new Expected(expected),
  };
}

/** `true`, `false`, `1` or `0`; the value may be left out (`--flag` is true). */
export const bool: FlagType<boolean> = {
  arg: '[bool]',
  doc: '`true`, `false`, `1`, `0`',
  parse: (value) =>
    value === 'true' || value === '1'
      ? true
      : value === 'false' || value === '0'
        ? false
        : new Expected('true or false'),
};

/** A decimal integer from `min` to `max` (no sign, no exponent, no hex). */
export function integer(min: number, max?: number): FlagType<number> {
  const expected = max === undefined ? `an integer of at least ${min}` : `an integer from ${min} to ${max}`;
  return {
    arg: '<n>',
    doc: max === undefined ? `integer ≥ ${min}` : `integer ${min}–${max}`,
    summary: max === undefined ? undefined : `${min}-${max}`,
    parse(value) {
      const n = Number(value);
      const ok = /^[0-9]+$/.test(value) && n >= min && n <= (max ?? Number.MAX_SAFE_INTEGER);
      return ok ? n : new Expected(expected);
    },
  };
}

/** A listener or peer address. An empty host (`:8080`) means every interface, 0.0.0.0. */
export interface HostPort {
  host: string;
  port: number;
}

/** `host:port`, `[ipv6]:port` or `:port`, with a port from 0 to 65535. */
export const hostPort: FlagType<HostPort> = {
  arg: '<host:port>',
  doc: '`host:port`, `[ipv6]:port` or `:port` (every interface); port 0–65535, 0 picks a free one',
  parse(value) {
    const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):([0-9]{1,5})$/.exec(value);
    const port = Number(match?.[3]);
    if (!match || port > 65535) {
      return new Expected('host:port, [ipv6]:port or :port with a port from 0 to 65535');
    }
    const host = match[1] ?? match[2] ?? '';
    return { host: host === '' ? '0.0.0.0' : host, port };
  },
};

/**
 * The spelling flags accept: the plain part of Go's duration syntax, one or more `<number><unit>` with units ms, s,
 * m and h, or "0". core/api/validation.ts reads the value.
 */
const DURATION_SPELLING = /^(?:0|(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+)$/;
/** The longest flag duration: a Node.js timer holds at most 2^31-1 ms (596h31m23.647s). */
const MAX_DURATION = '596h';

/** The milliseconds of a duration as flags spell it, rounded; undefined when it is not one. */
function readDuration(value: string): number | undefined {
  const ms = DURATION_SPELLING.test(value) ? parseDuration(value) : [];
  return Array.isArray(ms) ? undefined : Math.round(ms);
}

function bound(spelled: string): number {
  const ms = readDuration(spelled);
  if (ms === undefined) throw new Error(`invalid duration ${JSON.stringify(spelled)} in the flag table`);
  return ms;
}

/**
 * A duration in whole milliseconds (rounded), positive and at most 596h, or within `range` (its bounds spelled
 * like values, e.g. `{ min: '0s', max: '60s' }`).
 */
export function duration(range?: { readonly min: string; readonly max: string }): FlagType<number> {
  const min = bound(range?.min ?? '1ms');
  const max = bound(range?.max ?? MAX_DURATION);
  const expected = new Expected(
    range
      ? `a duration from ${range.min} to ${range.max}`
      : `a positive Go-style duration such as 500ms, 15s, 10m or 1h30m, at most ${MAX_DURATION}`,
  );
  return {
    arg: '<duration>',
    doc: range ? `duration ${range.min} to ${range.max}` : 'duration',
    summary: range ? `${range.min}-${range.max}` : undefined,
    parse(value) {
      const ms = readDuration(value);
      return ms !== undefined && ms >= min && ms <= max ? ms : expected;
    },
  };
}
