//! Back-Channel Logout 1.0 §2.5 delivery over HTTP: POST `logout_token` to each client's
//! `backchannel_logout_uri`, in the background, with a timeout, never following redirects.

use std::time::Duration;

use tessera_core::interactive::{BackchannelSender, LogoutDelivery};

/// The HTTP [`BackchannelSender`]. Must be used inside a tokio runtime (deliveries are spawned).
#[derive(Debug, Clone)]
pub struct HttpBackchannel {
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpBackchannel {
    /// With a client built by the caller (e.g. the egress client with proxy and CA settings).
    /// Configure it not to follow redirects.
    pub fn new(client: reqwest::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// A direct client: no redirects, no proxy from the environment.
    pub fn direct(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .build()?;
        Ok(Self { client, timeout })
    }
}

impl BackchannelSender for HttpBackchannel {
    fn send(&self, d: LogoutDelivery) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                target: "tessera::security",
                event = "backchannel_logout_failed",
                client_id = %d.client_id,
                reason = "no async runtime",
                "back-channel logout not delivered; the client may still consider the user signed in"
            );
            return;
        };
        let client = self.client.clone();
        let timeout = self.timeout;
        rt.spawn(async move {
            let sent = client
                .post(&d.uri)
                .timeout(timeout)
                .header(reqwest::header::CACHE_CONTROL, "no-store")
                .form(&[("logout_token", d.logout_token.as_str())])
                .send()
                .await;
            // Logged under `tessera::security` with a stable `event`, like sign-in and logout:
            // an undelivered logout means the client may still treat the user as signed in.
            match sent {
                // §2.8: 200 (or 204) is success.
                Ok(r) if r.status().is_success() => tracing::info!(
                    target: "tessera::security",
                    event = "backchannel_logout",
                    client_id = %d.client_id,
                    status = r.status().as_u16(),
                    "back-channel logout delivered"
                ),
                Ok(r) => not_delivered(&d, &format!("answered HTTP {}", r.status())),
                Err(e) => not_delivered(&d, &failure_reason(e, timeout)),
            }
        });
    }
}

fn not_delivered(d: &LogoutDelivery, reason: &str) {
    tracing::warn!(
        target: "tessera::security",
        event = "backchannel_logout_failed",
        client_id = %d.client_id,
        uri = %d.uri,
        reason = %reason,
        "back-channel logout not delivered; the client may still consider the user signed in"
    );
}

/// What went wrong, for the operator. reqwest's own message names only the URL ("error sending
/// request for url …"), so a timeout is said as such and other errors get their cause chain.
fn failure_reason(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out: no answer within {timeout:?}");
    }
    let e = e.without_url(); // logged beside it
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::routing::post;

    use super::*;

    #[tokio::test]
    async fn posts_the_logout_token_as_a_form() {
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let record = seen.clone();
        let app = Router::new().route(
            "/bcl",
            post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let record = record.clone();
                async move {
                    let ct = headers[axum::http::header::CONTENT_TYPE]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    record
                        .lock()
                        .unwrap()
                        .push((ct, String::from_utf8(body.to_vec()).unwrap()));
                    ""
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let sender = HttpBackchannel::direct(Duration::from_secs(2)).unwrap();
        sender.send(LogoutDelivery {
            client_id: "c".into(),
            uri: format!("http://{addr}/bcl"),
            logout_token: "a.b.c".into(),
        });
        for _ in 0..100 {
            if !seen.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![(
                "application/x-www-form-urlencoded".to_owned(),
                "logout_token=a.b.c".to_owned()
            )]
        );
    }

    #[tokio::test]
    async fn an_unreachable_client_does_not_block_logout() {
        // A receiver that accepts the connection (kernel backlog) but never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let sender = HttpBackchannel::direct(Duration::from_secs(5)).unwrap();
        let started = std::time::Instant::now();
        sender.send(LogoutDelivery {
            client_id: "c".into(),
            uri: format!("http://{addr}/bcl"),
            logout_token: "t".into(),
        });
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "send returns before the delivery's 5 s timeout"
        );
        drop(silent);
    }
}
