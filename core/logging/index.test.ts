import { generateKeyPairSync, randomBytes, createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type winston from 'winston';
import { describe, expect, it } from 'vitest';
import { componentLogger, createRootLogger } from './index.ts';

/** A root logger on a PassThrough, and a way to read what it wrote (as text and as parsed JSON lines). */
function capture(level = 'debug'): {
  root: winston.Logger;
  text: () => string;
  lines: () => Record<string, unknown>[];
} {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  const root = createRootLogger({ level, stream });
  const text = (): string => Buffer.concat(chunks).toString('utf8');
  const lines = (): Record<string, unknown>[] =>
    text()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { root, text, lines };
}

/** Every way bytes can show up when something serializes them. */
function renderings(bytes: Buffer): string[] {
  return [
    bytes.toString('hex'),
    bytes.toString('base64'),
    bytes.toString('base64url'),
    JSON.stringify([...bytes]),
  ];
}

function makeJwt(): string {
  const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc({ alg: 'RS256', kid: 'k' })}.${enc({ sub: 'system:serviceaccount:ml:trainer', aud: ['strongroom'] })}.${randomBytes(64).toString('base64url')}`;
}

describe('createRootLogger', () => {
  it('writes one JSON object per line with timestamp, level, message, component and fields', () => {
    const { root, lines } = capture('info');
    componentLogger(root, 'artifacts', { ns: 'ml', name: 'llama' }).info('reconciled', { generation: 3 });
    expect(lines()).toEqual([
      {
        timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/) as unknown,
        level: 'info',
        message: 'reconciled',
        component: 'artifacts',
        ns: 'ml',
        name: 'llama',
        generation: 3,
      },
    ]);
  });

  it('honours the level', () => {
    const { root, lines } = capture('warn');
    root.info('not written');
    root.debug('not written');
    root.warn('written');
    root.error('written too');
    expect(lines().map((l) => l['level'])).toEqual(['warn', 'error']);
  });

  it('rejects an unknown level instead of silently logging nothing', () => {
    expect(() => createRootLogger({ level: 'verbose-ish' })).toThrow(RangeError);
    expect(() => createRootLogger({ level: 'INFO' })).toThrow(/unknown log level "INFO"/);
  });

  it('nested component loggers keep the innermost component and all fields; fields cannot override component', () => {
    const { root, lines } = capture();
    const outer = componentLogger(root, 'grants', { ns: 'ml' });
    componentLogger(outer, 'grants/revocation', { uid: 'u1', component: 'spoofed' }).info('x');
    expect(lines()[0]).toMatchObject({ component: 'grants/revocation', ns: 'ml', uid: 'u1' });
  });
});

describe('redaction', () => {
  it('never writes a Buffer DEK, under a secret name or an innocent one', () => {
    const { root, text, lines } = capture();
    const dek = randomBytes(32);
    const other = randomBytes(32);
    root.info('wrapped a key', {
      dek,
      payload: other,
      view: new Uint8Array(other.buffer, other.byteOffset, 16),
    });
    for (const r of [...renderings(dek), ...renderings(other)]) expect(text()).not.toContain(r);
    expect(lines()[0]).toMatchObject({
      dek: '[redacted]',
      payload: '[redacted 32 bytes]',
      view: '[redacted 16 bytes]',
    });
  });

  it('redacts a nested wrapped key but keeps its public identifiers readable elsewhere', () => {
    const { root, text, lines } = capture();
    const ciphertext = randomBytes(60).toString('base64');
    root.info('rewrapped', {
      artifact: { ns: 'ml', name: 'llama', status: { wrappedKey: { provider: 'local', ciphertext } } },
      keyId: 'projects/p/locations/l/keyRings/r/cryptoKeys/restricted',
      keyVersion: '7',
      fingerprint: 'SHA256:abcd',
    });
    expect(text()).not.toContain(ciphertext);
    expect(lines()[0]).toMatchObject({
      artifact: { ns: 'ml', name: 'llama', status: { wrappedKey: '[redacted]' } },
      keyId: 'projects/p/locations/l/keyRings/r/cryptoKeys/restricted',
      keyVersion: '7',
      fingerprint: 'SHA256:abcd',
    });
  });

  it('matches secret names case-insensitively at any depth and inside arrays, maps and sets', () => {
    const { root, text, lines } = capture();
    const secrets = ['S1-hunter2', 'S2-tok', 'S3-pin', 'S4-priv', 'S5-mat', 'S6-cookie', 'S7-kek', 'S8-map'];
    root.info('deep', {
      users: [
        { name: 'a', PASSWORD: secrets[0] },
        { name: 'b', headers: { 'X-Auth-Token': secrets[1] } },
      ],
      a: { b: { c: { d: { e: { userPin: secrets[2] } } } } },
      list: [[{ privateKeyPem: secrets[3] }]],
      keyMaterial: secrets[4],
      Cookie: secrets[5],
      kek: secrets[6],
      map: new Map([
        ['clientSecret', secrets[7]],
        ['ok', 'kept'],
      ]),
      set: new Set([{ apiKey: 'S9-set' }]),
    });
    for (const s of [...secrets, 'S9-set']) expect(text()).not.toContain(s);
    expect(lines()[0]).toMatchObject({
      users: [
        { name: 'a', PASSWORD: '[redacted]' },
        { name: 'b', headers: { 'X-Auth-Token': '[redacted]' } },
      ],
      map: { clientSecret: '[redacted]', ok: 'kept' },
      set: [{ apiKey: '[redacted]' }],
    });
  });

  it('replaces a JWT in the message and in any string field, keeping the text around it', () => {
    const { root, text, lines } = capture();
    const jwt = makeJwt();
    const [header, claims, signature] = jwt.split('.');
    root.warn(`attestation failed for ${jwt} (audience mismatch)`, {
      detail: `token was ${jwt}`,
      words: [jwt],
    });
    for (const part of [header, claims, signature]) expect(text()).not.toContain(part);
    expect(lines()[0]).toMatchObject({
      message: 'attestation failed for [redacted] (audience mismatch)',
      detail: 'token was [redacted]',
      words: ['[redacted]'],
    });
  });

  it('replaces Bearer and Basic credentials in strings', () => {
    const { root, text, lines } = capture();
    root.info('request', { header: 'Bearer opaque-s3cr3t-value', other: 'basic dXNlcjpwYXNz' });
    expect(text()).not.toContain('opaque-s3cr3t-value');
    expect(text()).not.toContain('dXNlcjpwYXNz');
    expect(lines()[0]).toMatchObject({ header: 'Bearer [redacted]', other: 'basic [redacted]' });
  });

  it('replaces a PEM private key (PKCS#8, SEC1, truncated) but keeps a public key PEM readable', () => {
    const { root, text, lines } = capture();
    // Two key pairs: a SEC1 private key embeds its own public point, which may rightly appear in a public PEM.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const sec1 = privateKey.export({ type: 'sec1', format: 'pem' }).toString();
    const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const body = (pem: string): string[] => pem.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
    const truncated = pkcs8.slice(0, pkcs8.length - 40);
    root.error(`loaded ${pkcs8} then`, { publicKeyPem, note: sec1, cut: truncated });
    for (const line of [...body(pkcs8), ...body(sec1)]) expect(text()).not.toContain(line);
    const entry = lines()[0];
    expect(entry).toMatchObject({
      message: 'loaded [redacted]\n then',
      note: '[redacted]\n',
      cut: '[redacted]',
    });
    expect(entry?.['publicKeyPem']).toBe(publicKeyPem);
  });

  it('logs an error with name, message, code and a redacted cause chain, and no stack', () => {
    const { root, text, lines } = capture();
    const jwt = makeJwt();
    class KmsLikeError extends Error {
      override readonly name = 'KmsLikeError';
      readonly code = 'unavailable';
    }
    const root_cause = Object.assign(new Error(`401 for Authorization: Bearer ${jwt}`), { code: 401 });
    const err = new KmsLikeError('unwrap failed', {
      cause: new TypeError('fetch failed', { cause: root_cause }),
    });
    componentLogger(root, 'broker').error('release denied', { err, key: randomBytes(16) });
    expect(text()).not.toContain(jwt.split('.')[1]);
    expect(text()).not.toContain('    at ');
    expect(lines()[0]).toMatchObject({
      message: 'release denied',
      key: '[redacted]',
      err: {
        name: 'KmsLikeError',
        message: 'unwrap failed',
        code: 'unavailable',
        cause: {
          name: 'TypeError',
          message: 'fetch failed',
          cause: { name: 'Error', message: '401 for Authorization: Bearer [redacted]', code: 401 },
        },
      },
    });
  });

  it('handles an error passed as the entry itself, on the root and on a child logger', () => {
    const { root, text, lines } = capture();
    const jwt = makeJwt();
    const err = Object.assign(new RangeError('bad input', { cause: new Error(`token ${jwt}`) }), {
      code: 'E_BAD',
    });
    root.error(err);
    componentLogger(root, 'c').error(err);
    componentLogger(root, 'c').error('while reconciling', err);
    expect(text()).not.toContain(jwt.split('.')[2]);
    expect(text()).not.toContain('    at ');
    const [a, b, c] = lines();
    const error = {
      name: 'RangeError',
      code: 'E_BAD',
      cause: { name: 'Error', message: 'token [redacted]' },
    };
    expect(a).toMatchObject({
      level: 'error',
      message: 'bad input',
      error: { ...error, message: 'bad input' },
    });
    expect(b).toMatchObject({
      component: 'c',
      message: 'bad input',
      error: { ...error, message: 'bad input' },
    });
    expect(c).toMatchObject({ component: 'c', error });
    expect(c?.['message']).toContain('while reconciling');
  });

  it('includes the errors of an AggregateError, redacted', () => {
    const { root, lines } = capture();
    root.error('all failed', { err: new AggregateError([new Error(`x ${makeJwt()}`)], 'two replicas') });
    expect(lines()[0]).toMatchObject({
      err: {
        name: 'AggregateError',
        message: 'two replicas',
        errors: [{ name: 'Error', message: 'x [redacted]' }],
      },
    });
  });

  it('redacts the fields given to a component logger', () => {
    const { root, text, lines } = capture();
    componentLogger(root, 'sidecar', { ns: 'ml', token: 'child-field-secret' }).info('started');
    expect(text()).not.toContain('child-field-secret');
    expect(lines()[0]).toMatchObject({ ns: 'ml', token: '[redacted]' });
  });

  it('survives circular, deep and odd values', () => {
    const { root, lines } = capture();
    const loop: Record<string, unknown> = { name: 'loop' };
    loop['self'] = loop;
    let deep: Record<string, unknown> = { leaf: true };
    for (let i = 0; i < 30; i++) deep = { next: deep };
    const shared = { v: 1 };
    root.info('odd', {
      loop,
      deep,
      both: [shared, shared],
      when: new Date(0),
      url: new URL('https://example.com/p'),
      big: 10n,
      fn: () => 1,
      throwing: {
        toJSON() {
          throw new Error('nope');
        },
      },
    });
    const entry = lines()[0];
    expect(entry).toMatchObject({
      loop: { name: 'loop', self: '[circular]' },
      both: [{ v: 1 }, { v: 1 }],
      when: '1970-01-01T00:00:00.000Z',
      url: 'https://example.com/p',
      throwing: '[unserializable]',
    });
    expect(JSON.stringify(entry?.['deep'])).toContain('[truncated]');
  });

  it('leaves ordinary operational data untouched', () => {
    const { root, lines } = capture();
    const digest = createHash('sha256').update('x').digest('hex');
    const fields = {
      ns: 'ml',
      name: 'llama-3',
      uid: 'a-b-c',
      generation: 4,
      digest,
      phase: 'Ready',
      count: 0,
    };
    root.info('ok', fields);
    expect(lines()[0]).toMatchObject(fields);
  });
});
