/** The classification of refused TLS handshakes and their audit entries, on the codes Node and OpenSSL report. */
import { describe, expect, it } from 'vitest';
import type { AppendReceipt, BrokerAccessInput } from '../../core/audit/index.ts';
import { auditRefusedHandshake, refusalReason } from './tls-refusal.ts';

describe('refusalReason', () => {
  it.each([
    ['ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', 'no-client-certificate'],
    ['CERT_HAS_EXPIRED', 'certificate-expired'],
    ['ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', 'certificate-expired'],
    ['UNABLE_TO_GET_ISSUER_CERT', 'untrusted-certificate'],
    ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'untrusted-certificate'],
    ['SELF_SIGNED_CERT_IN_CHAIN', 'untrusted-certificate'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'untrusted-certificate'],
    ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'untrusted-certificate'],
    ['CERT_SIGNATURE_FAILURE', 'untrusted-certificate'],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'untrusted-certificate'],
    ['unable_to_verify_leaf_signature', 'untrusted-certificate'],
    ['CERTIFICATE_NOT_TRUSTED', 'tls-handshake-failed'],
    ['ERR_SSL_UNSUPPORTED_PROTOCOL', 'tls-handshake-failed'],
    ['ECONNRESET', 'tls-handshake-failed'],
    ['TLS_ERROR', 'tls-handshake-failed'],
    ['', 'tls-handshake-failed'],
  ])('classifies %s as %s', (code, reason) => {
    expect(refusalReason(code)).toBe(reason);
  });
});

describe('auditRefusedHandshake', () => {
  const log = { info: () => undefined, error: () => undefined };

  it('audits a connect denial with what the client claimed, its SAN cut to 1 KiB', () => {
    const entries: BrokerAccessInput[] = [];
    const audit = {
      access: (input: BrokerAccessInput) => {
        entries.push(input);
        const receipt: AppendReceipt = { seq: 1, time: '2025-01-01T00:00:00Z', leafHash: '00' };
        return Promise.resolve(receipt);
      },
    };
    auditRefusedHandshake({ audit, log }, 'broker', {
      peer: '10.0.0.7:51234',
      code: 'CERT_HAS_EXPIRED',
      message: 'client certificate not trusted',
      claimed: { subjectAltName: `URI:${'a'.repeat(2000)}`, serial: '0a1b' },
    });
    expect(entries).toEqual([
      {
        operation: 'connect',
        decision: 'deny',
        reason: 'certificate-expired',
        peer: '10.0.0.7:51234',
        verified: false,
        workload: { claimedSubjectAltName: `URI:${'a'.repeat(1020)}`, claimedSerial: '0a1b' },
        artifact: null,
        detail: 'broker listener: CERT_HAS_EXPIRED: client certificate not trusted',
      },
    ]);
  });

  it('leaves out what the client did not claim, and only logs an audit failure', async () => {
    const errors: string[] = [];
    const recording = { info: () => undefined, error: (message: string) => errors.push(message) };
    const inputs: BrokerAccessInput[] = [];
    const audit = {
      access: (input: BrokerAccessInput) => {
        inputs.push(input);
        return Promise.reject(new Error('disk full'));
      },
    };
    auditRefusedHandshake({ audit, log: recording }, 'attest', {
      peer: '10.0.0.8:40000',
      code: 'ECONNRESET',
      message: 'socket hang up',
      claimed: {},
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(inputs[0]?.workload).toEqual({});
    expect(inputs[0]?.reason).toBe('tls-handshake-failed');
    expect(errors).toEqual(['could not audit a refused TLS connection']);
  });
});
