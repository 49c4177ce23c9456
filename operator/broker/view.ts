/**
 * What the key broker knows about the cluster when it decides: artifacts, grants, namespaces and the pods behind
 * certificates, read from the operator's informer caches (never a request per call). The caches are level-based
 * and fed by watches, so a change reaches a decision within the watch latency (milliseconds); the broker refuses to
 * decide (UNAVAILABLE) until every cache has synced.
 */
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';
import { ENVIRONMENT_LABEL, type AccessGrant, type ModelArtifact } from '../../core/api/index.ts';
import { verificationView, verifyInjectedPod, type ExpectedSidecar } from '../../core/injection/verify.ts';
import type { NamespaceFacts } from '../../core/policy/grant.ts';
import type { Informer } from '../kube/informer.ts';

/** The pod behind a certificate. */
export interface PodFacts {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly serviceAccount: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Has a deletionTimestamp: no new keys are released to it. */
  readonly terminating: boolean;
  /** Why the pod is not as injection made it (core/injection verifyInjectedPod), re-evaluated on every change of
   * the pod (a new sidecar image, an ephemeral container); undefined when it is. */
  readonly notInjected?: string | undefined;
}

/** The broker's read-only view of the cluster. */
export interface BrokerView {
  /** True once every cache has synced and is connected. */
  ready(): boolean;
  artifact(namespace: string, name: string): ModelArtifact | undefined;
  /** The AccessGrants in one namespace. */
  grants(namespace: string): readonly AccessGrant[];
  /** Existence and environment of each namespace named. */
  namespaces(names: Iterable<string>): Map<string, NamespaceFacts>;
  /** The pod with this UID; `deleted` when it was seen to go away; undefined when never seen. */
  pod(uid: string): PodFacts | 'deleted' | undefined;
}

/**
 * Keeps only what the broker reads of a pod (the pod informer's transform: memory stays small): its identity and
 * labels, and for a pod carrying `strongroom.dev/injected` the fields verifyInjectedPod reads (verificationView).
 */
export function slimPod(pod: V1Pod): V1Pod {
  const m = pod.metadata ?? {};
  const view = verificationView(pod);
  return {
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      labels: m.labels,
      deletionTimestamp: m.deletionTimestamp,
      annotations: view.metadata?.annotations,
    },
    spec: Object.assign({ containers: [] }, view.spec, { serviceAccountName: pod.spec?.serviceAccountName }),
  } as V1Pod;
}

/** How many deleted pod UIDs are remembered, so that a deleted pod's certificate is refused without waiting. */
const TOMBSTONES = 4096;

/** A {@link BrokerView} over the operator's informers. */
export class InformerBrokerView implements BrokerView {
  readonly #artifacts: Informer<ModelArtifact>;
  readonly #grants: Informer<AccessGrant>;
  readonly #namespaces: Informer<V1Namespace>;
  readonly #pods: Informer<V1Pod>;
  readonly #grantsByNamespace = new Map<string, Map<string, AccessGrant>>();
  /** Each pod's facts without the verdict, and its slim object, judged when read (below). */
  readonly #podsByUid = new Map<string, { facts: Omit<PodFacts, 'notInjected'>; object: V1Pod }>();
  readonly #deleted = new Set<string>();
  readonly #sidecar: ExpectedSidecar;

  constructor(informers: {
    artifacts: Informer<ModelArtifact>;
    grants: Informer<AccessGrant>;
    namespaces: Informer<V1Namespace>;
    pods: Informer<V1Pod>;
    /** The configured sidecar: a pod whose spec is not what injection produces with it gets no key. */
    sidecar: ExpectedSidecar;
  }) {
    this.#sidecar = informers.sidecar;
    this.#artifacts = informers.artifacts;
    this.#grants = informers.grants;
    this.#namespaces = informers.namespaces;
    this.#pods = informers.pods;
    this.#grants.onEvent((event) => {
      const ns = event.object.metadata.namespace ?? '';
      const byName = this.#grantsByNamespace.get(ns) ?? new Map<string, AccessGrant>();
      if (event.type === 'deleted') byName.delete(event.key);
      else byName.set(event.key, event.object);
      if (byName.size === 0) this.#grantsByNamespace.delete(ns);
      else this.#grantsByNamespace.set(ns, byName);
    });
    this.#pods.onEvent((event) => {
      const uid = event.object.metadata?.uid;
      if (uid === undefined) return;
      if (event.type === 'deleted') {
        this.#podsByUid.delete(uid);
        this.#deleted.add(uid);
        if (this.#deleted.size > TOMBSTONES) {
          const [oldest] = this.#deleted;
          if (oldest !== undefined) this.#deleted.delete(oldest);
        }
        return;
      }
      const m = event.object.metadata ?? {};
      this.#podsByUid.set(uid, {
        facts: {
          uid,
          namespace: m.namespace ?? '',
          name: m.name ?? '',
          serviceAccount: event.object.spec?.serviceAccountName ?? 'default',
          labels: m.labels ?? {},
          terminating: m.deletionTimestamp !== undefined,
        },
        object: event.object,
      });
    });
  }

  ready(): boolean {
    return [this.#artifacts, this.#grants, this.#namespaces, this.#pods].every(
      (i) => i.hasSynced() && i.healthy(),
    );
  }

  artifact(namespace: string, name: string): ModelArtifact | undefined {
    return this.#artifacts.get(`${namespace}/${name}`);
  }

  grants(namespace: string): readonly AccessGrant[] {
    return [...(this.#grantsByNamespace.get(namespace)?.values() ?? [])];
  }

  namespaces(names: Iterable<string>): Map<string, NamespaceFacts> {
    const facts = new Map<string, NamespaceFacts>();
    for (const name of names) {
      const ns = this.#namespaces.get(name);
      facts.set(name, {
        exists: ns !== undefined && ns.metadata?.deletionTimestamp === undefined,
        environment: ns?.metadata?.labels?.[ENVIRONMENT_LABEL],
      });
    }
    return facts;
  }

  /**
   * The pod's facts, with the injection verdict judged now: it depends on the operator's trusted CA set, which is
   * loaded after the caches fill (a verdict kept from the first list would refuse every pod that predates the
   * broker's start, such as every pod after an operator restart).
   */
  pod(uid: string): PodFacts | 'deleted' | undefined {
    const found = this.#podsByUid.get(uid);
    if (found === undefined) return this.#deleted.has(uid) ? 'deleted' : undefined;
    return { ...found.facts, notInjected: verifyInjectedPod(found.object, this.#sidecar) };
  }
}
