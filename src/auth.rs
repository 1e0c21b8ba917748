//! HTTP basic auth with bcrypt-hashed passwords, as Prometheus' exporter-toolkit does it
//! (`basic_auth_users`): for deployments without a reverse proxy in front.
//!
//! Every route takes an [`Authorized`] guard. Without configured users it always passes. bcrypt is slow on
//! purpose, so a verified `Authorization` header is remembered (in memory, a bounded number) and the
//! hashing runs on the blocking pool, never on the async executor. An unknown user name costs the same
//! bcrypt verification as a known one (against a dummy hash, as exporter-toolkit does): the time of a
//! refusal does not tell which user names exist.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rocket::Responder;
use rocket::http::{Header, Status};
use rocket::request::{FromRequest, Outcome, Request};

/// How many verified headers are remembered.
const REMEMBERED: usize = 64;

/// exporter-toolkit's dummy hash (of no password anyone uses); its cost is replaced by the users' highest.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// The users allowed in, by name, with their bcrypt hashes.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<String>>,
    /// Verified for an unknown user name: a bcrypt hash of the highest cost among the users.
    dummy: String,
    /// bcrypt verifications run (known and unknown users).
    verifications: AtomicU64,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// Checks that every hash is a bcrypt hash; the error names the user (never the hash).
    pub fn new(users: BTreeMap<String, String>) -> Result<Self, String> {
        let mut cost = 4;
        for (user, hash) in &users {
            if user.is_empty() || user.contains(':') {
                return Err(format!("user name {user:?} is empty or contains ':'"));
            }
            let parts = hash.parse::<bcrypt::HashParts>().map_err(|_| {
                format!("the password of user {user:?} is not a bcrypt hash ($2y$...)")
            })?;
            cost = cost.max(parts.get_cost());
        }
        Ok(BasicAuth {
            users,
            verified: Mutex::new(HashSet::new()),
            dummy: format!("$2y${cost:02}{}", &DUMMY_HASH[6..]),
            verifications: AtomicU64::new(0),
        })
    }

    /// The users of the configuration; `None` when it has none (auth is off).
    pub fn of(
        config: &crate::config::ExporterConfig,
    ) -> Result<Option<BasicAuth>, crate::config::ConfigError> {
        if config.basic_auth_users.0.is_empty() {
            return Ok(None);
        }
        BasicAuth::new(config.basic_auth_users.0.clone())
            .map(Some)
            .map_err(|e| crate::config::ConfigError(format!("`kobo.basic_auth_users`: {e}")))
    }

    /// Whether this `Authorization` header value lets the request in.
    pub async fn allows(&self, header: Option<&str>) -> bool {
        let Some(header) = header else {
            return false;
        };
        if self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(header)
        {
            return true;
        }
        let Some((user, password)) = decode(header) else {
            return false;
        };
        // An unknown user is verified against the dummy hash, and refused whatever its result.
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.dummy.clone(), false),
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let ok = known && matches;
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if verified.len() >= REMEMBERED {
                verified.clear();
            }
            verified.insert(header.to_string());
        }
        ok
    }
}

/// `Basic base64(user:password)` as user and password.
fn decode(header: &str) -> Option<(String, String)> {
    let (scheme, credentials) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(credentials.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The basic-auth users in force, replaced on a reload; none: auth is off. Clones share it.
#[derive(Clone, Default)]
pub struct AuthState(Arc<RwLock<Option<Arc<BasicAuth>>>>);

impl AuthState {
    pub fn new(auth: Option<BasicAuth>) -> AuthState {
        AuthState(Arc::new(RwLock::new(auth.map(Arc::new))))
    }

    /// The users in force now.
    pub fn current(&self) -> Option<Arc<BasicAuth>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Lets these users in from now on (none: everyone).
    pub fn replace(&self, auth: Option<BasicAuth>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = auth.map(Arc::new);
    }
}

/// A request that may be served: basic auth is off, or its credentials are right.
pub struct Authorized;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Authorized {
    type Error = ();

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ()> {
        let Some(auth) = request
            .rocket()
            .state::<AuthState>()
            .and_then(AuthState::current)
        else {
            return Outcome::Success(Authorized);
        };
        if auth
            .allows(request.headers().get_one("Authorization"))
            .await
        {
            Outcome::Success(Authorized)
        } else {
            // The connection's peer; what the configured `ip_header` says only as a claim (any client can
            // send that header when no proxy in front sets it).
            let mut client = request
                .remote()
                .map(|peer| peer.to_string())
                .unwrap_or_else(|| "unknown".into());
            if let (Some(header), Some(claimed)) =
                (&request.rocket().config().ip_header, request.real_ip())
            {
                client.push_str(&format!(", {header} says {claimed}"));
            }
            log::warn!(
                "refused {} {}: no valid credentials (client {client})",
                request.method(),
                request.uri().path()
            );
            Outcome::Error((Status::Unauthorized, ()))
        }
    }
}

/// The 401 answer, with the challenge that makes clients send credentials.
#[derive(Responder)]
#[response(status = 401, content_type = "plain")]
pub struct Unauthorized {
    body: &'static str,
    challenge: Header<'static>,
}

#[rocket::catch(401)]
pub fn unauthorized() -> Unauthorized {
    Unauthorized {
        body: "kobo-exporter: authentication required\n",
        challenge: Header::new(
            "WWW-Authenticate",
            "Basic realm=\"kobo-exporter\", charset=\"UTF-8\"",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_right_password_of_a_known_user_passes() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let auth =
            BasicAuth::new(BTreeMap::from([("prometheus".to_string(), hash)])).expect("valid");
        let header = |user: &str, password: &str| {
            format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
        };
        assert!(auth.allows(Some(&header("prometheus", "s3cret"))).await);
        assert!(
            auth.allows(Some(&header("prometheus", "s3cret"))).await,
            "remembered"
        );
        assert!(!auth.allows(Some(&header("prometheus", "wrong"))).await);
        assert!(!auth.allows(Some(&header("other", "s3cret"))).await);
        assert!(!auth.allows(Some("Bearer s3cret")).await);
        assert!(!auth.allows(Some("Basic !!!")).await);
        assert!(!auth.allows(None).await);
        assert!(BasicAuth::new(BTreeMap::from([("u".to_string(), "plain".to_string())])).is_err());
        assert!(!format!("{auth:?}").contains("$2"), "no hash in Debug");
    }

    #[tokio::test]
    async fn an_unknown_user_costs_the_same_bcrypt_verification_as_a_known_one() {
        let users = BTreeMap::from([
            ("cheap".to_string(), bcrypt::hash("pw", 4).expect("hash")),
            ("dear".to_string(), bcrypt::hash("pw", 6).expect("hash")),
        ]);
        let auth = BasicAuth::new(users).expect("valid");
        let header = |user: &str| format!("Basic {}", STANDARD.encode(format!("{user}:pw")));
        // The dummy is a valid hash of the highest cost: its verification takes as long as the dearest.
        let dummy: bcrypt::HashParts = auth.dummy.parse().expect("a bcrypt hash");
        assert_eq!(dummy.get_cost(), 6);
        assert!(!bcrypt::verify("pw", &auth.dummy).expect("verifies"));
        let verifications = || auth.verifications.load(Ordering::Relaxed);
        assert!(!auth.allows(Some(&header("nobody"))).await);
        assert_eq!(verifications(), 1, "an unknown user is verified too");
        // Even the dummy's own password (whatever it is) lets no unknown user in: checked by the flag,
        // not by the hash.
        assert!(auth.allows(Some(&header("dear"))).await);
        assert_eq!(verifications(), 2);
    }
}
