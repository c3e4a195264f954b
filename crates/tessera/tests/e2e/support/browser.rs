//! A minimal browser for the flows through the pages: a cookie jar, no automatic redirects,
//! and what each response looked like ([`Page`]).
//!
//! Cookies are kept per `host:port`: the tests run several servers on 127.0.0.1, where a real
//! browser would share cookies between the ports (see [`super::Options::localhost`]).

use std::collections::{BTreeMap, HashMap};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};

pub struct Browser {
    http: reqwest::Client,
    /// Per `host:port`: cookie name → value.
    jar: HashMap<String, BTreeMap<String, String>>,
    /// Every `Set-Cookie` received, in order, for attribute checks.
    set_cookies: Vec<String>,
}

/// One response as the browser received it.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The URL that was requested.
    pub url: String,
    /// The `Location` header resolved against [`Page::url`].
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The resolved `Location`; panics (showing the page) when there is none.
    pub fn location(&self) -> &str {
        self.location
            .as_deref()
            .unwrap_or_else(|| panic!("no Location ({}):\n{}", self.status, self.body))
    }

    /// A response header, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// The `X-Request-Id` header, `""` when absent.
    pub fn request_id(&self) -> &str {
        self.header("x-request-id")
    }

    /// The value of a hidden form field of the page.
    pub fn field(&self, name: &str) -> String {
        field(&self.body, name)
    }
}

impl Browser {
    pub fn new() -> Self {
        Self::trusting(None)
    }

    /// A browser that also trusts the CA certificate `ca_pem` (a TLS server).
    pub fn trusting(ca_pem: Option<&[u8]>) -> Self {
        let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
        }
        Self::with(b)
    }

    /// A browser that opens a new connection for every request (behind a load balancer,
    /// each request may reach another node).
    pub fn fresh_connections() -> Self {
        Self::with(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0),
        )
    }

    fn with(builder: reqwest::ClientBuilder) -> Self {
        Self {
            http: builder.build().unwrap(),
            jar: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    /// Send `req` (a request for `url`) with the cookies of `url`'s origin, and keep the
    /// cookies the response sets (`Max-Age=0` removes one).
    pub async fn send(&mut self, req: reqwest::RequestBuilder, url: &str) -> Page {
        let o = origin(url);
        let cookie = self
            .jar
            .get(&o)
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("cookie", cookie)
        };
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        for c in headers.get_all("set-cookie") {
            let c = c.to_str().unwrap().to_owned();
            let (kv, attrs) = c.split_once(';').unwrap_or((&c, ""));
            let (k, v) = kv.split_once('=').expect("Set-Cookie: name=value");
            let jar = self.jar.entry(o.clone()).or_default();
            if attrs.to_ascii_lowercase().contains("max-age=0") {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), v.to_owned());
            }
            self.set_cookies.push(c);
        }
        let location = headers.get(LOCATION).map(|l| {
            url::Url::parse(url)
                .unwrap()
                .join(l.to_str().unwrap())
                .unwrap()
                .to_string()
        });
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            headers,
            url: url.to_owned(),
            location,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.send(req, url).await
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(url).form(form);
        self.send(req, url).await
    }

    /// GET `url` and follow redirects until one points at `prefix` (returned, not visited).
    pub async fn follow_to(&mut self, url: &str, prefix: &str) -> String {
        let mut next = url.to_owned();
        for _ in 0..10 {
            let r = self.get(&next).await;
            let Some(loc) = r.location else {
                panic!(
                    "{next} answered {} without a redirect:\n{}",
                    r.status, r.body
                );
            };
            if loc.starts_with(prefix) {
                return loc;
            }
            next = loc;
        }
        panic!("no redirect to {prefix} after 10 hops (last {next})");
    }

    /// The cookie `name` the browser holds for `url`'s origin.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.jar
            .get(&origin(url))
            .and_then(|c| c.get(name).cloned())
    }

    /// Put the cookie `name` in the jar of `url`'s origin (a cookie replayed or forged).
    pub fn set_cookie(&mut self, url: &str, name: &str, value: &str) {
        self.jar
            .entry(origin(url))
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }

    /// Submit the login form of `page` (a `/login?tx=…` page) with these credentials.
    pub async fn submit_login(&mut self, page: &Page, username: &str, password: &str) -> Page {
        let action = action_url(&page.url, "/login");
        self.post(
            &action,
            &[
                ("tx", &page.field("tx")),
                ("csrf_token", &page.field("csrf_token")),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// Answer the consent form of `page` (a `/consent?tx=…` page): `"allow"` or `"deny"`.
    pub async fn submit_consent(&mut self, page: &Page, decision: &str) -> Page {
        let action = action_url(&page.url, "/consent");
        self.post(
            &action,
            &[
                ("tx", &page.field("tx")),
                ("csrf_token", &page.field("csrf_token")),
                ("decision", decision),
            ],
        )
        .await
    }

    /// The last `Set-Cookie` header received for `name`, attributes included.
    pub fn last_set_cookie(&self, name: &str) -> &str {
        self.set_cookies
            .iter()
            .rev()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no Set-Cookie for {name}"))
    }
}

/// `path` on the origin of `url` (where a page's form posts to).
fn action_url(url: &str, path: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(path);
    u.set_query(None);
    u.to_string()
}

/// `host:port` of `url`, the key of its cookies.
fn origin(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!(
        "{}:{}",
        u.host_str().unwrap(),
        u.port_or_known_default().unwrap()
    )
}

/// The value of the hidden form field `name` in an HTML page.
pub fn field(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in\n{body}"))
        + marker.len();
    let end = start + body[start..].find('"').unwrap();
    body[start..end].replace("&amp;", "&")
}

/// The query parameter `name` of `url`.
pub fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
