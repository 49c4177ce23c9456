import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as prettier from 'prettier';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RevocationReason as BusRevocationReason } from '../operator/revocation/bus.ts';
import type { PublishVersionRequest } from './generated/strongroom/v1/PublishVersionRequest.ts';
import type { ReleaseKeyResponse__Output } from './generated/strongroom/v1/ReleaseKeyResponse.ts';
import type { WatchRevocationsResponse } from './generated/strongroom/v1/WatchRevocationsResponse.ts';
import {
  KEY_BROKER_PACKAGE,
  KEY_BROKER_PROTO,
  KEY_BROKER_SERVICE,
  LOADER_OPTIONS,
  PROTO_ROOT,
  REVOCATION_REASONS,
  UnknownEnumValueError,
  loadKeyBroker,
  type KeyBrokerClient,
  type KeyBrokerHandlers,
} from './keybroker.ts';

const repoRoot = resolve(PROTO_ROOT, '..');
const generatedDir = join(PROTO_ROOT, 'generated');

/** The generator flags; proto/README.md documents the same command (checked below). */
const GENERATOR_ARGS = [
  '--longs=String',
  '--enums=String',
  '--defaults',
  '--oneofs',
  '--includeComments',
  '--grpcLib=@grpc/grpc-js',
  '--importFileExtension=.ts',
  '-I',
  'proto',
];

const broker = loadKeyBroker();
const { service } = broker;

const timestamp = { seconds: '1795000000', nanos: 123_000_000 };
const grant = {
  namespace: 'ml-prod',
  name: 'inference-reads-llm',
  uid: '7d4e3c1a-0000-4000-8000-000000000001',
};
const artifact = { namespace: 'ml-prod', name: 'llm' };

describe('loadKeyBroker', () => {
  it('names the package and the service', () => {
    expect(KEY_BROKER_PACKAGE).toBe('strongroom.v1');
    expect(KEY_BROKER_SERVICE).toBe(`${KEY_BROKER_PACKAGE}.KeyBroker`);
    expect(KEY_BROKER_PROTO).toBe('strongroom/v1/keybroker.proto');
    expect(broker.Client.service).toBe(service);
  });

  it('returns exactly the five methods with their paths, streaming flags and message types', () => {
    const types = broker.grpcObject.strongroom.v1;
    const typeName = (t: { type: object }): string => (t.type as { name: string }).name;
    const shape = Object.fromEntries(
      Object.entries(service).map(([name, m]) => [
        name,
        { path: m.path, requestStream: m.requestStream, responseStream: m.responseStream },
      ]),
    );
    expect(shape).toEqual({
      Attest: { path: '/strongroom.v1.KeyBroker/Attest', requestStream: false, responseStream: false },
      ReleaseKey: {
        path: '/strongroom.v1.KeyBroker/ReleaseKey',
        requestStream: false,
        responseStream: false,
      },
      WatchRevocations: {
        path: '/strongroom.v1.KeyBroker/WatchRevocations',
        requestStream: false,
        responseStream: true,
      },
      PublishVersion: {
        path: '/strongroom.v1.KeyBroker/PublishVersion',
        requestStream: false,
        responseStream: false,
      },
      ReportWipe: {
        path: '/strongroom.v1.KeyBroker/ReportWipe',
        requestStream: false,
        responseStream: false,
      },
    });
    const { Attest, ReleaseKey, WatchRevocations, PublishVersion, ReportWipe } = service;
    const messageTypes = {
      Attest: [typeName(Attest.requestType), typeName(Attest.responseType)],
      ReleaseKey: [typeName(ReleaseKey.requestType), typeName(ReleaseKey.responseType)],
      WatchRevocations: [typeName(WatchRevocations.requestType), typeName(WatchRevocations.responseType)],
      PublishVersion: [typeName(PublishVersion.requestType), typeName(PublishVersion.responseType)],
      ReportWipe: [typeName(ReportWipe.requestType), typeName(ReportWipe.responseType)],
    };
    expect(messageTypes).toEqual({
      Attest: ['AttestRequest', 'AttestResponse'],
      ReleaseKey: ['ReleaseKeyRequest', 'ReleaseKeyResponse'],
      WatchRevocations: ['WatchRevocationsRequest', 'WatchRevocationsResponse'],
      PublishVersion: ['PublishVersionRequest', 'PublishVersionResponse'],
      ReportWipe: ['ReportWipeRequest', 'ReportWipeResponse'],
    });
    expect(service.ReleaseKey.requestType.type).toEqual(types.ReleaseKeyRequest.type);
    expect(service.WatchRevocations.responseType.type).toEqual(types.WatchRevocationsResponse.type);
  });

  it('uses the documented loader options', () => {
    expect(LOADER_OPTIONS).toEqual({
      keepCase: false,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
  });
});

describe('serializers round-trip every message', () => {
  it('Attest', () => {
    const request = {
      serviceAccountToken: 'eyJhbGciOi.payload.sig',
      csrPem: '-----BEGIN CERTIFICATE REQUEST-----\n',
    };
    expect(service.Attest.requestDeserialize(service.Attest.requestSerialize(request))).toEqual(request);
    const response = {
      certificateChainPem: 'leaf\nintermediate',
      caBundlePem: 'ca',
      notAfter: timestamp,
      spiffeId: 'spiffe://cluster.local/ns/ml-prod/sa/inference',
      podUid: '0d5e-uid',
    };
    expect(service.Attest.responseDeserialize(service.Attest.responseSerialize(response))).toEqual(response);
  });

  it('ReleaseKey, with bytes, a uint64 as a decimal string and defaults for unset fields', () => {
    const request = { artifact, version: 'latest' };
    expect(service.ReleaseKey.requestDeserialize(service.ReleaseKey.requestSerialize(request))).toEqual({
      ...request,
      auditContext: null,
    });
    const dek = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    const response = {
      dek,
      version: 'v3',
      leaseExpiresAt: timestamp,
      grant,
      auditIndex: '18446744073709551615',
      digest: `sha256:${'ab'.repeat(32)}`,
    };
    const decoded: ReleaseKeyResponse__Output = service.ReleaseKey.responseDeserialize(
      service.ReleaseKey.responseSerialize(response),
    );
    expect(decoded).toEqual(response);
    expect(Buffer.isBuffer(decoded.dek) && decoded.dek.equals(dek)).toBe(true);
    // An empty response decodes with every scalar at its default, never undefined.
    expect(service.ReleaseKey.responseDeserialize(service.ReleaseKey.responseSerialize({}))).toEqual({
      dek: Buffer.alloc(0),
      version: '',
      leaseExpiresAt: null,
      grant: null,
      auditIndex: '0',
      digest: '',
    });
  });

  it('ReportWipe, with the revocation it answered and the wipe duration', () => {
    const m = service.ReportWipe;
    const request = {
      revocation: { seq: '42', epoch: 'e1', endedAt: timestamp },
      artifact,
      version: 'v1',
      filesRemoved: '3',
      wipeDuration: { seconds: '0', nanos: 4_000_000 },
      trigger: 'revocation',
    };
    expect(m.requestDeserialize(m.requestSerialize(request))).toEqual(request);
    expect(m.responseDeserialize(m.responseSerialize({ recorded: true, auditIndex: '17' }))).toEqual({
      recorded: true,
      auditIndex: '17',
    });
  });

  it('WatchRevocations, with proto3 optional presence and the oneof discriminator', () => {
    const m = service.WatchRevocations;
    expect(m.requestDeserialize(m.requestSerialize({}))).toEqual({ epoch: '' });
    expect(m.requestDeserialize(m.requestSerialize({ afterSeq: '0', epoch: 'e1' }))).toEqual({
      afterSeq: '0',
      epoch: 'e1',
      _afterSeq: 'afterSeq',
    });
    const revocation = {
      seq: '42',
      epoch: 'e1',
      reason: 'REVOCATION_REASON_GRANT_REVOKED' as const,
      artifact,
      grant,
      versions: ['v1', 'v2'],
      message: 'revoked by admin',
      timestamp,
      endedAt: timestamp,
    };
    expect(m.responseDeserialize(m.responseSerialize({ revocation }))).toEqual({
      revocation,
      event: 'revocation',
    });
    const heartbeat = { timestamp, epoch: 'e1', lastSeq: '42', interval: { seconds: '5', nanos: 0 } };
    expect(m.responseDeserialize(m.responseSerialize({ heartbeat }))).toEqual({
      heartbeat,
      event: 'heartbeat',
    });
    const resync = { epoch: 'e2', lastSeq: '0', message: 'new epoch' };
    expect(m.responseDeserialize(m.responseSerialize({ resync }))).toEqual({ resync, event: 'resync' });
  });

  it('PublishVersion, with nested enums, repeated messages and an int64 size', () => {
    const request = {
      artifact,
      version: 'v4',
      digest: `sha256:${'01'.repeat(32)}`,
      size: '9007199254740993', // 2^53 + 1: survives only because longs are strings
      sealedKey: {
        suite: 'HPKE_SUITE_BASE_X25519_SHA256_AES256GCM' as const,
        enc: Buffer.alloc(32, 1),
        ciphertext: Buffer.alloc(48, 2),
      },
      keyFingerprint: `sha256:${'cd'.repeat(32)}`,
      lineage: {
        parents: [
          { kind: 'PARENT_KIND_MODEL_ARTIFACT' as const, name: 'llm-base', version: 'v1' },
          { kind: 'PARENT_KIND_DATASET' as const, name: 'corpus', version: '2026-01' },
        ],
        source: { repository: 'github.com/acme/train', commit: 'abcdef1', run: 'run-9' },
      },
    };
    const m = service.PublishVersion;
    expect(m.requestDeserialize(m.requestSerialize(request))).toEqual(request);
    const response = {
      version: {
        name: 'v4',
        digest: request.digest,
        size: request.size,
        keyFingerprint: request.keyFingerprint,
        publisher: 'spiffe://cluster.local/ns/ml-dev/sa/trainer',
        publishedAt: timestamp,
      },
      resourceVersion: '12345',
    };
    expect(m.responseDeserialize(m.responseSerialize(response))).toEqual(response);
  });
});

describe('enums fail closed', () => {
  const watch = service.WatchRevocations;
  const publish = service.PublishVersion;

  it('plain proto-loader would silently turn an unknown enum name into UNSPECIFIED (why the guard exists)', () => {
    const raw = protoLoader.loadSync(KEY_BROKER_PROTO, { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
    const rawService = raw[KEY_BROKER_SERVICE] as protoLoader.ServiceDefinition;
    const rawWatch = rawService.WatchRevocations;
    if (!rawWatch) throw new Error('no WatchRevocations');
    const bytes = rawWatch.responseSerialize({ revocation: { reason: 'REVOCATION_REASON_NO_SUCH_THING' } });
    expect(rawWatch.responseDeserialize(bytes)).toMatchObject({
      revocation: { reason: 'REVOCATION_REASON_UNSPECIFIED' },
    });
  });

  it('rejects an unknown enum name when serializing, naming the field', () => {
    const bad = {
      revocation: { reason: 'REVOCATION_REASON_NO_SUCH_THING' },
    } as unknown as WatchRevocationsResponse;
    expect(() => watch.responseSerialize(bad)).toThrow(UnknownEnumValueError);
    expect(() => watch.responseSerialize(bad)).toThrow(
      'revocation.reason: "REVOCATION_REASON_NO_SUCH_THING" is not a value of strongroom.v1.RevocationReason',
    );
  });

  it('rejects an unknown enum inside a repeated nested message, and an unknown number', () => {
    const parents = [
      { kind: 'PARENT_KIND_DATASET', name: 'a', version: '1' },
      { kind: 'ModelArtifact', name: 'b', version: '1' }, // the CRD spelling, not the proto one
    ];
    const bad = { lineage: { parents } } as unknown as PublishVersionRequest;
    let error: unknown;
    try {
      publish.requestSerialize(bad);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UnknownEnumValueError);
    expect(error).toMatchObject({ field: 'lineage.parents[1].kind', enumType: 'strongroom.v1.ParentKind' });
    const badSuite = { sealedKey: { suite: 7 } } as unknown as PublishVersionRequest;
    expect(() => publish.requestSerialize(badSuite)).toThrow('sealedKey.suite: 7 is not a value of');
  });

  it('accepts a known enum number and decodes it as its name', () => {
    const bytes = publish.requestSerialize({ sealedKey: { suite: 1 } });
    expect(publish.requestDeserialize(bytes).sealedKey?.suite).toBe(
      'HPKE_SUITE_BASE_X25519_SHA256_AES256GCM',
    );
  });

  it('rejects an enum number this schema does not know when deserializing (a newer peer)', () => {
    // WatchRevocationsResponse{revocation(1): Revocation{reason(3): 99}}
    const bytes = Buffer.from([0x0a, 0x02, 0x18, 99]);
    expect(() => watch.responseDeserialize(bytes)).toThrow(UnknownEnumValueError);
    expect(() => watch.responseDeserialize(bytes)).toThrow('revocation.reason: 99 is not a value of');
    // The same bytes with a known reason (2, grant deleted) decode.
    expect(watch.responseDeserialize(Buffer.from([0x0a, 0x02, 0x18, 2])).revocation?.reason).toBe(
      'REVOCATION_REASON_GRANT_DELETED',
    );
  });
});

describe('REVOCATION_REASONS', () => {
  it('maps every bus reason to a distinct RevocationReason and covers every value but UNSPECIFIED', () => {
    // Compile-time half: a bus reason missing here (or an extra key) fails `tsc`.
    const mapping: Readonly<Record<BusRevocationReason, string>> = REVOCATION_REASONS;
    const enumValues = (
      broker.grpcObject.strongroom.v1.RevocationReason.type as { value: { name: string }[] }
    ).value.map((v) => v.name);
    expect(new Set(Object.values(mapping)).size).toBe(Object.keys(mapping).length);
    expect([...Object.values(mapping)].sort()).toEqual(
      enumValues.filter((n) => n !== 'REVOCATION_REASON_UNSPECIFIED').sort(),
    );
    expect(Object.keys(mapping).sort()).toEqual([
      'artifact-deleted',
      'grant-deleted',
      'grant-denied',
      'grant-expired',
      'grant-revoked',
      'grant-suspended',
      'version-withdrawn',
      'versions-removed',
    ]);
  });
});

describe('over a real grpc-js channel (loopback, no TLS: transport security is the server module’s job)', () => {
  let server: grpc.Server;
  let client: KeyBrokerClient;

  beforeAll(async () => {
    server = new grpc.Server();
    const handlers: KeyBrokerHandlers = {
      Attest: (_call, callback) => {
        callback({ code: grpc.status.UNIMPLEMENTED, details: 'not in this test' });
      },
      ReleaseKey: (call, callback) => {
        if (call.request.version === 'bad-enum') {
          // A server bug must not reach the wire as a silently defaulted value.
          callback(null, { grant: grant, version: 'x', dek: Buffer.alloc(32), leaseExpiresAt: timestamp });
          return;
        }
        callback(null, { dek: Buffer.alloc(32, 7), version: 'v3', grant, auditIndex: '9' });
      },
      WatchRevocations: (call) => {
        call.write({ heartbeat: { epoch: 'e1', lastSeq: call.request.afterSeq ?? '0' } });
        call.write({ revocation: { seq: '1', reason: 'REVOCATION_REASON_ARTIFACT_DELETED', artifact } });
        call.write({
          revocation: { seq: '2', reason: 'NOT_A_REASON' },
        } as unknown as WatchRevocationsResponse);
        call.end();
      },
      PublishVersion: (_call, callback) => {
        callback({ code: grpc.status.UNIMPLEMENTED });
      },
      ReportWipe: (_call, callback) => {
        callback({ code: grpc.status.UNIMPLEMENTED });
      },
    };
    server.addService(service, handlers);
    const port = await new Promise<number>((ok, fail) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) => {
        if (error) fail(error);
        else ok(p);
      });
    });
    client = new broker.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(() => {
    client.close();
    server.forceShutdown();
  });

  it('a unary call carries the typed response', async () => {
    const response = await new Promise<ReleaseKeyResponse__Output>((ok, fail) => {
      client.releaseKey({ artifact, version: 'latest' }, (error, r) => {
        if (error || !r) fail(error ?? new Error('no response'));
        else ok(r);
      });
    });
    expect(response).toMatchObject({ version: 'v3', grant, auditIndex: '9' });
    expect(response.dek.equals(Buffer.alloc(32, 7))).toBe(true);
  });

  it('the stream delivers heartbeats and revocations, then fails (not defaults) on an unknown enum', async () => {
    const received: unknown[] = [];
    const error = await new Promise<grpc.ServiceError | undefined>((ok) => {
      const stream = client.watchRevocations({ afterSeq: '7' });
      stream.on('data', (event: unknown) => received.push(event));
      stream.on('error', (e: grpc.ServiceError) => {
        ok(e);
      });
      stream.on('end', () => {
        ok(undefined);
      });
    });
    expect(received).toEqual([
      { heartbeat: expect.objectContaining({ epoch: 'e1', lastSeq: '7' }) as unknown, event: 'heartbeat' },
      {
        revocation: expect.objectContaining({
          seq: '1',
          reason: 'REVOCATION_REASON_ARTIFACT_DELETED',
        }) as unknown,
        event: 'revocation',
      },
    ]);
    expect(error?.code).toBe(grpc.status.INTERNAL);
  });
});

describe('generated types (proto/generated)', () => {
  async function files(dir: string): Promise<string[]> {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => e.isFile())
      .map((e) => relative(dir, join(e.parentPath, e.name)))
      .sort();
  }

  it('are up to date with keybroker.proto (regenerate as proto/README.md says if not)', async () => {
    const out = await mkdtemp(join(tmpdir(), 'strongroom-proto-'));
    try {
      const generator = join(repoRoot, 'node_modules/@grpc/proto-loader/build/bin/proto-loader-gen-types.js');
      await promisify(execFile)(
        process.execPath,
        [generator, ...GENERATOR_ARGS, '-O', out, KEY_BROKER_PROTO],
        {
          cwd: repoRoot,
        },
      );
      const names = await files(out);
      expect(names).toEqual(await files(generatedDir));
      expect(names).toContain('keybroker.ts');
      for (const name of names) {
        const committedPath = join(generatedDir, name);
        const config = await prettier.resolveConfig(committedPath);
        const fresh = await prettier.format(await readFile(join(out, name), 'utf8'), {
          ...config,
          filepath: committedPath,
        });
        expect(fresh, name).toBe(await readFile(committedPath, 'utf8'));
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  it('are regenerated by the command proto/README.md documents', async () => {
    const readme = await readFile(join(PROTO_ROOT, 'README.md'), 'utf8');
    expect(readme).toContain(
      `npx proto-loader-gen-types ${GENERATOR_ARGS.join(' ')} -O proto/generated ${KEY_BROKER_PROTO}`,
    );
  });
});
