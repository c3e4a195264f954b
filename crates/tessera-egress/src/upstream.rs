//! The requests an OpenID relying party makes besides GETting JSON: the token request (a form
//! POST whose error answers carry an OAuth error body, so every status is returned) and the
//! userinfo request (GET with a bearer token). Same client, timeouts, size cap, proxy and CA
//! settings as every other outbound request, and the same failure classification.

use crate::{EgressError, HttpClient};

/// An answer of any status.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpClient {
    async fn read_capped(
        &self,
        host: &str,
        mut resp: reqwest::Response,
    ) -> Result<Vec<u8>, EgressError> {
        let limit = self.config.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(EgressError::TooLarge {
                host: host.to_owned(),
                limit,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(host, e))? {
            if body.len() + chunk.len() > limit {
                return Err(EgressError::TooLarge {
                    host: host.to_owned(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn parse_url(url: &str) -> Result<(url::Url, String), EgressError> {
        let parsed =
            url::Url::parse(url).map_err(|e| EgressError::InvalidUrl(format!("{url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(EgressError::InvalidUrl(format!(
                "{url}: only http and https are supported"
            )));
        }
        let host = parsed.host_str().unwrap_or_default().to_owned();
        Ok((parsed, host))
    }

    /// POST `form` (`application/x-www-form-urlencoded`); `basic` = already form-urlencoded
    /// (id, secret) for HTTP Basic (RFC 6749 §2.3.1). Every status is returned with its body.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(String, String)],
        basic: Option<(&str, &str)>,
    ) -> Result<Reply, EgressError> {
        let (parsed, host) = Self::parse_url(url)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish();
        let parsed_for_errors = parsed.clone();
        let mut req = self
            .inner
            .post(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.explain(&parsed_for_errors, e).await),
        };
        let status = resp.status().as_u16();
        let body = self.read_capped(&host, resp).await?;
        Ok(Reply { status, body })
    }

    /// GET with optional `Authorization: Bearer`; non-2xx is an error.
    pub async fn get_bearer(
        &self,
        url: &str,
        accept: &str,
        bearer: Option<&str>,
    ) -> Result<Vec<u8>, EgressError> {
        let (parsed, host) = Self::parse_url(url)?;
        let parsed_for_errors = parsed.clone();
        let mut req = self
            .inner
            .get(parsed)
            .header(reqwest::header::ACCEPT, accept);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.explain(&parsed_for_errors, e).await),
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(EgressError::HttpStatus {
                host,
                status: status.as_u16(),
            });
        }
        self.read_capped(&host, resp).await
    }
}
