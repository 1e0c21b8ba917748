//! HTTP basic auth with bcrypt-hashed passwords, as Prometheus' exporter-toolkit does it
//! (`basic_auth_users`): for deployments without a reverse proxy in front.
//!
//! Every route takes an [`Authorized`] guard. Without configured users it always passes. bcrypt is slow on
//! purpose, so a verified `Authorization` header is remembered (in memory, a bounded number) and the
//! hashing runs on the blocking pool, never on the async executor.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rocket::http::{Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::Responder;

/// How many verified headers are remembered.
const REMEMBERED: usize = 64;

/// The users allowed in, by name, with their bcrypt hashes.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<String>>,
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
        for (user, hash) in &users {
            if user.is_empty() || user.contains(':') {
                return Err(format!("user name {user:?} is empty or contains ':'"));
            }
            hash.parse::<bcrypt::HashParts>().map_err(|_| {
                format!("the password of user {user:?} is not a bcrypt hash ($2y$...)")
            })?;
        }
        Ok(BasicAuth {
            users,
            verified: Mutex::new(HashSet::new()),
        })
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
        let Some(hash) = self.users.get(&user).cloned() else {
            return false;
        };
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
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

/// A request that may be served: basic auth is off, or its credentials are right.
pub struct Authorized;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Authorized {
    type Error = ();

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ()> {
        let Some(auth) = request.rocket().state::<BasicAuth>() else {
            return Outcome::Success(Authorized);
        };
        if auth
            .allows(request.headers().get_one("Authorization"))
            .await
        {
            Outcome::Success(Authorized)
        } else {
            let client = request
                .client_ip()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "unknown".into());
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
}
