// The embedded KMS's semantics: key lifecycle, aliases, rotation and cryptographic operations, as AWS KMS defines them.
import { randomUUID } from 'node:crypto';
import { AirlockError, type Logger } from '@airlock/common';
import { aesGcmDecrypt, aesGcmEncrypt, encodeEncryptionContext, hkdfSha256, randomBytes, zeroize, type EncryptionContext } from '@airlock/crypto';
import { openBlob, readBlobHeader, sealBlob } from './ciphertext-blob.js';
import type { RecordStore } from './record-store.js';
import {
  optionalBoolean,
  optionalContext,
  optionalEnum,
  optionalInteger,
  optionalString,
  requireBlob,
  requireString,
  type Input,
} from './validate.js';

export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

interface KeyVersion {
  readonly version: number;
  readonly createdAt: number;
  /** The version's 32-byte key material, wrapped under the root key (base64). */
  readonly wrapped: string;
}

interface KeyRecord {
  readonly keyId: string;
  readonly createdAt: number;
  description: string;
  state: KeyState;
  deletionDate?: number;
  pendingWindowInDays?: number;
  rotationEnabled: boolean;
  rotationPeriodDays: number;
  nextRotation?: number;
  lastOnDemandRotation?: number;
  versions: KeyVersion[];
  tags: Array<{ TagKey: string; TagValue: string }>;
}

interface AliasRecord {
  readonly aliasName: string;
  targetKeyId: string;
  readonly createdAt: number;
  updatedAt: number;
}

/** What an operation touched, for the audit log. */
export interface OperationAudit {
  keyArn?: string;
  keyVersion?: number;
  encryptionContext?: EncryptionContext;
}

/** The state a key-state event reports: a KMS key state, or Deleted once its deletion completed. */
export type KeyEventState = KeyState | 'Deleted';

/** A change of a key's state or versions, as the engine reports it to the key-event hub (key-events.ts). */
export interface KeyStateChange {
  readonly keyId: string;
  readonly keyArn: string;
  readonly state: KeyEventState;
  /** The key's newest version after the change. */
  readonly version: number;
  readonly change: 'created' | 'enabled' | 'disabled' | 'pending-deletion' | 'deletion-cancelled' | 'deleted' | 'rotated';
}

export interface EngineOptions {
  readonly store: RecordStore;
  readonly rootKey: Buffer;
  readonly region: string;
  readonly accountId: string;
  readonly now: () => number;
  readonly log: Logger;
  /** Called synchronously, after the change is stored, for every key-state change. @default none */
  readonly onKeyStateChange?: (change: KeyStateChange) => void;
}

const DAY = 24 * 60 * 60 * 1000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ALIAS_NAME = /^alias\/[a-zA-Z0-9/_-]{1,250}$/;
const ALGORITHMS = ['SYMMETRIC_DEFAULT'] as const;
const PAGE_LIMIT = 1000;

type Handler = (input: Input, audit: OperationAudit) => Promise<Record<string, unknown>>;

/** Epoch seconds with millisecond precision: how the AWS JSON protocol sends timestamps. */
const seconds = (ms: number): number => Math.round(ms) / 1000;

export class KmsEngine {
  readonly #store: RecordStore;
  /** Wraps each key version's material; derived from the root key, never stored. */
  readonly #wrappingKey: Buffer;
  readonly #region: string;
  readonly #accountId: string;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #onChange: ((change: KeyStateChange) => void) | undefined;
  readonly #keys = new Map<string, KeyRecord>();
  readonly #aliases = new Map<string, AliasRecord>();
  readonly operations: ReadonlyMap<string, Handler>;

  constructor(options: EngineOptions) {
    this.#store = options.store;
    this.#wrappingKey = hkdfSha256(options.rootKey, Buffer.alloc(0), Buffer.from('airlock kms key material wrapping v1'), 32);
    this.#region = options.region;
    this.#accountId = options.accountId;
    this.#now = options.now;
    this.#log = options.log;
    this.#onChange = options.onKeyStateChange;
    for (const key of this.#store.all<KeyRecord>('key')) this.#keys.set(key.keyId, key);
    for (const alias of this.#store.all<AliasRecord>('alias')) this.#aliases.set(alias.aliasName, alias);
    this.operations = new Map<string, Handler>([
      ['CreateKey', (i, a) => this.#createKey(i, a)],
      ['DescribeKey', (i, a) => this.#describeKey(i, a)],
      ['ListKeys', (i) => this.#listKeys(i)],
      ['EnableKey', (i, a) => this.#setEnabled(i, a, true)],
      ['DisableKey', (i, a) => this.#setEnabled(i, a, false)],
      ['ScheduleKeyDeletion', (i, a) => this.#scheduleDeletion(i, a)],
      ['CancelKeyDeletion', (i, a) => this.#cancelDeletion(i, a)],
      ['CreateAlias', (i, a) => this.#createAlias(i, a)],
      ['UpdateAlias', (i, a) => this.#updateAlias(i, a)],
      ['DeleteAlias', (i) => this.#deleteAlias(i)],
      ['ListAliases', (i) => this.#listAliases(i)],
      ['GenerateDataKey', (i, a) => this.#generateDataKey(i, a, true)],
      ['GenerateDataKeyWithoutPlaintext', (i, a) => this.#generateDataKey(i, a, false)],
      ['Encrypt', (i, a) => this.#encrypt(i, a)],
      ['Decrypt', (i, a) => this.#decrypt(i, a)],
      ['ReEncrypt', (i, a) => this.#reEncrypt(i, a)],
      ['EnableKeyRotation', (i, a) => this.#setRotation(i, a, true)],
      ['DisableKeyRotation', (i, a) => this.#setRotation(i, a, false)],
      ['GetKeyRotationStatus', (i, a) => this.#rotationStatus(i, a)],
      ['RotateKeyOnDemand', (i, a) => this.#rotateOnDemand(i, a)],
      ['ListKeyRotations', (i, a) => this.#listRotations(i, a)],
    ]);
  }

  /** How many KMS keys exist (deleted ones excluded). */
  get keyCount(): number {
    return this.#keys.size;
  }

  /** The current state and newest version of every key, or of `keyIds` only (for a subscription's opening snapshot). */
  keyStates(keyIds?: ReadonlySet<string>): Array<{ keyId: string; keyArn: string; state: KeyState; version: number }> {
    return [...this.#keys.values()]
      .filter((key) => keyIds === undefined || keyIds.has(key.keyId))
      .map((key) => ({ keyId: key.keyId, keyArn: this.arn(key.keyId), state: key.state, version: key.versions.at(-1)?.version ?? 0 }));
  }

  /** The key id behind a KeyId in any AWS form (NotFound if there is none). */
  resolveKeyId(keyIdOrAlias: string): string {
    return this.#resolve(keyIdOrAlias).keyId;
  }

  #changed(key: KeyRecord, change: KeyStateChange['change'], state: KeyEventState = key.state): void {
    this.#onChange?.({ keyId: key.keyId, keyArn: this.arn(key.keyId), state, version: key.versions.at(-1)?.version ?? 0, change });
  }

  arn(keyId: string): string {
    return `arn:aws:kms:${this.#region}:${this.#accountId}:key/${keyId}`;
  }

  #aliasArn(aliasName: string): string {
    return `arn:aws:kms:${this.#region}:${this.#accountId}:${aliasName}`;
  }

  /** Completes due deletions and rotations. Runs before every operation and on a timer. */
  maintain(): void {
    const now = this.#now();
    for (const key of [...this.#keys.values()]) {
      if (key.state === 'PendingDeletion' && key.deletionDate !== undefined && key.deletionDate <= now) this.#shred(key);
      else if (key.rotationEnabled && key.state === 'Enabled' && key.nextRotation !== undefined && key.nextRotation <= now) {
        this.#addVersion(key, now);
        key.nextRotation = now + key.rotationPeriodDays * DAY;
        this.#save(key);
        this.#changed(key, 'rotated');
      }
    }
  }

  /** Crypto-shredding: the key record, its wrapped material and its aliases leave the store for good. */
  #shred(key: KeyRecord): void {
    const aliases = [...this.#aliases.values()].filter((a) => a.targetKeyId === key.keyId);
    this.#store.transaction((tx) => {
      tx.delete('key', key.keyId);
      for (const alias of aliases) tx.delete('alias', alias.aliasName);
    });
    this.#store.checkpoint();
    this.#keys.delete(key.keyId);
    for (const alias of aliases) this.#aliases.delete(alias.aliasName);
    this.#changed(key, 'deleted', 'Deleted');
    this.#log.info({ keyArn: this.arn(key.keyId) }, 'KMS key deletion completed; its key material is destroyed');
  }

  #save(key: KeyRecord): void {
    this.#store.transaction((tx) => tx.put('key', key.keyId, key));
  }

  #addVersion(key: KeyRecord, now: number): void {
    const material = randomBytes(32);
    const version = (key.versions.at(-1)?.version ?? 0) + 1;
    const wrapped = this.#wrapSync(material, key.keyId, version);
    zeroize(material);
    key.versions.push({ version, createdAt: now, wrapped });
  }

  /** Material is wrapped with AES-256-GCM under the root-derived wrapping key, bound to its key id and version. */
  #materialAad(keyId: string, version: number): Buffer {
    return encodeEncryptionContext({ keyId, version: String(version) });
  }

  #wrapSync(material: Buffer, keyId: string, version: number): string {
    const nonce = randomBytes(12);
    return Buffer.concat([nonce, aesGcmEncrypt(this.#wrappingKey, nonce, material, this.#materialAad(keyId, version))]).toString('base64');
  }

  #material(key: KeyRecord, version: number): Buffer {
    const entry = key.versions.find((v) => v.version === version);
    if (entry === undefined) throw new AirlockError('KMS_INVALID_CIPHERTEXT');
    const wrapped = Buffer.from(entry.wrapped, 'base64');
    try {
      return aesGcmDecrypt(this.#wrappingKey, wrapped.subarray(0, 12), wrapped.subarray(12), this.#materialAad(key.keyId, version));
    } catch {
      throw new AirlockError('INTERNAL', 'stored key material failed authentication');
    }
  }

  /** Resolves a KeyId in any AWS form: key id, key ARN, alias name or alias ARN. */
  #resolve(keyIdOrAlias: string): KeyRecord {
    let id = keyIdOrAlias;
    const arnPrefix = `arn:aws:kms:${this.#region}:${this.#accountId}:`;
    if (id.startsWith('arn:')) {
      if (!id.startsWith(arnPrefix)) throw new AirlockError('KMS_KEY_NOT_FOUND', `Invalid arn ${keyIdOrAlias}`);
      id = id.slice(arnPrefix.length);
      if (id.startsWith('key/')) id = id.slice(4);
    }
    if (id.startsWith('alias/')) {
      const alias = this.#aliases.get(id);
      const key = alias === undefined ? undefined : this.#keys.get(alias.targetKeyId);
      if (key === undefined) throw new AirlockError('KMS_KEY_NOT_FOUND', `Alias ${this.#aliasArn(id)} is not found.`);
      return key;
    }
    const key = UUID.test(id) ? this.#keys.get(id) : undefined;
    if (key === undefined) throw new AirlockError('KMS_KEY_NOT_FOUND', `Key '${UUID.test(id) ? this.arn(id) : keyIdOrAlias}' does not exist`);
    return key;
  }

  /** The key for a cryptographic operation: it must be Enabled. */
  #usable(key: KeyRecord): void {
    if (key.state === 'Disabled') throw new AirlockError('KMS_KEY_DISABLED', `${this.arn(key.keyId)} is disabled.`);
    if (key.state === 'PendingDeletion') throw new AirlockError('KMS_KEY_PENDING_DELETION', `${this.arn(key.keyId)} is pending deletion.`);
  }

  #metadata(key: KeyRecord): Record<string, unknown> {
    return {
      AWSAccountId: this.#accountId,
      KeyId: key.keyId,
      Arn: this.arn(key.keyId),
      CreationDate: seconds(key.createdAt),
      Enabled: key.state === 'Enabled',
      Description: key.description,
      KeyUsage: 'ENCRYPT_DECRYPT',
      KeyState: key.state,
      ...(key.deletionDate === undefined ? {} : { DeletionDate: seconds(key.deletionDate) }),
      ...(key.pendingWindowInDays === undefined ? {} : { PendingDeletionWindowInDays: key.pendingWindowInDays }),
      Origin: 'AWS_KMS',
      KeyManager: 'CUSTOMER',
      CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
      KeySpec: 'SYMMETRIC_DEFAULT',
      EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
      MultiRegion: false,
    };
  }

  #keyFromInput(input: Input, audit: OperationAudit, field = 'KeyId'): KeyRecord {
    const key = this.#resolve(requireString(input, field, 1, 2048));
    audit.keyArn = this.arn(key.keyId);
    return key;
  }

  async #createKey(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const description = optionalString(input, 'Description', 0, 8192) ?? '';
    optionalEnum(input, 'KeyUsage', ['ENCRYPT_DECRYPT']);
    optionalEnum(input, 'KeySpec', ['SYMMETRIC_DEFAULT']);
    optionalEnum(input, 'CustomerMasterKeySpec', ['SYMMETRIC_DEFAULT']);
    optionalEnum(input, 'Origin', ['AWS_KMS']);
    if (optionalBoolean(input, 'MultiRegion') === true) throw new AirlockError('KMS_UNSUPPORTED_OPERATION', 'Multi-Region keys are not supported');
    const tags = Array.isArray(input.Tags) ? (input.Tags as Array<{ TagKey: string; TagValue: string }>) : [];
    const now = this.#now();
    const key: KeyRecord = {
      keyId: randomUUID(),
      createdAt: now,
      description,
      state: 'Enabled',
      rotationEnabled: false,
      rotationPeriodDays: 365,
      versions: [],
      tags: tags.filter((t) => typeof t.TagKey === 'string' && typeof t.TagValue === 'string'),
    };
    this.#addVersion(key, now);
    this.#save(key);
    this.#keys.set(key.keyId, key);
    this.#changed(key, 'created');
    // The audit record names the key it created, as CloudTrail does.
    audit.keyArn = this.arn(key.keyId);
    audit.keyVersion = 1;
    return Promise.resolve({ KeyMetadata: this.#metadata(key) });
  }

  async #describeKey(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    return Promise.resolve({ KeyMetadata: this.#metadata(this.#keyFromInput(input, audit)) });
  }

  #page<T>(items: T[], input: Input): { page: T[]; more: Record<string, unknown> } {
    const limit = optionalInteger(input, 'Limit', 1, PAGE_LIMIT) ?? 100;
    const marker = optionalString(input, 'Marker', 1, 1024);
    let start = 0;
    if (marker !== undefined) {
      start = Number(marker);
      if (!Number.isSafeInteger(start) || start < 0 || start > items.length) throw new AirlockError('KMS_INVALID_MARKER', 'Invalid marker');
    }
    const page = items.slice(start, start + limit);
    const next = start + page.length;
    return { page, more: next < items.length ? { Truncated: true, NextMarker: String(next) } : { Truncated: false } };
  }

  async #listKeys(input: Input): Promise<Record<string, unknown>> {
    const keys = [...this.#keys.values()].sort((a, b) => a.createdAt - b.createdAt || a.keyId.localeCompare(b.keyId));
    const { page, more } = this.#page(keys, input);
    return Promise.resolve({ Keys: page.map((k) => ({ KeyId: k.keyId, KeyArn: this.arn(k.keyId) })), ...more });
  }

  async #setEnabled(input: Input, audit: OperationAudit, enabled: boolean): Promise<Record<string, unknown>> {
    const key = this.#keyFromInput(input, audit);
    if (key.state === 'PendingDeletion') throw new AirlockError('KMS_INVALID_STATE', `${this.arn(key.keyId)} is pending deletion.`);
    const state: KeyState = enabled ? 'Enabled' : 'Disabled';
    if (key.state !== state) {
      key.state = state;
      this.#save(key);
      this.#changed(key, enabled ? 'enabled' : 'disabled');
    }
    return Promise.resolve({});
  }

  async #scheduleDeletion(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const key = this.#keyFromInput(input, audit);
    const days = optionalInteger(input, 'PendingWindowInDays', 7, 30) ?? 30;
    if (key.state === 'PendingDeletion') throw new AirlockError('KMS_INVALID_STATE', `${this.arn(key.keyId)} is pending deletion.`);
    key.state = 'PendingDeletion';
    key.pendingWindowInDays = days;
    key.deletionDate = this.#now() + days * DAY;
    this.#save(key);
    this.#changed(key, 'pending-deletion');
    return Promise.resolve({
      KeyId: this.arn(key.keyId),
      DeletionDate: seconds(key.deletionDate),
      KeyState: 'PendingDeletion',
      PendingWindowInDays: days,
    });
  }

  async #cancelDeletion(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const key = this.#keyFromInput(input, audit);
    if (key.state !== 'PendingDeletion') throw new AirlockError('KMS_INVALID_STATE', `${this.arn(key.keyId)} is not pending deletion.`);
    // As in AWS, a key whose deletion is cancelled comes back Disabled.
    key.state = 'Disabled';
    delete key.deletionDate;
    delete key.pendingWindowInDays;
    this.#save(key);
    this.#changed(key, 'deletion-cancelled');
    return Promise.resolve({ KeyId: this.arn(key.keyId) });
  }

  #aliasName(input: Input): string {
    const name = requireString(input, 'AliasName', 1, 256);
    if (!ALIAS_NAME.test(name) || name.startsWith('alias/aws/')) {
      throw new AirlockError('KMS_INVALID_ALIAS_NAME', `Alias must start with the prefix "alias/" and contain only alphanumeric characters, forward slashes, underscores and dashes; "alias/aws/" is reserved.`);
    }
    return name;
  }

  #aliasTarget(input: Input, audit: OperationAudit): KeyRecord {
    const target = requireString(input, 'TargetKeyId', 1, 2048);
    if (target.startsWith('alias/') || target.includes(':alias/')) throw new AirlockError('INVALID_ARGUMENT', 'TargetKeyId must be a key id or key ARN, not an alias');
    const key = this.#resolve(target);
    if (key.state === 'PendingDeletion') throw new AirlockError('KMS_INVALID_STATE', `${this.arn(key.keyId)} is pending deletion.`);
    audit.keyArn = this.arn(key.keyId);
    return key;
  }

  async #createAlias(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const aliasName = this.#aliasName(input);
    const key = this.#aliasTarget(input, audit);
    if (this.#aliases.has(aliasName)) throw new AirlockError('ALREADY_EXISTS', `An alias with the name ${this.#aliasArn(aliasName)} already exists`);
    const now = this.#now();
    const alias: AliasRecord = { aliasName, targetKeyId: key.keyId, createdAt: now, updatedAt: now };
    this.#store.transaction((tx) => tx.put('alias', aliasName, alias));
    this.#aliases.set(aliasName, alias);
    return Promise.resolve({});
  }

  async #updateAlias(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const aliasName = this.#aliasName(input);
    const key = this.#aliasTarget(input, audit);
    const alias = this.#aliases.get(aliasName);
    if (alias === undefined) throw new AirlockError('KMS_KEY_NOT_FOUND', `Alias ${this.#aliasArn(aliasName)} is not found.`);
    const updated = { ...alias, targetKeyId: key.keyId, updatedAt: this.#now() };
    this.#store.transaction((tx) => tx.put('alias', aliasName, updated));
    this.#aliases.set(aliasName, updated);
    return Promise.resolve({});
  }

  async #deleteAlias(input: Input): Promise<Record<string, unknown>> {
    const aliasName = this.#aliasName(input);
    if (!this.#aliases.has(aliasName)) throw new AirlockError('KMS_KEY_NOT_FOUND', `Alias ${this.#aliasArn(aliasName)} is not found.`);
    this.#store.transaction((tx) => tx.delete('alias', aliasName));
    this.#aliases.delete(aliasName);
    return Promise.resolve({});
  }

  async #listAliases(input: Input): Promise<Record<string, unknown>> {
    const keyId = optionalString(input, 'KeyId', 1, 2048);
    const target = keyId === undefined ? undefined : this.#resolve(keyId).keyId;
    const aliases = [...this.#aliases.values()]
      .filter((a) => target === undefined || a.targetKeyId === target)
      .sort((a, b) => a.aliasName.localeCompare(b.aliasName));
    const { page, more } = this.#page(aliases, input);
    return Promise.resolve({
      Aliases: page.map((a) => ({
        AliasName: a.aliasName,
        AliasArn: this.#aliasArn(a.aliasName),
        TargetKeyId: a.targetKeyId,
        CreationDate: seconds(a.createdAt),
        LastUpdatedDate: seconds(a.updatedAt),
      })),
      ...more,
    });
  }

  async #seal(key: KeyRecord, plaintext: Buffer, context: EncryptionContext, audit: OperationAudit): Promise<Buffer> {
    this.#usable(key);
    const current = key.versions.at(-1) as KeyVersion;
    audit.keyVersion = current.version;
    const material = this.#material(key, current.version);
    try {
      return sealBlob(material, { keyId: key.keyId, version: current.version }, plaintext, context);
    } finally {
      zeroize(material);
    }
  }

  async #generateDataKey(input: Input, audit: OperationAudit, withPlaintext: boolean): Promise<Record<string, unknown>> {
    const key = this.#keyFromInput(input, audit);
    const context = optionalContext(input, 'EncryptionContext');
    audit.encryptionContext = context;
    const bytes = optionalInteger(input, 'NumberOfBytes', 1, 1024);
    const spec = optionalEnum(input, 'KeySpec', ['AES_256', 'AES_128']);
    if ((bytes === undefined) === (spec === undefined)) {
      throw new AirlockError('INVALID_ARGUMENT', 'Please specify either number of bytes or key spec.');
    }
    const plaintext = randomBytes(bytes ?? (spec === 'AES_128' ? 16 : 32));
    try {
      const blob = await this.#seal(key, plaintext, context, audit);
      return {
        CiphertextBlob: blob.toString('base64'),
        ...(withPlaintext ? { Plaintext: plaintext.toString('base64') } : {}),
        KeyId: this.arn(key.keyId),
      };
    } finally {
      zeroize(plaintext);
    }
  }

  async #encrypt(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const key = this.#keyFromInput(input, audit);
    const plaintext = requireBlob(input, 'Plaintext', 1, 4096);
    const context = optionalContext(input, 'EncryptionContext');
    audit.encryptionContext = context;
    optionalEnum(input, 'EncryptionAlgorithm', ALGORITHMS);
    try {
      const blob = await this.#seal(key, plaintext, context, audit);
      return { CiphertextBlob: blob.toString('base64'), KeyId: this.arn(key.keyId), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
    } finally {
      zeroize(plaintext);
    }
  }

  /** Opens a blob: finds its key from the blob itself, checks the key's state, then authenticates. */
  async #open(blob: Buffer, context: EncryptionContext, namedKeyId: string | undefined, audit: OperationAudit): Promise<{ key: KeyRecord; plaintext: Buffer }> {
    const header = readBlobHeader(blob);
    const key = this.#keys.get(header.keyId);
    audit.keyArn = this.arn(header.keyId);
    audit.keyVersion = header.version;
    if (namedKeyId !== undefined) {
      const named = this.#resolve(namedKeyId);
      if (named.keyId !== header.keyId) {
        throw new AirlockError('KMS_INCORRECT_KEY', 'The key ID in the request does not identify a KMS key that can perform this operation.');
      }
    }
    if (key === undefined) throw new AirlockError('KMS_KEY_NOT_FOUND', `Key '${this.arn(header.keyId)}' does not exist`);
    this.#usable(key);
    const material = this.#material(key, header.version);
    try {
      return { key, plaintext: openBlob(material, blob, context) };
    } finally {
      zeroize(material);
    }
  }

  async #decrypt(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const blob = requireBlob(input, 'CiphertextBlob', 1, 6144);
    const context = optionalContext(input, 'EncryptionContext');
    audit.encryptionContext = context;
    optionalEnum(input, 'EncryptionAlgorithm', ALGORITHMS);
    const { key, plaintext } = await this.#open(blob, context, optionalString(input, 'KeyId', 1, 2048), audit);
    try {
      return { KeyId: this.arn(key.keyId), Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
    } finally {
      zeroize(plaintext);
    }
  }

  async #reEncrypt(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const blob = requireBlob(input, 'CiphertextBlob', 1, 6144);
    const sourceContext = optionalContext(input, 'SourceEncryptionContext');
    const destinationContext = optionalContext(input, 'DestinationEncryptionContext');
    const destination = this.#resolve(requireString(input, 'DestinationKeyId', 1, 2048));
    audit.encryptionContext = destinationContext;
    const { key: source, plaintext } = await this.#open(blob, sourceContext, optionalString(input, 'SourceKeyId', 1, 2048), audit);
    const sourceVersion = audit.keyVersion;
    try {
      const out = await this.#seal(destination, plaintext, destinationContext, audit);
      audit.keyArn = this.arn(destination.keyId);
      this.#log.debug({ sourceVersion, destinationVersion: audit.keyVersion }, 're-encrypted a ciphertext blob');
      return {
        CiphertextBlob: out.toString('base64'),
        SourceKeyId: this.arn(source.keyId),
        KeyId: this.arn(destination.keyId),
        SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      };
    } finally {
      zeroize(plaintext);
    }
  }

  async #setRotation(input: Input, audit: OperationAudit, enabled: boolean): Promise<Record<string, unknown>> {
    const key = this.#keyFromInput(input, audit);
    this.#usable(key);
    const period = optionalInteger(input, 'RotationPeriodInDays', 90, 2560);
    key.rotationEnabled = enabled;
    if (enabled) {
      key.rotationPeriodDays = period ?? key.rotationPeriodDays;
      key.nextRotation = this.#now() + key.rotationPeriodDays * DAY;
    } else {
      delete key.nextRotation;
    }
    this.#save(key);
    return Promise.resolve({});
  }

  async #rotationStatus(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const key = this.#keyFromInput(input, audit);
    return Promise.resolve({
      KeyRotationEnabled: key.rotationEnabled,
      KeyId: this.arn(key.keyId),
      ...(key.rotationEnabled ? { RotationPeriodInDays: key.rotationPeriodDays } : {}),
      ...(key.nextRotation === undefined ? {} : { NextRotationDate: seconds(key.nextRotation) }),
      ...(key.lastOnDemandRotation === undefined ? {} : { OnDemandRotationStartDate: seconds(key.lastOnDemandRotation) }),
    });
  }

  async #rotateOnDemand(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const key = this.#keyFromInput(input, audit);
    this.#usable(key);
    const now = this.#now();
    this.#addVersion(key, now);
    key.lastOnDemandRotation = now;
    this.#save(key);
    this.#changed(key, 'rotated');
    audit.keyVersion = key.versions.at(-1)?.version;
    return Promise.resolve({ KeyId: this.arn(key.keyId) });
  }

  async #listRotations(input: Input, audit: OperationAudit): Promise<Record<string, unknown>> {
    const key = this.#keyFromInput(input, audit);
    const rotations = key.versions.slice(1);
    const { page, more } = this.#page(rotations, input);
    return Promise.resolve({
      Rotations: page.map((v) => ({
        KeyId: this.arn(key.keyId),
        RotationDate: seconds(v.createdAt),
        RotationType: key.lastOnDemandRotation === v.createdAt ? 'ON_DEMAND' : 'AUTOMATIC',
      })),
      ...more,
    });
  }

  close(): void {
    zeroize(this.#wrappingKey);
  }
}
