import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ModelArtifact } from '../../core/api/index.ts';
import { generateRecipientKeyPair } from '../../core/envelope/index.ts';
import {
  DEFAULT_KEK_SCOPES,
  decodeWrapped,
  dekAad,
  describePublicKey,
  encodeWrapped,
  kekIdFor,
  recipientSecretName,
} from './artifact-keys.ts';

const artifact = (classification: ModelArtifact['spec']['classification'], uid = 'u-1'): ModelArtifact => ({
  apiVersion: 'strongroom.dev/v1alpha1',
  kind: 'ModelArtifact',
  metadata: { name: 'resnet', namespace: 'ml', uid },
  spec: {
    classification,
    owner: { team: 't' },
    storage: { persistentVolumeClaim: { claimName: 'c' }, path: 'p' },
  },
});

describe('artifact key naming', () => {
  it('shares a KEK per classification, except restricted artifacts, which get their own', () => {
    expect(kekIdFor(artifact('internal'), DEFAULT_KEK_SCOPES)).toBe('strongroom-internal');
    expect(kekIdFor(artifact('confidential'), DEFAULT_KEK_SCOPES)).toBe('strongroom-confidential');
    expect(kekIdFor(artifact('restricted', 'abc'), DEFAULT_KEK_SCOPES)).toBe('strongroom-artifact-abc');
    expect(recipientSecretName('abc')).toBe('strongroom-rk-abc');
  });

  it('binds a DEK to artifact uid, namespace, name and version', () => {
    const a = dekAad(artifact('internal'), 'v1');
    expect(a.equals(dekAad(artifact('internal'), 'v1'))).toBe(true);
    expect(a.equals(dekAad(artifact('internal'), 'v2'))).toBe(false);
    expect(a.equals(dekAad(artifact('internal', 'u-2'), 'v1'))).toBe(false);
    expect(a.equals(dekAad({ uid: 'u-1', namespace: 'ml', name: 'resnet' }, 'v1'))).toBe(true);
    expect(a.equals(dekAad({ uid: 'u-1', namespace: 'other', name: 'resnet' }, 'v1'))).toBe(false);
  });
});

describe('recipient public key description', () => {
  it('gives the PEM SubjectPublicKeyInfo and the SHA-256 fingerprint of its DER', async () => {
    const pair = await generateRecipientKeyPair();
    pair.privateKey.fill(0);
    const { pem, fingerprint } = describePublicKey(pair.publicKey);
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    const other = await generateRecipientKeyPair();
    expect(describePublicKey(other.publicKey).fingerprint).not.toBe(fingerprint);
  });

  it('matches the SHA-256 of the DER SPKI that node:crypto exports for the same key', () => {
    const { publicKey } = generateKeyPairSync('x25519');
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url').toString('base64');
    const der = publicKey.export({ type: 'spki', format: 'der' });
    expect(describePublicKey(raw).fingerprint).toBe(
      `sha256:${createHash('sha256').update(der).digest('hex')}`,
    );
  });
});

describe('wrapped key records', () => {
  it('round-trip through base64 JSON and reject anything else', () => {
    const wrapped = { provider: 'local', keyId: 'strongroom-internal', keyVersion: '2', ciphertext: 'AAAA' };
    expect(decodeWrapped(encodeWrapped(wrapped))).toEqual(wrapped);
    expect(() => decodeWrapped(Buffer.from('{"provider":"local"}').toString('base64'))).toThrow(
      /wrapped key/,
    );
    expect(() => decodeWrapped('not base64 json')).toThrow();
  });
});
