// Usage and governance (issue 13): runs, runtime, tokens and cost per team
// and per day from GET /v1/usage (group_by=team|day), and the governance
// figures of GET /v1/governance/metrics (docs/CONTRACTS.md "Usage",
// "Governance metrics"). The charts are SVG drawn by preact (no chart
// library: a few bars need none, and the CSP allows no inline style; sizes
// are SVG attributes, colours classes); each chart's figures are in a table
// below it too, for screen readers and for copying.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api, errText, query } from './api.js';

const html = htm.bind(h);
const ROW = 26; // px per bar
const LABEL_PCT = 34, BAR_PCT = 48; // label column, then the bar, then the figure

const METRICS = [
  { key: 'runs', label: 'Runs', fmt: (v) => String(v) },
  { key: 'runtime_seconds', label: 'Runtime (s)', fmt: (v) => Number(v).toFixed(0) },
  { key: 'tokens', label: 'Tokens (in + out)', fmt: (v) => String(v) },
  { key: 'cost_usd', label: 'Cost (USD)', fmt: (v) => `$${Number(v).toFixed(4)}` },
];

const keyOf = (by, it) => (by === 'day' ? it.day : it.team_name || it.team);

// A horizontal bar chart: one bar per row, scaled to the largest value.
export function BarChart({ title, rows }) {
  const max = Math.max(0, ...rows.map((r) => r.value));
  const height = Math.max(1, rows.length) * ROW;
  return html`
    <figure class="chart">
      <figcaption>${title}</figcaption>
      <svg width="100%" height=${height} role="img" aria-label=${`${title}: ${rows.map((r) => `${r.label} ${r.text}`).join(', ')}`}>
        ${rows.map((r, i) => {
          const w = max > 0 ? (r.value / max) * BAR_PCT : 0;
          const y = i * ROW;
          return html`<g key=${r.label}>
            <text x="0" y=${y + ROW * 0.65} class="chart-label">${r.label.length > 28 ? `${r.label.slice(0, 27)}…` : r.label}</text>
            <rect x=${`${LABEL_PCT}%`} y=${y + 4} width=${`${Math.max(w, r.value > 0 ? 0.5 : 0)}%`} height=${ROW - 8} class="chart-bar" />
            <text x=${`${LABEL_PCT + w + 1}%`} y=${y + ROW * 0.65} class="chart-value">${r.text}</text>
          </g>`;
        })}
      </svg>
    </figure>`;
}

function UsageGroup({ by, title, from, to, team }) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setError(null);
    api('GET', `/v1/usage${query({ group_by: by, from, to, team })}`).then(setData).catch((e) => {
      setData(null);
      setError(e);
    });
  }, [by, from, to, team]);
  const items = ((data && data.items) || []).map((it) => ({ ...it, tokens: (it.tokens_in || 0) + (it.tokens_out || 0) }));
  return html`
    <section aria-labelledby=${`usage-${by}`} class="usage-group" data-group=${by}>
      <h2 id=${`usage-${by}`}>${title}</h2>
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      ${data && items.length === 0 && html`<p>No finished runs in ${data.from} to ${data.to}.</p>`}
      ${items.length > 0 && html`
        <div class="charts">
          ${METRICS.map((m) => html`<${BarChart} key=${m.key} title=${`${m.label} per ${by}`}
            rows=${items.map((it) => ({ label: keyOf(by, it), value: Number(it[m.key]) || 0, text: m.fmt(it[m.key] || 0) }))} />`)}
        </div>
        <table class="runs figures" tabindex="0">
          <caption>${title}: the figures, ${data.from} to ${data.to}</caption>
          <thead><tr><th scope="col">${by === 'day' ? 'Day' : 'Team'}</th>
            ${METRICS.map((m) => html`<th scope="col">${m.label}</th>`)}</tr></thead>
          <tbody>${items.map((it) => html`<tr data-key=${keyOf(by, it)}><th scope="row">${keyOf(by, it)}</th>
            ${METRICS.map((m) => html`<td>${m.fmt(it[m.key] || 0)}</td>`)}</tr>`)}</tbody>
        </table>`}
    </section>`;
}

function Table({ caption, cols, rows }) {
  return html`
    <table class="runs figures" tabindex="0">
      <caption>${caption}</caption>
      <thead><tr>${cols.map((c) => html`<th scope="col">${c[1]}</th>`)}</tr></thead>
      <tbody>${rows.length === 0
        ? html`<tr><td colspan=${cols.length}>none</td></tr>`
        : rows.map((r) => html`<tr>${cols.map((c) => html`<td>${r[c[0]] ?? ''}</td>`)}</tr>`)}</tbody>
    </table>`;
}

function Governance({ from, to, team }) {
  const [g, setG] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setError(null);
    api('GET', `/v1/governance/metrics${query({ from, to, team })}`).then(setG).catch((e) => {
      setG(null);
      setError(e);
    });
  }, [from, to, team]);
  const a = (g && g.approvals) || {};
  const secs = (v) => (v === null || v === undefined ? '–' : `${Number(v).toFixed(1)} s`);
  return html`
    <section aria-labelledby="governance" class="governance">
      <h2 id="governance">Governance</h2>
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      ${g && html`
        <dl class="run-header" id="approval-figures">
          <dt>Approvals requested</dt><dd>${a.count}</dd>
          <dt>Pending</dt><dd>${a.pending}</dd>
          <dt>Approved</dt><dd>${a.approved}</dd>
          <dt>Denied</dt><dd>${a.denied}</dd>
          <dt>Expired</dt><dd>${a.expired}</dd>
          <dt>Median decision time</dt><dd>${secs(a.median_decision_seconds)}</dd>
          <dt>95th percentile decision time</dt><dd>${secs(a.p95_decision_seconds)}</dd>
          <dt>Denied share</dt><dd>${a.denied_share === null || a.denied_share === undefined ? '–'
            : `${(a.denied_share * 100).toFixed(0)} %`}</dd>
        </dl>
        <${Table} caption="Policy decisions by rule" cols=${[['team_name', 'Team'], ['rule', 'Rule'], ['outcome', 'Outcome'], ['count', 'Count']]}
          rows=${g.policy_decisions || []} />
        <${Table} caption="Escapes tried (platform denials)" cols=${[['team_name', 'Team'], ['level', 'Level'], ['count', 'Count']]}
          rows=${g.escapes_tried || []} />
        <${Table} caption="Reviews" cols=${[['team_name', 'Team'], ['outcome', 'Outcome'], ['count', 'Count']]}
          rows=${g.reviews || []} />
        <${Table} caption="Launches per team per day" cols=${[['team_name', 'Team'], ['day', 'Day'], ['runs', 'Runs']]}
          rows=${g.runs_per_team_per_day || []} />`}
    </section>`;
}

export function Usage({ me }) {
  const [form, setForm] = useState({ from: '', to: '', team: '' });
  const [applied, setApplied] = useState(form);
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });
  return html`
    <main>
      <h1>Usage</h1>
      <form class="filters" aria-label="usage range" onSubmit=${(e) => { e.preventDefault(); setApplied(form); }}>
        <label>From (day, default the month's first)<input type="date" name="usage-from" value=${form.from} onInput=${set('from')} /></label>
        <label>To (day, included)<input type="date" name="usage-to" value=${form.to} onInput=${set('to')} /></label>
        <label>Team<select name="usage-team" value=${form.team} onChange=${set('team')}>
          <option value="">all I may view</option>
          ${(me.teams || []).map((t) => html`<option value=${t.id}>${t.name}</option>`)}
        </select></label>
        <div class="filter-actions"><button type="submit">Show</button></div>
      </form>
      <${UsageGroup} by="team" title="Per team" ...${applied} />
      <${UsageGroup} by="day" title="Per day" ...${applied} />
      <${Governance} ...${applied} />
    </main>`;
}
