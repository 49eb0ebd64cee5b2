/**
 * The plain no-op baseline: connect-node's own `connectNodeAdapter` on `http.createServer`, with
 * handlers that do no I/O, and nothing of ours (no one-port sniffing, no connection tracking, no
 * CORS, no early refusal). This is what "a connect-node service" costs on this machine: the
 * service is compared with it. noop-server.ts is the same handlers on our own server stack, so
 * the gap between the two no-ops is what our stack adds to every call.
 */
import http from 'node:http';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { noopRoutes } from './noop-routes.ts';

const server = http.createServer(connectNodeAdapter({ routes: noopRoutes }));
// wrk and the bench keep their connections busy; Node's default 5 s would only matter between rounds.
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const address = server.address() as { port: number };
  console.log(JSON.stringify({ msg: 'coupon-service listening', port: address.port }));
});
process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
