//! Client authentication at the token, introspection and revocation endpoints
//! (RFC 6749 §2.3, RFC 7521 §4.2, RFC 7523 §2.2, OIDC Core §9).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::params::{Params, decode_component};
use crate::error::{AuthScheme, OAuthError, OAuthResult};
use crate::model::{AuthMethod, Client};
use crate::secret::Secret;

/// RFC 7523 §2.2
pub const JWT_BEARER_CLIENT_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What the request carried, before any lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum PresentedClient {
    /// No credentials. `client_id` identifies a public client, if present.
    Anonymous { client_id: Option<String> },
    /// RFC 6749 §2.3.1 HTTP Basic.
    Basic { client_id: String, secret: Secret },
    /// RFC 6749 §2.3.1 body parameters.
    Post { client_id: String, secret: Secret },
    /// RFC 7523 §2.2 `client_assertion`.
    Assertion {
        client_id: Option<String>,
        assertion: String,
    },
}

impl PresentedClient {
    pub fn client_id_hint(&self) -> Option<&str> {
        match self {
            Self::Anonymous { client_id } | Self::Assertion { client_id, .. } => {
                client_id.as_deref()
            }
            Self::Basic { client_id, .. } | Self::Post { client_id, .. } => Some(client_id),
        }
    }
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::Anonymous { .. } => "none",
            Self::Basic { .. } => "client_secret_basic",
            Self::Post { .. } => "client_secret_post",
            Self::Assertion { .. } => "client assertion",
        }
    }
    pub fn challenge(&self) -> Option<AuthScheme> {
        matches!(self, Self::Basic { .. }).then_some(AuthScheme::Basic)
    }
}

fn basic_failure(msg: &'static str) -> OAuthError {
    OAuthError::invalid_client(msg).with_challenge(Some(AuthScheme::Basic))
}

/// Decode an `Authorization: Basic` value (RFC 7617), whose parts are form-urlencoded
/// (RFC 6749 §2.3.1).
fn parse_basic(value: &str) -> OAuthResult<(String, Secret)> {
    let mut parts = value.trim().splitn(2, ' ');
    let scheme = parts.next().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(basic_failure("unsupported authorization scheme; use Basic"));
    }
    let encoded = parts.next().unwrap_or_default().trim();
    let decoded = STANDARD
        .decode(encoded)
        .map_err(|_| basic_failure("malformed Basic credentials"))?;
    let text =
        String::from_utf8(decoded).map_err(|_| basic_failure("malformed Basic credentials"))?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| basic_failure("malformed Basic credentials"))?;
    let id = decode_component(id.as_bytes())
        .map_err(|_| basic_failure("malformed Basic credentials"))?;
    let secret = decode_component(secret.as_bytes())
        .map_err(|_| basic_failure("malformed Basic credentials"))?;
    if id.is_empty() {
        return Err(basic_failure("malformed Basic credentials"));
    }
    Ok((id, Secret::new(secret)))
}

/// Work out which single mechanism the request used.
pub fn extract(authorization: Option<&str>, params: &Params) -> OAuthResult<PresentedClient> {
    let basic = authorization.map(parse_basic).transpose()?;
    let body_secret = params.get("client_secret");
    let assertion = params.get("client_assertion");
    let assertion_type = params.get("client_assertion_type");
    let client_id = params.get("client_id");

    let used = [
        basic.is_some(),
        body_secret.is_some(),
        assertion.is_some() || assertion_type.is_some(),
    ];
    if used.iter().filter(|u| **u).count() > 1 {
        // RFC 7521 §4.2.1: more than one mechanism alongside an assertion is invalid_client;
        // otherwise RFC 6749 §2.3 / §5.2 make it invalid_request.
        let e = if used[2] {
            OAuthError::invalid_client("more than one client authentication mechanism was used")
        } else {
            OAuthError::invalid_request("more than one client authentication mechanism was used")
        };
        return Err(e.with_challenge(basic.as_ref().map(|_| AuthScheme::Basic)));
    }
    if let Some((id, secret)) = basic {
        if client_id.is_some_and(|c| c != id) {
            return Err(basic_failure(
                "client_id does not match the Basic credentials",
            ));
        }
        return Ok(PresentedClient::Basic {
            client_id: id,
            secret,
        });
    }
    if let Some(secret) = body_secret {
        let id = client_id
            .ok_or_else(|| OAuthError::invalid_request("client_secret without client_id"))?;
        return Ok(PresentedClient::Post {
            client_id: id.to_owned(),
            secret: Secret::new(secret),
        });
    }
    if assertion.is_some() || assertion_type.is_some() {
        let assertion = assertion
            .ok_or_else(|| OAuthError::invalid_request("missing parameter 'client_assertion'"))?;
        match assertion_type {
            None => {
                return Err(OAuthError::invalid_request(
                    "missing parameter 'client_assertion_type'",
                ));
            }
            Some(JWT_BEARER_CLIENT_ASSERTION) => {}
            Some(_) => {
                return Err(OAuthError::invalid_client(
                    "unsupported client_assertion_type",
                ));
            }
        }
        return Ok(PresentedClient::Assertion {
            client_id: client_id.map(str::to_owned),
            assertion: assertion.to_owned(),
        });
    }
    Ok(PresentedClient::Anonymous {
        client_id: client_id.map(str::to_owned),
    })
}

/// Check that the presented mechanism is the one the client registered (RFC 7591 §2).
pub fn check_method(client: &Client, presented: &PresentedClient) -> OAuthResult<()> {
    let registered = client.token_endpoint_auth_method;
    let ok = matches!(
        (registered, presented),
        (AuthMethod::ClientSecretBasic, PresentedClient::Basic { .. })
            | (AuthMethod::ClientSecretPost, PresentedClient::Post { .. })
            | (
                AuthMethod::ClientSecretJwt,
                PresentedClient::Assertion { .. }
            )
            | (AuthMethod::PrivateKeyJwt, PresentedClient::Assertion { .. })
            | (AuthMethod::None, PresentedClient::Anonymous { .. })
    );
    if ok {
        return Ok(());
    }
    let msg = match presented {
        PresentedClient::Anonymous { .. } => "client authentication is required".to_owned(),
        _ => format!(
            "client is registered for {}, not {}",
            registered.as_str(),
            presented.method_name()
        ),
    };
    Err(OAuthError::invalid_client(msg).with_challenge(presented.challenge()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn p(body: &str) -> Params {
        Params::parse(body.as_bytes()).unwrap()
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn basic_is_form_decoded() {
        let got = extract(Some(&basic("my%20client", "a%2Bb")), &p("grant_type=x")).unwrap();
        assert_eq!(
            got,
            PresentedClient::Basic {
                client_id: "my client".into(),
                secret: "a+b".into()
            }
        );
    }

    #[test]
    fn two_mechanisms_are_refused() {
        let e = extract(Some(&basic("a", "b")), &p("client_id=a&client_secret=b")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(e.challenge, Some(AuthScheme::Basic));
        let e = extract(
            None,
            &p("client_id=a&client_secret=b&client_assertion=x&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
    }

    #[test]
    fn malformed_basic_is_401_invalid_client() {
        let e = extract(Some("Basic !!!"), &p("")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        assert_eq!(e.challenge, Some(AuthScheme::Basic));
        let e = extract(Some("Bearer abc"), &p("")).unwrap_err();
        assert_eq!(e.challenge, Some(AuthScheme::Basic));
    }

    #[test]
    fn assertion_needs_its_type() {
        let e = extract(None, &p("client_assertion=x")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let e = extract(
            None,
            &p("client_assertion=x&client_assertion_type=urn:other"),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
    }

    #[test]
    fn post_needs_client_id() {
        assert!(extract(None, &p("client_secret=x")).is_err());
        assert!(matches!(
            extract(None, &p("client_id=a&client_secret=x")),
            Ok(PresentedClient::Post { .. })
        ));
        assert!(matches!(
            extract(None, &p("client_id=a")),
            Ok(PresentedClient::Anonymous { client_id: Some(_) })
        ));
    }
}
