/**
 * Loads the `strongroom.v1.KeyBroker` service (proto/strongroom/v1/keybroker.proto) for @grpc/grpc-js, typed with
 * the types generated into proto/generated/ (see proto/README.md), and shared by the broker server (operator) and
 * its client (sidecar). The wire contract is documented in docs/broker.md.
 *
 * Field names are camelCase in JavaScript (`keepCase: false`, the protobuf JSON mapping), 64-bit integers are
 * decimal strings, enums are their value names, unset scalars read as their defaults, and a oneof's virtual field
 * names the member that is set (see LOADER_OPTIONS).
 *
 * Enums fail closed: protobuf.js would silently encode an unknown enum name as the zero value (`*_UNSPECIFIED`)
 * and decode an unknown number as a bare number. The serializers installed here reject both with an
 * {@link UnknownEnumValueError} instead, which grpc-js reports as an INTERNAL call error.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/keybroker.ts';
import type { KeyBrokerDefinition } from './generated/strongroom/v1/KeyBroker.ts';
import type { RevocationReason__Output } from './generated/strongroom/v1/RevocationReason.ts';

export type { ProtoGrpcType } from './generated/keybroker.ts';
export type {
  KeyBrokerClient,
  KeyBrokerDefinition,
  KeyBrokerHandlers,
} from './generated/strongroom/v1/KeyBroker.ts';

/** The protobuf package of the service. */
export const KEY_BROKER_PACKAGE = 'strongroom.v1';

/** The fully qualified service name, as used in gRPC paths (`/strongroom.v1.KeyBroker/ReleaseKey`). */
export const KEY_BROKER_SERVICE = 'strongroom.v1.KeyBroker';

/** The service's .proto file, relative to {@link PROTO_ROOT}. */
export const KEY_BROKER_PROTO = 'strongroom/v1/keybroker.proto';

const here = fileURLToPath(new URL('.', import.meta.url));

/**
 * The directory that .proto imports are resolved against: this directory when run from source, or the source tree's
 * proto/ when run from the compiled dist/proto/ (tsc does not copy .proto files).
 */
export const PROTO_ROOT =
  [here, resolve(here, '../../proto')].find((dir) => existsSync(join(dir, KEY_BROKER_PROTO))) ?? here;

/**
 * The @grpc/proto-loader options; the generated types in proto/generated/ assume exactly these (the generator is
 * run with the matching flags, see proto/README.md).
 */
export const LOADER_OPTIONS = Object.freeze({
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
} satisfies protoLoader.Options);

/**
 * The operator's revocation bus reasons (operator/revocation/bus.ts) and the `RevocationReason` enum values that
 * carry them on the wire, one to one.
 */
export const REVOCATION_REASONS = Object.freeze({
  'grant-expired': 'REVOCATION_REASON_GRANT_EXPIRED',
  'grant-deleted': 'REVOCATION_REASON_GRANT_DELETED',
  'grant-revoked': 'REVOCATION_REASON_GRANT_REVOKED',
  'grant-denied': 'REVOCATION_REASON_GRANT_DENIED',
  'grant-suspended': 'REVOCATION_REASON_GRANT_SUSPENDED',
  'versions-removed': 'REVOCATION_REASON_VERSIONS_REMOVED',
  'artifact-deleted': 'REVOCATION_REASON_ARTIFACT_DELETED',
  'version-withdrawn': 'REVOCATION_REASON_VERSION_WITHDRAWN',
} as const satisfies Record<string, RevocationReason__Output>);

/** A message held an enum value that the schema does not define; the message was not sent or not accepted. */
export class UnknownEnumValueError extends Error {
  /** Dotted path of the offending field, from the message root (for example `revocation.reason`). */
  readonly field: string;
  /** The fully qualified enum type (for example `strongroom.v1.RevocationReason`). */
  readonly enumType: string;

  constructor(field: string, enumType: string, value: unknown, options?: ErrorOptions) {
    super(
      `${field}: ${typeof value === 'string' ? JSON.stringify(value) : String(value)} is not a value of ${enumType}`,
      options,
    );
    this.name = 'UnknownEnumValueError';
    this.field = field;
    this.enumType = enumType;
  }
}

/** The loaded service. */
export interface KeyBroker {
  /** The service definition, for `server.addService(keyBroker.service, handlers)`. */
  readonly service: KeyBrokerDefinition;
  /** The client constructor: `new keyBroker.Client(address, credentials, options)`. */
  readonly Client: ProtoGrpcType['strongroom']['v1']['KeyBroker'];
  /** The whole loaded package, including the message and enum definitions. */
  readonly grpcObject: ProtoGrpcType;
}

/**
 * Parses keybroker.proto (synchronously; call once at startup) and returns the typed service definition and client
 * constructor, with serializers that reject unknown enum values.
 *
 * @throws Error when the .proto file cannot be read or parsed.
 */
export function loadKeyBroker(): KeyBroker {
  const definition = protoLoader.loadSync(KEY_BROKER_PROTO, { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
  const guarded: protoLoader.PackageDefinition = {
    ...definition,
    [KEY_BROKER_SERVICE]: guardService(definition),
  };
  const grpcObject = grpc.loadPackageDefinition(guarded) as unknown as ProtoGrpcType;
  const Client = grpcObject.strongroom.v1.KeyBroker;
  return Object.freeze({ service: Client.service, Client, grpcObject });
}

/** Wraps every serializer and deserializer of the service with an enum check of the message object. */
function guardService(definition: protoLoader.PackageDefinition): protoLoader.ServiceDefinition {
  const service = definition[KEY_BROKER_SERVICE];
  if (!service || isTypeDefinition(service))
    throw new Error(`${KEY_BROKER_PROTO} does not define ${KEY_BROKER_SERVICE}`);
  const guarded: protoLoader.ServiceDefinition = {};
  const methods: [string, protoLoader.MethodDefinition<object, object>][] = Object.entries(service);
  for (const [name, method] of methods) {
    const check = {
      request: enumChecker(definition, messageName(definition, method.requestType)),
      response: enumChecker(definition, messageName(definition, method.responseType)),
    };
    guarded[name] = {
      ...method,
      requestSerialize: (value: object) => method.requestSerialize(check.request(value)),
      requestDeserialize: (bytes: Buffer) => check.request(method.requestDeserialize(bytes)),
      responseSerialize: (value: object) => method.responseSerialize(check.response(value)),
      responseDeserialize: (bytes: Buffer) => check.response(method.responseDeserialize(bytes)),
    };
  }
  return guarded;
}

function isTypeDefinition(
  value: protoLoader.AnyDefinition,
): value is protoLoader.MessageTypeDefinition<object, object> | protoLoader.EnumTypeDefinition {
  return 'format' in value && typeof value.format === 'string';
}

/** The parts of a google.protobuf.FieldDescriptorProto that the check reads. */
interface FieldDescriptor {
  readonly name: string;
  readonly type: string;
  readonly typeName: string;
}

/** The fully qualified name of a method's request or response type (the descriptor holds only the short name). */
function messageName(
  definition: protoLoader.PackageDefinition,
  type: protoLoader.MessageTypeDefinition<object, object>,
): string {
  return resolveTypeName(definition, (type.type as { name: string }).name, KEY_BROKER_SERVICE);
}

/** Resolves a field's type name as protobuf scoping does: from the innermost enclosing scope outwards. */
function resolveTypeName(definition: protoLoader.PackageDefinition, typeName: string, from: string): string {
  const name = typeName.replace(/^\./, '');
  if (typeName.startsWith('.')) return name;
  let scope = from.slice(0, Math.max(0, from.lastIndexOf('.')));
  for (;;) {
    const candidate = scope ? `${scope}.${name}` : name;
    if (definition[candidate] || !scope) return candidate;
    scope = scope.slice(0, Math.max(0, scope.lastIndexOf('.')));
  }
}

/** Returns a function that returns its argument after checking every enum field in it, recursively. */
function enumChecker(definition: protoLoader.PackageDefinition, rootName: string): <T>(value: T) => T {
  const describe = (
    typeName: string,
  ): protoLoader.MessageTypeDefinition<object, object> | protoLoader.EnumTypeDefinition => {
    const type = definition[typeName];
    if (!type || !isTypeDefinition(type))
      throw new Error(`${KEY_BROKER_PROTO}: type ${typeName} is not defined`);
    return type;
  };

  // Fail at load time, not at the first call, if the schema cannot be walked.
  describe(rootName);

  /** Per message type, its fields that are enums or messages that (transitively) hold enums, resolved once. */
  const plans = new Map<string, { name: string; target: string; isEnum: boolean }[]>();
  const holdsEnum = new Map<string, boolean>();
  const plan = (typeName: string): { name: string; target: string; isEnum: boolean }[] => {
    const known = plans.get(typeName);
    if (known !== undefined) return known;
    const steps: { name: string; target: string; isEnum: boolean }[] = [];
    plans.set(typeName, steps); // recursive types see the (partial) plan, not an infinite loop
    const fields = (describe(typeName).type as { field?: FieldDescriptor[] }).field ?? [];
    for (const field of fields) {
      if (field.type !== 'TYPE_ENUM' && field.type !== 'TYPE_MESSAGE') continue;
      const target = resolveTypeName(definition, field.typeName, typeName);
      const isEnum = field.type === 'TYPE_ENUM';
      if (isEnum || enumsIn(target)) steps.push({ name: field.name, target, isEnum });
    }
    return steps;
  };
  const enumsIn = (typeName: string): boolean => {
    const known = holdsEnum.get(typeName);
    if (known !== undefined) return known;
    holdsEnum.set(typeName, false);
    const fields = (describe(typeName).type as { field?: FieldDescriptor[] }).field ?? [];
    const result = fields.some(
      (f) =>
        f.type === 'TYPE_ENUM' ||
        (f.type === 'TYPE_MESSAGE' && enumsIn(resolveTypeName(definition, f.typeName, typeName))),
    );
    holdsEnum.set(typeName, result);
    return result;
  };

  const checkMessage = (value: unknown, typeName: string, path: string): void => {
    if (value === null || value === undefined || typeof value !== 'object') return;
    for (const field of plan(typeName)) {
      const raw: unknown = (value as Record<string, unknown>)[field.name];
      const items: unknown[] = Array.isArray(raw) ? raw : [raw];
      items.forEach((item, index) => {
        const itemPath = `${path}${field.name}${Array.isArray(raw) ? `[${index}]` : ''}`;
        if (field.isEnum) checkEnum(item, field.target, itemPath);
        else checkMessage(item, field.target, `${itemPath}.`);
      });
    }
  };

  const checkEnum = (value: unknown, typeName: string, path: string): void => {
    if (value === null || value === undefined) return;
    const values = (describe(typeName).type as { value?: { name: string; number: number }[] }).value ?? [];
    if (!values.some((v) => v.name === value || v.number === value))
      throw new UnknownEnumValueError(path, typeName, value);
  };

  // A message type without enums anywhere in it (ReleaseKey's, Attest's) costs nothing per call.
  if (!enumsIn(rootName)) return <T>(value: T): T => value;
  return <T>(value: T): T => {
    checkMessage(value, rootName, '');
    return value;
  };
}
