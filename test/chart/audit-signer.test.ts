/**
 * The chart's `auditLog.signer` (--audit-signer): rendered into the operator's flags, parsed by the operator's own
 * parser; `kms` with the local KMS refused at template time, as the operator would refuse it at start-up.
 */
import { describe, expect, it } from 'vitest';
import { find, helmBinaries, render, template, type Helm } from '../../charts/helm.ts';
import { parseConfig } from '../../operator/config.ts';

const { helms, missing } = await helmBinaries();
const GCP = { provider: 'gcp', gcp: { keyRing: 'projects/p1/locations/europe-west1/keyRings/strongroom' } };

function auditSigner(helm: Helm, values: unknown): string {
  const sts = find(render(helm, { values }), 'StatefulSet', 'strongroom') as unknown as {
    spec: { template: { spec: { containers: { name: string; args: string[] }[] } } };
  };
  const args = sts.spec.template.spec.containers.find((c) => c.name === 'operator')?.args ?? [];
  const flags = args
    .slice(args.indexOf('/app/operator/main.ts') + 1)
    .map((a) => a.replaceAll('$(POD_NAME)', 'p-0'));
  return parseConfig(flags, {}).auditSigner;
}

describe('chart value auditLog.signer', () => {
  it('has Helm 3 and Helm 4', () => {
    expect(missing).toBeUndefined();
    expect(helms.map((h) => h.name)).toEqual(['helm', 'helm4']);
  });
  describe.each(helms.map((h) => [h.name, h] as const))('%s', (_, helm: Helm) => {
    it('renders --audit-signer: secret by default, kms when asked with gcp', () => {
      expect(auditSigner(helm, {})).toBe('secret');
      expect(auditSigner(helm, { kms: GCP, auditLog: { signer: 'kms' } })).toBe('kms');
    });

    it('refuses kms with the local KMS, and an unknown signer', () => {
      const local = template(helm, { values: { auditLog: { signer: 'kms' } } });
      expect(local.status).not.toBe(0);
      expect(local.stderr).toMatch(/auditLog.signer kms needs kms.provider gcp or pkcs11/);
      const unknown = template(helm, { values: { kms: GCP, auditLog: { signer: 'hsm' } } });
      expect(unknown.status).not.toBe(0);
      expect(unknown.stderr).toMatch(/signer/);
    });
  });
});
