// Evidence on the run page (issue 13): the workspace diff side by side or
// unified, the effective policy, who approved what, the audit chain's
// verification. The diff is parsed by diff2html (a kept library, pinned in
// package-lock.json) and drawn here with preact: every file name and line
// is a text node. diff2html's own HTML renderer is not used, since its
// output would need innerHTML; the page has none anywhere (main.js).
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { parse } from 'diff2html/lib-esm/diff-parser';
import { ApiError, api, canReadAudit, errText, hasRole } from './api.js';

const html = htm.bind(h);
const DIFF = 'workspace.diff';
// the api's default bound for ?inline=true (docs/CONTRACTS.md "Artifact bytes through the api")
const DIFF_MAX = 4 * 1024 * 1024;

// An artifact's bytes as text, same origin (the CSP's connect-src 'self'
// rules out the presigned S3 URL the plain GET redirects to).
export async function artifactText(runId, name, maxBytes = DIFF_MAX) {
  const resp = await fetch(`/v1/runs/${encodeURIComponent(runId)}/artifacts/${encodeURIComponent(name)}` +
    `?inline=true&max_bytes=${maxBytes}`, { credentials: 'same-origin', cache: 'no-store' });
  if (!resp.ok) {
    let p = null;
    try {
      p = await resp.json();
    } catch {
      p = null;
    }
    throw new ApiError(resp.status, p);
  }
  return resp.text();
}

// git C-quotes a path with '"', '\\', control or non-ASCII bytes
// ("a/\"x\".txt", octal UTF-8 bytes); diff2html drops the outer quotes
// only. A backslash in a path is always such an escape (git quotes it too).
export function gitUnquote(name) {
  if (!name || !name.includes('\\')) return name || '';
  const bytes = [];
  const enc = new TextEncoder();
  const map = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '"': 34, '\\': 92 };
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    if (c !== '\\' || i + 1 >= name.length) {
      bytes.push(...enc.encode(c));
      continue;
    }
    const n = name[i + 1];
    if (/[0-7]/.test(n) && /^[0-7]{3}$/.test(name.slice(i + 1, i + 4))) {
      bytes.push(parseInt(name.slice(i + 1, i + 4), 8));
      i += 3;
    } else if (n in map) {
      bytes.push(map[n]);
      i += 1;
    } else bytes.push(92);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

const fileName = (f) => gitUnquote((f.isDeleted ? f.oldName : f.newName) || f.oldName || '');

function lineClass(t) {
  return t === 'insert' ? 'd-add' : t === 'delete' ? 'd-del' : 'd-ctx';
}

function Unified({ file }) {
  return html`<table class="diff unified" aria-label=${`unified diff of ${fileName(file)}`}>
    <tbody>${file.blocks.map((b) => html`
      <tr class="d-hunk"><td colspan="3">${b.header}</td></tr>
      ${b.lines.map((l) => html`<tr class=${lineClass(l.type)}>
        <td class="ln">${l.oldNumber || ''}</td><td class="ln">${l.newNumber || ''}</td>
        <td class="code">${l.content}</td></tr>`)}`)}
    </tbody></table>`;
}

// pairs a hunk's deletions with the insertions that follow them, row by row
function sideRows(block) {
  const rows = [];
  let dels = [], adds = [];
  const flush = () => {
    for (let i = 0; i < Math.max(dels.length, adds.length); i++) rows.push([dels[i] || null, adds[i] || null]);
    dels = [];
    adds = [];
  };
  for (const l of block.lines) {
    if (l.type === 'delete') {
      if (adds.length) flush();
      dels.push(l);
    } else if (l.type === 'insert') adds.push(l);
    else {
      flush();
      rows.push([l, l]);
    }
  }
  flush();
  return rows;
}

export function SideBySide({ file }) {
  const cell = (l, num) => (l
    ? html`<td class=${`ln ${lineClass(l.type)}`}>${num(l) || ''}</td><td class=${`code ${lineClass(l.type)}`}>${l.content.slice(1)}</td>`
    : html`<td class="ln d-empty"></td><td class="code d-empty"></td>`);
  return html`<table class="diff side" aria-label=${`side-by-side diff of ${fileName(file)}`}>
    <colgroup><col class="c-ln" /><col /><col class="c-ln" /><col /></colgroup>
    <tbody>${file.blocks.map((b) => html`
      <tr class="d-hunk"><td colspan="4">${b.header}</td></tr>
      ${sideRows(b).map(([o, n]) => html`<tr>${cell(o, (l) => l.oldNumber)}${cell(n, (l) => l.newNumber)}</tr>`)}`)}
    </tbody></table>`;
}

export function DiffView({ run, artifacts }) {
  const [files, setFiles] = useState(null);
  const [error, setError] = useState(null);
  const [mode, setMode] = useState('side');
  const entry = (artifacts || []).find((a) => a.name === DIFF);
  const truncated = (artifacts || []).some((a) => a.name === `${DIFF}.truncated.json`);
  useEffect(() => {
    if (!entry) return;
    if (entry.size > DIFF_MAX) {
      setError(new Error(`the diff is ${entry.size} bytes, more than this page shows: download it`));
      return;
    }
    artifactText(run.id, DIFF).then((t) => setFiles(parse(t))).catch(setError);
  }, [run.id, entry && entry.sha256]);
  if (!entry) return null;
  return html`
    <section aria-label="workspace diff" class="diff-section">
      <h2>Workspace diff</h2>
      ${truncated && html`<p>The diff was truncated by the runner (see ${DIFF}.truncated.json).</p>`}
      <div role="radiogroup" aria-label="diff layout" class="diff-mode">
        <label><input type="radio" name="diff-mode" value="side" checked=${mode === 'side'}
          onChange=${() => setMode('side')} />Side by side</label>
        <label><input type="radio" name="diff-mode" value="unified" checked=${mode === 'unified'}
          onChange=${() => setMode('unified')} />Unified</label>
      </div>
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      ${files && files.length === 0 && html`<p>No changes in the workspace.</p>`}
      ${files && files.map((f) => html`
        <article class="diff-file" data-file=${fileName(f)}>
          <h3><code class="diff-name">${f.isRename ? `${gitUnquote(f.oldName)} → ${gitUnquote(f.newName)}` : fileName(f)}</code>
            <span class="d-stat"> +${f.addedLines} −${f.deletedLines}</span>
            ${f.isBinary ? html` <span>(binary)</span>` : ''}</h3>
          ${mode === 'side' ? html`<${SideBySide} file=${f} />` : html`<${Unified} file=${f} />`}
        </article>`)}
    </section>`;
}

function Json({ value }) {
  return html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`;
}

// The effective policy of the run's definition version: the resolution the
// run's snapshot took at launch, resolved again now against the catalog
// (GET .../effective-policy; 409 when an item it used was withdrawn since).
export function PolicyView({ run }) {
  const [pol, setPol] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api('GET', `/v1/sandboxes/${encodeURIComponent(run.sandbox)}/versions/${run.version}/effective-policy`)
      .then(setPol).catch(setError);
  }, [run.sandbox, run.version]);
  return html`
    <section aria-label="effective policy">
      <h2>Effective policy (${run.sandbox_name} v${run.version})</h2>
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      ${pol && html`<details open><summary>policy</summary><${Json} value=${pol} /></details>`}
    </section>`;
}

// Who approved what: each approval the run asked for (its events) with its
// decision and who made it; then the reviews of the finished run.
export function DecisionsView({ run, events }) {
  const [reviews, setReviews] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api('GET', `/v1/runs/${encodeURIComponent(run.id)}/reviews`).then((p) => setReviews(p.items)).catch(setError);
  }, [run.id, run.status]);
  const asked = events.filter((e) => e.kind === 'approval_requested');
  const decided = {};
  for (const e of events) if (e.kind === 'approval_decided' && e.data) decided[e.data.approval_id] = e;
  return html`
    <section aria-label="approvals and reviews">
      <h2>Approvals and reviews</h2>
      ${asked.length === 0 && html`<p>The run asked for no approval.</p>`}
      ${asked.length > 0 && html`
        <table class="runs decisions">
          <thead><tr><th>Asked (seq)</th><th>What</th><th>Decision</th><th>By</th></tr></thead>
          <tbody>${asked.map((e) => {
            const d = e.data || {};
            const dec = decided[d.approval_id];
            const what = d.kind === 'egress' ? `egress ${d.host || ''}:${d.port || ''}` :
              `${d.kind || ''} ${d.tool || d.what || ''}`;
            return html`<tr data-approval=${d.approval_id || ''}><td>#${e.seq}</td><td><code>${what}</code></td>
              <td>${dec ? dec.data.decision : 'pending'}</td><td>${dec ? dec.data.by || '' : ''}</td></tr>`;
          })}</tbody>
        </table>`}
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      ${reviews && reviews.length === 0 && html`<p>No review yet.</p>`}
      ${reviews && reviews.length > 0 && html`
        <ul class="reviews">${reviews.map((r) => html`<li data-review=${r.id}>
          <strong>${r.outcome}</strong> by ${r.by.username} at ${r.at}${r.comment ? html`: <q>${r.comment}</q>` : ''}
        </li>`)}</ul>`}
    </section>`;
}

// The tenant's audit chain, checked by the api (GET /v1/audit/verify is
// for tenant administrators; anyone else is told why it is not shown).
export function AuditVerifyView({ me }) {
  const admin = canReadAudit(me);
  const [v, setV] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (admin) api('GET', '/v1/audit/verify').then(setV).catch(setError);
  }, [admin]);
  return html`
    <section aria-label="audit chain">
      <h2>Audit chain</h2>
      ${!admin && html`<p id="audit-verify">Not shown: verifying the tenant's audit chain is for tenant administrators and auditors.</p>`}
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      ${v && html`<p id="audit-verify" class=${v.ok ? 'ok' : 'error'}>${v.ok
        ? `verified: ${v.checked} records, the chain holds (head ${v.head_hash})`
        : `broken at record ${v.first_bad_seq}: ${v.reason}`}</p>`}
    </section>`;
}

export const canSeeEvidence = (me, run) => hasRole(me, ['reviewer'], run.team);
