/**
 * The chart's MutatingWebhookConfiguration and admission policies are exactly what the TypeScript builders produce
 * (operator/webhook/configuration.ts, core/governance/admission-policies.ts) for the release namespace and the
 * operator's ServiceAccount, with caBundle left for the operator to fill.
 */
import { describe, expect, it } from 'vitest';
import { admissionObjects, operatorUser } from '../../charts/generate.ts';
import { helmBinaries, render, type Helm } from '../../charts/helm.ts';
import { WEBHOOK_CONFIGURATION_NAME } from '../../operator/webhook/configuration.ts';

const ADMISSION_KINDS = [
  'MutatingWebhookConfiguration',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
];

interface Named {
  kind: string;
  metadata: { name: string };
}
const sorted = <T extends Named>(objects: T[]): T[] =>
  objects.sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));

const { helms } = await helmBinaries();

describe.each(helms.map((h) => [h.name, h] as const))(
  'the admission objects rendered by %s',
  (_, helm: Helm) => {
    it.each([
      ['strongroom-system', 'strongroom', {}],
      ['sr-other', 'custom-sa', { serviceAccount: { name: 'custom-sa' } }],
    ])('in namespace %s with ServiceAccount %s equal the builders’', (namespace, serviceAccount, values) => {
      // Helm orders objects by kind; compare in one order.
      const rendered = sorted(
        render(helm, { namespace, values }).filter((o) => ADMISSION_KINDS.includes(o.kind)),
      );
      const built = sorted(
        JSON.parse(
          JSON.stringify(admissionObjects(namespace, operatorUser(namespace, serviceAccount))),
        ) as Named[],
      );
      expect(rendered).toEqual(built);
      // Every policy the operator's code relies on: the opt-in one and the six governance ones, each bound.
      const policies = rendered
        .filter((o) => o.kind === 'ValidatingAdmissionPolicy')
        .map((o) => o.metadata.name);
      expect(policies).toHaveLength(7);
      expect(
        rendered.filter((o) => o.kind === 'ValidatingAdmissionPolicyBinding').map((o) => o.metadata.name),
      ).toEqual(policies);
    });

    it('points the webhook at the strongroom-webhook Service, leaves caBundle empty and lets the operator find it', () => {
      const objects = render(helm, { namespace: 'sr-webhook' });
      const config = objects.find((o) => o.kind === 'MutatingWebhookConfiguration') as unknown as {
        metadata: { name: string; labels: Record<string, string> };
        webhooks: { clientConfig: { service: object; caBundle?: string }; failurePolicy: string }[];
      };
      expect(config.metadata.name).toBe(WEBHOOK_CONFIGURATION_NAME);
      expect(config.metadata.labels['strongroom.dev/ca-bundle']).toBe('operator');
      expect(config.webhooks[0]?.clientConfig.service).toEqual({
        namespace: 'sr-webhook',
        name: 'strongroom-webhook',
        port: 443,
        path: '/mutate/pods',
      });
      expect(config.webhooks[0]?.clientConfig.caBundle).toBeUndefined();
      const service = objects.find(
        (o) => o.kind === 'Service' && o.metadata.name === 'strongroom-webhook',
      ) as unknown as {
        spec: { ports: { port: number; targetPort: string }[] };
      };
      expect(service.spec.ports).toEqual([expect.objectContaining({ port: 443, targetPort: 'webhook' })]);
    });

    it('binds the governance policies to the chart’s governance ConfigMap, which the chart creates', () => {
      const objects = render(helm, { namespace: 'sr-gov' });
      const bindings = objects.filter(
        (o) =>
          o.kind === 'ValidatingAdmissionPolicyBinding' && o.metadata.name !== 'strongroom-injection-opt-in',
      ) as unknown as { spec: { paramRef: { name: string; namespace: string } } }[];
      expect(bindings).toHaveLength(6);
      for (const b of bindings)
        expect(b.spec.paramRef).toMatchObject({ name: 'strongroom-governance', namespace: 'sr-gov' });
      expect(objects.some((o) => o.kind === 'ConfigMap' && o.metadata.name === 'strongroom-governance')).toBe(
        true,
      );
    });
  },
);
