/**
 * The MutatingWebhookConfiguration of the sidecar injector, as a pure builder (the end-to-end stack,
 * test/harness/stack.ts, and the injection tests create it, with a `url` client config because the operator runs on
 * the host). Scope: the webhook sees pod CREATEs only, only for pods labelled `strongroom.dev/inject: "true"` (the
 * opt-in the annotation then details), never in the operator's namespace, kube-system or a namespace labelled
 * `strongroom.dev/injection: disabled`. Within that scope `failurePolicy: Fail`: an opted-in pod that cannot be
 * injected is refused rather than started without its artifacts.
 */
import type {
  V1LabelSelector,
  V1MutatingWebhookConfiguration,
  V1ValidatingAdmissionPolicy,
  V1ValidatingAdmissionPolicyBinding,
} from '@kubernetes/client-node';
import {
  ANNOTATION_ARTIFACTS,
  ANNOTATION_PUBLISH,
  LABEL_INJECT,
  LABEL_INJECTION,
} from '../../core/injection/contract.ts';
import { CA_BUNDLE_LABEL, CA_BUNDLE_LABEL_VALUE } from '../pki/webhook-bundles.ts';
import { MUTATE_PODS_PATH } from './server.ts';

/**
 * The namespaces injection applies to: all but the operator's own, kube-system and those labelled
 * `strongroom.dev/injection: disabled`. The webhook and the opt-in policy share it.
 */
function injectionNamespaces(operatorNamespace: string): V1LabelSelector {
  return {
    matchExpressions: [
      { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: [operatorNamespace, 'kube-system'] },
      { key: LABEL_INJECTION, operator: 'NotIn', values: ['disabled'] },
    ],
  };
}

export const WEBHOOK_CONFIGURATION_NAME = 'strongroom-sidecar-injector';
export const WEBHOOK_NAME = 'inject.strongroom.dev';
/** The pod label that opts in (objectSelector), value "true". */
export const OPT_IN_LABEL = LABEL_INJECT;

export type WebhookClient =
  | { readonly service: { readonly namespace: string; readonly name: string; readonly port: number } }
  | { readonly url: string };

/**
 * Builds the configuration; `caBundle` (base64 PEM) may be left out: the operator fills it in (the configuration
 * carries the label `strongroom.dev/ca-bundle: operator`, operator/pki/webhook-bundles.ts).
 */
export function injectorConfiguration(options: {
  readonly operatorNamespace: string;
  readonly client: WebhookClient;
  readonly caBundle?: string;
  readonly timeoutSeconds?: number;
}): V1MutatingWebhookConfiguration {
  const clientConfig =
    'url' in options.client
      ? { url: `${options.client.url.replace(/\/$/, '')}${MUTATE_PODS_PATH}` }
      : { service: { ...options.client.service, path: MUTATE_PODS_PATH } };
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: {
      name: WEBHOOK_CONFIGURATION_NAME,
      labels: {
        'app.kubernetes.io/managed-by': 'strongroom',
        'app.kubernetes.io/name': 'strongroom',
        [CA_BUNDLE_LABEL]: CA_BUNDLE_LABEL_VALUE,
      },
    },
    webhooks: [
      {
        name: WEBHOOK_NAME,
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        failurePolicy: 'Fail',
        matchPolicy: 'Equivalent',
        reinvocationPolicy: 'Never',
        timeoutSeconds: options.timeoutSeconds ?? 5,
        clientConfig: { ...clientConfig, ...(options.caBundle ? { caBundle: options.caBundle } : {}) },
        rules: [
          {
            apiGroups: [''],
            apiVersions: ['v1'],
            operations: ['CREATE'],
            resources: ['pods'],
            scope: 'Namespaced',
          },
        ],
        namespaceSelector: injectionNamespaces(options.operatorNamespace),
        objectSelector: { matchLabels: { [OPT_IN_LABEL]: 'true' } },
      },
    ],
  };
}

export const OPT_IN_POLICY_NAME = 'strongroom-injection-opt-in';

/**
 * A ValidatingAdmissionPolicy (CEL, evaluated inside the API server: no webhook, nothing to be down) and its
 * binding that refuse a pod CREATE carrying `strongroom.dev/artifacts` or `strongroom.dev/publish` without the
 * label `strongroom.dev/inject: "true"`. Such a pod never reaches the webhook (its objectSelector), so without this
 * it would start with empty mount paths and no output publishing. Same namespace scope as the webhook.
 */
export function optInPolicy(options: { readonly operatorNamespace: string }): {
  readonly policy: V1ValidatingAdmissionPolicy;
  readonly binding: V1ValidatingAdmissionPolicyBinding;
} {
  const labels = { 'app.kubernetes.io/managed-by': 'strongroom', 'app.kubernetes.io/name': 'strongroom' };
  const annotated = [ANNOTATION_ARTIFACTS, ANNOTATION_PUBLISH]
    .map((a) => `'${a}' in object.metadata.annotations`)
    .join(' || ');
  return {
    policy: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: OPT_IN_POLICY_NAME, labels },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] },
          ],
        },
        validations: [
          {
            expression:
              `!has(object.metadata.annotations) || !(${annotated}) || ` +
              `(has(object.metadata.labels) && '${LABEL_INJECT}' in object.metadata.labels && ` +
              `object.metadata.labels['${LABEL_INJECT}'] == 'true')`,
            message:
              `strongroom: the pod has the annotation ${ANNOTATION_ARTIFACTS} or ${ANNOTATION_PUBLISH} but not the ` +
              `label ${LABEL_INJECT}: "true", so no sidecar would be injected and its artifacts would not be there; ` +
              'add the label',
            reason: 'Invalid',
          },
        ],
      },
    },
    binding: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: OPT_IN_POLICY_NAME, labels },
      spec: {
        policyName: OPT_IN_POLICY_NAME,
        validationActions: ['Deny'],
        matchResources: {
          namespaceSelector: injectionNamespaces(options.operatorNamespace),
        },
      },
    },
  };
}
