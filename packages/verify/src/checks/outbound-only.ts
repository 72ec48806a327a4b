// Check dataplane.outbound-only: the connection table shows the data plane dialled the tunnel and dispatch, never the reverse.
import { isIP } from 'node:net';
import { checkResult, type Check, type CheckResult, type Evidence } from '../check.js';
import type { EndpointsFile } from '../endpoints-file.js';
import { endpointAddress, isLoopbackHost, type EndpointAddress } from '../internal/endpoint-address.js';
import { ephemeralPortRange, formatSocketAddress, processTree, readTcpSockets, type SocketAddress, type TcpSocket } from '../internal/socket-table.js';
import { findTunnel, NO_TUNNEL_DETAILS } from './tunnel.js';

export const NO_PLANE_PIDS_DETAILS =
  'endpoints.json carries no pids.controlPlane and pids.dataPlane, so no connection can be attributed to a plane';

/** The channels the data plane must dial: the endpoints named `tunnel` and `dispatch`. */
function channels(file: EndpointsFile): Array<{ name: string; address: EndpointAddress }> {
  return file.endpoints.flatMap((endpoint) => {
    const address = endpoint.name === 'tunnel' || endpoint.name === 'dispatch' ? endpointAddress(endpoint.url) : undefined;
    return address === undefined ? [] : [{ name: endpoint.name, address }];
  });
}

function sameHost(seen: string, named: string): boolean {
  const bare = seen.replace(/^::ffff:/, '');
  if (isLoopbackHost(named)) return isLoopbackHost(bare);
  if (isIP(named) !== 0) return bare === named || seen === named;
  return true; // A DNS name: the table shows addresses only, so match on the port.
}

/** Whether `peer` is the address a listening socket accepts on (wildcards match any address). */
function reaches(peer: SocketAddress, listener: SocketAddress): boolean {
  if (peer.port !== listener.port) return false;
  const address = listener.address;
  if (address === '*' || address === '0.0.0.0' || address === '::') return true;
  return peer.address.replace(/^::ffff:/, '') === address.replace(/^::ffff:/, '');
}

const describe = (socket: TcpSocket): string =>
  `${formatSocketAddress(socket.local)} → ${formatSocketAddress(socket.peer)} (${socket.owners.map((o) => `${o.command}/${o.pid}`).join(',') || 'owner unknown'})`;

export const outboundOnlyCheck: Check = {
  id: 'dataplane.outbound-only',
  title: 'The data plane dials the control plane (tunnel, dispatch); the control plane never connects to the data plane',
  // Reads the connection table: other checks' probe connections must not be open meanwhile.
  exclusive: true,
  async run(ctx, signal): Promise<CheckResult> {
    const self = outboundOnlyCheck;
    const file = ctx.endpointsFile;
    if (findTunnel(file) === undefined) return checkResult(self, 'fail', { problems: [NO_TUNNEL_DETAILS] }, { summary: NO_TUNNEL_DETAILS, details: NO_TUNNEL_DETAILS });
    const cpPid = file.pids?.controlPlane;
    const dpPid = file.pids?.dataPlane;
    if (cpPid === undefined || dpPid === undefined) return checkResult(self, 'fail', { problems: [NO_PLANE_PIDS_DETAILS] }, { summary: NO_PLANE_PIDS_DETAILS, details: NO_PLANE_PIDS_DETAILS });

    const dp = await processTree([dpPid]);
    // A process in both trees counts as data plane: the control plane's own tree is what must never dial.
    const cp = new Set([...(await processTree([cpPid]))].filter((pid) => !dp.has(pid)));
    const ownedBy = (socket: TcpSocket, tree: ReadonlySet<number>): boolean => socket.owners.some((owner) => tree.has(owner.pid));
    const [connected, listening, range] = await Promise.all([readTcpSockets('connected', signal), readTcpSockets('listening', signal), ephemeralPortRange()]);
    const established = connected.filter((socket) => socket.state === 'ESTAB');
    const dpListening = listening.filter((socket) => ownedBy(socket, dp));
    const wanted = channels(file);

    const problems: string[] = [];
    const dataPlaneConnections: string[] = [];
    const otherClients: string[] = [];
    for (const channel of wanted) {
      const clients = established.filter((socket) => socket.peer.port === channel.address.port && sameHost(socket.peer.address, channel.address.host));
      let fromDataPlane = 0;
      for (const socket of clients) {
        if (ownedBy(socket, dp)) {
          fromDataPlane++;
          dataPlaneConnections.push(`${channel.name}: ${describe(socket)}`);
          if (dpListening.some((listener) => listener.local.port === socket.local.port)) {
            problems.push(`${channel.name}: the data plane's end ${formatSocketAddress(socket.local)} is one of its listening ports, not an ephemeral one`);
          } else if (range !== undefined && (socket.local.port < range.low || socket.local.port > range.high)) {
            problems.push(`${channel.name}: the data plane's end ${formatSocketAddress(socket.local)} is outside the ephemeral range ${range.low}-${range.high}`);
          }
        } else if (ownedBy(socket, cp)) {
          problems.push(`${channel.name}: the control plane holds the client end of a connection to its own ${channel.name} (${describe(socket)})`);
        } else if (socket.owners.length === 0) {
          problems.push(`${channel.name}: cannot tell which process opened ${describe(socket)} (ss -p shows no owner; run as the stack's user or root)`);
        } else {
          otherClients.push(`${channel.name}: ${describe(socket)}`);
        }
      }
      if (fromDataPlane === 0) problems.push(`${channel.name}: the data plane (pid ${dpPid}) holds no connection to ${channel.address.hostPort}`);
    }

    // The control plane must never be the client of anything the data plane listens on.
    const inbound = established.filter((socket) => ownedBy(socket, cp) && dpListening.some((listener) => reaches(socket.peer, listener.local)));
    for (const socket of inbound) problems.push(`the control plane connected to a data-plane listening socket: ${describe(socket)}`);

    const evidence: Evidence = {
      controlPlanePid: cpPid,
      dataPlanePid: dpPid,
      channels: wanted.map((channel) => `${channel.name} ${channel.address.hostPort}`),
      dataPlaneConnections,
      dataPlaneListening: dpListening.map((socket) => formatSocketAddress(socket.local)),
      controlPlaneToDataPlane: inbound.map(describe),
      ...(otherClients.length === 0 ? {} : { otherClients }),
      ...(range === undefined ? {} : { ephemeralPortRange: `${range.low}-${range.high}` }),
    };
    if (problems.length > 0) {
      evidence.problems = problems;
      return checkResult(self, 'fail', evidence, { summary: problems[0] ?? '', details: problems.join('\n') });
    }
    return checkResult(self, 'pass', evidence, {
      summary: `${dataPlaneConnections.length} connection${dataPlaneConnections.length === 1 ? '' : 's'} dialled by the data plane (pid ${dpPid}); none from the control plane to it`,
    });
  },
};
