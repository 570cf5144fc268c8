// Administration, continued (issue 13): service accounts and their tokens.
// A new token's value is answered once by the api (only its SHA-256 is
// stored, docs/CONTRACTS.md "Service accounts"): the page shows it once, in
// memory only, until the admin dismisses it or leaves the screen.
import { h } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api, ApiError } from './api.js';

const html = htm.bind(h);

function errText(e) {
  if (e instanceof ApiError) return `${e.message}${e.problem.code ? ` (${e.problem.code})` : ''}`;
  return String(e && e.message ? e.message : e);
}

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
