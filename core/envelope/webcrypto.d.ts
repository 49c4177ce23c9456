// @hpke/core's declarations name the DOM's CryptoKeyPair; this project compiles without the DOM library, so map it
// to Node's WebCrypto type.
import type { webcrypto } from 'node:crypto';

declare global {
  type CryptoKeyPair = webcrypto.CryptoKeyPair;
  type CryptoKey = webcrypto.CryptoKey;
}
