//! Unit tests of interactive sign-in, over the in-memory store with a fixed clock.

mod authorize;
mod logout;
mod signin;
mod token;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value};
use tessera_jose::{Algorithm, Limits, decode_compact};

use super::logout::{BackchannelSender, LogoutDelivery};
use super::{AuthorizeError, SignedIn, Step, Transaction};
use crate::authn::{Chain, ChainEntry, ControlFlag, LocalProvider, PasswordCredentials};
use crate::clock::{ManualClock, UnixTime};
use crate::engine::{Engine, EngineParts};
use crate::keys::KeyManager;
use crate::model::{AuthMethod, Client, User};
use crate::oauth::params::Params;
use crate::oauth::{RequestContext, TokenResponse};
use crate::secrets::{MasterKey, PasswordHasher, PasswordParams};
use crate::settings::Settings;
use crate::store::{ClientStore, UserStore};
use crate::testing::MemoryStore;

pub(crate) const NOW: UnixTime = 1_800_000_000;
pub(crate) const BIND: &str = "browser-binding-cookie";
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub(crate) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[derive(Debug, Default)]
pub(crate) struct Recorder(pub Mutex<Vec<LogoutDelivery>>);

impl BackchannelSender for Recorder {
    fn send(&self, d: LogoutDelivery) {
        self.0.lock().unwrap().push(d);
    }
}

pub(crate) struct Fx {
    pub engine: Engine,
    pub store: MemoryStore,
    pub clock: ManualClock,
    pub sent: Arc<Recorder>,
}

pub(crate) fn client(id: &str) -> Client {
    Client {
        client_id: id.into(),
        client_name: Some(format!("App {id}")),
        redirect_uris: vec!["https://rp.example/cb".into()],
        post_logout_redirect_uris: vec!["https://rp.example/bye".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        response_types: vec!["code".into()],
        token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
        backchannel_logout_uri: Some(format!("https://rp.example/{id}/bcl")),
        ..Default::default()
    }
}

pub(crate) async fn fx() -> Fx {
    let store = MemoryStore::new();
    let master = MasterKey::parse(&"42".repeat(32)).unwrap();
    let keys = KeyManager::new(master.clone(), 90 * 86400, 3600, 7200);
    keys.ensure(&store, &[Algorithm::RS256, Algorithm::ES256], NOW)
        .await
        .unwrap();
    let passwords = PasswordHasher::new(PasswordParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    })
    .unwrap();
    store
        .create_user(&User {
            username: "alice".into(),
            subject: "sub-alice".into(),
            password_hash: Some(passwords.hash(&"alice-pw".into()).unwrap()),
            name: Some("Alice Liddell".into()),
            given_name: Some("Alice".into()),
            family_name: Some("Liddell".into()),
            email: Some("alice@example.com".into()),
            email_verified: true,
            groups: vec!["staff".into(), "admins".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .create_user(&User {
            username: "bob".into(),
            subject: "sub-bob".into(),
            password_hash: Some(passwords.hash(&"bob-pw".into()).unwrap()),
            disabled: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let web = client("web");
    let mut fp = client("fp");
    fp.first_party = true;
    let mut spa = client("spa");
    spa.token_endpoint_auth_method = AuthMethod::None;
    spa.require_pkce = true;
    let mut two = client("two");
    two.redirect_uris.push("https://rp.example/cb2".into());
    two.first_party = true;
    let mut es = client("es");
    es.first_party = true;
    es.id_token_signed_response_alg = Some("ES256".into());
    let mut cc = client("cc");
    cc.grant_types = vec!["client_credentials".into()];
    cc.response_types = vec![];
    let mut off = client("off");
    off.disabled = true;
    let mut norefresh = client("norefresh");
    norefresh.first_party = true;
    norefresh.grant_types = vec!["authorization_code".into()];
    let mut pk = client("pk");
    pk.require_pkce = true;
    pk.first_party = true;
    let mut narrow = client("narrow");
    narrow.scope = Some("openid profile".into());
    for c in [web, fp, spa, two, es, cc, off, norefresh, pk, narrow] {
        store.put_client(&c).await.unwrap();
    }
    let clock = ManualClock::new(NOW);
    let sent = Arc::new(Recorder::default());
    let chain = Chain::new(vec![ChainEntry {
        flag: ControlFlag::Sufficient,
        provider: Arc::new(LocalProvider::new(
            "local",
            Arc::new(store.clone()),
            passwords.clone(),
        )),
    }]);
    let mut engine = Engine::new(EngineParts {
        settings: Arc::new(Settings::new("https://id.example")),
        store: Arc::new(store.clone()),
        keys: Arc::new(keys),
        master,
        clock: Arc::new(clock.clone()),
        passwords,
        chain,
    });
    engine.backchannel = sent.clone();
    Fx {
        engine,
        store,
        clock,
        sent,
    }
}

pub(crate) fn q(s: &str) -> Params {
    Params::parse(s.as_bytes()).unwrap()
}

/// A complete, valid request for `client` plus `extra` parameters.
pub(crate) fn req(client: &str, extra: &str) -> Params {
    let base = format!(
        "client_id={client}&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid+profile+email+groups&state=st4te&nonce=n0nce&code_challenge={CHALLENGE}&code_challenge_method=S256"
    );
    q(&if extra.is_empty() {
        base
    } else {
        format!("{base}&{extra}")
    })
}

impl Fx {
    pub fn now(&self) -> UnixTime {
        self.engine.now()
    }
    pub async fn authorize(
        &self,
        p: &Params,
        cookie: Option<&str>,
    ) -> Result<Step, AuthorizeError> {
        self.engine.authorize(p, cookie, BIND, self.now()).await
    }
    pub async fn sign_in(&self, user: &str, pw: &str) -> SignedIn {
        let creds = PasswordCredentials {
            username: user.into(),
            password: pw.into(),
        };
        self.engine
            .sign_in(&creds, None, &RequestContext::default(), self.now())
            .await
            .unwrap()
    }
    /// Sign alice in and return the session cookie.
    pub async fn alice(&self) -> String {
        self.sign_in("alice", "alice-pw").await.cookie
    }
    /// Run `p` with a session: expect a redirect, return the code from it.
    pub async fn code(&self, p: &Params, cookie: &str) -> String {
        match self.authorize(p, Some(cookie)).await {
            Ok(Step::Redirect(url)) => param(&url, "code").unwrap(),
            other => panic!("expected a redirect, got {other:?}"),
        }
    }
    pub async fn token(&self, client_id: &str, body: &str) -> crate::OAuthResult<TokenResponse> {
        let c = self
            .engine
            .store
            .get_client(client_id)
            .await
            .unwrap()
            .unwrap();
        let p = q(body);
        match p.get("grant_type") {
            Some("refresh_token") => {
                super::grant_refresh_token(&self.engine, &c, &p, self.now()).await
            }
            _ => super::grant_authorization_code(&self.engine, &c, &p, self.now()).await,
        }
    }
    pub async fn exchange(&self, client_id: &str, code: &str) -> crate::OAuthResult<TokenResponse> {
        self.token(
            client_id,
            &format!("grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Frp.example%2Fcb&code_verifier={VERIFIER}"),
        )
        .await
    }
    pub fn tx(&self, step: Step) -> Transaction {
        match step {
            Step::Login(t) | Step::Consent(t) => *t,
            Step::Redirect(u) => panic!("expected an interaction, got redirect {u}"),
        }
    }
}

pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) fn claims(jwt: &str) -> Map<String, Value> {
    decode_compact(jwt, &Limits::default())
        .unwrap()
        .claims()
        .clone()
}

pub(crate) fn header_alg(jwt: &str) -> Algorithm {
    decode_compact(jwt, &Limits::default())
        .unwrap()
        .header()
        .alg
}

#[test]
fn pkce_reference_vector() {
    // RFC 7636 Appendix B.
    assert!(super::token::pkce_s256_matches(VERIFIER, CHALLENGE));
    assert!(!super::token::pkce_s256_matches("x", CHALLENGE));
    assert_eq!(B64.decode(CHALLENGE).unwrap().len(), 32);
}
