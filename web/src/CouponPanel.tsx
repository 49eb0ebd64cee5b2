import { timestampDate } from '@bufbuild/protobuf/wkt';
import { useState } from 'react';
import { Link } from 'wouter';
import { type Coupon, CouponState } from '../../src/gen/coupon/v1/coupon_pb.js';
import { couponClient } from './api.ts';
import { formatTime, timeZone, useI18n } from './i18n.tsx';
import { couponRefusal } from './refusals.ts';

/** The state's short name, as in the proto without its prefix: ISSUED, REDEEMED, EXPIRED. */
type CouponStateName = 'UNSPECIFIED' | 'ISSUED' | 'REDEEMED' | 'EXPIRED';

function couponStateName(state: CouponState): CouponStateName {
  return (CouponState[state] ?? 'UNSPECIFIED') as CouponStateName;
}

type Outcome = { readonly ok: boolean; readonly text: string };

/**
 * A shop's counter: look a code up (GetCoupon, open: the code is the secret), redeem it for an
 * order (RedeemCoupon, admin) and cancel that redemption when the order is cancelled
 * (CancelRedemption, admin). After a refused change the coupon is read again, so the order that
 * holds it or its validity is on screen next to the refusal.
 */
export function CouponPanel({ headingLevel }: { headingLevel: 2 | 3 }) {
  const { t, language } = useI18n();
  const [code, setCode] = useState('');
  const [coupon, setCoupon] = useState<Coupon>();
  const [lookupError, setLookupError] = useState<string>();
  const [orderId, setOrderId] = useState('');
  const [redeemOutcome, setRedeemOutcome] = useState<Outcome>();
  // One change of the coupon at a time: a double click would send it twice, and the second
  // answer (a refusal: already done) would replace the first one's.
  const [changing, setChanging] = useState(false);

  const lookUp = async (wanted: string) => {
    try {
      const answer = await couponClient.getCoupon({ code: wanted });
      setCoupon(answer.coupon);
      setLookupError(undefined);
    } catch (failure) {
      setCoupon(undefined);
      setLookupError(couponRefusal(failure, t, language));
    }
  };

  /**
   * Sends one change of the coupon (redeem, cancel) and shows its answer; after a refusal the
   * coupon is read again, so what holds it is on screen next to the refusal.
   */
  const change = async (changed: Coupon, send: () => Promise<{ coupon?: Coupon }>, done: string) => {
    setChanging(true);
    try {
      setCoupon((await send()).coupon);
      setRedeemOutcome({ ok: true, text: done });
    } catch (failure) {
      setRedeemOutcome({ ok: false, text: couponRefusal(failure, t, language) });
      await lookUp(changed.code);
    } finally {
      setChanging(false);
    }
  };

  const redeem = (redeemed: Coupon) => {
    const order = orderId.trim();
    return change(
      redeemed,
      () => couponClient.redeemCoupon({ code: redeemed.code, orderId: order }),
      t.redeemed(order),
    );
  };

  // For the order on screen: a redemption is cancelled only by naming the order that holds it.
  const cancelRedemption = (redeemed: Coupon) =>
    change(
      redeemed,
      () => couponClient.cancelRedemption({ code: redeemed.code, orderId: redeemed.orderId }),
      t.redemptionCancelled(redeemed.orderId),
    );

  const state = coupon && couponStateName(coupon.state);
  // A section of the home page, a subsection of a campaign's page: headings stay in order.
  const Heading = headingLevel === 2 ? 'h2' : 'h3';
  const time = (value: Coupon['issuedAt']) => (value ? formatTime(timestampDate(value), language) : '–');

  return (
    <section aria-labelledby="coupon-heading">
      <Heading id="coupon-heading">{t.couponLookup}</Heading>
      <form
        className="admin-actions"
        onSubmit={(event) => {
          event.preventDefault();
          setRedeemOutcome(undefined);
          lookUp(code.trim());
        }}
      >
        <label className="inline">
          {t.yourCode}{' '}
          <input
            data-testid="coupon-code"
            autoComplete="off"
            size={16}
            value={code}
            onChange={(event) => setCode(event.target.value)}
          />
        </label>
        <button type="submit" data-testid="coupon-lookup">
          {t.lookUp}
        </button>
      </form>
      {lookupError && (
        <p data-testid="coupon-lookup-error" role="status" className="error">
          {lookupError}
        </p>
      )}
      {coupon && state && (
        <>
          <dl data-testid="coupon-details" data-state={state} className="details">
            <dt>{t.yourCode}</dt>
            <dd className="code" data-testid="coupon-details-code">
              {coupon.code}
            </dd>
            <dt>{t.state}</dt>
            <dd>
              <span data-testid="coupon-state" className={`state coupon-state-${state}`}>
                {t.couponStates[state]}
              </span>
            </dd>
            <dt>{t.userId}</dt>
            <dd data-testid="coupon-user-id">{coupon.userId}</dd>
            <dt>{t.campaign}</dt>
            <dd>
              <Link href={`/campaigns/${coupon.campaignId}`} data-testid="coupon-campaign">
                {coupon.campaignId}
              </Link>
            </dd>
            <dt>{t.issuedAt}</dt>
            <dd>{time(coupon.issuedAt)}</dd>
            <dt>{t.validUntil}</dt>
            <dd data-testid="coupon-valid-until">
              {coupon.validUntil ? time(coupon.validUntil) : t.noExpiry}
            </dd>
            <dt>{t.redeemedAt}</dt>
            <dd data-testid="coupon-redeemed-at">{time(coupon.redeemedAt)}</dd>
            <dt>{t.orderId}</dt>
            <dd data-testid="coupon-order-id">{coupon.orderId || '–'}</dd>
          </dl>
          <p className="muted small">
            {t.timeZone}: {timeZone}
          </p>
          <form
            className="admin-actions"
            onSubmit={(event) => {
              event.preventDefault();
              if (!changing) redeem(coupon);
            }}
          >
            <label className="inline">
              {t.orderId}{' '}
              <input
                data-testid="redeem-order-id"
                autoComplete="off"
                maxLength={128}
                value={orderId}
                onChange={(event) => setOrderId(event.target.value)}
              />
            </label>
            <button type="submit" data-testid="redeem-button" disabled={!orderId.trim() || changing}>
              {t.redeem}
            </button>
            {state === 'REDEEMED' && (
              <button
                type="button"
                data-testid="cancel-redemption-button"
                disabled={changing}
                onClick={() => cancelRedemption(coupon)}
              >
                {t.cancelRedemption}
              </button>
            )}
          </form>
        </>
      )}
      {redeemOutcome && (
        <p
          data-testid="redeem-result"
          data-ok={redeemOutcome.ok}
          role="status"
          className={redeemOutcome.ok ? '' : 'error'}
        >
          {redeemOutcome.text}
        </p>
      )}
    </section>
  );
}
