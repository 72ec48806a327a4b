// Writes docs/formats/vectors/asf1-v1.json: ASF1 known-answer vectors for other implementations.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildAsf1Vectors } from '../test/asf1-vector-cases.js';

const target = fileURLToPath(new URL('../../../docs/formats/vectors/asf1-v1.json', import.meta.url));
writeFileSync(target, `${JSON.stringify(buildAsf1Vectors(), null, 2)}\n`);
console.log(`wrote ${target}`);
