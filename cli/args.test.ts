/**
 * Usage errors exit 2 with a message that says what is wrong: through main() with a fake CliIo, and once through the
 * real process.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT } from './io.ts';
import type { Command } from 'commander';
import { main, program } from './strongroom.ts';

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  let code = 0;
  await main(
    {
      out: (t) => (out += t),
      err: (t) => (err += t),
      setExitCode: (c) => (code = c),
    },
    ['node', 'strongroom', ...args],
  );
  return { code, out, err };
}

/** `grant create` with what it needs but `--purpose`. */
const grantCreate = ['grant', 'create', 'g', '--artifact', 'a', '--service-account', 'sa'];

// No cluster is reached by any of these: a kubeconfig that does not exist would fail differently (exit 2 too, but
// with "cannot load the kubeconfig"), so each expectation names its own message.
const cases: [string, string[], RegExp][] = [
  ['unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
  ['unknown kind for get', ['get', 'pods'], /unknown command 'pods'/],
  ['a typo gets a suggestion', ['get', 'grantz'], /Did you mean one of grant, grants\?/],
  ['missing argument', ['get', 'versions'], /missing required argument 'artifact'/],
  ['missing argument of describe', ['describe', 'grant'], /missing required argument 'name'/],
  [
    'bad -o value',
    ['get', 'grants', '-o', 'xml'],
    /option '-o, --output <format>' argument 'xml' is invalid. Allowed choices are table, json, yaml/,
  ],
  [
    'bad -o value for describe',
    ['describe', 'artifact', 'x', '-o', 'wide'],
    /Allowed choices are table, json, yaml/,
  ],
  [
    'bad duration',
    [...grantCreate, '--purpose', 'p', '--duration', 'a week'],
    /--duration: invalid duration "a week"/,
  ],
  [
    'conflicting flags: --duration and --expires-at',
    [...grantCreate, '--purpose', 'p', '--duration', '1h', '--expires-at', '2027-01-01T00:00:00Z'],
    /--duration and --expires-at both set the end of the grant/,
  ],
  [
    'conflicting flags: --versions and --all-versions',
    [...grantCreate, '--purpose', 'p', '--versions', 'v1', '--all-versions'],
    /give only one of them/,
  ],
  [
    'conflicting flags: --purpose and --reason',
    [...grantCreate, '--purpose', 'p', '--reason', 'q'],
    /--purpose and --reason are the same field/,
  ],
  [
    'conflicting flags: a name and -A',
    ['get', 'grants', 'g', '-A'],
    /a name and -A\/--all-namespaces do not go together/,
  ],
  ['missing required option', ['revoke', 'g'], /required option '--reason <text>' not specified/],
  ['missing --purpose', grantCreate, /--purpose <text>/],
  [
    'bad --dry-run value',
    ['grant', 'create', 'g', '--artifact', 'a', '--dry-run', 'maybe'],
    /Allowed choices are client, server/,
  ],
  [
    'encrypt without a recipient',
    ['encrypt', '-o', 'x', 'y'],
    /required option '-r, --recipient <key\|@file>'/,
  ],
  [
    'bad recipient key',
    ['encrypt', '-r', 'abc', '-o', '/tmp/never-written', 'cli'],
    /not a base64 32-byte X25519 public key/,
  ],
  ['bad --releases', ['describe', 'grant', 'g', '--releases', 'many'], /not a non-negative integer/],
  [
    '--public-key without --audit-log',
    ['describe', 'grant', 'g', '--public-key', 'k'],
    /--public-key needs --audit-log/,
  ],
  [
    'a kubeconfig that cannot be loaded',
    ['--kubeconfig', '/nonexistent/kubeconfig', 'get', 'grants'],
    /cannot load the kubeconfig \/nonexistent\/kubeconfig/,
  ],
];

describe('usage errors exit 2 with a clear message', () => {
  for (const [what, args, message] of cases)
    it(what, async () => {
      const r = await run(...args);
      expect(r.err).toMatch(message);
      expect(r.code).toBe(EXIT.usage);
    });

  it('--help of every new command exits 0 and shows an example', async () => {
    for (const args of [
      ['get', 'artifacts'],
      ['get', 'grants'],
      ['get', 'versions'],
      ['describe', 'artifact'],
      ['describe', 'grant'],
      ['grant', 'create'],
      ['revoke'],
      ['quarantine'],
      ['unquarantine'],
      ['keygen'],
      ['encrypt'],
      ['decrypt'],
    ]) {
      const r = await run(...args, '--help');
      expect(r.code, args.join(' ')).toBe(EXIT.ok);
      expect(r.out, args.join(' ')).toMatch(/Example:\n {2}strongroom /);
      expect(r.out, args.join(' ')).toMatch(/--namespace/);
    }
  });
});

describe('the real process', () => {
  it('exits 2 on an unknown command and on a bad -o, with the message on stderr', async () => {
    const node = process.execPath;
    const spawn = (args: string[]) =>
      new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(node, [join(import.meta.dirname, 'strongroom.ts'), ...args], (error, _stdout, stderr) => {
          resolve({ code: error ? Number(error.code) : 0, stderr });
        });
      });
    const unknown = await spawn(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    const badOutput = await spawn(['get', 'artifacts', '-o', 'xml']);
    expect(badOutput.code).toBe(2);
    expect(badOutput.stderr).toMatch(/argument 'xml' is invalid/);
  });
});

describe('every command documents itself', () => {
  /** Every command path of the program, groups included (commander's own `help` left out). */
  function paths(command: Command, prefix: string[] = []): string[][] {
    return command.commands
      .filter((c) => c.name() !== 'help')
      .flatMap((c) => [[...prefix, c.name()], ...paths(c, [...prefix, c.name()])]);
  }

  it('--help of every command and group exits 0 and shows an example of it', async () => {
    const all = paths(program({ out: () => undefined, err: () => undefined, setExitCode: () => undefined }));
    expect(all.length).toBeGreaterThan(20);
    for (const path of all) {
      const r = await run(...path, '--help');
      expect(r.code, path.join(' ')).toBe(EXIT.ok);
      expect(r.out, path.join(' ')).toMatch(/\nExample:\n {2}strongroom /);
    }
  });
});
