// Public API of @airlock/kms (client side): the Kms interface, the AWS-protocol adapter, the data-key cache, and a KeyWrapper.
export type {
  Kms,
  KmsAdmin,
  KmsAlias,
  KmsDataKey,
  KmsKeyEvent,
  KmsKeyEventHandlers,
  KmsKeyEventSnapshot,
  KmsKeyEventSource,
  KmsKeyEventState,
  KmsKeyEventSubscription,
  KmsKeyMetadata,
  KmsKeyState,
  KmsRotationStatus,
} from './kms.js';
export { hasKeyEvents } from './kms.js';
export { createAwsKms, resolveAwsKmsConfig, type AwsKmsOptions, type ResolvedAwsKmsConfig } from './aws-kms.js';
export {
  createCachingKms,
  isCachingKms,
  KILL_SWITCH_BOUND_MS,
  resolveDataKeyCacheConfig,
  type DataKeyCacheOptions,
  type CachingKms,
  type DataKeyCacheStats,
  type KeyEventStatus,
  type ResolvedDataKeyCacheConfig,
} from './data-key-cache.js';
export { createKmsKeyWrapper } from './kms-key-wrapper.js';
export { ensureKey } from './ensure-key.js';
export { kmsErrorFromWire, kmsWireError } from './wire-errors.js';
