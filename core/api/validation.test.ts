import { posix } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadCrds, type Schema } from './generate.ts';
import {
  DNS1123_LABEL_MAX_LENGTH,
  DNS1123_SUBDOMAIN_MAX_LENGTH,
  PATTERNS,
  S3_BUCKET_NAME_MAX_LENGTH,
  S3_BUCKET_NAME_MIN_LENGTH,
  S3_ENDPOINT_MAX_LENGTH,
  formatDuration,
  isAbsolutePath,
  isDns1123Label,
  isDns1123Subdomain,
  isDnsName,
  isLabelValue,
  isQualifiedName,
  isRelativePath,
  isS3BucketName,
  isS3Endpoint,
  isS3Region,
  isSha256Digest,
  parseDuration,
  isSpiffeTrustDomain,
} from './validation.ts';

const H = 3_600_000;
const D = 24 * H;
/** Go's largest duration, 2^63-1 ns, in whole milliseconds. */
const MAX_WHOLE_MS = 9_223_372_036_854;

/** The milliseconds of a duration that must parse. */
function ms(text: string): number {
  const parsed = parseDuration(text);
  if (typeof parsed !== 'number')
    throw new Error(`parseDuration(${JSON.stringify(text)}): ${parsed.join('; ')}`);
  return parsed;
}

describe('parseDuration', () => {
  it.each([
    ['0', 0],
    ['+0', 0],
    ['1h30m', 1.5 * H],
    ['15m', 15 * 60_000],
    ['720h', 30 * D],
    ['1.5h', 1.5 * H],
    ['300ms', 300],
    ['90d', 90 * D],
    ['1d12h', 1.5 * D],
    ['+5s', 5_000],
    ['.5s', 500],
    ['1.s', 1_000],
    ['1h1h', 2 * H],
    ['0h0m0s', 0],
    ['1500us', 1.5],
    ['1500\u00b5s', 1.5],
    ['1500\u03bcs', 1.5],
    ['2ns', 0.000002],
    ['1.000000001s', 1000.000001],
    ['2562047h47m16.854775807s', MAX_WHOLE_MS + 0.775807],
    ['106751d23h47m16s854ms775us807ns', MAX_WHOLE_MS + 0.775807],
  ])('%s = %d ms', (text, want) => {
    expect(ms(text)).toBeCloseTo(want, 9);
  });

  it('is exact for whole milliseconds beyond 2^53 nanoseconds', () => {
    expect(ms('365d')).toBe(365 * D);
    expect(ms('2562047h')).toBe(2_562_047 * H);
  });

  it.each([
    ['', 'empty'],
    ['+', 'empty'],
    ['-1h', 'negative'],
    ['-0', 'negative'],
    ['1', 'missing unit'],
    ['1.5', 'missing unit'],
    ['1h30', 'missing unit'],
    ['h', 'a number is needed'],
    ['.h', 'a number is needed'],
    ['1x', 'unknown unit "x"'],
    ['1H', 'unknown unit "H"'],
    ['1w', 'unknown unit "w"'],
    ['1h x', 'unknown unit "h x"'],
    [' 1h', 'a number is needed'],
    ['1 h', 'unknown unit " h"'],
    ['1..5h', 'unexpected'],
    ['1e3s', 'unknown unit "e"'],
    ['1h-1m', 'unknown unit "h-"'],
    ['9223372036854775808ns', 'too large'],
    ['2562048h', 'too large'],
    ['106752d', 'too large'],
    ['2562047h47m16.854775808s', 'too large'],
    [`${'9'.repeat(200)}h`, 'longer than 128'],
  ])('rejects %j (%s) with one problem', (text, why) => {
    const problems = parseDuration(text);
    expect(Array.isArray(problems)).toBe(true);
    expect(problems).toHaveLength(1);
    expect((problems as string[])[0]).toContain(why);
  });

  it('returns a non-negative number or exactly one problem for any input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (text) => {
        const parsed = parseDuration(text);
        if (typeof parsed === 'number') expect(parsed).toBeGreaterThanOrEqual(0);
        else expect(parsed.length).toBe(1);
      }),
    );
  });

  it('adds up segments written in any order', () => {
    const segment = fc.tuple(
      fc.nat({ max: 10_000 }),
      fc.constantFrom(['d', D], ['h', H], ['m', 60_000], ['s', 1000]),
    );
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), (segments) => {
        const text = segments.map(([n, [unit]]) => `${String(n)}${unit}`).join('');
        const sum = segments.reduce((total, [n, [, size]]) => total + n * size, 0);
        expect(ms(text)).toBe(sum);
      }),
    );
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [1, '1ms'],
    [1.5, '1ms500us'],
    [0.000001, '1ns'],
    [0.9999999, '1ms'],
    [1_000, '1s'],
    [1.5 * H, '1h30m'],
    [90 * D, '90d'],
    [D + 1, '1d1ms'],
    [-60_000, '-1m'],
    [MAX_WHOLE_MS, '106751d23h47m16s854ms'],
    [Number.NaN, 'NaNms'],
    [Number.POSITIVE_INFINITY, 'Infinityms'],
  ])('%d → %s', (n, text) => {
    expect(formatDuration(n)).toBe(text);
  });

  it('parses back to the same value for every whole number of milliseconds up to Go’s limit', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_WHOLE_MS }), (n) => {
        expect(ms(formatDuration(n))).toBe(n);
      }),
      { numRuns: 2000 },
    );
  });

  it('is a canonical form: formatting a parsed duration and parsing again changes nothing', () => {
    const unit = fc.constantFrom('ns', 'us', 'ms', 's', 'm', 'h', 'd');
    const segment = fc.tuple(fc.nat({ max: 999 }), fc.option(fc.nat({ max: 999 }), { nil: undefined }), unit);
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 4 }), (segments) => {
        const text = segments
          .map(([n, frac, u]) => `${String(n)}${frac === undefined ? '' : `.${String(frac)}`}${u}`)
          .join('');
        const once = formatDuration(ms(text));
        expect(formatDuration(ms(once))).toBe(once);
        expect(ms(once)).toBeCloseTo(ms(text), 6);
      }),
    );
  });
});

/** The textbook DNS-1123 label, written independently of validation.ts: RFC 1123 §2.1 with Kubernetes' 63. */
function referenceLabel(value: string): boolean {
  if (value.length < 1 || value.length > 63) return false;
  const alnum = (c: string): boolean => (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  for (const c of value) if (!alnum(c) && c !== '-') return false;
  return alnum(value[0] ?? '') && alnum(value.at(-1) ?? '');
}

const labelChar = fc.constantFrom(...'abcxyz0189-'.split(''), 'A', '_', '.', '/', ' ', 'é');

describe('isDns1123Label', () => {
  it.each(['a', '0', 'my-name', '123-abc', 'a--b', 'a'.repeat(63)])('accepts %j', (value) => {
    expect(isDns1123Label(value)).toEqual([]);
  });

  it.each(['', '-a', 'a-', 'A', 'a_b', 'a.b', 'a b', 'é', 'a'.repeat(64)])('rejects %j', (value) => {
    expect(isDns1123Label(value).length).toBeGreaterThan(0);
  });

  it('names the length limit', () => {
    expect(isDns1123Label('a'.repeat(DNS1123_LABEL_MAX_LENGTH + 1))).toEqual([
      'must be no more than 63 characters',
    ]);
  });

  it('agrees with the RFC 1123 definition', () => {
    fc.assert(
      fc.property(fc.string({ unit: labelChar, maxLength: 70 }), (value) => {
        expect(isDns1123Label(value).length === 0).toBe(referenceLabel(value));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('isDns1123Subdomain', () => {
  it.each(['a', 'example.com', 'my-name', 'a.b.c', `${'a'.repeat(100)}.b`, 'a'.repeat(253)])(
    'accepts %j',
    (value) => {
      expect(isDns1123Subdomain(value)).toEqual([]);
    },
  );

  it.each(['', '.a', 'a.', 'a..b', 'a.-b', 'A.b', 'a_b', 'a'.repeat(254)])('rejects %j', (value) => {
    expect(isDns1123Subdomain(value).length).toBeGreaterThan(0);
  });

  it('names the length limit', () => {
    expect(isDns1123Subdomain('a'.repeat(DNS1123_SUBDOMAIN_MAX_LENGTH + 1))).toEqual([
      'must be no more than 253 characters',
    ]);
  });

  it('is dot-separated labels of any length within 253 characters', () => {
    fc.assert(
      fc.property(fc.string({ unit: labelChar, maxLength: 80 }), (value) => {
        const parts = value.split('.');
        const want =
          value.length <= 253 &&
          parts.every((p) => referenceLabel(p.slice(0, 63)) && referenceLabel(p.slice(-63)));
        expect(isDns1123Subdomain(value).length === 0).toBe(want);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('isDnsName', () => {
  it.each(['a', 'example.com', 'strongroom-webhook.strongroom-system.svc', `${'a'.repeat(63)}.b`])(
    'accepts %j',
    (value) => {
      expect(isDnsName(value)).toEqual([]);
    },
  );

  it.each(['', 'a..b', 'A.b', '-a.b', `${'a'.repeat(64)}.b`, `${'a.'.repeat(126)}ab`])(
    'rejects %j',
    (value) => {
      expect(isDnsName(value).length).toBeGreaterThan(0);
    },
  );

  it('is a subdomain of labels', () => {
    fc.assert(
      fc.property(fc.string({ unit: labelChar, maxLength: 80 }), (value) => {
        const want = value.length <= 253 && value.split('.').every(referenceLabel);
        expect(isDnsName(value).length === 0).toBe(want);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('isQualifiedName', () => {
  it.each([
    'app',
    'MyName',
    'my.name_x-1',
    'app.kubernetes.io/name',
    'example.com/MyName',
    'strongroom.dev/classification',
    'a'.repeat(63),
    `${'a'.repeat(253)}/${'b'.repeat(63)}`,
  ])('accepts %j', (value) => {
    expect(isQualifiedName(value)).toEqual([]);
  });

  it.each([
    ['', 'name part must be non-empty'],
    ['/a', 'prefix part must be non-empty'],
    ['a/', 'name part must be non-empty'],
    ['a/b/c', "optional DNS subdomain prefix and '/'"],
    ['Example.com/a', 'prefix part must be a lowercase RFC 1123 subdomain'],
    [`${'a'.repeat(254)}/b`, 'prefix part must be no more than 253 characters'],
    ['a'.repeat(64), 'name part must be no more than 63 characters'],
    ['-a', 'name part must consist of'],
    ['a_', 'name part must consist of'],
    ['a b', 'name part must consist of'],
  ])('rejects %j: %s', (value, problem) => {
    expect(isQualifiedName(value).join('; ')).toContain(problem);
  });

  it('agrees with the CRDs’ pattern within the length limits', () => {
    const pattern = new RegExp(PATTERNS.qualifiedName);
    const unit = fc.constantFrom(...'aZ09-_./'.split(''), ' ');
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 30 }), (value) => {
        expect(isQualifiedName(value).length === 0).toBe(pattern.test(value));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('isLabelValue', () => {
  it.each(['', 'a', 'Online', 'v1.2_3-x', 'a'.repeat(63)])('accepts %j', (value) => {
    expect(isLabelValue(value)).toEqual([]);
  });

  it.each(['-a', 'a-', 'a/b', 'a b', 'a'.repeat(64)])('rejects %j', (value) => {
    expect(isLabelValue(value).length).toBeGreaterThan(0);
  });
});

describe('isSha256Digest', () => {
  it('accepts sha256: and 64 lowercase hex digits', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9a-f]{64}$/), (hex) => {
        expect(isSha256Digest(`sha256:${hex}`)).toEqual([]);
      }),
    );
  });

  it.each([
    '',
    'sha256:',
    `sha256:${'a'.repeat(63)}`,
    `sha256:${'a'.repeat(65)}`,
    `sha256:${'A'.repeat(64)}`,
    `SHA256:${'a'.repeat(64)}`,
    `sha512:${'a'.repeat(64)}`,
    'a'.repeat(64),
  ])('rejects %j', (value) => {
    expect(isSha256Digest(value)).toEqual(['must be "sha256:" followed by 64 lowercase hex digits']);
  });
});

describe('isRelativePath', () => {
  it.each(['a', 'models/resnet50', 'a/b.c/d_e-f', '...', '.hidden/x', 'v1..2'])('accepts %j', (value) => {
    expect(isRelativePath(value)).toEqual([]);
  });

  it.each([
    ['', 'must be relative'],
    ['/abs', 'must be relative'],
    ['a//b', 'must be relative'],
    ['a/', 'must be relative'],
    ['a b', 'must be relative'],
    ['..', 'must not contain "." or ".." segments'],
    ['a/../b', 'must not contain "." or ".." segments'],
    ['./a', 'must not contain "." or ".." segments'],
  ])('rejects %j: %s', (value, problem) => {
    const problems = isRelativePath(value);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(problem);
  });

  it('never lets a path leave the directory it is joined to', () => {
    const unit = fc.constantFrom('a', '.', '/', '_', '-');
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 12 }), (value) => {
        if (isRelativePath(value).length > 0) return;
        expect(posix.normalize(`/root/${value}`).startsWith('/root/')).toBe(true);
        expect(posix.normalize(value)).toBe(value);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('isAbsolutePath', () => {
  it.each(['/', '/models', '/models/resnet-50', '/a/.hidden', '/a/b..c'])('accepts %j', (value) => {
    expect(isAbsolutePath(value)).toEqual([]);
  });

  it.each([
    ['', 'is relative'],
    ['models', 'is relative'],
    ['/models/../etc', "contains a '.' or '..' segment"],
    ['/models/./x', "contains a '.' or '..' segment"],
    ['/..', "contains a '.' or '..' segment"],
    ['/models//x', 'is not normalized'],
    ['/models/', 'is not normalized'],
    ['//', 'is not normalized'],
  ])('rejects %j: %s', (value, problem) => {
    const problems = isAbsolutePath(value);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(problem);
  });

  it('is exactly the absolute paths that posix.normalize leaves alone, without a trailing slash', () => {
    const unit = fc.constantFrom('a', '.', '/', 'b');
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 12 }), (value) => {
        const want =
          value.startsWith('/') &&
          posix.normalize(value) === value &&
          (value === '/' || !value.endsWith('/'));
        expect(isAbsolutePath(value).length === 0).toBe(want);
      }),
      { numRuns: 2000 },
    );
  });
});

const crds = await loadCrds();

describe('the CRDs in crds/', () => {
  const constraints: { path: string; schema: Schema }[] = [];
  function walk(schema: Schema, path: string): void {
    if (schema.pattern !== undefined) constraints.push({ path, schema });
    for (const [name, child] of Object.entries(schema.properties ?? {})) walk(child, `${path}.${name}`);
    if (schema.items) walk(schema.items, `${path}[]`);
    if (typeof schema.additionalProperties === 'object') walk(schema.additionalProperties, `${path}.*`);
  }
  for (const crd of crds)
    for (const version of crd.spec.versions) walk(version.schema.openAPIV3Schema, crd.spec.names.kind);

  const checks = new Map<string, { check: (value: string) => string[]; maxLength?: number }>([
    [PATTERNS.dns1123Label, { check: isDns1123Label, maxLength: DNS1123_LABEL_MAX_LENGTH }],
    [PATTERNS.dns1123Subdomain, { check: isDns1123Subdomain, maxLength: DNS1123_SUBDOMAIN_MAX_LENGTH }],
    [PATTERNS.sha256Digest, { check: isSha256Digest }],
  ]);

  it('spell every Kubernetes-name, path and digest pattern as validation.ts does', () => {
    const ours = new Set<string>(Object.values(PATTERNS));
    const kubernetesLike = constraints.filter(({ schema }) =>
      /a-z0-9\]\(|A-Za-z0-9\._-|sha256/.test(schema.pattern ?? ''),
    );
    expect(kubernetesLike.length).toBeGreaterThan(0);
    for (const { path, schema } of kubernetesLike)
      expect([path, ours.has(schema.pattern ?? '')]).toEqual([path, true]);
  });

  it('accept exactly what the checks accept where a pattern and length limits say the whole rule', () => {
    const unit = fc.constantFrom(...'az09-.:'.split(''), 'A', '_');
    for (const { path, schema } of constraints) {
      const rule = checks.get(schema.pattern ?? '');
      if (rule === undefined) continue;
      expect([path, schema.maxLength]).toEqual([path, rule.maxLength ?? schema.maxLength]);
      const pattern = new RegExp(schema.pattern ?? '');
      fc.assert(
        fc.property(
          fc.oneof(fc.string({ unit, maxLength: 300 }), fc.string({ unit, maxLength: 8 })),
          (value) => {
            const crd =
              value.length >= (schema.minLength ?? 0) &&
              value.length <= (schema.maxLength ?? Infinity) &&
              pattern.test(value);
            expect([path, value, crd]).toEqual([path, value, rule.check(value).length === 0]);
          },
        ),
        { numRuns: 300 },
      );
    }
  });
});

describe('isSpiffeTrustDomain', () => {
  it.each(['cluster.local', 'prod.example.com', 'td_1', 'a', 'a'.repeat(255)])('accepts %s', (value) => {
    expect(isSpiffeTrustDomain(value)).toEqual([]);
  });
  it.each(['', '.local', 'local.', '-td', 'td_', 'Bad/Domain', 'UPPER.case', 'a'.repeat(256)])(
    'refuses %j',
    (value) => {
      expect(isSpiffeTrustDomain(value).length).toBeGreaterThan(0);
    },
  );
});

describe('isS3BucketName', () => {
  it.each(['abc', 'ml-models', 'models.example.com', 'a1-b2.c3', '1bucket', 'a'.repeat(63), '192.168.5.4a'])(
    'accepts %j',
    (value) => {
      expect(isS3BucketName(value)).toEqual([]);
    },
  );

  it.each([
    ['ab', 'must be 3 to 63 characters'],
    ['a'.repeat(64), 'must be 3 to 63 characters'],
    ['ML-Models', 'must consist of lower case alphanumeric characters'],
    ['ml_models', 'must consist of lower case alphanumeric characters'],
    ['-models', 'starting and ending with an alphanumeric character'],
    ['models.', 'starting and ending with an alphanumeric character'],
    ['ml..models', 'must not contain two adjacent periods'],
    ['192.168.5.4', 'must not be formatted as an IP address'],
    ['10.0.0.1', 'must not be formatted as an IP address'],
  ])('rejects %j: %s', (value, problem) => {
    expect(isS3BucketName(value).join('; ')).toContain(problem);
  });

  it('is the CRD’s pattern and length limits plus its two CEL rules', () => {
    const unit = fc.constantFrom(...'az09.-'.split(''), 'A', '_');
    const pattern = new RegExp(PATTERNS.s3BucketName);
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 70 }), (value) => {
        const want =
          value.length >= 3 &&
          value.length <= 63 &&
          pattern.test(value) &&
          !/^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$/.test(value) &&
          !value.includes('..');
        expect(isS3BucketName(value).length === 0).toBe(want);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('isS3Region', () => {
  it.each(['us-east-1', 'eu-central-1', 'garage', 'a'.repeat(32)])('accepts %j', (value) => {
    expect(isS3Region(value)).toEqual([]);
  });
  it.each(['', 'EU', 'us_east_1', 'a'.repeat(33)])('rejects %j', (value) => {
    expect(isS3Region(value)).toHaveLength(1);
  });
});

describe('isS3Endpoint', () => {
  it.each([
    'https://s3.amazonaws.com',
    'https://minio.storage.svc:9000',
    'http://minio.storage.svc.cluster.local:9000/',
    'http://10.96.0.15:9000',
    'http://[fd00::1]:9000',
    'https://[::1]/',
  ])('accepts %j', (value) => {
    expect(isS3Endpoint(value)).toEqual([]);
  });

  it.each([
    ['ftp://s3.example.com', 'must be an http:// or https:// URL'],
    ['s3.example.com', 'must be an http:// or https:// URL'],
    ['HTTPS://s3.example.com', 'must be an http:// or https:// URL'],
    ['https://user:pass@s3.example.com', 'must not contain a user name or password'],
    ['https://s3.example.com/?x=1', 'must not have a query or fragment'],
    ['https://s3.example.com#frag', 'must not have a query or fragment'],
    ['https://s3.example.com/bucket', 'must not have a path beyond "/"'],
    ['https://s3.example.com//', 'must not have a path beyond "/"'],
    ['https://', 'must be scheme://host[:port]'],
    ['https://-bad.example.com', 'must be scheme://host[:port]'],
    ['https://s3.example.com:', 'must be scheme://host[:port]'],
    ['https://s3.example.com:123456', 'must be scheme://host[:port]'],
    ['https://s3 example.com', 'must be scheme://host[:port]'],
    [`https://${'a'.repeat(510)}`, 'must be no more than 512 characters'],
  ])('rejects %j: %s', (value, problem) => {
    const problems = isS3Endpoint(value);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(problem);
  });
});

describe('the S3 rules of the ModelArtifact CRD', () => {
  const ma = crds.find((c) => c.spec.names.kind === 'ModelArtifact');
  const s3 =
    ma?.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec?.properties?.storage?.properties?.s3;
  const rules = (field: string): string[] =>
    (s3?.properties?.[field]?.['x-kubernetes-validations'] ?? []).map((v) => v.rule.trim());
  /** A Go regular expression as a CEL string literal in single quotes spells it: backslashes doubled. */
  const celLiteral = (pattern: string): string => `'${pattern.replaceAll('\\', '\\\\')}'`;

  it('spell the bucket, region and endpoint rules as validation.ts does', () => {
    expect(s3?.properties?.bucket).toMatchObject({
      pattern: PATTERNS.s3BucketName,
      minLength: S3_BUCKET_NAME_MIN_LENGTH,
      maxLength: S3_BUCKET_NAME_MAX_LENGTH,
    });
    expect(rules('bucket')).toEqual([
      "!self.matches('^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$')",
      "!self.contains('..')",
    ]);
    expect(s3?.properties?.region).toMatchObject({ pattern: PATTERNS.s3Region, maxLength: 32 });
    expect(s3?.properties?.endpoint?.maxLength).toBe(S3_ENDPOINT_MAX_LENGTH);
    expect(rules('endpoint')).toEqual([
      "self.matches('^https?://')",
      "!self.contains('@')",
      "!self.contains('?') && !self.contains('#')",
      "!self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/]*/.')",
      `self.matches(${celLiteral(PATTERNS.s3Endpoint)})`,
    ]);
    expect(s3?.properties?.prefix?.pattern).toBe(PATTERNS.relativePath);
    expect(s3?.properties?.credentialsSecretRef?.properties?.name?.pattern).toBe(PATTERNS.dns1123Subdomain);
  });

  it('accept exactly the endpoints isS3Endpoint accepts (the CEL rules evaluated as the regular expressions they are)', () => {
    const unit = fc.constantFrom(...'hts:/.a0-@?#[]:'.split(''), 'p', ' ', 'f', '9');
    const value = fc.oneof(
      fc.string({ unit, maxLength: 30 }),
      fc.string({ unit, maxLength: 20 }).map((s) => `https://${s}`),
      fc.string({ unit, maxLength: 20 }).map((s) => `http://${s}`),
    );
    fc.assert(
      fc.property(value, (v) => {
        const cel =
          /^https?:\/\//.test(v) &&
          !v.includes('@') &&
          !v.includes('?') &&
          !v.includes('#') &&
          !/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*\/./.test(v) &&
          new RegExp(PATTERNS.s3Endpoint).test(v);
        expect([v, isS3Endpoint(v).length === 0]).toEqual([v, cel]);
      }),
      { numRuns: 3000 },
    );
  });
});
