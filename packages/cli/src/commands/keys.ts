// `airlock keys …`: manage customer-managed keys on the data directory's KMS, human-readable or --json.
import type { KmsAdmin, KmsKeyMetadata } from '@airlock/kms';
import { resolveDataDir } from '../internal/data-dir.js';
import { connectLocalKms } from '../internal/kms-client.js';
import { formatTable, print, printJson } from '../internal/output.js';

export interface KeysCommonOptions {
  readonly dataDir?: string;
  readonly json: boolean;
}

async function withKms<T>(options: KeysCommonOptions, fn: (kms: KmsAdmin) => Promise<T>): Promise<T> {
  const kms = await connectLocalKms(resolveDataDir(options.dataDir));
  try {
    return await fn(kms);
  } finally {
    kms.destroy();
  }
}

const date = (d: Date | undefined): string => (d === undefined ? '-' : d.toISOString());

function describe(meta: KmsKeyMetadata): string {
  return [
    `Key ID:       ${meta.keyId}`,
    `ARN:          ${meta.arn}`,
    `State:        ${meta.state}`,
    `Description:  ${meta.description === '' ? '-' : meta.description}`,
    `Created:      ${date(meta.creationDate)}`,
    ...(meta.deletionDate === undefined ? [] : [`Deletion:     ${date(meta.deletionDate)}`]),
    `Spec / usage: ${meta.keySpec} / ${meta.keyUsage}`,
  ].join('\n');
}

export async function keysCreate(options: KeysCommonOptions & { description?: string; alias?: string }): Promise<void> {
  await withKms(options, async (kms) => {
    const meta = await kms.createKey({ description: options.description ?? '' });
    if (options.alias !== undefined) await kms.createAlias(options.alias, meta.keyId);
    if (options.json) printJson({ ...meta, alias: options.alias ?? null });
    else {
      print(describe(meta));
      if (options.alias !== undefined) print(`Alias:        ${options.alias}`);
    }
  });
}

export async function keysList(options: KeysCommonOptions): Promise<void> {
  await withKms(options, async (kms) => {
    const keys = await kms.listKeys();
    const aliases = await kms.listAliases();
    const details = await Promise.all(keys.map((k) => kms.describeKey(k.keyId)));
    if (options.json) {
      printJson(details.map((d) => ({ ...d, aliases: aliases.filter((a) => a.targetKeyId === d.keyId).map((a) => a.aliasName) })));
      return;
    }
    if (details.length === 0) {
      print('No keys. Create one with `airlock keys create --alias alias/my-key`.');
      return;
    }
    print(
      formatTable(
        ['KEY ID', 'STATE', 'ALIASES', 'CREATED', 'DESCRIPTION'],
        details.map((d) => [
          d.keyId,
          d.state,
          aliases.filter((a) => a.targetKeyId === d.keyId).map((a) => a.aliasName).join(',') || '-',
          date(d.creationDate),
          d.description,
        ]),
      ),
    );
  });
}

export async function keysDescribe(key: string, options: KeysCommonOptions): Promise<void> {
  await withKms(options, async (kms) => {
    const meta = await kms.describeKey(key);
    const rotation = await kms.getKeyRotationStatus(meta.keyId);
    if (options.json) printJson({ ...meta, rotation });
    else {
      print(describe(meta));
      print(`Rotation:     ${rotation.enabled ? `every ${rotation.periodDays ?? '?'} days, next ${date(rotation.nextRotationDate)}` : 'automatic rotation off'}`);
    }
  });
}

/** enable, disable, cancel-deletion, rotate: one key in, its new state out. */
export async function keysChangeState(
  action: 'enable' | 'disable' | 'cancel-deletion' | 'rotate',
  key: string,
  options: KeysCommonOptions,
): Promise<void> {
  await withKms(options, async (kms) => {
    if (action === 'enable') await kms.enableKey(key);
    else if (action === 'disable') await kms.disableKey(key);
    else if (action === 'cancel-deletion') await kms.cancelKeyDeletion(key);
    else await kms.rotateKeyOnDemand(key);
    const meta = await kms.describeKey(key);
    if (options.json) printJson(meta);
    else {
      const verb = { enable: 'enabled', disable: 'disabled', 'cancel-deletion': 'deletion cancelled', rotate: 'rotated (new key version)' }[action];
      print(`${meta.arn}: ${verb}; state is now ${meta.state}`);
      if (action === 'disable') print('Data under this key is unreadable until it is enabled again.');
      if (action === 'cancel-deletion') print('The key is Disabled; run `airlock keys enable` to use it again.');
    }
  });
}

export async function keysScheduleDeletion(key: string, options: KeysCommonOptions & { days: number }): Promise<void> {
  await withKms(options, async (kms) => {
    const { deletionDate } = await kms.scheduleKeyDeletion(key, options.days);
    const meta = await kms.describeKey(key);
    if (options.json) printJson({ ...meta, deletionDate });
    else {
      print(`${meta.arn}: scheduled for deletion on ${date(deletionDate)} (${options.days} days).`);
      print('After that date its key material is destroyed and data under it can never be decrypted.');
      print('Cancel with `airlock keys cancel-deletion`.');
    }
  });
}

export async function keysAlias(action: 'create' | 'update' | 'delete' | 'list', args: { name?: string; key?: string }, options: KeysCommonOptions): Promise<void> {
  await withKms(options, async (kms) => {
    if (action === 'create') await kms.createAlias(args.name as string, args.key as string);
    else if (action === 'update') await kms.updateAlias(args.name as string, args.key as string);
    else if (action === 'delete') await kms.deleteAlias(args.name as string);
    const aliases = await kms.listAliases(action === 'list' ? args.key : undefined);
    if (options.json) printJson(aliases);
    else if (action !== 'list') print(`alias ${args.name as string} ${action === 'delete' ? 'deleted' : `→ ${args.key as string}`}`);
    else print(aliases.length === 0 ? 'No aliases.' : formatTable(['ALIAS', 'TARGET KEY'], aliases.map((a) => [a.aliasName, a.targetKeyId ?? '-'])));
  });
}
