// The page's only way to the server: the public API, same origin, with
// the session cookie the api set at login (HttpOnly: this code never sees
// the token). Writes echo the paddock_csrf cookie in X-CSRF-Token, which
// the api checks against the session (docs/CONTRACTS.md "Dashboard sessions").

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)paddock_csrf=([0-9a-f]{64})/);
  return m ? m[1] : '';
}

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    if (resp.status === 401 && path !== '/v1/auth/login') onUnauthorized();
    throw new ApiError(resp.status, data);
  }
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// Roles from GET /v1/me: tenant_admin holds every role in every team.
export function hasRole(me, roles, team) {
  if (!me) return false;
  if ((me.tenant_roles || []).includes('tenant_admin')) return true;
  return (me.teams || []).some((t) => (!team || t.id === team) && t.roles.some((r) => roles.includes(r)));
}

// A failed call as one line: the problem's detail and its code.
export function errText(e) {
  if (e instanceof ApiError) return `${e.message}${e.problem.code ? ` (${e.problem.code})` : ''}`;
  return String(e && e.message ? e.message : e);
}

// The auditor tenant role reads the audit log like a tenant_admin (docs/CONTRACTS.md "The auditor role").
export const canReadAudit = (me) => ['tenant_admin', 'auditor'].some((r) => (me.tenant_roles || []).includes(r));
