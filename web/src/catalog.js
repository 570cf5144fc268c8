// The catalog (issue 13): the tenant's items of each kind (the five kinds a
// definition uses, models, policy packs), each with its state, hash and
// body; a draft approved by a security_admin (the route's
// PERM_CATALOG_APPROVE: security_admin in some team, or tenant_admin),
// naming the content_sha256 it saw, so a body changed meanwhile is not
// approved unseen (docs/CONTRACTS.md "Model catalog" and the catalog's approve in API.md). Others get no button.
import { h } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api, errText, hasRole, query } from './api.js';

const html = htm.bind(h);
export const CATALOG_KINDS = ['images', 'skills', 'prompt-templates', 'egress-profiles', 'connectors', 'models',
  'policy-packs'];

export function Catalog({ me }) {
  const [kind, setKind] = useState(CATALOG_KINDS[0]);
  const [state, setState] = useState('');
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const [note, setNote] = useState('');
  const approver = hasRole(me, ['security_admin']);
  const load = useCallback(() => {
    setItems(null);
    api('GET', `/v1/catalog/${kind}${query({ state, limit: 200 })}`).then((p) => {
      setItems(p.items);
      setError(null);
    }).catch(setError);
  }, [kind, state]);
  useEffect(load, [load]);
  const approve = async (it) => {
    setNote('');
    try {
      await api('POST', `/v1/catalog/${kind}/${encodeURIComponent(it.id)}/approve`,
        { content_sha256: it.content_sha256 });
      setNote(`Approved ${it.name}.`);
      load();
    } catch (e) {
      setError(e);
    }
  };
  return html`
    <main>
      <h1>Catalog</h1>
      <form class="filters" aria-label="catalog kind" onSubmit=${(e) => e.preventDefault()}>
        <label>Kind
          <select name="catalog-kind" value=${kind} onChange=${(e) => setKind(e.currentTarget.value)}>
            ${CATALOG_KINDS.map((k) => html`<option value=${k}>${k}</option>`)}
          </select>
        </label>
        <label>State
          <select name="catalog-state" value=${state} onChange=${(e) => setState(e.currentTarget.value)}>
            <option value="">any</option><option value="draft">draft</option><option value="approved">approved</option>
          </select>
        </label>
      </form>
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      ${note && html`<p class="ok" role="status">${note}</p>`}
      ${items && items.length === 0 && html`<p>No ${kind}.</p>`}
      ${items && items.length > 0 && html`
        <table class="runs catalog">
          <thead><tr><th>Name</th><th>State</th><th>Approved</th><th>SHA-256</th><th>Body</th><th></th></tr></thead>
          <tbody>${items.map((it) => html`<tr data-item=${it.name} data-state=${it.state}>
            <td>${it.name}${it.managed ? html` <span class="badge">managed</span>` : ''}</td>
            <td><span class=${`badge state-${it.state}`}>${it.state}</span></td>
            <td>${it.approved_at ? `${it.approved_at}` : '–'}</td>
            <td class="sha"><code title=${it.content_sha256}>${it.content_sha256.slice(0, 12)}</code></td>
            <td><details><summary>${(it.body && it.body.description) || 'body'}</summary>
              <pre class="json">${JSON.stringify(it.body, null, 2)}</pre></details></td>
            <td>${approver && it.state === 'draft' && html`<button type="button"
              aria-label=${`Approve ${it.name}`} onClick=${() => approve(it)}>Approve</button>`}</td>
          </tr>`)}</tbody>
        </table>`}
    </main>`;
}
