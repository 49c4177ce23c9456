/**
 * The people of the governance tests, each with a client certificate of their own (CN = user, O = groups) and the
 * RBAC of test/governance/people.yaml: what a real team would give them, and no cluster-admin. Tests act as them
 * through the real API server, so the API server's authentication, RBAC and admission decide.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { userKubeconfig } from '../cluster/kubeconfig.ts';
import { kubectl, must, type ClusterInfo, type CommandResult } from '../harness/kubectl.ts';
import { clients } from '../harness/operator.ts';

export const PEOPLE = {
  alice: ['ml-researchers'],
  bob: ['strongroom:approvers'],
  carol: ['strongroom:approvers'],
  dave: ['strongroom:platform-admins'],
  erin: ['strongroom:security'],
  frank: ['strongroom:publishers'],
} as const satisfies Record<string, readonly string[]>;

export type Name = keyof typeof PEOPLE;

export interface Person {
  readonly name: Name;
  readonly groups: readonly string[];
  readonly kubeconfig: string;
  /** kubectl as this person. */
  kubectl(args: readonly string[], input?: string): Promise<CommandResult>;
  /** client-node clients as this person. */
  readonly api: ReturnType<typeof clients>;
}

/**
 * Applies the people's RBAC (`namespaces`: the application namespaces, where alice works and which she owns) and
 * returns a kubeconfig and kubectl for each person.
 */
export async function meetThePeople(
  cluster: ClusterInfo,
  namespaces: readonly string[],
): Promise<Record<Name, Person>> {
  const rbac = readFileSync(join(import.meta.dirname, 'people.yaml'), 'utf8').replaceAll(
    '${NAMESPACES}',
    JSON.stringify(namespaces),
  );
  await must(cluster, ['apply', '-f', '-'], rbac);
  for (const ns of namespaces) {
    const bound = await kubectl(cluster, [
      'create',
      'rolebinding',
      'strongroom-test-requester',
      '-n',
      ns,
      '--clusterrole=strongroom-test-requester',
      '--group=ml-researchers',
    ]);
    if (bound.code !== 0 && !bound.stderr.includes('AlreadyExists')) throw new Error(bound.stderr);
  }
  const people = {} as Record<Name, Person>;
  for (const [name, groups] of Object.entries(PEOPLE) as [Name, readonly string[]][]) {
    const kubeconfig = userKubeconfig(cluster, name, groups);
    const as = { ...cluster, kubeconfig };
    people[name] = {
      name,
      groups,
      kubeconfig,
      kubectl: (args, input) => kubectl(as, args, input === undefined ? {} : { input }),
      api: clients(kubeconfig),
    };
  }
  return people;
}

/** Removes what {@link meetThePeople} applied cluster-wide (role bindings in namespaces go with the namespaces). */
export async function farewell(cluster: ClusterInfo): Promise<void> {
  for (const name of [
    'strongroom-test-requester',
    'strongroom-test-namespace-owner',
    'strongroom-test-approver',
    'strongroom-test-platform-admin',
    'strongroom-test-security',
    'strongroom-test-publisher',
  ]) {
    await kubectl(cluster, ['delete', 'clusterrole', name, '--ignore-not-found']);
    await kubectl(cluster, ['delete', 'clusterrolebinding', name, '--ignore-not-found']);
  }
}
