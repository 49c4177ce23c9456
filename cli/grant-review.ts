/**
 * `strongroom approve` and `strongroom deny` (also `kubectl strongroom approve|deny` through the kubectl plugin
 * `cli/kubectl-strongroom`): an approver signs off on, or refuses, an AccessGrant in their own name.
 *
 * The command asks the API server who the caller is (a SelfSubjectReview) and writes exactly that: the approval's
 * approver is the authenticated user name and its groups are the caller's own groups. It proves nothing by itself:
 * Strongroom's admission policy (core/governance/admission-policies.ts) checks the same facts inside the API server,
 * so a hand-written `kubectl patch` with someone else's name is refused all the same. The patch is guarded by the
 * grant's resourceVersion, so an approval always signs off on the spec the approver read.
 */
import { Command } from 'commander';
import type { AccessGrant } from '../core/api/index.ts';
import { connect, explainApiError, type Caller, type ClusterFlags } from './cluster.ts';
import { action, example, flagsOf } from './command.ts';
import { CliError, EXIT, type CliIo } from './io.ts';

export type { Caller } from './cluster.ts';

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
  group: string[];
  comment?: string;
  reason?: string;
}

/** `approve` and `deny`, added to the `strongroom` program. */
export function reviewCommands(io: CliIo): Command[] {
  const common = (command: Command) =>
    command
      .argument('<grant>', 'name of the AccessGrant')
      .option('--group <group>', 'list only this group of yours on the review (repeatable)', collect, []);
  const approve = example(
    common(new Command('approve'))
      .description('approve an AccessGrant in your own name (you must be an approver and not its requester)')
      .option('--comment <text>', 'a remark recorded with the approval')
      .action(
        action(io, async (name: string, _options: ReviewOptions, command: Command) => {
          const options = flagsOf<ReviewOptions>(command);
          await review(io, name, options, (grant, caller, groups, now) =>
            approvalPatch(grant, caller, groups, now, options.comment),
          );
        }),
      ),
    'strongroom approve resnet50-eval -n ml-dev --comment "reviewed the eval plan"',
  );
  const deny = example(
    common(new Command('deny'))
      .description('deny an AccessGrant for good, in your own name')
      .requiredOption('--reason <text>', 'why (recorded on the grant and in the audit log)')
      .action(
        action(io, async (name: string, _options: ReviewOptions, command: Command) => {
          const options = flagsOf<ReviewOptions>(command);
          await review(io, name, options, (grant, caller, groups, now) =>
            denialPatch(grant, caller, groups, now, options.reason ?? ''),
          );
        }),
      ),
    'strongroom deny resnet50-eval -n ml-dev --reason "no eval plan attached"',
  );
  return [approve, deny];
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function review(
  io: CliIo,
  name: string,
  options: ReviewOptions & ClusterFlags,
  build: (grant: AccessGrant, caller: Caller, groups: string[], now: Date) => PatchOperation[],
): Promise<void> {
  const cluster = connect(options);
  const namespace = cluster.namespace;
  try {
    const caller = await cluster.whoAmI();
    const grant = await cluster.getGrant(namespace, name);
    const patch = build(grant, caller, qualifyingGroups(caller, options.group), new Date());
    await cluster.jsonPatch('accessgrants', namespace, name, patch);
    const verb = patch.some((p) => p.path === '/spec/denial') ? 'denied' : 'approved';
    io.out(`${verb} AccessGrant ${namespace}/${name} as ${caller.username}\n`);
  } catch (error) {
    if (error instanceof ReviewError) throw new CliError(EXIT.refused, error.message, { cause: error });
    throw explainApiError(error, `AccessGrant ${namespace}/${name}`);
  }
}
