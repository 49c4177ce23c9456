/**
 * The checkpoint signing key on a PKCS#11 token (an HSM, SoftHSM2 in tests): an Ed25519 key pair (CKK_EC_EDWARDS)
 * generated on the token with CKM_EC_EDWARDS_KEY_PAIR_GEN, found again by its label on every later start.
 *
 * - private key: CKO_PRIVATE_KEY, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true, CKA_EXTRACTABLE false, CKA_MODIFIABLE
 *   false, CKA_COPYABLE false, usable for CKA_SIGN only; it never leaves the token (C_GetAttributeValue of CKA_VALUE
 *   answers CKR_ATTRIBUTE_SENSITIVE, C_WrapKey CKR_KEY_UNEXTRACTABLE);
 * - public key: CKO_PUBLIC_KEY with the same label and CKA_ID; its CKA_EC_POINT (a DER OCTET STRING holding the
 *   32-byte key, or the 32 bytes bare on some tokens) is the note verifier's key;
 * - CKA_EC_PARAMS: the DER of the RFC 8410 OID id-Ed25519 (1.3.101.112), or, on a token that refuses it, the printable
 *   string "edwards25519" (PKCS#11 3.0 allows both);
 * - signing: C_SignInit with CKM_EDDSA and no parameters (pure Ed25519), then C_Sign of the note text.
 *
 * A found key must be an Ed25519 signing key that is sensitive and not extractable; anything else is refused
 * (`invalid`). A key that disappears after start-up is `not-found` at the next signature and never silently replaced
 * (not even by another pair under the label): the verifier key published in `strongroom-audit-keys` would not match.
 *
 * Several key pairs under the label (two replicas that started together on an empty shared token each generated
 * one) are not an error: publicKey() picks the pair whose public key the caller prefers (the verifier key already in
 * `strongroom-audit-keys`), else the one with the lowest public key (bytewise), so every replica picks the same one
 * without talking to the others; sign() then signs with that pair only. The halves of a pair share label and CKA_ID,
 * so the private key of the chosen public key is found by a test signature that the public key verifies. Nothing is
 * deleted: the extra pair stays on the token for an administrator to remove (docs/kms.md).
 *
 * The operations run on the pkcs11 provider's session and queue (pkcs11.ts `checkpointSigningKey`), so they share its
 * login, its session recovery and its one-operation-at-a-time discipline.
 */
import { createPublicKey, verify } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { Handle, Template } from 'pkcs11js';
import { KmsError } from './provider.ts';
import { ED25519_PUBLIC_KEY_BYTES, ED25519_SIGNATURE_BYTES, type CheckpointSigningKey } from './signing.ts';

/** PKCS#11 3.0 constants that pkcs11js 2 does not name. */
export const CKK_EC_EDWARDS = 0x40;
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;
/** DER of OID 1.3.101.112 (id-Ed25519, RFC 8410). */
export const ED25519_OID_PARAMS = Buffer.from('06032b6570', 'hex');
/** DER PrintableString "edwards25519". */
export const EDWARDS25519_NAME_PARAMS = Buffer.concat([Buffer.from([0x13, 12]), Buffer.from('edwards25519')]);
/** CKA_ID of both halves of a checkpoint signing key pair. */
export const SIGNING_KEY_OBJECT_ID = Buffer.from('strongroom-checkpoint-signer/ed25519', 'utf8');

/** Runs `op` on the provider's session, queued behind every other operation of the provider. */
export type TokenRun = <T>(op: (lib: pkcs11js.PKCS11, session: Handle) => Promise<T> | T) => Promise<T>;

const MAX_LABEL_BYTES = 128;
const CURVE_REFUSED = new Set([
  'CKR_CURVE_NOT_SUPPORTED',
  'CKR_DOMAIN_PARAMS_INVALID',
  'CKR_ATTRIBUTE_VALUE_INVALID',
  'CKR_TEMPLATE_INCONSISTENT',
]);

function ckrName(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  return (/\b(CKR_[A-Z0-9_]+)\b/.exec(error.message) ?? /\b(CKR_[A-Z0-9_]+)\b/.exec(error.stack ?? ''))?.[1];
}

function p11(what: string, error: unknown): KmsError {
  if (error instanceof KmsError) return error;
  const ckr = ckrName(error);
  const text = ckr ?? (error instanceof Error ? error.message : String(error));
  return new KmsError('unavailable', `PKCS#11 ${what} failed: ${text}`, { cause: error });
}

/** The 32 key bytes of a CKA_EC_POINT: DER OCTET STRING (04 20 ‖ key), or the bare key. */
export function ed25519FromEcPoint(point: Buffer): Buffer | undefined {
  if (point.length === ED25519_PUBLIC_KEY_BYTES) return Buffer.from(point);
  if (
    point.length === ED25519_PUBLIC_KEY_BYTES + 2 &&
    point[0] === 0x04 &&
    point[1] === ED25519_PUBLIC_KEY_BYTES
  )
    return Buffer.from(point.subarray(2));
  return undefined;
}

/** A CK_ULONG attribute value (native byte order: little-endian on every platform Strongroom runs on). */
function ulong(value: Buffer): number {
  if (value.length === 8) return Number(value.readBigUInt64LE(0));
  if (value.length === 4) return value.readUInt32LE(0);
  return -1;
}

interface KeyPair {
  readonly privateKey: Handle;
  readonly publicKey: Handle;
  /** The raw 32-byte public key. */
  readonly raw: Buffer;
}

/** What a private key signs to tell which public key it belongs to (several pairs under one label). */
const PAIRING_CHALLENGE = Buffer.from('strongroom checkpoint signing key pairing v1\n', 'utf8');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function verifiesWith(raw: Buffer, data: Buffer, signature: Buffer): boolean {
  try {
    const key = createPublicKey({
      key: Buffer.concat([SPKI_ED25519_PREFIX, raw]),
      format: 'der',
      type: 'spki',
    });
    return verify(null, data, key, signature);
  } catch {
    return false;
  }
}

export class Pkcs11CheckpointSigningKey implements CheckpointSigningKey {
  readonly description: string;
  readonly #run: TokenRun;
  readonly #label: Buffer;
  /** The public key publicKey() chose: sign() signs with that pair only. */
  #chosen: Buffer | undefined;

  constructor(run: TokenRun, tokenLabel: string, label: string) {
    if (typeof label !== 'string' || label === '' || Buffer.byteLength(label, 'utf8') > MAX_LABEL_BYTES)
      throw new KmsError('invalid', `a signing key label is 1-${MAX_LABEL_BYTES} bytes`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(label))
      throw new KmsError('invalid', 'the label contains control characters');
    this.#run = run;
    this.#label = Buffer.from(label, 'utf8');
    this.description = `PKCS#11 token "${tokenLabel}" Ed25519 key "${label}"`;
  }

  /**
   * Finds the key pair, generating it on the token when there is none; returns the raw public key. With several
   * pairs under the label, the one whose public key is `preferred`, else the lowest public key (see above).
   */
  publicKey(preferred?: Uint8Array): Promise<Uint8Array> {
    return this.#run(async (lib, s) => {
      const want = preferred === undefined ? undefined : Buffer.from(preferred);
      const pair = this.#find(lib, s, want, false) ?? (await this.#generate(lib, s));
      this.#chosen = pair.raw;
      return Buffer.from(pair.raw);
    });
  }

  sign(data: Uint8Array): Promise<Uint8Array> {
    return this.#run(async (lib, s) => {
      const pair = this.#find(lib, s, this.#chosen, true);
      if (!pair) throw new KmsError('not-found', `${this.description} is no longer on the token`);
      this.#call('C_SignInit (CKM_EDDSA)', () => {
        lib.C_SignInit(s, { mechanism: CKM_EDDSA }, pair.privateKey);
      });
      // One C_Sign with room for the whole signature always ends the operation (PKCS#11 §5.2), failed or not.
      let signature: Buffer;
      try {
        signature = await lib.C_SignAsync(s, Buffer.from(data), Buffer.alloc(ED25519_SIGNATURE_BYTES));
      } catch (e) {
        throw p11('C_Sign (CKM_EDDSA)', e);
      }
      return Buffer.from(signature);
    });
  }

  #call<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw p11(what, e);
    }
  }

  #findAll(lib: pkcs11js.PKCS11, s: Handle, objectClass: number): Handle[] {
    return this.#call('C_FindObjects', () => {
      lib.C_FindObjectsInit(s, [
        { type: pkcs11js.CKA_CLASS, value: objectClass },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_LABEL, value: this.#label },
        { type: pkcs11js.CKA_ID, value: SIGNING_KEY_OBJECT_ID },
      ]);
      try {
        return lib.C_FindObjects(s, 8);
      } finally {
        lib.C_FindObjectsFinal(s);
      }
    });
  }

  /** The raw Ed25519 public key of a public key object. */
  #raw(lib: pkcs11js.PKCS11, s: Handle, publicKey: Handle): Buffer {
    const [point] = this.#call('C_GetAttributeValue (CKA_EC_POINT)', () =>
      lib.C_GetAttributeValue(s, publicKey, [{ type: pkcs11js.CKA_EC_POINT }]),
    );
    const raw = point?.value ? ed25519FromEcPoint(point.value) : undefined;
    if (!raw) throw new KmsError('invalid', `${this.description}: CKA_EC_POINT is not an Ed25519 point`);
    return raw;
  }

  /**
   * The key pair, checked; undefined when the token holds neither half. `want` is the public key to use: preferred
   * (publicKey(): another one is taken when it is not there) or required (`exact`, sign(): then nothing else is).
   */
  #find(lib: pkcs11js.PKCS11, s: Handle, want: Buffer | undefined, exact: boolean): KeyPair | undefined {
    const privateKeys = this.#findAll(lib, s, pkcs11js.CKO_PRIVATE_KEY);
    const publicKeys = this.#findAll(lib, s, pkcs11js.CKO_PUBLIC_KEY);
    if (privateKeys.length === 0 && publicKeys.length === 0) return undefined;
    if (privateKeys.length === 0 || publicKeys.length === 0) {
      throw new KmsError(
        'invalid',
        `${this.description}: the token holds ${privateKeys.length} private and ${publicKeys.length} public keys with this label; a key pair is required`,
      );
    }
    const candidates = publicKeys
      .map((publicKey) => ({ publicKey, raw: this.#raw(lib, s, publicKey) }))
      .sort((a, b) => Buffer.compare(a.raw, b.raw));
    const wanted = want === undefined ? undefined : candidates.find((c) => c.raw.equals(want));
    if (exact && want !== undefined && wanted === undefined) return undefined;
    const chosen = wanted ?? candidates[0];
    if (chosen === undefined) return undefined;
    const privateKey =
      privateKeys.length === 1 && publicKeys.length === 1
        ? privateKeys[0]
        : this.#privateKeyOf(lib, s, privateKeys, chosen.raw);
    if (privateKey === undefined) {
      throw new KmsError(
        'invalid',
        `${this.description}: none of the ${privateKeys.length} private keys with this label belongs to public key ${chosen.raw.toString('base64')}`,
      );
    }
    this.#check(lib, s, privateKey);
    return { privateKey, publicKey: chosen.publicKey, raw: chosen.raw };
  }

  /** Which of `privateKeys` signs what `raw` verifies (the halves of a pair share label and CKA_ID). */
  #privateKeyOf(lib: pkcs11js.PKCS11, s: Handle, privateKeys: Handle[], raw: Buffer): Handle | undefined {
    for (const privateKey of privateKeys) {
      let signature: Buffer;
      try {
        lib.C_SignInit(s, { mechanism: CKM_EDDSA }, privateKey);
        signature = lib.C_Sign(s, PAIRING_CHALLENGE, Buffer.alloc(ED25519_SIGNATURE_BYTES));
      } catch (e) {
        // Not a key that signs with CKM_EDDSA (C_Sign ends the operation whatever happens): not this pair.
        if (ckrName(e) === 'CKR_KEY_TYPE_INCONSISTENT' || ckrName(e) === 'CKR_KEY_FUNCTION_NOT_PERMITTED')
          continue;
        throw p11('C_Sign (pairing)', e);
      }
      if (verifiesWith(raw, PAIRING_CHALLENGE, signature)) return privateKey;
    }
    return undefined;
  }

  /** Refuses a private key that is not an Ed25519 signing key kept on the token. */
  #check(lib: pkcs11js.PKCS11, s: Handle, privateKey: Handle): void {
    const attributes = this.#call('C_GetAttributeValue', () =>
      lib.C_GetAttributeValue(s, privateKey, [
        { type: pkcs11js.CKA_KEY_TYPE },
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_SIGN },
      ]),
    );
    const [keyType, sensitive, extractable, canSign] = attributes.map((a) => a.value);
    if (!keyType || keyType.length === 0 || ulong(keyType) !== CKK_EC_EDWARDS)
      throw new KmsError('invalid', `${this.description} is not an Edwards-curve (CKK_EC_EDWARDS) key`);
    if (sensitive?.[0] !== 1 || extractable?.[0] !== 0)
      throw new KmsError(
        'invalid',
        `${this.description} is not sensitive and non-extractable; a checkpoint key must never leave the token`,
      );
    if (canSign?.[0] !== 1) throw new KmsError('invalid', `${this.description} cannot sign (CKA_SIGN false)`);
  }

  async #generate(lib: pkcs11js.PKCS11, s: Handle): Promise<KeyPair> {
    const common: Template = [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_KEY_TYPE, value: CKK_EC_EDWARDS },
      { type: pkcs11js.CKA_LABEL, value: this.#label },
      { type: pkcs11js.CKA_ID, value: SIGNING_KEY_OBJECT_ID },
      { type: pkcs11js.CKA_MODIFIABLE, value: false },
    ];
    const privateTemplate: Template = [
      ...common,
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_COPYABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    let lastError: unknown;
    let pair: { privateKey: Handle; publicKey: Handle } | undefined;
    for (const params of [ED25519_OID_PARAMS, EDWARDS25519_NAME_PARAMS]) {
      try {
        pair = await lib.C_GenerateKeyPairAsync(
          s,
          { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN },
          [
            ...common,
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
            { type: pkcs11js.CKA_PRIVATE, value: false },
            { type: pkcs11js.CKA_EC_PARAMS, value: params },
            { type: pkcs11js.CKA_VERIFY, value: true },
            { type: pkcs11js.CKA_ENCRYPT, value: false },
            { type: pkcs11js.CKA_WRAP, value: false },
          ],
          privateTemplate,
        );
        break;
      } catch (e) {
        lastError = e;
        if (!CURVE_REFUSED.has(ckrName(e) ?? '')) break;
      }
    }
    if (pair !== undefined)
      return {
        privateKey: pair.privateKey,
        publicKey: pair.publicKey,
        raw: this.#raw(lib, s, pair.publicKey),
      };
    const ckr = ckrName(lastError);
    if (ckr === 'CKR_MECHANISM_INVALID')
      throw new KmsError(
        'unavailable',
        `${this.description}: the token does not support Ed25519 (CKM_EC_EDWARDS_KEY_PAIR_GEN)`,
        { cause: lastError },
      );
    throw p11('C_GenerateKeyPair (Ed25519)', lastError);
  }
}
