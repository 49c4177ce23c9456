// The CRD test fixtures: valid examples (docs/examples), base objects and invalid manifests (test/crds/).
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const root = fileURLToPath(new URL('../..', import.meta.url));

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

export interface InvalidFixture {
  readonly file: string;
  readonly expect: string;
  readonly updateOf: string | undefined;
  readonly object: KubeObject;
}

export function loadInvalidFixtures(): InvalidFixture[] {
  const dir = join(root, 'test', 'crds', 'invalid');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((file) => {
      const text = readFileSync(join(dir, file), 'utf8');
      const header = (key: string): string | undefined =>
        new RegExp(`^# ${key}: (.+)$`, 'm').exec(text)?.[1]?.trimEnd();
      const expected = header('expect');
      if (!expected) throw new Error(`${file}: missing "# expect: <message>" header`);
      return { file, expect: expected, updateOf: header('update-of'), object: parse(text) as KubeObject };
    });
}

export function loadBase(file: string, name: string): KubeObject {
  const object = parse(readFileSync(join(root, 'test', 'crds', 'base', file), 'utf8')) as KubeObject;
  return { ...object, metadata: { ...object.metadata, name } };
}

export const exampleFiles = readdirSync(join(root, 'docs', 'examples'))
  .filter((f) => f.endsWith('.yaml'))
  .sort();

export function resourceOf(object: KubeObject): string {
  const group = object.apiVersion.includes('/') ? `.${object.apiVersion.split('/')[0] ?? ''}` : '';
  return `${object.kind.toLowerCase()}${group}`;
}
