/**
 * `strongroom doctor`: checks an install as a whole, as the user, each check ok / warn / fail with a remedy. Every
 * check says in its `method` what it actually proves: a Service with ready endpoints is not an mTLS handshake, a
 * fresh Lease is not a clock measurement to the millisecond.
 *
 * | id | what |
 * | --- | --- |
 * | crds | both CRDs exist and are Established |
 * | admission-policies | Strongroom's ValidatingAdmissionPolicies and bindings exist, and the ConfigMap their params name |
 * | webhook-configuration | the MutatingWebhookConfiguration exists, with its webhook, `failurePolicy: Fail` and a caBundle |
 * | webhook-ca | the caBundle parses (X509Certificate), holds a CA that is valid now and not within --warn-within of expiry |
 * | webhook-admission | a server-side dry-run create of an opted-in pod: the API server calls the webhook, which must answer |
 * | operator-pods | the operator's pods are Ready (and their /readyz?verbose through the API server's pod proxy) |
 * | broker-endpoints | the Service strongroom-broker has ready endpoints (reachability of the pods behind it, not mTLS) |
 * | broker-mtls | a TLS handshake with a broker pod through a port-forward: its certificate verifies, and it refuses a
 *   client without a certificate |
 * | kms | the KMS opened: the operator opens it before it reports ready and before it campaigns for the Lease; and no
 *   ModelArtifact reports a key error |
 * | certificates | the serving certificates (Secrets strongroom-webhook-tls, strongroom-broker-tls) are valid, issued by
 *   a CA of the bundle, and not overdue for renewal or within --warn-within of expiry |
 * | clock-skew | the operator leader's Lease renewTime against the API server's Date header |
 *
 * Exit 0 when no check fails (warnings included), 1 when one does, 2 bad usage, 5 when the cluster cannot be reached.
 */
import { X509Certificate } from 'node:crypto';
import { Duplex, PassThrough } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import {
  AdmissionregistrationV1Api,
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  PortForward,
  type KubeConfig,
  type V1MutatingWebhook,
  type V1Pod,
} from '@kubernetes/client-node';
import { Command, Option } from 'commander';
import type { ModelArtifact } from '../core/api/index.ts';
import { POLICY_NAMES } from '../core/governance/admission-policies.ts';
import { DENIAL_PREFIX, LABEL_INJECT, LABEL_INJECTION } from '../core/injection/index.ts';
import { GOVERNANCE_CONFIGMAP } from '../core/policy/classification.ts';
import { apiStatus, explainApiError, loadKubeConfig, type ClusterFlags } from './cluster.ts';
import { action, example, flagsOf } from './command.ts';
import { CliError, EXIT, usageError, type CliIo } from './io.ts';
import { formatTable, outputOption, printDocument, type OutputFormat } from './output.ts';

/** What the chart installs (charts/strongroom; operator/webhook/configuration.ts, operator/kube/permissions.ts,
 * operator/pki). test/cli/doctor.int.test.ts checks these against the operator's own constants. */
export const INSTALL = {
  crds: ['modelartifacts.strongroom.dev', 'accessgrants.strongroom.dev'],
  webhookConfiguration: 'strongroom-sidecar-injector',
  webhook: 'inject.strongroom.dev',
  optInPolicy: 'strongroom-injection-opt-in',
  brokerService: 'strongroom-broker',
  lease: 'strongroom-operator',
  servingSecrets: ['strongroom-webhook-tls', 'strongroom-broker-tls'],
  podSelector: 'app.kubernetes.io/name=strongroom,app.kubernetes.io/component=operator',
} as const;

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  readonly id: string;
  readonly status: CheckStatus;
  /** What was found, one or a few sentences. */
  readonly detail: string;
  /** What to do about a warn or fail. */
  readonly remedy?: string;
  /** How the check decides: what it proves and what it does not. */
  readonly method: string;
}

export interface DoctorReport {
  /** No check failed. */
  readonly ok: boolean;
  readonly operatorNamespace: string;
  readonly checks: readonly CheckResult[];
}

const DAY_MS = 24 * 3600_000;

// ---------------------------------------------------------------------------------------------------------------
// Pure judgements (unit-tested in cli/doctor.test.ts).

/** The certificates of a PEM bundle, or the reason it does not parse. */
export function parseBundle(pem: string): { certificates: X509Certificate[] } | { error: string } {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return { error: 'it holds no PEM certificate' };
  try {
    return { certificates: blocks.map((b) => new X509Certificate(b)) };
  } catch (error) {
    return { error: `a certificate does not parse: ${(error as Error).message}` };
  }
}

function duration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs >= 2 * DAY_MS) return `${String(Math.floor(abs / DAY_MS))}d`;
  if (abs >= 2 * 3600_000) return `${String(Math.floor(abs / 3600_000))}h`;
  if (abs >= 120_000) return `${String(Math.floor(abs / 60_000))}m`;
  return `${String(Math.round(abs / 1000))}s`;
}

function subjectCn(cert: X509Certificate): string {
  return /CN=([^\n,]+)/.exec(cert.subject)?.[1] ?? cert.subject.replace(/\n/g, ', ');
}

/** The webhook's caBundle: at least one CA valid now; the newest not within `warnWithinMs` of expiry. */
export function assessCaBundle(
  pem: string,
  now: Date,
  warnWithinMs: number,
): { status: CheckStatus; detail: string } {
  const parsed = parseBundle(pem);
  if ('error' in parsed) return { status: 'fail', detail: `the caBundle does not parse: ${parsed.error}` };
  const cas = parsed.certificates.filter((c) => c.ca);
  if (cas.length === 0)
    return { status: 'fail', detail: 'the caBundle holds no CA certificate (basicConstraints CA:TRUE)' };
  const t = now.getTime();
  const valid = cas.filter((c) => new Date(c.validFrom).getTime() <= t && t < new Date(c.validTo).getTime());
  if (valid.length === 0)
    return {
      status: 'fail',
      detail: `no CA of the caBundle is valid now (${cas.map((c) => `${subjectCn(c)}: ${c.validFrom} to ${c.validTo}`).join('; ')})`,
    };
  const newest = valid.reduce((a, b) => (new Date(a.validTo) >= new Date(b.validTo) ? a : b));
  const left = new Date(newest.validTo).getTime() - t;
  const summary = `${String(cas.length)} CA${cas.length === 1 ? '' : 's'}; the newest, ${subjectCn(newest)}, expires ${newest.validTo} (in ${duration(left)})`;
  if (left < warnWithinMs) return { status: 'warn', detail: `${summary}: within --warn-within` };
  return { status: 'ok', detail: summary };
}

/**
 * A serving certificate (the first of `tlsCrt`) against the trusted bundle: valid now, issued and signed by a CA of
 * the bundle, and not near expiry. The operator renews serving certificates at 2/3 of their life, so one with less
 * than a third left (renewal overdue) or less than `warnWithinMs` left, whichever is less, is a warning.
 */
export function assessLeaf(
  name: string,
  tlsCrt: string,
  bundle: readonly X509Certificate[],
  now: Date,
  warnWithinMs: number,
): { status: CheckStatus; detail: string } {
  const parsed = parseBundle(tlsCrt);
  if ('error' in parsed) return { status: 'fail', detail: `${name}: tls.crt ${parsed.error}` };
  const [leaf] = parsed.certificates;
  if (leaf === undefined) return { status: 'fail', detail: `${name}: no certificate` };
  const t = now.getTime();
  const from = new Date(leaf.validFrom).getTime();
  const to = new Date(leaf.validTo).getTime();
  if (t < from) return { status: 'fail', detail: `${name}: not valid before ${leaf.validFrom}` };
  if (t >= to) return { status: 'fail', detail: `${name}: expired at ${leaf.validTo}` };
  const issuer = bundle.find((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
  if (issuer === undefined)
    return {
      status: 'fail',
      detail: `${name}: not signed by any CA of the bundle (issuer ${leaf.issuer.replace(/\n/g, ', ')})`,
    };
  const left = to - t;
  const threshold = Math.min(warnWithinMs, (to - from) / 3);
  const text = `${name}: ${subjectCn(leaf)}, by ${subjectCn(issuer)}, expires ${leaf.validTo} (in ${duration(left)})`;
  if (left < threshold)
    return {
      status: 'warn',
      detail: `${text}: ${left < (to - from) / 3 ? 'its renewal (at 2/3 of its life) is overdue' : 'within --warn-within'}`,
    };
  return { status: 'ok', detail: text };
}

/** How the dry-run create of the probe pod ended. */
export type ProbeOutcome =
  | { readonly kind: 'admitted' }
  | { readonly kind: 'refused'; readonly code: number; readonly message: string }
  | { readonly kind: 'unreachable'; readonly message: string };

/** Whether the probe proves the webhook answered. */
export function assessProbe(
  outcome: ProbeOutcome,
  namespace: string,
  excluded: string | undefined,
): { status: CheckStatus; detail: string; remedy?: string } {
  if (outcome.kind === 'unreachable')
    return { status: 'fail', detail: `the dry run did not reach the API server: ${outcome.message}` };
  if (outcome.kind === 'admitted')
    return excluded !== undefined
      ? {
          status: 'warn',
          detail: `the probe pod was admitted in namespace ${namespace} without calling the webhook: ${excluded}`,
          remedy: 'run doctor with -n <an application namespace> to exercise the webhook',
        }
      : {
          status: 'fail',
          detail: `the probe pod (labelled ${LABEL_INJECT}=true, without artifacts) was admitted in namespace ${namespace}: the webhook did not refuse it, so it was not called or is not Strongroom's`,
          remedy: `check the webhook's namespaceSelector and objectSelector (kubectl get mutatingwebhookconfiguration ${INSTALL.webhookConfiguration} -o yaml)`,
        };
  const m = outcome.message;
  if (m.includes(`admission webhook "${INSTALL.webhook}" denied the request`) && m.includes(DENIAL_PREFIX))
    return {
      status: 'ok',
      detail: `the API server called the webhook for a dry-run pod in ${namespace} and it answered (refusing the probe as it should: a labelled pod without artifacts)`,
    };
  if (m.includes(`failed calling webhook "${INSTALL.webhook}"`))
    return {
      status: 'fail',
      detail: `the API server could not call the webhook: ${m}`,
      remedy: `pods labelled ${LABEL_INJECT}=true cannot be created until it answers (failurePolicy Fail); check the operator pods and the Service strongroom-webhook (kubectl -n <operator namespace> get pods,endpointslices)`,
    };
  if (outcome.code === 403 && !m.includes('admission webhook'))
    return {
      status: 'warn',
      detail: `you may not create pods in ${namespace}, so the dry run could not exercise the webhook: ${m}`,
      remedy: 'run doctor as someone who may create pods, or with -n <a namespace where you may>',
    };
  return {
    status: 'warn',
    detail: `the dry run was refused before or apart from the webhook (HTTP ${String(outcome.code)}): ${m}`,
  };
}

/**
 * Clock skew from the leader's Lease: `renewTime` is written with the leader's clock, the `Date` header with the API
 * server's (whole seconds, truncated). A renewTime ahead of the Date by more than a second means the leader's clock
 * is ahead by at least the difference. A renewTime behind by more than the lease duration means the leader stopped
 * renewing or its clock is behind: the method cannot tell which.
 */
export function assessClockSkew(input: {
  readonly serverDate: Date;
  readonly renewTime: Date | undefined;
  readonly holder: string | undefined;
  readonly leaseDurationSeconds: number | undefined;
}): { status: CheckStatus; detail: string; remedy?: string } {
  const { serverDate, renewTime, holder } = input;
  if (renewTime === undefined || holder === undefined || holder === '')
    return {
      status: 'fail',
      detail: 'the Lease has no holder or renewTime: no operator replica leads',
      remedy: 'check the operator pods and their logs',
    };
  const ahead = renewTime.getTime() - (serverDate.getTime() + 1000);
  const behind = serverDate.getTime() - renewTime.getTime();
  const lease = (input.leaseDurationSeconds ?? 15) * 1000;
  if (ahead > 10_000)
    return {
      status: 'fail',
      detail: `the leader ${holder} renewed its Lease at ${renewTime.toISOString()}, ${duration(ahead)} after the API server's time (${serverDate.toISOString()}): its clock is ahead by at least that`,
      remedy: 'synchronize the node clocks (NTP); skew breaks token, certificate and grant expiry',
    };
  if (ahead > 1000)
    return {
      status: 'warn',
      detail: `the leader ${holder}'s clock is ahead of the API server's by at least ${duration(ahead)}`,
      remedy: 'synchronize the node clocks (NTP)',
    };
  if (behind > lease)
    return {
      status: 'warn',
      detail: `the leader ${holder} last renewed its Lease ${duration(behind)} before the API server's time, longer than the lease duration (${duration(lease)}): it stopped renewing, or its clock is behind by about that much`,
      remedy: 'check the operator pods and their logs, and the node clocks (NTP)',
    };
  return {
    status: 'ok',
    detail: `the leader ${holder} renewed ${duration(Math.max(0, behind))} before the API server's Date (${serverDate.toISOString()}); skew within about 1s plus the renew period`,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The checks against the cluster.

interface Context {
  readonly kc: KubeConfig;
  readonly namespace: string;
  readonly operatorNamespace: string;
  readonly warnWithinMs: number;
  readonly now: () => Date;
  readonly core: CoreV1Api;
  readonly admission: AdmissionregistrationV1Api;
  readonly extensions: ApiextensionsV1Api;
  readonly discovery: DiscoveryV1Api;
  readonly custom: CustomObjectsApi;
  /** Filled in by the webhook-configuration check. */
  webhook?: V1MutatingWebhook;
  /** The webhook's client config is a URL: the operator runs outside the cluster (development, the tests). */
  external?: boolean;
  bundle?: X509Certificate[];
}

/** A GET through the kubeconfig's credentials, with the response headers (the Date header). */
async function rawGet(
  kc: KubeConfig,
  path: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const server = kc.getCurrentCluster()?.server ?? '';
  const url = new URL(path, server);
  const options: RequestOptions = {
    method: 'GET',
    protocol: url.protocol,
    hostname: url.hostname,
    port: url.port,
    path: `${url.pathname}${url.search}`,
    headers: { Accept: 'application/json' },
    timeout: 10_000,
  };
  await kc.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

type Check = (ctx: Context) => Promise<Omit<CheckResult, 'id' | 'method'>>;

/** A 404 or 403 as a value; anything else (connection failures above all) thrown as a CliError. */
async function read<T>(
  what: string,
  get: () => Promise<T>,
): Promise<{ found: T } | { missing: true } | { refused: string }> {
  try {
    return { found: await get() };
  } catch (error) {
    const status = apiStatus(error);
    if (status?.code === 404) return { missing: true };
    if (status?.code === 403 || status?.code === 401) return { refused: status.message };
    throw explainApiError(error, `reading ${what}`);
  }
}

const crds: Check = async (ctx) => {
  const problems: string[] = [];
  const fine: string[] = [];
  for (const name of INSTALL.crds) {
    const got = await read(`CRD ${name}`, () => ctx.extensions.readCustomResourceDefinition({ name }));
    if ('missing' in got) problems.push(`${name} is missing`);
    else if ('refused' in got) problems.push(`${name} cannot be read: ${got.refused}`);
    else {
      const established = got.found.status?.conditions?.find((c) => c.type === 'Established');
      if (established?.status !== 'True')
        problems.push(
          `${name} is not Established (${established?.reason ?? 'no condition'}: ${established?.message ?? ''})`,
        );
      else fine.push(name);
    }
  }
  return problems.length === 0
    ? { status: 'ok', detail: `${fine.join(' and ')} are Established` }
    : {
        status: 'fail',
        detail: problems.join('; '),
        remedy: 'kubectl apply --server-side -f crds/ (or install the Helm chart, which carries them)',
      };
};

const admissionPolicies: Check = async (ctx) => {
  const names = [...Object.values(POLICY_NAMES), INSTALL.optInPolicy];
  const missing: string[] = [];
  const refused: string[] = [];
  const params = new Set<string>();
  for (const name of names) {
    const policy = await read(`ValidatingAdmissionPolicy ${name}`, () =>
      ctx.admission.readValidatingAdmissionPolicy({ name }),
    );
    const binding = await read(`ValidatingAdmissionPolicyBinding ${name}`, () =>
      ctx.admission.readValidatingAdmissionPolicyBinding({ name }),
    );
    if ('missing' in policy) missing.push(`policy ${name}`);
    if ('missing' in binding) missing.push(`binding ${name}`);
    if ('refused' in policy || 'refused' in binding) refused.push(name);
    if ('found' in binding) {
      const ref = binding.found.spec.paramRef;
      if (ref?.name !== undefined) params.add(`${ref.namespace ?? ''}/${ref.name}`);
    }
  }
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing: ${missing.join(', ')}`);
  for (const param of params) {
    const [namespace = '', name = ''] = param.split('/');
    const got = await read(`ConfigMap ${param}`, () => ctx.core.readNamespacedConfigMap({ namespace, name }));
    if ('missing' in got)
      problems.push(
        `the bindings take their params from ConfigMap ${param}, which does not exist: with parameterNotFoundAction Deny every guarded request is refused`,
      );
  }
  if (problems.length > 0)
    return {
      status: 'fail',
      detail: problems.join('; '),
      remedy: `install or upgrade the Helm chart (it creates every policy, binding and the ConfigMap ${GOVERNANCE_CONFIGMAP})`,
    };
  if (refused.length > 0)
    return {
      status: 'warn',
      detail: `you may not read ${refused.join(', ')}`,
      remedy: 'run doctor as a cluster administrator',
    };
  return {
    status: 'ok',
    detail: `${String(names.length)} policies and their bindings exist${params.size > 0 ? `; their params ConfigMap ${[...params].join(', ')} exists` : ''}`,
  };
};

const webhookConfiguration: Check = async (ctx) => {
  const got = await read(`MutatingWebhookConfiguration ${INSTALL.webhookConfiguration}`, () =>
    ctx.admission.readMutatingWebhookConfiguration({ name: INSTALL.webhookConfiguration }),
  );
  const remedy = 'install or upgrade the Helm chart; the operator fills in the caBundle once it runs';
  if ('missing' in got)
    return {
      status: 'fail',
      detail: `MutatingWebhookConfiguration ${INSTALL.webhookConfiguration} does not exist`,
      remedy,
    };
  if ('refused' in got)
    return {
      status: 'fail',
      detail: `cannot read it: ${got.refused}`,
      remedy: 'run doctor as a cluster administrator',
    };
  const webhook = got.found.webhooks?.find((w) => w.name === INSTALL.webhook);
  if (webhook === undefined)
    return { status: 'fail', detail: `it has no webhook ${INSTALL.webhook}`, remedy };
  ctx.webhook = webhook;
  const client = webhook.clientConfig;
  ctx.external = client.service === undefined;
  const target =
    client.service !== undefined
      ? `Service ${client.service.namespace}/${client.service.name}:${String(client.service.port ?? 443)}`
      : `URL ${client.url ?? '(none)'}`;
  if ((client.caBundle ?? '') === '')
    return {
      status: 'fail',
      detail: `the webhook (${target}) has no caBundle: the API server cannot trust it`,
      remedy: `the operator fills it in (label strongroom.dev/ca-bundle=operator); check that it runs and may patch mutatingwebhookconfigurations`,
    };
  if (client.service !== undefined && client.service.namespace !== ctx.operatorNamespace)
    return {
      status: 'warn',
      detail: `the webhook calls ${target}, not in --operator-namespace ${ctx.operatorNamespace}`,
      remedy: 'pass --operator-namespace <the namespace Strongroom is installed in>',
    };
  if (webhook.failurePolicy !== 'Fail')
    return {
      status: 'warn',
      detail: `failurePolicy is ${webhook.failurePolicy ?? 'unset'}: opted-in pods start without their artifacts when the webhook is down`,
      remedy: 'set failurePolicy: Fail (the chart does)',
    };
  return {
    status: 'ok',
    detail: `webhook ${INSTALL.webhook} calls ${target}, failurePolicy Fail, caBundle set${ctx.external ? ' (a URL: the operator runs outside the cluster)' : ''}`,
  };
};

const webhookCa: Check = async (ctx) => {
  await Promise.resolve();
  const bundle = ctx.webhook?.clientConfig.caBundle;
  if (bundle === undefined || bundle === '')
    return { status: 'fail', detail: 'no caBundle to check (see webhook-configuration)' };
  const pem = Buffer.from(bundle, 'base64').toString('utf8');
  const parsed = parseBundle(pem);
  if ('certificates' in parsed) ctx.bundle = parsed.certificates.filter((c) => c.ca);
  const result = assessCaBundle(pem, ctx.now(), ctx.warnWithinMs);
  return {
    ...result,
    ...(result.status === 'ok'
      ? {}
      : {
          remedy:
            'the operator rolls its CA over with a third of its life left; check that the leader runs (docs/pki.md)',
        }),
  };
};

/** Why the webhook would not be called for pods in `namespace`, if it would not. */
async function excludedBecause(ctx: Context): Promise<string | undefined> {
  if (ctx.namespace === ctx.operatorNamespace) return "it is the operator's namespace";
  if (ctx.namespace === 'kube-system') return 'kube-system is excluded';
  const ns = await read(`namespace ${ctx.namespace}`, () => ctx.core.readNamespace({ name: ctx.namespace }));
  if ('found' in ns && ns.found.metadata?.labels?.[LABEL_INJECTION] === 'disabled')
    return `it is labelled ${LABEL_INJECTION}=disabled`;
  return undefined;
}

const webhookAdmission: Check = async (ctx) => {
  if (ctx.webhook === undefined)
    return { status: 'fail', detail: 'no webhook to call (see webhook-configuration)' };
  let outcome: ProbeOutcome;
  try {
    await ctx.core.createNamespacedPod({
      namespace: ctx.namespace,
      dryRun: 'All',
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'strongroom-doctor-probe', labels: { [LABEL_INJECT]: 'true' } },
        spec: {
          automountServiceAccountToken: false,
          containers: [{ name: 'probe', image: 'strongroom.invalid/doctor-probe:never-pulled' }],
        },
      },
    });
    outcome = { kind: 'admitted' };
  } catch (error) {
    const status = apiStatus(error);
    outcome =
      status === undefined
        ? { kind: 'unreachable', message: error instanceof Error ? error.message : String(error) }
        : { kind: 'refused', code: status.code, message: status.message };
    if (outcome.kind === 'unreachable') throw explainApiError(error, 'the dry-run pod create');
  }
  return assessProbe(
    outcome,
    ctx.namespace,
    outcome.kind === 'admitted' ? await excludedBecause(ctx) : undefined,
  );
};

function isReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

/** /readyz?verbose of a pod through the API server's pod proxy; undefined when it cannot be read. */
async function readyz(ctx: Context, pod: V1Pod): Promise<string | undefined> {
  const port = pod.spec?.containers
    .flatMap((c) => c.ports ?? [])
    .find((p) => p.name === 'health')?.containerPort;
  if (port === undefined) return undefined;
  const name = pod.metadata?.name ?? '';
  try {
    const res = await rawGet(
      ctx.kc,
      `/api/v1/namespaces/${ctx.operatorNamespace}/pods/${name}:${String(port)}/proxy/readyz?verbose`,
    );
    return res.status === 200 || res.status === 503 ? res.body : undefined;
  } catch {
    return undefined;
  }
}

async function operatorPods(ctx: Context): Promise<{ pods: V1Pod[] } | { refused: string }> {
  const got = await read(`pods in ${ctx.operatorNamespace}`, () =>
    ctx.core.listNamespacedPod({ namespace: ctx.operatorNamespace, labelSelector: INSTALL.podSelector }),
  );
  if ('refused' in got) return { refused: got.refused };
  if ('missing' in got) return { pods: [] };
  return { pods: got.found.items };
}

const operatorPodsCheck: Check = async (ctx) => {
  const got = await operatorPods(ctx);
  if ('refused' in got)
    return {
      status: 'warn',
      detail: `you may not list pods in ${ctx.operatorNamespace}: ${got.refused}`,
      remedy: 'run doctor as a cluster administrator',
    };
  const { pods } = got;
  if (pods.length === 0)
    return ctx.external === true
      ? {
          status: 'warn',
          detail: `no operator pods in ${ctx.operatorNamespace}: the webhook is configured by URL, so the operator runs outside the cluster and its pods cannot be checked`,
          remedy: 'production installs run the operator in the cluster (the Helm chart)',
        }
      : {
          status: 'fail',
          detail: `no operator pods (${INSTALL.podSelector}) in ${ctx.operatorNamespace}`,
          remedy: `kubectl -n ${ctx.operatorNamespace} get statefulset strongroom; or pass --operator-namespace`,
        };
  const ready = pods.filter(isReady);
  const lines: string[] = [];
  for (const pod of pods) {
    const body = isReady(pod) ? undefined : await readyz(ctx, pod);
    const failing = body
      ?.split('\n')
      .filter((l) => l.startsWith('[-]'))
      .join('; ');
    lines.push(
      `${pod.metadata?.name ?? ''} ${isReady(pod) ? 'Ready' : `not Ready${failing ? ` (${failing})` : ''}`}`,
    );
  }
  const detail = `${String(ready.length)}/${String(pods.length)} Ready: ${lines.join(', ')}`;
  if (ready.length === 0)
    return {
      status: 'fail',
      detail,
      remedy: `kubectl -n ${ctx.operatorNamespace} describe pods -l ${INSTALL.podSelector}; kubectl logs`,
    };
  if (ready.length < pods.length)
    return { status: 'warn', detail, remedy: `kubectl -n ${ctx.operatorNamespace} describe pod <the pod>` };
  return { status: 'ok', detail };
};

const brokerEndpoints: Check = async (ctx) => {
  const service = await read(`Service ${INSTALL.brokerService}`, () =>
    ctx.core.readNamespacedService({ namespace: ctx.operatorNamespace, name: INSTALL.brokerService }),
  );
  if ('refused' in service)
    return {
      status: 'warn',
      detail: `cannot read Service ${INSTALL.brokerService}: ${service.refused}`,
      remedy: 'run doctor as a cluster administrator',
    };
  if ('missing' in service)
    return ctx.external === true
      ? {
          status: 'warn',
          detail: `no Service ${INSTALL.brokerService} in ${ctx.operatorNamespace}: the operator runs outside the cluster (webhook by URL); sidecars reach its broker at the address it was started with, which doctor cannot see`,
        }
      : {
          status: 'fail',
          detail: `no Service ${INSTALL.brokerService} in ${ctx.operatorNamespace}: injected sidecars cannot reach the key broker`,
          remedy: 'install or upgrade the Helm chart',
        };
  const slices = await read(`EndpointSlices of ${INSTALL.brokerService}`, () =>
    ctx.discovery.listNamespacedEndpointSlice({
      namespace: ctx.operatorNamespace,
      labelSelector: `kubernetes.io/service-name=${INSTALL.brokerService}`,
    }),
  );
  if (!('found' in slices)) return { status: 'warn', detail: 'cannot list its EndpointSlices' };
  const ready = slices.found.items.flatMap((s) =>
    (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).flatMap((e) => e.addresses),
  );
  const ports = (service.found.spec?.ports ?? []).map((p) => `${p.name ?? ''}:${String(p.port)}`).join(', ');
  if (ready.length === 0)
    return {
      status: 'fail',
      detail: `Service ${INSTALL.brokerService} (${ports}) has no ready endpoints: sidecars cannot attest or release keys`,
      remedy: 'check the operator pods (operator-pods)',
    };
  return {
    status: 'ok',
    detail: `Service ${INSTALL.brokerService} (${ports}) has ${String(ready.length)} ready endpoint${ready.length === 1 ? '' : 's'}: ${ready.join(', ')}`,
  };
};

/** The port named `name` of the operator container of `pod`. */
function containerPort(pod: V1Pod, name: string): number | undefined {
  for (const c of pod.spec?.containers ?? [])
    for (const p of c.ports ?? []) if (p.name === name) return p.containerPort;
  return undefined;
}

/**
 * A TLS handshake with the key broker through a port-forward to a Ready operator pod (through the API server, as
 * `kubectl port-forward` does): the broker must present a certificate for `strongroom-broker.<ns>.svc` that the
 * operator CA (the webhook's caBundle) verifies, and must then refuse the connection because doctor has no client
 * certificate (TLS 1.3 alert "certificate required"): mutual TLS is enforced.
 */
export async function brokerHandshake(
  kc: KubeConfig,
  namespace: string,
  pod: string,
  port: number,
  ca: readonly X509Certificate[],
  timeoutMs = 10_000,
): Promise<{ subject: string; verified: boolean; clientCertRequired: boolean; error?: string }> {
  const fromPod = new PassThrough();
  const toPod = new PassThrough();
  const ws = (await new PortForward(kc).portForward(namespace, pod, [port], fromPod, null, toPod)) as {
    close(): void;
  };
  const servername = `${INSTALL.brokerService}.${namespace}.svc`;
  try {
    return await new Promise((resolve) => {
      let subject = '';
      let verified = false;
      const done = (clientCertRequired: boolean, error?: string) => {
        clearTimeout(timer);
        socket.destroy();
        resolve({ subject, verified, clientCertRequired, ...(error === undefined ? {} : { error }) });
      };
      const socket = tlsConnect({
        socket: Duplex.from({ readable: fromPod, writable: toPod }),
        servername,
        ca: ca.map((c) => c.toString()),
        minVersion: 'TLSv1.3',
        ALPNProtocols: ['h2'],
      });
      const timer = setTimeout(() => {
        done(false, `no answer within ${String(timeoutMs)} ms`);
      }, timeoutMs);
      socket.on('secureConnect', () => {
        const peer = socket.getPeerX509Certificate();
        subject = peer?.subject.replace(/\n/g, ', ') ?? '';
        verified = socket.authorized;
        // The server decides after our (empty) certificate arrives: wait for its alert, nudging it with a byte.
        socket.write(Buffer.from([0]));
      });
      socket.on('error', (error: NodeJS.ErrnoException) => {
        done(
          /CERTIFICATE_REQUIRED|certificate required|alert number 116/i.test(
            `${error.code ?? ''} ${error.message}`,
          ),
          error.message,
        );
      });
      socket.on('close', () => {
        done(false, 'the broker closed the connection without an alert');
      });
    });
  } finally {
    ws.close();
  }
}

const brokerMtls: Check = async (ctx) => {
  if (ctx.external === true)
    return {
      status: 'warn',
      detail: 'the operator runs outside the cluster (webhook by URL): no broker pod to reach',
    };
  const bundle = ctx.bundle ?? [];
  if (bundle.length === 0)
    return {
      status: 'fail',
      detail: 'no operator CA to verify the broker with (see webhook-ca)',
      remedy: 'see webhook-ca',
    };
  const pods = await read('operator pods', () =>
    ctx.core.listNamespacedPod({ namespace: ctx.operatorNamespace, labelSelector: INSTALL.podSelector }),
  );
  if (!('found' in pods)) return { status: 'warn', detail: 'cannot list the operator pods' };
  const pod = pods.found.items.find((p) =>
    p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  );
  if (pod === undefined)
    return { status: 'fail', detail: 'no Ready operator pod to reach', remedy: 'check operator-pods' };
  const port = containerPort(pod, 'broker');
  if (port === undefined)
    return { status: 'fail', detail: `pod ${pod.metadata?.name ?? ''} has no port named broker` };
  const name = pod.metadata?.name ?? '';
  let result;
  try {
    result = await brokerHandshake(ctx.kc, ctx.operatorNamespace, name, port, bundle);
  } catch (error) {
    const status = apiStatus(error);
    if (status?.code === 403)
      return {
        status: 'warn',
        detail: `port-forward to ${name} refused: ${status.message}`,
        remedy: 'run doctor with pods/portforward rights',
      };
    return {
      status: 'fail',
      detail: `cannot port-forward to ${name}:${String(port)}: ${(error as Error).message}`,
    };
  }
  if (!result.verified)
    return {
      status: 'fail',
      detail: `the broker on ${name}:${String(port)} did not present a certificate the operator CA verifies for ${INSTALL.brokerService}.${ctx.operatorNamespace}.svc (${result.error ?? result.subject})`,
      remedy: 'check certificates; restart the operator to reissue its serving certificate',
    };
  if (!result.clientCertRequired)
    return {
      status: 'fail',
      detail: `the broker on ${name}:${String(port)} accepted a connection without a client certificate (${result.error ?? ''}): mutual TLS is not enforced`,
    };
  return {
    status: 'ok',
    detail: `${name}:${String(port)} presented ${result.subject} (verified by the operator CA) and refused a client without a certificate`,
  };
};

interface LeaseFacts {
  readonly serverDate: Date;
  readonly holder?: string;
  readonly renewTime?: Date;
  readonly leaseDurationSeconds?: number;
}

async function leaseFacts(ctx: Context): Promise<LeaseFacts | { missing: true } | { refused: string }> {
  const res = await rawGet(
    ctx.kc,
    `/apis/coordination.k8s.io/v1/namespaces/${ctx.operatorNamespace}/leases/${INSTALL.lease}`,
  ).catch((error: unknown) => {
    throw explainApiError(error, `reading Lease ${INSTALL.lease}`);
  });
  if (res.status === 404) return { missing: true };
  if (res.status === 401 || res.status === 403) return { refused: `HTTP ${String(res.status)}` };
  if (res.status !== 200)
    throw new CliError(EXIT.unavailable, `reading Lease ${INSTALL.lease}: HTTP ${String(res.status)}`);
  const date = typeof res.headers.date === 'string' ? new Date(res.headers.date) : new Date(Number.NaN);
  const lease = JSON.parse(res.body) as {
    spec?: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number };
  };
  return {
    serverDate: date,
    ...(lease.spec?.holderIdentity === undefined ? {} : { holder: lease.spec.holderIdentity }),
    ...(lease.spec?.renewTime === undefined ? {} : { renewTime: new Date(lease.spec.renewTime) }),
    ...(lease.spec?.leaseDurationSeconds === undefined
      ? {}
      : { leaseDurationSeconds: lease.spec.leaseDurationSeconds }),
  };
}

const kms: Check = async (ctx) => {
  const facts: string[] = [];
  let status: CheckStatus = 'ok';
  let remedy: string | undefined;
  const pods = await operatorPods(ctx);
  if ('pods' in pods && pods.pods.length > 0) {
    const ready = pods.pods.filter(isReady).length;
    facts.push(
      `${String(ready)}/${String(pods.pods.length)} operator pods Ready (each opens its KMS before it reports ready)`,
    );
    if (ready === 0) {
      status = 'fail';
      remedy = `kubectl -n ${ctx.operatorNamespace} logs <operator pod> (a KMS that cannot be opened stops the start)`;
    }
  } else {
    const lease = await leaseFacts(ctx);
    if ('serverDate' in lease && lease.renewTime !== undefined) {
      const age = lease.serverDate.getTime() - lease.renewTime.getTime();
      const fresh = age <= (lease.leaseDurationSeconds ?? 15) * 1000;
      facts.push(
        `no operator pods to check; the leader ${lease.holder ?? '?'} renewed the Lease ${duration(Math.max(0, age))} ago${fresh ? ' (a replica campaigns only after its KMS opened)' : ', longer ago than its duration'}`,
      );
      if (!fresh) {
        status = 'fail';
        remedy = 'check that the operator runs, and its logs';
      }
    } else {
      facts.push('no operator pods and no held Lease: nothing shows that a KMS was opened');
      status = 'fail';
      remedy = 'check that the operator runs, and its logs';
    }
  }
  const artifacts = await read('ModelArtifacts', () =>
    ctx.custom.listClusterCustomObject({
      group: 'strongroom.dev',
      version: 'v1alpha1',
      plural: 'modelartifacts',
    }),
  );
  if ('found' in artifacts) {
    const items = (artifacts.found as { items?: ModelArtifact[] }).items ?? [];
    const keyErrors = items.filter((a) =>
      (a.status?.conditions ?? []).some(
        (c) =>
          c.type === 'KeysReady' &&
          c.status === 'False' &&
          (c.reason === 'KeyError' || c.reason === 'RecipientKeyMissing'),
      ),
    );
    if (keyErrors.length === 0) facts.push(`no ModelArtifact of ${String(items.length)} reports a key error`);
    else {
      facts.push(
        `${String(keyErrors.length)} ModelArtifact${keyErrors.length === 1 ? ' reports' : 's report'} KeysReady False (${keyErrors
          .slice(0, 3)
          .map((a) => `${a.metadata.namespace ?? ''}/${a.metadata.name ?? ''}`)
          .join(', ')}${keyErrors.length > 3 ? ', …' : ''})`,
      );
      if (status === 'ok') status = 'warn';
      remedy ??= 'kubectl describe modelartifact <name>: the KeysReady message says whether the KMS failed';
    }
  } else facts.push('you may not list ModelArtifacts: their key conditions were not read');
  return { status, detail: facts.join('; '), ...(remedy === undefined ? {} : { remedy }) };
};

const certificates: Check = async (ctx) => {
  const bundle = ctx.bundle ?? [];
  const results: { status: CheckStatus; detail: string }[] = [];
  for (const name of INSTALL.servingSecrets) {
    const got = await read(`Secret ${name}`, () =>
      ctx.core.readNamespacedSecret({ namespace: ctx.operatorNamespace, name }),
    );
    if ('missing' in got) {
      results.push({ status: 'fail', detail: `${name}: missing` });
      continue;
    }
    if ('refused' in got) {
      results.push({ status: 'warn', detail: `${name}: you may not read it (${got.refused})` });
      continue;
    }
    const crt = Buffer.from(got.found.data?.['tls.crt'] ?? '', 'base64').toString('utf8');
    const caCrt = Buffer.from(got.found.data?.['ca.crt'] ?? '', 'base64').toString('utf8');
    const own = parseBundle(caCrt);
    const trusted = bundle.length > 0 ? bundle : 'certificates' in own ? own.certificates : [];
    results.push(assessLeaf(name, crt, trusted, ctx.now(), ctx.warnWithinMs));
  }
  const status: CheckStatus = results.some((r) => r.status === 'fail')
    ? 'fail'
    : results.some((r) => r.status === 'warn')
      ? 'warn'
      : 'ok';
  return {
    status,
    detail: results.map((r) => r.detail).join('; '),
    ...(status === 'ok'
      ? {}
      : {
          remedy:
            'the operator leader issues and renews them (docs/pki.md); check that it runs, or delete a broken Secret so it is issued again',
        }),
  };
};

const clockSkew: Check = async (ctx) => {
  const lease = await leaseFacts(ctx);
  if ('missing' in lease)
    return {
      status: 'fail',
      detail: `no Lease ${INSTALL.lease} in ${ctx.operatorNamespace}: no operator replica has led`,
      remedy: 'check that the operator runs',
    };
  if ('refused' in lease)
    return {
      status: 'warn',
      detail: `you may not read Lease ${INSTALL.lease} (${lease.refused})`,
      remedy: 'run doctor as a cluster administrator',
    };
  if (Number.isNaN(lease.serverDate.getTime()))
    return { status: 'warn', detail: 'the API server sent no Date header' };
  return assessClockSkew({
    serverDate: lease.serverDate,
    renewTime: lease.renewTime,
    holder: lease.holder,
    leaseDurationSeconds: lease.leaseDurationSeconds,
  });
};

/** Every check in order, with what it proves. */
export const CHECKS: readonly { readonly id: string; readonly method: string; readonly run: Check }[] = [
  { id: 'crds', method: 'reads both CustomResourceDefinitions and their Established condition', run: crds },
  {
    id: 'admission-policies',
    method: `reads the ValidatingAdmissionPolicies ${[...Object.values(POLICY_NAMES), INSTALL.optInPolicy].join(', ')}, their bindings, and the ConfigMap the bindings take params from`,
    run: admissionPolicies,
  },
  {
    id: 'webhook-configuration',
    method: `reads MutatingWebhookConfiguration ${INSTALL.webhookConfiguration}: webhook ${INSTALL.webhook}, its client config, failurePolicy and caBundle`,
    run: webhookConfiguration,
  },
  {
    id: 'webhook-ca',
    method:
      'parses the caBundle with X509Certificate: a CA valid now, the newest not within --warn-within of expiry',
    run: webhookCa,
  },
  {
    id: 'webhook-admission',
    method: `a server-side dry-run create of a pod labelled ${LABEL_INJECT}=true without artifacts in -n's namespace: the API server calls the webhook, whose own refusal proves it answered (nothing is created)`,
    run: webhookAdmission,
  },
  {
    id: 'operator-pods',
    method: `lists the pods ${INSTALL.podSelector} in the operator namespace and their Ready condition (and /readyz?verbose through the API server's pod proxy for those not Ready)`,
    run: operatorPodsCheck,
  },
  {
    id: 'broker-endpoints',
    method: `the Service ${INSTALL.brokerService} and its EndpointSlices: ready endpoints exist. It proves the broker pods pass their readiness probe, not that an mTLS handshake succeeds`,
    run: brokerEndpoints,
  },
  {
    id: 'broker-mtls',
    method:
      'a TLS 1.3 handshake with the broker port of a Ready operator pod, through a port-forward: its certificate must verify against the operator CA for strongroom-broker.<ns>.svc, and it must refuse doctor, which has no client certificate (mutual TLS enforced)',
    run: brokerMtls,
  },
  {
    id: 'kms',
    method:
      "indirect: the operator opens its KMS before it reports Ready and before it campaigns for the Lease, so Ready pods (or, outside the cluster, a fresh Lease) mean the KMS opened; later KMS failures show as ModelArtifacts' KeysReady False",
    run: kms,
  },
  {
    id: 'certificates',
    method: `the serving certificates in Secrets ${INSTALL.servingSecrets.join(', ')}: valid now, signed by a CA of the webhook's caBundle, renewal (at 2/3 of life) not overdue, not within --warn-within`,
    run: certificates,
  },
  {
    id: 'clock-skew',
    method: `compares the leader's Lease ${INSTALL.lease} spec.renewTime (the leader's clock) with the API server's Date header on the same read (the API server's clock, whole seconds): ahead means the leader's clock is ahead; far behind means a stalled leader or a slow clock. Only the leader's clock is measured`,
    run: clockSkew,
  },
];

/** Runs every check; a check that throws a CliError of class unavailable ends the run (the cluster is gone). */
export async function doctor(ctx: Context): Promise<DoctorReport> {
  const checks: CheckResult[] = [];
  for (const check of CHECKS) {
    const result = await check.run(ctx);
    checks.push({ id: check.id, ...result, method: check.method });
  }
  return { ok: checks.every((c) => c.status !== 'fail'), operatorNamespace: ctx.operatorNamespace, checks };
}

/** The table form: one row per check, then the remedies. */
export function formatDoctorTable(report: DoctorReport): string {
  const table = formatTable(report.checks, [
    { header: 'CHECK', cell: (c) => c.id },
    { header: 'STATUS', cell: (c) => c.status },
    { header: 'DETAIL', cell: (c) => c.detail },
  ]);
  const remedies = report.checks
    .filter((c) => c.status !== 'ok' && c.remedy !== undefined)
    .map((c) => `  ${c.id}: ${c.remedy ?? ''}`);
  const fails = report.checks.filter((c) => c.status === 'fail').length;
  const warns = report.checks.filter((c) => c.status === 'warn').length;
  return (
    table +
    (remedies.length > 0 ? `\nRemedies:\n${remedies.join('\n')}\n` : '') +
    `\n${report.ok ? 'HEALTHY' : 'UNHEALTHY'}: ${String(report.checks.length - fails - warns)} ok, ${String(warns)} warn, ${String(fails)} fail (operator namespace ${report.operatorNamespace})\n`
  );
}

/** `168h`, `7d`, `30m`: a duration in milliseconds. */
export function parseWarnWithin(text: string): number {
  const match = /^(\d+)(s|m|h|d)$/.exec(text);
  if (match === null)
    throw usageError(`--warn-within ${JSON.stringify(text)} is not a duration such as 168h, 7d or 30m`);
  const unit = { s: 1000, m: 60_000, h: 3600_000, d: DAY_MS }[match[2] as 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

interface DoctorFlags extends ClusterFlags {
  output: OutputFormat;
  operatorNamespace: string;
  warnWithin: string;
}

/** `doctor`, added to the `strongroom` program. */
export function doctorCommand(io: CliIo, now: () => Date = () => new Date()): Command {
  return example(
    new Command('doctor')
      .description(
        'check the Strongroom install: CRDs, admission policies, the webhook end to end, the operator, the broker, the KMS, certificates and clock skew',
      )
      .addOption(outputOption())
      .addOption(
        new Option('--operator-namespace <namespace>', 'the namespace Strongroom is installed in').default(
          'strongroom-system',
        ),
      )
      .addOption(
        new Option('--warn-within <duration>', 'warn about certificates expiring within this long').default(
          '168h',
        ),
      )
      .action(
        action(io, async (_options: DoctorFlags, command: Command) => {
          const flags = flagsOf<DoctorFlags>(command);
          const warnWithinMs = parseWarnWithin(flags.warnWithin);
          const kc = loadKubeConfig(flags);
          const namespace =
            flags.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
          const report = await doctor({
            kc,
            namespace,
            operatorNamespace: flags.operatorNamespace,
            warnWithinMs,
            now,
            core: kc.makeApiClient(CoreV1Api),
            admission: kc.makeApiClient(AdmissionregistrationV1Api),
            extensions: kc.makeApiClient(ApiextensionsV1Api),
            discovery: kc.makeApiClient(DiscoveryV1Api),
            custom: kc.makeApiClient(CustomObjectsApi),
          });
          if (flags.output === 'table') io.out(formatDoctorTable(report));
          else printDocument(io, flags.output, report);
          io.setExitCode(report.ok ? EXIT.ok : EXIT.failed);
        }),
      ),
    'strongroom doctor',
    'strongroom doctor -n ml-dev --operator-namespace strongroom-system -o json',
  );
}
