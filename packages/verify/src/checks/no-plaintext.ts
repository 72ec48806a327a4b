// Check transport.no-plaintext: every listening TCP socket of the stack's processes (listed or not) speaks only TLS.
import { checkResult, type Check, type CheckResult, type Evidence } from '../check.js';
import { endpointAddress, isLoopbackHost } from '../internal/endpoint-address.js';
import { connectHostFor, formatSocketAddress, readTcpSockets, type TcpSocket } from '../internal/socket-table.js';
import { stackPids, stackRootPids } from '../internal/stack-processes.js';
import { plaintextHttpProbe, tlsHandshake, type PlaintextProbe } from '../internal/tls-probe.js';

function describePlaintext(probe: PlaintextProbe): string {
  switch (probe.answer) {
    case 'http':
      return `answered HTTP (${probe.firstLine ?? ''})`;
    case 'plaintext':
      return `answered plaintext (${probe.firstLine ?? ''})`;
    case 'tls-record':
      return 'TLS alert';
    case 'closed':
      return 'closed, no answer';
    case 'silent':
      return 'no answer';
    case 'unreachable':
      return `unreachable (${probe.error ?? 'unknown'})`;
  }
}

function owners(socket: TcpSocket, stack: ReadonlySet<number>): string {
  return socket.owners
    .filter((owner) => stack.has(owner.pid))
    .map((owner) => `${owner.command}/${owner.pid}`)
    .filter((value, index, all) => all.indexOf(value) === index)
    .join(',');
}

export const noPlaintextCheck: Check = {
  id: 'transport.no-plaintext',
  title: "No listening socket of the stack answers plaintext; each completes a TLS handshake with the data directory's CA",
  async run(ctx, signal): Promise<CheckResult> {
    const self = noPlaintextCheck;
    const roots = stackRootPids(ctx.endpointsFile);
    const stack = await stackPids(ctx.endpointsFile);
    const listening = (await readTcpSockets('listening', signal)).filter((socket) => socket.owners.some((owner) => stack.has(owner.pid)));
    const evidence: Evidence = {
      stackPids: [...stack].sort((a, b) => a - b).map(String),
      sockets: listening.map((socket) => `${formatSocketAddress(socket.local)} (${owners(socket, stack)})`),
    };
    const problems: string[] = [];
    if (listening.length === 0) {
      problems.push(
        `no listening TCP socket belongs to the stack (pid ${roots.join(', ')} and descendants); is the stack running, and may this user see its sockets (ss -p)?`,
      );
    }

    // Every listed endpoint on this machine must be one of the stack's own sockets, not an impostor's.
    for (const endpoint of ctx.endpointsFile.endpoints) {
      const address = endpointAddress(endpoint.url);
      if (address === undefined || !isLoopbackHost(address.host)) continue;
      if (!listening.some((socket) => socket.local.port === address.port)) {
        problems.push(`${endpoint.name}: no socket of the stack's processes listens on port ${address.port}`);
      }
    }

    const probed = await Promise.all(
      listening.map(async (socket) => {
        const host = connectHostFor(socket.local);
        const [plaintext, tls] = await Promise.all([
          plaintextHttpProbe(host, socket.local.port, { signal }),
          // A short wait after the handshake shows mTLS listeners refusing the certificate-less probe.
          tlsHandshake(host, socket.local.port, { ca: ctx.caPem, checkName: false, verdictMs: 300, signal }),
        ]);
        return { socket, plaintext, tls };
      }),
    );
    for (const { socket, plaintext, tls } of probed) {
      const where = formatSocketAddress(socket.local);
      const tlsText =
        tls.outcome === 'failed'
          ? `no TLS handshake (${tls.error ?? 'unknown'})`
          : // An alert after the handshake is an mTLS listener refusing the certificate-less probe: worth showing.
            `${tls.protocol ?? '?'} ${tls.cipher ?? '?'}${tls.outcome === 'rejected-after-handshake' && tls.error?.startsWith('ERR_SSL_') === true ? ` then ${tls.error}` : ''}`;
      evidence[where] = `plaintext GET: ${describePlaintext(plaintext)}; TLS: ${tlsText}`;
      if (plaintext.answer === 'http') problems.push(`${where}: answered a plaintext HTTP request (${plaintext.firstLine ?? ''})`);
      if (plaintext.answer === 'plaintext') problems.push(`${where}: answered plain TCP with non-TLS bytes (${plaintext.firstLine ?? ''})`);
      if (plaintext.answer === 'unreachable') problems.push(`${where}: could not be reached for the plaintext probe (${plaintext.error ?? 'unknown'})`);
      if (tls.outcome === 'failed') problems.push(`${where}: did not complete a TLS handshake with the data directory's CA (${tls.error ?? 'unknown'})`);
    }

    if (problems.length > 0) {
      evidence.problems = problems;
      return checkResult(self, 'fail', evidence, { summary: problems[0] ?? '', details: problems.join('\n') });
    }
    return checkResult(self, 'pass', evidence, {
      summary: `${listening.length} listening socket${listening.length === 1 ? '' : 's'} of pid ${roots.join(',')}: TLS only, no plaintext answer`,
    });
  },
};
