// The tenant's audit log (issue 13, tenant_admin and auditor): GET /v1/audit
// with its filters (actor, action, object type and id, outcome, time range;
// docs/CONTRACTS.md "GET /v1/audit and GET /v1/audit/verify"), a page at a
// time by its seq cursor, and the chain's verification beside it. The CLI's
// `paddock audit list` takes the same filters.
import { h } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api, errText, query } from './api.js';
import { AuditVerifyView } from './evidence.js';

const html = htm.bind(h);
const PAGE = 50;
const EMPTY = { actor: '', action: '', object_type: '', object_id: '', outcome: '', from: '', to: '' };

// <input type="datetime-local"> is the browser's local time: the api wants RFC 3339
function rfc3339(local) {
  if (!local) return '';
  const d = new Date(local);
  return isNaN(d) ? local : d.toISOString();
}

export function AuditLog({ me }) {
  const [form, setForm] = useState(EMPTY);
  const [applied, setApplied] = useState(EMPTY);
  // the cursors of the pages seen, so Previous goes back: [0, seq of page 1's end, ...]
  const [cursors, setCursors] = useState([0]);
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const after = cursors[cursors.length - 1];
  const load = useCallback(async () => {
    try {
      const q = { ...applied, from: rfc3339(applied.from), to: rfc3339(applied.to), after, limit: PAGE };
      setPage(await api('GET', `/v1/audit${query(q)}`));
      setError(null);
    } catch (e) {
      setPage(null);
      setError(e);
    }
  }, [applied, after]);
  useEffect(() => { load(); }, [load]);
  const apply = (ev) => {
    ev.preventDefault();
    setApplied(form);
    setCursors([0]);
  };
  const reset = () => {
    setForm(EMPTY);
    setApplied(EMPTY);
    setCursors([0]);
  };
  const field = (name, label, type = 'text') => html`
    <label>${label}<input name=${`audit-${name}`} type=${type} value=${form[name]} maxlength="256"
      onInput=${(e) => setForm({ ...form, [name]: e.currentTarget.value })} /></label>`;
  const items = page ? page.items : [];
  return html`
    <main>
      <h1>Audit log</h1>
      <${AuditVerifyView} me=${me} />
      <form class="filters" aria-label="filter audit records" onSubmit=${apply}>
        ${field('actor', 'Actor (user:<id>)')}
        ${field('action', 'Action (e.g. run.launch)')}
        ${field('object_type', 'Object type')}
        ${field('object_id', 'Object id')}
        <label>Outcome<select name="audit-outcome" value=${form.outcome}
          onChange=${(e) => setForm({ ...form, outcome: e.currentTarget.value })}>
          <option value="">any</option><option value="success">success</option><option value="failure">failure</option>
        </select></label>
        ${field('from', 'From (at or after)', 'datetime-local')}
        ${field('to', 'To (before)', 'datetime-local')}
        <div class="filter-actions">
          <button type="submit">Apply filters</button>
          <button type="button" class="secondary" onClick=${reset}>Clear</button>
        </div>
      </form>
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      ${page && html`<p role="status" id="audit-count">${items.length === 0 ? 'No records match.'
        : `Records ${items[0].seq} to ${items[items.length - 1].seq} (page ${cursors.length})`}</p>`}
      ${items.length > 0 && html`
        <table class="runs audit" tabindex="0">
          <caption class="visually-hidden">audit records, oldest first</caption>
          <thead><tr><th scope="col">Seq</th><th scope="col">Time</th><th scope="col">Actor</th>
            <th scope="col">Action</th><th scope="col">Object</th><th scope="col">Outcome</th>
            <th scope="col">Source IP</th><th scope="col">Hash</th></tr></thead>
          <tbody>${items.map((r) => html`<tr data-seq=${r.seq} data-action=${r.action}>
            <td>${r.seq}</td><td>${r.ts}</td><td>${r.actor}</td><td>${r.action}</td>
            <td>${r.object_type}${r.object_id ? `:${r.object_id}` : ''}</td>
            <td><span class=${`badge outcome-${r.outcome}`}>${r.outcome}</span></td>
            <td>${r.source_ip}</td><td><code title=${r.hash}>${r.hash.slice(0, 12)}</code></td></tr>`)}</tbody>
        </table>`}
      <nav class="pager" aria-label="audit pages">
        <button type="button" class="secondary" disabled=${cursors.length < 2}
          onClick=${() => setCursors(cursors.slice(0, -1))}>Previous page</button>
        <button type="button" class="secondary" disabled=${!page || !page.next_cursor}
          onClick=${() => setCursors([...cursors, Number(page.next_cursor)])}>Next page</button>
      </nav>
    </main>`;
}
