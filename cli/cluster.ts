/**
 * The cluster as the user's kubeconfig reaches it, like kubectl: `--kubeconfig` (else `$KUBECONFIG`, else
 * `~/.kube/config`), `--context` (else the current context) and `-n, --namespace` (else the context's namespace, else
 * `default`). Every call is made as the user: the API server's RBAC and Strongroom's admission policies decide, and
 * {@link explainApiError} turns their refusals into a message and an exit code.
 */
import {
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { Command, Option } from 'commander';
import type { AccessGrant, ModelArtifact } from '../core/api/index.ts';
import { CliError, EXIT } from './io.ts';

export const GROUP = 'strongroom.dev';
export const VERSION = 'v1alpha1';

/** The global flags every cluster command reads (`command.optsWithGlobals()`). */
export interface ClusterFlags {
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly namespace?: string;
}

/** Adds the kubectl-like global flags to the root program. */
export function addClusterFlags(program: Command): Command {
  return program
    .addOption(
      new Option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)'),
    )
    .addOption(new Option('--context <name>', 'kubeconfig context (default: the current context)'))
    .addOption(
      new Option(
        '-n, --namespace <namespace>',
        "namespace (default: the context's namespace, then default)",
      ).env('STRONGROOM_NAMESPACE'),
    );
}

/** Who the API server says the caller is. */
export interface Caller {
  readonly username: string;
  readonly groups: readonly string[];
}

/** A connection to the cluster as the user. */
export interface Cluster {
  readonly kc: KubeConfig;
  /** The namespace the flags or the context chose. */
  readonly namespace: string;
  readonly custom: CustomObjectsApi;
  readonly core: CoreV1Api;
  whoAmI(): Promise<Caller>;
  getArtifact(namespace: string, name: string): Promise<ModelArtifact>;
  getGrant(namespace: string, name: string): Promise<AccessGrant>;
  listArtifacts(namespace: string | undefined): Promise<ModelArtifact[]>;
  listGrants(namespace: string | undefined): Promise<AccessGrant[]>;
  /** A JSON patch (RFC 6902) on an artifact or grant. */
  jsonPatch(
    plural: 'modelartifacts' | 'accessgrants',
    namespace: string,
    name: string,
    patch: readonly unknown[],
  ): Promise<unknown>;
  /** A merge patch (RFC 7386). */
  mergePatch(
    plural: 'modelartifacts' | 'accessgrants',
    namespace: string,
    name: string,
    patch: unknown,
  ): Promise<unknown>;
}

/** Loads the kubeconfig as kubectl would. */
export function loadKubeConfig(flags: ClusterFlags): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (flags.kubeconfig !== undefined) kc.loadFromFile(flags.kubeconfig);
    else kc.loadFromDefault();
  } catch (cause) {
    throw new CliError(
      EXIT.usage,
      `cannot load the kubeconfig ${flags.kubeconfig ?? '(default)'}: ${(cause as Error).message}`,
      { cause },
    );
  }
  if (flags.context !== undefined) {
    if (kc.getContextObject(flags.context) === null)
      throw new CliError(EXIT.usage, `the kubeconfig has no context ${JSON.stringify(flags.context)}`);
    kc.setCurrentContext(flags.context);
  }
  if (kc.getCurrentCluster() === null)
    throw new CliError(EXIT.usage, 'the kubeconfig has no current cluster (set a context with --context)');
  return kc;
}

/** Connects as the user. Nothing is sent until a method is called. */
export function connect(flags: ClusterFlags): Cluster {
  const kc = loadKubeConfig(flags);
  const namespace = flags.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const target = (plural: string, ns: string, name: string) => ({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural,
    name,
  });
  const list = async <T>(plural: string, ns: string | undefined): Promise<T[]> => {
    const result = (
      ns === undefined
        ? await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })
        : await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural })
    ) as { items?: T[] };
    return result.items ?? [];
  };
  return {
    kc,
    namespace,
    custom,
    core,
    async whoAmI() {
      const self = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
      });
      const user = self.status?.userInfo;
      if (!user?.username)
        throw new CliError(EXIT.unavailable, 'the API server did not say who you are (SelfSubjectReview)');
      return { username: user.username, groups: user.groups ?? [] };
    },
    async getArtifact(ns, name) {
      return (await custom.getNamespacedCustomObject(target('modelartifacts', ns, name))) as ModelArtifact;
    },
    async getGrant(ns, name) {
      return (await custom.getNamespacedCustomObject(target('accessgrants', ns, name))) as AccessGrant;
    },
    listArtifacts: (ns) => list<ModelArtifact>('modelartifacts', ns),
    listGrants: (ns) => list<AccessGrant>('accessgrants', ns),
    async jsonPatch(plural, ns, name, patch) {
      return (await custom.patchNamespacedCustomObject(
        { ...target(plural, ns, name), body: patch },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      )) as unknown;
    },
    async mergePatch(plural, ns, name, patch) {
      return (await custom.patchNamespacedCustomObject(
        { ...target(plural, ns, name), body: patch },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )) as unknown;
    },
  };
}

/** The status code and message of a client-node ApiException, if `error` is one. */
export function apiStatus(error: unknown): { code: number; message: string; reason?: string } | undefined {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'number') return undefined;
  const body = (error as { body?: unknown }).body;
  let message = '';
  let reason: string | undefined;
  if (typeof body === 'string') {
    try {
      const status = JSON.parse(body) as { message?: unknown; reason?: unknown };
      if (typeof status.message === 'string') message = status.message;
      if (typeof status.reason === 'string') reason = status.reason;
    } catch {
      message = body;
    }
  } else if (body !== null && typeof body === 'object') {
    const status = body as { message?: unknown; reason?: unknown };
    if (typeof status.message === 'string') message = status.message;
    if (typeof status.reason === 'string') reason = status.reason;
  }
  return { code, message: message || `HTTP ${String(code)}`, ...(reason === undefined ? {} : { reason }) };
}

/**
 * A CliError for any failure of a cluster call: the API server's own message (the admission policy's or RBAC's
 * reason) with the exit code of its class; a connection failure is `unavailable`.
 */
export function explainApiError(error: unknown, doing: string): CliError {
  if (error instanceof CliError) return error;
  const status = apiStatus(error);
  if (status !== undefined) {
    if (status.code === 404)
      return new CliError(EXIT.notFound, `${doing}: ${status.message}`, { cause: error });
    if (status.code === 401)
      return new CliError(EXIT.refused, `${doing}: not authenticated (${status.message})`, { cause: error });
    if (status.code === 403)
      return new CliError(EXIT.refused, `${doing}: refused by the API server: ${status.message}`, {
        cause: error,
      });
    if (status.code === 409)
      return new CliError(
        EXIT.refused,
        `${doing}: conflict (the object changed while you acted on it; run the command again): ${status.message}`,
        { cause: error },
      );
    if (status.code === 400 || status.code === 422)
      return new CliError(EXIT.refused, `${doing}: refused by the API server: ${status.message}`, {
        cause: error,
      });
    return new CliError(
      EXIT.unavailable,
      `${doing}: the API server answered ${String(status.code)}: ${status.message}`,
      {
        cause: error,
      },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  const code =
    (error as { code?: unknown; cause?: { code?: unknown } }).cause?.code ??
    (error as { code?: unknown }).code;
  const network =
    typeof code === 'string' &&
    /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|EAI_AGAIN|CERT_|ERR_TLS|DEPTH_ZERO|UNABLE_TO)/.test(
      code,
    );
  return new CliError(
    EXIT.unavailable,
    network || /fetch failed|socket hang up/.test(message)
      ? `${doing}: cannot reach the cluster: ${message}`
      : `${doing}: ${message}`,
    { cause: error },
  );
}
