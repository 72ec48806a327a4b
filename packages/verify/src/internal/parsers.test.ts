// Unit tests for the tool-output parsers: openssl s_client, sslscan, ss, endpoint URLs and plaintext answers.
import { describe, expect, it } from 'vitest';
import { describeSuiteProblem } from '../checks/aead-only.js';
import { endpointAddress } from './endpoint-address.js';
import { parseOpensslReason, parseSClientOutput } from './openssl.js';
import { parseSocketAddress, parseSsLine } from './socket-table.js';
import { parseSslscanSuites } from './suite-scan.js';
import { classifyPlaintextAnswer } from './tls-probe.js';

describe('openssl s_client output', () => {
  it('reads the session protocol, not the cipher version on the "New," line', () => {
    const text = ['New, TLSv1.0, Cipher is ECDHE-ECDSA-AES256-SHA', 'SSL-Session:', '    Protocol  : TLSv1.1', '    Cipher    : ECDHE-ECDSA-AES256-SHA'].join('\n');
    expect(parseSClientOutput(text)).toEqual({ protocol: 'TLSv1.1', cipher: 'ECDHE-ECDSA-AES256-SHA' });
  });

  it('reads TLS 1.3 output without a session block, and -brief output', () => {
    expect(parseSClientOutput('New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\n')).toEqual({ protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' });
    expect(parseSClientOutput('Protocol version: TLSv1.2\nCiphersuite: ECDHE-ECDSA-AES128-GCM-SHA256\n')).toEqual({
      protocol: 'TLSv1.2',
      cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256',
    });
  });

  it('reports no cipher for a failed handshake, and the alert as the reason', () => {
    const text = [
      '40576D6C967F0000:error:0A00042E:SSL routines:ssl3_read_bytes:tlsv1 alert protocol version:../ssl/record/rec_layer_s3.c:1601:SSL alert number 70',
      'CONNECTED(00000003)',
      'New, (NONE), Cipher is (NONE)',
      '    Protocol  : TLSv1.1',
      '    Cipher    : 0000',
    ].join('\n');
    expect(parseSClientOutput(text)).toEqual({});
    expect(parseOpensslReason(text)).toBe('tlsv1 alert protocol version');
    expect(parseOpensslReason('4037:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../ssl/record/ssl3_record.c:350:')).toBe('wrong version number');
    expect(parseOpensslReason('connect:errno=111')).toBe('connect failed (errno 111)');
  });
});

describe('sslscan output', () => {
  const text = [
    '  Supported Server Cipher(s):',
    'Preferred TLSv1.2  256 bits  ECDHE-ECDSA-AES256-GCM-SHA384 Curve 25519 DHE 253',
    'Accepted  TLSv1.2  256 bits  ECDHE-ECDSA-AES256-SHA        Curve 25519 DHE 253',
    'Preferred TLSv1.3  256 bits  TLS_AES_256_GCM_SHA384        Curve 25519 DHE 253',
    'Accepted  TLSv1.3  128 bits  TLS_AES_128_GCM_SHA256        Curve 25519 DHE 253',
  ].join('\n');

  it('lists preferred and accepted suites of one protocol', () => {
    expect(parseSslscanSuites(text, 'TLSv1.2')).toEqual(['ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-AES256-SHA']);
    expect(parseSslscanSuites(text, 'TLSv1.3')).toEqual(['TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256']);
  });

  it('names why a suite is outside the policy', () => {
    expect(describeSuiteProblem('ECDHE-ECDSA-AES256-SHA')).toMatch(/^CBC-mode/);
    expect(describeSuiteProblem('ECDHE-RSA-AES128-SHA256')).toMatch(/^CBC-mode/);
    expect(describeSuiteProblem('AES128-GCM-SHA256')).toMatch(/without ECDHE/);
    expect(describeSuiteProblem('TLS_AES_128_CCM_8_SHA256')).toMatch(/truncated/);
    expect(describeSuiteProblem('RC4-SHA')).toMatch(/RC4/);
  });
});

describe('ss output', () => {
  it('parses listening and established lines, IPv6, wildcards, interfaces and process names with spaces', () => {
    expect(parseSsLine('LISTEN 0      511    127.0.0.1:39785 0.0.0.0:* users:(("node",pid=21220,fd=20))')).toEqual({
      state: 'LISTEN',
      local: { address: '127.0.0.1', port: 39785 },
      peer: { address: '0.0.0.0', port: 0 },
      owners: [{ command: 'node', pid: 21220 }],
    });
    expect(parseSsLine('LISTEN 0 4096 [::1]:4369 [::]:* users:(("node (vitest 1)",pid=7,fd=4),("child",pid=8,fd=4))')?.owners).toEqual([
      { command: 'node (vitest 1)', pid: 7 },
      { command: 'child', pid: 8 },
    ]);
    expect(parseSsLine('ESTAB 0 0 127.0.0.1:56800 127.0.0.1:4369')).toMatchObject({ state: 'ESTAB', owners: [] });
    expect(parseSocketAddress('*:9000')).toEqual({ address: '*', port: 9000 });
    expect(parseSocketAddress('127.0.0.53%lo:53')).toEqual({ address: '127.0.0.53', port: 53 });
    expect(parseSocketAddress('[::ffff:127.0.0.1]:80')).toEqual({ address: '::ffff:127.0.0.1', port: 80 });
  });
});

describe('endpoint URLs', () => {
  it('gives Node and openssl their own spellings', () => {
    expect(endpointAddress('https://127.0.0.1:9443')).toEqual({ host: '127.0.0.1', port: 9443, hostPort: '127.0.0.1:9443', scheme: 'https' });
    expect(endpointAddress('https://[::1]:9000')).toEqual({ host: '::1', port: 9000, hostPort: '[::1]:9000', scheme: 'https' });
    expect(endpointAddress('https://localhost')).toMatchObject({ port: 443, hostPort: 'localhost:443' });
    expect(endpointAddress('nonsense')).toBeUndefined();
  });
});

describe('plaintext answers', () => {
  it('tells HTTP, other plaintext and TLS records apart', () => {
    expect(classifyPlaintextAnswer(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'))).toEqual({ answer: 'http', firstLine: 'HTTP/1.1 400 Bad Request' });
    expect(classifyPlaintextAnswer(Buffer.from('220 banner\x00\r\n'))).toEqual({ answer: 'plaintext', firstLine: '220 banner.' });
    expect(classifyPlaintextAnswer(Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]))).toEqual({ answer: 'tls-record' });
    expect(classifyPlaintextAnswer(Buffer.alloc(0))).toEqual({ answer: 'closed' });
  });
});
