import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { ConnectError } from '@connectrpc/connect';
import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { Link, useLocation } from 'wouter';
import { couponClient } from './api.ts';
import { type CampaignView, viewOf } from './campaign.ts';
import { formatTime, timeZone, useI18n } from './i18n.tsx';
import { adminRefusal, type CampaignField, fieldOf } from './refusals.ts';

const LIST_REFRESH_MS = 3_000;

export function CampaignList() {
  const { t } = useI18n();
  const [campaigns, setCampaigns] = useState<CampaignView[] | undefined>();
  const [error, setError] = useState('');
  const load = useCallback(async () => {
    try {
      const { campaigns } = await couponClient.listCampaigns({ pageSize: 100 });
      setCampaigns(campaigns.map(viewOf));
      setError('');
    } catch (failure) {
      setError(ConnectError.from(failure).rawMessage);
    }
  }, []);
  useEffect(() => {
    load();
    const timer = setInterval(load, LIST_REFRESH_MS);
    return () => clearInterval(timer);
  }, [load]);

  return (
    <>
      <CreateCampaignForm onCreated={load} />
      <section aria-labelledby="campaigns-heading">
        <h2 id="campaigns-heading">{t.campaigns}</h2>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        {campaigns === undefined ? (
          <p>{t.loading}</p>
        ) : campaigns.length === 0 ? (
          <p>{t.noCampaigns}</p>
        ) : (
          <ul data-testid="campaign-list" className="campaign-list">
            {campaigns.map((campaign) => (
              <CampaignRow key={campaign.id} campaign={campaign} />
            ))}
          </ul>
        )}
      </section>
    </>
  );
}

function CampaignRow({ campaign }: { campaign: CampaignView }) {
  const { t, language } = useI18n();
  return (
    <li data-testid="campaign-row" data-campaign-id={campaign.id}>
      <Link href={`/campaigns/${campaign.id}`} className="row-name">
        {campaign.name}
      </Link>
      <span className={`state state-${campaign.state}`} data-state={campaign.state}>
        {t[campaign.state]}
      </span>
      <span className="numbers">
        {campaign.issued.toLocaleString()} / {campaign.amount.toLocaleString()}
      </span>
      <progress
        max={campaign.amount}
        value={campaign.issued}
        aria-label={`${campaign.name}: ${t.issued} ${campaign.issued} / ${campaign.amount}`}
      />
      <span className="muted small">
        {formatTime(campaign.opensAt, language)} – {formatTime(campaign.closesAt, language)}
      </span>
    </li>
  );
}

/** `datetime-local` wants local wall time without a zone: YYYY-MM-DDTHH:mm:ss. */
function localInputValue(date: Date): string {
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return shifted.toISOString().slice(0, 19);
}

function CreateCampaignForm({ onCreated }: { onCreated: () => void }) {
  const { t } = useI18n();
  const [, navigate] = useLocation();
  const [name, setName] = useState('');
  const [amount, setAmount] = useState('100');
  const [opensAt, setOpensAt] = useState(() => localInputValue(new Date()));
  const [closesAt, setClosesAt] = useState(() => localInputValue(new Date(Date.now() + 60 * 60_000)));
  const [refusal, setRefusal] = useState<{ field: CampaignField | undefined; message: string }>();
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setRefusal(undefined);
    try {
      // An empty time field is sent as no timestamp at all: the server says what is missing.
      const when = (value: string) => (value ? timestampFromDate(new Date(value)) : undefined);
      const { campaign } = await couponClient.createCampaign({
        name,
        amount: BigInt(/^\d+$/.test(amount.trim()) ? amount.trim() : '0'),
        issuedAt: when(opensAt),
        expiresAt: when(closesAt),
      });
      onCreated();
      if (campaign) navigate(`/campaigns/${campaign.id}`);
    } catch (failure) {
      const error = ConnectError.from(failure);
      setRefusal({ field: fieldOf(error), message: adminRefusal(error, t) });
    } finally {
      setBusy(false);
    }
  };

  const errorFor = (field: CampaignField, testId: string) =>
    refusal?.field === field ? (
      <span id={`${testId}-error`} data-testid={`${testId}-error`} role="alert" className="error">
        {refusal.message}
      </span>
    ) : null;
  const describedBy = (field: CampaignField, testId: string) =>
    refusal?.field === field ? `${testId}-error` : undefined;

  return (
    <section aria-labelledby="create-heading">
      <h2 id="create-heading">{t.newCampaign}</h2>
      {/* noValidate: the server is the judge, and its refusal is what the form shows. */}
      <form data-testid="create-campaign-form" className="create-form" noValidate onSubmit={submit}>
        <label>
          {t.name}
          <input
            data-testid="campaign-name"
            value={name}
            onChange={(event) => setName(event.target.value)}
            aria-invalid={refusal?.field === 'name'}
            aria-describedby={describedBy('name', 'campaign-name')}
          />
          {errorFor('name', 'campaign-name')}
        </label>
        <label>
          {t.amount}
          <input
            data-testid="campaign-amount"
            inputMode="numeric"
            value={amount}
            onChange={(event) => setAmount(event.target.value)}
            aria-invalid={refusal?.field === 'amount'}
            aria-describedby={describedBy('amount', 'campaign-amount')}
          />
          {errorFor('amount', 'campaign-amount')}
        </label>
        <label>
          {t.opensAt} ({timeZone})
          <input
            data-testid="campaign-opens-at"
            type="datetime-local"
            step="1"
            value={opensAt}
            onChange={(event) => setOpensAt(event.target.value)}
            aria-invalid={refusal?.field === 'issued_at'}
            aria-describedby={describedBy('issued_at', 'campaign-opens-at')}
          />
          {errorFor('issued_at', 'campaign-opens-at')}
        </label>
        <label>
          {t.closesAt} ({timeZone})
          <input
            data-testid="campaign-closes-at"
            type="datetime-local"
            step="1"
            value={closesAt}
            onChange={(event) => setClosesAt(event.target.value)}
            aria-invalid={refusal?.field === 'expires_at'}
            aria-describedby={describedBy('expires_at', 'campaign-closes-at')}
          />
          {errorFor('expires_at', 'campaign-closes-at')}
        </label>
        <button type="submit" data-testid="create-campaign-submit" disabled={busy}>
          {t.create}
        </button>
        {refusal && refusal.field === undefined && (
          <p data-testid="create-campaign-error" role="alert" className="error">
            {refusal.message}
          </p>
        )}
      </form>
    </section>
  );
}
