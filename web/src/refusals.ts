import { Code, ConnectError } from '@connectrpc/connect';
import type { Language } from './i18n.tsx';
import { formatTime, type useI18n } from './i18n.tsx';

type Messages = ReturnType<typeof useI18n>['t'];

/** The fields of CreateCampaign, as the server's messages name them (they start with the name). */
export type CampaignField = 'name' | 'amount' | 'issued_at' | 'expires_at';

/** Which form field a CreateCampaign refusal is about, so it is shown next to that field. */
export function fieldOf(error: ConnectError): CampaignField | undefined {
  if (error.code === Code.AlreadyExists) return 'name';
  const match = /^(name|amount|issued_at|expires_at)\b/.exec(error.rawMessage);
  return match?.[1] as CampaignField | undefined;
}

/** An IssueCoupon refusal in words a shopper understands (the server's own text otherwise). */
export function issueRefusal(error: unknown, t: Messages, language: Language): string {
  const refusal = ConnectError.from(error);
  const text = refusal.rawMessage;
  switch (refusal.code) {
    case Code.AlreadyExists:
      return t.alreadyIssued;
    case Code.FailedPrecondition: {
      const opens = /opens at (\S+);/.exec(text);
      return opens?.[1] ? t.notOpenYet(formatTime(new Date(opens[1]), language)) : t.ended;
    }
    case Code.ResourceExhausted: {
      const retry = /retry in (\d+) ms/.exec(text);
      if (text.startsWith('rate limited')) return t.rateLimited(Number(retry?.[1] ?? 1000));
      return t.soldOut;
    }
    case Code.Unauthenticated:
      return t.unauthenticated;
    default:
      return text;
  }
}

/** An admin refusal: the server's message, with the missing token said in words. */
export function adminRefusal(error: unknown, t: Messages): string {
  const refusal = ConnectError.from(error);
  return refusal.code === Code.Unauthenticated ? t.unauthenticated : refusal.rawMessage;
}

/**
 * A GetCoupon or RedeemCoupon refusal in words a shop understands. The server says which of the
 * two preconditions failed only in its message ("already used by another order", "expired at").
 */
export function couponRefusal(error: unknown, t: Messages, language: Language): string {
  const refusal = ConnectError.from(error);
  const text = refusal.rawMessage;
  switch (refusal.code) {
    case Code.NotFound:
      return t.couponNotFound;
    case Code.InvalidArgument:
      // The order id's rule is the server's own sentence; a malformed code gets the format.
      return text.startsWith('order_id') ? text : t.notACode;
    case Code.FailedPrecondition: {
      const expired = /expired at (\S+)$/.exec(text);
      if (expired?.[1]) return t.couponExpired(formatTime(new Date(expired[1]), language));
      return text.includes('already used by another order') ? t.usedByAnotherOrder : text;
    }
    case Code.Unauthenticated:
      return t.unauthenticated;
    default:
      return text;
  }
}
