/**
 * The ModelArtifact controller. Level-triggered: it reads the artifact from the cache, makes sure its keys exist and
 * sit under the current KEK, asks the pure policy (core/policy/artifact.ts) for conditions, and writes status only
 * when it changed. A finalizer holds deletion until the keys are crypto-shredded. A version sealed for the first time
 * is recorded in the audit log as version-published (by its publisher) and version-sealed before the status that
 * lists its key is written; if the log is not open the reconcile fails and is retried (at-least-once on a crash).
 */
import type { CustomObjectsApi, V1Secret } from '@kubernetes/client-node';
import type winston from 'winston';
import {
  MODEL_ARTIFACT_PLURAL,
  type Classification,
  type ModelArtifact,
  type ModelArtifactStatus,
  type ModelArtifactStatusKey,
  type ModelArtifactVersion,
} from '../../core/api/index.ts';
import { versionEvents } from '../../core/audit/index.ts';
import { KmsError, type KeyVersionInfo, type KmsProvider } from '../../core/kms/provider.ts';
import { artifactStatus, evaluateArtifact, type VersionKeyFacts } from '../../core/policy/artifact.ts';
import { findCondition, statusEqual } from '../../core/policy/conditions.ts';
import type { RotationTable } from '../../core/policy/rotation.ts';
import type { EventRecorder } from '../kube/events.ts';
import { objectKey, type Informer, type InformerEvent } from '../kube/informer.ts';
import type { ReconcileResult } from '../kube/workqueue.ts';
import { watch, type Controller, type EventSource } from '../manager/controller.ts';
import type { OperatorMetrics } from '../observability/metrics.ts';
import type { RevocationPublisher } from '../revocation/derive.ts';
import {
  ArtifactKeyError,
  decodeWrapped,
  encodeWrapped,
  kekIdFor,
  kekVersionsInUse,
  ownKekId,
  RECIPIENT_KEY_ALGORITHM,
  type ArtifactKeyring,
  type KekScope,
  type RecipientKey,
} from '../keys/artifact-keys.ts';
import type { GovernanceAudit } from './governance-audit.ts';
import { LineageIndex } from './lineage-index.ts';
import { writeFinalizers, writeStatus } from './status-writer.ts';

export const SHRED_FINALIZER = 'strongroom.dev/crypto-shred';

/** A version sealed in this reconcile, with the KEK its DEK is now wrapped under. */
interface SealedVersion {
  readonly version: ModelArtifactVersion;
  readonly key: { readonly id: string; readonly version: string };
}
/** Timers beyond this are re-armed later: setTimeout cannot wait longer than ~24.8 days. */
const MAX_REQUEUE_MS = 6 * 3600_000;

export interface ModelArtifactControllerOptions {
  readonly custom: CustomObjectsApi;
  readonly kms: KmsProvider;
  readonly keyring: ArtifactKeyring;
  readonly artifacts: Informer<ModelArtifact>;
  readonly events: EventRecorder;
  /** Where revocations go: the ledger that lets each through once (revocation/derive.ts). */
  readonly bus: RevocationPublisher;
  readonly metrics: OperatorMetrics;
  readonly logger: winston.Logger;
  readonly rotation: RotationTable;
  /** How long a retired version of an artifact's own KEK is kept (`<c>.kekVersionRetention` of the table in force). */
  readonly retention: (classification: Classification) => number;
  readonly scopes: Readonly<Record<Classification, KekScope>>;
  /** Where published and sealed versions are recorded (the leader's audit log). */
  readonly audit: GovernanceAudit;
  readonly now?: () => Date;
}

export class ModelArtifactController {
  readonly #o: ModelArtifactControllerOptions;
  readonly #now: () => Date;
  /**
   * Per artifact key: "uid/version" of versions whose sealing this process already audited but whose key the cached
   * status does not show yet (a stale cache, or a status write that failed); they are not audited twice.
   */
  readonly #audited = new Map<string, Set<string>>();
  /** Parent artifact key → its lineage children, so that a parent appearing re-checks its children. */
  readonly #lineage = new LineageIndex();
  /**
   * The artifact KEKs whose strongroom_kek_age_seconds and strongroom_kek_rotation_compliant series this replica
   * set (key → classification label): removed when the artifact goes, and all of them when the controller stops
   * (the replica stopped leading), so that only the leader exports them.
   */
  readonly #kekSeries = new Map<string, Classification>();

  constructor(options: ModelArtifactControllerOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * How the manager runs this controller (operator/manager/controller.ts): queue `modelartifact`, every artifact on a
   * resync, and these watches: an artifact's events queue it and the artifacts whose lineage names it as a parent;
   * any event of the KMS key set Secret (a KEK created or rotated, by this leader or by an administrator) queues every
   * artifact to re-check its wraps; a recipient-key Secret queues the artifact its labels name; a valid change of the
   * classification table queues every artifact.
   */
  controller(sources: {
    readonly workers: number;
    readonly keyset: EventSource<unknown>;
    readonly recipientKeys: EventSource<InformerEvent<V1Secret>>;
    readonly tableChanged: EventSource<unknown>;
  }): Controller {
    const all = (): string[] => this.#o.artifacts.list().map(objectKey);
    return {
      name: 'modelartifact',
      workers: sources.workers,
      reconcile: (key) => this.reconcile(key),
      resync: all,
      stopped: () => {
        this.forgetKekSeries();
      },
      watches: [
        watch(this.#o.artifacts, (event) => {
          this.#lineage.update(event);
          return [event.key, ...this.#lineage.childrenOf(event.key)];
        }),
        watch(sources.keyset, all),
        watch(sources.recipientKeys, (event) => {
          const labels = event.object.metadata?.labels ?? {};
          const ns = labels['strongroom.dev/artifact-namespace'];
          const name = labels['strongroom.dev/artifact-name'];
          return ns && name ? [`${ns}/${name}`] : [];
        }),
        watch(sources.tableChanged, all),
      ],
    };
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const artifact = this.#o.artifacts.get(key);
    if (!artifact) {
      this.#audited.delete(key);
      return undefined;
    }
    const finalizers = artifact.metadata.finalizers ?? [];
    if (artifact.metadata.deletionTimestamp) {
      if (finalizers.includes(SHRED_FINALIZER)) await this.#shred(artifact, finalizers);
      return undefined;
    }
    if (!finalizers.includes(SHRED_FINALIZER)) {
      // Finalizer first, keys second: a key never exists without the finalizer that will shred it.
      await writeFinalizers(this.#o.custom, MODEL_ARTIFACT_PLURAL, artifact, [
        ...finalizers,
        SHRED_FINALIZER,
      ]);
      return undefined;
    }
    return this.#sync(artifact);
  }

  async #sync(artifact: ModelArtifact): Promise<ReconcileResult | undefined> {
    const now = this.#now();
    const kekId = kekIdFor(artifact, this.#o.scopes);
    const scope = this.#o.scopes[artifact.spec.classification];
    const period = this.#o.rotation[artifact.spec.classification];
    let kek = await this.#o.keyring.ensureKek(kekId);
    if (scope === 'artifact') {
      kek = await this.#rotateOwnKekIfDue(artifact, kekId, kek, period, now);
      const labels = { key: kekId, classification: artifact.spec.classification };
      const age = now.getTime() - new Date(kek.createdAt).getTime();
      if (this.#kekSeries.get(kekId) !== labels.classification) this.#forgetOwnKek(artifact);
      this.#kekSeries.set(kekId, labels.classification);
      this.#o.metrics.kekAgeSeconds.set(labels, age / 1000);
      this.#o.metrics.kekRotationCompliant.set(labels, age < period ? 1 : 0);
    } else {
      // The table no longer gives this classification a KEK of its own: its old one is no longer rotated here.
      this.#forgetOwnKek(artifact);
    }

    let recipient: RecipientKey | undefined;
    let recipientError: string | undefined;
    try {
      recipient = await this.#o.keyring.ensureRecipientKey(artifact, kekId);
      recipient = await this.#o.keyring.rewrapRecipientKey(artifact, recipient, kekId);
    } catch (error) {
      if (!(error instanceof ArtifactKeyError)) throw error;
      recipientError = error.message;
    }

    const { keys, facts, sealed } = await this.#versionKeys(artifact, recipient, kekId);
    const decision = evaluateArtifact({
      artifact,
      siblings: this.#lineageSiblings(artifact),
      recipientKeyReady: recipient !== undefined,
      keys: recipientError
        ? [...facts, { version: '', sealed: false, kekVersion: undefined, error: recipientError }]
        : facts,
      kek: { primaryVersion: kek.version, primaryCreatedAt: new Date(kek.createdAt) },
      rotationPeriodMs: period,
      now,
    });
    const status = artifactStatus(
      artifact.status,
      decision,
      artifact,
      {
        ...(recipient
          ? {
              recipientPublicKey: {
                algorithm: RECIPIENT_KEY_ALGORITHM,
                fingerprint: recipient.fingerprint,
                publicKeyPem: recipient.publicKeyPem,
                createdAt: recipient.createdAt,
              },
            }
          : {}),
        keys,
      },
      now,
    );
    this.#publishWithdrawals(artifact, keys);
    if (!statusEqual(artifact.status, status)) {
      await this.#auditSealed(artifact, sealed);
      await writeStatus(
        this.#o.custom,
        MODEL_ARTIFACT_PLURAL,
        artifact.metadata.namespace ?? '',
        artifact.metadata.name ?? '',
        artifact.status,
        status,
      );
      this.#announce(artifact, status.conditions);
    }
    if (scope !== 'artifact') return undefined;
    // Only now that the status naming every wrapped DEK is stored may the versions nothing uses go.
    const retireAt = await this.#retireOwnKekVersions(artifact, kekId, keys, recipient, now);
    const dueAt = Math.min(decision.rotationDueAt?.getTime() ?? Infinity, retireAt ?? Infinity);
    if (dueAt === Infinity) return undefined;
    return { requeueAfterMs: Math.min(MAX_REQUEUE_MS, Math.max(0, dueAt - now.getTime())) };
  }

  /**
   * Destroys the retired versions of the artifact's own KEK that are due (docs/kms.md, "Rotation, retention,
   * destruction"): only when every key it wraps (the DEKs of the status just stored, the recipient private key) is on
   * the primary version, and only versions retired longer than the classification's retention. Without a readable
   * recipient key nothing is destroyed. Returns when the next retired version falls due (ms since the epoch).
   */
  async #retireOwnKekVersions(
    artifact: ModelArtifact,
    kekId: string,
    keys: readonly ModelArtifactStatusKey[],
    recipient: RecipientKey | undefined,
    now: Date,
  ): Promise<number | undefined> {
    const classification = artifact.spec.classification;
    const stored: ModelArtifact = { ...artifact, status: { ...artifact.status, keys: [...keys] } };
    const inUse = recipient ? kekVersionsInUse(kekId, [stored], [recipient.wrapped]) : undefined;
    const retentionMs = this.#o.retention(classification);
    const result = await this.#o.keyring.destroyRetiredVersions(kekId, { inUse, retentionMs, now });
    if (result.destroyed.length > 0) {
      this.#o.metrics.kekVersionsDestroyed.inc({ classification }, result.destroyed.length);
      this.#o.events.record(
        artifact,
        'Normal',
        'KekVersionsDestroyed',
        `retired version(s) ${result.destroyed.join(', ')} of KEK ${kekId} destroyed`,
      );
      this.#o.logger.info('destroyed retired KEK versions', {
        namespace: artifact.metadata.namespace,
        name: artifact.metadata.name,
        keyId: kekId,
        classification,
        kekVersions: result.destroyed,
        retentionMs,
      });
    }
    return result.nextDueAt?.getTime();
  }

  async #rotateOwnKekIfDue(
    artifact: ModelArtifact,
    kekId: string,
    kek: KeyVersionInfo,
    periodMs: number,
    now: Date,
  ): Promise<KeyVersionInfo> {
    if (now.getTime() - new Date(kek.createdAt).getTime() < periodMs) return kek;
    const version = await this.#o.kms.rotate(kekId);
    this.#o.metrics.kekRotations.inc({ key: kekId, classification: artifact.spec.classification });
    this.#o.events.record(artifact, 'Normal', 'KekRotated', `KEK ${kekId} rotated to version ${version}`);
    this.#o.logger.info('rotated artifact KEK', { keyId: kekId, kekVersion: version });
    return this.#o.keyring.ensureKek(kekId);
  }

  async #versionKeys(
    artifact: ModelArtifact,
    recipient: RecipientKey | undefined,
    kekId: string,
  ): Promise<{ keys: ModelArtifactStatusKey[]; facts: VersionKeyFacts[]; sealed: SealedVersion[] }> {
    const previous = new Map((artifact.status?.keys ?? []).map((k) => [k.version, k]));
    const withdrawn = new Set(artifact.spec.withdrawnVersions ?? []);
    const keys: ModelArtifactStatusKey[] = [];
    const facts: VersionKeyFacts[] = [];
    const sealed: SealedVersion[] = [];
    for (const version of artifact.spec.versions ?? []) {
      const state = withdrawn.has(version.name) ? ('Withdrawn' as const) : ('Sealed' as const);
      const old = previous.get(version.name);
      try {
        let entry: ModelArtifactStatusKey;
        if (old?.wrappedKey) {
          const wrapped = decodeWrapped(old.wrappedKey);
          const moved = await this.#o.keyring.rewrapVersion(artifact, version.name, wrapped, kekId);
          if (moved !== wrapped)
            this.#o.metrics.keyRewraps.inc({ classification: artifact.spec.classification });
          entry = {
            ...old,
            wrappedKey: encodeWrapped(moved),
            kekId: moved.keyId,
            kekVersion: moved.keyVersion,
            state,
          };
        } else {
          if (!recipient)
            throw new ArtifactKeyError('RecipientKeyInvalid', 'the recipient key is unavailable');
          const wrapped = await this.#o.keyring.sealVersion(artifact, version, recipient, kekId);
          entry = {
            version: version.name,
            keyFingerprint: version.encryption.keyFingerprint,
            wrappedKey: encodeWrapped(wrapped),
            kekId: wrapped.keyId,
            kekVersion: wrapped.keyVersion,
            sealedAt: this.#now().toISOString(),
            state,
          };
          sealed.push({ version, key: { id: wrapped.keyId, version: wrapped.keyVersion } });
          this.#o.events.record(
            artifact,
            'Normal',
            'VersionSealed',
            `version ${version.name} sealed under ${wrapped.keyId} v${wrapped.keyVersion}`,
          );
          this.#o.logger.info('sealed version', {
            namespace: artifact.metadata.namespace,
            name: artifact.metadata.name,
            version: version.name,
            keyId: wrapped.keyId,
            keyVersion: wrapped.keyVersion,
          });
        }
        keys.push(entry);
        facts.push({ version: version.name, sealed: true, kekVersion: entry.kekVersion, error: undefined });
      } catch (error) {
        if (
          !(error instanceof ArtifactKeyError) &&
          !(error instanceof KmsError && error.code !== 'unavailable')
        )
          throw error;
        // A key that cannot be recovered is reported, not retried forever; the old record (if any) is kept.
        if (old) keys.push(old);
        facts.push({
          version: version.name,
          sealed: false,
          kekVersion: undefined,
          error: (error as Error).message,
        });
        this.#o.events.record(
          artifact,
          'Warning',
          error instanceof ArtifactKeyError ? error.reason : 'KeyError',
          (error as Error).message,
        );
      }
    }
    return { keys, facts, sealed };
  }

  /** Appends version-published and version-sealed for each version sealed in this reconcile, once per process. */
  async #auditSealed(artifact: ModelArtifact, sealed: readonly SealedVersion[]): Promise<void> {
    const key = `${artifact.metadata.namespace ?? ''}/${artifact.metadata.name ?? ''}`;
    const uid = artifact.metadata.uid ?? '';
    const shown = new Set((artifact.status?.keys ?? []).map((k) => `${uid}/${k.version}`));
    const done = new Set([...(this.#audited.get(key) ?? [])].filter((id) => !shown.has(id)));
    this.#audited.set(key, done);
    for (const { version, key: kek } of sealed) {
      const id = `${uid}/${version.name}`;
      if (done.has(id)) continue;
      for (const event of versionEvents(artifact, version, kek)) await this.#o.audit.record(event);
      done.add(id);
    }
  }

  #lineageSiblings(artifact: ModelArtifact): Map<string, ModelArtifact> {
    const namespace = artifact.metadata.namespace ?? '';
    const siblings = new Map<string, ModelArtifact>();
    for (const version of artifact.spec.versions ?? [])
      for (const parent of version.lineage?.parents ?? []) {
        if (parent.kind !== 'ModelArtifact' || siblings.has(parent.name)) continue;
        const found = this.#o.artifacts.get(`${namespace}/${parent.name}`);
        if (found) siblings.set(parent.name, found);
      }
    return siblings;
  }

  #publishWithdrawals(artifact: ModelArtifact, keys: readonly ModelArtifactStatusKey[]): void {
    const before = new Set(
      (artifact.status?.keys ?? []).filter((k) => k.state === 'Withdrawn').map((k) => k.version),
    );
    const newly = keys.filter((k) => k.state === 'Withdrawn' && !before.has(k.version)).map((k) => k.version);
    if (newly.length === 0 || !artifact.status?.keys) return;
    const published = this.#o.bus.publish({
      reason: 'version-withdrawn',
      artifact: { namespace: artifact.metadata.namespace ?? '', name: artifact.metadata.name ?? '' },
      subjects: [],
      versions: newly,
      message: `version(s) ${newly.join(', ')} withdrawn`,
    });
    // Counted once per replica: the ledger drops what the informers already showed (revocation/derive.ts).
    if (published !== undefined) this.#o.metrics.revocations.inc({ reason: 'version-withdrawn' });
  }

  /** Events for Ready flips that need attention: turning False, and recovering from False. Becoming Ready the
   * first time is the normal path and is not worth an API write per artifact. */
  #announce(artifact: ModelArtifact, conditions: ModelArtifactStatus['conditions']): void {
    const before = findCondition(artifact.status?.conditions, 'Ready');
    const after = findCondition(conditions, 'Ready');
    if (!after || before?.status === after.status) return;
    if (after.status === 'True' && before?.status !== 'False') return;
    this.#o.events.record(
      artifact,
      after.status === 'True' ? 'Normal' : 'Warning',
      after.reason,
      after.message,
    );
  }

  /** Removes the KEK gauge series this controller set for the artifact's own KEK, if any. */
  #forgetOwnKek(artifact: ModelArtifact): void {
    const key = ownKekId(artifact.metadata.uid ?? '');
    const classification = this.#kekSeries.get(key);
    if (classification === undefined) return;
    this.#kekSeries.delete(key);
    this.#o.metrics.kekAgeSeconds.remove({ key, classification });
    this.#o.metrics.kekRotationCompliant.remove({ key, classification });
  }

  /**
   * Removes every KEK gauge series this controller set. The manager calls it when the controller stops (the end of a
   * leadership term, once every reconcile has returned): a former leader must not keep exporting its last values.
   */
  forgetKekSeries(): void {
    for (const [key, classification] of this.#kekSeries) {
      this.#o.metrics.kekAgeSeconds.remove({ key, classification });
      this.#o.metrics.kekRotationCompliant.remove({ key, classification });
    }
    this.#kekSeries.clear();
  }

  async #shred(artifact: ModelArtifact, finalizers: readonly string[]): Promise<void> {
    const kekId = kekIdFor(artifact, this.#o.scopes);
    // Its own KEK goes whatever the table says now: dedicatedKek may have been turned off since it was made.
    await this.#o.keyring.shred(artifact);
    this.#forgetOwnKek(artifact);
    const published = this.#o.bus.publish({
      reason: 'artifact-deleted',
      artifact: { namespace: artifact.metadata.namespace ?? '', name: artifact.metadata.name ?? '' },
      subjects: [],
      versions: [],
      message: 'the artifact was deleted and its keys crypto-shredded',
    });
    // Counted once per replica: the ledger drops what the informers already showed (revocation/derive.ts).
    if (published !== undefined) this.#o.metrics.revocations.inc({ reason: 'artifact-deleted' });
    this.#o.metrics.cryptoShreds.inc();
    this.#o.events.record(
      artifact,
      'Normal',
      'CryptoShredded',
      `keys of ${artifact.metadata.name} destroyed`,
    );
    this.#o.logger.info('crypto-shredded artifact', {
      namespace: artifact.metadata.namespace,
      name: artifact.metadata.name,
      uid: artifact.metadata.uid,
      keyId: kekId,
    });
    await writeFinalizers(
      this.#o.custom,
      MODEL_ARTIFACT_PLURAL,
      artifact,
      finalizers.filter((f) => f !== SHRED_FINALIZER),
    );
  }
}
