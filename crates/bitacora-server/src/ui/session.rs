//! Signing in and out of the viewer, and who is looking.
//!
//! - `GET /ui/login` shows a form for an API key; `POST /ui/login` checks the key.
//! - A viewer URL, `/ui/login?token=<token>`, checks the token, sets the cookie and redirects
//!   to `/ui/`, so the token leaves the address bar.
//! - The cookie `bitacora_session` (HttpOnly, SameSite=Strict, Path=/, Secure when the page
//!   was served over HTTPS) holds the credential itself. Every request re-resolves it with
//!   [`auth::resolve`]: the viewer accepts exactly what the API accepts, a revoked key stops
//!   working within a second, and no server-side session table is needed.
//! - `POST /ui/logout` clears it.
//!
//! Cross-site request forgery: the cookie is SameSite=Strict (a browser never sends it with a
//! request another site starts), and every POST must come from this origin
//! ([`check_same_origin`]: `Sec-Fetch-Site`, else `Origin`).

use std::net::{IpAddr, SocketAddr};

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bitacora_core::TenantName;
use bitacora_store::Scope;
use serde::Deserialize;

use super::view::{Layout, Url};
use super::{UiError, render};
use crate::api::{param, query_pairs};
use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "bitacora_session";
/// How long the browser keeps the session cookie (the credential may expire sooner).
const COOKIE_MAX_AGE_SECS: u32 = 12 * 3600;

/// A signed-in viewer on one request: the credential's principal and the tenant shown.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub principal: Principal,
    /// The tenant this page shows: `tenant=` if the credential may see it, else its pinned
    /// tenant, else the configured default (or, when that has no log yet, the first tenant
    /// that has one).
    pub tenant: TenantName,
    /// What the tenant switcher offers: every tenant with a log, or the pinned one alone.
    pub tenants: Vec<TenantName>,
    /// Whether the page named its tenant (`tenant=`); links then keep naming it.
    pub explicit_tenant: bool,
    pub client_ip: Option<IpAddr>,
    /// The credential, to re-check it during a long stream (the live tail).
    pub(crate) secret: String,
}

impl Viewer {
    /// A fixed viewer path with `tenant=` when links must carry it (an unpinned viewer
    /// looking at a tenant other than its default).
    pub fn url(&self, path: &'static str) -> Url {
        let url = Url::new(path);
        if self.needs_tenant_param() {
            url.param("tenant", self.tenant.as_str())
        } else {
            url
        }
    }

    /// [`Viewer::url`] with encoded path segments.
    pub fn url_with(&self, prefix: &'static str, segments: &[&str]) -> Url {
        let url = Url::with_segments(prefix, segments);
        if self.needs_tenant_param() {
            url.param("tenant", self.tenant.as_str())
        } else {
            url
        }
    }

    pub fn needs_tenant_param(&self) -> bool {
        self.principal.pinned().is_none() && (self.explicit_tenant || self.tenants.len() > 1)
    }

    /// The credential still valid? (Re-resolved; used by long-lived streams.)
    pub async fn still_valid(&self, state: &AppState) -> bool {
        auth::resolve(state, &self.secret, self.client_ip, Scope::Read)
            .await
            .is_ok()
    }
}

/// The client's address, as the API sees it (forwarded only through trusted proxies).
pub fn client_ip(state: &AppState, parts: &Parts) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    state.auth.client_ip(peer, &parts.headers)
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// Only characters a credential can hold (API keys are base64url, tokens and JWTs add `.`),
/// so nothing a visitor types can break out of the `Set-Cookie` header.
fn cookie_safe(secret: &str) -> bool {
    !secret.is_empty()
        && secret.len() <= 4096
        && secret.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
        })
}

/// Whether the browser reached us over HTTPS: directly (an `https` origin on the request), or
/// through a trusted proxy that says so.
fn over_https(state: &AppState, parts_headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
    let origin_https = parts_headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.starts_with("https://"));
    let proxy_https = peer.is_some_and(|p| state.auth.is_trusted_proxy(p))
        && parts_headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    origin_https || proxy_https
}

fn set_cookie(response: &mut Response, secret: &str, secure: bool) {
    let value = format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_SECS}{}",
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Removes the session cookie.
pub fn clear_cookie(response: &mut Response) {
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("bitacora_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
}

/// Refuses a state-changing request another site started. Browsers send `Sec-Fetch-Site`
/// (authoritative when present); otherwise `Origin` must be this server. A request with
/// neither does not come from a browser, so it carries no ambient cookie to abuse.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), UiError> {
    let refuse = || UiError::Page {
        status: StatusCode::FORBIDDEN,
        title: "Not allowed".into(),
        message: "This form was sent from another site; it was refused.".into(),
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.to_str() {
            Ok("same-origin") => Ok(()),
            _ => Err(refuse()),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| refuse())?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(refuse)?;
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(refuse)?;
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// Where to go after signing in: only a viewer path on this server.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if super::view::is_safe_href(n) && !n.starts_with("/ui/login") => n.to_owned(),
        _ => "/ui/".to_owned(),
    }
}

/// The path and query of the request, to come back to after signing in.
fn here(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/ui/".into())
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        let next = if parts.method == axum::http::Method::GET {
            here(parts)
        } else {
            "/ui/".into()
        };
        let Some(secret) = session_cookie(&parts.headers).map(str::to_owned) else {
            return Err(UiError::Login {
                next,
                expired: false,
            });
        };
        let ip = client_ip(state, parts);
        let principal = match auth::resolve(state, &secret, ip, Scope::Read).await {
            Ok(p) => p,
            Err(ApiError::Unauthorized(_)) => {
                return Err(UiError::Login {
                    next,
                    expired: true,
                });
            }
            Err(ApiError::Forbidden(_)) => {
                return Err(UiError::Page {
                    status: StatusCode::FORBIDDEN,
                    title: "Not allowed".into(),
                    message: "This credential cannot read the log (the viewer needs the `read` or `admin` scope). Sign out and use another key.".into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let pairs = query_pairs(parts.uri.query());
        let requested = param(&pairs, "tenant").filter(|t| !t.trim().is_empty());
        let mut tenants = state.store.tenants().await?;
        tenants.sort();
        let tenant = match (requested, principal.pinned()) {
            (Some(t), _) => principal.resolve_tenant(Some(t))?,
            (None, Some(pinned)) => pinned.clone(),
            (None, None) => {
                let default = principal.default_tenant.clone();
                if tenants.is_empty() || tenants.contains(&default) {
                    default
                } else {
                    tenants[0].clone()
                }
            }
        };
        if let Some(pinned) = principal.pinned() {
            tenants = vec![pinned.clone()];
        }
        Ok(Viewer {
            explicit_tenant: requested.is_some(),
            tenant,
            tenants,
            client_ip: ip,
            secret,
            principal,
        })
    }
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginTemplate {
    layout: Layout,
    next: String,
    error: Option<String>,
    notice: Option<&'static str>,
}

fn login_form(
    status: StatusCode,
    next: String,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let page = LoginTemplate {
        layout: Layout::bare("Sign in"),
        next,
        error,
        notice,
    };
    let mut r = render(&page);
    *r.status_mut() = status;
    r
}

/// What a failed sign-in shows: rate limiting says when to retry; anything else says only
/// that the credential was not accepted (never which part was wrong).
fn login_error(e: &ApiError) -> (StatusCode, String) {
    match e {
        ApiError::TooManyRequests { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed attempts from your address. Try again in {retry_after_secs} s."
            ),
        ),
        ApiError::Forbidden(_) => (
            StatusCode::FORBIDDEN,
            "This key cannot read the log: the viewer needs the `read` or `admin` scope.".into(),
        ),
        ApiError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The server cannot check credentials right now. Try again shortly.".into(),
        ),
        _ => (
            StatusCode::UNAUTHORIZED,
            "That key or token was not accepted: it is unknown, revoked or expired.".into(),
        ),
    }
}

/// Signs in with `secret`: the cookie and a redirect to `next`, or the form with an error.
async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    client_ip: Option<IpAddr>,
    secret: &str,
    next: String,
) -> Response {
    let secret = secret.trim();
    let result = if cookie_safe(secret) {
        auth::resolve(state, secret, client_ip, Scope::Read).await
    } else {
        Err(ApiError::Unauthorized("malformed credential".into()))
    };
    match result {
        Ok(principal) => {
            tracing::info!(key.id = %principal.key_id, "viewer signed in");
            let mut r = Redirect::to(&next).into_response();
            set_cookie(&mut r, secret, over_https(state, headers, peer));
            r
        }
        Err(e) => {
            if let ApiError::Internal(cause) = &e {
                tracing::error!(error = %cause, "viewer sign-in failed");
            }
            // Audit the refusal (CONTRACT §6). Not when the address is already rate limited:
            // the limiter exists so that a flood of guesses costs nothing, audit rows included.
            let reason = match &e {
                ApiError::Unauthorized(_) => Some("unknown_credential"),
                ApiError::Forbidden(_) => Some("insufficient_scope"),
                _ => None,
            };
            if let Some(reason) = reason {
                crate::audit::failed_viewer_login(state, None, client_ip, reason).await;
            }
            tracing::info!(client.ip = ?client_ip, "viewer sign-in refused");
            let (status, message) = login_error(&e);
            login_form(status, next, Some(message), None)
        }
    }
}

/// `GET /ui/login`: the form, or (with `?token=`) a viewer URL signing in.
pub async fn login_page(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    request_parts: Parts,
) -> Response {
    let pairs = query_pairs(raw.as_deref());
    let next = safe_next(param(&pairs, "next"));
    if let Some(token) = param(&pairs, "token").filter(|t| !t.trim().is_empty()) {
        let peer = request_parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let ip = client_ip(&state, &request_parts);
        return sign_in(&state, &request_parts.headers, peer, ip, token, next).await;
    }
    let notice = param(&pairs, "expired")
        .map(|_| "Your session ended (the credential is no longer accepted). Sign in again.")
        .or_else(|| param(&pairs, "signed_out").map(|_| "You are signed out."));
    login_form(StatusCode::OK, next, None, notice)
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /ui/login`: signs in with the API key typed in the form.
pub async fn login(
    State(state): State<AppState>,
    request_parts: Parts,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Err(e) = check_same_origin(&request_parts.headers) {
        return e.into_response();
    }
    let Ok(Form(form)) = form else {
        return login_form(
            StatusCode::BAD_REQUEST,
            "/ui/".into(),
            Some("Enter an API key.".into()),
            None,
        );
    };
    let next = safe_next(form.next.as_deref());
    if form.key.trim().is_empty() {
        return login_form(
            StatusCode::BAD_REQUEST,
            next,
            Some("Enter an API key.".into()),
            None,
        );
    }
    let peer = request_parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = client_ip(&state, &request_parts);
    sign_in(&state, &request_parts.headers, peer, ip, &form.key, next).await
}

/// `POST /ui/logout`: forgets the credential.
pub async fn logout(headers: HeaderMap) -> Response {
    if let Err(e) = check_same_origin(&headers) {
        return e.into_response();
    }
    let mut r = Redirect::to("/ui/login?signed_out=1").into_response();
    clear_cookie(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_checks() {
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        let ok = headers(&[
            ("origin", "http://127.0.0.1:8480"),
            ("host", "127.0.0.1:8480"),
        ]);
        assert!(check_same_origin(&ok).is_ok());
        let bad = headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8480"),
        ]);
        assert!(check_same_origin(&bad).is_err());
        let null = headers(&[("origin", "null"), ("host", "127.0.0.1:8480")]);
        assert!(check_same_origin(&null).is_err());
        // Not a browser: nothing ambient to abuse.
        assert!(check_same_origin(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn next_stays_on_the_viewer() {
        assert_eq!(
            safe_next(Some("/ui/dashboard?tenant=a")),
            "/ui/dashboard?tenant=a"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/ui",
            "javascript:alert(1)",
            "/ui/login?token=x",
            "/v1/events",
            "/ui\\evil",
            // Control characters, spaces and non-ASCII cannot be a Location header as is.
            "/ui/\u{1}",
            "/ui/\0",
            "/ui/\u{b}",
            "/ui/\u{7f}",
            "/ui/\n",
            "/ui/ a",
            "/ui/é",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn cookies_are_parsed_and_checked() {
        let h = headers(&[("cookie", "a=1; bitacora_session=bk_abc-_x; b=2")]);
        assert_eq!(session_cookie(&h), Some("bk_abc-_x"));
        assert_eq!(session_cookie(&headers(&[("cookie", "a=1")])), None);
        assert!(cookie_safe("bk_AbC-_09"));
        assert!(cookie_safe("eyJ.eyJ.sig"));
        assert!(!cookie_safe("bk_x; Domain=evil"));
        assert!(!cookie_safe("bk_x\r\nSet-Cookie: y"));
        assert!(!cookie_safe(""));
    }
}
