// Single sign-on on the login screen (docs/CONTRACTS.md "OIDC login"): a
// link to the api's authorize route for the tenant typed in the form. The
// api runs the whole authorization-code flow with PKCE and comes back with
// the session cookie (or to this page with ?oidc_error=CODE): no provider
// token, code or state ever reaches this code, and nothing is stored (the
// tenant lives in the form's state, in memory only). Whether a tenant has
// OIDC is not asked beforehand: that answer would tell anyone which tenants
// exist; a tenant without it comes back with not_enabled.
import { h } from 'preact';
import { useState } from 'preact/hooks';
import htm from 'htm';

const html = htm.bind(h);

const MESSAGES = {
  tenant: 'Type the tenant first.',
  not_enabled: 'Single sign-on is not enabled for this tenant.',
  provider_unavailable: 'The identity provider cannot be reached; try again later.',
  provider_denied: 'The identity provider ended the sign-in.',
  state: 'The sign-in expired, was used already or was started in another browser; try again.',
  code: 'The identity provider did not accept the sign-in; try again.',
  invalid_token: 'The identity provider\'s answer could not be verified.',
  no_role: 'Your account has no role in this tenant.',
  conflict: 'This user name belongs to another account of the tenant.',
  forbidden: 'This user is disabled.',
  rate_limited: 'Too many failed sign-ins from here; wait a few minutes.',
};

// The error code the api's redirect left in the URL, read once; the URL
// keeps only the tenant afterwards (a reload shows no stale error).
function takeOidcError() {
  const q = new URLSearchParams(location.search);
  const code = q.get('oidc_error');
  if (!code) return null;
  q.delete('oidc_error');
  const rest = q.toString();
  history.replaceState(null, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
  return code;
}

export function OidcSignIn({ tenant }) {
  const [code] = useState(takeOidcError);
  const t = (tenant || '').trim();
  const href = `/v1/auth/oidc/authorize?tenant=${encodeURIComponent(t)}`;
  return html`
    <section class="oidc" aria-label="single sign-on">
      ${code && html`<p class="error" role="alert">${MESSAGES[code] || `Single sign-on failed (${code}).`}</p>`}
      <p>or</p>
      ${t
        ? html`<a href=${href}>Sign in with your identity provider (${t})</a>`
        : html`<p>Type the tenant to sign in with its identity provider.</p>`}
    </section>`;
}
