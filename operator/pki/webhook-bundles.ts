import {
  ApiException,
  type AdmissionregistrationV1Api,
  type V1MutatingWebhookConfiguration,
  type V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';
import type winston from 'winston';
import { PkiError } from './errors.ts';

/** caBundle upkeep on the webhook configurations Strongroom manages. */

/**
 * The label marking the webhook configurations whose caBundle Strongroom keeps: `strongroom.dev/ca-bundle: operator`.
 * A label of Strongroom's own, not `app.kubernetes.io/managed-by`: Helm sets that one to `Helm` on everything it
 * installs, the chart's webhook configuration included.
 */
export const CA_BUNDLE_LABEL = 'strongroom.dev/ca-bundle';
export const CA_BUNDLE_LABEL_VALUE = 'operator';
export const CA_BUNDLE_SELECTOR = `${CA_BUNDLE_LABEL}=${CA_BUNDLE_LABEL_VALUE}`;

/** The fields of a webhook configuration this module reads and writes. */
export interface WebhookConfigurationLike {
  metadata?: { name?: string; labels?: Record<string, string> } | undefined;
  webhooks?: { clientConfig: { caBundle?: string | undefined } }[] | undefined;
}

/** True when some webhook of `config` does not carry exactly `caBundle`. */
export function needsCaBundle(config: WebhookConfigurationLike, caBundle: string): boolean {
  return (config.webhooks ?? []).some((webhook) => webhook.clientConfig.caBundle !== caBundle);
}

/** Sets `caBundle` on every webhook of `config`, in place. */
export function setCaBundle(config: WebhookConfigurationLike, caBundle: string): void {
  for (const webhook of config.webhooks ?? []) webhook.clientConfig.caBundle = caBundle;
}

interface ConfigurationKind<T extends WebhookConfigurationLike> {
  readonly kind: 'MutatingWebhookConfiguration' | 'ValidatingWebhookConfiguration';
  list(): Promise<T[]>;
  read(name: string): Promise<T>;
  replace(name: string, body: T): Promise<unknown>;
}

const ATTEMPTS = 5;

/**
 * Writes `caBundle` (base64 of the PEM bundle) into every managed Mutating- and ValidatingWebhookConfiguration that
 * differs, with a full replace carrying the read resourceVersion so concurrent edits are never overwritten (a 409
 * re-reads and retries). Returns "<Kind>/<name>" of each configuration written.
 */
export async function syncWebhookCaBundles(
  api: AdmissionregistrationV1Api,
  caBundle: string,
  logger: winston.Logger,
): Promise<string[]> {
  const mutating = await syncKind(mutatingConfigurations(api), caBundle, logger);
  const validating = await syncKind(validatingConfigurations(api), caBundle, logger);
  return [...mutating, ...validating];
}

async function syncKind<T extends WebhookConfigurationLike>(
  kind: ConfigurationKind<T>,
  caBundle: string,
  logger: winston.Logger,
): Promise<string[]> {
  const patched: string[] = [];
  for (const listed of await kind.list()) {
    const name = listed.metadata?.name;
    if (name === undefined || !needsCaBundle(listed, caBundle)) continue;
    if (await replaceWithBundle(kind, name, listed, caBundle)) {
      patched.push(`${kind.kind}/${name}`);
      logger.info('set caBundle on webhook configuration', { kind: kind.kind, name });
    }
  }
  return patched;
}

/** Returns false when the configuration vanished, lost its label or already carries the bundle when written. */
async function replaceWithBundle<T extends WebhookConfigurationLike>(
  kind: ConfigurationKind<T>,
  name: string,
  first: T,
  caBundle: string,
): Promise<boolean> {
  let config = first;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    if (config.metadata?.labels?.[CA_BUNDLE_LABEL] !== CA_BUNDLE_LABEL_VALUE) return false;
    if (!needsCaBundle(config, caBundle)) return false;
    setCaBundle(config, caBundle);
    try {
      await kind.replace(name, config);
      return true;
    } catch (error) {
      if (!(error instanceof ApiException) || error.code !== 409) throw error;
    }
    try {
      config = await kind.read(name);
    } catch (error) {
      if (error instanceof ApiException && error.code === 404) return false;
      throw error;
    }
  }
  throw new PkiError('conflict', `${kind.kind} ${name} kept changing while its caBundle was written`);
}

function mutatingConfigurations(
  api: AdmissionregistrationV1Api,
): ConfigurationKind<V1MutatingWebhookConfiguration> {
  return {
    kind: 'MutatingWebhookConfiguration',
    list: async () =>
      (await api.listMutatingWebhookConfiguration({ labelSelector: CA_BUNDLE_SELECTOR })).items,
    read: async (name) => api.readMutatingWebhookConfiguration({ name }),
    replace: async (name, body) => api.replaceMutatingWebhookConfiguration({ name, body }),
  };
}

function validatingConfigurations(
  api: AdmissionregistrationV1Api,
): ConfigurationKind<V1ValidatingWebhookConfiguration> {
  return {
    kind: 'ValidatingWebhookConfiguration',
    list: async () =>
      (await api.listValidatingWebhookConfiguration({ labelSelector: CA_BUNDLE_SELECTOR })).items,
    read: async (name) => api.readValidatingWebhookConfiguration({ name }),
    replace: async (name, body) => api.replaceValidatingWebhookConfiguration({ name, body }),
  };
}
