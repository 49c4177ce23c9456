/**
 * The KEK age and compliance series are the leader's: the controllers that set them (the KEK rotation controller for
 * the shared KEKs, the artifact controller for artifacts' own KEKs) remove them when they stop, so that a replica that
 * lost the Lease exports none (a former leader's last 0 would keep StrongroomKekRotationOverdue firing), and
 * strongroom_rotation_compliance_ratio, computed from them at every scrape, goes with them. Run through the manager's
 * ControllerRunnable, as the operator runs them, with the real key ring on the local KMS.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CoreV1Api, CustomObjectsApi, V1Secret } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import winston from 'winston';
import { CLASSIFICATIONS, type Classification, type ModelArtifact } from '../../core/api/index.ts';
import { FileKeySetStore, LocalKmsProvider } from '../../core/kms/local.ts';
import { ArtifactKeyring, DEFAULT_KEK_SCOPES, type KekScope } from '../keys/artifact-keys.ts';
import type { Informer } from '../kube/informer.ts';
import { ControllerRunnable, Signal, type EventSource } from '../manager/controller.ts';
import { OperatorMetrics } from '../observability/metrics.ts';
import { KekRotationController } from './kek-rotation.ts';
import { ModelArtifactController, SHRED_FINALIZER } from './modelartifact.ts';

const D = 86_400_000;
const silent = winston.createLogger({ silent: true });
const dir = mkdtempSync(join(tmpdir(), 'strongroom-kek-series-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The KEK series the registry exports now, as `<metric>{key,classification}` lines without values. */
async function kekSeries(metrics: OperatorMetrics): Promise<string[]> {
  const text = await metrics.registry.metrics();
  return text
    .split('\n')
    .filter((l) => /^strongroom_(kek_age_seconds|kek_rotation_compliant|rotation_compliance_ratio)\{/.test(l))
    .map((l) => l.slice(0, l.lastIndexOf(' ')))
    .sort();
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('timed out');
}

function sharedScopes(): Record<Classification, KekScope> {
  return Object.fromEntries(CLASSIFICATIONS.map((c) => [c, 'shared'])) as Record<Classification, KekScope>;
}

describe('KEK series when the controllers stop (the replica stops leading)', () => {
  it('the KEK rotation controller removes the shared KEKs’ series, and the ratio goes with them', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, `${randomUUID()}.json`)));
    const keyring = new ArtifactKeyring({
      kms,
      core: {} as CoreV1Api,
      namespace: 'strongroom',
      logger: silent,
    });
    const metrics = new OperatorMetrics();
    let clock = new Date('2026-12-07T00:00:00Z');
    const controller = new KekRotationController({
      kms,
      artifacts: { list: () => [], hasSynced: () => true } as unknown as Informer<ModelArtifact>,
      recipientKeys: { list: () => [], hasSynced: () => true },
      rotation: { public: 30 * D, internal: 30 * D, confidential: 30 * D, restricted: 30 * D },
      retention: () => D,
      scopes: sharedScopes(),
      metrics,
      logger: silent,
      ensureKek: (keyId) => keyring.ensureKek(keyId),
      destroyRetiredVersions: (keyId, options) => keyring.destroyRetiredVersions(keyId, options),
      enqueueArtifact: () => undefined,
      now: () => clock,
    });
    const runnable = new ControllerRunnable(controller.controller({ tableChanged: new Signal() }), {
      logger: silent,
    });

    runnable.start();
    await until(async () => (await kekSeries(metrics)).length === 12);
    expect(await kekSeries(metrics)).toContain(
      'strongroom_kek_rotation_compliant{key="strongroom-internal",classification="internal"}',
    );
    expect(await kekSeries(metrics)).toContain(
      'strongroom_rotation_compliance_ratio{classification="internal"}',
    );
    await runnable.stop();
    expect(await kekSeries(metrics)).toEqual([]);

    // A new term (leader again) sets them again from the KMS.
    clock = new Date(clock.getTime() + D);
    runnable.start();
    await until(async () => (await kekSeries(metrics)).length === 12);
    await runnable.stop();
    expect(await kekSeries(metrics)).toEqual([]);
    await kms.close();
  });

  it('the artifact controller removes its artifacts’ own KEK series on stop, and when the table turns dedicatedKek off', async () => {
    const kms = new LocalKmsProvider(new FileKeySetStore(join(dir, `${randomUUID()}.json`)));
    const core = {
      createNamespacedSecret: ({ body }: { body: V1Secret }) => Promise.resolve(body),
    } as unknown as CoreV1Api;
    const keyring = new ArtifactKeyring({
      kms,
      core,
      namespace: 'strongroom',
      logger: silent,
      cachedSecret: () => null,
    });
    const metrics = new OperatorMetrics();
    const artifact: ModelArtifact = {
      apiVersion: 'strongroom.dev/v1alpha1',
      kind: 'ModelArtifact',
      metadata: { name: 'resnet', namespace: 'ml', uid: 'c-1', finalizers: [SHRED_FINALIZER] },
      spec: {
        classification: 'confidential',
        owner: { team: 't' },
        storage: { persistentVolumeClaim: { claimName: 'c' }, path: 'p' },
      },
    };
    const none: EventSource<never> = { onEvent: () => undefined };
    let scopes: Readonly<Record<Classification, KekScope>> = DEFAULT_KEK_SCOPES;
    const reconciled: unknown[] = [];
    const controller = new ModelArtifactController({
      // The status write is not what this test is about: it fails, after the gauges were set.
      custom: {} as CustomObjectsApi,
      kms,
      keyring,
      artifacts: {
        list: () => [artifact],
        get: (key: string) => (key === 'ml/resnet' ? artifact : undefined),
        onEvent: () => undefined,
        hasSynced: () => true,
      } as unknown as Informer<ModelArtifact>,
      events: { record: () => undefined } as never,
      bus: { publish: () => undefined },
      metrics,
      logger: silent,
      rotation: { public: 30 * D, internal: 30 * D, confidential: 30 * D, restricted: 30 * D },
      retention: () => D,
      get scopes() {
        return scopes;
      },
      audit: { record: () => Promise.resolve() },
    });
    const own = '{key="strongroom-artifact-c-1",classification="confidential"}';
    const reconcile = async () => {
      reconciled.push(await controller.reconcile('ml/resnet').catch((e: unknown) => e));
    };

    await reconcile();
    expect(await kekSeries(metrics)).toEqual([
      `strongroom_kek_age_seconds${own}`,
      `strongroom_kek_rotation_compliant${own}`,
      'strongroom_rotation_compliance_ratio{classification="confidential"}',
    ]);
    // The term ends: the manager stops the controller's queue, which tells the controller.
    const runnable = new ControllerRunnable(
      controller.controller({
        workers: 1,
        keyset: none,
        recipientKeys: none,
        tableChanged: none,
      }),
      { logger: silent },
    );
    runnable.start();
    await until(() => Promise.resolve(reconciled.length >= 1));
    await runnable.stop();
    expect(await kekSeries(metrics)).toEqual([]);

    // Leading again, then the table gives confidential no KEK of its own: the old KEK's series go at the reconcile.
    await reconcile();
    expect(await kekSeries(metrics)).toHaveLength(3);
    scopes = sharedScopes();
    await reconcile();
    expect(await kekSeries(metrics)).toEqual([]);
    await kms.close();
  });
});
