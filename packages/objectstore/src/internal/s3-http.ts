// The S3 REST protocol over the storage engine: SigV4 on every request, path-style routing, XML in and out, errors in one place.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AirlockError, type Logger } from '@airlock/common';
import { verifyRequest, type SecretLookup, type VerifiedRequest } from '@airlock/crypto';
import type { KeyEventStatus } from '@airlock/kms';
import { CORS_VARY, corsResponseHeaders, matchCorsRule, requestedHeaders } from './cors.js';
import {
  listingPage,
  resolveRange,
  type BucketEncryption,
  type ChecksumAlgorithm,
  type CorsRule,
  type ObjectEngine,
  type ObjectMeta,
  type RangeRequest,
} from './engine-types.js';
import { encodeHeaderText } from './mime-words.js';
import { s3ErrorFor, s3ErrorXml, type S3AuthType } from './s3-errors.js';
import {
  checkCopySourcePreconditions,
  checkHeaderValue,
  checkKey,
  checkPreconditions,
  checkSseCustomerHeaders,
  checksumHeaders,
  header,
  invalidRequest,
  MAX_OBJECT_BYTES,
  openRequestBody,
  parseQuery,
  parseRange,
  parseResource,
  parseCompletionChecksum,
  parseSseHeaders,
  parseStoredHeaders,
  parseUploadChecksum,
  parseUserMetadata,
  parseWriteCondition,
  parseCopyChecksumAlgorithm,
  percentDecode,
  readSmallBody,
  refuseSseHeadersOnRead,
  refuseUnsupportedHeaders,
  splitTarget,
  type S3Target,
} from './s3-request.js';
import {
  buildCorsConfiguration,
  buildXml,
  parseCompleteMultipartUpload,
  parseCorsConfiguration,
  parseCreateBucketConfiguration,
  parseDeleteObjects,
  parseEncryptionConfiguration,
  type XmlElement,
} from './s3-xml.js';

export interface S3RequestHandlerOptions {
  readonly engine: ObjectEngine;
  /** The secret of an access key allowed to use the store, or undefined. */
  readonly lookupSecret: SecretLookup;
  /** The region of the SigV4 credential scope, returned by GetBucketLocation. */
  readonly region: string;
  readonly log: Logger;
  /** The clock signatures are checked against (tests move it). @default () => new Date() */
  readonly now?: () => Date;
  /** Allowed clock skew for header-signed requests, in seconds. @default 900 (as S3) */
  readonly maxSkewSeconds?: number;
  /** Largest PutObject / UploadPart body. @default 5 GiB (S3's single-PUT limit) */
  readonly maxObjectBytes?: number;
  /** Largest XML request body (DeleteObjects with 1000 long keys needs about 1.1 MiB). @default 2 MiB */
  readonly maxXmlBytes?: number;
  /** Other key-event subscriptions of this process that /health reports (ObjectStoreServerOptions.keyEventHolders). @default none */
  readonly keyEventHolders?: Readonly<Record<string, () => KeyEventStatus>>;
}

/** A request listener for a node:https server. */
export interface S3RequestHandler {
  (req: IncomingMessage, res: ServerResponse): Promise<void>;
  /**
   * For the server's 'checkContinue' event (`Expect: 100-continue`): the request is authenticated
   * and routed first, and `100 Continue` goes out only when the handler starts reading the body,
   * so a refused upload is never transferred.
   */
  readonly checkContinue: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
}

/** Everything an operation needs about its request. */
interface S3Call {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  readonly target: S3Target;
  readonly query: ReadonlyMap<string, string>;
  readonly verified: VerifiedRequest;
  /** The client sent `Expect: 100-continue` and has not been told to go on yet. */
  awaitingContinue: boolean;
}

interface BucketCall extends S3Call {
  readonly bucket: string;
}

interface ObjectCall extends BucketCall {
  readonly key: string;
}

/** The single owner of everything in this store, as S3 reports owners. */
const OWNER: XmlElement = Object.freeze({
  ID: createHash('sha256').update('airlock-objectstore-owner').digest('hex'),
  DisplayName: 'airlock',
});

/** Subresources S3 has and this store does not: NotImplemented rather than a wrong answer. */
const UNSUPPORTED_SUBRESOURCES: readonly string[] = [
  'accelerate',
  'analytics',
  'cors',
  'intelligent-tiering',
  'inventory',
  'legal-hold',
  'lifecycle',
  'logging',
  'metadataTable',
  'metrics',
  'notification',
  'object-lock',
  'ownershipControls',
  'policy',
  'policyStatus',
  'publicAccessBlock',
  'renameObject',
  'replication',
  'requestPayment',
  'restore',
  'retention',
  'select',
  'session',
  'tagging',
  'torrent',
  'website',
];

/** GetObject / HeadObject query parameters that override response headers. */
const RESPONSE_OVERRIDES: ReadonlyArray<readonly [string, string]> = [
  ['response-content-type', 'content-type'],
  ['response-content-language', 'content-language'],
  ['response-expires', 'expires'],
  ['response-cache-control', 'cache-control'],
  ['response-content-disposition', 'content-disposition'],
  ['response-content-encoding', 'content-encoding'],
];

const XML_CONTENT_TYPE = 'application/xml';

/** The attributes GetObjectAttributes knows. */
const OBJECT_ATTRIBUTES: readonly string[] = ['ETag', 'Checksum', 'ObjectParts', 'StorageClass', 'ObjectSize'];

/** Checksums as S3's XML names them (ChecksumCRC32, …). */
function checksumElements(checksums: Readonly<Partial<Record<ChecksumAlgorithm, string>>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [algorithm, value] of Object.entries(checksums)) out[`Checksum${algorithm}`] = value;
  return out;
}

function iso(date: Date): string {
  return date.toISOString();
}

/** S3 request ids: 16 upper-case hex digits. */
function newRequestId(): string {
  return randomBytes(8).toString('hex').toUpperCase();
}

function hasQueryAuth(rawQuery: string): boolean {
  return rawQuery.split('&').some((part) => /^X-Amz-(?:Algorithm|Credential|Signature)(?:=|$)/.test(part));
}

function notImplemented(message: string): AirlockError {
  return new AirlockError('NOT_IMPLEMENTED', message);
}

/** The S3 operation a subresource request names, for logs: PUT /b?cors → PutBucketCors, GET /b/k?legal-hold → GetObjectLegalHold. */
function subresourceOperation(method: string, target: 'Bucket' | 'Object', subresource: string): string {
  const words = [method.toLowerCase(), target, ...subresource.split('-')];
  return words.map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join('');
}

function methodNotAllowed(): AirlockError {
  return new AirlockError('METHOD_NOT_ALLOWED', 'The specified method is not allowed against this resource.');
}

function sseHeaders(encryption: BucketEncryption): Record<string, string> {
  const headers: Record<string, string> = { 'x-amz-server-side-encryption': encryption.algorithm };
  if (encryption.algorithm === 'aws:kms') {
    if (encryption.kmsKeyArn !== undefined) headers['x-amz-server-side-encryption-aws-kms-key-id'] = encryption.kmsKeyArn;
    if (encryption.bucketKeyEnabled) headers['x-amz-server-side-encryption-bucket-key-enabled'] = 'true';
  }
  return headers;
}

/** S3's `encoding-type=url`: keys percent-encoded (botocore decodes with unquote_plus, so '+' must be %2B). */
function urlEncodeKey(value: string): string {
  return encodeURIComponent(value)
    .replace(/[!'()*]/g, (c) => `%${(c.codePointAt(0) as number).toString(16).toUpperCase()}`)
    .replace(/%2F/g, '/');
}

function encodeContinuationToken(after: string): string {
  return Buffer.from(after, 'utf8').toString('base64');
}

function decodeContinuationToken(token: string): string {
  const decoded = /^[A-Za-z0-9+/]+={0,2}$/.test(token) ? Buffer.from(token, 'base64') : undefined;
  if (decoded !== undefined && decoded.toString('base64') === token) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(decoded);
    } catch {
      // Falls through to the error below.
    }
  }
  throw new AirlockError('INVALID_ARGUMENT', 'The continuation token provided is incorrect');
}

/** A listing's `encoding-type`: keys as they are, or URL-encoded (`url`, the only type S3 knows). */
function listingEncoding(value: string | undefined): { encodingType: 'url' | undefined; encode: (key: string) => string } {
  if (value === undefined) return { encodingType: undefined, encode: (key) => key };
  if (value.toLowerCase() !== 'url') throw new AirlockError('INVALID_ARGUMENT', 'Invalid Encoding Method specified in Request');
  return { encodingType: 'url', encode: urlEncodeKey };
}

function parseMaxKeys(value: string | undefined, name: string): number {
  if (value === undefined) return 1000;
  if (!/^\d{1,10}$/.test(value)) throw new AirlockError('INVALID_ARGUMENT', `Provided ${name} not an integer or within integer range`);
  return Math.min(Number(value), 1000);
}

function parsePartNumber(value: string | undefined): number {
  if (value === undefined || !/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 10000) {
    throw new AirlockError('INVALID_ARGUMENT', 'Part number must be an integer between 1 and 10000, inclusive');
  }
  return Number(value);
}

function parseCopySource(value: string): { bucket: string; key: string } {
  // A version id may follow ('?versionId=…'); objects here have no versions, so it is ignored.
  const raw = value.trim().split('?')[0] as string;
  const decoded = percentDecode(raw);
  if (decoded === undefined) throw new AirlockError('INVALID_ARGUMENT', 'Invalid copy source encoding');
  const path = decoded.startsWith('/') ? decoded.slice(1) : decoded;
  const slash = path.indexOf('/');
  if (slash <= 0 || slash === path.length - 1) {
    throw new AirlockError('INVALID_ARGUMENT', 'Copy Source must mention the source bucket and key: sourcebucket/sourcekey');
  }
  return { bucket: path.slice(0, slash), key: checkKey(path.slice(slash + 1)) };
}

function checkVersionId(call: S3Call): void {
  const versionId = call.query.get('versionId');
  if (versionId !== undefined && versionId !== 'null') throw new AirlockError('INVALID_ARGUMENT', 'Invalid version id specified');
}

/** True when the request carries a body (declared or streamed). */
function hasBody(req: IncomingMessage): boolean {
  const length = header(req, 'content-length');
  return (length !== undefined && length.trim() !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/** Creates the S3 request listener. See S3RequestHandlerOptions. */
export function createS3RequestHandler(options: S3RequestHandlerOptions): S3RequestHandler {
  const { engine, log, region } = options;
  const now = options.now ?? (() => new Date());
  const maxObjectBytes = options.maxObjectBytes ?? MAX_OBJECT_BYTES;
  const maxXmlBytes = options.maxXmlBytes ?? 2 * 1024 * 1024;
  const maxSkewSeconds = options.maxSkewSeconds ?? 900;

  // --- responses ----------------------------------------------------------------------------------

  const sendXml = (call: S3Call, status: number, xml: string, headers: Record<string, string> = {}): void => {
    call.res.writeHead(status, { ...headers, 'content-type': XML_CONTENT_TYPE, 'content-length': Buffer.byteLength(xml) });
    call.res.end(xml);
  };

  const sendEmpty = (call: S3Call, status: number, headers: Record<string, string> = {}): void => {
    // 204 and 304 carry no Content-Length (RFC 9110 §8.6).
    call.res.writeHead(status, status === 204 || status === 304 ? headers : { ...headers, 'content-length': 0 });
    call.res.end();
  };

  const sendContinue = (call: S3Call): void => {
    if (call.awaitingContinue) {
      call.awaitingContinue = false;
      call.res.writeContinue();
    }
  };

  /** Long engine work (re-encrypting a multipart upload, a copy) must not trip the idle-socket timeout. */
  const withoutIdleTimeout = async <T>(call: S3Call, work: () => Promise<T>): Promise<T> => {
    const socket = call.req.socket;
    const previous = socket.timeout ?? 0;
    if (previous > 0) socket.setTimeout(0);
    try {
      return await work();
    } finally {
      if (previous > 0 && !socket.destroyed) socket.setTimeout(previous);
    }
  };

  const readXml = (call: S3Call, options: { readonly checksumHeadersCoverBody?: boolean } = {}): Promise<Buffer> =>
    readSmallBody(openRequestBody(call.req, call.verified, { maxBytes: maxXmlBytes, tooLargeReason: 'xml-too-large', onStart: () => sendContinue(call), ...options }));

  // --- service and buckets ------------------------------------------------------------------------

  /** ListBuckets, paged as S3 pages it: max-buckets (1 – 10000), prefix, continuation-token, bucket-region; without max-buckets, every bucket. */
  const listBuckets = (call: S3Call): void => {
    const { query } = call;
    const maxText = query.get('max-buckets');
    if (maxText !== undefined && (!/^\d{1,5}$/.test(maxText) || Number(maxText) < 1 || Number(maxText) > 10000)) {
      throw new AirlockError('INVALID_ARGUMENT', 'Argument max-buckets must be an integer between 1 and 10000');
    }
    const prefix = query.get('prefix') ?? '';
    const token = query.get('continuation-token');
    const after = token === undefined || token === '' ? undefined : decodeContinuationToken(token);
    // Every bucket is in the store's one region: another bucket-region lists none.
    const bucketRegion = query.get('bucket-region');
    const buckets = bucketRegion === undefined || bucketRegion === region ? engine.listBuckets() : [];
    const page = listingPage(buckets, (bucket) => bucket.name, {
      prefix,
      ...(after === undefined ? {} : { marker: after }),
      max: maxText === undefined ? Number.MAX_SAFE_INTEGER : Number(maxText),
    });
    sendXml(
      call,
      200,
      buildXml('ListAllMyBucketsResult', {
        Owner: OWNER,
        Buckets: { Bucket: page.entries.map((bucket) => ({ Name: bucket.name, CreationDate: iso(bucket.createdAt), BucketRegion: region })) },
        // S3 names the next page's token ContinuationToken in the answer.
        ContinuationToken: page.truncated && page.last !== undefined ? encodeContinuationToken(page.last.key) : undefined,
        Prefix: query.has('prefix') ? prefix : undefined,
      }),
    );
  };

  const createBucket = async (call: BucketCall): Promise<void> => {
    refuseUnsupportedHeaders(call.req);
    if (header(call.req, 'x-amz-bucket-object-lock-enabled')?.toLowerCase() === 'true') throw notImplemented('Object Lock is not supported');
    // The location constraint is accepted and ignored: this store has one region.
    if (hasBody(call.req)) parseCreateBucketConfiguration(await readXml(call));
    await engine.createBucket(call.bucket);
    sendEmpty(call, 200, { location: `/${call.bucket}` });
  };

  const headBucket = (call: BucketCall): void => {
    engine.headBucket(call.bucket);
    sendEmpty(call, 200, { 'x-amz-bucket-region': region });
  };

  const deleteBucket = async (call: BucketCall): Promise<void> => {
    await engine.deleteBucket(call.bucket);
    sendEmpty(call, 204);
  };

  const getBucketLocation = (call: BucketCall): void => {
    engine.headBucket(call.bucket);
    // S3 reports us-east-1 as an empty constraint; clients read that as us-east-1.
    sendXml(call, 200, buildXml('LocationConstraint', { '#text': region === 'us-east-1' ? '' : region }));
  };

  const getBucketEncryption = (call: BucketCall): void => {
    const encryption = engine.getBucketEncryption(call.bucket);
    sendXml(
      call,
      200,
      buildXml('ServerSideEncryptionConfiguration', {
        Rule: {
          ApplyServerSideEncryptionByDefault: { SSEAlgorithm: encryption.algorithm, KMSMasterKeyID: encryption.kmsKeyArn },
          BucketKeyEnabled: encryption.bucketKeyEnabled,
        },
      }),
    );
  };

  const putBucketEncryption = async (call: BucketCall): Promise<void> => {
    engine.headBucket(call.bucket);
    const sse = parseEncryptionConfiguration(await readXml(call));
    await engine.putBucketEncryption(call.bucket, sse);
    sendEmpty(call, 200);
  };

  const deleteBucketEncryption = async (call: BucketCall): Promise<void> => {
    await engine.deleteBucketEncryption(call.bucket);
    sendEmpty(call, 204);
  };

  const getBucketCors = (call: BucketCall): void => {
    const rules = engine.getBucketCors(call.bucket);
    if (rules === undefined) throw new AirlockError('NOT_FOUND', 'The CORS configuration does not exist', { details: { reason: 'no-such-cors-configuration' } });
    sendXml(call, 200, buildCorsConfiguration(rules));
  };

  const putBucketCors = async (call: BucketCall): Promise<void> => {
    engine.headBucket(call.bucket);
    await engine.putBucketCors(call.bucket, parseCorsConfiguration(await readXml(call)));
    sendEmpty(call, 200);
  };

  const deleteBucketCors = async (call: BucketCall): Promise<void> => {
    await engine.deleteBucketCors(call.bucket);
    sendEmpty(call, 204);
  };

  const getAcl = (call: BucketCall & { readonly key?: string }): void => {
    if (call.key === undefined) engine.headBucket(call.bucket);
    else engine.headObject(call.bucket, call.key);
    // A fixed answer that is true of this store: one owner, full control, nothing public.
    sendXml(
      call,
      200,
      buildXml('AccessControlPolicy', {
        Owner: OWNER,
        AccessControlList: {
          Grant: {
            Grantee: { '@_xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance', '@_xsi:type': 'CanonicalUser', ...OWNER },
            Permission: 'FULL_CONTROL',
          },
        },
      }),
    );
  };

  const getObjectTagging = (call: ObjectCall): void => {
    checkVersionId(call);
    engine.headObject(call.bucket, call.key);
    // Tags are refused on write (x-amz-tagging), so every object truly has none. The AWS CLI asks
    // before a multipart copy, to carry tags over.
    sendXml(call, 200, buildXml('Tagging', { TagSet: {} }));
  };

  /** Unsupported subresources still answer NoSuchBucket / NoSuchKey for what does not exist, as S3 does. */
  const unsupportedSubresource = (call: BucketCall & { readonly key?: string }, name: string): AirlockError => {
    if (call.key === undefined) engine.headBucket(call.bucket);
    else engine.headObject(call.bucket, call.key);
    return notImplemented(`The ${name} subresource is not supported`);
  };

  const getBucketVersioning = (call: BucketCall): void => {
    engine.headBucket(call.bucket);
    // Versioning was never enabled: S3 answers with an empty configuration.
    sendXml(call, 200, buildXml('VersioningConfiguration', {}));
  };

  const listObjects = (call: BucketCall, v2: boolean): void => {
    const { query } = call;
    const { encodingType, encode } = listingEncoding(query.get('encoding-type'));
    const maxKeys = parseMaxKeys(query.get('max-keys'), 'max-keys');
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') || undefined;
    const token = v2 ? query.get('continuation-token') : undefined;
    const startAfter = v2 ? query.get('start-after') : query.get('marker');
    const after = token !== undefined ? decodeContinuationToken(token) : startAfter || undefined;
    const result = engine.listObjects({ bucket: call.bucket, prefix, delimiter, after, maxKeys });
    const truncated = result.isTruncated && result.nextAfter !== undefined;
    const contents = result.objects.map((object: ObjectMeta) => ({
      Key: encode(object.key),
      LastModified: iso(object.lastModified),
      ETag: object.etag,
      Size: object.size,
      StorageClass: 'STANDARD',
      Owner: !v2 || query.get('fetch-owner') === 'true' ? OWNER : undefined,
    }));
    const commonPrefixes = result.commonPrefixes.map((commonPrefix) => ({ Prefix: encode(commonPrefix) }));
    const common = {
      Name: call.bucket,
      Prefix: encode(prefix),
      Delimiter: delimiter === undefined ? undefined : encode(delimiter),
      MaxKeys: maxKeys,
      EncodingType: encodingType,
      IsTruncated: truncated,
    };
    const document: XmlElement = v2
      ? {
          ...common,
          KeyCount: contents.length + commonPrefixes.length,
          ContinuationToken: token,
          NextContinuationToken: truncated ? encodeContinuationToken(result.nextAfter) : undefined,
          StartAfter: startAfter === undefined ? undefined : encode(startAfter),
          Contents: contents,
          CommonPrefixes: commonPrefixes,
        }
      : {
          ...common,
          Marker: encode(startAfter ?? ''),
          // S3 sends NextMarker only with a delimiter; sending it always is harmless and saves clients a guess.
          NextMarker: truncated ? encode(result.nextAfter) : undefined,
          Contents: contents,
          CommonPrefixes: commonPrefixes,
        };
    sendXml(call, 200, buildXml('ListBucketResult', document));
  };

  /**
   * ListObjectVersions on a bucket that never had versioning: every object is its one version, with
   * version id `null`, as S3 lists them (bucket-cleaning tools ask this before deleting).
   */
  const listObjectVersions = (call: BucketCall): void => {
    const { query } = call;
    const { encodingType, encode } = listingEncoding(query.get('encoding-type'));
    const maxKeys = parseMaxKeys(query.get('max-keys'), 'max-keys');
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') || undefined;
    const keyMarker = query.get('key-marker') || undefined;
    const versionIdMarker = query.get('version-id-marker') || undefined;
    if (versionIdMarker !== undefined && keyMarker === undefined) throw new AirlockError('INVALID_ARGUMENT', 'A version-id marker cannot be specified without a key marker.');
    if (versionIdMarker !== undefined && versionIdMarker !== 'null') throw new AirlockError('INVALID_ARGUMENT', 'Invalid version id specified');
    // Each key has one version, so the keys after key-marker are what follows (key-marker, any version).
    const result = engine.listObjects({ bucket: call.bucket, prefix, delimiter, after: keyMarker, maxKeys });
    const truncated = result.isTruncated && result.nextAfter !== undefined;
    const lastIsKey = truncated && result.objects.at(-1)?.key === result.nextAfter;
    sendXml(
      call,
      200,
      buildXml('ListVersionsResult', {
        Name: call.bucket,
        Prefix: encode(prefix),
        KeyMarker: encode(keyMarker ?? ''),
        VersionIdMarker: versionIdMarker ?? '',
        NextKeyMarker: truncated ? encode(result.nextAfter) : undefined,
        NextVersionIdMarker: lastIsKey ? 'null' : undefined,
        MaxKeys: maxKeys,
        Delimiter: delimiter === undefined ? undefined : encode(delimiter),
        EncodingType: encodingType,
        IsTruncated: truncated,
        Version: result.objects.map((object) => ({
          Key: encode(object.key),
          VersionId: 'null',
          IsLatest: true,
          LastModified: iso(object.lastModified),
          ETag: object.etag,
          Size: object.size,
          Owner: OWNER,
          StorageClass: 'STANDARD',
        })),
        CommonPrefixes: result.commonPrefixes.map((commonPrefix) => ({ Prefix: encode(commonPrefix) })),
      }),
    );
  };

  const deleteObjects = async (call: BucketCall): Promise<void> => {
    engine.headBucket(call.bucket);
    const { quiet, objects } = parseDeleteObjects(await readXml(call));
    const deleted: XmlElement[] = [];
    const errors: XmlElement[] = [];
    for (const { key, versionId, etag } of objects) {
      try {
        if (versionId !== undefined && versionId !== 'null') throw new AirlockError('INVALID_ARGUMENT', 'Invalid version id specified');
        await engine.deleteObject(call.bucket, checkKey(key), etag === undefined ? undefined : { ifMatch: etag });
        if (!quiet) deleted.push({ Key: key, VersionId: versionId });
      } catch (error) {
        const e = AirlockError.from(error);
        const wire = s3ErrorFor(e);
        if (wire.status >= 500) log.error({ err: error, code: e.code }, 'S3 DeleteObjects entry failed');
        errors.push({ Key: key, VersionId: versionId, Code: wire.code, Message: wire.message });
      }
    }
    sendXml(call, 200, buildXml('DeleteResult', { Deleted: deleted, Error: errors }));
  };

  // --- objects ------------------------------------------------------------------------------------

  const responseOverrides = (call: S3Call): Record<string, string> => {
    const headers: Record<string, string> = {};
    for (const [param, name] of RESPONSE_OVERRIDES) {
      const value = call.query.get(param);
      if (value !== undefined) headers[name] = checkHeaderValue(param, value);
    }
    return headers;
  };

  const objectHeaders = (call: S3Call, meta: ObjectMeta, range: { start: number; end: number } | undefined): Record<string, string | number> => {
    const headers: Record<string, string | number> = {
      'last-modified': meta.lastModified.toUTCString(),
      etag: meta.etag,
      'content-length': range === undefined ? meta.size : range.end - range.start + 1,
      'content-type': meta.contentType,
      'accept-ranges': 'bytes',
      ...meta.headers,
      ...sseHeaders(meta.encryption),
    };
    if (range !== undefined) headers['content-range'] = `bytes ${range.start}-${range.end}/${meta.size}`;
    for (const [name, value] of Object.entries(meta.userMetadata)) headers[`x-amz-meta-${name}`] = encodeHeaderText(value);
    // S3 returns whole-object checksums only when asked, and never for a part of the object.
    if (range === undefined && header(call.req, 'x-amz-checksum-mode')?.toUpperCase() === 'ENABLED' && Object.keys(meta.checksums).length > 0) {
      Object.assign(headers, checksumHeaders(meta.checksums), { 'x-amz-checksum-type': meta.checksumType ?? 'FULL_OBJECT' });
    }
    if (call.query.get('partNumber') !== undefined && meta.partsCount !== undefined) headers['x-amz-mp-parts-count'] = meta.partsCount;
    return { ...headers, ...responseOverrides(call) };
  };

  /**
   * GetObjectAttributes: the attributes x-amz-object-attributes names (ETag, Checksum, ObjectParts,
   * StorageClass, ObjectSize), from the sealed record alone. ObjectParts only for a multipart
   * object; as the API reference says, its Part list (paged by x-amz-max-parts and
   * x-amz-part-number-marker) only when the object has an additional checksum, else just the count.
   * As S3 sends them: the ETag unquoted, a COMPOSITE checksum without its -<parts> suffix.
   */
  const getObjectAttributes = (call: ObjectCall): void => {
    checkVersionId(call);
    const names = (header(call.req, 'x-amz-object-attributes') ?? '')
      .split(',')
      .map((name) => name.trim())
      .filter((name) => name !== '');
    if (names.length === 0) throw invalidRequest('Missing required header for this request: x-amz-object-attributes');
    const unknown = names.find((name) => !OBJECT_ATTRIBUTES.includes(name));
    if (unknown !== undefined) throw new AirlockError('INVALID_ARGUMENT', 'Invalid attribute name specified.', { details: { attribute: unknown } });
    const maxParts = parseMaxKeys(header(call.req, 'x-amz-max-parts'), 'max-parts');
    const markerText = header(call.req, 'x-amz-part-number-marker')?.trim() ?? '0';
    if (!/^\d{1,5}$/.test(markerText)) throw new AirlockError('INVALID_ARGUMENT', 'Provided part-number-marker not an integer or within integer range');
    const marker = Number(markerText);
    const meta = engine.headObject(call.bucket, call.key);
    const wanted = new Set(names);
    const checksums = checksumElements(Object.fromEntries(Object.entries(meta.checksums).map(([algorithm, value]) => [algorithm, value.replace(/-\d+$/, '')])));
    let objectParts: XmlElement | undefined;
    if (wanted.has('ObjectParts') && meta.parts !== undefined) {
      // The SDKs call it TotalPartsCount; on the wire it is PartsCount.
      objectParts = { PartsCount: meta.parts.length };
      if (Object.keys(meta.checksums).length > 0) {
        const after = meta.parts.filter((part) => part.partNumber > marker);
        const page = after.slice(0, maxParts);
        objectParts = {
          ...objectParts,
          PartNumberMarker: marker,
          NextPartNumberMarker: page.at(-1)?.partNumber ?? marker,
          MaxParts: maxParts,
          IsTruncated: after.length > page.length,
          Part: page.map((part) => ({ PartNumber: part.partNumber, Size: part.size, ...checksumElements(part.checksums) })),
        };
      }
    }
    sendXml(
      call,
      200,
      buildXml('GetObjectAttributesResponse', {
        ETag: wanted.has('ETag') ? meta.etag.replace(/^"|"$/g, '') : undefined,
        Checksum: wanted.has('Checksum') && Object.keys(checksums).length > 0 ? { ...checksums, ChecksumType: meta.checksumType ?? 'FULL_OBJECT' } : undefined,
        ObjectParts: objectParts,
        StorageClass: wanted.has('StorageClass') ? 'STANDARD' : undefined,
        ObjectSize: wanted.has('ObjectSize') ? meta.size : undefined,
      }),
      { 'last-modified': meta.lastModified.toUTCString() },
    );
  };

  const notModified = (call: S3Call, meta: ObjectMeta): void => {
    sendEmpty(call, 304, { etag: meta.etag, 'last-modified': meta.lastModified.toUTCString() });
  };

  const conditional = (req: IncomingMessage): boolean =>
    ['if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since'].some((name) => req.headers[name] !== undefined);

  /** What a GET or HEAD asks for: `?partNumber=N` (one part, as S3 serves it) or a Range header, never both. */
  const requestedRange = (call: ObjectCall): RangeRequest | undefined => {
    const value = call.query.get('partNumber');
    if (value === undefined) return parseRange(header(call.req, 'range'));
    if (header(call.req, 'range') !== undefined) throw invalidRequest('Cannot specify both Range header and partNumber query parameter');
    return { partNumber: parsePartNumber(value) };
  };

  const headObject = (call: ObjectCall): void => {
    checkVersionId(call);
    refuseSseHeadersOnRead(call.req);
    const overrides = responseOverrides(call);
    const meta = engine.headObject(call.bucket, call.key);
    const requested = requestedRange(call);
    if (checkPreconditions(call.req, meta) === 304) return notModified(call, meta);
    const range = resolveRange(requested, meta);
    // Content-Length is the object's (or the range's) size, as a GET would send.
    call.res.writeHead(range === undefined ? 200 : 206, { ...objectHeaders(call, meta, range), ...overrides });
    call.res.end();
  };

  const getObject = async (call: ObjectCall): Promise<void> => {
    checkVersionId(call);
    refuseSseHeadersOnRead(call.req);
    responseOverrides(call);
    const range = requestedRange(call);
    let checked: ObjectMeta | undefined;
    if (conditional(call.req)) {
      checked = engine.headObject(call.bucket, call.key);
      if (checkPreconditions(call.req, checked) === 304) return notModified(call, checked);
    }
    // The engine resolves the range (or the part) against the record it reads, so it always matches the bytes sent.
    const result = await engine.getObject(call.bucket, call.key, range);
    try {
      // The object may have been replaced since the conditions were checked: check them on what is sent.
      if (checked !== undefined && checked.etag !== result.meta.etag && checkPreconditions(call.req, result.meta) === 304) {
        result.body.destroy();
        return notModified(call, result.meta);
      }
    } catch (error) {
      result.body.destroy();
      throw error;
    }
    call.res.writeHead(result.range === undefined ? 200 : 206, objectHeaders(call, result.meta, result.range));
    await sendBody(call, result.body);
  };

  /** Streams an object body. Headers are out: a failure now can only cut the response short, which Content-Length makes detectable. */
  const sendBody = async (call: S3Call, body: Readable): Promise<void> => {
    try {
      await pipeline(body, call.res);
    } catch (error) {
      const e = error as { code?: unknown };
      if (call.res.destroyed && !(error instanceof AirlockError) && e.code === 'ERR_STREAM_PREMATURE_CLOSE') {
        log.debug('S3 client went away during a GET');
      } else {
        log.error({ err: error, code: AirlockError.from(error).code }, 'S3 object body failed mid-stream');
      }
      call.res.destroy();
    }
  };

  const putObject = async (call: ObjectCall): Promise<void> => {
    refuseUnsupportedHeaders(call.req);
    const sse = parseSseHeaders(call.req);
    const userMetadata = parseUserMetadata(call.req);
    const condition = parseWriteCondition(call.req, { ifNoneMatch: true });
    const contentType = header(call.req, 'content-type');
    const body = openRequestBody(call.req, call.verified, { maxBytes: maxObjectBytes, onStart: () => sendContinue(call) });
    try {
      const meta = await engine.putObject({
        bucket: call.bucket,
        key: call.key,
        body: body.body,
        expectedLength: body.expectedLength,
        contentMd5: body.contentMd5,
        checksums: body.checksums,
        checksumAlgorithms: body.checksumAlgorithms,
        contentType,
        userMetadata,
        headers: parseStoredHeaders(call.req),
        sse,
        ...(condition === undefined ? {} : { condition }),
      });
      // A single PUT's checksum is of the whole body: S3 says so with x-amz-checksum-type.
      const checksumType: Record<string, string> = Object.keys(meta.checksums).length > 0 ? { 'x-amz-checksum-type': 'FULL_OBJECT' } : {};
      sendEmpty(call, 200, { etag: meta.etag, ...sseHeaders(meta.encryption), ...checksumHeaders(meta.checksums), ...checksumType });
    } finally {
      body.dispose();
    }
  };

  const copyObject = async (call: ObjectCall, copySource: string): Promise<void> => {
    refuseUnsupportedHeaders(call.req);
    const source = parseCopySource(copySource);
    const condition = parseWriteCondition(call.req, { ifNoneMatch: true });
    const directive = (header(call.req, 'x-amz-metadata-directive') ?? 'COPY').trim().toUpperCase();
    if (directive !== 'COPY' && directive !== 'REPLACE') throw new AirlockError('INVALID_ARGUMENT', 'Unknown metadata directive.');
    const sse = parseSseHeaders(call.req);
    if (source.bucket === call.bucket && source.key === call.key && directive === 'COPY' && sse === undefined) {
      throw invalidRequest(
        "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
      );
    }
    const contentType = header(call.req, 'content-type');
    const checksumAlgorithm = parseCopyChecksumAlgorithm(call.req);
    const meta = await withoutIdleTimeout(call, () =>
      engine.copyObject({
        sourceBucket: source.bucket,
        sourceKey: source.key,
        bucket: call.bucket,
        key: call.key,
        metadataDirective: directive,
        ...(directive === 'REPLACE' ? { contentType, userMetadata: parseUserMetadata(call.req), headers: parseStoredHeaders(call.req) } : {}),
        sse,
        ...(condition === undefined ? {} : { condition }),
        checkSource: (meta) => checkCopySourcePreconditions(call.req, meta),
        ...(checksumAlgorithm === undefined ? {} : { checksumAlgorithm }),
      }),
    );
    const checksums = checksumElements(meta.checksums);
    const checksumType = Object.keys(checksums).length > 0 ? { ChecksumType: 'FULL_OBJECT' } : {};
    sendXml(call, 200, buildXml('CopyObjectResult', { LastModified: iso(meta.lastModified), ETag: meta.etag, ...checksums, ...checksumType }), sseHeaders(meta.encryption));
  };

  const deleteObject = async (call: ObjectCall): Promise<void> => {
    checkVersionId(call);
    await engine.deleteObject(call.bucket, call.key, parseWriteCondition(call.req, { ifNoneMatch: false }));
    sendEmpty(call, 204);
  };

  // --- multipart ----------------------------------------------------------------------------------

  const uploadIdOf = (call: S3Call): string => {
    const uploadId = call.query.get('uploadId');
    if (uploadId === undefined || uploadId === '') throw new AirlockError('UPLOAD_NOT_FOUND');
    return uploadId;
  };

  const createMultipartUpload = async (call: ObjectCall): Promise<void> => {
    refuseUnsupportedHeaders(call.req);
    const checksum = parseUploadChecksum(call.req);
    const upload = await engine.createMultipartUpload({
      bucket: call.bucket,
      key: call.key,
      contentType: header(call.req, 'content-type'),
      userMetadata: parseUserMetadata(call.req),
      headers: parseStoredHeaders(call.req),
      sse: parseSseHeaders(call.req),
      ...(checksum === undefined ? {} : { checksum }),
    });
    sendXml(
      call,
      200,
      buildXml('InitiateMultipartUploadResult', { Bucket: upload.bucket, Key: upload.key, UploadId: upload.uploadId }),
      {
        ...sseHeaders(upload.encryption),
        ...(upload.checksum === undefined ? {} : { 'x-amz-checksum-algorithm': upload.checksum.algorithm, 'x-amz-checksum-type': upload.checksum.type }),
      },
    );
  };

  const uploadPart = async (call: ObjectCall): Promise<void> => {
    const partNumber = parsePartNumber(call.query.get('partNumber'));
    const uploadId = uploadIdOf(call);
    const copySource = header(call.req, 'x-amz-copy-source');
    if (copySource !== undefined) return uploadPartCopy(call, copySource, uploadId, partNumber);
    const body = openRequestBody(call.req, call.verified, { maxBytes: maxObjectBytes, onStart: () => sendContinue(call) });
    try {
      const part = await engine.uploadPart({
        bucket: call.bucket,
        key: call.key,
        uploadId,
        partNumber,
        body: body.body,
        expectedLength: body.expectedLength,
        contentMd5: body.contentMd5,
        checksums: body.checksums,
        checksumAlgorithms: body.checksumAlgorithms,
      });
      // Verified by the engine by now; clients (the SDK's multipart uploader) read them back per part.
      sendEmpty(call, 200, { etag: part.etag, ...sseHeaders(part.encryption), ...checksumHeaders(part.checksums) });
    } finally {
      body.dispose();
    }
  };

  const uploadPartCopy = async (call: ObjectCall, copySource: string, uploadId: string, partNumber: number): Promise<void> => {
    const source = parseCopySource(copySource);
    const rangeHeader = header(call.req, 'x-amz-copy-source-range');
    let range: { start: number; end: number } | undefined;
    if (rangeHeader !== undefined) {
      const match = /^bytes=(\d{1,15})-(\d{1,15})$/.exec(rangeHeader.trim());
      if (match === null || Number(match[2]) < Number(match[1])) {
        throw new AirlockError(
          'INVALID_ARGUMENT',
          'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy',
        );
      }
      range = { start: Number(match[1]), end: Number(match[2]) };
    }
    const got = await engine.getObject(source.bucket, source.key, range);
    try {
      // On the version whose bytes are copied.
      checkCopySourcePreconditions(call.req, got.meta);
      // The engine clamps a range to the object; a copy range must lie inside it.
      if (range !== undefined && got.range?.end !== range.end) throw new AirlockError('RANGE_NOT_SATISFIABLE', 'The requested range is not satisfiable');
      const size = got.range === undefined ? got.meta.size : got.range.end - got.range.start + 1;
      const part = await withoutIdleTimeout(call, () =>
        engine.uploadPart({ bucket: call.bucket, key: call.key, uploadId, partNumber, body: got.body, expectedLength: size }),
      );
      sendXml(call, 200, buildXml('CopyPartResult', { LastModified: iso(part.lastModified), ETag: part.etag }), sseHeaders(part.encryption));
    } finally {
      if (!got.body.destroyed) got.body.destroy();
    }
  };

  const completeMultipartUpload = async (call: ObjectCall): Promise<void> => {
    const uploadId = uploadIdOf(call);
    const condition = parseWriteCondition(call.req, { ifNoneMatch: true });
    const checksum = parseCompletionChecksum(call.req);
    // Here x-amz-checksum-* is the object's checksum, not the XML document's.
    const parts = parseCompleteMultipartUpload(await readXml(call, { checksumHeadersCoverBody: false }));
    const meta = await withoutIdleTimeout(call, () =>
      engine.completeMultipartUpload({ bucket: call.bucket, key: call.key, uploadId, parts, ...checksum, ...(condition === undefined ? {} : { condition }) }),
    );
    const host = header(call.req, 'host') ?? 'localhost';
    sendXml(
      call,
      200,
      buildXml('CompleteMultipartUploadResult', {
        Location: `https://${host}/${encodeURIComponent(call.bucket)}/${urlEncodeKey(call.key)}`,
        Bucket: call.bucket,
        Key: call.key,
        ETag: meta.etag,
        ...checksumElements(meta.checksums),
        ChecksumType: meta.checksumType,
      }),
      sseHeaders(meta.encryption),
    );
  };

  const abortMultipartUpload = async (call: ObjectCall): Promise<void> => {
    await engine.abortMultipartUpload(call.bucket, call.key, uploadIdOf(call));
    sendEmpty(call, 204);
  };

  const listParts = (call: ObjectCall): void => {
    const uploadId = uploadIdOf(call);
    const maxParts = parseMaxKeys(call.query.get('max-parts'), 'max-parts');
    const markerText = call.query.get('part-number-marker') ?? '0';
    if (!/^\d{1,5}$/.test(markerText)) throw new AirlockError('INVALID_ARGUMENT', 'Provided part-number-marker not an integer or within integer range');
    const marker = Number(markerText);
    const { upload, parts } = engine.listParts(call.bucket, call.key, uploadId);
    const after = parts.filter((part) => part.partNumber > marker);
    const page = after.slice(0, maxParts);
    const truncated = after.length > page.length;
    sendXml(
      call,
      200,
      buildXml('ListPartsResult', {
        Bucket: upload.bucket,
        Key: upload.key,
        UploadId: upload.uploadId,
        Initiator: OWNER,
        Owner: OWNER,
        StorageClass: 'STANDARD',
        PartNumberMarker: marker,
        NextPartNumberMarker: page.at(-1)?.partNumber ?? marker,
        MaxParts: maxParts,
        IsTruncated: truncated,
        ChecksumAlgorithm: upload.checksum?.algorithm,
        ChecksumType: upload.checksum?.type,
        Part: page.map((part) => ({ PartNumber: part.partNumber, LastModified: iso(part.lastModified), ETag: part.etag, Size: part.size, ...checksumElements(part.checksums) })),
      }),
    );
  };

  /** ListMultipartUploads: prefix, delimiter, key-marker with upload-id-marker, max-uploads, encoding-type. */
  const listMultipartUploads = (call: BucketCall): void => {
    const { query } = call;
    const { encodingType, encode } = listingEncoding(query.get('encoding-type'));
    const maxUploads = parseMaxKeys(query.get('max-uploads'), 'max-uploads');
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') || undefined;
    const keyMarker = query.get('key-marker') || undefined;
    // S3 ignores upload-id-marker without key-marker.
    const uploadIdMarker = keyMarker === undefined ? undefined : query.get('upload-id-marker') || undefined;
    const page = listingPage(engine.listMultipartUploads(call.bucket), (upload) => upload.key, {
      prefix,
      delimiter,
      marker: keyMarker,
      // With upload-id-marker, the marker key's own later uploads follow too.
      pastMarker: (upload, order) => order > 0 || (order === 0 && uploadIdMarker !== undefined && upload.uploadId > uploadIdMarker),
      max: maxUploads,
    });
    const next = page.truncated ? page.last : undefined;
    sendXml(
      call,
      200,
      buildXml('ListMultipartUploadsResult', {
        Bucket: call.bucket,
        KeyMarker: encode(keyMarker ?? ''),
        UploadIdMarker: uploadIdMarker ?? '',
        NextKeyMarker: next === undefined ? undefined : encode(next.key),
        NextUploadIdMarker: next === undefined ? undefined : (next.entry?.uploadId ?? ''),
        Delimiter: delimiter === undefined ? undefined : encode(delimiter),
        Prefix: encode(prefix),
        MaxUploads: maxUploads,
        IsTruncated: page.truncated,
        EncodingType: encodingType,
        Upload: page.entries.map((upload) => ({
          Key: encode(upload.key),
          UploadId: upload.uploadId,
          Initiator: OWNER,
          Owner: OWNER,
          StorageClass: 'STANDARD',
          Initiated: iso(upload.initiated),
        })),
        CommonPrefixes: page.commonPrefixes.map((commonPrefix) => ({ Prefix: encode(commonPrefix) })),
      }),
    );
  };

  // --- routing ------------------------------------------------------------------------------------

  type Operation = readonly [name: string, run: () => void | Promise<void>];

  /** An operation this store refuses: routed and named like the others, so the refusal is logged under its name. */
  const refused = (name: string, error: () => AirlockError): Operation => [
    name,
    () => {
      throw error();
    },
  ];

  const routeBucket = (call: BucketCall): Operation => {
    const { method, query } = call;
    const sub = (name: string): boolean => query.has(name);
    if (sub('encryption')) {
      if (method === 'GET') return ['GetBucketEncryption', () => getBucketEncryption(call)];
      if (method === 'PUT') return ['PutBucketEncryption', () => putBucketEncryption(call)];
      if (method === 'DELETE') return ['DeleteBucketEncryption', () => deleteBucketEncryption(call)];
      throw methodNotAllowed();
    }
    if (sub('cors')) {
      if (method === 'GET') return ['GetBucketCors', () => getBucketCors(call)];
      if (method === 'PUT') return ['PutBucketCors', () => putBucketCors(call)];
      if (method === 'DELETE') return ['DeleteBucketCors', () => deleteBucketCors(call)];
      throw methodNotAllowed();
    }
    if (sub('location')) {
      if (method === 'GET') return ['GetBucketLocation', () => getBucketLocation(call)];
      throw methodNotAllowed();
    }
    if (sub('acl')) {
      if (method === 'GET') return ['GetBucketAcl', () => getAcl(call)];
      return refused(subresourceOperation(method, 'Bucket', 'acl'), () => notImplemented('Bucket ACLs cannot be changed: every bucket is private to the store owner'));
    }
    if (sub('versioning')) {
      if (method === 'GET') return ['GetBucketVersioning', () => getBucketVersioning(call)];
      return refused(subresourceOperation(method, 'Bucket', 'versioning'), () => notImplemented('Versioning is not supported'));
    }
    if (sub('delete')) {
      if (method === 'POST') return ['DeleteObjects', () => deleteObjects(call)];
      throw methodNotAllowed();
    }
    if (sub('uploads')) {
      if (method === 'GET') return ['ListMultipartUploads', () => listMultipartUploads(call)];
      throw methodNotAllowed();
    }
    if (sub('versions')) {
      if (method === 'GET') return ['ListObjectVersions', () => listObjectVersions(call)];
      throw methodNotAllowed();
    }
    const unsupported = UNSUPPORTED_SUBRESOURCES.find(sub);
    if (unsupported !== undefined) return refused(subresourceOperation(method, 'Bucket', unsupported), () => unsupportedSubresource(call, unsupported));
    switch (method) {
      case 'GET': {
        const listType = query.get('list-type');
        if (listType === '2') return ['ListObjectsV2', () => listObjects(call, true)];
        if (listType === undefined) return ['ListObjects', () => listObjects(call, false)];
        throw new AirlockError('INVALID_ARGUMENT', 'Invalid List Type specified in Request');
      }
      case 'PUT':
        return ['CreateBucket', () => createBucket(call)];
      case 'HEAD':
        return ['HeadBucket', () => headBucket(call)];
      case 'DELETE':
        return ['DeleteBucket', () => deleteBucket(call)];
      case 'POST':
        return refused('PostObject', () => notImplemented('Browser-based POST uploads are not supported'));
      default:
        throw methodNotAllowed();
    }
  };

  const routeObject = (call: ObjectCall): Operation => {
    const { method, query } = call;
    if (query.has('uploads')) {
      if (method === 'POST') return ['CreateMultipartUpload', () => createMultipartUpload(call)];
      throw methodNotAllowed();
    }
    if (query.has('uploadId')) {
      switch (method) {
        case 'PUT':
          return ['UploadPart', () => uploadPart(call)];
        case 'POST':
          return ['CompleteMultipartUpload', () => completeMultipartUpload(call)];
        case 'DELETE':
          return ['AbortMultipartUpload', () => abortMultipartUpload(call)];
        case 'GET':
          return ['ListParts', () => listParts(call)];
        default:
          throw methodNotAllowed();
      }
    }
    if (query.has('acl')) {
      if (method === 'GET') return ['GetObjectAcl', () => getAcl(call)];
      return refused(subresourceOperation(method, 'Object', 'acl'), () => notImplemented('Object ACLs cannot be changed: every object is private to the store owner'));
    }
    if (query.has('tagging') && method === 'GET') return ['GetObjectTagging', () => getObjectTagging(call)];
    if (query.has('attributes')) {
      if (method === 'GET') return ['GetObjectAttributes', () => getObjectAttributes(call)];
      throw methodNotAllowed();
    }
    const unsupported = UNSUPPORTED_SUBRESOURCES.find((name) => query.has(name));
    if (unsupported !== undefined) return refused(subresourceOperation(method, 'Object', unsupported), () => unsupportedSubresource(call, unsupported));
    switch (method) {
      case 'GET':
        return ['GetObject', () => getObject(call)];
      case 'HEAD':
        return ['HeadObject', () => headObject(call)];
      case 'PUT': {
        const copySource = header(call.req, 'x-amz-copy-source');
        return copySource === undefined ? ['PutObject', () => putObject(call)] : ['CopyObject', () => copyObject(call, copySource)];
      }
      case 'DELETE':
        return ['DeleteObject', () => deleteObject(call)];
      case 'POST':
        return refused('PostObject', () => notImplemented('POST on an object is not supported'));
      default:
        throw methodNotAllowed();
    }
  };

  // --- CORS ---------------------------------------------------------------------------------------

  /** The CORS rules of the bucket a request path names; undefined when there is no such bucket or it has none. */
  const corsRulesFor = (rawPath: string): readonly CorsRule[] | undefined => {
    const bucket = percentDecode(rawPath.slice(1).split('/')[0] ?? '');
    if (bucket === undefined || bucket === '') return undefined;
    try {
      return engine.getBucketCors(bucket);
    } catch (error) {
      if (AirlockError.is(error, 'BUCKET_NOT_FOUND')) return undefined;
      throw error;
    }
  };

  const corsForbidden = (message: string, method: string, key: string | undefined): AirlockError =>
    new AirlockError('ACCESS_DENIED', `CORSResponse: ${message}`, { details: { reason: 'cors-forbidden', method, resourceType: key === undefined ? 'BUCKET' : 'OBJECT' } });

  /**
   * A preflight (OPTIONS), unauthenticated as on S3: the bucket's first rule that allows the
   * Origin, the Access-Control-Request-Method and every Access-Control-Request-Headers name
   * answers 200 with what it grants; no rule (or no configuration) is 403 AccessForbidden.
   */
  const preflight = (req: IncomingMessage, res: ServerResponse, rawPath: string): void => {
    const { bucket, key } = parseResource(rawPath);
    const origin = header(req, 'origin');
    const method = header(req, 'access-control-request-method')?.trim();
    if (bucket === undefined) throw methodNotAllowed();
    if (origin === undefined) throw new AirlockError('INVALID_ARGUMENT', 'Insufficient information. Origin request header needed.', { details: { reason: 'cors-bad-request' } });
    if (method === undefined || method === '') throw new AirlockError('INVALID_ARGUMENT', 'Invalid Access-Control-Request-Method: null', { details: { reason: 'cors-bad-request' } });
    const rules = corsRulesFor(rawPath);
    if (rules === undefined) throw corsForbidden('CORS is not enabled for this bucket.', method, key);
    const headers = requestedHeaders(header(req, 'access-control-request-headers'));
    const rule = matchCorsRule(rules, { origin, method, headers });
    if (rule === undefined) {
      throw corsForbidden(
        "This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        method,
        key,
      );
    }
    res.writeHead(200, { ...corsResponseHeaders(rule, origin, headers), 'content-length': 0 });
    res.end();
  };

  /**
   * An actual request from a page (it carries Origin): the matching rule's headers go on the
   * response, success or error alike, so the page can read either; presigned GETs and PUTs included.
   */
  const applyCors = (req: IncomingMessage, res: ServerResponse, rawPath: string, method: string): void => {
    const origin = header(req, 'origin');
    if (origin === undefined) return;
    const rules = corsRulesFor(rawPath);
    if (rules === undefined) return;
    const rule = matchCorsRule(rules, { origin, method });
    if (rule === undefined) {
      res.setHeader('vary', CORS_VARY);
      return;
    }
    for (const [name, value] of Object.entries(corsResponseHeaders(rule, origin))) res.setHeader(name, value);
  };

  // --- the request --------------------------------------------------------------------------------

  const sendError = (req: IncomingMessage, res: ServerResponse, error: unknown, context: { requestId: string; operation: string; resource: string; authType: S3AuthType }): void => {
    const e = AirlockError.from(error);
    const wire = s3ErrorFor(e, context.authType);
    if (wire.status === 501) {
      // An expected refusal, not a fault: one line naming what was asked for, no stack. The message is one of ours, never request data.
      log.info({ code: wire.code, operation: context.operation, requestId: context.requestId, reason: e.message }, 'S3 operation not implemented');
    } else if (wire.status >= 500) {
      log.error({ err: error, code: e.code, operation: context.operation, requestId: context.requestId }, 'S3 request failed');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (!req.complete) {
      // The body was refused unread: a large one, one of unknown length, or one the client still waits to send, ends the connection.
      // A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 §6.3), so its connection stays open:
      // closing it after every refused HEAD or GET made a client's next request pay for a new TLS connection.
      const length = req.headers['transfer-encoding'] === undefined ? Number(header(req, 'content-length') ?? 0) : Number.NaN;
      if (!(length <= 1024 * 1024) || req.headers.expect !== undefined) res.setHeader('connection', 'close');
      req.unpipe();
      req.resume();
    }
    const xml = s3ErrorXml(e, wire, context.resource, context.requestId);
    res.writeHead(wire.status, { 'content-type': XML_CONTENT_TYPE, 'content-length': Buffer.byteLength(xml) });
    // A HEAD response carries no body, but states the length a GET would have: without it Node's HTTP
    // client reads the response as delimited by the connection's end and drops a kept-alive socket.
    res.end(req.method === 'HEAD' ? undefined : xml);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, awaitingContinue: boolean): Promise<void> => {
    const started = performance.now();
    const requestId = newRequestId();
    res.setHeader('x-amz-request-id', requestId);
    res.setHeader('x-amz-id-2', randomBytes(32).toString('base64'));
    const method = req.method ?? 'GET';
    const context = { requestId, operation: 'Unknown', resource: '/', authType: 'header' as S3AuthType };
    try {
      // Liveness, unauthenticated (a request that carries a signature is S3, for a bucket called "health").
      if (method === 'GET' && req.url === '/health' && req.headers.authorization === undefined) {
        context.operation = 'Health';
        // Liveness of the store and of its path to the KMS: a store that cannot reach its KMS can
        // list buckets but neither read nor write an object, so it is degraded, and says why.
        const kms = await engine.kmsHealth();
        // Whether the key cache's KMS key-event stream is live (keys cached for minutes, revoked at once) or not (1 s bound).
        const keyEvents = engine.keyEventStatus().state;
        // And those of the process's other holders of key material (the data plane's sealing keys), each on its own subscription.
        const holders = Object.entries(options.keyEventHolders ?? {});
        const others = holders.length === 0 ? {} : { keyEventHolders: Object.fromEntries(holders.map(([name, status]) => [name, status().state])) };
        const body = JSON.stringify(kms.ok ? { status: 'ok', kms: 'ok', keyEvents, ...others } : { status: 'degraded', kms: 'unreachable', reason: kms.reason, keyEvents, ...others });
        res.writeHead(kms.ok ? 200 : 503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      const target = splitTarget(req.url);
      context.resource = target.rawPath;
      if (method === 'OPTIONS') {
        context.operation = 'PreflightRequest';
        preflight(req, res, target.rawPath);
        return;
      }
      applyCors(req, res, target.rawPath, method);
      context.authType = hasQueryAuth(target.rawQuery) ? 'query' : 'header';
      const verified = await verifyRequest({
        method,
        path: target.rawPath,
        rawQuery: target.rawQuery,
        headers: req.headersDistinct,
        lookupSecret: options.lookupSecret,
        region,
        service: 's3',
        now: now(),
        maxSkewSeconds,
        requireSignedAmzHeaders: true,
      });
      try {
        const query = parseQuery(target.rawQuery);
        const { bucket, key } = parseResource(target.rawPath);
        const base: S3Call = { req, res, method, target, query, verified, awaitingContinue };
        // S3 checks SSE-C headers before it looks at the bucket, the key or the operation.
        checkSseCustomerHeaders(req);
        // A presigned URL names one object (DESIGN §2): never a listing or a bucket operation.
        if (verified.authType === 'query' && key === undefined) {
          throw new AirlockError('ACCESS_DENIED', 'Presigned URLs are accepted for object requests only');
        }
        let operation: Operation;
        if (bucket === undefined) {
          if (method !== 'GET') throw methodNotAllowed();
          operation = ['ListBuckets', () => listBuckets(base)];
        } else if (key === undefined) {
          operation = routeBucket({ ...base, bucket });
        } else {
          operation = routeObject({ ...base, bucket, key });
        }
        context.operation = operation[0];
        await operation[1]();
      } finally {
        verified.signingKey.fill(0);
      }
    } catch (error) {
      sendError(req, res, error, context);
    } finally {
      log.debug(
        { requestId, operation: context.operation, method, status: res.statusCode, ms: Math.round(performance.now() - started) },
        'S3 request',
      );
    }
  };

  const handler = ((req: IncomingMessage, res: ServerResponse) => handle(req, res, false)) as S3RequestHandler;
  return Object.assign(handler, { checkContinue: (req: IncomingMessage, res: ServerResponse) => handle(req, res, true) });
}
