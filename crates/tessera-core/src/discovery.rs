//! Server metadata: OpenID Connect Discovery 1.0 and RFC 8414. It lists exactly what this
//! server implements — every value below is backed by code and a test.

use serde_json::{Value, json};

use crate::engine::Engine;
use crate::oauth::grant_type;
use crate::registration::{CLIENT_ASSERTION_ALGS, CLIENT_SECRET_JWT_ALGS};
use crate::settings::paths;

impl Engine {
    pub fn discovery_document(&self) -> Value {
        let s = &self.settings;
        let e = |p: &str| s.endpoint(p);
        let auth_signing_algs: Vec<String> = CLIENT_ASSERTION_ALGS
            .iter()
            .chain(CLIENT_SECRET_JWT_ALGS.iter())
            .map(|a| a.to_string())
            .collect();
        let mut doc = json!({
            "issuer": s.issuer,
            "authorization_endpoint": e(paths::AUTHORIZE),
            "token_endpoint": e(paths::TOKEN),
            "userinfo_endpoint": e(paths::USERINFO),
            "jwks_uri": e(paths::JWKS),
            "introspection_endpoint": e(paths::INTROSPECT),
            "revocation_endpoint": e(paths::REVOKE),
            "end_session_endpoint": e(paths::END_SESSION),
            "scopes_supported": s.scopes_supported,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": grant_type::ALL,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": self.id_token_algs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": auth_signing_algs,
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"],
            "introspection_endpoint_auth_signing_alg_values_supported": auth_signing_algs,
            // RFC 7009 §2.1: public clients ("none") revoke their own tokens with client_id.
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"],
            "revocation_endpoint_auth_signing_alg_values_supported": auth_signing_algs,
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "amr", "sid",
                                 "name", "given_name", "family_name", "preferred_username", "email", "email_verified", "groups"],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "prompt_values_supported": ["none", "login", "consent"],
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "frontchannel_logout_supported": false,
        });
        if let Some(m) = doc.as_object_mut() {
            if s.registration_initial_access_token.is_some() {
                m.insert("registration_endpoint".into(), json!(e(paths::REGISTER)));
            }
            // OIDC Discovery 1.0 §3, RFC 8414 §2: "Claims with zero elements MUST be omitted from
            // the response" — e.g. `scopes_supported` if configured empty. (For the same reason
            // there is no `userinfo_signing_alg_values_supported`: userinfo answers plain JSON.)
            m.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
        }
        doc
    }
}
