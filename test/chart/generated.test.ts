/**
 * The chart's parts that have one source elsewhere are current (run `node charts/generate.ts` when one is not), and
 * every value has a description in the schema.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DEFAULT_SIDECAR_IMAGE } from '../../operator/config.ts';
import {
  CHART,
  REPO,
  admissionTemplate,
  crdFiles,
  rbacTemplate,
  readmeWithReference,
  schemaLeaves,
  valuesReference,
} from '../../charts/generate.ts';

const read = (path: string): string => readFileSync(join(CHART, path), 'utf8');
const HINT = 'not current: run `node charts/generate.ts`';

interface Schema {
  type?: string | string[];
  description?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
}

const schema = JSON.parse(read('values.schema.json')) as Schema;
const values = parse(read('values.yaml')) as Record<string, unknown>;

describe('the generated parts of the chart', () => {
  it('crds/ holds byte-for-byte copies of the repository’s crds/, and nothing else', () => {
    const chart = readdirSync(join(CHART, 'crds')).sort();
    const repo = crdFiles();
    expect(chart, HINT).toEqual(repo.map((c) => c.name));
    for (const { name, content } of repo)
      expect(readFileSync(join(CHART, 'crds', name)).equals(content), `crds/${name} ${HINT}`).toBe(true);
    expect(repo.length).toBeGreaterThanOrEqual(2);
    expect(readdirSync(join(REPO, 'crds')).filter((n) => n.endsWith('.yaml'))).toEqual(
      repo.map((c) => c.name),
    );
  });

  it('templates/admission.yaml is the builders’ output', () => {
    expect(read('templates/admission.yaml'), HINT).toBe(admissionTemplate());
  });

  it('templates/rbac.yaml is operator/kube/permissions.ts', () => {
    expect(read('templates/rbac.yaml'), HINT).toBe(rbacTemplate());
  });

  it('README.md holds the current values reference', () => {
    const readme = read('README.md');
    expect(readme, HINT).toBe(readmeWithReference(readme, valuesReference(schema, values)));
  });
});

describe('Chart.yaml', () => {
  it('is version 0.1.0 of the chart, and its appVersion is this release (package.json, the default image)', () => {
    const chart = parse(read('Chart.yaml')) as { apiVersion: string; version: string; appVersion: string };
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
    expect(chart.apiVersion).toBe('v2');
    expect(chart.version).toBe('0.1.0');
    expect(chart.appVersion).toBe(pkg.version);
    expect(DEFAULT_SIDECAR_IMAGE).toBe(
      `${(values.image as { repository: string }).repository}:${chart.appVersion}`,
    );
  });
});

describe('values.yaml and values.schema.json', () => {
  /** Walks values.yaml; every key must be in the schema with a description. */
  function walk(value: unknown, node: Schema | undefined, path: string, problems: string[]): void {
    if (node === undefined) {
      problems.push(`${path}: not in the schema`);
      return;
    }
    if (!node.description || node.description.length < 10) problems.push(`${path}: no description`);
    if (node.properties && value !== null && typeof value === 'object' && !Array.isArray(value)) {
      for (const [key, sub] of Object.entries(value))
        walk(sub, node.properties[key], `${path}.${key}`, problems);
    }
  }

  it('describes every value of values.yaml', () => {
    const problems: string[] = [];
    for (const [key, value] of Object.entries(values)) walk(value, schema.properties?.[key], key, problems);
    expect(problems).toEqual([]);
  });

  it('has a default in values.yaml for every value it declares', () => {
    const get = (path: string): unknown =>
      path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], values);
    const has = (path: string): boolean => {
      const keys = path.split('.');
      const parent = keys.length === 1 ? values : get(keys.slice(0, -1).join('.'));
      return typeof parent === 'object' && parent !== null && Object.hasOwn(parent, keys.at(-1) ?? '');
    };
    const missing = schemaLeaves(schema)
      .map((l) => l.path)
      .filter((p) => !has(p));
    expect(missing).toEqual([]);
  });

  it('refuses unknown keys in every object it declares properties of, (free-form Kubernetes objects declare none)', () => {
    const open: string[] = [];
    const visit = (node: Schema, path: string): void => {
      if (node.properties) {
        if (node.additionalProperties !== false) open.push(path);
        for (const [k, sub] of Object.entries(node.properties)) visit(sub, path ? `${path}.${k}` : k);
      }
    };
    visit(schema, '');
    expect(open).toEqual([]);
  });
});
