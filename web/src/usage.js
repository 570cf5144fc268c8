// Usage and governance (issue 13): runs, runtime, tokens and cost per team
// (GET /v1/usage?group_by=team) and per day and team (group_by=day, once per
// team), and the governance figures of GET /v1/governance/metrics
// (docs/CONTRACTS.md "Usage", "Governance metrics", "Dashboard"). The charts
// are uPlot (web/package-lock.json) on a canvas: it sets sizes through
// element.style, which the CSP allows, and its stylesheet is bundled into
// ours. Each chart's figures are in a table below it too, for screen readers
// and for copying.
import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { api, errText, query } from './api.js';

const html = htm.bind(h);
const DAY_S = 86400;
const CHART_H = 220; // px of the plotting area and axes
// one colour per team, in order (canvas colours: no CSS class reaches a canvas)
const PALETTE = ['#1f4e79', '#c2410c', '#1a7f37', '#8250df', '#b42318', '#0a7ea4', '#7d4e00', '#57606a'];

const METRICS = [
  { key: 'runs', label: 'Runs', fmt: (v) => String(v) },
  { key: 'runtime_seconds', label: 'Runtime (s)', fmt: (v) => Number(v).toFixed(0) },
  { key: 'tokens', label: 'Tokens (in + out)', fmt: (v) => String(v) },
  { key: 'cost_usd', label: 'Cost (USD)', fmt: (v) => `$${Number(v).toFixed(4)}` },
];

const withTokens = (items) => (items || []).map((it) => ({ ...it, tokens: (it.tokens_in || 0) + (it.tokens_out || 0) }));
const teamName = (it) => it.team_name || it.team;

// Every UTC day from `from` to `to` (YYYY-MM-DD, both included) as unix seconds.
function daysOf(from, to) {
  const out = [];
  const end = Date.parse(`${to}T00:00:00Z`) / 1000;
  for (let t = Date.parse(`${from}T00:00:00Z`) / 1000; t <= end && out.length < 1000; t += DAY_S) out.push(t);
  return out;
}
const dayText = (t) => new Date(t * 1000).toISOString().slice(0, 10);

// One metric per day, a stacked bar per team: uPlot draws series in order, so
// the stack's top (every team's sum) comes first and each lower team over it;
// the legend and cursor show each team's own figure, not the stack's.
export function DayChart({ metric, from, to, teams }) {
  const box = useRef(null);
  const xs = daysOf(from, to);
  const own = teams.map((t) => xs.map((x) => Number((t.byDay.get(dayText(x)) || {})[metric.key]) || 0));
  const totals = teams.map((t, i) => own[i].reduce((a, b) => a + b, 0));
  const label = `${metric.label} per day per team, ${from} to ${to}: `
    + teams.map((t, i) => `${t.name} ${metric.fmt(totals[i])} in total`).join(', ');
  useEffect(() => {
    const el = box.current;
    const stacks = own.map((_, i) => xs.map((_x, d) => own.slice(0, i + 1).reduce((a, s) => a + s[d], 0)));
    const order = teams.map((_, i) => teams.length - 1 - i); // topmost stack first
    const fg = getComputedStyle(document.documentElement).getPropertyValue('--fg').trim() || '#1b1f24';
    const u = new uPlot({
      width: Math.max(200, el.clientWidth),
      height: CHART_H,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      scales: {
        x: { time: true, range: (_u, min, max) => [min - DAY_S / 2, max + DAY_S / 2] },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        { label: 'Day (UTC)', stroke: fg, grid: { show: false } },
        { label: metric.label, stroke: fg, size: 60, values: (_u, ticks) => ticks.map((v) => (metric.key === 'cost_usd' ? `$${v}` : String(v))) },
      ],
      series: [
        { label: 'Day', value: '{YYYY}-{MM}-{DD}' },
        ...order.map((i) => ({
          label: teams[i].name,
          fill: PALETTE[i % PALETTE.length],
          stroke: PALETTE[i % PALETTE.length],
          width: 0,
          points: { show: false },
          paths: uPlot.paths.bars({ size: [0.7, 48] }),
          value: (_u, _v, _si, d) => (d === null || d === undefined ? '–' : metric.fmt(own[i][d])),
        })),
      ],
      cursor: { points: { show: false } },
    }, [xs, ...order.map((i) => stacks[i])], el);
    u.ctx.canvas.setAttribute('role', 'img');
    u.ctx.canvas.setAttribute('aria-label', label);
    const ro = new ResizeObserver(() => {
      const w = Math.max(200, el.clientWidth);
      if (w !== u.width) u.setSize({ width: w, height: CHART_H });
    });
    ro.observe(el);
    return () => { ro.disconnect(); u.destroy(); };
  }, [metric.key, from, to, teams]);
  const days = xs.filter((x) => teams.some((t) => t.byDay.has(dayText(x)))); // the days with runs
  return html`
    <figure class="chart" data-metric=${metric.key}>
      <figcaption>${metric.label} per day per team</figcaption>
      <div class="chart-box" ref=${box}></div>
      <table class="runs figures" tabindex="0">
        <caption>${metric.label} per day per team, ${from} to ${to}</caption>
        <thead><tr><th scope="col">Day</th>${teams.map((t) => html`<th scope="col">${t.name}</th>`)}</tr></thead>
        <tbody>${days.length === 0
          ? html`<tr><td colspan=${teams.length + 1}>none</td></tr>`
          : days.map((x) => html`<tr data-key=${dayText(x)}><th scope="row">${dayText(x)}</th>
            ${teams.map((t, i) => html`<td data-team=${t.name}>${metric.fmt(own[i][xs.indexOf(x)])}</td>`)}</tr>`)}</tbody>
      </table>
    </figure>`;
}

function UsageGroups({ from, to, team }) {
  const [data, setData] = useState(null); // {byTeam, teams: [{id, name, byDay}]}
  const [error, setError] = useState(null);
  useEffect(() => {
    let live = true;
    setError(null);
    (async () => {
      const byTeam = await api('GET', `/v1/usage${query({ group_by: 'team', from, to, team })}`);
      const teams = await Promise.all((byTeam.items || []).map(async (it) => {
        const days = await api('GET', `/v1/usage${query({ group_by: 'day', from: byTeam.from, to: byTeam.to, team: it.team })}`);
        return { id: it.team, name: teamName(it), byDay: new Map(withTokens(days.items).map((d) => [d.day, d])) };
      }));
      if (live) setData({ byTeam, teams });
    })().catch((e) => {
      if (!live) return;
      setData(null);
      setError(e);
    });
    return () => { live = false; };
  }, [from, to, team]);
  const items = withTokens(data && data.byTeam.items);
  return html`
    ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
    <section aria-labelledby="usage-team" class="usage-group" data-group="team">
      <h2 id="usage-team">Per team</h2>
      ${data && items.length === 0 && html`<p>No finished runs in ${data.byTeam.from} to ${data.byTeam.to}.</p>`}
      ${items.length > 0 && html`
        <table class="runs figures" tabindex="0">
          <caption>Per team: the figures, ${data.byTeam.from} to ${data.byTeam.to}</caption>
          <thead><tr><th scope="col">Team</th>
            ${METRICS.map((m) => html`<th scope="col">${m.label}</th>`)}</tr></thead>
          <tbody>${items.map((it) => html`<tr data-key=${teamName(it)}><th scope="row">${teamName(it)}</th>
            ${METRICS.map((m) => html`<td>${m.fmt(it[m.key] || 0)}</td>`)}</tr>`)}</tbody>
        </table>`}
    </section>
    <section aria-labelledby="usage-day" class="usage-group" data-group="day">
      <h2 id="usage-day">Per day and team</h2>
      ${items.length > 0 && html`
        <div class="charts">
          ${METRICS.map((m) => html`<${DayChart} key=${m.key} metric=${m} from=${data.byTeam.from} to=${data.byTeam.to} teams=${data.teams} />`)}
        </div>`}
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
      <${UsageGroups} ...${applied} />
      <${Governance} ...${applied} />
    </main>`;
}
