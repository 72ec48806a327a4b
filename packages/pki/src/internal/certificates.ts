// Decoding of PEM/DER certificates and CSRs into @peculiar/x509 objects, mapping every parse failure to CERTIFICATE_INVALID.
import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import { AirlockError } from '@airlock/common';
import { x509 } from './x509.js';

/** Certificate input accepted by the public API: PEM text (one or more blocks) or DER bytes. */
export type CertificateInput = string | Uint8Array;

function invalid(argument: string, cause?: unknown): AirlockError {
  return new AirlockError('CERTIFICATE_INVALID', `${argument} is not a well-formed certificate`, {
    cause,
    details: { argument },
  });
}

/** Splits PEM text into the DER bodies of its blocks with the given label; other labels are rejected. */
function pemBlocks(pem: string, label: string, argument: string): Uint8Array[] {
  let structs: ReturnType<typeof x509.PemConverter.decodeWithHeaders>;
  try {
    structs = x509.PemConverter.decodeWithHeaders(pem);
  } catch (error) {
    throw invalid(argument, error);
  }
  if (structs.length === 0) throw invalid(argument);
  return structs.map((struct) => {
    if (struct.type !== label) throw invalid(argument);
    return new Uint8Array(struct.rawData);
  });
}

function derToCertificate(der: Uint8Array, argument: string): x509.X509Certificate {
  try {
    // OpenSSL's strict DER parser is a second gate: @peculiar/asn1-schema tolerates some BER forms
    // and trailing bytes, and a certificate must mean the same thing to us as to the TLS stack.
    const strict = new NodeX509Certificate(der);
    if (strict.raw.byteLength !== der.byteLength) throw new Error('trailing data after certificate');
    const certificate = new x509.X509Certificate(der);
    // Touch the lazily parsed fields now, so that a malformed extension fails here and not later.
    void certificate.extensions;
    void certificate.notBefore;
    void certificate.notAfter;
    void certificate.publicKey.algorithm;
    void certificate.signatureAlgorithm;
    return certificate;
  } catch (error) {
    throw invalid(argument, error);
  }
}

/** Decodes every certificate in `input` (PEM blocks in order, or a single DER certificate). */
export function decodeCertificates(input: CertificateInput, argument: string): x509.X509Certificate[] {
  if (typeof input === 'string') {
    return pemBlocks(input, 'CERTIFICATE', argument).map((der) => derToCertificate(der, argument));
  }
  if (!(input instanceof Uint8Array)) {
    throw new AirlockError('INVALID_ARGUMENT', `${argument} must be PEM text or DER bytes`, { details: { argument } });
  }
  return [derToCertificate(input, argument)];
}

/** Decodes exactly one certificate. */
export function decodeCertificate(input: CertificateInput, argument: string): x509.X509Certificate {
  const certificates = decodeCertificates(input, argument);
  const [first] = certificates;
  if (first === undefined || certificates.length !== 1) {
    throw new AirlockError('INVALID_ARGUMENT', `${argument} must hold exactly one certificate`, { details: { argument } });
  }
  return first;
}

/** Decodes one PKCS#10 certificate request from PEM ("CERTIFICATE REQUEST") or DER. */
export function decodeCertificateRequest(input: CertificateInput, argument: string): x509.Pkcs10CertificateRequest {
  let der: Uint8Array;
  if (typeof input === 'string') {
    const blocks = pemBlocks(input, 'CERTIFICATE REQUEST', argument);
    const [first] = blocks;
    if (first === undefined || blocks.length !== 1) throw invalid(argument);
    der = first;
  } else if (input instanceof Uint8Array) {
    der = input;
  } else {
    throw new AirlockError('INVALID_ARGUMENT', `${argument} must be PEM text or DER bytes`, { details: { argument } });
  }
  try {
    const request = new x509.Pkcs10CertificateRequest(der);
    void request.publicKey.algorithm;
    void request.signatureAlgorithm;
    return request;
  } catch (error) {
    throw invalid(argument, error);
  }
}

/**
 * PEM text for DER bytes, ending in a newline as openssl writes it. The library's encoder omits the
 * final newline, which breaks files made by concatenating PEM blocks ("bad end line").
 */
export function encodePem(der: ArrayBuffer | Uint8Array, label: string): string {
  return `${x509.PemConverter.encode(der, label)}\n`;
}

/** Byte-wise equality of two DER encodings (public data, so no constant-time need). */
export function sameBytes(a: ArrayBuffer, b: ArrayBuffer): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}
