// Definitions (issue 13): the list, one version, two versions side by side
// (a JSON diff: jsdiff makes the patch of the two specs pretty-printed,
// diff2html parses it, evidence.js draws it as text), and the draft edited
// as JSON with the api's field errors shown at the field: a 400 problem's
// detail starts with the field's JSON path (docs/CONTRACTS.md, openapi.yaml
// Problem.detail), which is mapped to its line in the editor.
import { h } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { createTwoFilesPatch } from 'diff';
import { parse } from 'diff2html/lib-esm/diff-parser';
import { ApiError, api, errText, hasRole, query } from './api.js';
import { SideBySide } from './evidence.js';

const html = htm.bind(h);

// JSON pretty-printed as JSON.stringify(v, null, 2) does, with the line
// (1-based) of every path: "spec", "spec.limits", "spec.agent.command[0]".
export function prettyWithLines(value, root = 'spec') {
  const lines = [];
  const at = {};
  const walk = (v, path, indent, prefix, last) => {
    const pad = '  '.repeat(indent);
    const comma = last ? '' : ',';
    at[path] = lines.length + 1;
    if (Array.isArray(v) && v.length) {
      lines.push(`${pad}${prefix}[`);
      v.forEach((x, i) => walk(x, `${path}[${i}]`, indent + 1, '', i === v.length - 1));
      lines.push(`${pad}]${comma}`);
    } else if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length) {
      const keys = Object.keys(v);
      lines.push(`${pad}${prefix}{`);
      keys.forEach((k, i) => walk(v[k], `${path}.${k}`, indent + 1, `${JSON.stringify(k)}: `, i === keys.length - 1));
      lines.push(`${pad}}${comma}`);
    } else {
      lines.push(`${pad}${prefix}${JSON.stringify(v)}${comma}`);
    }
  };
  walk(value, root, 0, '', true);
  return { text: lines.join('\n'), at };
}

// The field a problem names: the JSON path its detail starts with
// ("spec.limits.timeout_s must be ..."); the nearest enclosing path the
// editor has a line for (a missing field is reported at its parent).
export function fieldOf(detail, at) {
  const m = /^(spec(?:\.[A-Za-z0-9_-]+|\[\d+\])*)/.exec(detail || '');
  if (!m) return null;
  let p = m[1];
  while (p && !(p in at)) {
    const up = p.replace(/(\.[A-Za-z0-9_-]+|\[\d+\])$/, '');
    p = up === p ? '' : up;
  }
  return p ? { path: m[1], line: at[p] } : null;
}

export function DefinitionsList({ me }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const [name, setName] = useState('');
  useEffect(() => {
    api('GET', `/v1/sandboxes${query({ name, limit: 100 })}`).then((p) => setItems(p.items)).catch(setError);
  }, [name]);
  return html`
    <main>
      <h1>Definitions</h1>
      <form class="filters" aria-label="filter definitions" onSubmit=${(e) => e.preventDefault()}>
        <label>Name contains<input name="def-name" value=${name} onChange=${(e) => setName(e.currentTarget.value)} /></label>
      </form>
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      ${items && items.length === 0 && html`<p>No definitions.</p>`}
      ${items && items.length > 0 && html`
        <table class="runs definitions">
          <thead><tr><th>Name</th><th>Team</th><th>Latest version</th><th>Created</th></tr></thead>
          <tbody>${items.map((s) => html`<tr data-definition=${s.name}>
            <td><a href=${`#/definitions/${s.id}`}>${s.name}</a></td><td>${s.team_name}</td>
            <td>${s.latest_version === null ? 'draft only' : `v${s.latest_version}`}</td><td>${s.created_at}</td></tr>`)}
          </tbody>
        </table>`}
    </main>`;
}

function JsonDiff({ a, b, nameA, nameB }) {
  const patch = createTwoFilesPatch(nameA, nameB, prettyWithLines(a).text + '\n', prettyWithLines(b).text + '\n',
    '', '', { context: 3 });
  const files = parse(patch);
  if (!files.length || !files[0].blocks.length) return html`<p class="json-diff">The two versions are the same.</p>`;
  return html`<div class="diff-file json-diff"><h3><code>${nameA} → ${nameB}</code>
    <span class="d-stat"> +${files[0].addedLines} −${files[0].deletedLines}</span></h3>
    <${SideBySide} file=${files[0]} /></div>`;
}

function DraftEditor({ sb, onSaved }) {
  const [text, setText] = useState(() => prettyWithLines(sb.draft ? sb.draft.spec : {}).text);
  const [fieldErr, setFieldErr] = useState(null);
  const [error, setError] = useState(null);
  const [note, setNote] = useState('');
  const area = useRef(null);
  const lines = text.split('\n').length;

  const showAt = (line) => {
    const ta = area.current;
    if (!ta) return;
    const ls = ta.value.split('\n');
    const start = ls.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    ta.focus();
    ta.setSelectionRange(start, start + (ls[line - 1] || '').length);
    const li = ta.parentNode.querySelector(`.gutter li:nth-child(${line})`);
    if (li) li.scrollIntoView({ block: "center" });
  };

  const save = async (ev) => {
    ev.preventDefault();
    setError(null);
    setFieldErr(null);
    setNote('');
    let spec;
    try {
      spec = JSON.parse(text);
    } catch (e) {
      setError(new Error(`not JSON: ${e.message}`));
      return;
    }
    try {
      await api('PUT', `/v1/sandboxes/${encodeURIComponent(sb.id)}/draft`, { spec });
      setNote('Draft saved.');
      onSaved();
    } catch (e) {
      // reformat what was sent, so the path's line is the line shown
      const p = prettyWithLines(spec);
      const f = e instanceof ApiError ? fieldOf(e.problem.detail, p.at) : null;
      setText(p.text);
      if (f) {
        setFieldErr({ ...f, message: errText(e) });
        setTimeout(() => showAt(f.line), 0);
      } else setError(e);
    }
  };

  const publish = async () => {
    setError(null);
    setNote('');
    try {
      const v = await api('POST', `/v1/sandboxes/${encodeURIComponent(sb.id)}/versions`);
      setNote(v.unchanged ? `The draft is v${v.version} already: nothing published.` : `Published v${v.version}.`);
      onSaved();
    } catch (e) {
      setError(e);
    }
  };

  return html`
    <section aria-label="draft">
      <h2>Draft</h2>
      <form onSubmit=${save} aria-label="edit draft" class="draft">
        <div class="editor">
          <ol class="gutter" aria-hidden="true">${Array.from({ length: lines }, (_, i) => html`<li
            class=${fieldErr && fieldErr.line === i + 1 ? 'err' : ''}>${i + 1}</li>`)}</ol>
          <textarea name="draft-json" aria-label="draft spec (JSON)" spellcheck="false" rows=${lines}
            aria-invalid=${fieldErr ? 'true' : undefined} aria-describedby=${fieldErr ? 'draft-field-error' : undefined}
            value=${text} onInput=${(e) => setText(e.currentTarget.value)} ref=${area}></textarea>
        </div>
        ${fieldErr && html`<p class="error field-error" id="draft-field-error" role="alert"
          data-path=${fieldErr.path} data-line=${fieldErr.line}>line ${fieldErr.line}, <code>${fieldErr.path}</code>: ${fieldErr.message}</p>`}
        ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
        ${note && html`<p class="ok" role="status">${note}</p>`}
        <button type="submit">Save draft</button>
        <button type="button" class="secondary" onClick=${publish}>Publish draft</button>
      </form>
    </section>`;
}

export function DefinitionPage({ me, id }) {
  const [sb, setSb] = useState(null);
  const [error, setError] = useState(null);
  const [view, setView] = useState(null); // the version shown
  const [cmp, setCmp] = useState({ a: '', b: '' });
  const [specs, setSpecs] = useState({});
  const load = useCallback(() => {
    api('GET', `/v1/sandboxes/${encodeURIComponent(id)}`).then((s) => {
      setSb(s);
      const vs = s.versions || [];
      setView((v) => v || (vs.length ? vs[vs.length - 1] : null));
      setCmp((c) => (c.a || vs.length < 2 ? c : { a: String(vs[vs.length - 2]), b: String(vs[vs.length - 1]) }));
    }).catch(setError);
  }, [id]);
  useEffect(load, [load]);
  const spec = (v) => {
    if (!v || specs[v]) return;
    api('GET', `/v1/sandboxes/${encodeURIComponent(id)}/versions/${v}`)
      .then((x) => setSpecs((o) => ({ ...o, [v]: x }))).catch(setError);
  };
  useEffect(() => spec(view), [view]);
  useEffect(() => { spec(cmp.a); spec(cmp.b); }, [cmp.a, cmp.b]);
  if (!sb) return html`<main>${error ? html`<p class="error" role="alert">${errText(error)}</p>` : html`<p>Loading…</p>`}</main>`;
  const vs = sb.versions || [];
  const author = hasRole(me, ['sandbox_author'], sb.team);
  const shown = view && specs[view];
  const pick = (name, value, onChange) => html`<select name=${name} value=${value} onChange=${onChange}>
    <option value="">–</option>${vs.map((v) => html`<option value=${String(v)}>v${v}</option>`)}</select>`;
  return html`
    <main>
      <h1>Definition <code>${sb.name}</code></h1>
      ${error && html`<p class="error" role="alert">${errText(error)}</p>`}
      <section aria-label="versions">
        <h2>Versions</h2>
        ${vs.length === 0 && html`<p>None published yet.</p>`}
        ${vs.length > 0 && html`
          <label>Show version ${pick('view-version', String(view || ''), (e) => setView(Number(e.currentTarget.value) || null))}</label>
          ${shown && html`<p>v${shown.version}, published ${shown.published_at}, spec SHA-256 <code>${shown.spec_sha256}</code></p>
            <pre class="json" id="version-spec">${prettyWithLines(shown.spec).text}</pre>`}`}
      </section>
      ${vs.length > 1 && html`
        <section aria-label="compare versions">
          <h2>Compare two versions</h2>
          <div class="filters">
            <label>From ${pick('cmp-a', cmp.a, (e) => setCmp({ ...cmp, a: e.currentTarget.value }))}</label>
            <label>To ${pick('cmp-b', cmp.b, (e) => setCmp({ ...cmp, b: e.currentTarget.value }))}</label>
          </div>
          ${specs[cmp.a] && specs[cmp.b] && html`<${JsonDiff} a=${specs[cmp.a].spec} b=${specs[cmp.b].spec}
            nameA=${`v${cmp.a}`} nameB=${`v${cmp.b}`} />`}
        </section>`}
      ${author && html`<${DraftEditor} sb=${sb} onSaved=${load} key=${sb.id} />`}
      ${!author && sb.draft && html`<section aria-label="draft"><h2>Draft</h2>
        <pre class="json">${prettyWithLines(sb.draft.spec).text}</pre></section>`}
    </main>`;
}
