import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../domain/errors.ts';

/** Longer than any token handed out; a longer one is refused before any work. */
const TOKEN_MAX_LENGTH = 256;
const MAC_BYTES = 16;

/**
 * Opaque page tokens: the position where the previous page ended, signed (HMAC-SHA256) together
 * with the query that made it. A token from another query (another campaign, another state
 * filter, another list) or altered in any way fails the check and is INVALID_ARGUMENT, rather
 * than silently starting somewhere else. The position itself is no secret (anyone may page to
 * it); the signature only makes the token mean exactly one thing.
 *
 * The key is derived from a secret every instance of the deployment shares (its deployment id),
 * so a page token handed out by one instance is honoured by the others.
 */
export class PageTokens {
  private readonly key: Buffer;

  constructor(secret: string) {
    this.key = createHash('sha256').update(`coupon-service page tokens\n${secret}`).digest();
  }

  /** A token for the page after `position`, valid for `query` only. */
  issue(query: string, position: string): string {
    const payload = Buffer.from(position, 'utf8').toString('base64url');
    return `${payload}.${this.mac(query, payload).toString('base64url')}`;
  }

  /** The position a token of `query` names; INVALID_ARGUMENT for anything it did not issue. */
  read(query: string, token: string): string {
    const refused = new InvalidArgumentError(
      'page_token',
      'page_token is not a token this query handed out (it belongs to another query or was altered); start again with an empty page_token',
    );
    if (token.length > TOKEN_MAX_LENGTH) throw refused;
    const [payload, mac, extra] = token.split('.');
    if (payload === undefined || mac === undefined || extra !== undefined) throw refused;
    // Compared as text: base64 decoding ignores a last character's unused bits, so comparing the
    // decoded bytes would accept a token altered there.
    const given = Buffer.from(mac, 'utf8');
    const expected = Buffer.from(this.mac(query, payload).toString('base64url'), 'utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw refused;
    return Buffer.from(payload, 'base64url').toString('utf8');
  }

  private mac(query: string, payload: string): Buffer {
    return createHmac('sha256', this.key).update(`${query}\n${payload}`).digest().subarray(0, MAC_BYTES);
  }
}
