/**
 * The monitoring the chart ships against the code: every metric that a query of the Grafana dashboard
 * (charts/strongroom/dashboards/strongroom.json), one of its variables or an alerting rule
 * (charts/strongroom/rules/strongroom.rules.yaml) names is a series the code exports — read from the real registries,
 * instantiated here, never from a list; the rules pass `promtool check rules` and their unit tests
 * (`promtool test rules`, rules/strongroom.rules.test.yaml) with the promtool the test cluster's build makes from the
 * Go module proxy; every alert has a severity, a summary, a description and a runbook section that exists.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import winston from 'winston';
import { parse, stringify } from 'yaml';
import { CHART, REPO } from '../../charts/generate.ts';
import { find, helmBinaries, lint, render, template, type Helm, type Rendered } from '../../charts/helm.ts';
import { LABEL_INJECT, PROBE_PORT, SIDECAR_CONTAINER } from '../../core/injection/contract.ts';
import { buildPatch } from '../../core/injection/patch.ts';
import { SETTINGS } from '../../core/injection/testdata/artifacts.ts';
import { applyPatch } from '../../core/injection/testdata/json-patch.ts';
import { appPod, READ_AND_PUBLISH, sidecarOf } from '../../core/injection/testdata/plans.ts';
import { GovernanceTable } from '../../operator/governance/table.ts';
import { OperatorMetrics } from '../../operator/observability/metrics.ts';
import { METRICS_PATH, SidecarMetrics } from '../../sidecar/metrics.ts';
import { ensureBinaries, promtoolBinary } from '../cluster/binaries.ts';

const DASHBOARD = join(CHART, 'dashboards', 'strongroom.json');
const RULES = join(CHART, 'rules', 'strongroom.rules.yaml');
const RULES_TESTS = join(CHART, 'rules', 'strongroom.rules.test.yaml');
const RUNBOOK = join(REPO, 'docs', 'install.md');

// ---------------------------------------------------------------------------------------------------------------
// What the code exports

/** The series names a metric family is exposed as: histograms as _bucket, _sum and _count. */
function seriesOf(name: string, type: string): string[] {
  if (type === 'histogram') return [`${name}_bucket`, `${name}_sum`, `${name}_count`];
  if (type === 'summary') return [name, `${name}_sum`, `${name}_count`];
  return [name];
}

/**
 * Every registry of the code, instantiated as the processes do: the operator's (OperatorMetrics, with the governance
 * table's info gauge registered on it as operator.ts does) and the sidecar's (SidecarMetrics).
 */
function registries(): Registry[] {
  const operator = new OperatorMetrics();
  new GovernanceTable({
    namespace: 'strongroom-system',
    name: 'strongroom-governance',
    logger: winston.createLogger({ silent: true }),
    registry: operator.registry,
  });
  return [operator.registry, new SidecarMetrics().registry];
}

/** Exported series name → the metric family (name and type) it belongs to. */
async function exportedSeries(): Promise<Map<string, { family: string; type: string }>> {
  const series = new Map<string, { family: string; type: string }>();
  for (const registry of registries())
    for (const metric of await registry.getMetricsAsJSON())
      for (const name of seriesOf(metric.name, String(metric.type)))
        series.set(name, { family: metric.name, type: String(metric.type) });
  return series;
}

/** Non-test TypeScript under the code's directories. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'testdata' ? [] : sources(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [path] : [];
  });
}

/** Every metric name defined in the code (`name: 'strongroom_…'` in a file that uses prom-client), with its file. */
function definedInCode(): { name: string; file: string }[] {
  return ['operator', 'sidecar', 'core', 'cli']
    .flatMap((d) => sources(join(REPO, d)))
    .filter((file) => readFileSync(file, 'utf8').includes("from 'prom-client'"))
    .flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/\bname:\s*'(strongroom_[a-z0-9_]+)'/g)].map((m) => ({
        name: m[1] as string,
        file: relative(REPO, file),
      })),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Metric names in PromQL

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'inf',
  'nan',
  'atan2',
]);

/**
 * The metric names a PromQL expression (or a Grafana query with `$variables`) selects: identifiers that are not
 * functions, keywords, label names (in `{…}`, `by (…)`, `on (…)`, …), strings, durations or numbers.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?[0-9a-zA-Z_$]+/g, ' ')
    .replace(/@\s*[^\s)]+/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w.$:])[a-zA-Z_:][\w:]*/g)) {
    const word = m[0];
    const after = stripped.slice(m.index + word.length).trimStart();
    if (after.startsWith('(') || KEYWORDS.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names].sort();
}

/** The metric names of a Grafana variable query: `label_values(metric{…}, label)`, `query_result(expr)`, …. */
function variableMetricNames(query: string): string[] {
  const labelValues = /^\s*label_values\(\s*(.+),\s*[\w]+\s*\)\s*$/.exec(query);
  if (labelValues) return metricNames(labelValues[1] as string);
  if (/^\s*label_values\(\s*[\w]+\s*\)\s*$/.test(query)) return [];
  const wrapped = /^\s*(?:query_result|metrics)\((.*)\)\s*$/.exec(query);
  return metricNames(wrapped ? (wrapped[1] as string) : query);
}

// ---------------------------------------------------------------------------------------------------------------
// The dashboard and the rules

interface Target {
  refId: string;
  expr: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  datasource?: { type: string; uid: string };
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queries = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
const variables = dashboard.templating.list.filter((v) => v.type === 'query');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const rulesFile = parse(readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
const rules = rulesFile.groups.flatMap((g) => g.rules);
const alerts = rules.filter((r): r is Rule & { alert: string } => r.alert !== undefined);

describe('metricNames', () => {
  it.each([
    ['strongroom_leader', ['strongroom_leader']],
    [
      'histogram_quantile(0.99, sum by (le, method) (rate(strongroom_broker_call_duration_seconds_bucket{namespace=~"$namespace"}[$__rate_interval])))',
      ['strongroom_broker_call_duration_seconds_bucket'],
    ],
    [
      'sum(rate(x_total{code=~"INTERNAL|strongroom_fake"}[5m])) by (code) / on (instance) group_left (pod) y_info',
      ['x_total', 'y_info'],
    ],
    ['time() - max by (instance) (a_seconds) > 3600 and 2 * 86400 < 1e3', ['a_seconds']],
    ['(increase(c_total[15m]) > 0) or (c_total unless c_total offset 15m)', ['c_total']],
    ['absent(up_like)', ['up_like']],
    ['sum without (pod) (rate(d_total[1m] @ 1700000000))', ['d_total']],
  ])('finds the metrics of %s', (expr, expected) => {
    expect(metricNames(expr)).toEqual(expected);
  });

  it('reads label_values variables', () => {
    expect(variableMetricNames('label_values(strongroom_leader, namespace)')).toEqual(['strongroom_leader']);
    expect(variableMetricNames('label_values(m_total{a="b"}, a)')).toEqual(['m_total']);
    expect(variableMetricNames('label_values(namespace)')).toEqual([]);
  });
});

describe('every metric the monitoring names is exported by the code', async () => {
  const exported = await exportedSeries();

  it('builds the exported set from every registry the code defines metrics on', () => {
    const missing = definedInCode().filter((d) => !exported.has(d.name) && !exported.has(`${d.name}_bucket`));
    expect(missing, 'metrics defined in the code but on no registry this test instantiates').toEqual([]);
    expect(exported.size).toBeGreaterThan(20);
  });

  it('dashboard queries', () => {
    expect(queries.length).toBeGreaterThan(20);
    const unknown: string[] = [];
    for (const q of queries) {
      const names = metricNames(q.expr);
      expect(names, `${q.panel}: ${q.expr}`).not.toEqual([]);
      for (const n of names) if (!exported.has(n)) unknown.push(`${n} (panel "${q.panel}")`);
    }
    expect(unknown).toEqual([]);
  });

  it('dashboard variables', () => {
    const unknown = variables.flatMap((v) =>
      variableMetricNames(typeof v.query === 'string' ? v.query : v.query.query)
        .filter((n) => !exported.has(n))
        .map((n) => `${n} (variable ${v.name})`),
    );
    expect(unknown).toEqual([]);
  });

  it('alerting rules', () => {
    const unknown: string[] = [];
    for (const r of rules) {
      const names = metricNames(r.expr);
      expect(names, `${r.alert ?? r.record ?? ''}: ${r.expr}`).not.toEqual([]);
      for (const n of names) if (!exported.has(n)) unknown.push(`${n} (${r.alert ?? r.record ?? ''})`);
    }
    expect(unknown).toEqual([]);
  });
});

describe('the dashboard', () => {
  it('is a Grafana dashboard with a data source variable and a namespace variable', () => {
    expect(dashboard).toMatchObject({ uid: 'strongroom', title: 'Strongroom' });
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    const byName = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(byName.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(byName.get('namespace')?.type).toBe('query');
  });

  it('queries through the data source variable only, with unique panel ids', () => {
    const ds = { type: 'prometheus', uid: '${datasource}' };
    for (const p of panels.filter((p) => p.type !== 'row')) {
      expect(p.datasource, p.title).toEqual(ds);
      for (const t of p.targets ?? []) expect(t.datasource, `${p.title} ${t.refId}`).toEqual(ds);
      expect(p.description, `${p.title} has a description`).toBeTruthy();
    }
    for (const v of variables) expect(v.datasource, v.name).toEqual(ds);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('filters every query by the namespace variable', () => {
    for (const q of queries) expect(q.expr, q.panel).toMatch(/namespace=~"\$(namespace|workload_namespace)"/);
  });

  it('has the rows the issue asks for and shows every metric of issue 18', () => {
    const rows = panels.filter((p) => p.type === 'row').map((p) => p.title);
    expect(rows).toEqual([
      'Key releases and denials',
      'Audit coverage',
      'Time to revoke',
      'Keys: rotation compliance and KEK age',
      'Governance and detection',
      'Audit checkpoints',
      'Sidecars',
      'Key broker',
      'Operator',
      'Certificates',
    ]);
    const shown = new Set(queries.flatMap((q) => metricNames(q.expr)));
    for (const m of [
      'strongroom_key_releases_total',
      'strongroom_audit_coverage_ratio',
      'strongroom_revocation_to_wipe_seconds_bucket',
      'strongroom_rotation_compliance_ratio',
      'strongroom_kek_age_seconds',
      'strongroom_approvals_pending',
      'strongroom_quarantines_active',
      'strongroom_anomaly_alerts_total',
      'strongroom_audit_checkpoint_size',
      'strongroom_audit_checkpoint_published_timestamp_seconds',
      'strongroom_audit_rollback_detected',
      'strongroom_sidecar_startup_phase_seconds_bucket',
      'strongroom_sidecar_decrypted_bytes_total',
      'strongroom_sidecar_wipes_total',
      'strongroom_broker_call_duration_seconds_bucket',
      'strongroom_reconcile_total',
      'strongroom_queue_depth',
      'strongroom_certificate_not_after_timestamp_seconds',
    ])
      expect(shown.has(m), m).toBe(true);
  });

  it('time to revoke shows p50, p95 and p99 of the histogram', () => {
    const exprs = queries.filter((q) => q.expr.includes('strongroom_revocation_to_wipe_seconds_bucket'));
    for (const q of ['0.5', '0.95', '0.99'])
      expect(exprs.some((e) => e.expr.startsWith(`histogram_quantile(${q}, sum by (le)`))).toBe(true);
  });

  it('lays the panels out without overlap', () => {
    const cells = new Set<string>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++)
        for (let j = y; j < y + h; j++) {
          expect(
            cells.has(`${String(i)},${String(j)}`),
            `${p.title} overlaps at ${String(i)},${String(j)}`,
          ).toBe(false);
          cells.add(`${String(i)},${String(j)}`);
        }
    }
  });
});

/** GitHub's anchor of a Markdown heading. */
function anchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\w\- ]/g, '')
    .replaceAll(' ', '-');
}

describe('the alerting rules', () => {
  it('include the alerts the issue asks for', () => {
    expect(alerts.map((a) => a.alert)).toEqual(
      expect.arrayContaining([
        'StrongroomAuditCoverageBelowOne',
        'StrongroomTimeToRevokeSlow',
        'StrongroomKekRotationOverdue',
        'StrongroomAnomalyDetected',
        'StrongroomIdentityQuarantined',
        'StrongroomAuditRollbackDetected',
        'StrongroomAuditCheckpointStale',
        'StrongroomBrokerErrors',
        'StrongroomCertificateExpiring',
        'StrongroomOperatorDown',
      ]),
    );
    expect(new Set(alerts.map((a) => a.alert)).size).toBe(alerts.length);
  });

  it('alert on audit coverage below 1 as critical and on p99 time to revoke above the 1 s target', () => {
    const coverage = alerts.find((a) => a.alert === 'StrongroomAuditCoverageBelowOne');
    expect(coverage?.expr).toMatch(/strongroom_audit_coverage_ratio\) < 1$/);
    expect(coverage?.labels?.severity).toBe('critical');
    const revoke = alerts.find((a) => a.alert === 'StrongroomTimeToRevokeSlow');
    expect(revoke?.expr).toMatch(/^histogram_quantile\(0\.99,/);
    expect(revoke?.expr).toMatch(/\) > 1$/);
  });

  it('give every alert a severity, a summary, a description and a runbook section that exists', () => {
    const headings = new Set(
      readFileSync(RUNBOOK, 'utf8')
        .split('\n')
        .filter((l) => /^#{2,6} /.test(l))
        .map((l) => anchor(l.replace(/^#+ /, ''))),
    );
    for (const a of alerts) {
      expect(['critical', 'warning', 'info'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
      expect(a.annotations?.description, a.alert).toBeTruthy();
      const runbook = a.annotations?.runbook ?? '';
      expect(runbook, a.alert).toMatch(/^docs\/install\.md#[a-z0-9-]+$/);
      expect(headings.has(runbook.split('#')[1] as string), `${a.alert}: ${runbook}`).toBe(true);
    }
  });
});

describe('promtool', async () => {
  const bin = promtoolBinary(await ensureBinaries(() => undefined, 'test'));
  const promtool = (...args: string[]) =>
    spawnSync(bin, args, {
      encoding: 'utf8',
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '' },
    });

  it('is the version build.sh pins', () => {
    const result = promtool('--version');
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout + result.stderr).toMatch(/^promtool, version 3\.\d+\.\d+/);
  });

  it('checks the rules file without an error or a lint finding', () => {
    const result = promtool('check', 'rules', '--lint=all', '--lint-fatal', RULES);
    expect(result.stdout + result.stderr).toMatch(new RegExp(`SUCCESS: ${String(rules.length)} rules found`));
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });

  it('passes the rules unit tests', () => {
    const result = promtool('test', 'rules', RULES_TESTS);
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/SUCCESS/);
  });

  it('finds nothing against the Prometheus naming conventions in what the registries expose', async () => {
    let exposition = '';
    for (const registry of registries()) exposition += await registry.metrics();
    const result = spawnSync(bin, ['check', 'metrics'], { encoding: 'utf8', input: exposition });
    // prom-client's own process metrics (prefixed strongroom_operator_nodejs_) name three gauges *_total.
    const findings = (result.stdout + result.stderr)
      .split('\n')
      .filter((l) => l.trim() !== '')
      .filter(
        (l) =>
          !/^strongroom_operator_nodejs_\w+_total non-counter metrics should not have "_total" suffix$/.test(
            l,
          ),
      );
    expect(findings).toEqual([]);
  });

  it('fails a broken rules file (the check is real)', () => {
    const result = spawnSync(bin, ['check', 'rules'], {
      encoding: 'utf8',
      input: 'groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: sum by (x (y)\n',
    });
    expect(result.status).not.toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The chart's templates

const ALL_ON = {
  monitoring: {
    dashboard: { enabled: true },
    prometheusRule: { enabled: true, labels: { release: 'kube-prometheus-stack' } },
    serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus-stack' }, interval: '15s' },
    podMonitor: { enabled: true, scrapeTimeout: '5s' },
  },
};
const MONITORING_KINDS = ['PrometheusRule', 'ServiceMonitor', 'PodMonitor'];

const { helms, missing } = await helmBinaries();

it('has Helm 3 and Helm 4 to render the monitoring with', () => {
  expect(missing).toBeUndefined();
  expect(helms.map((h) => h.name)).toEqual(['helm', 'helm4']);
});

describe.each(helms.map((h) => [h.name, h] as const))('%s', (_, helm: Helm) => {
  it('renders no monitoring object by default', () => {
    const objects = render(helm);
    expect(objects.filter((o) => MONITORING_KINDS.includes(o.kind))).toEqual([]);
    expect(objects.filter((o) => o.metadata.name === 'strongroom-dashboard')).toEqual([]);
  });

  it('lints --strict with every monitoring object on', () => {
    const result = lint(helm, ALL_ON);
    expect(result.stderr + result.stdout).not.toMatch(/\[(ERROR|WARNING)\]/);
    expect(result.status, result.stderr + result.stdout).toBe(0);
  });

  describe('every monitoring object on', () => {
    const objects = render(helm, { namespace: 'sr-mon', values: ALL_ON });

    it('renders the dashboard JSON unchanged in a ConfigMap labelled for the Grafana sidecar', () => {
      const cm = find(objects, 'ConfigMap', 'strongroom-dashboard') as Rendered & {
        data: Record<string, string>;
      };
      expect(cm.metadata.namespace).toBe('sr-mon');
      expect(cm.metadata.labels).toMatchObject({
        grafana_dashboard: '1',
        'app.kubernetes.io/part-of': 'strongroom',
      });
      expect(Object.keys(cm.data)).toEqual(['strongroom.json']);
      expect(cm.data['strongroom.json']).toBe(readFileSync(DASHBOARD, 'utf8'));
    });

    it('renders a PrometheusRule whose spec is exactly the rules file, which promtool accepts', async () => {
      const rule = find(objects, 'PrometheusRule', 'strongroom');
      expect(rule.apiVersion).toBe('monitoring.coreos.com/v1');
      expect(rule.metadata.namespace).toBe('sr-mon');
      expect(rule.metadata.labels).toMatchObject({ release: 'kube-prometheus-stack' });
      expect(rule.spec).toEqual(rulesFile);
      const promtool = promtoolBinary(await ensureBinaries(() => undefined, 'test'));
      const result = spawnSync(promtool, ['check', 'rules'], {
        encoding: 'utf8',
        input: stringify(rule.spec),
      });
      expect(result.status, result.stdout + result.stderr).toBe(0);
    });

    it('renders a ServiceMonitor that scrapes /metrics through strongroom-metrics only', () => {
      const sm = find(objects, 'ServiceMonitor', 'strongroom') as Rendered & {
        spec: {
          namespaceSelector: { matchNames: string[] };
          selector: { matchLabels: Record<string, string> };
          endpoints: { port: string; path: string; interval: string; relabelings: object[] }[];
        };
      };
      expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
      expect(sm.metadata).toMatchObject({
        namespace: 'sr-mon',
        labels: { release: 'kube-prometheus-stack' },
      });
      expect(sm.spec.namespaceSelector.matchNames).toEqual(['sr-mon']);
      // The selector matches the metrics Service's labels; the relabeling keeps that Service alone, and its port.
      const metrics = find(objects, 'Service', 'strongroom-metrics') as Rendered & {
        spec: { ports: { name: string }[] };
      };
      expect(metrics.metadata.labels).toMatchObject(sm.spec.selector.matchLabels);
      expect(metrics.spec.ports.map((p) => p.name)).toContain(sm.spec.endpoints[0]?.port);
      expect(sm.spec.endpoints).toEqual([
        {
          port: 'metrics',
          path: '/metrics',
          scheme: 'http',
          interval: '15s',
          scrapeTimeout: '10s',
          relabelings: [
            { sourceLabels: ['__meta_kubernetes_service_name'], regex: 'strongroom-metrics', action: 'keep' },
          ],
        },
      ]);
    });

    it('renders a PodMonitor that scrapes the sidecars where the injection puts their metrics', () => {
      const pm = find(objects, 'PodMonitor', 'strongroom-sidecars') as Rendered & {
        spec: {
          namespaceSelector: { any: boolean };
          selector: { matchLabels: Record<string, string> };
          podMetricsEndpoints: { port: string; path: string; scrapeTimeout: string; relabelings: object[] }[];
        };
      };
      expect(pm.metadata.namespace).toBe('sr-mon');
      expect(pm.spec.namespaceSelector).toEqual({ any: true });
      expect(pm.spec.selector.matchLabels).toEqual({ [LABEL_INJECT]: 'true' });
      // The port the injection gives the sidecar container, and the path its metrics are served at.
      const pod = appPod(false);
      const sidecar = sidecarOf(applyPatch(pod, buildPatch(pod, READ_AND_PUBLISH, SETTINGS)));
      const port = sidecar.ports?.find((p) => p.containerPort === PROBE_PORT);
      expect(port?.name).toBeDefined();
      expect(pm.spec.podMetricsEndpoints).toEqual([
        {
          port: port?.name,
          path: METRICS_PATH,
          scheme: 'http',
          interval: '30s',
          scrapeTimeout: '5s',
          relabelings: [
            {
              sourceLabels: ['__meta_kubernetes_pod_container_name'],
              regex: SIDECAR_CONTAINER,
              action: 'keep',
            },
          ],
        },
      ]);
      expect(sidecar.name).toBe(SIDECAR_CONTAINER);
    });
  });

  it('puts the dashboard and the rules in the namespaces asked, with extra labels and annotations', () => {
    const objects = render(helm, {
      values: {
        monitoring: {
          dashboard: {
            enabled: true,
            namespace: 'grafana',
            labels: { dashboards: 'security' },
            annotations: { grafana_folder: 'Security' },
          },
          prometheusRule: { enabled: true, namespace: 'monitoring' },
        },
      },
    });
    const cm = find(objects, 'ConfigMap', 'strongroom-dashboard');
    expect(cm.metadata).toMatchObject({
      namespace: 'grafana',
      labels: { dashboards: 'security' },
      annotations: { grafana_folder: 'Security' },
    });
    // Helm merges maps: the default label stays unless set to null.
    expect(cm.metadata.labels).toHaveProperty('grafana_dashboard', '1');
    expect(find(objects, 'PrometheusRule', 'strongroom').metadata.namespace).toBe('monitoring');
    expect(objects.some((o) => o.kind === 'ServiceMonitor')).toBe(false);
  });

  it.each([
    [
      'a label that is not a string',
      { monitoring: { dashboard: { labels: { grafana_dashboard: 1 } } } },
      /labels/,
    ],
    ['an invalid namespace', { monitoring: { prometheusRule: { namespace: 'Monitoring' } } }, /namespace/],
    ['an interval "30"', { monitoring: { serviceMonitor: { interval: '30' } } }, /interval/],
    ['an unknown key', { monitoring: { probe: {} } }, /probe/],
  ])('refuses %s with a message naming it', (_, values, message) => {
    const result = template(helm, { values });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(message);
  });
});
