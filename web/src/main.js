// The Paddock dashboard: a page over the public API only (nothing here is
// out of reach of the CLI). Text an agent controls is always rendered as
// text (preact text nodes; no innerHTML anywhere). Routes live in the URL
// fragment (#/runs/ID), so the api serves plain files (services/api/web.c).
import { h, render } from 'preact';
import { useEffect, useRef, useState, useCallback } from 'preact/hooks';
import htm from 'htm';
import { ApiError, api, canReadAudit, errText, hasRole, query, setUnauthorizedHandler } from './api.js';
import { ansiRuns } from './ansi.js';
import { AuditVerifyView, DecisionsView, DiffView, PolicyView } from './evidence.js';
import { DefinitionPage, DefinitionsList } from './definitions.js';
import { Catalog } from './catalog.js';
import { OidcSettings, ServiceAccounts } from './admin_more.js';
import { AuditLog } from './audit.js';
import { Usage } from './usage.js';
import { OidcSignIn } from './login_oidc.js';
import './style.css';

const html = htm.bind(h);

const TERMINAL = ['succeeded', 'failed', 'cancelled', 'timed_out', 'limit_exceeded', 'rejected'];
const STATUSES = ['queued', 'scheduled', 'provisioning', 'running', 'awaiting_approval', ...TERMINAL];
const EVENT_KINDS = ['status', 'output', 'tool_call', 'tool_result', 'exec', 'file_access', 'egress', 'model_call',
  'policy_decision', 'approval_requested', 'approval_decided', 'usage', 'limit'];

function useHash() {
  const [hash, setHash] = useState(location.hash || '#/runs');
  useEffect(() => {
    const f = () => setHash(location.hash || '#/runs');
    addEventListener('hashchange', f);
    return () => removeEventListener('hashchange', f);
  }, []);
  return hash;
}

function ErrorBox({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${errText(error)}</p>`;
}

function fmtTime(ts) {
  if (!ts) return '–';
  const d = new Date(ts);
  return isNaN(d) ? ts : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function StatusBadge({ status }) {
  return html`<span class=${`badge status-${status}`}>${status}</span>`;
}

// ---------------------------------------------------------------- login

function Login({ onLoggedIn }) {
  const [form, setForm] = useState({ tenant: localTenant(), username: '', password: '' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev) => {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    try {
      // session "cookie": the api keeps the token in an HttpOnly cookie
      await api('POST', '/v1/auth/login', { ...form, session: 'cookie' });
      onLoggedIn();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const field = (name, label, type = 'text', auto = 'on') => html`
    <label>${label}
      <input name=${name} type=${type} autocomplete=${auto} required value=${form[name]}
        onInput=${(e) => setForm({ ...form, [name]: e.currentTarget.value })} />
    </label>`;
  return html`
    <main class="login">
      <h1>Paddock</h1>
      <form onSubmit=${submit} aria-label="log in">
        ${field('tenant', 'Tenant', 'text', 'organization')}
        ${field('username', 'User name', 'text', 'username')}
        ${field('password', 'Password', 'password', 'current-password')}
        <${ErrorBox} error=${error} />
        <button type="submit" disabled=${busy}>Log in</button>
      </form>
      <${OidcSignIn} tenant=${form.tenant} />
    </main>`;
}

// the tenant name is no secret: the form remembers nothing else
function localTenant() {
  return new URLSearchParams(location.search).get('tenant') || '';
}

function ChangePassword({ onDone }) {
  const [cur, setCur] = useState('');
  const [fresh, setFresh] = useState('');
  const [error, setError] = useState(null);
  const submit = async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', '/v1/me/password', { current_password: cur, new_password: fresh });
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`
    <main class="login">
      <h1>Choose a new password</h1>
      <p>You logged in with a one-time password.</p>
      <form onSubmit=${submit} aria-label="change password">
        <label>Current password<input type="password" autocomplete="current-password" required value=${cur}
          onInput=${(e) => setCur(e.currentTarget.value)} /></label>
        <label>New password (12 characters or more)<input type="password" autocomplete="new-password" required
          minlength="12" value=${fresh} onInput=${(e) => setFresh(e.currentTarget.value)} /></label>
        <${ErrorBox} error=${error} />
        <button type="submit">Change password</button>
      </form>
    </main>`;
}

// ---------------------------------------------------------------- layout

function Nav({ me, onLogout, hash }) {
  const link = (href, label) =>
    html`<a href=${href} aria-current=${hash.startsWith(href) ? 'page' : undefined}>${label}</a>`;
  return html`
    <header class="top">
      <a class="brand" href="#/runs">Paddock</a>
      <nav aria-label="main">
        ${link('#/runs', 'Runs')}
        ${link('#/definitions', 'Definitions')}
        ${link('#/catalog', 'Catalog')}
        ${hasRole(me, ['approver']) && link('#/approvals', 'Approvals')}
        ${hasRole(me, ['launcher']) && link('#/launch', 'Launch')}
        ${link('#/usage', 'Usage')}
        ${canReadAudit(me) && link('#/audit', 'Audit')}
        ${(me.tenant_roles || []).includes('tenant_admin') && link('#/admin', 'Admin')}
      </nav>
      <span class="who">${me.user.username} @ ${me.tenant.name}</span>
      <button type="button" class="secondary" onClick=${onLogout}>Log out</button>
    </header>`;
}

// ---------------------------------------------------------------- runs list

function RunsList({ me }) {
  const [filters, setFilters] = useState({ team: '', status: '', sandbox: '', launched_by: '' });
  const [runs, setRuns] = useState(null);
  const [error, setError] = useState(null);
  const load = useCallback(async () => {
    try {
      const page = await api('GET', `/v1/runs${query({ ...filters, limit: 50 })}`);
      setRuns(page.items);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, [filters]);
  useEffect(() => {
    load();
    // live status: the list refreshes while it is on screen
    const t = setInterval(load, 3000);
    return () => clearInterval(t);
  }, [load]);
  const set = (k) => (e) => setFilters({ ...filters, [k]: e.currentTarget.value });
  return html`
    <main>
      <h1>Runs</h1>
      <form class="filters" aria-label="filter runs" onSubmit=${(e) => e.preventDefault()}>
        <label>Team
          <select name="team" value=${filters.team} onChange=${set('team')}>
            <option value="">all</option>
            ${(me.teams || []).map((t) => html`<option value=${t.id}>${t.name}</option>`)}
          </select>
        </label>
        <label>Status
          <select name="status" value=${filters.status} onChange=${set('status')}>
            <option value="">any</option>
            ${STATUSES.map((s) => html`<option value=${s}>${s}</option>`)}
          </select>
        </label>
        <label>Definition<input name="sandbox" value=${filters.sandbox} onChange=${set('sandbox')} /></label>
        <label>Launched by<input name="launched_by" value=${filters.launched_by} onChange=${set('launched_by')} /></label>
      </form>
      <${ErrorBox} error=${error} />
      ${runs && runs.length === 0 && html`<p>No runs.</p>`}
      ${runs && runs.length > 0 && html`
        <table class="runs">
          <thead><tr><th>Run</th><th>Status</th><th>Definition</th><th>Team</th><th>Launched by</th><th>Created</th></tr></thead>
          <tbody>
            ${runs.map((r) => html`
              <tr data-run=${r.id}>
                <td><a href=${`#/runs/${r.id}`}>${r.id.slice(0, 8)}</a></td>
                <td><${StatusBadge} status=${r.status} /></td>
                <td>${r.sandbox_name} v${r.version}</td>
                <td>${r.team_name}</td>
                <td>${r.launched_by && r.launched_by.username}</td>
                <td>${fmtTime(r.created_at)}</td>
              </tr>`)}
          </tbody>
        </table>`}
    </main>`;
}

// ---------------------------------------------------------------- run page

function Output({ text }) {
  return html`<pre class="output">${ansiRuns(text || '').map((r) =>
    r.cls ? html`<span class=${r.cls}>${r.text}</span>` : r.text)}</pre>`;
}

function Json({ value }) {
  return html`<pre class="json">${typeof value === 'string' ? value : JSON.stringify(value, null, 2)}</pre>`;
}

function EventBody({ ev }) {
  const d = ev.data || {};
  switch (ev.kind) {
    case 'output':
      return html`<div><span class="stream">${d.stream || ''}</span><${Output} text=${d.text} /></div>`;
    case 'status':
      return html`<div><${StatusBadge} status=${d.status} />${d.reason ? html` <span>${d.reason}</span>` : ''}</div>`;
    case 'tool_call':
      return html`<div><strong>${d.tool || d.name || 'tool'}</strong>
        ${d.input !== undefined && html`<details><summary>input</summary><${Json} value=${d.input} /></details>`}
        ${d.result !== undefined && html`<details><summary>result</summary><${Json} value=${d.result} /></details>`}
        ${d.decision && html` <span class="decision">${d.decision}</span>`}</div>`;
    case 'tool_result': {
      // PostToolUse completed the call (docs/CONTRACTS.md "Hook bridge"), with the hook's decision
      const dec = d.decision || {};
      return html`<div><strong>${d.tool || 'tool'}</strong> completed${d.duration_ms !== undefined ? ` in ${d.duration_ms} ms` : ''}
        ${dec.action && html` <span class="decision">${dec.action}${dec.approval_id ? ` (approval ${dec.approval_id})` : ''}</span>`}
        ${d.result !== undefined && html`<details><summary>result</summary><${Json} value=${d.result} /></details>`}</div>`;
    }
    case 'exec':
      return html`<div><code>${Array.isArray(d.argv) ? d.argv.join(' ') : d.command || d.program || ''}</code>
        ${d.decision && html` <span class="decision">${d.decision}</span>`}</div>`;
    case 'file_access':
      return html`<div><code>${d.path || ''}</code> ${d.op || d.mode || ''}
        ${d.decision && html` <span class="decision">${d.decision}</span>`}</div>`;
    case 'egress':
      return html`<div><code>${d.host || ''}${d.port ? `:${d.port}` : ''}</code>
        <span class="decision">${d.decision || d.action || ''}</span></div>`;
    default:
      return html`<${Json} value=${d} />`;
  }
}

function ConfirmDialog({ text, onYes, onNo }) {
  const yes = useRef(null);
  useEffect(() => yes.current && yes.current.focus(), []);
  return html`
    <div class="dialog" role="dialog" aria-modal="true" aria-label="confirm"
      onKeyDown=${(e) => e.key === 'Escape' && onNo()}>
      <p>${text}</p>
      <button type="button" ref=${yes} class="danger" onClick=${onYes}>Yes, cancel the run</button>
      <button type="button" class="secondary" onClick=${onNo}>Keep it running</button>
    </div>`;
}

// Evidence so far: the artifact manifest (reviewer), each downloadable
// through the api's short-lived presigned redirect.
function Artifacts({ run, onLoaded }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    // the evidence service stores the manifest shortly after the run ends: look again a while
    let tries = 0, timer = null;
    const load = () => api('GET', `/v1/runs/${encodeURIComponent(run.id)}/artifacts`).then((p) => {
      setItems(p.items);
      if (onLoaded) onLoaded(p.items);
      if (p.items.length === 0 && ++tries < 20) timer = setTimeout(load, 3000);
    }).catch(setError);
    load();
    return () => clearTimeout(timer);
  }, [run.id, run.status]);
  return html`
    <section aria-label="artifacts">
      <h2>Artifacts</h2>
      <${ErrorBox} error=${error} />
      ${items && items.length === 0 && html`<p>None.</p>`}
      ${items && items.length > 0 && html`
        <table class="runs artifacts">
          <thead><tr><th>Name</th><th>Kind</th><th>Size (bytes)</th><th>SHA-256</th></tr></thead>
          <tbody>${items.map((a) => html`<tr data-artifact=${a.name}>
            <td><a href=${`/v1/runs/${encodeURIComponent(run.id)}/artifacts/${encodeURIComponent(a.name)}`}
              download=${a.name}>${a.name}</a></td>
            <td>${a.kind || ''}</td><td>${a.size}</td><td class="sha"><code>${a.sha256 || ''}</code></td></tr>`)}</tbody>
        </table>`}
    </section>`;
}

function RunPage({ me, id }) {
  const [run, setRun] = useState(null);
  const [events, setEvents] = useState([]);
  const [error, setError] = useState(null);
  const [live, setLive] = useState('connecting');
  const [hidden, setHidden] = useState({});
  const [confirm, setConfirm] = useState(false);
  const [artifacts, setArtifacts] = useState(null);
  const lastSeq = useRef(0);
  // the latest status event seen: the stream may tell a run's end before
  // GET /v1/runs/{id} has recorded it (the status consumer is another path)
  const streamStatus = useRef(null);

  const loadRun = useCallback(async () => {
    try {
      const r = await api('GET', `/v1/runs/${encodeURIComponent(id)}`);
      const seen = streamStatus.current;
      if (seen && TERMINAL.includes(seen) && !TERMINAL.includes(r.status)) {
        r.status = seen;
        setTimeout(loadRun, 1500); // the record catches up: read it again
      }
      setRun(r);
    } catch (e) {
      setError(e);
    }
  }, [id]);

  useEffect(() => {
    let ws = null, stopped = false, retry = null;
    lastSeq.current = 0;
    streamStatus.current = null;
    setEvents([]);
    loadRun();
    // A ticket per connection (a token never goes into a URL); a new
    // connection resumes after the last seq seen: no gap, no duplicate.
    const connect = async () => {
      if (stopped) return;
      try {
        const t = await api('POST', `/v1/runs/${encodeURIComponent(id)}/stream-ticket`);
        const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
        ws = new WebSocket(`${proto}//${location.host}/v1/runs/${encodeURIComponent(id)}/stream` +
          query({ ticket: t.ticket, after: lastSeq.current }));
      } catch (e) {
        setError(e);
        setLive('disconnected');
        if (!(e instanceof ApiError && [401, 403, 404].includes(e.status))) retry = setTimeout(connect, 2000);
        return;
      }
      ws.onopen = () => setLive('live');
      ws.onmessage = (m) => {
        let ev;
        try {
          ev = JSON.parse(m.data);
        } catch {
          return;
        }
        if (typeof ev.seq !== 'number' || ev.seq <= lastSeq.current) return;
        lastSeq.current = ev.seq;
        if (ev.kind === 'status' && ev.data && ev.data.status) {
          streamStatus.current = ev.data.status;
          setRun((r) => (r ? { ...r, status: ev.data.status } : r));
        }
        setEvents((old) => [...old, ev]);
        if (ev.kind === 'status' || ev.kind === 'usage') loadRun();
      };
      ws.onclose = (c) => {
        if (stopped) return;
        if (c.code === 1000) {
          setLive('ended');
          loadRun();
          return;
        }
        setLive('reconnecting');
        if (c.code !== 4401 && c.code !== 4403) retry = setTimeout(connect, 1000);
      };
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(retry);
      if (ws) ws.close();
    };
  }, [id, loadRun]);

  const cancel = async () => {
    setConfirm(false);
    try {
      await api('POST', `/v1/runs/${encodeURIComponent(id)}/cancel`);
      loadRun();
    } catch (e) {
      setError(e);
    }
  };

  if (!run) return html`<main><${ErrorBox} error=${error} />${!error && html`<p>Loading…</p>`}</main>`;
  const canCancel = !TERMINAL.includes(run.status) && hasRole(me, ['launcher', 'approver'], run.team);
  const u = run.usage || {};
  const shown = events.filter((e) => !hidden[e.kind]);
  const kinds = EVENT_KINDS.filter((k) => events.some((e) => e.kind === k));
  return html`
    <main>
      <h1>Run <code>${run.id}</code></h1>
      <dl class="run-header">
        <dt>Status</dt><dd id="run-status"><${StatusBadge} status=${run.status} /></dd>
        <dt>Definition</dt><dd>${run.sandbox_name} v${run.version}</dd>
        <dt>Team</dt><dd>${run.team_name}</dd>
        <dt>Launched by</dt><dd>${run.launched_by && run.launched_by.username}</dd>
        <dt>Node</dt><dd>${run.node || '–'}</dd>
        <dt>Created</dt><dd>${fmtTime(run.created_at)}</dd>
        <dt>Started</dt><dd>${fmtTime(run.started_at)}</dd>
        <dt>Ended</dt><dd>${fmtTime(run.ended_at)}</dd>
        <dt>Tokens</dt><dd>${(u.input_tokens || 0) + (u.output_tokens || 0)}</dd>
        <dt>Cost</dt><dd>$${(u.cost_usd || 0).toFixed(4)}</dd>
        ${run.reason && html`<dt>Reason</dt><dd>${run.reason}</dd>`}
      </dl>
      ${canCancel && html`<button type="button" class="danger" onClick=${() => setConfirm(true)}>Cancel run</button>`}
      ${confirm && html`<${ConfirmDialog} text="Cancel this run now?" onYes=${cancel} onNo=${() => setConfirm(false)} />`}
      <${ErrorBox} error=${error} />
      ${TERMINAL.includes(run.status) && hasRole(me, ['reviewer'], run.team) && html`
        <${Artifacts} run=${run} onLoaded=${setArtifacts} />
        <${DiffView} run=${run} artifacts=${artifacts} />
        <${PolicyView} run=${run} />
        <${DecisionsView} run=${run} events=${events} />
        <${AuditVerifyView} me=${me} />`}
      <h2>Events <span class=${`live live-${live}`} id="stream-state">${live}</span></h2>
      <fieldset class="kinds"><legend>Show kinds</legend>
        ${kinds.map((k) => html`<label><input type="checkbox" checked=${!hidden[k]}
          onChange=${(e) => setHidden({ ...hidden, [k]: !e.currentTarget.checked })} />${k}</label>`)}
      </fieldset>
      <ol class="events" aria-live="polite">
        ${shown.map((ev) => html`
          <li class=${`event kind-${ev.kind}`} data-seq=${ev.seq} data-kind=${ev.kind}>
            <span class="seq">#${ev.seq}</span> <span class="kind">${ev.kind}</span>
            <span class="ts">${fmtTime(ev.ts)}</span> <span class="actor">${ev.actor}</span>
            <${EventBody} ev=${ev} />
          </li>`)}
      </ol>
    </main>`;
}

// ---------------------------------------------------------------- approvals

function ApprovalCard({ a, onDecided }) {
  const [comment, setComment] = useState('');
  const [error, setError] = useState(null);
  const decide = async (decision) => {
    try {
      await api('POST', `/v1/approvals/${encodeURIComponent(a.id)}/decision`, { decision, comment });
      onDecided();
    } catch (e) {
      setError(e);
    }
  };
  const s = a.run_summary || {};
  return html`
    <li class="approval" data-approval=${a.id}>
      <h2>${a.kind}: <code>${a.kind === 'egress' ? `${a.what.host}:${a.what.port}` :
        [a.what.tool, a.what.command || a.what.path].filter(Boolean).join(' ')}</code></h2>
      <p>Run <a href=${`#/runs/${a.run}`}>${a.run.slice(0, 8)}</a> of ${s.sandbox_name} v${s.version},
        launched by ${s.launched_by && s.launched_by.username}; rule ${a.rule || 'unknown destination: ask'};
        deadline ${fmtTime(a.deadline)}</p>
      ${a.kind === 'tool' && a.what.input !== undefined && html`<p>Input of the ${a.what.tool || 'tool'} call:</p>
        <${Json} value=${a.what.input} />`}
      <details><summary>request</summary><${Json} value=${a.what} /></details>
      <details><summary>context (${(a.context || []).length} events)</summary>
        <ol>${(a.context || []).map((c) => html`<li>#${c.seq} ${c.kind} <${Json} value=${c.data} /></li>`)}</ol>
      </details>
      <label>Comment<input name="comment" maxlength="1024" value=${comment}
        onInput=${(e) => setComment(e.currentTarget.value)} /></label>
      <${ErrorBox} error=${error} />
      <button type="button" onClick=${() => decide('approve')}>Approve</button>
      <button type="button" class="danger" onClick=${() => decide('deny')}>Deny</button>
    </li>`;
}

function Approvals() {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const load = useCallback(async () => {
    try {
      setItems((await api('GET', '/v1/approvals?status=pending')).items);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, []);
  useEffect(() => {
    load();
    const t = setInterval(load, 3000);
    return () => clearInterval(t);
  }, [load]);
  return html`
    <main>
      <h1>Approvals</h1>
      <${ErrorBox} error=${error} />
      ${items && items.length === 0 && html`<p>Nothing waits for a decision.</p>`}
      <ul class="approvals">${(items || []).map((a) => html`<${ApprovalCard} key=${a.id} a=${a} onDecided=${load} />`)}</ul>
    </main>`;
}

// ---------------------------------------------------------------- launch

function VarField({ name, decl, value, onChange }) {
  const label = `${name}${decl.required ? ' (required)' : ''}`;
  const set = (v) => onChange(name, v);
  switch (decl.type) {
    case 'text':
      return html`<label>${label}<textarea name=${`var-${name}`} maxlength=${decl.max_length}
        onInput=${(e) => set(e.currentTarget.value)}>${value ?? ''}</textarea></label>`;
    case 'integer':
      return html`<label>${label}<input type="number" step="1" name=${`var-${name}`} value=${value ?? ''}
        onInput=${(e) => set(e.currentTarget.value === '' ? undefined : parseInt(e.currentTarget.value, 10))} /></label>`;
    case 'boolean':
      return html`<label><input type="checkbox" name=${`var-${name}`} checked=${!!value}
        onChange=${(e) => set(e.currentTarget.checked)} />${label}</label>`;
    case 'enum':
      return html`<label>${label}<select name=${`var-${name}`} value=${value ?? ''}
        onChange=${(e) => set(e.currentTarget.value || undefined)}>
        <option value="">–</option>${(decl.values || []).map((v) => html`<option value=${v}>${v}</option>`)}
      </select></label>`;
    default:
      return html`<label>${label}<input name=${`var-${name}`} maxlength=${decl.max_length} value=${value ?? ''}
        onInput=${(e) => set(e.currentTarget.value)} /></label>`;
  }
}

function Launch({ me }) {
  const [sandboxes, setSandboxes] = useState(null);
  const [pick, setPick] = useState('');
  const [version, setVersion] = useState(null);
  const [vars, setVars] = useState({});
  const [decls, setDecls] = useState({});
  const [error, setError] = useState(null);
  useEffect(() => {
    api('GET', '/v1/sandboxes?limit=200')
      .then((p) => setSandboxes(p.items.filter((s) => s.latest_version && hasRole(me, ['launcher'], s.team))))
      .catch(setError);
  }, [me]);
  useEffect(() => {
    setVersion(null);
    setDecls({});
    setVars({});
    const s = (sandboxes || []).find((x) => x.id === pick);
    if (!s) return;
    // the template's declared variables make the form (docs/CONTRACTS.md "Prompt templates")
    (async () => {
      try {
        const v = await api('GET', `/v1/sandboxes/${s.id}/versions/${s.latest_version}`);
        setVersion(v);
        const tpl = v.spec && v.spec.prompt && v.spec.prompt.template;
        if (tpl) {
          const item = await api('GET', `/v1/catalog/prompt-templates/${encodeURIComponent(tpl)}`);
          const fixed = (v.spec.prompt.vars) || {};
          const all = (item.body && item.body.variables) || {};
          setDecls(Object.fromEntries(Object.entries(all).filter(([k]) => !(k in fixed))));
        }
      } catch (e) {
        setError(e);
      }
    })();
  }, [pick, sandboxes]);
  const submit = async (ev) => {
    ev.preventDefault();
    setError(null);
    const s = sandboxes.find((x) => x.id === pick);
    const body = { sandbox: s.id, version: s.latest_version };
    const pv = Object.fromEntries(Object.entries(vars).filter(([, v]) => v !== undefined && v !== ''));
    if (Object.keys(pv).length) body.prompt_vars = pv;
    try {
      const r = await api('POST', '/v1/runs', body);
      location.hash = `#/runs/${r.id}`;
    } catch (e) {
      setError(e);
    }
  };
  return html`
    <main>
      <h1>Launch a run</h1>
      <form onSubmit=${submit} aria-label="launch" class="launch">
        <label>Definition
          <select name="sandbox" required value=${pick} onChange=${(e) => setPick(e.currentTarget.value)}>
            <option value="">choose…</option>
            ${(sandboxes || []).map((s) => html`<option value=${s.id}>${s.name} v${s.latest_version} (${s.team_name})</option>`)}
          </select>
        </label>
        ${version && html`<p>Agent: ${version.spec.agent && version.spec.agent.type}</p>`}
        ${Object.entries(decls).map(([k, d]) => html`<${VarField} key=${k} name=${k} decl=${d} value=${vars[k]}
          onChange=${(n, v) => setVars({ ...vars, [n]: v })} />`)}
        <${ErrorBox} error=${error} />
        <button type="submit" disabled=${!version}>Launch</button>
      </form>
    </main>`;
}

// ---------------------------------------------------------------- administration

const TEAM_ROLES = ['viewer', 'launcher', 'approver', 'reviewer', 'sandbox_author', 'security_admin'];

function Admin() {
  const [users, setUsers] = useState([]);
  const [teams, setTeams] = useState([]);
  const [team, setTeam] = useState('');
  const [members, setMembers] = useState([]);
  const [form, setForm] = useState({ username: '', password: '' });
  const [grant, setGrant] = useState({ user: '', roles: [] });
  const [created, setCreated] = useState(null);
  const [error, setError] = useState(null);
  const [note, setNote] = useState('');
  const loadUsers = useCallback(() => api('GET', '/v1/users').then((p) => setUsers(p.items)).catch(setError), []);
  const loadMembers = useCallback(() => {
    if (!team) return setMembers([]);
    return api('GET', `/v1/teams/${team}/members`).then((p) => setMembers(p.items)).catch(setError);
  }, [team]);
  useEffect(() => {
    loadUsers();
    api('GET', '/v1/teams').then((p) => {
      const items = Array.isArray(p) ? p : p.items;
      setTeams(items);
      if (items.length) setTeam(items[0].id);
    }).catch(setError);
  }, [loadUsers]);
  useEffect(() => { loadMembers(); }, [loadMembers]);
  const createUser = async (ev) => {
    ev.preventDefault();
    setError(null);
    try {
      const body = { username: form.username };
      if (form.password) body.password = form.password;
      const u = await api('POST', '/v1/users', body);
      // a generated one-time password is shown once, as the API answers it
      setCreated(u);
      setForm({ username: '', password: '' });
      loadUsers();
    } catch (e) {
      setError(e);
    }
  };
  const putRoles = async (ev) => {
    ev.preventDefault();
    setError(null);
    try {
      await api('PUT', `/v1/teams/${team}/members/${grant.user}`, { roles: grant.roles });
      setNote('roles saved');
      loadMembers();
    } catch (e) {
      setError(e);
    }
  };
  const toggle = (role) => setGrant({ ...grant,
    roles: grant.roles.includes(role) ? grant.roles.filter((r) => r !== role) : [...grant.roles, role] });
  return html`
    <main>
      <h1>Administration</h1>
      <${ErrorBox} error=${error} />
      <section aria-label="users">
        <h2>Users</h2>
        <table class="runs users" tabindex="0">
          <thead><tr><th>User</th><th>Tenant roles</th><th>Disabled</th><th>Created</th></tr></thead>
          <tbody>${users.map((u) => html`<tr data-user=${u.username}><td>${u.username}</td>
            <td>${u.tenant_roles.join(', ')}</td><td>${u.disabled ? 'yes' : 'no'}</td><td>${fmtTime(u.created_at)}</td></tr>`)}</tbody>
        </table>
        <form onSubmit=${createUser} aria-label="create user" class="create-user">
          <h3>New user</h3>
          <label>User name<input name="new-username" required maxlength="128" value=${form.username}
            onInput=${(e) => setForm({ ...form, username: e.currentTarget.value })} /></label>
          <label>Password (empty: a one-time password)<input name="new-password" type="password" autocomplete="new-password"
            value=${form.password} onInput=${(e) => setForm({ ...form, password: e.currentTarget.value })} /></label>
          <button type="submit">Create user</button>
        </form>
        ${created && html`<p class="created" role="status">Created ${created.username}${created.password
          ? html`; one-time password (shown once): <code>${created.password}</code>` : ''}</p>`}
      </section>
      <section aria-label="role grants">
        <h2>Role grants</h2>
        <label>Team<select name="grant-team" value=${team} onChange=${(e) => setTeam(e.currentTarget.value)}>
          ${teams.map((t) => html`<option value=${t.id}>${t.name}</option>`)}</select></label>
        <table class="runs members" tabindex="0">
          <thead><tr><th>Member</th><th>Roles</th></tr></thead>
          <tbody>${members.map((m) => html`<tr data-member=${m.user.username}><td>${m.user.username}</td>
            <td>${m.roles.join(', ')}</td></tr>`)}</tbody>
        </table>
        <form onSubmit=${putRoles} aria-label="grant roles" class="grant">
          <label>User<select name="grant-user" required value=${grant.user}
            onChange=${(e) => setGrant({ ...grant, user: e.currentTarget.value })}>
            <option value="">choose…</option>
            ${users.map((u) => html`<option value=${u.id}>${u.username}</option>`)}</select></label>
          <fieldset class="kinds"><legend>Roles in the team (none: not a member)</legend>
            ${TEAM_ROLES.map((r) => html`<label><input type="checkbox" name=${`role-${r}`} checked=${grant.roles.includes(r)}
              onChange=${() => toggle(r)} />${r}</label>`)}
          </fieldset>
          <button type="submit">Save roles</button> <span role="status">${note}</span>
        </form>
      </section>
      <${ServiceAccounts} teams=${teams} />
      <${OidcSettings} />
    </main>`;
}

// ---------------------------------------------------------------- the app

function App() {
  const [me, setMe] = useState(undefined);
  const hash = useHash();
  const loadMe = useCallback(async () => {
    try {
      setMe(await api('GET', '/v1/me'));
    } catch (e) {
      setMe(null);
    }
  }, []);
  useEffect(() => {
    setUnauthorizedHandler(() => setMe(null));
    loadMe();
  }, [loadMe]);
  const logout = async () => {
    try {
      await api('POST', '/v1/auth/logout');
    } catch {
      /* the session is gone either way */
    }
    setMe(null);
    location.hash = '#/runs';
  };
  if (me === undefined) return html`<main><p>Loading…</p></main>`;
  if (me === null) return html`<${Login} onLoggedIn=${loadMe} />`;
  if (me.password_change_required) return html`<${ChangePassword} onDone=${loadMe} />`;
  let page;
  const m = hash.match(/^#\/runs\/([0-9a-fA-F-]{1,64})$/);
  const d = hash.match(/^#\/definitions\/([0-9a-fA-F-]{1,64})$/);
  if (m) page = html`<${RunPage} key=${m[1]} me=${me} id=${m[1]} />`;
  else if (d) page = html`<${DefinitionPage} key=${d[1]} me=${me} id=${d[1]} />`;
  else if (hash.startsWith('#/definitions')) page = html`<${DefinitionsList} me=${me} />`;
  else if (hash.startsWith('#/catalog')) page = html`<${Catalog} me=${me} />`;
  else if (hash.startsWith('#/approvals')) page = html`<${Approvals} />`;
  else if (hash.startsWith('#/launch')) page = html`<${Launch} me=${me} />`;
  else if (hash.startsWith('#/usage')) page = html`<${Usage} me=${me} />`;
  else if (hash.startsWith('#/audit') && canReadAudit(me)) page = html`<${AuditLog} me=${me} />`;
  else if (hash.startsWith('#/admin') && (me.tenant_roles || []).includes('tenant_admin')) page = html`<${Admin} />`;
  else page = html`<${RunsList} me=${me} />`;
  return html`<${Nav} me=${me} onLogout=${logout} hash=${hash} />${page}`;
}

render(html`<${App} />`, document.getElementById('app'));
