import type { UniversalServerResponse } from '@connectrpc/connect/protocol';

/**
 * connect-es (2.2.0, still so in 2.3.0) answers a request message that fails to decode from the
 * binary format (invalid UTF-8 in a string, a truncated field, an illegal tag, nesting past the
 * recursion limit) with INTERNAL "parse binary: ...": its serialization is shared by clients,
 * where a bad message from the server is indeed internal. Here it is the caller's bad input, which
 * connect-go and grpc-go answer INVALID_ARGUMENT (and connect-es itself does for JSON). The parse
 * runs before any interceptor, so the answer is corrected on its way out, for each protocol's way
 * of carrying the status. Only errors whose message is connect's parse failure are touched.
 */
const PARSE_FAILURE = 'parse binary:';
const PARSE_FAILURE_ENCODED = encodeURIComponent(PARSE_FAILURE);

/** Envelope flags: gRPC-Web trailers, and the Connect streaming end-of-stream message. */
const GRPC_WEB_TRAILER = 0x80;
const CONNECT_END_STREAM = 0x02;

/** Synchronous unless the answer is a Connect unary error, whose body must be read to be judged. */
export function parseFailuresAsInvalidArgument(
  answer: UniversalServerResponse,
): UniversalServerResponse | Promise<UniversalServerResponse> {
  const type = answer.header?.get('content-type') ?? '';
  if (type.startsWith('application/grpc-web')) {
    return { ...answer, body: mapChunks(answer.body, (chunk) => rewriteEnvelope(chunk, GRPC_WEB_TRAILER)) };
  }
  if (type.startsWith('application/grpc')) {
    return { ...answer, body: thenFix(answer.body, () => fixGrpcStatus(answer.trailer)) };
  }
  if (type.startsWith('application/connect+')) {
    return { ...answer, body: mapChunks(answer.body, (chunk) => rewriteEnvelope(chunk, CONNECT_END_STREAM)) };
  }
  // Connect unary: an INTERNAL error is HTTP 500 with a small JSON body.
  if (answer.status === 500 && type.startsWith('application/json') && answer.body) {
    return connectUnaryFixed(answer, answer.body);
  }
  return answer;
}

async function connectUnaryFixed(
  answer: UniversalServerResponse,
  answerBody: AsyncIterable<Uint8Array>,
): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of answerBody) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  const error = parseJson(body) as { code?: unknown; message?: unknown } | undefined;
  if (error?.code !== 'internal' || !String(error.message).startsWith(PARSE_FAILURE)) {
    return { ...answer, body: oneChunk(body) };
  }
  const fixed = Buffer.from(JSON.stringify({ ...error, code: 'invalid_argument' }));
  const header = new Headers(answer.header);
  if (header.has('content-length')) header.set('content-length', String(fixed.byteLength));
  return { ...answer, status: 400, header, body: oneChunk(fixed) };
}

function fixGrpcStatus(trailer: Headers | undefined): void {
  if (
    trailer?.get('grpc-status') === '13' &&
    trailer.get('grpc-message')?.startsWith(PARSE_FAILURE_ENCODED)
  ) {
    trailer.set('grpc-status', '3');
  }
}

/** An uncompressed envelope of `flag` holding connect's parse failure, rewritten; anything else as is. */
function rewriteEnvelope(chunk: Uint8Array, flag: number): Uint8Array {
  if (chunk.byteLength < 5 || chunk[0] !== flag) return chunk;
  const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (bytes.readUInt32BE(1) !== bytes.byteLength - 5) return chunk;
  const text = bytes.subarray(5).toString('utf8');
  let fixed: string | undefined;
  if (flag === GRPC_WEB_TRAILER) {
    if (/^grpc-status: 13\r$/m.test(text) && text.includes(`grpc-message: ${PARSE_FAILURE_ENCODED}`)) {
      fixed = text.replace(/^grpc-status: 13\r$/m, 'grpc-status: 3\r');
    }
  } else {
    const end = parseJson(Buffer.from(text)) as { error?: { code?: unknown; message?: unknown } } | undefined;
    if (end?.error?.code === 'internal' && String(end.error.message).startsWith(PARSE_FAILURE)) {
      fixed = JSON.stringify({ ...end, error: { ...end.error, code: 'invalid_argument' } });
    }
  }
  if (fixed === undefined) return chunk;
  const data = Buffer.from(fixed);
  const header = Buffer.alloc(5);
  header[0] = flag;
  header.writeUInt32BE(data.byteLength, 1);
  return Buffer.concat([header, data]);
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}

async function* oneChunk(chunk: Uint8Array): AsyncIterable<Uint8Array> {
  yield chunk;
}

async function* mapChunks(
  body: AsyncIterable<Uint8Array> | undefined,
  map: (chunk: Uint8Array) => Uint8Array,
): AsyncIterable<Uint8Array> {
  if (!body) return;
  for await (const chunk of body) yield map(chunk);
}

/** The body as is, then `fix` once it has ended: gRPC trailers are written after the body. */
async function* thenFix(
  body: AsyncIterable<Uint8Array> | undefined,
  fix: () => void,
): AsyncIterable<Uint8Array> {
  if (body) yield* body;
  fix();
}
