import { readFileSync } from 'node:fs';
import type { V1Container, V1EnvVar, V1EphemeralContainer, V1Pod, V1Volume } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ANNOTATION_ARTIFACTS, ANNOTATION_INJECTED, ENV, SIDECAR_CONTAINER } from './contract.ts';
import { buildPatch } from './patch.ts';
import { admit, type AdmissionReview } from './review.ts';
import { SETTINGS, grantsIn, lookupIn } from './testdata/artifacts.ts';
import { applyPatch } from './testdata/json-patch.ts';
import { READ_AND_PUBLISH, appPod, planOf } from './testdata/plans.ts';
import {
  admissionProblem,
  expectedSidecar,
  pemBodies,
  verificationView,
  verifyInjectedPod,
} from './verify.ts';

const TRUSTED = new Set(pemBodies(SETTINGS.caBundlePem));
const EXPECTED = expectedSidecar(SETTINGS, () => TRUSTED);

/** A pod exactly as the webhook injects it (the real patch builder, applied as the API server would). */
function injectedPod(): V1Pod {
  const pod = appPod(true);
  return applyPatch(pod, buildPatch(pod, READ_AND_PUBLISH, SETTINGS));
}

const token = (name: string): V1Volume => ({
  name,
  projected: {
    sources: [{ serviceAccountToken: { audience: 'strongroom', expirationSeconds: 600, path: 't' } }],
  },
});

function spec(p: V1Pod): NonNullable<V1Pod['spec']> {
  if (p.spec === undefined) throw new Error('no spec');
  return p.spec;
}
function sidecar(p: V1Pod): V1Container {
  const s = spec(p).initContainers?.find((c) => c.name === SIDECAR_CONTAINER);
  if (s === undefined) throw new Error('no sidecar');
  return s;
}
function app(p: V1Pod): V1Container {
  const c = spec(p).containers[0];
  if (c === undefined) throw new Error('no app container');
  return c;
}
const ephemeral = (extra: Partial<V1EphemeralContainer>): V1EphemeralContainer => ({
  name: 'debug',
  image: 'busybox',
  ...extra,
});

/** Each change to an injected pod, and what verifyInjectedPod says about it. */
const TAMPERED: [string, (p: V1Pod) => void, string][] = [
  [
    'no injected annotation',
    (p) => {
      Reflect.deleteProperty(p.metadata?.annotations ?? {}, ANNOTATION_INJECTED);
    },
    'does not carry the annotation strongroom.dev/injected: v1',
  ],
  [
    'another injection version',
    (p) => {
      (p.metadata?.annotations ?? {})[ANNOTATION_INJECTED] = 'v0';
    },
    'does not carry the annotation',
  ],
  [
    'shareProcessNamespace',
    (p) => {
      spec(p).shareProcessNamespace = true;
    },
    'shareProcessNamespace: true',
  ],
  [
    'hostPID',
    (p) => {
      spec(p).hostPID = true;
    },
    'hostPID: true',
  ],
  [
    'no sidecar',
    (p) => {
      spec(p).initContainers = (spec(p).initContainers ?? []).filter((c) => c.name !== SIDECAR_CONTAINER);
    },
    'no single init container named strongroom-sidecar',
  ],
  [
    'the sidecar as an app container',
    (p) => {
      const s = sidecar(p);
      spec(p).initContainers = (spec(p).initContainers ?? []).filter((c) => c !== s);
      spec(p).containers.push(s);
    },
    'no single init container named strongroom-sidecar',
  ],
  [
    'a sidecar that is not native',
    (p) => {
      Reflect.deleteProperty(sidecar(p), 'restartPolicy');
    },
    'is not a native sidecar',
  ],
  [
    'another sidecar image',
    (p) => {
      sidecar(p).image = 'registry.example/evil:1';
    },
    'runs image "registry.example/evil:1", not the configured sidecar image "registry.example/strongroom:0.1.0"',
  ],
  [
    'another sidecar command',
    (p) => {
      sidecar(p).command = ['/bin/sh', '-c', 'cat /var/run/strongroom/token/token'];
    },
    'runs command',
  ],
  [
    'args on the sidecar',
    (p) => {
      sidecar(p).args = ['--inspect'];
    },
    'has args',
  ],
  [
    'NODE_OPTIONS on the sidecar',
    (p) => {
      sidecar(p).env?.push({ name: 'NODE_OPTIONS', value: '--import=data:text/javascript,...' });
    },
    'sets environment variable "NODE_OPTIONS"',
  ],
  [
    'envFrom on the sidecar',
    (p) => {
      sidecar(p).envFrom = [{ configMapRef: { name: 'x' } }];
    },
    'has envFrom',
  ],
  [
    'a lifecycle hook on the sidecar',
    (p) => {
      sidecar(p).lifecycle = { postStart: { exec: { command: ['sh'] } } };
    },
    'has lifecycle hooks',
  ],
  [
    'an exec probe on the sidecar',
    (p) => {
      sidecar(p).livenessProbe = { exec: { command: ['node', '-e', '1'] } };
    },
    'has an exec probe',
  ],
  [
    'a foreign volume over the sidecar code',
    (p) => {
      spec(p).volumes?.push({ name: 'code', emptyDir: {} });
      sidecar(p).volumeMounts?.push({ name: 'code', mountPath: '/app/dist' });
    },
    'mounts volume code at /app/dist',
  ],
  [
    'a strongroom volume mounted outside /var/run/strongroom in the sidecar',
    (p) => {
      sidecar(p).volumeMounts?.push({ name: 'strongroom-tmp', mountPath: '/app/dist' });
    },
    'injection mounts only strongroom-* volumes under /var/run/strongroom',
  ],
  [
    'the token mounted in an app container',
    (p) => {
      app(p).volumeMounts?.push({ name: 'strongroom-token', mountPath: '/t', readOnly: true });
    },
    'container trainer mounts volume strongroom-token, which only strongroom-sidecar may mount (a projected service account token for audience strongroom)',
  ],
  [
    'a second strongroom token under another name in an app container',
    (p) => {
      spec(p).volumes?.push(token('innocent'));
      app(p).volumeMounts?.push({ name: 'innocent', mountPath: '/t' });
    },
    'container trainer mounts volume innocent',
  ],
  [
    'the token in another init container',
    (p) => {
      spec(p).initContainers?.push({
        name: 'copy',
        image: 'busybox',
        volumeMounts: [{ name: 'strongroom-token', mountPath: '/t' }],
      });
    },
    'init container copy mounts volume strongroom-token',
  ],
  [
    'the token in an ephemeral container',
    (p) => {
      spec(p).ephemeralContainers = [
        ephemeral({ volumeMounts: [{ name: 'strongroom-token', mountPath: '/t' }] }),
      ];
    },
    'ephemeral container debug mounts volume strongroom-token',
  ],
  [
    'an ephemeral container in the sidecar process namespace',
    (p) => {
      spec(p).ephemeralContainers = [ephemeral({ targetContainerName: SIDECAR_CONTAINER })];
    },
    'targets the process namespace of strongroom-sidecar',
  ],
  [
    'the ciphertext in an app container',
    (p) => {
      app(p).volumeMounts?.push({ name: 'strongroom-cipher-0', mountPath: '/c' });
    },
    'mounts volume strongroom-cipher-0, which only strongroom-sidecar may mount',
  ],
  [
    'the sidecar scratch space in an app container',
    (p) => {
      app(p).volumeMounts?.push({ name: 'strongroom-tmp', mountPath: '/c' });
    },
    'mounts volume strongroom-tmp',
  ],
];

describe('verifyInjectedPod', () => {
  it('accepts a pod exactly as injected, for reading and publishing', () => {
    expect(verifyInjectedPod(injectedPod(), EXPECTED)).toBeUndefined();
  });

  it('accepts the app reading its plaintext and writing its output', () => {
    const p = injectedPod();
    expect(app(p).volumeMounts?.map((m) => m.name)).toContain('strongroom-plain-0');
    expect(app(p).volumeMounts?.map((m) => m.name)).toContain('strongroom-output');
    expect(verifyInjectedPod(p, EXPECTED)).toBeUndefined();
  });

  it("accepts the API server's service-account token mount in the sidecar (automountServiceAccountToken)", () => {
    const p = injectedPod();
    spec(p).volumes?.push({
      name: 'kube-api-access-x7k2p',
      projected: { sources: [{ serviceAccountToken: { path: 'token' } }] },
    });
    sidecar(p).volumeMounts?.push({
      name: 'kube-api-access-x7k2p',
      mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
      readOnly: true,
    });
    expect(verifyInjectedPod(p, EXPECTED)).toBeUndefined();
  });

  it('accepts a debugging ephemeral container that neither mounts the token nor targets the sidecar', () => {
    const p = injectedPod();
    spec(p).ephemeralContainers = [ephemeral({ targetContainerName: 'trainer' })];
    expect(verifyInjectedPod(p, EXPECTED)).toBeUndefined();
  });

  it.each(TAMPERED)('refuses %s', (_, change, reason) => {
    const p = injectedPod();
    change(p);
    expect(verifyInjectedPod(p, EXPECTED)).toContain(reason);
  });

  describe('the sidecar must talk to the real broker, trusting only the operator CA', () => {
    const sidecarEnv = (p: V1Pod) =>
      p.spec?.initContainers?.find((c) => c.name === SIDECAR_CONTAINER)?.env ?? [];
    const setEnv = (p: V1Pod, name: string, value: string) => {
      const found = sidecarEnv(p).find((e) => e.name === name);
      if (found === undefined) throw new Error(`no ${name}`);
      found.value = value;
    };
    it.each([
      [ENV.attestAddress, '127.0.0.1:8443'],
      [ENV.brokerAddress, '127.0.0.1:8444'],
    ])(
      'refuses %s pointed elsewhere (%s): the sidecar would send its token to the pod itself',
      (name, value) => {
        const p = injectedPod();
        setEnv(p, name, value);
        expect(verifyInjectedPod(p, EXPECTED)).toContain(`sets ${name}=${JSON.stringify(value)}`);
        expect(verifyInjectedPod(verificationView(p), EXPECTED)).toBe(verifyInjectedPod(p, EXPECTED));
      },
    );
    it("refuses a CA bundle that is not the operator's, or adds a certificate to it", () => {
      const own = '-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n';
      for (const bundle of [own, SETTINGS.caBundlePem + own, '', 'not pem']) {
        const p = injectedPod();
        setEnv(p, ENV.caBundle, bundle);
        expect(verifyInjectedPod(p, EXPECTED)).toContain('CA bundle');
        expect(verifyInjectedPod(verificationView(p), EXPECTED)).toContain('CA bundle');
      }
    });
    it('refuses a value taken from valueFrom, and fails closed while the operator CA is not loaded', () => {
      const p = injectedPod();
      const env = sidecarEnv(p).find((e) => e.name === ENV.attestAddress);
      if (env === undefined) throw new Error('no env');
      delete env.value;
      env.valueFrom = { configMapKeyRef: { name: 'mine', key: 'addr' } };
      expect(verifyInjectedPod(p, EXPECTED)).toContain('valueFrom');
      expect(verifyInjectedPod(injectedPod(), { ...EXPECTED, trustedCa: () => undefined })).toContain(
        'CA is not loaded yet',
      );
    });
  });

  it('refuses the right image with another command list', () => {
    expect(verifyInjectedPod(injectedPod(), { ...EXPECTED, command: ['/bin/true'] })).toContain(
      'runs command',
    );
  });

  it.each([
    ['null', null],
    ['undefined', undefined],
    ['no metadata', { spec: { containers: [] } }],
    ['annotations not a map', { metadata: { annotations: [] }, spec: { containers: [] } }],
    ['no spec', { metadata: { annotations: { [ANNOTATION_INJECTED]: 'v1' } } }],
    [
      'containers not a list',
      { metadata: { annotations: { [ANNOTATION_INJECTED]: 'v1' } }, spec: { containers: {} } },
    ],
    [
      'a container without a name',
      { metadata: { annotations: { [ANNOTATION_INJECTED]: 'v1' } }, spec: { containers: [{}] } },
    ],
    [
      'volumes not a list',
      {
        metadata: { annotations: { [ANNOTATION_INJECTED]: 'v1' } },
        spec: { containers: [{ name: 'a' }], volumes: 'x' },
      },
    ],
  ])('fails closed on %s', (_, pod) => {
    expect(verifyInjectedPod(pod as V1Pod, EXPECTED)).toEqual(expect.any(String));
  });

  it('fails closed on malformed mounts of another container', () => {
    const p = injectedPod();
    (app(p) as unknown as { volumeMounts: unknown }).volumeMounts = [{ name: 'strongroom-token' }];
    expect(verifyInjectedPod(p, EXPECTED)).toContain('malformed volumeMounts');
  });
});

describe('verificationView', () => {
  it.each([
    ['as injected', () => undefined] as [string, (p: V1Pod) => void],
    ...TAMPERED.map(([n, c]) => [n, c] as [string, (p: V1Pod) => void]),
  ])('keeps what the verdict needs: %s', (_, change) => {
    const p = injectedPod();
    change(p);
    expect(verifyInjectedPod(verificationView(p), EXPECTED)).toBe(verifyInjectedPod(p, EXPECTED));
  });

  it('keeps only the endpoint and CA values, no plan, and nothing of a pod that is not injected', () => {
    const view = verificationView(injectedPod());
    expect(JSON.stringify(view)).toContain(SETTINGS.attestAddress);
    expect(JSON.stringify(view)).not.toContain('ciphertextPath');
    expect(verificationView(appPod(true))).toEqual({ metadata: {} });
  });
});

function review(name: string): { request: { object: V1Pod } } & Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`testdata/${name}.json`, import.meta.url), 'utf8')) as {
    request: { object: V1Pod };
  };
}
const decide = (body: unknown): AdmissionReview => admit(body, lookupIn(), SETTINGS, grantsIn());

/** Changes to a pod the webhook is about to inject, and the denial they draw. */
const AT_ADMISSION: [string, (p: V1Pod) => void, string][] = [
  [
    'its container mounting a strongroom token under its own name',
    (p) => {
      spec(p).volumes?.push(token('mine'));
      app(p).volumeMounts?.push({ name: 'mine', mountPath: '/t' });
    },
    'container trainer mounts volume mine, a projected service account token for audience strongroom; only the injected Strongroom sidecar may hold one',
  ],
  [
    'an init container mounting one',
    (p) => {
      spec(p).volumes?.push(token('mine'));
      spec(p).initContainers = [
        { name: 'pre', image: 'busybox', volumeMounts: [{ name: 'mine', mountPath: '/t' }] },
      ];
    },
    'init container pre mounts volume mine',
  ],
  [
    'a container mounting a strongroom- volume',
    (p) => {
      spec(p).volumes?.push({ name: 'strongroom-plain-7', emptyDir: {} });
      app(p).volumeMounts?.push({ name: 'strongroom-plain-7', mountPath: '/p' });
    },
    'container trainer mounts volume strongroom-plain-7; volumes named strongroom-* are injected by Strongroom',
  ],
  [
    'a volume with a strongroom- name, even unmounted',
    (p) => {
      spec(p).volumes?.push({ name: 'strongroom-mine', emptyDir: {} });
    },
    'the pod already has a volume named strongroom-mine; volume names starting with strongroom- are reserved',
  ],
  [
    'shareProcessNamespace',
    (p) => {
      spec(p).shareProcessNamespace = true;
    },
    'the pod sets shareProcessNamespace: true; another container could read the Strongroom sidecar',
  ],
  [
    'hostPID',
    (p) => {
      spec(p).hostPID = true;
    },
    'the pod sets hostPID: true',
  ],
];

describe('admissionProblem and the webhook', () => {
  it('finds nothing wrong with the fixture pods', () => {
    for (const name of ['training-pod', 'job-pod'])
      expect(admissionProblem(review(name).request.object)).toBeUndefined();
  });

  it.each(AT_ADMISSION)('denies a pod with %s', (_, change, message) => {
    const f = review('training-pod');
    change(f.request.object);
    expect(admissionProblem(f.request.object)).toContain(message);
    const answer = decide(f);
    expect(answer.response?.allowed).toBe(false);
    expect(answer.response?.status?.code).toBe(400);
    expect(answer.response?.status?.message).toContain(`strongroom: ${message}`);
  });

  it('denies the own-token-pod fixture (a container mounting a projected token of audience strongroom)', () => {
    const answer = decide(review('own-token-pod'));
    expect(answer.response?.allowed).toBe(false);
    expect(answer.response?.status?.message).toBe(
      'strongroom: container trainer mounts volume my-token, a projected service account token for audience strongroom; only the injected Strongroom sidecar may hold one; remove the mount',
    );
  });

  it('denies a pod that carries strongroom.dev/injected but was not injected', () => {
    const f = review('own-token-pod');
    (f.request.object.metadata?.annotations ?? {})[ANNOTATION_INJECTED] = 'v1';
    const answer = decide(f);
    expect(answer.response?.allowed).toBe(false);
    expect(answer.response?.status?.message).toContain(
      'strongroom: the pod carries strongroom.dev/injected but is not as Strongroom injects it: the pod has no single init container named strongroom-sidecar',
    );
  });

  it('passes a pod that was injected through unchanged', () => {
    const f = review('injected-pod');
    expect(decide(f).response).toEqual({ uid: (f.request as unknown as { uid: string }).uid, allowed: true });
  });
});

describe('verifyInjectedPod with S3 credentials', () => {
  /** A pod as the webhook injects it reading llama and vit from S3 (two Secrets) and resnet50 from a claim. */
  function s3Pod(): V1Pod {
    const pod = appPod(false);
    const plan = planOf({ [ANNOTATION_ARTIFACTS]: 'llama@v1:/a,vit@v1:/b,resnet50@v1:/c' });
    return applyPatch(pod, buildPatch(pod, plan, SETTINGS));
  }
  const s3Env = (p: V1Pod, name: string): V1EnvVar => {
    const found = sidecar(p).env?.find((e) => e.name === name);
    if (found === undefined) throw new Error(`no ${name}`);
    return found;
  };

  it('accepts the secretKeyRef variables injection sets, and so does its view', () => {
    const p = s3Pod();
    expect(sidecar(p).env?.filter((e) => e.valueFrom !== undefined)).toHaveLength(4);
    expect(verifyInjectedPod(p, EXPECTED)).toBeUndefined();
    expect(verifyInjectedPod(verificationView(p), EXPECTED)).toBeUndefined();
    expect(JSON.stringify(verificationView(p))).not.toContain('minio-reader');
  });

  it.each<[string, (e: V1EnvVar) => void]>([
    [
      'a literal value',
      (e) => {
        delete e.valueFrom;
        e.value = 'AKIA...';
      },
    ],
    [
      'a ConfigMap',
      (e) => {
        e.valueFrom = { configMapKeyRef: { name: 'minio-reader', key: 'AWS_ACCESS_KEY_ID' } };
      },
    ],
    [
      'a field of the pod',
      (e) => {
        e.valueFrom = { fieldRef: { fieldPath: 'metadata.name' } };
      },
    ],
    [
      'another key of the Secret',
      (e) => {
        e.valueFrom = { secretKeyRef: { name: 'minio-reader', key: 'AWS_SECRET_ACCESS_KEY' } };
      },
    ],
    [
      'an optional Secret',
      (e) => {
        e.valueFrom = { secretKeyRef: { name: 'minio-reader', key: 'AWS_ACCESS_KEY_ID', optional: true } };
      },
    ],
    [
      'a Secret without a name',
      (e) => {
        e.valueFrom = { secretKeyRef: { name: '', key: 'AWS_ACCESS_KEY_ID' } };
      },
    ],
  ])('refuses an access key id taken from %s', (_, change) => {
    const p = s3Pod();
    change(s3Env(p, 'STRONGROOM_S3_0_ACCESS_KEY_ID'));
    const verdict = verifyInjectedPod(p, EXPECTED);
    expect(verdict).toContain(
      'sets STRONGROOM_S3_0_ACCESS_KEY_ID other than from the key AWS_ACCESS_KEY_ID of a Secret',
    );
    expect(verifyInjectedPod(verificationView(p), EXPECTED)).toBe(verdict);
  });

  it('still refuses valueFrom on every other variable, and S3-looking names injection never makes', () => {
    const p = s3Pod();
    const attest = s3Env(p, ENV.attestAddress);
    delete attest.value;
    attest.valueFrom = { secretKeyRef: { name: 'minio-reader', key: 'AWS_ACCESS_KEY_ID' } };
    expect(verifyInjectedPod(p, EXPECTED)).toContain(`takes ${ENV.attestAddress} from valueFrom`);
    for (const name of [
      'STRONGROOM_S3_0_SESSION_TOKEN',
      'STRONGROOM_S3_01_ACCESS_KEY_ID',
      'AWS_ACCESS_KEY_ID',
    ]) {
      const q = s3Pod();
      sidecar(q).env?.push({
        name,
        valueFrom: { secretKeyRef: { name: 'minio-reader', key: 'AWS_ACCESS_KEY_ID' } },
      });
      expect(verifyInjectedPod(q, EXPECTED)).toContain(`sets environment variable "${name}"`);
      expect(verifyInjectedPod(verificationView(q), EXPECTED)).toBe(verifyInjectedPod(q, EXPECTED));
    }
  });
});
