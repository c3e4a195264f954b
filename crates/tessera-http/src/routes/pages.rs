//! What every interactive page shares: askama templates, security headers (a strict CSP,
//! `frame-ancestors 'none'`, `X-Frame-Options`, `no-store`), cookies and the error page.
//!
//! Pages work without JavaScript, and none is served: the CSP allows no script at all.

use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::Engine;
use tessera_core::oauth::params::Params;

/// Session cookie: a random value whose keyed hash names the server-side session.
pub(super) const SESSION_COOKIE: &str = "tessera_session";
/// Browser-binding cookie: ties sign-in transactions and CSRF tokens to one browser.
pub(super) const BIND_COOKIE: &str = "tessera_bind";

/// The stylesheet, served from `/assets/tessera.css` (`style-src 'self'`: no inline styles).
pub(super) const STYLESHEET: &str = include_str!("../../assets/tessera.css");

/// Shared page chrome.
pub(super) struct Chrome {
    /// The issuer's host, shown as the brand.
    pub brand: String,
    /// Path prefix of the issuer ("" or "/idp"), for links and form actions.
    pub base: String,
}

impl Chrome {
    pub(super) fn of(engine: &Engine) -> Self {
        let url = url::Url::parse(&engine.settings.issuer).ok();
        let brand = url
            .as_ref()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_owned(),
                })
            })
            .unwrap_or_else(|| engine.settings.issuer.clone());
        let base = url
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Self { brand, base }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub(super) struct LoginPage<'a> {
    pub chrome: &'a Chrome,
    pub title: &'a str,
    pub client_name: &'a str,
    pub tx: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// "Sign in with …" buttons, one per configured upstream provider.
    pub upstreams: Vec<tessera_core::federation::UpstreamButton>,
    /// The password form (not when an upstream is REQUIRED or REQUISITE).
    pub password_form: bool,
}

pub(super) struct ScopeLine {
    pub title: &'static str,
    pub detail: &'static str,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub(super) struct ConsentPage<'a> {
    pub chrome: &'a Chrome,
    pub title: &'a str,
    pub client_name: &'a str,
    pub client_host: &'a str,
    pub user: &'a str,
    pub scopes: Vec<ScopeLine>,
    pub tx: &'a str,
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
pub(super) struct ErrorPage<'a> {
    pub chrome: &'a Chrome,
    pub title: &'a str,
    pub message: &'a str,
    pub reference: &'a str,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub(super) struct LogoutPage<'a> {
    pub chrome: &'a Chrome,
    pub title: &'a str,
    pub client_name: Option<&'a str>,
    pub csrf: &'a str,
    pub client_id: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
pub(super) struct SignedOutPage<'a> {
    pub chrome: &'a Chrome,
    pub title: &'a str,
}

/// What a scope means, in the user's words (OIDC Core §5.4).
pub(super) fn describe_scope(scope: &str) -> Option<ScopeLine> {
    Some(match scope {
        "openid" => ScopeLine {
            title: "Know who you are",
            detail: "Your account identifier on this service.",
        },
        "profile" => ScopeLine {
            title: "Your profile",
            detail: "Your name and username.",
        },
        "email" => ScopeLine {
            title: "Your email address",
            detail: "Your email address and whether it is verified.",
        },
        "groups" => ScopeLine {
            title: "Your groups",
            detail: "The groups you belong to.",
        },
        "offline_access" => ScopeLine {
            title: "Stay signed in",
            detail: "Keep access when you are not using the application, until you revoke it.",
        },
        _ => return None,
    })
}

/// The CSP source for where a form on this page may end up: after the POST the server
/// redirects to the client, and browsers apply `form-action` to that redirect too.
pub(super) fn form_target(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    match u.scheme() {
        // Browsers apply `form-action` to every redirect that follows the submission, including
        // the client's own onward redirects (a federating relying party sending the user on to
        // a third origin), which this server cannot know. An https client therefore gets the
        // `https:` scheme source: still no plain-http, `data:` or `javascript:` targets.
        "https" => Some("https:".to_owned()),
        "http" => Some(u.origin().ascii_serialization()),
        // Native apps' private-use schemes (RFC 8252 §7.1).
        s if s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-')) =>
        {
            Some(format!("{s}:"))
        }
        _ => None,
    }
}

fn csp(form_targets: &[String]) -> String {
    let mut form_action = String::from("'self'");
    for t in form_targets {
        form_action.push(' ');
        form_action.push_str(t);
    }
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
}

fn security_headers(h: &mut HeaderMap, form_targets: &[String]) {
    if let Ok(v) = HeaderValue::from_str(&csp(form_targets)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// An HTML page with the security headers. `form_targets` extend `form-action`.
pub(super) fn html(status: StatusCode, page: &impl Template, form_targets: &[String]) -> Response {
    match page.render() {
        Ok(body) => {
            let mut r = (status, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            security_headers(r.headers_mut(), form_targets);
            r
        }
        Err(e) => {
            tracing::error!(target: "tessera::error", cause = %e, "page rendering failed");
            let mut r = (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response();
            security_headers(r.headers_mut(), &[]);
            r
        }
    }
}

/// `303 See Other` (after a form POST the browser follows with GET), never cached.
pub(super) fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The error page: a plain explanation and a short reference the administrator can find in
/// the logs (the request id, `X-Request-Id`).
pub(super) fn error_page(
    engine: &Engine,
    status: StatusCode,
    title: &str,
    message: &str,
    request_id: &str,
) -> Response {
    let chrome = Chrome::of(engine);
    let reference: String = request_id.chars().take(12).collect();
    html(
        status,
        &ErrorPage {
            chrome: &chrome,
            title,
            message,
            reference: &reference,
        },
        &[],
    )
}

/// Cookies are `Secure` except on a plain-http loopback issuer (development).
pub(super) fn secure_cookies(engine: &Engine) -> bool {
    match url::Url::parse(&engine.settings.issuer) {
        Ok(u) if u.scheme() == "http" => {
            !matches!(
                u.host(),
                Some(url::Host::Ipv4(ip)) if ip.is_loopback()
            ) && !matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                && u.host_str() != Some("localhost")
        }
        _ => true,
    }
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Lax; Path=/` (+ `Secure`). `max_age = Some(0)`
/// deletes the cookie; `None` makes it last for the browser session.
pub(super) fn set_cookie(
    engine: &Engine,
    name: &str,
    value: &str,
    max_age: Option<i64>,
) -> Option<HeaderValue> {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    if secure_cookies(engine) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).ok()
}

pub(super) fn add_cookie(r: &mut Response, cookie: Option<HeaderValue>) {
    if let Some(c) = cookie {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
}

/// A cookie of the request (the first with that name).
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// Parameters of a page request: the query for GET, the form body for POST.
pub(super) fn parse_params(raw: &[u8]) -> Result<Params, String> {
    Params::parse(raw).map_err(|e| e.to_string())
}

/// The browser-binding cookie, created when absent (the `Set-Cookie` to send, if new).
pub(super) fn ensure_bind(engine: &Engine, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, BIND_COOKIE) {
        Some(b) if b.len() >= 32 && b.len() <= 64 => (b, None),
        _ => {
            let b = tessera_core::secrets::random_token().unwrap_or_default();
            let set = set_cookie(engine, BIND_COOKIE, &b, None);
            (b, set)
        }
    }
}

/// Longest query [`repeat_as_get`] puts in a URL.
const MAX_REPEAT_QUERY: usize = 8192;

/// Browsers do not send `SameSite=Lax` cookies with a cross-site POST. An authorization or
/// end-session request that an application POSTs (OIDC Core §3.1.2.1 and RP-Initiated Logout
/// 1.0 §2 require POST support) would therefore look as if nobody were signed in: `prompt=none`
/// would answer `login_required` to a signed-in user, and a logout would end no session and
/// notify no client over the back channel. Such a request — the browser says it is cross-site
/// (`Sec-Fetch-Site`) and it carries none of this server's cookies — is repeated as a top-level
/// GET with the same parameters (`303`), which does carry them. Anything else: `None`.
pub(super) fn repeat_as_get(
    engine: &Engine,
    headers: &HeaderMap,
    path: &str,
    params: &Params,
) -> Option<Response> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("cross-site"));
    if !cross_site
        || cookie(headers, SESSION_COOKIE).is_some()
        || cookie(headers, BIND_COOKIE).is_some()
    {
        return None;
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    if query.len() > MAX_REPEAT_QUERY {
        return None;
    }
    Some(see_other(&format!(
        "{}{path}?{query}",
        Chrome::of(engine).base
    )))
}

/// The stylesheet route.
pub(super) async fn stylesheet() -> Response {
    let mut r = STYLESHEET.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_is_strict_and_extends_form_action() {
        let c = csp(&["https://rp.example".into()]);
        assert!(c.starts_with("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' https://rp.example;"));
        assert!(c.contains("frame-ancestors 'none'") && c.contains("base-uri 'none'"));
        assert!(!c.contains("script-src"));
    }

    #[test]
    fn form_targets() {
        assert_eq!(
            form_target("https://rp.example:8443/cb?x=1").as_deref(),
            Some("https:")
        );
        assert_eq!(
            form_target("http://127.0.0.1:8443/cb?x=1").as_deref(),
            Some("http://127.0.0.1:8443")
        );
        assert_eq!(
            form_target("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
        assert_eq!(form_target("not a url"), None);
    }

    #[test]
    fn cookies_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tessera_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn every_scope_has_words() {
        for s in ["openid", "profile", "email", "groups", "offline_access"] {
            assert!(describe_scope(s).is_some());
        }
    }
}
