import { fromBinary, fromJsonString } from '@bufbuild/protobuf';
import type { ConnectError } from '@connectrpc/connect';
import {
  codeToHttpStatus,
  contentTypeUnaryJson,
  errorToJsonBytes,
  parseContentType,
  parseTimeout,
} from '@connectrpc/connect/protocol-connect';
import { DomainError } from '../domain/errors.ts';
import {
  CouponService,
  type IssueCouponRequest,
  IssueCouponRequestSchema,
} from '../gen/coupon/v1/coupon_pb.js';
import type { Tracing } from '../infrastructure/tracing.ts';
import {
  type ConnectHandler,
  type NodeServerRequest,
  type NodeServerResponse,
  unreadBody,
} from './connect-handler.ts';
import { type CallObserver, traceEarlyRefusal } from './observability.ts';
import type { UserTokens, VerifiedCall } from './user-tokens.ts';

const ISSUE_COUPON_PATH = `/${CouponService.typeName}/${CouponService.method.issueCoupon.name}`;

/** An IssueCoupon request is a few dozen bytes; a larger body is left to connect alone. */
const MAX_BODY_BYTES = 16 * 1024;

export interface RefusalsFromMemory {
  /** The refusal IssueCoupon would end in, when it is known without a store; see CouponIssuer. */
  refusalFromMemory(campaignId: string, userId: string): DomainError | undefined;
}

/**
 * Answers the IssueCoupon calls the issuer can refuse from memory (a campaign known to be sold
 * out, a user who already holds its coupon, an id no campaign has, bad input) before connect, and
 * hands every other request to connect, with its body when it was read here.
 *
 * Why: once a campaign is sold out, a storm of late calls is nothing but refusals, and connect's
 * per-call machinery (universal request, handler context, abort signals, interceptors) costs four
 * times what the answer does. The answer is connect's own: its protocol helpers pick the HTTP
 * status and write the error body, and the observer counts it like any other call
 * (test/api/early-refusal.test.ts compares both paths byte for byte).
 *
 * Only Connect-protocol unary calls are judged here (Connect-Web browsers, Connect JSON and
 * binary clients, k6 over HTTP). gRPC and gRPC-Web calls take connect's full path, where the
 * same refusal still costs no store round trip. So does every call this cannot judge cheaply and
 * exactly: a compressed body, one larger than MAX_BODY_BYTES, a malformed timeout header, or a
 * body the generated schema does not decode strictly (connect, which is more lenient, answers it).
 * An early refusal skips the interceptors: the per-address rate limit does not count it, since
 * it costs less than the limiter's own Redis call.
 */
export function earlyRefusalHandler(deps: {
  issuer: RefusalsFromMemory;
  observer: CallObserver;
  /** Told, on connect's path, of the user a token here proved. */
  connect: ConnectHandler<VerifiedCall>;
  /** With user tokens configured: the verifier. */
  users?: { tokens: UserTokens };
  /** With tracing on, each refusal answered here is a span of its own. */
  tracing?: Tracing | undefined;
}): (request: NodeServerRequest, response: NodeServerResponse) => void {
  const { issuer, observer, connect, users, tracing } = deps;
  const errorBodyOf = errorBodies();
  return (request, response) => {
    const started = performance.now();
    const format = readableIssueCall(request);
    if (!format) {
      connect(request, response);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        // Too large to be an IssueCoupon worth judging: connect reads what was read, then the rest.
        request.off('data', onData);
        request.off('end', onEnd);
        request.pause();
        connect(request, response, readAgain(chunks, unreadBody(request)));
      }
    };
    const refuse = (refusal: DomainError, campaignId: string | undefined) => {
      const answer = tracing
        ? traceEarlyRefusal(tracing, observer, { headers: request.headers, campaignId, started }, refusal)
        : observer.refused(CouponService.method.issueCoupon.name, refusal, started);
      const errorBody = errorBodyOf(answer);
      // Lowercase, as connect writes them.
      response.writeHead(codeToHttpStatus(answer.code), {
        'content-type': contentTypeUnaryJson,
        'content-length': errorBody.byteLength,
      });
      response.end(errorBody);
    };
    /** `verified`: the call's user as its token proved it, when user tokens are on. */
    const judge = (body: Buffer, call: IssueCouponRequest | undefined, verified?: VerifiedCall) => {
      const refusal = judgeFromMemory(issuer, call);
      if (refusal) {
        // The user is likely to call again soon: their token is worth remembering.
        if (verified) users?.tokens.refused(verified.authorization);
        refuse(refusal, call?.campaignId);
      } else connect(request, response, body, verified);
    };
    const onEnd = () => {
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      const call = decodeIssueCall(body, format.binary);
      if (!call || !users) {
        judge(body, call);
        return;
      }
      // With user tokens, the user is the token's: nothing is judged (or refused from memory
      // for someone) before the token is verified.
      const authorization = request.headers.authorization;
      const judgeAs = (userId: string) => {
        // Verified: nothing after this reads the token, and connect would copy it, character
        // by character, into the web Headers of the call.
        // (Set to undefined, which connect skips, rather than deleted: a delete turns the
        // headers object into a slow dictionary.)
        request.headers.authorization = undefined;
        call.userId = userId;
        judge(body, call, { user: userId, authorization });
      };
      const refuseToken = (error: unknown) => {
        if (error instanceof DomainError) refuse(error, call.campaignId);
        else connect(request, response, body);
      };
      let user: string | Promise<string>;
      try {
        user = users.tokens.userOf(authorization, call.userId);
      } catch (error) {
        refuseToken(error);
        return;
      }
      if (typeof user === 'string') judgeAs(user);
      else user.then(judgeAs, refuseToken);
    };
    request.on('data', onData);
    request.once('end', onEnd);
    // A client that goes away mid-body is owed no answer; the error must only not go unhandled.
    request.on('error', () => undefined);
  };
}

/** How many distinct refusal answers a handler keeps encoded. */
const ERROR_BODIES_MAX = 1_000;

/**
 * connect's JSON error body for a refusal, the same bytes errorToJsonBytes writes, encoded once
 * per code and message: most refusals of a storm are one answer (a campaign's "sold out", its
 * "opens at"), and encoding it was a tenth of such a call's CPU.
 */
function errorBodies(): (error: ConnectError) => Uint8Array {
  const bodies = new Map<string, Uint8Array>();
  return (error) => {
    // Details (a rate limit's retry time) are not in the key: such answers are encoded each time.
    if (error.details.length > 0) return errorToJsonBytes(error, {});
    const key = `${error.code} ${error.rawMessage}`;
    let body = bodies.get(key);
    if (body === undefined) {
      body = errorToJsonBytes(error, {});
      // Per-user messages ("already issued" names the user) would grow it without end.
      if (bodies.size >= ERROR_BODIES_MAX) bodies.clear();
      bodies.set(key, body);
    }
    return body;
  };
}

async function* readAgain(
  read: readonly Buffer[],
  rest: AsyncIterable<Uint8Array>,
): AsyncIterable<Uint8Array> {
  yield* read;
  yield* rest;
}

/** The body format of an IssueCoupon call this handler can judge; undefined for any other request. */
function readableIssueCall(request: NodeServerRequest): { binary: boolean } | undefined {
  if (request.method !== 'POST' || request.url !== ISSUE_COUPON_PATH) return undefined;
  const headers = request.headers;
  const encoding = headers['content-encoding'];
  if (encoding !== undefined && encoding !== 'identity') return undefined;
  // Of unknown length (chunked, or HTTP/2), it is read until it proves too large.
  if (Number(headers['content-length'] ?? 0) > MAX_BODY_BYTES) return undefined;
  const type = parseContentType(headers['content-type'] ?? null);
  if (!type || type.stream) return undefined;
  // connect refuses a malformed timeout before it reads the body: let it.
  const timeout = headers['connect-timeout-ms'];
  if (Array.isArray(timeout) || parseTimeout(timeout ?? null, Number.MAX_SAFE_INTEGER).error)
    return undefined;
  return type;
}

/** A bug in the judging must not take the process down from an event listener: connect gets the call. */
function judgeFromMemory(
  issuer: RefusalsFromMemory,
  call: IssueCouponRequest | undefined,
): DomainError | undefined {
  if (!call) return undefined;
  try {
    return issuer.refusalFromMemory(call.campaignId, call.userId);
  } catch {
    return undefined;
  }
}

function decodeIssueCall(body: Buffer, binary: boolean): IssueCouponRequest | undefined {
  try {
    return binary
      ? fromBinary(IssueCouponRequestSchema, body)
      : fromJsonString(IssueCouponRequestSchema, body.toString('utf8'));
  } catch {
    return undefined;
  }
}
