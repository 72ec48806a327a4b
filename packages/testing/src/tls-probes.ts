// TLS probes for attack tests: the first bytes of a real ClientHello, to open a handshake and go quiet.
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';

/** The first `bytes` bytes of a real ClientHello, captured from Node's TLS client against a plain TCP socket. */
export async function partialClientHello(bytes = 60): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const captured = new Promise<Buffer>((resolve) => {
      server.once('connection', (socket) => {
        socket.once('data', (data: Buffer) => {
          resolve(Buffer.from(data.subarray(0, bytes)));
          socket.destroy();
        });
      });
    });
    const client = tls.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername: 'localhost', rejectUnauthorized: false });
    client.on('error', () => undefined);
    const hello = await captured;
    client.destroy();
    if (hello[0] !== 0x16 || hello.length !== bytes) throw new Error('did not capture a TLS handshake record');
    return hello;
  } finally {
    server.close();
  }
}
