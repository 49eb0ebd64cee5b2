/**
 * The no-op baseline on our own server stack (one port, HTTP/1.1 + h2c sniffing, connection
 * tracking, our connect handler, CORS), with handlers that do no I/O (noop-routes.ts). The gap
 * between this and plain-noop-server.ts (connect-node alone) is what our stack adds to a call;
 * the gap between this and the service is what issuing itself costs.
 */
import type http from 'node:http';
import { createConnectHandler } from '../src/api/connect-handler.ts';
import { corsMiddleware } from '../src/api/cors.ts';
import { createPolyglotServer } from '../src/api/server.ts';
import { noopRoutes } from './noop-routes.ts';

const rpc = createConnectHandler({
  onHandlerError: (method, error) => console.error(`answering ${method} failed`, error),
  routes: noopRoutes,
});
const cors = corsMiddleware([]);
const server = createPolyglotServer((request, response) =>
  cors(request as http.IncomingMessage, response as http.ServerResponse, () => rpc(request, response)),
);
const address = await server.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
console.log(JSON.stringify({ msg: 'coupon-service listening', port: address.port }));
process.once('SIGTERM', () => server.close(1_000).then(() => process.exit(0)));
