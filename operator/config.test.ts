import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError, OPERATOR_FLAGS, parseConfig, renderConfigDocs, type OperatorConfig } from './config.ts';
import { FlagSet, duration, flag, hostPort, text } from './flags.ts';

const NS = ['--namespace', 'strongroom-system'];
const DEFAULT_BROKER: OperatorConfig['broker'] = {
  address: { host: '0.0.0.0', port: 9444 },
  attestAddress: { host: '0.0.0.0', port: 9443 },
  trustDomain: 'cluster.local',
  clusterName: 'kubernetes',
  auditCheckpointConfigMap: true,
  dekCacheTtlMs: 5000,
  maxConnectionAgeMs: 600_000,
  credentialRefreshMs: 30_000,
  podCertificateValidityMs: 3_600_000,
};

const defaultInjection = (namespace: string): OperatorConfig['injection'] => ({
  address: { host: '0.0.0.0', port: 9445 },
  image: 'ghcr.io/strongroom/strongroom:0.1.0',
  imagePullPolicy: 'IfNotPresent',
  brokerAddress: `strongroom-broker.${namespace}.svc:9444`,
  attestAddress: `strongroom-broker.${namespace}.svc:9443`,
  brokerServerName: `strongroom-broker.${namespace}.svc`,
});

function fails(argv: readonly string[], env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfig(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`parseConfig(${JSON.stringify(argv)}, ${JSON.stringify(env)}) did not fail`);
}

describe('parseConfig defaults', () => {
  it('fills every default when only the namespace is given', () => {
    const config = parseConfig(NS, {});
    const { identity, ...rest } = config;
    expect(rest).toEqual({
      namespace: 'strongroom-system',
      kubeconfig: undefined,
      healthAddress: { host: '0.0.0.0', port: 8080 },
      logLevel: 'info',
      leaderElection: {
        enabled: true,
        leaseName: 'strongroom-operator',
        leaseDurationMs: 15_000,
        renewDeadlineMs: 10_000,
        retryPeriodMs: 2_000,
      },
      workers: 4,
      kms: { provider: 'local' },
      rotation: '',
      governanceConfig: 'strongroom-governance',
      resyncPeriodMs: 600_000,
      watchStallTimeoutMs: 90_000,
      shutdownTimeoutMs: 25_000,
      broker: DEFAULT_BROKER,
      injection: defaultInjection('strongroom-system'),
      auditLogDir: '/var/lib/strongroom/audit',
      auditSigner: 'secret',
    } satisfies Omit<OperatorConfig, 'identity'>);
    expect(identity).toMatch(
      new RegExp(`^${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_[0-9a-f]{8}$`),
    );
  });

  it('gives each process a different default identity', () => {
    expect(parseConfig(NS, {}).identity).not.toBe(parseConfig(NS, {}).identity);
  });

  it('requires the namespace, naming both the flag and the variable', () => {
    const err = fails([]);
    expect(err.message).toContain('--namespace');
    expect(err.message).toContain('STRONGROOM_NAMESPACE');
    expect(err.setting).toBe('--namespace');
  });
});

describe('every flag', () => {
  it('reads each flag into its field', () => {
    const config = parseConfig(
      [
        '--namespace=ops',
        '--kubeconfig',
        '/home/me/.kube/config',
        '--identity',
        'replica-a',
        '--health-address',
        '127.0.0.1:0',
        '--log-level',
        'debug',
        '--leader-elect=false',
        '--lease-name',
        'my-lease',
        '--lease-duration',
        '1m',
        '--renew-deadline',
        '40s',
        '--retry-period',
        '5s',
        '--workers',
        '64',
        '--kek-rotation',
        'restricted=30d,confidential=90d',
        '--governance-config',
        'team.governance',
        '--resync-period',
        '1h30m',
        '--watch-stall-timeout',
        '2m',
        '--shutdown-timeout',
        '1.5s',
        '--audit-log-dir',
        '/data/audit',
      ],
      {},
    );
    expect(config).toEqual({
      namespace: 'ops',
      kubeconfig: '/home/me/.kube/config',
      identity: 'replica-a',
      healthAddress: { host: '127.0.0.1', port: 0 },
      logLevel: 'debug',
      leaderElection: {
        enabled: false,
        leaseName: 'my-lease',
        leaseDurationMs: 60_000,
        renewDeadlineMs: 40_000,
        retryPeriodMs: 5_000,
      },
      workers: 64,
      kms: { provider: 'local' },
      rotation: 'restricted=30d,confidential=90d',
      governanceConfig: 'team.governance',
      resyncPeriodMs: 5_400_000,
      watchStallTimeoutMs: 120_000,
      shutdownTimeoutMs: 1_500,
      broker: DEFAULT_BROKER,
      injection: defaultInjection('ops'),
      auditLogDir: '/data/audit',
      auditSigner: 'secret',
    } satisfies OperatorConfig);
  });

  it.each([
    [['--leader-elect'], true],
    [['--leader-elect=true'], true],
    [['--leader-elect', 'false'], false],
    [['--leader-elect=0'], false],
    [['--leader-elect=1'], true],
    [['--no-leader-elect'], false],
  ])('leader election %j → %s', (flags, enabled) => {
    expect(parseConfig([...NS, ...flags], {}).leaderElection.enabled).toBe(enabled);
  });

  it.each([
    ['[::1]:9090', { host: '::1', port: 9090 }],
    [':8081', { host: '0.0.0.0', port: 8081 }],
    ['localhost:65535', { host: 'localhost', port: 65535 }],
  ])('health address %s', (value, expected) => {
    expect(parseConfig([...NS, '--health-address', value], {}).healthAddress).toEqual(expected);
  });

  it.each(['error', 'warn', 'info', 'debug'] as const)('log level %s', (level) => {
    expect(parseConfig([...NS, '--log-level', level], {}).logLevel).toBe(level);
  });

  it.each([
    ['500ms', 500],
    ['15s', 15_000],
    ['10m', 600_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['2m30.5s', 150_500],
    ['596h', 2_145_600_000],
  ])('duration %s = %d ms', (value, ms) => {
    expect(parseConfig([...NS, '--resync-period', value], {}).resyncPeriodMs).toBe(ms);
  });

  it('accepts the bounds of --workers', () => {
    expect(parseConfig([...NS, '--workers', '1'], {}).workers).toBe(1);
    expect(parseConfig([...NS, '--workers', '64'], {}).workers).toBe(64);
  });
});

describe('every environment variable', () => {
  const env = {
    STRONGROOM_NAMESPACE: 'from-env',
    KUBECONFIG: '/etc/kubeconfig',
    STRONGROOM_IDENTITY: 'pod-xyz',
    STRONGROOM_HEALTH_ADDRESS: '10.0.0.1:9000',
    STRONGROOM_LOG_LEVEL: 'warn',
    STRONGROOM_LEADER_ELECT: 'false',
    STRONGROOM_LEASE_NAME: 'env-lease',
    STRONGROOM_LEASE_DURATION: '30s',
    STRONGROOM_RENEW_DEADLINE: '20s',
    STRONGROOM_RETRY_PERIOD: '3s',
    STRONGROOM_WORKERS: '8',
    STRONGROOM_KEK_ROTATION: 'restricted=7d',
    STRONGROOM_GOVERNANCE_CONFIG: 'env-governance',
    STRONGROOM_RESYNC_PERIOD: '5m',
    STRONGROOM_WATCH_STALL_TIMEOUT: '45s',
    STRONGROOM_SHUTDOWN_TIMEOUT: '20s',
    STRONGROOM_AUDIT_LOG_DIR: '/srv/audit',
  };

  it('reads each variable into its field', () => {
    expect(parseConfig([], env)).toEqual({
      namespace: 'from-env',
      kubeconfig: '/etc/kubeconfig',
      identity: 'pod-xyz',
      healthAddress: { host: '10.0.0.1', port: 9000 },
      logLevel: 'warn',
      leaderElection: {
        enabled: false,
        leaseName: 'env-lease',
        leaseDurationMs: 30_000,
        renewDeadlineMs: 20_000,
        retryPeriodMs: 3_000,
      },
      workers: 8,
      kms: { provider: 'local' },
      rotation: 'restricted=7d',
      governanceConfig: 'env-governance',
      resyncPeriodMs: 300_000,
      watchStallTimeoutMs: 45_000,
      shutdownTimeoutMs: 20_000,
      broker: DEFAULT_BROKER,
      injection: defaultInjection('from-env'),
      auditLogDir: '/srv/audit',
      auditSigner: 'secret',
    } satisfies OperatorConfig);
  });

  it('lets every flag win over its variable', () => {
    const config = parseConfig(
      [
        '--namespace=flag-ns',
        '--kubeconfig=/flag/kubeconfig',
        '--identity=flag-id',
        '--health-address=127.0.0.1:1234',
        '--log-level=error',
        '--leader-elect',
        '--lease-name=flag-lease',
        '--lease-duration=60s',
        '--renew-deadline=50s',
        '--retry-period=10s',
        '--workers=2',
        '--kek-rotation=confidential=1d',
        '--governance-config=flag-governance',
        '--resync-period=1m',
        '--watch-stall-timeout=1m',
        '--shutdown-timeout=1m',
        '--audit-log-dir=/flag/audit',
      ],
      env,
    );
    expect(config).toEqual({
      namespace: 'flag-ns',
      kubeconfig: '/flag/kubeconfig',
      identity: 'flag-id',
      healthAddress: { host: '127.0.0.1', port: 1234 },
      logLevel: 'error',
      leaderElection: {
        enabled: true,
        leaseName: 'flag-lease',
        leaseDurationMs: 60_000,
        renewDeadlineMs: 50_000,
        retryPeriodMs: 10_000,
      },
      workers: 2,
      kms: { provider: 'local' },
      rotation: 'confidential=1d',
      governanceConfig: 'flag-governance',
      resyncPeriodMs: 60_000,
      watchStallTimeoutMs: 60_000,
      shutdownTimeoutMs: 60_000,
      broker: DEFAULT_BROKER,
      injection: defaultInjection('flag-ns'),
      auditLogDir: '/flag/audit',
      auditSigner: 'secret',
    } satisfies OperatorConfig);
  });

  it('--no-leader-elect wins over STRONGROOM_LEADER_ELECT=true', () => {
    expect(
      parseConfig(['--no-leader-elect'], { ...env, STRONGROOM_LEADER_ELECT: 'true' }).leaderElection.enabled,
    ).toBe(false);
  });

  it('treats empty variables as unset', () => {
    const config = parseConfig(NS, { KUBECONFIG: '', STRONGROOM_WORKERS: '', STRONGROOM_LEADER_ELECT: '' });
    expect(config.kubeconfig).toBeUndefined();
    expect(config.workers).toBe(4);
    expect(config.leaderElection.enabled).toBe(true);
  });

  it('ignores unrelated STRONGROOM_ variables (Kubernetes service links inject them)', () => {
    const config = parseConfig(NS, {
      STRONGROOM_SERVICE_HOST: '10.0.0.1',
      STRONGROOM_PORT: 'tcp://10.0.0.1:443',
    });
    expect(config.namespace).toBe('strongroom-system');
  });

  it('names the variable, not the flag, when the bad value came from the environment', () => {
    const err = fails(NS, { STRONGROOM_WORKERS: '65' });
    expect(err.message).toBe('STRONGROOM_WORKERS="65" is invalid: expected an integer from 1 to 64');
    expect(err.setting).toBe('STRONGROOM_WORKERS');
  });

  it('does not consult a variable whose flag was given a bad value', () => {
    const err = fails([...NS, '--workers', 'many'], { STRONGROOM_WORKERS: '8' });
    expect(err.message).toBe('--workers="many" is invalid: expected an integer from 1 to 64');
  });
});

describe('bad values', () => {
  it.each([
    [['--namespace', 'Strongroom'], '--namespace="Strongroom" is invalid'],
    [['--namespace', ''], '--namespace="" is invalid'],
    [['--namespace', '-ns'], '--namespace="-ns" is invalid'],
    [['--namespace', 'a'.repeat(64)], 'is invalid: expected a DNS-1123 label'],
    [[...NS, '--kubeconfig='], '--kubeconfig="" is invalid: expected a non-empty value'],
    [[...NS, '--identity', 'has space'], '--identity="has space" is invalid'],
    [[...NS, '--identity', ''], '--identity="" is invalid'],
    [[...NS, '--identity', 'x'.repeat(254)], 'is invalid: expected 1 to 253 printable ASCII'],
    [[...NS, '--health-address', '8080'], '--health-address="8080" is invalid: expected host:port'],
    [[...NS, '--health-address', 'host:65536'], '--health-address="host:65536" is invalid'],
    [[...NS, '--health-address', 'host:-1'], '--health-address="host:-1" is invalid'],
    [[...NS, '--health-address', '::1:80'], '--health-address="::1:80" is invalid'],
    [[...NS, '--health-address', 'host:'], '--health-address="host:" is invalid'],
    [
      [...NS, '--log-level', 'trace'],
      '--log-level="trace" is invalid: expected one of error, warn, info, debug',
    ],
    [[...NS, '--log-level', 'INFO'], '--log-level="INFO" is invalid'],
    [[...NS, '--leader-elect=yes'], '--leader-elect="yes" is invalid: expected true or false'],
    [[...NS, '--lease-name', 'Bad_Name'], '--lease-name="Bad_Name" is invalid: expected a DNS-1123 label'],
    [[...NS, '--workers', '0'], '--workers="0" is invalid: expected an integer from 1 to 64'],
    [[...NS, '--workers', '65'], '--workers="65" is invalid'],
    [[...NS, '--workers', '2.5'], '--workers="2.5" is invalid'],
    [[...NS, '--workers', '-1'], '--workers="-1" is invalid'],
    [[...NS, '--workers', '0x10'], '--workers="0x10" is invalid'],
    [[...NS, '--kek-rotation', ' '], '--kek-rotation=" " is invalid: expected a non-empty value'],
    [
      [...NS, '--governance-config', 'Governance'],
      '--governance-config="Governance" is invalid: expected a ConfigMap name',
    ],
    [[...NS, '--governance-config='], '--governance-config="" is invalid'],
    [[...NS, '--governance-config', 'a/b'], '--governance-config="a/b" is invalid'],
    [[...NS, '--governance-config', 'x'.repeat(254)], 'is invalid: expected a ConfigMap name'],
    [
      [...NS, '--audit-log-dir', 'relative/dir'],
      '--audit-log-dir="relative/dir" is invalid: expected an absolute path',
    ],
    [[...NS, '--audit-log-dir='], '--audit-log-dir="" is invalid'],
  ])('%j → %s', (argv, message) => {
    const err = fails(argv);
    expect(err.message).toContain(message);
    expect(err.helpRequested).toBe(false);
  });

  it.each(['15', '15S', '1d', '-5s', '0s', '0.0001s', '1h-5m', '', 's', '1.s', '597h', '10 s', 'PT15S'])(
    'rejects duration %j in every duration setting',
    (value) => {
      for (const flag of [
        '--lease-duration',
        '--renew-deadline',
        '--retry-period',
        '--resync-period',
        '--watch-stall-timeout',
        '--shutdown-timeout',
      ]) {
        const err = fails([...NS, `${flag}=${value}`]);
        expect(err.message).toBe(
          `${flag}=${JSON.stringify(value)} is invalid: expected a positive Go-style duration such as 500ms, 15s, 10m or 1h30m, at most 596h`,
        );
        expect(err.setting).toBe(flag);
      }
    },
  );

  it('requires renew deadline < lease duration', () => {
    expect(fails([...NS, '--lease-duration', '10s']).message).toBe(
      '--renew-deadline (10000ms) must be shorter than --lease-duration (10000ms)',
    );
    expect(fails([...NS, '--renew-deadline', '20s']).setting).toBe('--renew-deadline');
  });

  it('requires retry period < renew deadline', () => {
    const err = fails([...NS, '--renew-deadline', '2s']);
    expect(err.message).toBe('--retry-period (2000ms) must be shorter than --renew-deadline (2000ms)');
    expect(fails([...NS, '--retry-period', '11s']).setting).toBe('--retry-period');
  });

  it('checks the lease ordering even with leader election off (the values would be wrong if turned on)', () => {
    expect(fails([...NS, '--no-leader-elect', '--retry-period', '1m']).message).toContain('must be shorter');
  });
});

describe('commander errors become ConfigError', () => {
  it('rejects unknown flags and suggests the near one', () => {
    const err = fails(['--namespce', 'x']);
    expect(err.message).toContain("unknown option '--namespce'");
    expect(err.message).toContain('--namespace');
  });

  it('rejects positional arguments', () => {
    expect(fails([...NS, 'extra']).message).toContain('too many arguments');
  });

  it('rejects a flag without its value', () => {
    expect(fails(['--namespace']).message).toContain("option '--namespace <name>' argument missing");
  });

  it('turns --help into a ConfigError carrying the help text, mentioning every variable', () => {
    for (const argv of [['--help'], ['-h'], [...NS, '--help']]) {
      const err = fails(argv);
      expect(err.helpRequested).toBe(true);
      expect(err.message).toContain('Usage: strongroom-operator');
      for (const name of [
        'STRONGROOM_NAMESPACE',
        'KUBECONFIG',
        'STRONGROOM_PKCS11_PIN_FILE',
        'STRONGROOM_LEADER_ELECT',
      ]) {
        expect(err.message).toContain(name);
      }
    }
  });

  it('keeps the CommanderError as the cause', () => {
    expect(fails(['--nope']).cause).toMatchObject({ code: 'commander.unknownOption' });
  });
});

describe('KMS', () => {
  const RING = 'projects/p1/locations/europe-west4/keyRings/strongroom';

  it('local takes no options', () => {
    expect(parseConfig([...NS, '--kms', 'local'], {}).kms).toEqual({ provider: 'local' });
  });

  it('gcp with a key ring, with and without an endpoint, from flags or env', () => {
    expect(parseConfig([...NS, '--kms', 'gcp', '--gcp-key-ring', RING], {}).kms).toEqual({
      provider: 'gcp',
      keyRing: RING,
    });
    expect(
      parseConfig(NS, {
        STRONGROOM_KMS: 'gcp',
        STRONGROOM_GCP_KEY_RING: RING,
        STRONGROOM_GCP_ENDPOINT: 'kms.internal:8443',
      }).kms,
    ).toEqual({ provider: 'gcp', keyRing: RING, endpoint: 'kms.internal:8443' });
    expect(
      parseConfig([...NS, '--gcp-endpoint', 'flag:1'], {
        STRONGROOM_KMS: 'gcp',
        STRONGROOM_GCP_KEY_RING: RING,
        STRONGROOM_GCP_ENDPOINT: 'env:2',
      }).kms,
    ).toEqual({ provider: 'gcp', keyRing: RING, endpoint: 'flag:1' });
  });

  it('gcp without a key ring names the missing flag', () => {
    const err = fails([...NS, '--kms', 'gcp']);
    expect(err.message).toBe('--kms gcp needs --gcp-key-ring (or STRONGROOM_GCP_KEY_RING)');
    expect(err.setting).toBe('--gcp-key-ring');
  });

  it('gcp rejects a malformed key ring and an empty endpoint', () => {
    expect(fails([...NS, '--kms', 'gcp', '--gcp-key-ring', 'strongroom']).message).toBe(
      '--gcp-key-ring="strongroom" is invalid: expected projects/P/locations/L/keyRings/R',
    );
    expect(fails([...NS, '--kms', 'gcp', '--gcp-key-ring', `${RING}/cryptoKeys/k`]).message).toContain(
      'is invalid',
    );
    expect(fails([...NS, '--kms', 'gcp', '--gcp-key-ring', RING, '--gcp-endpoint=']).message).toBe(
      '--gcp-endpoint="" is invalid: expected a non-empty value',
    );
  });

  it('pkcs11 with module, token label, optional slot, and PIN file', () => {
    const base = [...NS, '--kms', 'pkcs11', '--pkcs11-module', '/usr/lib/softhsm/libsofthsm2.so'];
    expect(
      parseConfig([...base, '--pkcs11-token-label', 'strongroom', '--pkcs11-pin-file', '/run/pin'], {}).kms,
    ).toEqual({
      provider: 'pkcs11',
      module: '/usr/lib/softhsm/libsofthsm2.so',
      tokenLabel: 'strongroom',
      pinFile: '/run/pin',
    });
    expect(
      parseConfig(
        [...base, '--pkcs11-slot', '0', '--pkcs11-token-label=t', '--pkcs11-pin-file', '/run/pin'],
        {},
      ).kms,
    ).toEqual({
      provider: 'pkcs11',
      module: '/usr/lib/softhsm/libsofthsm2.so',
      slot: 0,
      tokenLabel: 't',
      pinFile: '/run/pin',
    });
    expect(
      parseConfig(NS, {
        STRONGROOM_KMS: 'pkcs11',
        STRONGROOM_PKCS11_MODULE: '/m.so',
        STRONGROOM_PKCS11_SLOT: '7',
        STRONGROOM_PKCS11_TOKEN_LABEL: 'tok',
        STRONGROOM_PKCS11_PIN_FILE: '/pin',
      }).kms,
    ).toEqual({ provider: 'pkcs11', module: '/m.so', slot: 7, tokenLabel: 'tok', pinFile: '/pin' });
  });

  it.each([
    [
      ['--pkcs11-token-label', 't', '--pkcs11-pin-file', '/p'],
      '--kms pkcs11 needs --pkcs11-module (or STRONGROOM_PKCS11_MODULE)',
    ],
    [
      ['--pkcs11-module', '/m.so', '--pkcs11-pin-file', '/p'],
      '--kms pkcs11 needs --pkcs11-token-label (or STRONGROOM_PKCS11_TOKEN_LABEL)',
    ],
    [
      ['--pkcs11-module', '/m.so', '--pkcs11-slot', '0', '--pkcs11-pin-file', '/p'],
      '--kms pkcs11 needs --pkcs11-token-label (or STRONGROOM_PKCS11_TOKEN_LABEL)',
    ],
    [
      ['--pkcs11-module', '/m.so', '--pkcs11-token-label', 't'],
      '--kms pkcs11 needs --pkcs11-pin-file (or STRONGROOM_PKCS11_PIN_FILE)',
    ],
    [
      [
        '--pkcs11-module',
        '/m.so',
        '--pkcs11-token-label=t',
        '--pkcs11-slot',
        'one',
        '--pkcs11-pin-file',
        '/p',
      ],
      '--pkcs11-slot="one" is invalid',
    ],
    [
      ['--pkcs11-module', '/m.so', '--pkcs11-token-label=t', '--pkcs11-slot=-1', '--pkcs11-pin-file', '/p'],
      '--pkcs11-slot="-1" is invalid',
    ],
    [
      ['--pkcs11-module', '/m.so', '--pkcs11-token-label=', '--pkcs11-pin-file', '/p'],
      '--pkcs11-token-label="" is invalid',
    ],
    [
      ['--pkcs11-module', '', '--pkcs11-token-label', 't', '--pkcs11-pin-file', '/p'],
      '--pkcs11-module="" is invalid',
    ],
  ])('pkcs11 %j → %s', (flags, message) => {
    expect(fails([...NS, '--kms', 'pkcs11', ...flags]).message).toContain(message);
  });

  it('--audit-signer: secret by default; kms with gcp or pkcs11; refused with local', () => {
    expect(parseConfig(NS, {}).auditSigner).toBe('secret');
    const gcp = [...NS, '--kms', 'gcp', '--gcp-key-ring', RING];
    expect(parseConfig([...gcp, '--audit-signer', 'kms'], {}).auditSigner).toBe('kms');
    expect(parseConfig(gcp, { STRONGROOM_AUDIT_SIGNER: 'kms' }).auditSigner).toBe('kms');
    const local = fails([...NS, '--audit-signer=kms']);
    expect(local.message).toMatch(/^--audit-signer=kms needs --kms gcp or pkcs11/);
    expect(local.setting).toBe('--audit-signer');
    expect(fails(NS, { STRONGROOM_AUDIT_SIGNER: 'kms' }).setting).toBe('STRONGROOM_AUDIT_SIGNER');
    expect(fails([...NS, '--audit-signer', 'hsm']).message).toBe(
      '--audit-signer="hsm" is invalid: expected secret or kms',
    );
  });

  it('rejects an unknown provider', () => {
    expect(fails([...NS, '--kms', 'aws']).message).toBe(
      '--kms="aws" is invalid: expected local, gcp or pkcs11',
    );
    expect(fails(NS, { STRONGROOM_KMS: 'vault' }).message).toBe(
      'STRONGROOM_KMS="vault" is invalid: expected local, gcp or pkcs11',
    );
  });

  it("rejects another provider's options rather than silently ignoring them", () => {
    expect(fails([...NS, '--gcp-key-ring', RING]).message).toBe(
      '--gcp-key-ring does not apply to --kms local; remove it or choose the right --kms',
    );
    expect(fails(NS, { STRONGROOM_PKCS11_PIN_FILE: '/pin' }).message).toContain(
      'STRONGROOM_PKCS11_PIN_FILE does not apply to --kms local',
    );
    expect(
      fails([...NS, '--kms', 'gcp', '--gcp-key-ring', RING, '--pkcs11-module', '/m.so']).message,
    ).toContain('--pkcs11-module does not apply to --kms gcp');
    expect(
      fails([
        ...NS,
        '--kms',
        'pkcs11',
        '--pkcs11-module',
        '/m',
        '--pkcs11-token-label',
        't',
        '--pkcs11-pin-file',
        '/p',
        '--gcp-endpoint',
        'e',
      ]).message,
    ).toContain('--gcp-endpoint does not apply to --kms pkcs11');
  });
});

describe('parseConfig: the key broker', () => {
  it('reads every broker flag', () => {
    const config = parseConfig(
      [
        ...NS,
        '--broker-address=127.0.0.1:7444',
        '--attest-address=[::1]:7443',
        '--trust-domain=prod.example.com',
        '--cluster-name=eu-1',
        '--dek-cache-ttl=0s',
        '--broker-max-connection-age=90s',
        '--broker-credential-refresh=5s',
        '--pod-certificate-validity=1m',
        '--no-audit-checkpoint-configmap',
      ],
      {},
    );
    expect(config.broker).toEqual({
      address: { host: '127.0.0.1', port: 7444 },
      attestAddress: { host: '::1', port: 7443 },
      trustDomain: 'prod.example.com',
      clusterName: 'eu-1',
      auditCheckpointConfigMap: false,
      dekCacheTtlMs: 0,
      maxConnectionAgeMs: 90_000,
      credentialRefreshMs: 5000,
      podCertificateValidityMs: 60_000,
    });
  });

  it('reads them from STRONGROOM_ variables too', () => {
    const config = parseConfig(NS, { STRONGROOM_TRUST_DOMAIN: 'td.local', STRONGROOM_DEK_CACHE_TTL: '30s' });
    expect(config.broker.trustDomain).toBe('td.local');
    expect(config.broker.dekCacheTtlMs).toBe(30_000);
  });

  it.each([
    ['--dek-cache-ttl=61s', 'expected a duration from 0s to 60s'],
    ['--dek-cache-ttl=forever', '--dek-cache-ttl="forever" is invalid'],
    ['--broker-max-connection-age=500ms', 'expected a duration from 1s to 1h'],
    ['--broker-max-connection-age=2h', 'expected a duration from 1s to 1h'],
    ['--broker-credential-refresh=0s', 'expected a duration from 1s to 1h'],
    ['--pod-certificate-validity=59s', 'expected a duration from 1m to 1h'],
    ['--pod-certificate-validity=2h', 'expected a duration from 1m to 1h'],
    ['--trust-domain=Bad/Domain', 'expected a SPIFFE trust domain'],
    ['--cluster-name=EU_1', 'expected lower-case letters'],
    ['--broker-address=9444', 'expected host:port'],
  ])('%s is refused', (flag, message) => {
    expect(fails([...NS, flag]).message).toContain(message);
  });
});

describe('injection settings', () => {
  it('reads every flag', () => {
    const config = parseConfig(
      [
        ...NS,
        '--webhook-address=127.0.0.1:0',
        '--sidecar-image=localhost/strongroom:test',
        '--sidecar-image-pull-policy=Never',
        '--sidecar-broker-address=10.88.0.1:9444',
        '--sidecar-attest-address=10.88.0.1:9443',
        '--sidecar-broker-server-name=broker.example.test',
      ],
      {},
    );
    expect(config.injection).toEqual({
      address: { host: '127.0.0.1', port: 0 },
      image: 'localhost/strongroom:test',
      imagePullPolicy: 'Never',
      brokerAddress: '10.88.0.1:9444',
      attestAddress: '10.88.0.1:9443',
      brokerServerName: 'broker.example.test',
    });
  });

  it('reads them from STRONGROOM_ variables too', () => {
    const config = parseConfig(NS, {
      STRONGROOM_SIDECAR_IMAGE: 'registry.example:5000/team/strongroom@sha256:' + 'a'.repeat(64),
    });
    expect(config.injection.image).toBe(`registry.example:5000/team/strongroom@sha256:${'a'.repeat(64)}`);
  });

  it.each([
    ['--sidecar-image=Not An Image', 'expected an image reference'],
    ['--sidecar-image-pull-policy=Sometimes', 'expected Always, IfNotPresent or Never'],
    ['--sidecar-broker-address=:9444', 'not a wildcard'],
    ['--sidecar-attest-address=broker', 'expected host:port'],
    ['--sidecar-broker-server-name=Broker_Name', 'expected a DNS name'],
    ['--webhook-address=9445', 'expected host:port'],
  ])('%s is refused', (flag, message) => {
    expect(fails([...NS, flag]).message).toContain(message);
  });
});

describe('the flag table', () => {
  it('--help lists every flag with its variable, default and range', () => {
    const help = fails(['--help']).message.replaceAll(/\s+/g, ' ');
    for (const f of OPERATOR_FLAGS.flags) {
      expect(help).toContain(`--${f.name} ${f.type.arg}`);
      expect(help).toContain(OPERATOR_FLAGS.env(f));
    }
    expect(help).toContain('--no-leader-elect');
    expect(help).toMatch(/--workers <n> reconcile workers per queue \(1-64; default 4\) \[env/);
    expect(help).toMatch(/--gcp-key-ring <name> Cloud KMS key ring \(required with --kms gcp\)/);
    expect(help).toContain('how long an unwrapped DEK may stay cached (0s-60s; default 5s)');
  });

  it('refuses a KMS option of another provider before looking at its value', () => {
    expect(fails([...NS, '--pkcs11-slot', 'one']).message).toBe(
      '--pkcs11-slot does not apply to --kms local; remove it or choose the right --kms',
    );
  });

  it.each(['1500us', '+5s', '.5s', '1.s', '1d'])(
    'takes only the plain spelling of durations (<number><ms|s|m|h>...): %j is refused',
    (value) => {
      expect(fails([...NS, `--resync-period=${value}`]).setting).toBe('--resync-period');
    },
  );

  it('rounds durations to whole milliseconds', () => {
    expect(parseConfig([...NS, '--resync-period=0.6ms'], {}).resyncPeriodMs).toBe(1);
    expect(parseConfig([...NS, '--resync-period=1.4ms'], {}).resyncPeriodMs).toBe(1);
  });

  it('takes "0" and "0s" where a range starts at zero', () => {
    expect(parseConfig([...NS, '--dek-cache-ttl=0'], {}).broker.dekCacheTtlMs).toBe(0);
    expect(parseConfig([...NS, '--dek-cache-ttl=0ms'], {}).broker.dekCacheTtlMs).toBe(0);
    expect(fails([...NS, '--dek-cache-ttl=forever']).message).toBe(
      '--dek-cache-ttl="forever" is invalid: expected a duration from 0s to 60s',
    );
  });

  it('refuses an IPv6 wildcard as a sidecar address', () => {
    expect(fails([...NS, '--sidecar-broker-address=[::]:9444']).message).toContain('not a wildcard');
  });

  it('derives the sidecar defaults from the namespace given in the environment', () => {
    expect(parseConfig([], { STRONGROOM_NAMESPACE: 'env-ns' }).injection.brokerServerName).toBe(
      'strongroom-broker.env-ns.svc',
    );
  });

  it('checks that a default refers only to earlier flags, and that names are unique', () => {
    const info = { command: 'x', description: 'X.', envPrefix: 'X_' };
    expect(
      () =>
        new FlagSet(info, [
          flag('address', hostPort, { default: '<host>:80', help: 'a' }),
          flag('host', text('<host>', 'host'), { default: 'localhost', help: 'h' }),
        ]),
    ).toThrow('--address refers to --host before it');
    expect(
      () =>
        new FlagSet(info, [
          flag('a', text('<a>', 'a'), { help: 'a' }),
          flag('a', text('<a>', 'a'), { help: 'a' }),
        ]),
    ).toThrow('--a is defined twice');
  });

  it('parses every default with its own type, so a bad default fails at the first parse', () => {
    const set = new FlagSet({ command: 'x', description: 'X.', envPrefix: 'X_' }, [
      flag('timeout', duration({ min: '1s', max: '1m' }), { default: '2m', help: 't' }),
    ]);
    expect(() => set.parse([], {})).toThrow('the default "2m" of --timeout is invalid');
    expect(() => duration({ min: '1d', max: '2d' })).toThrow('invalid duration "1d" in the flag table');
  });
});

describe('docs/operator.md', () => {
  const BEGIN = /<!-- BEGIN flags:[^\n]*-->\n\n/;
  const END = '\n<!-- END flags -->';

  it('holds the flag table exactly as renderConfigDocs() renders it (UPDATE_DOCS=1 rewrites it)', () => {
    const path = fileURLToPath(new URL('../docs/operator.md', import.meta.url));
    const markdown = readFileSync(path, 'utf8');
    const begin = BEGIN.exec(markdown);
    const end = markdown.indexOf(END, begin?.index);
    if (!begin || end < 0)
      throw new Error('docs/operator.md lost its "<!-- BEGIN flags" and "<!-- END flags" lines');
    const start = begin.index + begin[0].length;
    const rendered = renderConfigDocs();
    if (process.env['UPDATE_DOCS'] === '1') {
      writeFileSync(path, markdown.slice(0, start) + rendered + markdown.slice(end));
      return;
    }
    expect(markdown.slice(start, end)).toBe(rendered);
  });
});
