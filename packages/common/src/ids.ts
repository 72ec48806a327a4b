// Time-ordered identifiers: UUIDv7 (RFC 9562 §5.7), monotonic within this process, so ids sort in creation order.
import { randomBytes } from 'node:crypto';

let lastMs = -1;
let counter = 0;

/**
 * A UUIDv7: 48 bits of Unix milliseconds, then a 12-bit counter (RFC 9562 §6.2, method 1) that
 * starts at a random value below 2^11 each millisecond and counts up within it, then 62 random
 * bits. Ids made by this process sort (as strings) in the order they were made; when the counter
 * runs out within one millisecond, the timestamp is advanced by one rather than repeat an order.
 */
export function uuidV7(now: number = Date.now()): string {
  // One generator call: bytes 6–7 seed the counter, the rest of 8–15 is the random tail.
  const bytes = randomBytes(16);
  let ms = Math.max(Math.floor(now), lastMs);
  if (ms === lastMs) {
    counter += 1;
    if (counter > 0xfff) {
      ms += 1;
      counter = bytes.readUInt16BE(6) & 0x7ff;
    }
  } else {
    counter = bytes.readUInt16BE(6) & 0x7ff;
  }
  lastMs = ms;
  bytes.writeUIntBE(ms, 0, 6);
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
