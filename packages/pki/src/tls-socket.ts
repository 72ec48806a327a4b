// Facts about an established TLS connection, for handshake logging and for reading an mTLS peer's identity.
import type { TLSSocket } from 'node:tls';
import { AirlockError } from '@airlock/common';
import type { CertificateInfo } from './certificate-info.js';
import { decodeCertificate } from './internal/certificates.js';
import { describeCertificate } from './internal/describe.js';

/** Negotiated parameters of a TLS connection. Contains no secrets; ready to log as structured fields. */
export interface TlsConnectionDescription {
  /** e.g. `TLSv1.3`; null before the handshake completes. */
  readonly protocol: string | null;
  /** OpenSSL suite name, e.g. `TLS_AES_256_GCM_SHA384` or `ECDHE-ECDSA-AES128-GCM-SHA256`. */
  readonly cipher: string | undefined;
  /** IANA suite name, e.g. `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`. */
  readonly cipherStandardName: string | undefined;
  /** Key-exchange group, e.g. `X25519` (Node reports it on client sockets only). */
  readonly keyExchangeGroup: string | undefined;
  /** Whether the peer certificate was verified against the configured CA. */
  readonly authorized: boolean;
  /** OpenSSL's verification error code when not authorized, e.g. `UNABLE_TO_VERIFY_LEAF_SIGNATURE`. */
  readonly authorizationError: string | undefined;
  /** SHA-256 of the peer certificate (lowercase hex), when the peer sent one. */
  readonly peerFingerprintSha256: string | undefined;
  /** The peer certificate's expiry, ISO 8601. */
  readonly peerValidTo: string | undefined;
  readonly peerSubject: string | undefined;
  /** The peer certificate's first URI SAN (its workload identity, for Airlock client certificates). */
  readonly peerUri: string | undefined;
}

function peerInfo(socket: TLSSocket): CertificateInfo | undefined {
  const peer = socket.getPeerX509Certificate();
  if (peer === undefined) return undefined;
  try {
    return describeCertificate(decodeCertificate(new Uint8Array(peer.raw), 'peer certificate'));
  } catch {
    // OpenSSL accepted it during the handshake; if our parser cannot read it, report no identity
    // rather than fail a logging call.
    return undefined;
  }
}

/** Describes a TLS socket's negotiated protocol, suite and peer certificate (call after 'secureConnect'/'secureConnection'). */
export function describeTlsSocket(socket: TLSSocket): TlsConnectionDescription {
  // Typed as always present, but null on a socket whose handshake has not completed.
  const cipher: { name?: string; standardName?: string } | null = socket.getCipher() ?? null;
  const ephemeral = socket.getEphemeralKeyInfo() as { name?: unknown } | null;
  const peer = peerInfo(socket);
  const authorizationError = socket.authorizationError as unknown;
  return Object.freeze({
    protocol: socket.getProtocol(),
    cipher: cipher?.name,
    cipherStandardName: cipher?.standardName,
    keyExchangeGroup: typeof ephemeral?.name === 'string' ? ephemeral.name : undefined,
    authorized: socket.authorized,
    authorizationError:
      authorizationError === undefined || authorizationError === null
        ? undefined
        : authorizationError instanceof Error
          ? ((authorizationError as NodeJS.ErrnoException).code ?? authorizationError.message)
          : typeof authorizationError === 'string' ? authorizationError : 'unknown',
    peerFingerprintSha256: peer?.fingerprintSha256,
    peerValidTo: peer?.notAfter.toISOString(),
    peerSubject: peer?.subject,
    peerUri: peer?.uri,
  });
}

/**
 * The verified URI identity of an mTLS peer. Throws CERTIFICATE_UNTRUSTED unless the handshake
 * verified the peer certificate against the configured CA and that certificate carries a URI SAN.
 */
export function getPeerIdentity(socket: TLSSocket): string {
  if (!socket.authorized) throw new AirlockError('CERTIFICATE_UNTRUSTED', 'The peer certificate was not verified');
  const uri = peerInfo(socket)?.uri;
  if (uri === undefined) throw new AirlockError('CERTIFICATE_UNTRUSTED', 'The peer certificate carries no URI identity');
  return uri;
}
