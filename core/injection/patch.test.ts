import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  ANNOTATION_ARTIFACTS,
  ANNOTATION_INJECTED,
  ANNOTATION_PUBLISH,
  ANNOTATION_RESOLVED,
  ENV,
  INJECTION_VERSION,
  PROBE_PORT,
  S3_ENV_PREFIX,
  SIDECAR_COMMAND,
  SIDECAR_CONTAINER,
  SIDECAR_TOKEN_DIR,
  TOKEN_AUDIENCE,
  TOKEN_EXPIRATION_SECONDS,
  VOLUME_TOKEN,
  type SidecarPlan,
} from './contract.ts';
import { buildPatch, escapePointer, restrictedSecurityContext, type InjectionSettings } from './patch.ts';
import { SETTINGS } from './testdata/artifacts.ts';
import { applyPatch } from './testdata/json-patch.ts';
import { READ_AND_PUBLISH, appPod as pod, planOf as planFor, sidecarOf } from './testdata/plans.ts';

function inject(p: V1Pod, plan = READ_AND_PUBLISH, settings: InjectionSettings = SETTINGS): V1Pod {
  return applyPatch(p, buildPatch(p, plan, settings));
}

describe.each([
  ['absent', false],
  ['present', true],
])('buildPatch with lists %s', (_, withLists) => {
  const before = pod(withLists);
  const after = inject(before);
  const sidecar = sidecarOf(after);
  const volumes = new Map((after.spec?.volumes ?? []).map((v) => [v.name, v]));

  it('inserts the native sidecar first and keeps what was there', () => {
    expect(after.spec?.initContainers?.map((c) => c.name)).toEqual(
      withLists ? [SIDECAR_CONTAINER, 'fetch-config'] : [SIDECAR_CONTAINER],
    );
    expect(sidecar.restartPolicy).toBe('Always');
    expect(sidecar.command).toEqual(SIDECAR_COMMAND);
    // The bundled sidecar of the Strongroom image (test/cluster/sidecar-bundle.ts), not its sources.
    expect(sidecar.command).toEqual(['/usr/local/bin/node', '/app/dist/sidecar/main.js']);
    expect(sidecar.image).toBe(SETTINGS.image);
    expect(after.spec?.containers.map((c) => c.name)).toEqual(['trainer', 'logger']);
    if (withLists) {
      expect(volumes.get('scratch')).toEqual({ name: 'scratch', emptyDir: {} });
      expect(after.metadata?.annotations?.team).toBe('vision');
      for (const c of after.spec?.containers ?? []) expect(c.volumeMounts?.[0]?.mountPath).toBe('/scratch');
    }
  });

  it('gives the sidecar probes that hold the app back until it is ready', () => {
    expect(sidecar.startupProbe).toEqual({
      httpGet: { path: '/startup', port: PROBE_PORT },
      periodSeconds: 1,
      failureThreshold: 600,
    });
    expect(sidecar.readinessProbe).toEqual({
      httpGet: { path: '/ready', port: PROBE_PORT },
      periodSeconds: 1,
      failureThreshold: 1,
    });
    expect(sidecar.ports).toEqual([{ name: 'probe', containerPort: PROBE_PORT, protocol: 'TCP' }]);
    expect(sidecar.resources).toEqual({ requests: { cpu: '10m', memory: '32Mi' } });
  });

  it('runs the sidecar under Pod Security "restricted"', () => {
    const sc = sidecar.securityContext;
    expect(sc?.runAsNonRoot).toBe(true);
    expect(sc?.runAsUser).not.toBe(0);
    expect(sc?.allowPrivilegeEscalation).toBe(false);
    expect(sc?.capabilities?.drop).toEqual(['ALL']);
    expect(sc?.capabilities?.add).toBeUndefined();
    expect(sc?.seccompProfile?.type).toBe('RuntimeDefault');
    expect(sc?.readOnlyRootFilesystem).toBe(true);
    expect(sc?.privileged).toBe(false);
  });

  it('hands the sidecar its plan and addresses in the environment', () => {
    const env = new Map((sidecar.env ?? []).map((e) => [e.name, e.value]));
    expect(JSON.parse(env.get(ENV.plan) ?? '')).toEqual(READ_AND_PUBLISH.sidecar);
    expect(env.get(ENV.plan)).not.toContain('\n');
    expect(env.get(ENV.brokerAddress)).toBe(SETTINGS.brokerAddress);
    expect(env.get(ENV.attestAddress)).toBe(SETTINGS.attestAddress);
    expect(env.get(ENV.caBundle)).toBe(SETTINGS.caBundlePem);
    expect(env.get(ENV.tokenPath)).toBe(`${SIDECAR_TOKEN_DIR}/token`);
    expect(env.get(ENV.probePort)).toBe(String(PROBE_PORT));
    expect(env.has(ENV.logLevel)).toBe(false);
    expect(env.has(ENV.brokerServerName)).toBe(false);
  });

  it('mounts the token and the ciphertext in the sidecar only', () => {
    expect(volumes.get(VOLUME_TOKEN)?.projected?.sources).toEqual([
      {
        serviceAccountToken: {
          audience: TOKEN_AUDIENCE,
          expirationSeconds: TOKEN_EXPIRATION_SECONDS,
          path: 'token',
        },
      },
    ]);
    expect(volumes.get('strongroom-cipher-0')?.persistentVolumeClaim).toEqual({
      claimName: 'models',
      readOnly: false,
    });
    expect(volumes.get('strongroom-cipher-1')?.persistentVolumeClaim).toEqual({
      claimName: 'datasets',
      readOnly: true,
    });
    const secret = [VOLUME_TOKEN, 'strongroom-cipher-0', 'strongroom-cipher-1'];
    const others = [...(after.spec?.containers ?? []), ...(after.spec?.initContainers ?? []).slice(1)];
    for (const c of others) for (const m of c.volumeMounts ?? []) expect(secret).not.toContain(m.name);
    const mounts = new Map((sidecar.volumeMounts ?? []).map((m) => [m.name, m]));
    expect(mounts.get(VOLUME_TOKEN)).toEqual({
      name: VOLUME_TOKEN,
      mountPath: SIDECAR_TOKEN_DIR,
      readOnly: true,
    });
    expect(mounts.get('strongroom-cipher-1')?.readOnly).toBe(true);
    expect(mounts.get('strongroom-cipher-0')?.readOnly).toBe(false);
  });

  it('mounts plaintext read-only and the output read-write in every app container', () => {
    for (const c of after.spec?.containers ?? []) {
      const mounts = (c.volumeMounts ?? []).filter((m) => m.name.startsWith('strongroom-'));
      expect(mounts).toEqual([
        { name: 'strongroom-plain-0', mountPath: '/models/resnet50', readOnly: true },
        { name: 'strongroom-plain-1', mountPath: '/data', readOnly: true },
        { name: 'strongroom-output', mountPath: '/output' },
      ]);
    }
    const sidecarMounts = new Map((sidecar.volumeMounts ?? []).map((m) => [m.name, m]));
    expect(sidecarMounts.get('strongroom-plain-0')).toEqual({
      name: 'strongroom-plain-0',
      mountPath: '/var/run/strongroom/plain/0',
    });
    expect(sidecarMounts.get('strongroom-output')).toEqual({
      name: 'strongroom-output',
      mountPath: '/var/run/strongroom/output',
    });
    expect(sidecarMounts.get('strongroom-tmp')).toEqual({
      name: 'strongroom-tmp',
      mountPath: '/var/run/strongroom/tmp',
    });
  });

  it('sizes the memory volumes', () => {
    expect(volumes.get('strongroom-plain-0')?.emptyDir).toEqual({ medium: 'Memory', sizeLimit: '2269Mi' });
    expect(volumes.get('strongroom-plain-1')?.emptyDir).toEqual({ medium: 'Memory', sizeLimit: '17Mi' });
    expect(volumes.get('strongroom-output')?.emptyDir).toEqual({ medium: 'Memory', sizeLimit: '1Gi' });
    expect(volumes.get('strongroom-tmp')?.emptyDir).toEqual({ medium: 'Memory', sizeLimit: '16Mi' });
  });

  it('marks the pod injected and records what latest meant', () => {
    expect(after.metadata?.annotations?.[ANNOTATION_INJECTED]).toBe(INJECTION_VERSION);
    expect(after.metadata?.annotations?.[ANNOTATION_RESOLVED]).toBe(
      'ml-dev/resnet50@v2,ml-dev/imagenet@2024-06-01',
    );
  });

  it('does not change the pod it was given', () => {
    expect(before).toEqual(pod(withLists));
  });
});

describe('buildPatch details', () => {
  it('escapes annotation keys as JSON pointers', () => {
    expect(escapePointer('strongroom.dev/injected')).toBe('strongroom.dev~1injected');
    expect(escapePointer('a~b/c')).toBe('a~0b~1c');
    const ops = buildPatch(pod(true), READ_AND_PUBLISH, SETTINGS);
    expect(ops.map((o) => o.path)).toContain('/metadata/annotations/strongroom.dev~1injected');
  });

  it('appends to present lists with /- and inserts the sidecar at index 0', () => {
    const paths = buildPatch(pod(true), READ_AND_PUBLISH, SETTINGS).map((o) => o.path);
    expect(paths).toContain('/spec/initContainers/0');
    expect(paths).toContain('/spec/volumes/-');
    expect(paths).toContain('/spec/containers/1/volumeMounts/-');
    expect(paths).not.toContain('/spec/volumes');
  });

  it('applies settings: pull policy, resources, log level, startup threshold', () => {
    const settings: InjectionSettings = {
      ...SETTINGS,
      imagePullPolicy: 'Never',
      resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '4Gi' } },
      logLevel: 'debug',
      startupFailureThreshold: 30,
      brokerServerName: 'strongroom-broker.strongroom-system.svc',
    };
    const sidecar = sidecarOf(inject(pod(false), READ_AND_PUBLISH, settings));
    expect(sidecar.imagePullPolicy).toBe('Never');
    expect(sidecar.resources).toEqual(settings.resources);
    expect(sidecar.startupProbe?.failureThreshold).toBe(30);
    expect(sidecar.env?.find((e) => e.name === ENV.logLevel)?.value).toBe('debug');
    expect(sidecar.env?.find((e) => e.name === ENV.brokerServerName)?.value).toBe(settings.brokerServerName);
  });

  it('injects a reader without output mounts and a publisher without plaintext', () => {
    const reader = inject(pod(false), planFor({ [ANNOTATION_ARTIFACTS]: 'imagenet@latest:/data' }));
    expect(reader.spec?.volumes?.map((v) => v.name)).toEqual([
      VOLUME_TOKEN,
      'strongroom-cipher-0',
      'strongroom-plain-0',
      'strongroom-tmp',
    ]);
    const publisher = inject(pod(false), planFor({ [ANNOTATION_PUBLISH]: 'finetuned@v2:/out' }));
    expect(publisher.spec?.containers[0]?.volumeMounts).toEqual([
      { name: 'strongroom-output', mountPath: '/out' },
    ]);
    expect(publisher.metadata?.annotations?.[ANNOTATION_RESOLVED]).toBe('');
  });

  it('restricted context is a fresh object each time', () => {
    const a = restrictedSecurityContext();
    a.capabilities?.drop?.push('x');
    expect(restrictedSecurityContext().capabilities?.drop).toEqual(['ALL']);
  });
});

describe('buildPatch for artifacts stored in S3', () => {
  const plan = planFor({ [ANNOTATION_ARTIFACTS]: 'llama@v1:/models/llama,vit@v1:/vit,whisper@v1:/whisper' });
  const after = inject(pod(true), plan);
  const sidecar = sidecarOf(after);

  it('mounts no ciphertext volume for them', () => {
    expect(after.spec?.volumes?.map((v) => v.name)).toEqual([
      'scratch',
      VOLUME_TOKEN,
      'strongroom-plain-0',
      'strongroom-plain-1',
      'strongroom-plain-2',
      'strongroom-tmp',
    ]);
    expect(sidecar.volumeMounts?.some((m) => m.name.startsWith('strongroom-cipher-'))).toBe(false);
  });

  it('gives the sidecar, and only the sidecar, each Secret’s access key through secretKeyRef', () => {
    const s3 = (sidecar.env ?? []).filter((e) => e.name.startsWith(S3_ENV_PREFIX));
    expect(s3).toEqual([
      {
        name: 'STRONGROOM_S3_0_ACCESS_KEY_ID',
        valueFrom: { secretKeyRef: { name: 'minio-reader', key: 'AWS_ACCESS_KEY_ID' } },
      },
      {
        name: 'STRONGROOM_S3_0_SECRET_ACCESS_KEY',
        valueFrom: { secretKeyRef: { name: 'minio-reader', key: 'AWS_SECRET_ACCESS_KEY' } },
      },
      {
        name: 'STRONGROOM_S3_1_ACCESS_KEY_ID',
        valueFrom: { secretKeyRef: { name: 'aws-reader', key: 'AWS_ACCESS_KEY_ID' } },
      },
      {
        name: 'STRONGROOM_S3_1_SECRET_ACCESS_KEY',
        valueFrom: { secretKeyRef: { name: 'aws-reader', key: 'AWS_SECRET_ACCESS_KEY' } },
      },
    ]);
    for (const c of [...(after.spec?.containers ?? []), ...(after.spec?.initContainers ?? []).slice(1)]) {
      expect(c.env).toBeUndefined();
      expect(c.envFrom).toBeUndefined();
    }
  });

  it('names those variables in the plan, which carries no secret', () => {
    const env = new Map((sidecar.env ?? []).map((e) => [e.name, e]));
    const sidecarPlan = JSON.parse(env.get(ENV.plan)?.value ?? '') as SidecarPlan;
    expect(sidecarPlan).toEqual(plan.sidecar);
    for (const a of sidecarPlan.artifacts) {
      expect(a.ciphertextPath).toBe('');
      expect(env.get(a.s3?.credentialsEnv.accessKeyId ?? '')?.valueFrom?.secretKeyRef?.key).toBe(
        'AWS_ACCESS_KEY_ID',
      );
      expect(env.get(a.s3?.credentialsEnv.secretAccessKey ?? '')?.valueFrom?.secretKeyRef?.key).toBe(
        'AWS_SECRET_ACCESS_KEY',
      );
    }
  });

  it('adds no S3 variables for a pod reading only from claims', () => {
    expect(
      sidecarOf(inject(pod(false))).env?.filter((e) => e.name.startsWith(S3_ENV_PREFIX) || e.valueFrom),
    ).toEqual([]);
  });

  it('mixes S3 and claims: a ciphertext volume for the claim only', () => {
    const mixed = inject(pod(false), planFor({ [ANNOTATION_ARTIFACTS]: 'llama@v1:/a,imagenet@latest:/b' }));
    expect(mixed.spec?.volumes?.map((v) => v.name)).toEqual([
      VOLUME_TOKEN,
      'strongroom-cipher-0',
      'strongroom-plain-0',
      'strongroom-plain-1',
      'strongroom-tmp',
    ]);
    expect(mixed.spec?.volumes?.[1]?.persistentVolumeClaim?.claimName).toBe('datasets');
  });
});
