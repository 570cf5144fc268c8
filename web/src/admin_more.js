// Administration, continued (issue 13): service accounts and their tokens.
// A new token's value is answered once by the api (only its SHA-256 is
// stored, docs/CONTRACTS.md "Service accounts"): the page shows it once, in
// memory only, until the admin dismisses it or leaves the screen.
import { h } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { ApiError, api, errText } from './api.js';

const html = htm.bind(h);

export function ServiceAccounts({ teams }) {
  const [items, setItems] = useState([]);
  const [error, setError] = useState(null);
  const [form, setForm] = useState({ name: '', team: '' });
  const [tokName, setTokName] = useState({});
  const [shown, setShown] = useState(null); // {account, name, token}: this once
  const load = useCallback(() => api('GET', '/v1/service-accounts').then((p) => setItems(p.items)).catch(setError), []);
  useEffect(() => { load(); }, [load]);
  const create = async (ev) => {
    ev.preventDefault();
    setError(null);
    try {
      await api('POST', '/v1/service-accounts', form.team ? { name: form.name, team: form.team } : { name: form.name });
      setForm({ name: '', team: '' });
      load();
    } catch (e) {
      setError(e);
    }
  };
  const issue = async (sa) => {
    setError(null);
    try {
      const t = await api('POST', `/v1/service-accounts/${sa.id}/tokens`, { name: tokName[sa.id] || 'dashboard' });
      setShown({ account: sa.name, name: t.name, token: t.token });
      load();
    } catch (e) {
      setError(e);
    }
  };
  const revoke = async (sa, tok) => {
    try {
      await api('DELETE', `/v1/service-accounts/${sa.id}/tokens/${tok.id}`);
      load();
    } catch (e) {
      setError(e);
    }
  };
  const disable = async (sa) => {
    try {
      await api('DELETE', `/v1/service-accounts/${sa.id}`);
      load();
    } catch (e) {
      setError(e);
    }
  };
  return html`
    <section aria-label="service accounts">
      <h2>Service accounts</h2>
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      ${shown && html`<div class="dialog token-once" role="dialog" aria-label="new token">
        <p>Token <code>${shown.name}</code> of <code>${shown.account}</code>. Copy it now: it is not shown again.</p>
        <pre class="json" id="new-token">${shown.token}</pre>
        <button type="button" onClick=${() => setShown(null)}>I have copied it</button></div>`}
      <form onSubmit=${create} aria-label="create service account" class="filters">
        <label>Name<input name="sa-name" required pattern="[A-Za-z0-9._-]{1,128}" value=${form.name}
          onInput=${(e) => setForm({ ...form, name: e.currentTarget.value })} /></label>
        <label>Team (viewer)<select name="sa-team" value=${form.team}
          onChange=${(e) => setForm({ ...form, team: e.currentTarget.value })}>
          <option value="">none</option>${teams.map((t) => html`<option value=${t.id}>${t.name}</option>`)}</select></label>
        <button type="submit">Create service account</button>
      </form>
      <table class="runs service-accounts">
        <thead><tr><th>Name</th><th>State</th><th>Tokens</th><th>New token</th><th></th></tr></thead>
        <tbody>${items.map((sa) => html`<tr data-sa=${sa.name}>
          <td>${sa.name}</td><td>${sa.disabled ? 'disabled' : 'active'}</td>
          <td><ul class="tokens">${sa.tokens.map((t) => html`<li data-token=${t.name} data-state=${t.state}>
            <code>${t.name}</code> ${t.state}, expires ${t.expires_at}
            ${t.state === 'active' && html` <button type="button" class="secondary"
              aria-label=${`Revoke token ${t.name} of ${sa.name}`} onClick=${() => revoke(sa, t)}>Revoke</button>`}</li>`)}</ul></td>
          <td>${!sa.disabled && html`<input name=${`token-name-${sa.name}`} aria-label=${`new token name for ${sa.name}`}
            placeholder="token name" value=${tokName[sa.id] || ''}
            onInput=${(e) => setTokName({ ...tokName, [sa.id]: e.currentTarget.value })} />
            <button type="button" aria-label=${`Issue token for ${sa.name}`} onClick=${() => issue(sa)}>Issue token</button>`}</td>
          <td>${!sa.disabled && html`<button type="button" class="danger" aria-label=${`Disable ${sa.name}`}
            onClick=${() => disable(sa)}>Disable</button>`}</td></tr>`)}</tbody>
      </table>
    </section>`;
}

// The tenant's OIDC provider (GET/PUT/DELETE /v1/tenant/oidc): a form of its
// fields, role_mapping as JSON; a 400 names the field, shown beside it.
const OIDC_FIELDS = [
  ['issuer', 'Issuer (compared exactly with the token\'s iss)'],
  ['audience', 'Audience'],
  ['jwks_url', 'JWKS URL'],
  ['username_claim', 'User name claim'],
  ['clock_skew_s', 'Clock skew (seconds)'],
];

export function OidcSettings() {
  const empty = { issuer: '', audience: '', jwks_url: '', username_claim: 'preferred_username', clock_skew_s: '60',
    role_mapping: '{\n  "claim": "groups",\n  "map": {}\n}', enabled: true, client_secret: '', clear_secret: false };
  const [form, setForm] = useState(empty);
  const [stored, setStored] = useState(null);
  const [error, setError] = useState(null);
  const [field, setField] = useState(null);
  const [note, setNote] = useState('');
  const fill = (c) => setForm({ issuer: c.issuer, audience: c.audience, jwks_url: c.jwks_url,
    username_claim: c.username_claim, clock_skew_s: String(c.clock_skew_s),
    role_mapping: JSON.stringify(c.role_mapping, null, 2), enabled: c.enabled, client_secret: '', clear_secret: false });
  const load = useCallback(() => api('GET', '/v1/tenant/oidc').then((c) => { setStored(c); fill(c); }).catch((e) => {
    if (e instanceof ApiError && e.status === 404) setStored(null);
    else setError(e);
  }), []);
  useEffect(() => { load(); }, [load]);
  const save = async (ev) => {
    ev.preventDefault();
    setError(null);
    setField(null);
    setNote('');
    let mapping;
    try {
      mapping = JSON.parse(form.role_mapping);
    } catch (e) {
      setField({ name: 'role_mapping', message: `not JSON: ${e.message}` });
      return;
    }
    const skew = Number(form.clock_skew_s);
    const body = { issuer: form.issuer, audience: form.audience, jwks_url: form.jwks_url,
      username_claim: form.username_claim, clock_skew_s: Number.isInteger(skew) ? skew : form.clock_skew_s,
      role_mapping: mapping, enabled: form.enabled };
    // write-only: sent when typed, null to remove it, absent keeps the stored one (same issuer and audience)
    if (form.client_secret) body.client_secret = form.client_secret;
    else if (form.clear_secret) body.client_secret = null;
    try {
      const c = await api('PUT', '/v1/tenant/oidc', body);
      setStored(c);
      fill(c);
      setNote('OIDC settings saved.');
    } catch (e) {
      // the problem's detail starts with the field it is about
      const m = e instanceof ApiError && /^([a-z_]+)/.exec(e.problem.detail || '');
      const name = m && (OIDC_FIELDS.some(([f]) => f === m[1]) || ['role_mapping', 'enabled', 'client_secret'].includes(m[1])) ? m[1] : null;
      if (name) setField({ name, message: errText(e) });
      else setError(e);
    }
  };
  const remove = async () => {
    try {
      await api('DELETE', '/v1/tenant/oidc');
      setStored(null);
      setForm(empty);
      setNote('OIDC settings removed.');
    } catch (e) {
      setError(e);
    }
  };
  const err = (name) => field && field.name === name &&
    html`<span class="error field-error" id=${`oidc-err-${name}`} role="alert">${field.message}</span>`;
  const attrs = (name) => ({ 'aria-invalid': field && field.name === name ? 'true' : undefined,
    'aria-describedby': field && field.name === name ? `oidc-err-${name}` : undefined });
  return html`
    <section aria-label="OIDC settings">
      <h2>OIDC login</h2>
      <p>${stored ? `Configured (updated ${stored.updated_at}).` : 'Not configured: users log in with passwords only.'}</p>
      <form onSubmit=${save} aria-label="OIDC settings" class="oidc">
        ${OIDC_FIELDS.map(([name, label]) => html`<label>${label}
          <input name=${`oidc-${name}`} value=${form[name]} required=${name !== 'username_claim'} ...${attrs(name)}
            onInput=${(e) => setForm({ ...form, [name]: e.currentTarget.value })} />${err(name)}</label>`)}
        <label>Role mapping (JSON: {claim, map: {value: {team, roles}}})
          <textarea name="oidc-role_mapping" rows="6" spellcheck="false" value=${form.role_mapping} ...${attrs('role_mapping')}
            onInput=${(e) => setForm({ ...form, role_mapping: e.currentTarget.value })}></textarea>${err('role_mapping')}</label>
        <label>Client secret (only for a provider that wants one; never shown again)
          <input type="password" name="oidc-client_secret" autocomplete="new-password" value=${form.client_secret}
            ...${attrs('client_secret')}
            aria-describedby=${[attrs('client_secret')['aria-describedby'], stored && 'oidc-secret-state'].filter(Boolean).join(' ') || undefined}
            onInput=${(e) => setForm({ ...form, client_secret: e.currentTarget.value })} />${err('client_secret')}</label>
        ${stored && html`<p id="oidc-secret-state">${stored.client_secret_set
          ? 'A client secret is set: the sign-in is a confidential client. Leave the field empty to keep it.'
          : 'No client secret: the sign-in is a public client (PKCE).'}</p>`}
        ${stored && stored.client_secret_set && html`<label><input type="checkbox" name="oidc-clear_secret"
          checked=${form.clear_secret} onChange=${(e) => setForm({ ...form, clear_secret: e.currentTarget.checked })} />
          Remove the client secret</label>`}
        <label><input type="checkbox" name="oidc-enabled" checked=${form.enabled}
          onChange=${(e) => setForm({ ...form, enabled: e.currentTarget.checked })} />Enabled</label>
        ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
        ${note && html`<p class="ok" role="status">${note}</p>`}
        <button type="submit">Save OIDC settings</button>
        ${stored && html`<button type="button" class="danger" onClick=${remove}>Remove OIDC settings</button>`}
      </form>
    </section>`;
}
