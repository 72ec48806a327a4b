// ECDSA key handling for the PKI: generation, PKCS#8 PEM export and import into WebCrypto for signing.
import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { encodePem } from './certificates.js';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** Curves accepted for certificate keys. P-256 is what Airlock generates; P-384 is accepted from outside. */
export type EcCurve = 'P-256' | 'P-384';

/** The hash paired with each curve, so signature strength matches key strength (RFC 5480 section 4). */
const HASH_FOR_CURVE: Readonly<Record<EcCurve, 'SHA-256' | 'SHA-384'>> = { 'P-256': 'SHA-256', 'P-384': 'SHA-384' };

/** Node names curves by their OpenSSL/SEC names; WebCrypto and X.509 by their NIST names. */
const CURVE_FROM_NODE: Readonly<Record<string, EcCurve>> = { prime256v1: 'P-256', secp384r1: 'P-384' };

export function isSupportedCurve(value: unknown): value is EcCurve {
  return value === 'P-256' || value === 'P-384';
}

export function signingAlgorithmFor(curve: EcCurve): webcrypto.EcdsaParams {
  return { name: 'ECDSA', hash: HASH_FOR_CURVE[curve] };
}

/** A fresh ECDSA P-256 key pair. The private key is extractable only so that it can be written out as PKCS#8. */
export async function generateEcKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
}

/** Encodes a private key as a PKCS#8 PEM ("PRIVATE KEY") block and wipes the intermediate DER bytes. */
export async function exportPrivateKeyPem(privateKey: CryptoKey): Promise<string> {
  const der = new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', privateKey));
  try {
    return encodePem(der, 'PRIVATE KEY');
  } finally {
    der.fill(0);
  }
}

/** A signing key imported from PEM, with its curve so that the matching hash is used. */
export interface ImportedSigningKey {
  readonly privateKey: CryptoKey;
  readonly curve: EcCurve;
  /** DER SubjectPublicKeyInfo of the matching public key, to check that a key belongs to a certificate. */
  readonly publicKeySpki: Buffer;
}

/**
 * Imports a PEM private key (PKCS#8, or the SEC1 "EC PRIVATE KEY" form that openssl writes) as a
 * non-extractable WebCrypto signing key. Only ECDSA P-256 and P-384 keys are accepted.
 */
export async function importSigningKeyPem(pem: string | Buffer, argument: string): Promise<ImportedSigningKey> {
  let der: Buffer | undefined;
  try {
    let curve: EcCurve | undefined;
    let publicKeySpki: Buffer | undefined;
    try {
      const key = createPrivateKey(pem);
      curve = key.asymmetricKeyType === 'ec' ? CURVE_FROM_NODE[key.asymmetricKeyDetails?.namedCurve ?? ''] : undefined;
      if (curve !== undefined) {
        der = key.export({ type: 'pkcs8', format: 'der' });
        publicKeySpki = createPublicKey(key).export({ type: 'spki', format: 'der' });
      }
    } catch (error) {
      // The parser's message may quote key material, so it is kept only as the cause.
      throw new AirlockError('INVALID_ARGUMENT', `${argument} is not a readable PEM private key`, {
        cause: error,
        details: { argument },
      });
    }
    if (curve === undefined || der === undefined || publicKeySpki === undefined) {
      throw new AirlockError('INVALID_ARGUMENT', `${argument} must be an ECDSA P-256 or P-384 private key`, {
        details: { argument },
      });
    }
    const privateKey = await webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: curve }, false, ['sign']);
    return { privateKey, curve, publicKeySpki };
  } finally {
    der?.fill(0);
  }
}
