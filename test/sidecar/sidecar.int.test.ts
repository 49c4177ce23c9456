/**
 * The decrypting sidecar end to end on the real control plane: the real operator process runs the broker; the
 * sidecar runs as a host process (`node sidecar/main.ts`) with the contract's environment, a TokenRequest token of a
 * real pod object in a file, ciphertext written by encryptDirectory, and plaintext directories on /dev/shm.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { encryptDirectory } from '../../core/envelope/index.ts';
import { treeDigest } from '../../core/envelope/tree-digest.ts';
import { ENV, type PlannedArtifact, type SidecarPlan } from '../../core/injection/contract.ts';
import { must } from '../harness/kubectl.ts';
import { createPod, podToken } from '../harness/workload.ts';
import {
  appendVersion,
  createGrant,
  getArtifact,
  approval,
  grantBody,
  sealedVersion,
} from '../harness/objects.ts';
import { clients, eventually, root, type LogLine } from '../harness/operator.ts';
import { keyedArtifact, operatorSuite } from '../harness/suite.ts';

const cluster = inject('cluster');
const suite = operatorSuite(cluster, {
  operatorNamespace: 'sc-op',
  namespaces: { ns: { name: 'sc-ml', environment: 'prod', serviceAccounts: ['reader'] } },
  operator: {
    identity: 'op-sidecar',
    args: ['--trust-domain=strongroom.test', '--broker-credential-refresh=1s'],
    waitFor: 'broker',
  },
});
const { ns } = suite.namespaces;
const { core, custom } = clients(cluster.kubeconfig);

let work: string;
let shm: string;
let tokenFile: string;
const deks: Buffer[] = [];
const tokens: string[] = [];
const sidecars: SidecarProcess[] = [];
/** The plaintext of artifact `resnet` v1. */
const files: Record<string, Buffer> = {
  'config.json': Buffer.from('{"arch":"resnet50"}\n'),
  'weights/model.safetensors': randomBytes(2 * 1024 * 1024 + 5),
  'weights/tokenizer/vocab.txt': Buffer.from('a\nb\nc\n'),
};

/** A ModelArtifact whose version `v1` is `files`, encrypted under a DEK sealed to the operator's recipient key. */
async function sealedArtifact(name: string): Promise<PlannedArtifact> {
  const withKey = await keyedArtifact(custom, ns, name, 'confidential');
  const { version, dek } = await sealedVersion(withKey, 'v1');
  deks.push(Buffer.from(dek));
  const source = join(work, `${name}-source`);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(source, path, '..'), { recursive: true });
    await writeFile(join(source, path), content);
  }
  const uid = withKey.metadata.uid ?? '';
  const ciphertextPath = join(work, 'cipher', name, 'v1');
  await mkdir(join(work, 'cipher', name), { recursive: true });
  const manifest = await encryptDirectory(source, ciphertextPath, {
    dek,
    keyId: 'test',
    context: { artifactUid: uid, artifactName: name, version: 'v1' },
  });
  const digest = treeDigest(manifest);
  const size = manifest.files.reduce((sum, f) => sum + f.size, 0);
  await appendVersion(custom, withKey, { ...version, digest, size });
  await eventually(`${name} sealed`, async () => {
    const a = await getArtifact(custom, ns, name);
    return a.status?.keys?.some((k) => k.state === 'Sealed') === true ? a : undefined;
  });
  return {
    namespace: ns,
    name,
    uid,
    version: 'v1',
    digest,
    ciphertextPath,
    plaintextDir: '',
    mountPath: `/models/${name}`,
  };
}

interface SidecarProcess {
  readonly child: ChildProcess;
  readonly dir: string;
  lines(): LogLine[];
  output(): string;
  probePort(): Promise<number>;
  probe(path: string): Promise<{ status: number; body: string }>;
  readonly exited: Promise<number | null>;
}

/** Runs `node sidecar/main.ts` with the contract's environment for one planned artifact. */
async function startSidecar(artifact: PlannedArtifact): Promise<SidecarProcess> {
  const dir = await mkdtemp(join(shm, 'plain-'));
  const plan: SidecarPlan = { version: 'v1', artifacts: [{ ...artifact, plaintextDir: dir }] };
  const broker = suite.endpoint;
  const child = spawn(process.execPath, [join(root, 'sidecar', 'main.ts')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env['PATH'] ?? '',
      [ENV.brokerAddress]: `127.0.0.1:${String(broker.brokerPort)}`,
      [ENV.attestAddress]: `127.0.0.1:${String(broker.attestPort)}`,
      [ENV.brokerServerName]: broker.serverName,
      [ENV.caBundle]: broker.caPem,
      [ENV.tokenPath]: tokenFile,
      [ENV.plan]: JSON.stringify(plan),
      [ENV.probePort]: '0',
      [ENV.logLevel]: 'debug',
    },
  });
  let all = '';
  child.stdout.on('data', (chunk: Buffer) => (all += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (all += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      resolve(code);
    }),
  );
  const lines = (): LogLine[] =>
    all
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  const probePort = async (): Promise<number> =>
    Number(
      (await eventually('probe port', () => lines().find((l) => l.message === 'sidecar starting')))[
        'probePort'
      ],
    );
  const sidecar: SidecarProcess = {
    child,
    dir,
    lines,
    output: () => all,
    probePort,
    async probe(path) {
      const response = await fetch(`http://127.0.0.1:${String(await probePort())}${path}`);
      return { status: response.status, body: await response.text() };
    },
    exited,
  };
  sidecars.push(sidecar);
  return sidecar;
}

async function installed(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await installed(dir, rel)));
    else out.push(rel);
  }
  return out.sort();
}

let resnet: PlannedArtifact;
let secret: PlannedArtifact;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'strongroom-sidecar-int-'));
  shm = await mkdtemp('/dev/shm/strongroom-sidecar-int-');
  resnet = await sealedArtifact('resnet');
  secret = await sealedArtifact('secret');
  await createGrant(
    custom,
    ns,
    grantBody('resnet-readers', 'resnet', {
      subjects: [{ namespace: ns, serviceAccount: 'reader' }],
      versions: { match: 'all' },
      // resnet is confidential: the classification table asks for one approval.
      approvals: [approval('security@example.com')],
    }),
  );
  const pod = await createPod(core, ns, 'trainer-0', 'reader');
  const token = await podToken(core, pod);
  tokens.push(token);
  tokenFile = join(work, 'token');
  await writeFile(tokenFile, token, { mode: 0o600 });
}, 180_000);

afterAll(async () => {
  for (const s of sidecars) {
    if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    await s.exited;
  }
  await rm(work, { recursive: true, force: true });
  await rm(shm, { recursive: true, force: true });
});

describe('the decrypting sidecar (host process, real broker)', () => {
  let authorized: SidecarProcess;

  it('an authorized pod: /startup turns 200, the files are byte-identical and read-only, /ready is 200', async () => {
    authorized = await startSidecar(resnet);
    expect((await authorized.probe('/ready')).status).toBe(503);
    await eventually(
      'startup',
      async () => ((await authorized.probe('/startup')).status === 200 ? true : undefined),
      60_000,
      200,
    );
    expect(await authorized.probe('/ready')).toEqual({ status: 200, body: 'ready\n' });
    expect(await installed(authorized.dir)).toEqual(Object.keys(files).sort());
    for (const [path, content] of Object.entries(files)) {
      expect((await readFile(join(authorized.dir, path))).equals(content), path).toBe(true);
      expect((await stat(join(authorized.dir, path))).mode & 0o777, path).toBe(0o444);
    }
    expect((await stat(join(authorized.dir, 'weights'))).mode & 0o777).toBe(0o555);
    const materialized = authorized.lines().find((l) => l.message === 'materialized');
    expect(materialized).toMatchObject({
      artifact: `${ns}/resnet`,
      version: 'v1',
      files: 3,
      grant: 'resnet-readers',
    });
  });

  it('no grant: /startup stays 503, the log says PERMISSION_DENIED and why, the broker audited the denial', async () => {
    const denied = await startSidecar(secret);
    const line = await eventually(
      'denial log',
      () => denied.lines().find((l) => l.message === 'key release denied'),
      60_000,
    );
    expect(line).toMatchObject({
      level: 'error',
      artifact: `${ns}/secret`,
      version: 'v1',
      code: 'PERMISSION_DENIED',
    });
    expect(String(line['reason'])).toMatch(/grant/i);
    const startup = await denied.probe('/startup');
    expect(startup.status).toBe(503);
    expect(startup.body).toContain(`${ns}/secret@v1 pending (PERMISSION_DENIED)`);
    expect(await readdir(denied.dir)).toEqual([]);
    const entry = await eventually('audited denial', () =>
      suite
        .auditEvents()
        .find(
          (e) =>
            e.type === 'key-release' &&
            e.decision === 'deny' &&
            (e.artifact as { name?: string } | undefined)?.name === 'secret',
        ),
    );
    expect(entry['reason']).toBe('no-grant');
    // It keeps retrying (a grant may come later) and keeps failing closed.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect((await denied.probe('/startup')).status).toBe(503);
    expect(await readdir(denied.dir)).toEqual([]);
  });

  it('SIGTERM wipes the plaintext and exits 0', async () => {
    const s = await startSidecar(resnet);
    await eventually(
      'startup',
      async () => ((await s.probe('/startup')).status === 200 ? true : undefined),
      60_000,
      200,
    );
    expect((await installed(s.dir)).length).toBe(3);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
    expect(await readdir(s.dir)).toEqual([]);
    expect(s.lines().some((l) => l.message === 'wiped on shutdown' && l['files'] === 3)).toBe(true);
  });

  it('grant deleted: files gone and /ready 503 within 1 s', async () => {
    expect((await authorized.probe('/ready')).status).toBe(200);
    const t0 = Date.now();
    await must(cluster, ['-n', ns, 'delete', 'accessgrant', 'resnet-readers', '--wait=false']);
    const goneAt = await eventually(
      'wipe',
      async () => {
        const [entries, ready] = await Promise.all([readdir(authorized.dir), authorized.probe('/ready')]);
        return entries.length === 0 && ready.status === 503 ? Date.now() : undefined;
      },
      10_000,
      20,
    );
    const elapsed = goneAt - t0;
    process.stderr.write(
      `[sidecar] grant deleted -> files gone and /ready 503 after ${String(elapsed)} ms\n`,
    );
    expect(elapsed).toBeLessThan(1000);
    expect((await authorized.probe('/ready')).body).toContain('wiped');
    expect(
      authorized
        .lines()
        .some((l) => l.message === 'revocation' && l['reason'] === 'REVOCATION_REASON_GRANT_DELETED'),
    ).toBe(true);
    // The periodic retry asks again and is refused: nothing comes back.
    await eventually(
      'a refused retry',
      () =>
        authorized
          .lines()
          .filter((l) => l.message === 'key release denied')
          .at(-1),
      15_000,
    );
    expect(await readdir(authorized.dir)).toEqual([]);
    expect((await authorized.probe('/ready')).status).toBe(503);
  });

  it('grant expiry: the files are gone and /ready is 503 within 1 s of expiresAt', async () => {
    const expiresAt = new Date(Date.now() + 12_000);
    await createGrant(
      custom,
      ns,
      grantBody('resnet-short', 'resnet', {
        subjects: [{ namespace: ns, serviceAccount: 'reader' }],
        versions: { match: 'all' },
        expiresAt: expiresAt.toISOString(),
        approvals: [approval('security@example.com')],
      }),
    );
    const s = await startSidecar(resnet);
    await eventually(
      'startup',
      async () => ((await s.probe('/startup')).status === 200 ? true : undefined),
      10_000,
      100,
    );
    const lease = s.lines().find((l) => l.message === 'materialized')?.['leaseExpiresAt'];
    expect(new Date(String(lease)).getTime()).toBeLessThanOrEqual(expiresAt.getTime());
    const goneAt = await eventually(
      'wipe at expiry',
      async () => {
        const [entries, ready] = await Promise.all([readdir(s.dir), s.probe('/ready')]);
        return entries.length === 0 && ready.status === 503 ? Date.now() : undefined;
      },
      20_000,
      20,
    );
    const lateness = goneAt - expiresAt.getTime();
    process.stderr.write(
      `[sidecar] grant expired -> files gone and /ready 503 ${String(lateness)} ms after expiresAt\n`,
    );
    expect(lateness).toBeLessThan(1000);
  });

  it('never logs key material: no DEK, token or private key in any sidecar output', () => {
    expect(sidecars.length).toBe(4);
    for (const s of sidecars) {
      const text = s.output();
      expect(text.length).toBeGreaterThan(0);
      for (const dek of deks) {
        expect(text).not.toContain(dek.toString('hex'));
        expect(text).not.toContain(dek.toString('base64'));
      }
      for (const token of tokens) {
        expect(text).not.toContain(token);
        for (const part of token.split('.')) expect(text).not.toContain(part);
      }
      expect(text).not.toMatch(/PRIVATE KEY/);
      expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{20,}/);
    }
  });
});
