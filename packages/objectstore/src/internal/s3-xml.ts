// S3 request XML parsing (entity-free, DOCTYPE-refusing) and response XML building for the embedded object store.
import { AirlockError } from '@airlock/common';
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';
import { CORS_METHODS, type ChecksumAlgorithm, type CorsMethod, type CorsRule, type SseAlgorithm, type SseRequest } from './engine-types.js';

/** The S3 document namespace every response root carries. */
export const S3_XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';

/** Elements S3 lets repeat, by path from the root; listed so one occurrence still parses as an array. */
const REPEATED: ReadonlySet<string> = new Set([
  'CompleteMultipartUpload.Part',
  'Delete.Object',
  'ServerSideEncryptionConfiguration.Rule',
  'CORSConfiguration.CORSRule',
  'CORSConfiguration.CORSRule.AllowedOrigin',
  'CORSConfiguration.CORSRule.AllowedMethod',
  'CORSConfiguration.CORSRule.AllowedHeader',
  'CORSConfiguration.CORSRule.ExposeHeader',
]);

const parser = new XMLParser({
  ignoreAttributes: true,
  // No entity expansion at all: only the five predefined entities and character references are
  // decoded, by decodeText below, so no document can define or expand its own.
  processEntities: false,
  htmlEntities: false,
  // Keys such as "0001" must stay strings.
  parseTagValue: false,
  parseAttributeValue: false,
  // Object keys may begin or end with spaces.
  trimValues: false,
  removeNSPrefix: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  cdataPropName: '#cdata',
  isArray: (_name, jpath) => REPEATED.has(String(jpath)),
});

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  // Values are escaped by escapeXml before building (it also covers characters XML 1.0 cannot carry).
  processEntities: false,
  suppressEmptyNode: false,
  format: false,
});

function malformed(problem: string): AirlockError {
  return new AirlockError('MALFORMED_XML', 'The XML you provided was not well-formed or did not validate against our published schema', {
    details: { reason: 'malformed-xml', problem },
  });
}

const PREDEFINED: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' };

/** Decodes the predefined entities and character references; anything else is malformed. */
function decodeText(raw: string): string {
  return raw.replace(/&([^;&\s]{0,16});?/g, (match, ref: string) => {
    if (!match.endsWith(';')) throw malformed('bare-ampersand');
    const named = PREDEFINED[ref];
    if (named !== undefined) return named;
    const numeric = /^#(?:x([0-9a-fA-F]{1,6})|([0-9]{1,7}))$/.exec(ref);
    if (numeric === null) throw malformed('undeclared-entity');
    const codePoint = numeric[1] !== undefined ? Number.parseInt(numeric[1], 16) : Number(numeric[2]);
    if (codePoint === 0 || codePoint > 0x10ffff || (codePoint >= 0xd800 && codePoint <= 0xdfff)) throw malformed('bad-character-reference');
    return String.fromCodePoint(codePoint);
  });
}

export type XmlNode = Readonly<Record<string, unknown>>;

/**
 * Parses an S3 request document and returns its root element's children. Refuses DOCTYPE
 * declarations (so no entity can be declared), non-UTF-8 bytes, and anything not well formed.
 */
export function parseXmlDocument(body: Uint8Array, rootName: string): XmlNode {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw malformed('not-utf8');
  }
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) throw malformed('doctype');
  if (text.trim() === '' || XMLValidator.validate(text) !== true) throw malformed('not-well-formed');
  let parsed: unknown;
  try {
    parsed = parser.parse(text);
  } catch {
    throw malformed('not-well-formed');
  }
  const roots = Object.keys(parsed as object);
  if (roots.length !== 1 || roots[0] !== rootName) throw malformed('unexpected-root');
  const root = (parsed as Record<string, unknown>)[rootName];
  // `<Root/>` and `<Root>  </Root>` parse as strings: an element with no children.
  if (typeof root === 'string') {
    if (root.trim() !== '') throw malformed('unexpected-text');
    return {};
  }
  if (typeof root !== 'object' || root === null || Array.isArray(root)) throw malformed('unexpected-root');
  return root as XmlNode;
}

/** The text of a child element, undefined if absent; an element with children (or repeated) is malformed. */
export function xmlText(node: XmlNode, name: string): string | undefined {
  const value = node[name];
  if (value === undefined) return undefined;
  if (typeof value === 'string') return decodeText(value);
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const entries = Object.entries(value);
    const cdata = (value as Record<string, unknown>)['#cdata'];
    if (entries.length === 1 && typeof cdata === 'string') return cdata;
  }
  throw malformed(`element-${name}`);
}

/** The children of a repeatable element (declared in REPEATED), or of an optional single child element. */
export function xmlChildren(node: XmlNode, name: string): XmlNode[] {
  const value = node[name];
  if (value === undefined) return [];
  const list = Array.isArray(value) ? (value as unknown[]) : [value];
  return list.map((item) => {
    if (item === '') return {};
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw malformed(`element-${name}`);
    return item as XmlNode;
  });
}

/** The texts of a repeatable text element (declared in REPEATED). */
export function xmlTexts(node: XmlNode, name: string): string[] {
  const value = node[name];
  if (value === undefined) return [];
  return (Array.isArray(value) ? (value as unknown[]) : [value]).map((item) => xmlText({ [name]: item }, name) as string);
}

function xmlBoolean(node: XmlNode, name: string): boolean | undefined {
  const text = xmlText(node, name)?.trim().toLowerCase();
  if (text === undefined) return undefined;
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw malformed(`boolean-${name}`);
}

// --- request documents ----------------------------------------------------------------------------

/** CreateBucketConfiguration: only checked for well-formedness; the location constraint is accepted and ignored. */
export function parseCreateBucketConfiguration(body: Uint8Array): void {
  const root = parseXmlDocument(body, 'CreateBucketConfiguration');
  xmlText(root, 'LocationConstraint');
}

export interface CompletedPart {
  readonly partNumber: number;
  readonly etag: string;
  readonly checksums?: Partial<Record<ChecksumAlgorithm, string>>;
}

/** The part checksum elements of CompleteMultipartUpload and their algorithms. */
const PART_CHECKSUM_ELEMENTS: ReadonlyArray<readonly [string, ChecksumAlgorithm]> = [
  ['ChecksumCRC32', 'CRC32'],
  ['ChecksumCRC32C', 'CRC32C'],
  ['ChecksumCRC64NVME', 'CRC64NVME'],
  ['ChecksumSHA1', 'SHA1'],
  ['ChecksumSHA256', 'SHA256'],
];

/** CompleteMultipartUpload > Part* > (PartNumber, ETag, Checksum*). */
export function parseCompleteMultipartUpload(body: Uint8Array): CompletedPart[] {
  const root = parseXmlDocument(body, 'CompleteMultipartUpload');
  const parts = xmlChildren(root, 'Part').map((part) => {
    const number = xmlText(part, 'PartNumber')?.trim();
    const etag = xmlText(part, 'ETag')?.trim();
    if (number === undefined || !/^\d{1,5}$/.test(number) || etag === undefined || etag === '') throw malformed('part');
    const checksums: Partial<Record<ChecksumAlgorithm, string>> = {};
    for (const [element, algorithm] of PART_CHECKSUM_ELEMENTS) {
      const value = xmlText(part, element)?.trim();
      if (value !== undefined) checksums[algorithm] = value;
    }
    // Clients send ETags quoted (as S3 returns them) or bare; the engine compares them unquoted.
    return { partNumber: Number(number), etag: etag.startsWith('"') ? etag : `"${etag}"`, ...(Object.keys(checksums).length === 0 ? {} : { checksums }) };
  });
  if (parts.length === 0) throw malformed('no-parts');
  return parts;
}

export interface DeleteRequest {
  readonly quiet: boolean;
  readonly objects: ReadonlyArray<{ readonly key: string; readonly versionId?: string; readonly etag?: string }>;
}

/** Delete > (Quiet?, Object* > (Key, VersionId?, ETag?)); at most 1000 objects, as S3. An ETag makes that entry's delete conditional, as If-Match does. */
export function parseDeleteObjects(body: Uint8Array): DeleteRequest {
  const root = parseXmlDocument(body, 'Delete');
  const objects = xmlChildren(root, 'Object');
  if (objects.length === 0 || objects.length > 1000) throw malformed('object-count');
  return {
    quiet: xmlBoolean(root, 'Quiet') ?? false,
    objects: objects.map((object) => {
      const key = xmlText(object, 'Key');
      if (key === undefined) throw malformed('object-key');
      const versionId = xmlText(object, 'VersionId');
      const etag = xmlText(object, 'ETag')?.trim();
      return { key, ...(versionId === undefined ? {} : { versionId }), ...(etag === undefined || etag === '' ? {} : { etag }) };
    }),
  };
}

const SSE_ALGORITHMS: readonly string[] = ['AES256', 'aws:kms'];

/** ServerSideEncryptionConfiguration > Rule > (ApplyServerSideEncryptionByDefault > (SSEAlgorithm, KMSMasterKeyID?), BucketKeyEnabled?). */
export function parseEncryptionConfiguration(body: Uint8Array): SseRequest {
  const root = parseXmlDocument(body, 'ServerSideEncryptionConfiguration');
  const rules = xmlChildren(root, 'Rule');
  // S3 accepts exactly one rule.
  if (rules.length !== 1) throw malformed('rule-count');
  const rule = rules[0] as XmlNode;
  const defaults = xmlChildren(rule, 'ApplyServerSideEncryptionByDefault');
  if (defaults.length !== 1) throw malformed('apply-default');
  const apply = defaults[0] as XmlNode;
  const algorithm = xmlText(apply, 'SSEAlgorithm')?.trim();
  if (algorithm === undefined) throw malformed('sse-algorithm');
  if (algorithm === 'aws:kms:dsse') throw new AirlockError('NOT_IMPLEMENTED', 'Dual-layer SSE-KMS (aws:kms:dsse) is not supported');
  if (!SSE_ALGORITHMS.includes(algorithm)) throw malformed('sse-algorithm');
  const kmsKeyId = xmlText(apply, 'KMSMasterKeyID')?.trim();
  const bucketKeyEnabled = xmlBoolean(rule, 'BucketKeyEnabled');
  return {
    algorithm: algorithm as SseAlgorithm,
    ...(kmsKeyId === undefined || kmsKeyId === '' ? {} : { kmsKeyId }),
    ...(bucketKeyEnabled === undefined ? {} : { bucketKeyEnabled }),
  };
}

/** S3's limit on the rules of one CORS configuration. */
const MAX_CORS_RULES = 100;

function invalidCors(message: string): AirlockError {
  return new AirlockError('INVALID_ARGUMENT', message, { details: { reason: 'invalid-request' } });
}

/**
 * CORSConfiguration > CORSRule+ > (ID?, AllowedOrigin+, AllowedMethod+, AllowedHeader*,
 * ExposeHeader*, MaxAgeSeconds?), checked as S3 checks it: a method other than GET, PUT, HEAD,
 * POST or DELETE, or an origin or header with more than one `*`, is InvalidRequest.
 */
export function parseCorsConfiguration(body: Uint8Array): CorsRule[] {
  const root = parseXmlDocument(body, 'CORSConfiguration');
  const rules = xmlChildren(root, 'CORSRule');
  if (rules.length === 0 || rules.length > MAX_CORS_RULES) throw malformed('cors-rule-count');
  return rules.map((rule) => {
    const id = xmlText(rule, 'ID');
    const allowedOrigins = xmlTexts(rule, 'AllowedOrigin').map((origin) => origin.trim());
    const methods = xmlTexts(rule, 'AllowedMethod').map((method) => method.trim());
    const allowedHeaders = xmlTexts(rule, 'AllowedHeader').map((name) => name.trim());
    const exposeHeaders = xmlTexts(rule, 'ExposeHeader').map((name) => name.trim());
    const maxAge = xmlText(rule, 'MaxAgeSeconds')?.trim();
    if (allowedOrigins.length === 0 || methods.length === 0) throw malformed('cors-rule');
    if (id !== undefined && id.length > 255) throw invalidCors('The ID of a CORS rule must be at most 255 characters');
    const unsupported = methods.find((method) => !(CORS_METHODS as readonly string[]).includes(method));
    if (unsupported !== undefined) throw invalidCors(`Found unsupported HTTP method in CORS config. Unsupported method is ${unsupported}`);
    for (const origin of allowedOrigins) {
      if (origin.split('*').length > 2) throw invalidCors(`AllowedOrigin "${origin}" can not have more than one wildcard.`);
    }
    for (const name of allowedHeaders) {
      if (name.split('*').length > 2) throw invalidCors(`AllowedHeader "${name}" can not have more than one wildcard.`);
    }
    if (maxAge !== undefined && !/^\d{1,10}$/.test(maxAge)) throw malformed('cors-max-age');
    return {
      ...(id === undefined ? {} : { id }),
      allowedOrigins,
      allowedMethods: methods as CorsMethod[],
      allowedHeaders,
      exposeHeaders,
      ...(maxAge === undefined ? {} : { maxAgeSeconds: Number(maxAge) }),
    };
  });
}

/** GetBucketCors's document: the rules as they were put. */
export function buildCorsConfiguration(rules: readonly CorsRule[]): string {
  return buildXml('CORSConfiguration', {
    CORSRule: rules.map((rule) => ({
      ID: rule.id,
      AllowedHeader: [...rule.allowedHeaders],
      AllowedMethod: [...rule.allowedMethods],
      AllowedOrigin: [...rule.allowedOrigins],
      ExposeHeader: [...rule.exposeHeaders],
      MaxAgeSeconds: rule.maxAgeSeconds,
    })),
  });
}

// --- response documents ---------------------------------------------------------------------------

/**
 * Escapes text for XML. Characters XML 1.0 cannot hold (most C0 controls) become numeric
 * references as S3 writes them, and CR is escaped so a parser's newline normalisation keeps it.
 */
export function escapeXml(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point: XML 1.0 cannot carry them raw.
  return text.replace(/[&<>"'\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      case "'":
        return '&apos;';
      default:
        return `&#x${(c.codePointAt(0) as number).toString(16).toUpperCase()};`;
    }
  });
}

/** An XML element tree: strings/numbers/booleans are text, arrays repeat an element, '@_' keys are attributes. */
export type XmlValue = string | number | boolean | XmlElement | readonly XmlValue[] | undefined;
export interface XmlElement {
  readonly [name: string]: XmlValue;
}

function escapeTree(value: XmlValue): unknown {
  if (value === undefined) return undefined;
  if (typeof value === 'string') return escapeXml(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return (value as readonly XmlValue[]).map(escapeTree);
  const out: Record<string, unknown> = {};
  for (const [name, child] of Object.entries(value as XmlElement)) {
    if (child !== undefined) out[name] = escapeTree(child);
  }
  return out;
}

/** Builds a response document: XML declaration, then `rootName` in the S3 namespace. Every text value is escaped. */
export function buildXml(rootName: string, content: XmlElement, options: { readonly namespace?: boolean } = {}): string {
  const root = options.namespace === false ? content : { '@_xmlns': S3_XMLNS, ...content };
  return `<?xml version="1.0" encoding="UTF-8"?>\n${builder.build({ [rootName]: escapeTree(root) })}`;
}
