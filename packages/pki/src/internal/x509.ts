// The one place that loads @peculiar/x509: its DI container needs a Reflect polyfill and a WebCrypto provider first.
// `reflect-metadata` must be evaluated before @peculiar/x509 (tsyringe throws at load time without
// it). ES module imports are evaluated in source order, so this side-effect import must stay first,
// and every other module must import the library through this file, never directly.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto);

export { x509 };
