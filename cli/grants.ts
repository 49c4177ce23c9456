/**
 * `strongroom grant create`, `revoke`, `quarantine` and `unquarantine`: request access to an artifact, and take it
 * away. Thin commands over pure builders (exported, unit-tested): the object or patch is built here, and the API
 * server's rules decide (docs/policy.md):
 *
 * - `grant create` fills `spec.requester` with the authenticated user (a SelfSubjectReview), because the admission
 *   policy `strongroom-grant-identity` refuses a grant whose requester is anyone else; approvals are added later, in
 *   person, by approvers (`strongroom approve`).
 * - `revoke` sets the annotation `strongroom.dev/revoked` (anyone who may update the grant; permanent: the operator
 *   keeps the grant Revoked even if the annotation is removed).
 * - `quarantine` / `unquarantine` add or remove `strongroom.dev/quarantined`; the admission policy
 *   `strongroom-grant-quarantine` lets only the security groups do either, and a refusal is explained with its words.
 */
import { Command, Option } from 'commander';
import { stringify } from 'yaml';
import type { AccessGrant, AccessGrantSubject } from '../core/api/index.ts';
import { API_VERSION, ACCESS_GRANT_KIND, ACCESS_GRANT_PLURAL } from '../core/api/index.ts';
import { QUARANTINE_ANNOTATION, REVOKED_ANNOTATION } from '../core/policy/grant.ts';
import { policyDuration } from '../core/policy/errors.ts';
import { apiStatus, connect, explainApiError, GROUP, VERSION, type Caller } from './cluster.ts';
import { action, example, flagsOf } from './command.ts';
import { CliError, EXIT, usageError, type CliIo } from './io.ts';
import { withoutManagedFields } from './get.ts';
import { outputOption, printDocument, type OutputFormat } from './output.ts';

/** A bad combination or value of flags; the command turns it into exit 2. */
export class GrantInputError extends Error {
  override readonly name = 'GrantInputError';
}

/** What `grant create` was asked for, as flags give it. */
export interface GrantRequest {
  readonly name: string;
  readonly namespace: string;
  readonly artifact: string;
  /** `--versions v1,v2` (may be given several times). */
  readonly versions?: readonly string[];
  readonly allVersions?: boolean;
  readonly latest?: boolean;
  /** `--service-account ns/sa` or `sa` (the grant's namespace), repeatable. */
  readonly serviceAccounts: readonly string[];
  /** `--pod-selector key=value`, repeatable: matchLabels on every subject. */
  readonly podSelector?: readonly string[];
  readonly mode?: 'read' | 'publish';
  /** `--duration 24h` from notBefore (or now), or `--expires-at <RFC 3339>`; default 24h. */
  readonly duration?: string;
  readonly expiresAt?: string;
  readonly notBefore?: string;
  readonly keyLease?: string;
  readonly purpose: string;
  readonly crossEnvironment?: boolean;
  /** The authenticated user; left out when unknown (a client dry run without a cluster). */
  readonly requester?: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const DEFAULT_GRANT_DURATION = '24h';

/** metav1.Time: whole seconds, UTC. */
function rfc3339(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

function parseTime(text: string, flag: string): Date {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(text))
    throw new GrantInputError(
      `${flag} must be an RFC 3339 time such as 2027-01-31T00:00:00Z, not ${JSON.stringify(text)}`,
    );
  const date = new Date(text);
  if (Number.isNaN(date.getTime()))
    throw new GrantInputError(`${flag}: ${JSON.stringify(text)} is not a valid time`);
  return date;
}

/** A duration flag in milliseconds (Go syntax plus `d`), or GrantInputError naming the flag. */
export function durationFlag(text: string, flag: string): number {
  try {
    return policyDuration(text);
  } catch (error) {
    throw new GrantInputError(`${flag}: ${(error as Error).message} (use Go durations such as 90m, 24h, 7d)`);
  }
}

/** `ns/sa` (or `sa`, in `namespace`) as a subject. */
export function parseSubject(text: string, namespace: string): AccessGrantSubject {
  const parts = text.split('/');
  const [ns, sa] = parts.length === 1 ? [namespace, parts[0] ?? ''] : parts.length === 2 ? parts : [];
  if (
    ns === undefined ||
    sa === undefined ||
    !DNS_LABEL.test(ns) ||
    ns.length > 63 ||
    !DNS_SUBDOMAIN.test(sa)
  )
    throw new GrantInputError(
      `--service-account ${JSON.stringify(text)}: expected <namespace>/<service account> (or a service account of the grant's namespace)`,
    );
  return { namespace: ns, serviceAccount: sa };
}

function labels(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new GrantInputError(`--pod-selector ${JSON.stringify(pair)}: expected key=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** The AccessGrant `grant create` sends. Checks what the flags can get wrong; the API server checks the rest. */
export function buildGrant(request: GrantRequest, now: Date): AccessGrant {
  const mode = request.mode ?? 'read';
  const named = (request.versions ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
  const chosen = [named.length > 0, request.allVersions === true, request.latest === true].filter(
    Boolean,
  ).length;
  if (chosen > 1)
    throw new GrantInputError(
      '--versions, --all-versions and --latest choose the versions: give only one of them',
    );
  if (request.versions !== undefined && request.versions.length > 0 && named.length === 0)
    throw new GrantInputError('--versions needs at least one version name');
  for (const v of named)
    if (!DNS_LABEL.test(v) || v.length > 63)
      throw new GrantInputError(`--versions: ${JSON.stringify(v)} is not a version name (a DNS-1123 label)`);
  if (new Set(named).size !== named.length) throw new GrantInputError('--versions names a version twice');
  let versions: AccessGrant['spec']['versions'];
  if (named.length > 0) versions = { match: 'named', names: named };
  else if (request.allVersions === true) versions = { match: 'all' };
  else if (mode === 'publish')
    throw new GrantInputError(
      'a publish grant names the versions it may publish: --versions v3 or --all-versions',
    );
  else versions = { match: 'latest' };

  if (request.serviceAccounts.length === 0)
    throw new GrantInputError('name at least one workload: --service-account <namespace>/<service account>');
  const selector =
    request.podSelector !== undefined && request.podSelector.length > 0
      ? labels(request.podSelector)
      : undefined;
  const subjects = request.serviceAccounts.map((s) => ({
    ...parseSubject(s, request.namespace),
    ...(selector === undefined ? {} : { podSelector: { matchLabels: selector } }),
  }));
  const seen = new Set(subjects.map((s) => `${s.namespace}/${s.serviceAccount}`));
  if (seen.size !== subjects.length) throw new GrantInputError('--service-account names a workload twice');

  if (request.duration !== undefined && request.expiresAt !== undefined)
    throw new GrantInputError('--duration and --expires-at both set the end of the grant: give only one');
  const start = request.notBefore === undefined ? now : parseTime(request.notBefore, '--not-before');
  let expires: Date;
  if (request.expiresAt !== undefined) expires = parseTime(request.expiresAt, '--expires-at');
  else {
    const ms = durationFlag(request.duration ?? DEFAULT_GRANT_DURATION, '--duration');
    if (ms <= 0) throw new GrantInputError('--duration must be longer than 0s');
    expires = new Date(start.getTime() + ms);
  }
  if (expires.getTime() <= start.getTime())
    throw new GrantInputError(
      `the grant would end (${rfc3339(expires)}) before it starts (${rfc3339(start)})`,
    );
  if (request.keyLease !== undefined) {
    const ms = durationFlag(request.keyLease, '--key-lease');
    if (ms < 60_000 || ms > 24 * 3600_000)
      throw new GrantInputError('--key-lease must be between 1m and 24h');
  }
  if (request.purpose.trim() === '')
    throw new GrantInputError(
      '--purpose must say why the access is needed (it is recorded in the audit log)',
    );
  if (request.purpose.length > 1024) throw new GrantInputError('--purpose is at most 1024 characters');
  if (!DNS_LABEL.test(request.artifact) || request.artifact.length > 63)
    throw new GrantInputError(`--artifact ${JSON.stringify(request.artifact)} is not an artifact name`);

  return {
    apiVersion: API_VERSION,
    kind: ACCESS_GRANT_KIND,
    metadata: { name: request.name, namespace: request.namespace },
    spec: {
      ...(request.requester === undefined ? {} : { requester: request.requester }),
      artifactRef: { name: request.artifact },
      versions,
      mode,
      subjects,
      ...(request.notBefore === undefined ? {} : { notBefore: rfc3339(start) }),
      expiresAt: rfc3339(expires),
      ...(request.keyLease === undefined ? {} : { keyLeaseDuration: request.keyLease }),
      purpose: request.purpose,
      ...(request.crossEnvironment === true ? { crossEnvironment: true } : {}),
    },
  };
}

/** A merge patch (RFC 7386) of a grant's annotations; `null` removes one. */
export interface AnnotationPatch {
  readonly metadata: { readonly annotations: Readonly<Record<string, string | null>> };
}

/** What a revoke/quarantine/unquarantine decided: a patch to send, or nothing to do and why. */
export type AnnotationChange =
  | { readonly patch: AnnotationPatch; readonly note?: undefined }
  | { readonly patch?: undefined; readonly note: string };

function ref(grant: AccessGrant): string {
  return `AccessGrant ${grant.metadata.namespace ?? ''}/${grant.metadata.name ?? ''}`;
}

function annotation(key: string, value: string | null): AnnotationPatch {
  return { metadata: { annotations: { [key]: value } } };
}

function reasonOf(reason: string | undefined, verb: string): string {
  const text = (reason ?? '').trim();
  if (text === '')
    throw new GrantInputError(
      `${verb} needs a reason (--reason): it is recorded on the grant and in the audit log`,
    );
  if (text.length > 1024) throw new GrantInputError('--reason is at most 1024 characters');
  return text;
}

/** Sets `strongroom.dev/revoked` to the reason. A revocation is permanent: an already revoked grant is left alone. */
export function revokePatch(grant: AccessGrant, reason: string | undefined): AnnotationChange {
  const why = reasonOf(reason, 'a revocation');
  const current = grant.metadata.annotations?.[REVOKED_ANNOTATION];
  if (current !== undefined)
    return {
      note: `${ref(grant)} is already revoked (${current || 'no reason given'}); a revocation is permanent`,
    };
  return { patch: annotation(REVOKED_ANNOTATION, why) };
}

/** Sets `strongroom.dev/quarantined` to the reason (or changes the reason). */
export function quarantinePatch(grant: AccessGrant, reason: string | undefined): AnnotationChange {
  const why = reasonOf(reason, 'a quarantine');
  if (grant.metadata.annotations?.[QUARANTINE_ANNOTATION] === why)
    return { note: `${ref(grant)} is already quarantined (${why})` };
  return { patch: annotation(QUARANTINE_ANNOTATION, why) };
}

/** Removes `strongroom.dev/quarantined` (lifts the quarantine: the grant's phase is evaluated again). */
export function unquarantinePatch(grant: AccessGrant): AnnotationChange {
  if (grant.metadata.annotations?.[QUARANTINE_ANNOTATION] === undefined)
    return { note: `${ref(grant)} is not quarantined; nothing to lift` };
  return { patch: annotation(QUARANTINE_ANNOTATION, null) };
}

/** The parts of an admission policy's refusal, from the API server's message. */
export function admissionRefusal(message: string): { policy: string; said: string } | undefined {
  const match =
    /ValidatingAdmissionPolicy '([^']+)'(?: with binding '[^']*')? denied request: ([\s\S]*)$/.exec(message);
  if (match?.[1] === undefined || match[2] === undefined) return undefined;
  return { policy: match[1], said: match[2].trim() };
}

/**
 * A refusal of a grant operation, explained: an admission policy's refusal names the rule (`rule`, in our words) and
 * quotes the policy; an RBAC refusal says who lacks which right; anything else as {@link explainApiError}.
 */
export function explainGrantRefusal(error: unknown, doing: string, rule?: string): CliError {
  if (error instanceof CliError) return error;
  const status = apiStatus(error);
  if (status !== undefined && [400, 403, 409, 422].includes(status.code)) {
    const refusal = admissionRefusal(status.message);
    if (refusal !== undefined)
      return new CliError(
        EXIT.refused,
        `${doing}: ${rule === undefined ? 'refused' : rule} (the admission policy ${refusal.policy} said: ${refusal.said})`,
        { cause: error },
      );
    if (status.code === 409 && (status.reason === 'AlreadyExists' || /already exists/.test(status.message)))
      return new CliError(
        EXIT.refused,
        `${doing}: it already exists (${status.message}); choose another name, or see it with strongroom describe grant`,
        { cause: error },
      );
    if (status.code === 403 && /cannot (patch|create|update|get|delete) resource/.test(status.message))
      return new CliError(EXIT.refused, `${doing}: you lack the right (RBAC): ${status.message}`, {
        cause: error,
      });
  }
  return explainApiError(error, doing);
}

const QUARANTINE_RULE =
  "only the security groups (the classification table's securityGroups, default strongroom:security) may add, change or lift a quarantine";

// ---------------------------------------------------------------------------------------------------------------
// The commands.

interface CreateOptions {
  artifact: string;
  versions: string[];
  allVersions?: boolean;
  latest?: boolean;
  serviceAccount: string[];
  podSelector: string[];
  mode: 'read' | 'publish';
  duration?: string;
  expiresAt?: string;
  notBefore?: string;
  keyLease?: string;
  purpose?: string;
  reason?: string;
  crossEnvironment?: boolean;
  dryRun?: 'client' | 'server';
  output: OutputFormat;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function inputErrors<T>(build: () => T): T {
  try {
    return build();
  } catch (error) {
    if (error instanceof GrantInputError) throw usageError(error.message, { cause: error });
    throw error;
  }
}

function printGrant(io: CliIo, format: OutputFormat, grant: unknown, line: string): void {
  if (format === 'json' || format === 'yaml') printDocument(io, format, withoutManagedFields(grant));
  else io.out(line);
}

/** `grant create`. */
function grantCreateCommand(io: CliIo): Command {
  return example(
    new Command('create')
      .description(
        'request an AccessGrant in your own name (spec.requester is you, as the API server requires)',
      )
      .argument('<name>', 'name of the new AccessGrant')
      .requiredOption('--artifact <name>', "the ModelArtifact (in the grant's namespace)")
      .option('--versions <v1,v2>', 'these versions (match: named; repeatable)', collect, [])
      .option('--all-versions', 'every version that is not withdrawn (match: all)')
      .option(
        '--latest',
        "the artifact's latest version when a key is asked for (match: latest; the default for read)",
      )
      .option(
        '--service-account <ns/sa>',
        "a workload: pods of this service account (in the grant's namespace if no ns/); repeatable",
        collect,
        [],
      )
      .option(
        '--pod-selector <key=value>',
        'only pods with this label (applies to every subject; repeatable)',
        collect,
        [],
      )
      .addOption(
        new Option('--mode <mode>', 'read the versions, or publish them')
          .choices(['read', 'publish'])
          .default('read'),
      )
      .option(
        '--duration <duration>',
        `how long from --not-before (or now), e.g. 8h, 7d (default ${DEFAULT_GRANT_DURATION})`,
      )
      .option('--expires-at <time>', 'when it ends, RFC 3339 (instead of --duration)')
      .option('--not-before <time>', 'when it starts, RFC 3339 (default: at once)')
      .option('--key-lease <duration>', 'how long a released key stays usable, 1m..24h (default 1h)')
      .option('--purpose <text>', 'why the access is needed (recorded in the audit log)')
      .option('--reason <text>', 'the same as --purpose')
      .option(
        '--cross-environment',
        "a subject's namespace is in another environment (it needs more approvals)",
      )
      .addOption(
        new Option(
          '--dry-run [strategy]',
          'print the object instead of creating it; server: let the API server check it too',
        )
          .choices(['client', 'server'])
          .preset('client'),
      )
      .addOption(outputOption())
      .action(
        action(io, async (name: string, _o: CreateOptions, command: Command) => {
          const options = flagsOf<CreateOptions>(command);
          if (
            options.purpose !== undefined &&
            options.reason !== undefined &&
            options.purpose !== options.reason
          )
            throw usageError('--purpose and --reason are the same field: give one');
          const purpose = options.purpose ?? options.reason;
          if (purpose === undefined) throw usageError("required option '--purpose <text>' not specified");
          const request = (namespace: string, requester?: string): GrantRequest => ({
            name,
            namespace,
            artifact: options.artifact,
            versions: options.versions,
            ...(options.allVersions === true ? { allVersions: true } : {}),
            ...(options.latest === true ? { latest: true } : {}),
            serviceAccounts: options.serviceAccount,
            podSelector: options.podSelector,
            mode: options.mode,
            ...(options.duration === undefined ? {} : { duration: options.duration }),
            ...(options.expiresAt === undefined ? {} : { expiresAt: options.expiresAt }),
            ...(options.notBefore === undefined ? {} : { notBefore: options.notBefore }),
            ...(options.keyLease === undefined ? {} : { keyLease: options.keyLease }),
            purpose,
            ...(options.crossEnvironment === true ? { crossEnvironment: true } : {}),
            ...(requester === undefined ? {} : { requester }),
          });
          // Check the flags before anything is sent.
          inputErrors(() => buildGrant(request(options.namespace ?? 'default'), new Date()));
          if (options.dryRun === 'client') {
            let requester: string | undefined;
            let namespace = options.namespace ?? 'default';
            try {
              const cluster = connect(options);
              namespace = cluster.namespace;
              requester = (await cluster.whoAmI()).username;
            } catch (error) {
              io.err(
                `strongroom: spec.requester left out: could not ask the API server who you are (${explainApiError(error, 'SelfSubjectReview').message}); it must be your user name\n`,
              );
            }
            const grant = inputErrors(() => buildGrant(request(namespace, requester), new Date()));
            if (options.output === 'json') printDocument(io, 'json', grant);
            else io.out(stringify(grant));
            return;
          }
          const cluster = connect(options);
          const namespace = cluster.namespace;
          let caller: Caller;
          try {
            caller = await cluster.whoAmI();
          } catch (error) {
            throw explainApiError(error, 'asking the API server who you are');
          }
          const grant = inputErrors(() => buildGrant(request(namespace, caller.username), new Date()));
          let created: unknown;
          try {
            created = await cluster.custom.createNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace,
              plural: ACCESS_GRANT_PLURAL,
              body: grant,
              ...(options.dryRun === 'server' ? { dryRun: 'All' } : {}),
            });
          } catch (error) {
            throw explainGrantRefusal(
              error,
              `creating AccessGrant ${namespace}/${name}`,
              'the API server refused the grant',
            );
          }
          const suffix = options.dryRun === 'server' ? ' (server dry run: nothing was created)' : '';
          printGrant(
            io,
            options.output,
            created,
            `accessgrant ${namespace}/${name} created as ${caller.username}${suffix}\n` +
              (options.dryRun === 'server'
                ? ''
                : `  its phase and the approvals it needs: strongroom describe grant ${name} -n ${namespace}\n`),
          );
        }),
      ),
    'strongroom grant create resnet50-eval -n ml-dev --artifact resnet50 --versions v2 \\',
    '    --service-account ml-dev/trainer --duration 7d --purpose "Evaluate resnet50 on the December benchmark"',
    'strongroom grant create nightly -n ml-dev --artifact resnet50 --service-account trainer --purpose "nightly eval" --dry-run',
  );
}

interface AnnotateOptions {
  reason?: string;
  output: OutputFormat;
}

async function annotate(
  io: CliIo,
  name: string,
  options: AnnotateOptions & { namespace?: string; kubeconfig?: string; context?: string },
  verb: { doing: string; done: string; rule?: string },
  decide: (grant: AccessGrant) => AnnotationChange,
): Promise<void> {
  // Flag mistakes (a blank reason) are usage errors, before anything is sent.
  if (options.reason !== undefined && options.reason.trim() === '')
    throw usageError(
      `${verb.doing} needs a reason (--reason): it is recorded on the grant and in the audit log`,
    );
  const cluster = connect(options);
  const namespace = cluster.namespace;
  const doing = `${verb.doing} AccessGrant ${namespace}/${name}`;
  let grant: AccessGrant;
  try {
    grant = await cluster.getGrant(namespace, name);
  } catch (error) {
    throw explainApiError(error, `AccessGrant ${namespace}/${name}`);
  }
  const change = inputErrors(() => decide(grant));
  if (change.patch === undefined) {
    io.err(`strongroom: ${change.note}\n`);
    printGrant(io, options.output, grant, '');
    return;
  }
  let patched: unknown;
  try {
    patched = await cluster.mergePatch('accessgrants', namespace, name, change.patch);
  } catch (error) {
    throw explainGrantRefusal(error, doing, verb.rule);
  }
  printGrant(io, options.output, patched, `accessgrant ${namespace}/${name} ${verb.done}\n`);
}

/** `grant create` (under `grant`), `revoke`, `quarantine`, `unquarantine`, added to the `strongroom` program. */
export function grantCommands(io: CliIo): Command[] {
  const grant = new Command('grant')
    .addHelpText(
      'after',
      '\nExample:\n  strongroom grant create resnet50-eval --artifact resnet50 --service-account trainer --duration 24h --purpose eval -n ml-dev\n',
    )
    .description('request access to an artifact (grant create)');
  grant.addCommand(grantCreateCommand(io));

  const withReason = (command: Command) =>
    command
      .argument('<grant>', 'name of the AccessGrant')
      .requiredOption('--reason <text>', 'why (recorded on the grant and in the audit log)')
      .addOption(outputOption());

  const revoke = example(
    withReason(new Command('revoke'))
      .description(
        `revoke an AccessGrant for good (annotation ${REVOKED_ANNOTATION}; anyone who may update the grant)`,
      )
      .action(
        action(io, async (name: string, _o: AnnotateOptions, command: Command) => {
          const options = flagsOf<AnnotateOptions>(command);
          await annotate(io, name, options, { doing: 'revoking', done: 'revoked' }, (g) =>
            revokePatch(g, options.reason),
          );
        }),
      ),
    'strongroom revoke resnet50-eval -n ml-dev --reason "the evaluation is over"',
  );
  const quarantine = example(
    withReason(new Command('quarantine'))
      .description(
        `quarantine an AccessGrant: no key is released under it until lifted (annotation ${QUARANTINE_ANNOTATION}; security groups only)`,
      )
      .action(
        action(io, async (name: string, _o: AnnotateOptions, command: Command) => {
          const options = flagsOf<AnnotateOptions>(command);
          await annotate(
            io,
            name,
            options,
            { doing: 'quarantining', done: 'quarantined', rule: QUARANTINE_RULE },
            (g) => quarantinePatch(g, options.reason),
          );
        }),
      ),
    'strongroom quarantine resnet50-eval -n ml-dev --reason "unusual reads from prod"',
  );
  const unquarantine = example(
    new Command('unquarantine')
      .argument('<grant>', 'name of the AccessGrant')
      .addOption(outputOption())
      .description('lift the quarantine of an AccessGrant (security groups only)')
      .action(
        action(io, async (name: string, _o: AnnotateOptions, command: Command) => {
          const options = flagsOf<AnnotateOptions>(command);
          await annotate(
            io,
            name,
            options,
            { doing: 'lifting the quarantine of', done: 'unquarantined', rule: QUARANTINE_RULE },
            unquarantinePatch,
          );
        }),
      ),
    'strongroom unquarantine resnet50-eval -n ml-dev',
  );
  return [grant, revoke, quarantine, unquarantine];
}
