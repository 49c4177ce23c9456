import { randomBytes, X509Certificate } from 'node:crypto';
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoreV1Api,
  type KubeConfig,
  V1ObjectMeta,
  V1Secret,
} from '@kubernetes/client-node';
import type winston from 'winston';
import { isDns1123Label } from '../../core/api/validation.ts';
import {
  AUTHORITY_SECRET_TYPE,
  authoritySecretData,
  parseAuthoritySecret,
  type AuthorityRecord,
  type CurrentAuthority,
} from './authority-secret.ts';
import {
  checkDnsNames,
  checkIpAddresses,
  createAuthorityCertificate,
  generateRsaKey,
  signLeafCertificate,
  type LeafTemplate,
} from './certificates.ts';
import { PkiError } from './errors.ts';
import {
  leafNotAfter,
  leafRenewAt,
  planAuthority,
  retireAuthority,
  trustedBundle,
  trustState,
  type AuthorityPolicy,
  type PkiState,
} from './schedule.ts';
import { judgeServingSecret } from './serving-secret.ts';
import { syncWebhookCaBundles } from './webhook-bundles.ts';

export { PkiError, type PkiErrorCode } from './errors.ts';
export type { PkiState } from './schedule.ts';

/** How the internal CA is configured. Lifetimes in milliseconds. */
export interface PkiOptions {
  /** The operator's namespace: holds the CA Secret and the serving Secrets. */
  readonly namespace: string;
  /** Default 'strongroom-ca'. */
  readonly caSecretName?: string;
  /** Default 365 days. */
  readonly caValidityMs?: number;
  /** Roll the CA over when less than this is left of its life; default a third of caValidityMs. */
  readonly caRolloverBeforeMs?: number;
  /** The longest life of any leaf (serving certificates get exactly this); default 7 days. Renewed at 2/3. */
  readonly leafValidityMs?: number;
  /**
   * How long after a rollover serving certificates stay on the retired CA (default 2 hours): longer than a sidecar
   * takes to renew its certificate (at most 40 minutes) and learn the new CA from Attest.
   */
  readonly servingMoveDelayMs?: number;
  /** The clock; default the system clock. */
  readonly now?: () => Date;
  readonly logger: winston.Logger;
}

/** A serving certificate to keep in Secret strongroom-<name>-tls. */
export interface ServingCertRequest {
  /** A DNS label such as 'webhook' or 'broker'. */
  readonly name: string;
  /** At least one; the certificate names exactly these and `ipAddresses`. */
  readonly dnsNames: readonly string[];
  readonly ipAddresses?: readonly string[];
}

/** Result of ensureServingCertificate. */
export interface ServingCertResult {
  readonly secretName: string;
  /** When the certificate reaches 2/3 of its lifetime and ensureServingCertificate must run again. */
  readonly renewAt: Date;
  /** True when a new key and certificate were written by this call. */
  readonly issued: boolean;
  /** Expiry of the certificate now in the Secret. */
  readonly notAfter: Date;
}

/** A leaf to sign for a key held elsewhere (pod certificates): a {@link LeafTemplate} whose dates signLeaf sets. */
export interface LeafRequest extends Omit<LeafTemplate, 'notBefore' | 'notAfter'> {
  /** Valid from now for at most this long (never past the CA's expiry); at most the leaf validity of PkiOptions. */
  readonly validityMs: number;
}

const DAY_MS = 24 * 3600 * 1000;
const ATTEMPTS = 5;
/** Certificates start this long before "now" so that a peer whose clock is a little behind accepts them. */
const BACKDATE_MS = 5 * 60 * 1000;
/** A retired CA stays trusted this long beyond its last leaf's expiry (replica clock skew, in-flight signing). */
const RETIRED_GRACE_MS = 10 * 60 * 1000;
const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'strongroom' };
/** Longest serving certificate name: a DNS-1123 label, shorter than 63 to leave room in its Secret's name. */
const MAX_SERVING_NAME = 40;

/**
 * The operator's own CA, kept in a Secret so that every replica shares it and it survives restarts. Writers
 * (ensureAuthority, ensureServingCertificate, syncCaBundles) belong to the leader; load and signLeaf work on any
 * replica. Every write is optimistic (create, or replace with the read resourceVersion), so two racing writers never
 * overwrite each other. Key material is never logged.
 */
export class InternalCa {
  readonly #core: CoreV1Api;
  readonly #admission: AdmissionregistrationV1Api;
  readonly #namespace: string;
  readonly #caSecretName: string;
  readonly #caValidityMs: number;
  readonly #policy: AuthorityPolicy;
  readonly #now: () => Date;
  readonly #logger: winston.Logger;
  readonly #servingMoveDelayMs: number;

  /** Throws PkiError('invalid') for inconsistent lifetimes (leaf < rollover window < CA life is required). */
  constructor(kubeConfig: KubeConfig, options: PkiOptions) {
    if (isDns1123Label(options.namespace).length > 0) {
      throw new PkiError('invalid', `invalid namespace ${JSON.stringify(options.namespace)}`);
    }
    this.#caValidityMs = options.caValidityMs ?? 365 * DAY_MS;
    const leafValidityMs = options.leafValidityMs ?? 7 * DAY_MS;
    const caRolloverBeforeMs = options.caRolloverBeforeMs ?? Math.floor(this.#caValidityMs / 3);
    for (const [what, value] of Object.entries({
      caValidityMs: this.#caValidityMs,
      leafValidityMs,
      caRolloverBeforeMs,
    })) {
      if (!Number.isSafeInteger(value) || value < 60_000)
        throw new PkiError('invalid', `${what} must be ≥ 1 minute`);
    }
    if (!(leafValidityMs < caRolloverBeforeMs && caRolloverBeforeMs < this.#caValidityMs)) {
      throw new PkiError(
        'invalid',
        'lifetimes must satisfy leafValidityMs < caRolloverBeforeMs < caValidityMs',
      );
    }
    this.#servingMoveDelayMs = options.servingMoveDelayMs ?? 2 * 3600 * 1000;
    if (
      !Number.isSafeInteger(this.#servingMoveDelayMs) ||
      this.#servingMoveDelayMs < 0 ||
      this.#servingMoveDelayMs >= leafValidityMs
    ) {
      // A retired CA is trusted for a leaf's validity after the rollover: the move must come before that.
      throw new PkiError('invalid', 'servingMoveDelayMs must be ≥ 0 and < leafValidityMs');
    }
    this.#core = kubeConfig.makeApiClient(CoreV1Api);
    this.#admission = kubeConfig.makeApiClient(AdmissionregistrationV1Api);
    this.#namespace = options.namespace;
    this.#caSecretName = options.caSecretName ?? 'strongroom-ca';
    this.#policy = { caRolloverBeforeMs, leafValidityMs, retiredGraceMs: RETIRED_GRACE_MS };
    this.#now = options.now ?? (() => new Date());
    this.#logger = options.logger.child({ component: 'pki' });
  }

  /**
   * Leader only: creates the CA Secret if missing (when two replicas race, the loser of the create reads the
   * winner's CA), rolls the CA over when less than the rollover window is left, and drops retired CAs once every
   * leaf they signed has expired. Throws PkiError('malformed') for a CA Secret it cannot trust (never overwritten),
   * PkiError('conflict') when other writers keep winning.
   */
  async ensureAuthority(): Promise<PkiState> {
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const secret = await this.#readSecret(this.#caSecretName);
      const now = this.#now();
      if (secret === null) {
        const created: AuthorityRecord = { current: await this.#newAuthority(now), retired: [] };
        if (await this.#writeAuthority(created, undefined)) {
          this.#logger.info('created the CA', this.#describe(created.current));
          return trustState(created, now, this.#policy);
        }
        this.#logger.info('another replica created the CA first; using theirs');
        continue;
      }
      const record = parseAuthoritySecret(secret, this.#where(this.#caSecretName));
      const plan = planAuthority(record, now, this.#policy);
      if (plan.action === 'keep') return trustState(record, now, this.#policy);
      const next: AuthorityRecord =
        plan.action === 'rollover'
          ? {
              current: await this.#newAuthority(now),
              retired: [retireAuthority(record.current, now, this.#policy), ...plan.keepRetired],
            }
          : { current: record.current, retired: plan.keepRetired };
      if (await this.#writeAuthority(next, secret)) {
        if (plan.action === 'rollover') {
          this.#logger.info('rolled the CA over', {
            ...this.#describe(next.current),
            retiredSerial: record.current.cert.serialNumber,
          });
        }
        const dropped = record.retired.length - plan.keepRetired.length;
        if (dropped > 0) this.#logger.info('dropped retired CAs whose leaves have expired', { dropped });
        return trustState(next, now, this.#policy);
      }
    }
    throw new PkiError('conflict', `${this.#where(this.#caSecretName)} kept changing under ensureAuthority`);
  }

  /**
   * Any replica: reads the CA Secret without writing. PkiError('missing') when it does not exist yet,
   * PkiError('malformed') when it cannot be trusted.
   */
  async load(): Promise<PkiState> {
    const record = await this.#record();
    return trustState(record, this.#now(), this.#policy);
  }

  /**
   * Leader only: keeps Secret strongroom-<name>-tls (type kubernetes.io/tls: tls.crt, tls.key, ca.crt = bundle)
   * signed by the current CA, naming exactly the requested names, and before 2/3 of its lifetime; otherwise issues
   * a new key and certificate. A stale ca.crt alone is rewritten without a new key. Throws PkiError('invalid') for a
   * bad request, PkiError('conflict') when a Secret of that name has another type.
   */
  async ensureServingCertificate(request: ServingCertRequest): Promise<ServingCertResult> {
    const ipAddresses = request.ipAddresses ?? [];
    if (isDns1123Label(request.name).length > 0 || request.name.length > MAX_SERVING_NAME)
      throw new PkiError('invalid', `invalid name ${JSON.stringify(request.name)}`);
    if (request.dnsNames.length === 0)
      throw new PkiError('invalid', 'a serving certificate needs a DNS name');
    checkDnsNames(request.dnsNames);
    checkIpAddresses(ipAddresses);
    const secretName = `strongroom-${request.name}-tls`;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const record = await this.#record();
      const now = this.#now();
      const bundlePem = trustedBundle(record, now);
      const secret = await this.#readSecret(secretName);
      if (secret !== null && secret.type !== 'kubernetes.io/tls') {
        throw new PkiError(
          'conflict',
          `${this.#where(secretName)} has type ${String(secret.type)}, not kubernetes.io/tls`,
        );
      }
      const expected = {
        ca: record.current.cert,
        retired: record.retired.filter((r) => r.trustUntil.getTime() > now.getTime()).map((r) => r.cert),
        moveAt: new Date(
          record.current.cert.validFromDate.getTime() + BACKDATE_MS + this.#servingMoveDelayMs,
        ),
        bundlePem,
        dnsNames: request.dnsNames,
        ipAddresses,
        now,
      };
      const verdict = judgeServingSecret(secret, expected);
      if (verdict.action === 'keep')
        return { secretName, renewAt: verdict.renewAt, notAfter: verdict.notAfter, issued: false };
      if (verdict.action === 'update-bundle' && secret !== null) {
        const data = { ...secret.data, 'ca.crt': base64(bundlePem) };
        if (await this.#writeTlsSecret(secretName, data, secret)) {
          this.#logger.info('updated the CA bundle of a serving Secret', { secret: secretName });
          return { secretName, renewAt: verdict.renewAt, notAfter: verdict.notAfter, issued: false };
        }
        continue;
      }
      const reason = verdict.action === 'issue' ? verdict.reason : 'stale bundle';
      const issued = await this.#issueServing(record.current, request, now);
      const data = {
        'tls.crt': base64(issued.certPem),
        'tls.key': base64(issued.keyPem),
        'ca.crt': base64(bundlePem),
      };
      if (await this.#writeTlsSecret(secretName, data, secret)) {
        this.#logger.info('issued a serving certificate', {
          secret: secretName,
          reason,
          serial: issued.cert.serialNumber,
          notAfter: issued.cert.validTo,
        });
        return {
          secretName,
          renewAt: leafRenewAt(issued.cert.validFromDate, issued.cert.validToDate),
          notAfter: issued.cert.validToDate,
          issued: true,
        };
      }
    }
    throw new PkiError('conflict', `${this.#where(secretName)} kept changing under ensureServingCertificate`);
  }

  /**
   * Leader only: sets caBundle (base64 of the current bundle) on every webhook of every Mutating- and
   * ValidatingWebhookConfiguration labelled strongroom.dev/ca-bundle=operator, writing only those that differ.
   * Returns "<Kind>/<name>" for each configuration written.
   */
  async syncCaBundles(): Promise<readonly string[]> {
    const record = await this.#record();
    return syncWebhookCaBundles(this.#admission, base64(trustedBundle(record, this.#now())), this.#logger);
  }

  /**
   * Any replica: signs a leaf for a public key held elsewhere, with the current CA read fresh from its Secret.
   * Valid from now for `validityMs` but never past the CA's expiry. Throws PkiError('invalid') for a non-RSA or short
   * key, bad names, no usage, or a validityMs above the configured leaf validity (a retired CA is trusted only that
   * long after a rollover); PkiError('missing') when there is no CA or it has (almost) expired.
   */
  async signLeaf(input: LeafRequest): Promise<string> {
    if (!Number.isSafeInteger(input.validityMs) || input.validityMs < 60_000) {
      throw new PkiError('invalid', 'validityMs must be at least one minute');
    }
    if (input.validityMs > this.#policy.leafValidityMs) {
      throw new PkiError(
        'invalid',
        `validityMs exceeds the leaf validity of ${this.#policy.leafValidityMs} ms`,
      );
    }
    const record = await this.#record();
    const now = this.#now();
    const notAfter = leafNotAfter(now, input.validityMs, record.current.cert.validToDate);
    if (notAfter === null)
      throw new PkiError('missing', `the CA in ${this.#where(this.#caSecretName)} has expired`);
    const certPem = signLeafCertificate(record.current, {
      ...input,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter,
    });
    this.#logger.debug('signed a leaf', { commonName: input.commonName, notAfter: notAfter.toISOString() });
    return certPem;
  }

  async #issueServing(
    ca: CurrentAuthority,
    request: ServingCertRequest,
    now: Date,
  ): Promise<{ certPem: string; keyPem: string; cert: X509Certificate }> {
    const notAfter = leafNotAfter(now, this.#policy.leafValidityMs, ca.cert.validToDate);
    if (notAfter === null)
      throw new PkiError('missing', `the CA in ${this.#where(this.#caSecretName)} has expired`);
    const key = await generateRsaKey(2048);
    const certPem = signLeafCertificate(ca, {
      publicKeyPem: key.publicKeyPem,
      commonName: `strongroom-${request.name}`,
      dnsNames: request.dnsNames,
      ...(request.ipAddresses === undefined ? {} : { ipAddresses: request.ipAddresses }),
      usages: ['serverAuth'],
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter,
    });
    const cert = new X509Certificate(certPem);
    if (!cert.checkIssued(ca.cert) || !cert.verify(ca.cert.publicKey)) {
      throw new PkiError('invalid', 'a freshly signed serving certificate does not verify under the CA');
    }
    return { certPem, keyPem: key.privateKeyPem, cert };
  }

  async #newAuthority(now: Date): Promise<CurrentAuthority> {
    const key = await generateRsaKey(3072);
    const stamp = now.toISOString().replace(/[-:]|\.\d+/g, '');
    const certPem = createAuthorityCertificate(key, {
      commonName: `Strongroom CA ${stamp} ${randomBytes(4).toString('hex')}`,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(now.getTime() + this.#caValidityMs),
    });
    return { certPem, privateKeyPem: key.privateKeyPem, cert: new X509Certificate(certPem) };
  }

  async #record(): Promise<AuthorityRecord> {
    const secret = await this.#readSecret(this.#caSecretName);
    if (secret === null) throw new PkiError('missing', `${this.#where(this.#caSecretName)} does not exist`);
    return parseAuthoritySecret(secret, this.#where(this.#caSecretName));
  }

  async #readSecret(name: string): Promise<V1Secret | null> {
    try {
      return await this.#core.readNamespacedSecret({ name, namespace: this.#namespace });
    } catch (error) {
      if (error instanceof ApiException && error.code === 404) return null;
      throw error;
    }
  }

  /** Creates (previous === undefined) or replaces the CA Secret; false when another writer got there first. */
  async #writeAuthority(record: AuthorityRecord, previous: V1Secret | undefined): Promise<boolean> {
    const data = authoritySecretData(record);
    return this.#write(this.#caSecretName, AUTHORITY_SECRET_TYPE, data, previous);
  }

  async #writeTlsSecret(
    name: string,
    data: Record<string, string>,
    previous: V1Secret | null,
  ): Promise<boolean> {
    return this.#write(name, 'kubernetes.io/tls', data, previous ?? undefined);
  }

  async #write(
    name: string,
    type: string,
    data: Record<string, string>,
    previous: V1Secret | undefined,
  ): Promise<boolean> {
    const namespace = this.#namespace;
    const resourceVersion = previous?.metadata?.resourceVersion;
    if (previous !== undefined && resourceVersion === undefined) {
      throw new PkiError('malformed', `${this.#where(name)} has no resourceVersion`);
    }
    const annotations = previous?.metadata?.annotations;
    const metadata = Object.assign(new V1ObjectMeta(), {
      name,
      namespace,
      labels: { ...previous?.metadata?.labels, ...MANAGED_BY },
      ...(annotations === undefined ? {} : { annotations }),
      ...(resourceVersion === undefined ? {} : { resourceVersion }),
    });
    const body = Object.assign(new V1Secret(), { apiVersion: 'v1', kind: 'Secret', metadata, type, data });
    try {
      if (resourceVersion === undefined) await this.#core.createNamespacedSecret({ namespace, body });
      else await this.#core.replaceNamespacedSecret({ name, namespace, body });
      return true;
    } catch (error) {
      // 409: created or changed concurrently; 404: deleted concurrently. Either way the caller re-reads.
      if (error instanceof ApiException && (error.code === 409 || error.code === 404)) return false;
      throw error;
    }
  }

  #describe(ca: CurrentAuthority): Record<string, string> {
    return { secret: this.#caSecretName, serial: ca.cert.serialNumber, notAfter: ca.cert.validTo };
  }

  #where(name: string): string {
    return `Secret ${this.#namespace}/${name}`;
  }
}

function base64(text: string): string {
  return Buffer.from(text).toString('base64');
}
