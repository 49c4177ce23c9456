import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { generate, loadCrds, outputFile, type Schema } from './generate.ts';
import {
  ACCESS_GRANT_PLURAL,
  API_VERSION,
  CLASSIFICATIONS,
  GROUP,
  MODEL_ARTIFACT_PLURAL,
  VERSION,
  accessGrantResource,
  modelArtifactResource,
} from './index.ts';

const crds = await loadCrds();

/** Calls visit for every named property below schema (not the root itself), with its dotted path. */
function walk(schema: Schema, path: string, visit: (path: string, schema: Schema) => void): void {
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    const childPath = path ? `${path}.${name}` : name;
    visit(childPath, child);
    walk(child, childPath, visit);
  }
  if (schema.items) {
    visit(`${path}[]`, schema.items);
    walk(schema.items, `${path}[]`, visit);
  }
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    visit(`${path}.*`, schema.additionalProperties);
    walk(schema.additionalProperties, `${path}.*`, visit);
  }
}

function schemas(): [string, Schema][] {
  return crds.map((crd) => {
    const version = crd.spec.versions.find((v) => v.storage);
    if (!version) throw new Error(`${crd.metadata.name} has no storage version`);
    return [crd.spec.names.kind, version.schema.openAPIV3Schema];
  });
}

describe('generated API types', () => {
  it('are up to date with crds/ (run `node core/api/generate.ts` if not)', async () => {
    expect(await generate(crds)).toBe(await readFile(outputFile, 'utf8'));
  });

  it('export constants that match the CRDs', () => {
    expect(crds.map((c) => c.metadata.name).sort()).toEqual([
      'accessgrants.strongroom.dev',
      'modelartifacts.strongroom.dev',
    ]);
    expect([GROUP, VERSION, API_VERSION]).toEqual(['strongroom.dev', 'v1alpha1', 'strongroom.dev/v1alpha1']);
    expect(MODEL_ARTIFACT_PLURAL).toBe('modelartifacts');
    expect(ACCESS_GRANT_PLURAL).toBe('accessgrants');
    expect(modelArtifactResource.shortNames).toEqual(['ma', 'mart']);
    expect(accessGrantResource.shortNames).toEqual(['ag', 'grant']);
    const ma = crds.find((c) => c.spec.names.kind === 'ModelArtifact');
    const classification =
      ma?.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec?.properties?.classification;
    expect(classification?.enum).toEqual([...CLASSIFICATIONS]);
  });
});

describe('CRD schemas', () => {
  it.each(schemas())('%s: every field has a description', (_kind, root) => {
    expect(root.description?.trim()).toBeTruthy();
    const missing: string[] = [];
    walk(root, '', (path, s) => {
      // The API server forbids any schema for metadata beyond `type: object`.
      if (path !== 'metadata' && !s.description?.trim()) missing.push(path);
    });
    expect(missing).toEqual([]);
  });

  it.each(schemas())(
    '%s: strings, lists and maps are bounded (so CEL cost estimation passes)',
    (_kind, root) => {
      const unbounded: string[] = [];
      walk(root, '', (path, s) => {
        if (path === 'apiVersion' || path === 'kind') return;
        if (s.type === 'string' && s.maxLength === undefined && s.enum === undefined) unbounded.push(path);
        if (s.type === 'array' && s.maxItems === undefined) unbounded.push(path);
        if (s.type === 'object' && s.additionalProperties && s.maxProperties === undefined)
          unbounded.push(path);
      });
      expect(unbounded).toEqual([]);
    },
  );

  it.each(schemas())('%s: every CEL rule has a message', (_kind, root) => {
    const bare: string[] = [];
    const check = (path: string, s: Schema): void => {
      for (const v of s['x-kubernetes-validations'] ?? []) {
        if (!v.message && !v.messageExpression) bare.push(`${path || '<root>'}: ${v.rule}`);
      }
    };
    check('', root);
    walk(root, '', check);
    expect(bare).toEqual([]);
  });
});
