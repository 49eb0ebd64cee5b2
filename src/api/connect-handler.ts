import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ConnectRouterOptions,
  type ContextValues,
  createConnectRouter,
} from '@connectrpc/connect';
import {
  createAsyncIterable,
  type UniversalHandler,
  type UniversalServerRequest,
} from '@connectrpc/connect/protocol';
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from '@connectrpc/connect-node';

/** http and http2 requests and responses, as connect-node takes them. */
export type NodeServerRequest = Parameters<typeof universalRequestFromNodeRequest>[0];
export type NodeServerResponse = Parameters<typeof universalResponseToNodeResponse>[1];

export interface ConnectHandlerOptions extends ConnectRouterOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly contextValues?: (request: NodeServerRequest) => ContextValues;
  /** Told of a call that failed outside its handler, e.g. while writing the answer (connect-node logs these to the console). */
  readonly onHandlerError: (method: string, error: unknown) => void;
}

/**
 * Serves a request with connect. `body`, when given, is the request body an earlier step
 * already read (see early-refusal.ts); connect then reads it from there.
 */
export type ConnectHandler = (
  request: NodeServerRequest,
  response: NodeServerResponse,
  body?: Uint8Array | AsyncIterable<Uint8Array>,
) => void;

/**
 * connect-node's `connectNodeAdapter`, built from the same public parts (a router and the
 * universal request/response converters), plus what the adapter does not do: take over a request
 * whose body was already read, and answer 400 to a request it cannot convert, where the adapter
 * throws from the request listener and takes the process down.
 */
export function createConnectHandler(options: ConnectHandlerOptions): ConnectHandler {
  const router = createConnectRouter({
    ...options,
    acceptCompression: options.acceptCompression ?? [compressionGzip, compressionBrotli],
  });
  options.routes(router);
  const handlers = new Map<string, UniversalHandler>(
    router.handlers.map((handler) => [handler.requestPath, handler]),
  );
  return (request, response, body) => {
    const handler = handlers.get(request.url?.split('?', 2)[0] ?? '');
    if (!handler) {
      response.writeHead(404);
      response.end();
      return;
    }
    let universal: UniversalServerRequest;
    try {
      universal = universalRequestFromNodeRequest(
        request,
        response,
        undefined,
        options.contextValues?.(request),
      );
    } catch {
      // An HTTP/1.0 request without a Host header: connect-node cannot build its URL.
      response.writeHead(400);
      response.end();
      return;
    }
    if (body !== undefined) {
      // A body read in part before connect and answered without reading the rest (connect refuses
      // some calls before reading): drain it, or the keep-alive connection stalls on unread bytes.
      response.once('finish', () => {
        if (!request.readableEnded) request.resume();
      });
    }
    handler(
      body === undefined
        ? universal
        : { ...universal, body: body instanceof Uint8Array ? createAsyncIterable([body]) : body },
    )
      .then((answer) => universalResponseToNodeResponse(answer, response))
      .catch((error: unknown) => {
        // Aborted: the client went away mid-call, nothing is wrong here.
        if (ConnectError.from(error).code !== Code.Aborted)
          options.onHandlerError(handler.method.name, error);
      });
  };
}
