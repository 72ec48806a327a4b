// Public API of @airlock/objectstore (client side): the ObjectStore interface and its S3 implementation.
export type { HeadResult, ListEntry, ObjectStore, ObjectStoreEncryption, PresignOptions, PutOptions } from './object-store.js';
export { createS3ObjectStore, MAX_PRESIGN_SECONDS, resolveS3ObjectStoreConfig, type ResolvedS3ObjectStoreConfig, type S3ObjectStoreOptions } from './s3-object-store.js';
export { objectStoreErrorFromWire } from './wire-errors.js';
