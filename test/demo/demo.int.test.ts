import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { findLeftovers } from '../cluster/cluster.ts';
import { run } from '../cluster/kubectl.ts';

const shared = inject('cluster');

/** The text between the step line containing `title` and the next step line. */
function section(stdout: string, title: string): string {
  const start = stdout.indexOf(`==> ${title}`);
  if (start < 0) return '';
  const end = stdout.indexOf('\n==> ', start + 4);
  return stdout.slice(start, end < 0 ? undefined : end);
}

describe('the README demo command (npm run demo)', () => {
  it('installs the chart on its own cluster and node, runs the whole path through it, shows each step’s evidence, and cleans up', async () => {
    const r = await run(process.execPath, [join(import.meta.dirname, 'demo.ts'), '--once'], {
      timeoutMs: 400_000,
      env: { ...process.env, STRONGROOM_CLUSTER_BIN: shared.binDir },
    });
    const out = r.stdout;
    expect(r.code, r.stderr + out.slice(-3000)).toBe(0);

    // 1. A cluster with a real node, Services and DNS; the image imported into its containerd; Strongroom installed
    //    with its Helm chart: two replicas Ready, the webhook called through its Service.
    expect(out).toMatch(/control plane up at https:\/\/10\.244\.0\.1:\d+/);
    expect(out).toMatch(/node 127\.0\.0\.1 Ready in .*kube-proxy and CoreDNS answering/);
    const install = section(out, 'Installing Strongroom with its Helm chart');
    expect(install).toMatch(/image localhost\/strongroom:\S+, imported into the node's containerd/);
    expect(install).toMatch(
      /\$ helm install strongroom charts\/strongroom -n strongroom-system --create-namespace/,
    );
    expect(install).toMatch(/2 operator replicas Running and Ready [\d.]+ s after helm install/);
    expect(install).toMatch(/leader \(Lease strongroom-system\/strongroom-operator\): strongroom-[01];/);
    expect(install).toMatch(/pod\/strongroom-0\s+1\/1\s+Running/);
    expect(install).toMatch(/pod\/strongroom-1\s+1\/1\s+Running/);
    expect(install).toMatch(/service\/strongroom-webhook\s+ClusterIP/);
    expect(install).toMatch(/service\/strongroom-broker\s+ClusterIP/);
    expect(install).toContain('strongroom-sidecar-injector');
    expect(install).toContain('strongroom-grant-identity');

    // 2. The model encrypted and published: a digest, opaque object names on the volume, no plaintext names.
    const publish = section(out, 'Encrypting a sample model');
    expect(publish).toMatch(/digest sha256:[0-9a-f]{64}, \d+ bytes/);
    const volume = publish.slice(publish.indexOf('on the volume'), publish.indexOf('ciphertext check'));
    expect(volume).toContain('manifest.sre');
    expect(volume).toMatch(/objects\/000002\.sre/);
    expect(volume).not.toMatch(/config\.json|weights\.bin|vocab\.txt/);
    expect(publish).toContain('ciphertext check: no plaintext name');
    expect(publish).toMatch(/resnet50\s+confidential\s+v1\s+True/);
    expect(publish).toContain(
      'kubectl strongroom publish resnet50 ./resnet50 --version v1 -n ml-dev   # as frank',
    );
    expect(publish).toMatch(/encrypt resnet50@v1: .* MiB\/s\)/);
    expect(publish).toMatch(/stream into pvc models: .* MiB\/s\)/);
    expect(publish).toContain('key: sealed by the operator');
    expect(publish).toContain(
      'frank, a publisher, encrypted it on his machine and added version v1 in his own name (frank)',
    );

    // 3. alice requests the grant; her own approval is refused by the API server; bob and carol approve it in
    //    their own names and it becomes Active.
    const grant = section(out, 'alice requests read access for ml-dev/trainer');
    expect(grant).toContain('phase Pending, reason AwaitingApproval');
    expect(grant).toMatch(
      /alice writing an approval herself is refused by the API server: .*approver in person/,
    );
    expect(grant).toContain('approved AccessGrant ml-dev/trainer-reads as bob');
    expect(grant).toContain('approved AccessGrant ml-dev/trainer-reads as carol');
    expect(grant).toMatch(/trainer-reads\s+resnet50\s+read\s+ml-dev\/trainer\s+Active/);

    // 4. The authorized pod's app container saw exactly the original bytes: compare the two lists here, too.
    const originals = new Map(
      [...publish.matchAll(/plaintext (\S+)\s+\d+ bytes\s+sha256 ([0-9a-f]{64})/g)].map((m) => [m[1], m[2]]),
    );
    expect(originals.size).toBe(3);
    const authorized = section(out, 'An authorized pod');
    const inPod = new Map([...authorized.matchAll(/([0-9a-f]{64}) {2}\.\/(\S+)/g)].map((m) => [m[2], m[1]]));
    expect(inPod).toEqual(originals);
    expect(authorized).toContain('the webhook injected: strongroom-sidecar');
    expect(authorized).toContain('byte-identical: all 3 files match the SHA-256 of the originals');

    // 5. The unauthorized pod is refused with its reason, and its app container never ran.
    const refused = section(out, 'An unauthorized pod');
    expect(refused).toMatch(
      /Warning KeyReleaseDenied: .*PERMISSION_DENIED \(no-grant\): No AccessGrant releases version v1 of ModelArtifact ml-dev\/resnet50 to ml-dev\/intern/,
    );
    expect(refused).toMatch(/sidecar: key release denied for ml-dev\/resnet50@v1: PERMISSION_DENIED/);
    expect(refused).toContain('app container: waiting (PodInitializing), never started; pod Ready=false');
    expect(refused).toContain('container "app" in pod "intern" is waiting to start');
    expect(out).toMatch(/intern\s+0\/2\s+Init:0\/1/);

    // 6. Revocation wipes the files from the running pod within 1 s, and the pod turns not-ready.
    const revocation = section(out, 'Revoking the grant');
    const [before, after] = revocation.split('delete accessgrant trainer-reads');
    expect(before).toMatch(/4194304 [^\n]* weights\.bin/);
    expect(before).toContain('config.json');
    expect(after).toMatch(/^\s+total 0$/m);
    expect(after).not.toMatch(/weights\.bin|config\.json|tokenizer/);
    const wiped = /wiped (\d+) ms after kubectl delete \(the sidecar's log: /.exec(revocation);
    expect(wiped).not.toBeNull();
    expect(Number(wiped?.[1])).toBeLessThan(1000);
    expect(revocation).toMatch(/trainer\s+1\/2\s+Running/);
    expect(revocation).toMatch(/pod trainer not ready \d+ ms after the delete/);

    // 7. Every replica's audit log: both decisions recorded (each in the log of the replica that served it), and
    //    all of them verify offline.
    const audit = section(out, "Verifying every replica's audit log");
    expect(audit).toMatch(/strongroom-0: strongroom-0\.log on its own volume/);
    expect(audit).toMatch(/strongroom-1: strongroom-1\.log on its own volume/);
    expect(audit).toMatch(
      /strongroom-[01] entry #\d+: key release of ml-dev\/resnet50@v1 to pod ml-dev\/trainer \(sa trainer\): allow \(granted\)/,
    );
    expect(audit).toMatch(
      /strongroom-[01] entry #\d+: key release of ml-dev\/resnet50@v1 to pod ml-dev\/intern \(sa intern\): deny \(no-grant\)/,
    );
    expect(audit).toMatch(/2 of 2 logs verified/);
    expect(audit).toContain("the unauthorized pod's app container still has not run");

    // The hints, the total time, and nothing left behind: processes, mounts, work dir, bridge, audit log.
    expect(out).toMatch(/ml-dev\s+modelartifact\.strongroom\.dev\/resnet50\s+confidential\s+v1\s+True/);
    expect(out).toContain('kubectl get strongroom -A');
    expect(out).toMatch(/Total time: \d+\.\d s/);
    const workDir = /export KUBECONFIG=(\S+)\/admin\.kubeconfig/.exec(out)?.[1];
    expect(workDir).toMatch(/strongroom-cluster-/);
    const left = await findLeftovers(workDir ?? '');
    expect(left.processes).toEqual([]);
    expect(left.mounts).toEqual([]);
    expect(left.workDirExists).toBe(false);
    expect(left.bridgeExists).toBe(false);
    const volumeDir = /strongroom-0: \S+ on its own volume \((\S+)\)/.exec(audit)?.[1];
    expect(volumeDir).toBeDefined();
    expect(existsSync(volumeDir ?? '')).toBe(false);
  }, 420_000);
});
