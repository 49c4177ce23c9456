/**
 * `strongroom approve` and `strongroom deny` (also `kubectl strongroom approve|deny` through the kubectl plugin
 * `operator/cli/kubectl-strongroom`): an approver signs off on, or refuses, an AccessGrant in their own name.
 *
 * The command asks the API server who the caller is (a SelfSubjectReview) and writes exactly that: the approval's
 * approver is the authenticated user name and its groups are the caller's own groups. It proves nothing by itself:
 * Strongroom's admission policy (core/governance/admission-policies.ts) checks the same facts inside the API server,
 * so a hand-written `kubectl patch` with someone else's name is refused all the same. The patch is guarded by the
 * grant's resourceVersion, so an approval always signs off on the spec the approver read.
 */
import {
  AuthenticationV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { Command, Option } from 'commander';
import type { AccessGrant } from '../../core/api/index.ts';
import type { CliIo } from './audit.ts';

/** Who the API server says the caller is. */
export interface Caller {
  readonly username: string;
  readonly groups: readonly string[];
}

/** A JSON patch operation. */
export type PatchOperation =
  { op: 'test'; path: string; value: unknown } | { op: 'add'; path: string; value: unknown };

/** Groups an approval lists by default: the caller's own, without the API server's `system:` groups. */
export function qualifyingGroups(caller: Caller, chosen: readonly string[]): string[] {
  if (chosen.length > 0) {
    const missing = chosen.filter((g) => !caller.groups.includes(g));
    if (missing.length > 0)
      throw new ReviewError(
        `you are not in group ${missing.join(', ')} (your groups: ${caller.groups.join(', ')})`,
      );
    return [...chosen];
  }
  return caller.groups.filter((g) => !g.startsWith('system:'));
}

/** Invalid use, or a grant that cannot be reviewed as asked; the message says why. */
export class ReviewError extends Error {
  override readonly name = 'ReviewError';
}

/**
 * The JSON patch that adds `caller`'s approval to `grant`, guarded by its resourceVersion. Refuses (ReviewError)
 * what the admission policy would refuse anyway, with a clearer message: the requester approving, an approval
 * already given, a denied grant.
 */
export function approvalPatch(
  grant: AccessGrant,
  caller: Caller,
  groups: readonly string[],
  now: Date,
  comment?: string,
): PatchOperation[] {
  checkReviewable(grant, caller, groups);
  const approvals = grant.spec.approvals ?? [];
  if (approvals.some((a) => a.approver === caller.username))
    throw new ReviewError(`${ref(grant)} already has your approval`);
  const approval = {
    approver: caller.username,
    groups: [...groups],
    approvedAt: rfc3339(now),
    ...(comment ? { comment } : {}),
  };
  return [
    guard(grant),
    approvals.length === 0 && grant.spec.approvals === undefined
      ? { op: 'add', path: '/spec/approvals', value: [approval] }
      : { op: 'add', path: '/spec/approvals/-', value: approval },
  ];
}

/** The JSON patch that records `caller`'s final denial of `grant`. */
export function denialPatch(
  grant: AccessGrant,
  caller: Caller,
  groups: readonly string[],
  now: Date,
  reason: string,
): PatchOperation[] {
  checkReviewable(grant, caller, groups);
  if (reason.trim() === '') throw new ReviewError('a denial needs a reason (--reason)');
  return [
    guard(grant),
    {
      op: 'add',
      path: '/spec/denial',
      value: { deniedBy: caller.username, groups: [...groups], deniedAt: rfc3339(now), reason },
    },
  ];
}

function checkReviewable(grant: AccessGrant, caller: Caller, groups: readonly string[]): void {
  if (grant.spec.denial !== undefined)
    throw new ReviewError(`${ref(grant)} was denied by ${grant.spec.denial.deniedBy}; a denial is final`);
  if (grant.spec.requester === caller.username)
    throw new ReviewError(
      `you (${caller.username}) requested ${ref(grant)}; a requester cannot review their own grant`,
    );
  if (groups.length === 0)
    throw new ReviewError(`you (${caller.username}) are in no group that could make you an approver`);
}

function guard(grant: AccessGrant): PatchOperation {
  return { op: 'test', path: '/metadata/resourceVersion', value: grant.metadata.resourceVersion };
}

function ref(grant: AccessGrant): string {
  return `AccessGrant ${grant.metadata.namespace ?? ''}/${grant.metadata.name ?? ''}`;
}

/** metav1.Time: whole seconds, UTC. */
function rfc3339(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

interface ReviewOptions {
  namespace?: string;
  kubeconfig?: string;
  group: string[];
  comment?: string;
  reason?: string;
}

/** `approve` and `deny`, added to the `strongroom` program. */
export function reviewCommands(io: CliIo): Command[] {
  const common = (command: Command) =>
    command
      .argument('<grant>', 'name of the AccessGrant')
      .addOption(
        new Option('-n, --namespace <namespace>', 'namespace of the grant').env('STRONGROOM_NAMESPACE'),
      )
      .option('--kubeconfig <file>', 'kubeconfig (default: $KUBECONFIG, then ~/.kube/config)')
      .option('--group <group>', 'list only this group of yours on the review (repeatable)', collect, []);
  const approve = common(new Command('approve'))
    .description('approve an AccessGrant in your own name (you must be an approver and not its requester)')
    .option('--comment <text>', 'a remark recorded with the approval')
    .action(async (name: string, options: ReviewOptions) => {
      await review(io, name, options, (grant, caller, groups, now) =>
        approvalPatch(grant, caller, groups, now, options.comment),
      );
    });
  const deny = common(new Command('deny'))
    .description('deny an AccessGrant for good, in your own name')
    .requiredOption('--reason <text>', 'why (recorded on the grant and in the audit log)')
    .action(async (name: string, options: ReviewOptions) => {
      await review(io, name, options, (grant, caller, groups, now) =>
        denialPatch(grant, caller, groups, now, options.reason ?? ''),
      );
    });
  return [approve, deny];
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function review(
  io: CliIo,
  name: string,
  options: ReviewOptions,
  build: (grant: AccessGrant, caller: Caller, groups: string[], now: Date) => PatchOperation[],
): Promise<void> {
  const kc = new KubeConfig();
  if (options.kubeconfig) kc.loadFromFile(options.kubeconfig);
  else kc.loadFromDefault();
  const namespace = options.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  const custom = kc.makeApiClient(CustomObjectsApi);
  const target = { group: 'strongroom.dev', version: 'v1alpha1', namespace, plural: 'accessgrants', name };
  try {
    const self = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    const user = self.status?.userInfo;
    if (!user?.username) throw new ReviewError('the API server did not say who you are (SelfSubjectReview)');
    const caller: Caller = { username: user.username, groups: user.groups ?? [] };
    const grant = (await custom.getNamespacedCustomObject(target)) as AccessGrant;
    const patch = build(grant, caller, qualifyingGroups(caller, options.group), new Date());
    await custom.patchNamespacedCustomObject(
      { ...target, body: patch },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    const verb = patch.some((p) => p.path === '/spec/denial') ? 'denied' : 'approved';
    io.out(`${verb} AccessGrant ${namespace}/${name} as ${caller.username}\n`);
  } catch (error) {
    io.err(`strongroom: ${describe(error)}\n`);
    io.setExitCode(1);
  }
}

/** The API server's own message (the admission policy's reason) when there is one. */
function describe(error: unknown): string {
  if (error instanceof ReviewError) return error.message;
  const body = (error as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      const status = JSON.parse(body) as { message?: unknown };
      if (typeof status.message === 'string') return status.message;
    } catch {
      return body;
    }
  }
  return error instanceof Error ? error.message : String(error);
}
