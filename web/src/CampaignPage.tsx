import { Code, ConnectError } from '@connectrpc/connect';
import { useEffect, useState } from 'react';
import { Link } from 'wouter';
import { couponClient } from './api.ts';
import { CouponPanel } from './CouponPanel.tsx';
import { type CampaignView, viewOf } from './campaign.ts';
import { formatTime, timeZone, useI18n } from './i18n.tsx';
import { RateChart, type RatePoint } from './RateChart.tsx';
import { adminRefusal, issueRefusal } from './refusals.ts';

const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 10_000;
const CHART_SECONDS = 60;

type StreamStatus =
  | { readonly kind: 'connecting' }
  | { readonly kind: 'live' }
  | { readonly kind: 'reconnecting'; readonly inMs: number }
  | { readonly kind: 'ended' }
  | { readonly kind: 'failed'; readonly message: string };

/**
 * The campaign as WatchCampaign tells it, and the issues per second derived from its counts. A
 * stream that drops is opened again with exponential backoff (reset by each message that
 * arrives); one the server ends because the campaign is over is not.
 */
function useWatchedCampaign(campaignId: string) {
  const [campaign, setCampaign] = useState<CampaignView>();
  const [status, setStatus] = useState<StreamStatus>({ kind: 'connecting' });
  const [rate, setRate] = useState<RatePoint[]>([]);

  useEffect(() => {
    const abort = new AbortController();
    // The count seen at the end of each second; a second's rate is its count minus the one before.
    const lastCountBySecond = new Map<number, number>();
    let firstCount: number | undefined;
    const record = (view: CampaignView) => {
      const second = Math.floor(Date.now() / 1000);
      firstCount ??= view.issued;
      lastCountBySecond.set(second, view.issued);
      const from = second - CHART_SECONDS;
      for (const key of lastCountBySecond.keys()) if (key < from - 1) lastCountBySecond.delete(key);
      const points: RatePoint[] = [];
      let previous = firstCount;
      // The whole window is drawn, zeros included, so the time axis stays a minute or two wide.
      for (let s = from; s <= second; s++) {
        const count = lastCountBySecond.get(s) ?? previous;
        points.push({ second: s, issued: Math.max(0, count - previous) });
        previous = count;
      }
      setRate(points);
    };

    (async () => {
      let backoffMs = RECONNECT_FIRST_MS;
      while (!abort.signal.aborted) {
        let finished = false;
        try {
          setStatus({ kind: 'connecting' });
          for await (const message of couponClient.watchCampaign({ campaignId }, { signal: abort.signal })) {
            if (!message.campaign) continue;
            const view = viewOf(message.campaign);
            setCampaign(view);
            setStatus({ kind: 'live' });
            record(view);
            backoffMs = RECONNECT_FIRST_MS;
            finished = view.state === 'ENDED';
          }
          // The server ends the stream when the campaign ends (or the stream's lifetime is up).
          if (finished) {
            setStatus({ kind: 'ended' });
            return;
          }
        } catch (failure) {
          if (abort.signal.aborted) return;
          const error = ConnectError.from(failure);
          if (error.code === Code.NotFound || error.code === Code.InvalidArgument) {
            setStatus({ kind: 'failed', message: error.rawMessage });
            return;
          }
        }
        setStatus({ kind: 'reconnecting', inMs: backoffMs });
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
        backoffMs = Math.min(backoffMs * 2, RECONNECT_MAX_MS);
      }
    })();
    return () => abort.abort();
  }, [campaignId]);

  return { campaign, status, rate, setCampaign };
}

export function CampaignPage({ campaignId }: { campaignId: string }) {
  const { t, language } = useI18n();
  const { campaign, status, rate, setCampaign } = useWatchedCampaign(campaignId);

  const statusText =
    status.kind === 'live'
      ? t.live
      : status.kind === 'connecting'
        ? t.connecting
        : status.kind === 'reconnecting'
          ? t.reconnecting(Math.ceil(status.inMs / 1000))
          : status.kind === 'ended'
            ? t.streamEnded
            : status.message;

  return (
    <>
      <p>
        <Link href="/">{t.back}</Link>
      </p>
      <p data-testid="stream-status" data-status={status.kind} role="status" className="muted">
        {statusText}
      </p>
      {campaign && (
        <>
          <section aria-labelledby="campaign-heading" className="campaign">
            <h2 id="campaign-heading" data-testid="campaign-name-heading">
              {campaign.name}
            </h2>
            <div className="counters">
              <div className="counter big">
                <span className="label">{t.remaining}</span>
                <span data-testid="remaining-count" aria-live="polite">
                  {Math.max(0, campaign.amount - campaign.issued)}
                </span>
              </div>
              <div className="counter">
                <span className="label">{t.issued}</span>
                <span data-testid="issued-count">{campaign.issued}</span>
                <span className="muted"> / {campaign.amount}</span>
              </div>
              <div className="counter">
                <span className="label">{t.state}</span>
                <span
                  data-testid="campaign-state"
                  data-state={campaign.state}
                  className={`state state-${campaign.state}`}
                >
                  {t[campaign.state]}
                </span>
              </div>
            </div>
            <p className="muted small">
              {formatTime(campaign.opensAt, language)} – {formatTime(campaign.closesAt, language)} ({timeZone}
              )
            </p>
            <h3>{t.issueRate}</h3>
            <RateChart points={rate} label={`${t.issueRate} (${t.perSecond})`} language={language} />
          </section>
          <AdminPanel campaign={campaign} onChanged={setCampaign} />
          <TryIt campaignId={campaign.id} />
          <CouponPanel headingLevel={3} />
        </>
      )}
    </>
  );
}

function AdminPanel({
  campaign,
  onChanged,
}: {
  campaign: CampaignView;
  onChanged: (campaign: CampaignView) => void;
}) {
  const { t } = useI18n();
  const [pending, setPending] = useState<'close' | 'amount'>();
  const [newAmount, setNewAmount] = useState('');
  const [result, setResult] = useState<{ ok: boolean; text: string }>();

  const run = async (change: () => Promise<{ campaign?: Parameters<typeof viewOf>[0] }>) => {
    setPending(undefined);
    try {
      const answer = await change();
      if (answer.campaign) onChanged(viewOf(answer.campaign));
      setResult({ ok: true, text: t.done });
    } catch (failure) {
      setResult({ ok: false, text: adminRefusal(failure, t) });
    }
  };

  return (
    <section aria-labelledby="admin-heading">
      <h3 id="admin-heading">{t.admin}</h3>
      <div className="admin-actions">
        <button
          type="button"
          data-testid="close-campaign"
          disabled={campaign.state === 'ENDED'}
          onClick={() => setPending('close')}
        >
          {t.closeCampaign}
        </button>
        <label className="inline">
          {t.newAmount}{' '}
          <input
            data-testid="new-amount"
            inputMode="numeric"
            size={8}
            value={newAmount}
            onChange={(event) => setNewAmount(event.target.value)}
          />
        </label>
        <button
          type="button"
          data-testid="change-amount"
          disabled={!/^\d+$/.test(newAmount.trim())}
          onClick={() => setPending('amount')}
        >
          {t.changeAmount}
        </button>
      </div>
      {pending && (
        <div
          role="alertdialog"
          aria-labelledby="confirm-text"
          className="confirm"
          data-testid="confirm-dialog"
        >
          <p id="confirm-text">{pending === 'close' ? t.closeConfirm : t.changeConfirm(newAmount.trim())}</p>
          <button
            type="button"
            data-testid="confirm-yes"
            // biome-ignore lint/a11y/noAutofocus: the confirmation takes the focus so Enter answers it
            autoFocus
            onClick={() =>
              run(() =>
                pending === 'close'
                  ? couponClient.closeCampaign({ campaignId: campaign.id })
                  : couponClient.updateCampaignAmount({
                      campaignId: campaign.id,
                      amount: BigInt(newAmount.trim()),
                    }),
              )
            }
          >
            {t.confirm}
          </button>
          <button type="button" data-testid="confirm-no" onClick={() => setPending(undefined)}>
            {t.cancel}
          </button>
        </div>
      )}
      {result && (
        <p data-testid="admin-result" data-ok={result.ok} role="status" className={result.ok ? '' : 'error'}>
          {result.text}
        </p>
      )}
    </section>
  );
}

function TryIt({ campaignId }: { campaignId: string }) {
  const { t, language } = useI18n();
  const [userId, setUserId] = useState('');
  const [result, setResult] = useState<{ ok: boolean; text: string }>();
  const issue = async () => {
    try {
      const { coupon } = await couponClient.issueCoupon({ campaignId, userId });
      setResult({ ok: true, text: coupon?.code ?? '' });
    } catch (failure) {
      setResult({ ok: false, text: issueRefusal(failure, t, language) });
    }
  };
  return (
    <section aria-labelledby="try-heading">
      <h3 id="try-heading">{t.tryIt}</h3>
      <form
        className="admin-actions"
        onSubmit={(event) => {
          event.preventDefault();
          issue();
        }}
      >
        <label className="inline">
          {t.userId}{' '}
          <input
            data-testid="issue-user-id"
            value={userId}
            onChange={(event) => setUserId(event.target.value)}
          />
        </label>
        <button type="submit" data-testid="issue-button">
          {t.issue}
        </button>
      </form>
      {result && (
        <p
          data-testid="issue-result"
          data-ok={result.ok}
          role="status"
          className={result.ok ? 'code' : 'error'}
        >
          {result.ok ? `${t.yourCode}: ${result.text}` : result.text}
        </p>
      )}
    </section>
  );
}
