import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { findLeftovers } from '../cluster/cluster.ts';
import { run } from '../cluster/kubectl.ts';

const shared = inject('cluster');

describe('the README demo command (npm run demo)', () => {
  it('starts its own cluster with a node, installs the CRDs and the examples, prints how to use it, and cleans up', async () => {
    const r = await run(process.execPath, [join(import.meta.dirname, 'demo.ts'), '--once'], {
      timeoutMs: 240_000,
      env: { ...process.env, STRONGROOM_CLUSTER_BIN: shared.binDir },
    });
    expect(r.code, r.stderr + r.stdout.slice(-2000)).toBe(0);
    expect(r.stdout).toContain(
      'customresourcedefinition.apiextensions.k8s.io/modelartifacts.strongroom.dev condition met',
    );
    expect(r.stdout).toContain('modelartifact.strongroom.dev/resnet50 serverside-applied');
    expect(r.stdout).toMatch(/127\.0\.0\.1\s+Ready/);
    // The operator ran: the demo artifact is Ready with v1 sealed, the grant Active, the conditions readable.
    expect(r.stdout).toMatch(/leading; \/healthz \/readyz \/metrics on http:\/\/127\.0\.0\.1:\d+/);
    expect(r.stdout).toMatch(/resnet-demo\s+confidential\s+v1\s+True/);
    expect(r.stdout).toMatch(/demo\s+accessgrant\.strongroom\.dev\/trainer\s+resnet-demo\s.*Active/);
    expect(r.stdout).toContain('KeysReady=True (');
    expect(r.stdout).toContain('RotationCompliant=True (');
    // The key broker: the trainer's pod attests and gets the very DEK the writer sealed; a pod without a grant
    // does not; the audit log verifies with one command.
    expect(r.stdout).toContain('attested: spiffe://cluster.local/ns/demo/sa/trainer');
    const fingerprints = /\(sha256 ([0-9a-f]{16})…, the writer sealed ([0-9a-f]{16})…\)/.exec(r.stdout);
    expect(fingerprints?.[1]).toBeDefined();
    expect(fingerprints?.[1]).toBe(fingerprints?.[2]);
    expect(r.stdout).toMatch(/pod demo\/intern-0 \(no grant\): No AccessGrant/);
    expect(r.stdout).toMatch(/audit verify [^\n]*\n(\s+WARNING[^\n]*\n)*\s+OK: \d+ entries/);
    const workDir = /export KUBECONFIG=(\S+)\/admin\.kubeconfig/.exec(r.stdout)?.[1];
    expect(workDir).toMatch(/strongroom-cluster-/);
    const left = await findLeftovers(workDir ?? '');
    expect(left.processes).toEqual([]);
    expect(left.workDirExists).toBe(false);
    expect(left.bridgeExists).toBe(false);
  });
});
