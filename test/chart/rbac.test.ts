/**
 * Least privilege: the chart's RBAC against the Kubernetes API calls the operator really makes. A static scan of
 * operator/ and core/ (not the CLI, which runs as its user) finds every call of a @kubernetes/client-node API method
 * and every informer the composition root asks for; each must be an entry of operator/kube/permissions.ts, each
 * entry must be needed by a call found, its verbs must be exactly those its calls need, and the rendered ClusterRole
 * and Role must grant exactly the table's rules: nothing more, nothing less, never `*`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import * as api from '../../core/api/index.ts';
import { REPO, rule } from '../../charts/generate.ts';
import { find, helmBinaries, render, type Helm, type Rendered } from '../../charts/helm.ts';
import { OPERATOR_FLAGS } from '../../operator/config.ts';
import { LEASE_NAME, PERMISSIONS, type Permission } from '../../operator/kube/permissions.ts';
import { GOVERNANCE_CONFIGMAP } from '../../core/policy/classification.ts';

/** The API group of each client class the operator may use; a class not here fails the scan until added. */
const CLASS_GROUPS: Readonly<Record<string, string>> = {
  CoreV1Api: '',
  AdmissionregistrationV1Api: 'admissionregistration.k8s.io',
  CoordinationV1Api: 'coordination.k8s.io',
  AuthenticationV1Api: 'authentication.k8s.io',
  AuthorizationV1Api: 'authorization.k8s.io',
  EventsV1Api: 'events.k8s.io',
  AppsV1Api: 'apps',
  RbacAuthorizationV1Api: 'rbac.authorization.k8s.io',
  CertificatesV1Api: 'certificates.k8s.io',
  ApiextensionsV1Api: 'apiextensions.k8s.io',
  CustomObjectsApi: '<custom>',
};

const VERB_PREFIXES: readonly (readonly [string, string])[] = [
  ['deleteCollection', 'deletecollection'],
  ['create', 'create'],
  ['read', 'get'],
  ['get', 'get'],
  ['list', 'list'],
  ['replace', 'update'],
  ['patch', 'patch'],
  ['delete', 'delete'],
  ['watch', 'watch'],
];

/** Every method of every API class of the client, with the classes that have it. */
function apiMethods(): Map<string, string[]> {
  const methods = new Map<string, string[]>();
  for (const [name, value] of Object.entries(k8s)) {
    // KubernetesObjectApi's generic create/read/list/... would match any such call; its use is refused below.
    if (!/Api$/.test(name) || name === 'KubernetesObjectApi' || typeof value !== 'function') continue;
    const prototype = (value as { prototype?: object }).prototype;
    if (prototype === undefined) continue;
    for (const method of Object.getOwnPropertyNames(prototype)) {
      if (method === 'constructor' || method.endsWith('WithHttpInfo')) continue;
      if (!VERB_PREFIXES.some(([prefix]) => method.startsWith(prefix))) continue;
      methods.set(method, [...(methods.get(method) ?? []), name]);
    }
  }
  return methods;
}

function plural(kind: string): string {
  const lower = kind.toLowerCase();
  if (lower.endsWith('y')) return `${lower.slice(0, -1)}ies`;
  if (lower.endsWith('s')) return `${lower}es`;
  return `${lower}s`;
}

interface Access {
  readonly group: string;
  /** undefined for a custom object: the entry names it. */
  readonly resource: string | undefined;
  /** For a custom object: the subresource the method addresses, '' for the object itself. */
  readonly subresource: string;
  readonly verb: string;
}

/** What a client method does, in RBAC terms. */
function access(method: string, className: string): Access {
  const [prefix, verb] = VERB_PREFIXES.find(([p]) => method.startsWith(p)) ?? ['', ''];
  let kind = method
    .slice(prefix.length)
    .replace(/^(Namespaced|Cluster)/, '')
    .replace(/ForAllNamespaces$/, '');
  let subresource = '';
  for (const sub of ['Status', 'Scale']) {
    if (kind.endsWith(sub) && kind !== sub) {
      kind = kind.slice(0, -sub.length);
      subresource = sub.toLowerCase();
    }
  }
  const group = CLASS_GROUPS[className];
  if (group === undefined) throw new Error(`${className}: add its API group to CLASS_GROUPS`);
  if (group === '<custom>') return { group, resource: undefined, subresource, verb };
  return { group, resource: plural(kind) + (subresource ? `/${subresource}` : ''), subresource, verb };
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => relative(REPO, join(e.parentPath, e.name)))
    .filter((p) => !p.split('/').includes('testdata') && !p.startsWith('cli/'))
    .sort();
}

interface Call {
  readonly module: string;
  readonly call: string;
  readonly access: Access;
}

const COMPOSITION_ROOT = 'operator/operator.ts';

/** The informers operator.ts asks the factory for: `informers.for<T>(v1|strongroom|managed(<plural>, ...))`. */
function informerResources(text: string): { group: string; resource: string }[] {
  const constants = api as unknown as Record<string, unknown>;
  const found: { group: string; resource: string }[] = [];
  const all = [...text.matchAll(/informers\.for</g)].length;
  for (const m of text.matchAll(
    /informers\.for<[^(]*>\(\s*(v1|strongroom|managed)\(\s*('([a-z]+)'|([A-Z_]+))/g,
  )) {
    const resource = m[3] ?? (m[4] ? constants[m[4]] : undefined);
    if (typeof resource !== 'string') throw new Error(`cannot resolve the informer resource in "${m[0]}"`);
    const group = { v1: '', strongroom: api.GROUP, managed: 'admissionregistration.k8s.io' }[m[1] as string];
    found.push({ group: group ?? '?', resource });
  }
  if (found.length !== all)
    throw new Error(
      `${COMPOSITION_ROOT} asks for ${String(all)} informers but the scan understood ${String(found.length)}: ` +
        'teach test/chart/rbac.test.ts the new form',
    );
  return found;
}

function scan(): { calls: Call[]; informers: { group: string; resource: string }[]; problems: string[] } {
  const methods = apiMethods();
  const calls: Call[] = [];
  const problems: string[] = [];
  let informers: { group: string; resource: string }[] = [];
  for (const module of [...sources(join(REPO, 'operator')), ...sources(join(REPO, 'core'))]) {
    const text = readFileSync(join(REPO, module), 'utf8');
    // The informer is the one place that talks to the API server without a typed client (list + watch).
    if (
      module !== 'operator/kube/informer.ts' &&
      /new Watch\(|RequestContext\(|KubernetesObjectApi/.test(text)
    )
      problems.push(
        `${module} reaches the API server around the typed clients: the scan cannot see what it does`,
      );
    if (module === COMPOSITION_ROOT) informers = informerResources(text);
    else if (/informers\.for</.test(text))
      problems.push(`${module} asks for an informer outside ${COMPOSITION_ROOT}`);
    const seen = new Set<string>();
    for (const m of text.matchAll(/\.\s*([a-zA-Z]+)\s*\(/g)) {
      const method = m[1] as string;
      const classes = methods.get(method);
      if (classes === undefined || seen.has(method)) continue;
      seen.add(method);
      const named = classes.filter((c) => new RegExp(`\\b${c}\\b`).test(text));
      const candidates = classes.length === 1 ? classes : named;
      if (candidates.length !== 1) {
        problems.push(
          `${module}: ${method} belongs to ${classes.join(' or ')}; the module must name its client class`,
        );
        continue;
      }
      calls.push({ module, call: method, access: access(method, candidates[0] as string) });
    }
  }
  return { calls, informers, problems };
}

const key = (p: { group: string; resource: string }): string => `${p.group}/${p.resource}`;

describe('the permission table against the code', () => {
  const { calls, informers, problems } = scan();

  it('finds the calls (the scan works)', () => {
    expect(problems).toEqual([]);
    expect(calls.length).toBeGreaterThan(20);
    expect(informers.length).toBeGreaterThan(5);
  });

  it('lists every API call the code makes, and no call the code does not make', () => {
    const used = calls.map((c) => `${c.module} ${c.call}`).sort();
    const listed = [
      ...new Set(
        PERMISSIONS.flatMap((p) => p.uses)
          .filter((u) => u.call !== 'informer')
          .map((u) => `${u.module} ${u.call}`),
      ),
    ].sort();
    expect(listed).toEqual(used);
  });

  it('lists every informer, and no other', () => {
    const used = [...new Set(informers.map(key))].sort();
    const listed = PERMISSIONS.filter((p) => p.uses.some((u) => u.call === 'informer'))
      .map(key)
      .sort();
    expect(listed).toEqual(used);
    for (const u of PERMISSIONS.flatMap((p) => p.uses).filter((u) => u.call === 'informer'))
      expect(u.module).toBe(COMPOSITION_ROOT);
  });

  it.each(PERMISSIONS.map((p) => [`${key(p)} ${p.verbs.join(',')}`, p] as const))(
    '%s: exactly the verbs its calls need, on its resource',
    (_, p: Permission) => {
      const verbs = new Set<string>();
      for (const use of p.uses) {
        if (use.call === 'informer') {
          verbs.add('list').add('watch');
          continue;
        }
        const call = calls.find((c) => c.module === use.module && c.call === use.call);
        if (call === undefined) throw new Error(`${use.module} does not call ${use.call}`);
        const a = call.access;
        if (a.resource === undefined) {
          // A custom object: the entry names the resource; the method says whether it is the status subresource.
          expect(p.group, `${use.call} addresses a custom resource`).toBe(api.GROUP);
          expect(p.resource.split('/')[1] ?? '', `${use.call} in ${use.module}`).toBe(a.subresource);
        } else {
          expect(key(p), `${use.call} in ${use.module}`).toBe(`${a.group}/${a.resource}`);
        }
        verbs.add(a.verb);
      }
      expect([...p.verbs].sort()).toEqual([...verbs].sort());
      expect(p.why.length).toBeGreaterThan(10);
    },
  );

  it('names the objects the operator is configured with', () => {
    const defaults = Object.fromEntries(OPERATOR_FLAGS.flags.map((f) => [f.name, f]));
    expect(JSON.stringify(defaults['lease-name'])).toContain(LEASE_NAME);
    expect(JSON.stringify(defaults['governance-config'])).toContain(GOVERNANCE_CONFIGMAP);
  });
});

const { helms } = await helmBinaries();

describe.each(helms.map((h) => [h.name, h] as const))('the chart rendered by %s', (_, helm: Helm) => {
  let objects: Rendered[];
  beforeAll(() => {
    objects = render(helm, { namespace: 'strongroom-rbac', values: { serviceAccount: { name: 'op' } } });
  });

  const normalized = (rules: unknown): string[] =>
    (rules as Record<string, unknown>[]).map((r) => JSON.stringify(r)).sort();

  it('the ClusterRole grants exactly the table’s cluster-wide rules', () => {
    const role = find(objects, 'ClusterRole', 'strongroom-operator');
    const expected = PERMISSIONS.filter((p) => p.granted !== false && !p.namespaced).map(rule);
    expect(normalized(role.rules)).toEqual(normalized(expected));
  });

  it('the Role grants exactly the table’s namespaced rules, in the release namespace', () => {
    const role = find(objects, 'Role', 'strongroom-operator');
    expect(role.metadata.namespace).toBe('strongroom-rbac');
    const expected = PERMISSIONS.filter((p) => p.granted !== false && p.namespaced).map(rule);
    expect(normalized(role.rules)).toEqual(normalized(expected));
  });

  it('binds both to the operator’s ServiceAccount only', () => {
    const subject = [{ kind: 'ServiceAccount', name: 'op', namespace: 'strongroom-rbac' }];
    expect(find(objects, 'ClusterRoleBinding', 'strongroom-operator').subjects).toEqual(subject);
    expect(find(objects, 'RoleBinding', 'strongroom-operator').subjects).toEqual(subject);
    expect(find(objects, 'ServiceAccount', 'op').metadata.namespace).toBe('strongroom-rbac');
    const sts = find(objects, 'StatefulSet', 'strongroom') as unknown as {
      spec: { template: { spec: { serviceAccountName: string } } };
    };
    expect(sts.spec.template.spec.serviceAccountName).toBe('op');
  });

  it('grants nothing to *, no escalation verbs, and no Secret outside the release namespace', () => {
    const roles = objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role');
    expect(roles).toHaveLength(2);
    for (const role of roles) {
      for (const r of role.rules as Record<string, string[] | undefined>[]) {
        for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames', 'nonResourceURLs'])
          expect(r[field] ?? [], `${role.kind} ${field}`).not.toContain('*');
        expect(r.nonResourceURLs).toBeUndefined();
        for (const verb of ['escalate', 'bind', 'impersonate', 'deletecollection'])
          expect(r.verbs, role.kind).not.toContain(verb);
        if (role.kind === 'ClusterRole') {
          expect(r.resources, 'cluster-wide').not.toContain('secrets');
          expect(r.resources, 'cluster-wide').not.toContain('configmaps');
          expect(r.resources, 'cluster-wide').not.toContain('leases');
        }
      }
    }
  });

  it('does not let the operator change its own grants, policies or RBAC', () => {
    const all = objects
      .filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')
      .flatMap((o) => o.rules as { resources: string[]; verbs: string[] }[]);
    const writes = (resource: string): string[] =>
      all
        .filter((r) => r.resources.includes(resource))
        .flatMap((r) => r.verbs.filter((v) => v !== 'get' && v !== 'list' && v !== 'watch'));
    expect(writes('accessgrants')).toEqual([]);
    expect(writes('validatingadmissionpolicies')).toEqual([]);
    expect(writes('validatingadmissionpolicybindings')).toEqual([]);
    expect(writes('clusterroles')).toEqual([]);
    expect(writes('roles')).toEqual([]);
  });
});
