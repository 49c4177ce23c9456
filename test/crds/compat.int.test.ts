/**
 * The CRDs promise to work on any Kubernetes 1.30 or newer. This applies them with plain kubectl to a real
 * kube-apiserver of the oldest supported minor (built by test/cluster/go/build.sh from go/kube-1.30) and checks
 * that the examples apply and the invalid manifests are still rejected by the schema and CEL rules.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { compatApiserver } from '../cluster/binaries.ts';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { kubectl, type CommandResult } from '../cluster/kubectl.ts';
import {
  exampleFiles,
  loadBase,
  loadInvalidFixtures,
  resourceOf,
  root,
  type KubeObject,
} from './fixtures.ts';
import { WAIT_CRDS_ESTABLISHED } from '../harness/suite.ts';

const shared = inject('cluster');
const NS = 'strongroom-compat';
const compat = compatApiserver(shared.binDir);

describe(`CRDs on the oldest supported API server (${compat.version})`, () => {
  let cluster: Cluster;
  const k = (args: readonly string[], input?: string): Promise<CommandResult> =>
    kubectl(
      { binDir: shared.binDir, kubeconfig: cluster.kubeconfig },
      args,
      input === undefined ? {} : { input },
    );
  const inNs = (object: KubeObject, name = object.metadata.name): string =>
    JSON.stringify({ ...object, metadata: { ...object.metadata, name, namespace: NS } });

  beforeAll(async () => {
    cluster = await startCluster({ apiserverBinary: compat.path });
  });
  afterAll(async () => {
    await cluster.stop();
  });

  it(`is really kube-apiserver ${compat.version}`, async () => {
    const version = JSON.parse((await k(['version', '-o', 'json'])).stdout) as {
      serverVersion: { gitVersion: string };
    };
    expect(version.serverVersion.gitVersion).toBe(compat.version);
    process.stderr.write(`[compat] server ${version.serverVersion.gitVersion}\n`);
  });

  it('installs the CRDs with plain kubectl apply and they become Established', async () => {
    const applied = await k(['apply', '-f', join(root, 'crds')]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stderr).toBe('');
    const wait = await k(WAIT_CRDS_ESTABLISHED);
    expect(wait.code, wait.stderr).toBe(0);
    expect((await k(['create', 'namespace', NS])).code).toBe(0);
  });

  it('applies every example in docs/examples', async () => {
    for (const file of exampleFiles) {
      const r = await k(['apply', '--validate=strict', '-f', join(root, 'docs', 'examples', file)]);
      expect(r.code, `${file}: ${r.stderr}`).toBe(0);
    }
    const listed = await k(['get', 'strongroom', '-A', '-o', 'name']);
    expect(listed.stdout).toContain('modelartifact.strongroom.dev/resnet50');
  });

  const fixtures = loadInvalidFixtures();
  it.each(fixtures.filter((f) => f.updateOf === undefined))('rejects $file', async (fixture) => {
    const r = await k(['create', '--validate=strict', '-f', '-'], inNs(fixture.object));
    expect(r.code, r.stdout).not.toBe(0);
    expect(r.stderr).toContain(fixture.expect);
  });

  it.each(fixtures.filter((f) => f.updateOf !== undefined))('rejects $file as an update', async (fixture) => {
    const name = fixture.object.metadata.name;
    await k(['delete', resourceOf(fixture.object), name, '-n', NS, '--ignore-not-found', '--wait']);
    const base = await k(['create', '-f', '-'], inNs(loadBase(fixture.updateOf ?? '', name)));
    expect(base.code, base.stderr).toBe(0);
    const r = await k(['replace', '--validate=strict', '-f', '-'], inNs(fixture.object));
    expect(r.code, r.stdout).not.toBe(0);
    expect(r.stderr).toContain(fixture.expect);
  });
});
