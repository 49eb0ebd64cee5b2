import { useState } from 'react';
import { Link, Route, Switch } from 'wouter';
import { adminToken, type Protocol, protocolChoice } from './api.ts';
import { CampaignList } from './CampaignList.tsx';
import { CampaignPage } from './CampaignPage.tsx';
import { CouponPanel } from './CouponPanel.tsx';
import { timeZone, useI18n } from './i18n.tsx';

export function App() {
  const { t, toggle } = useI18n();
  return (
    <>
      <header className="bar">
        <Link href="/" className="brand">
          {t.title}
        </Link>
        <span className="muted">
          {t.timeZone}: {timeZone}
        </span>
        <ProtocolSelect />
        <button type="button" data-testid="language-toggle" onClick={toggle}>
          {t.language}
        </button>
      </header>
      <AdminToken />
      <main>
        <Switch>
          <Route path="/campaigns/:id">{(params) => <CampaignPage campaignId={params.id} />}</Route>
          <Route path="/">
            <CampaignList />
            <CouponPanel headingLevel={2} />
          </Route>
        </Switch>
      </main>
    </>
  );
}

function ProtocolSelect() {
  const { t } = useI18n();
  return (
    <label className="inline">
      {t.protocol}{' '}
      <select
        data-testid="protocol"
        defaultValue={protocolChoice.get()}
        onChange={(event) => {
          protocolChoice.set(event.target.value as Protocol);
          // The client is built once per page; a new protocol takes a reload.
          window.location.reload();
        }}
      >
        <option value="connect">Connect</option>
        <option value="grpc-web">gRPC-Web</option>
      </select>
    </label>
  );
}

function AdminToken() {
  const { t } = useI18n();
  const [token, setToken] = useState(adminToken.get);
  const [saved, setSaved] = useState(false);
  return (
    <form
      className="bar admin-token"
      onSubmit={(event) => {
        event.preventDefault();
        adminToken.set(token.trim());
        setSaved(true);
      }}
    >
      <label className="inline">
        {t.adminToken}{' '}
        <input
          data-testid="admin-token"
          type="password"
          autoComplete="off"
          value={token}
          onChange={(event) => {
            setToken(event.target.value);
            setSaved(false);
          }}
        />
      </label>
      <button type="submit" data-testid="admin-token-save">
        {t.save}
      </button>
      <span role="status" className="muted">
        {saved ? t.saved : ''}
      </span>
    </form>
  );
}
