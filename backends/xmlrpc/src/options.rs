//! The XML-RPC source's settings, and the checks that turn them into what the client uses: a normalised
//! endpoint URL (trailing slash, no credentials in it) and the credentials to send.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kobo_backend_api::secrets::Secrets;
use kobo_backend_api::{SourceError, TaskFlowOptions, redact_url};
use reqwest::Url;

/// The `User-Agent` sent with every request unless [`XmlRpcOptions::user_agent`] says otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("kobo-exporter/", env!("CARGO_PKG_VERSION"));

/// How the XML-RPC source reaches a hub. `Debug` redacts the password, the bearer token and any password in
/// the URL.
#[derive(Clone)]
pub struct XmlRpcOptions {
    /// The hub's client endpoint, `http://` or `https://`, e.g. `https://hub.example.com/hub/xmlrpc/client/`
    /// (the trailing slash is added when missing). User info in the URL (`https://user:pass@host/...`) is
    /// taken as basic-auth credentials and never sent or shown as part of the URL.
    pub url: String,
    /// A CA certificate bundle (PEM) to verify the hub's certificate with, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Verify the hub's TLS certificate (default `true`). `false` accepts any certificate, with a warning in
    /// the log.
    pub tls_verify: bool,
    /// HTTP basic-auth user name, for a hub behind an authenticating proxy.
    pub username: Option<String>,
    /// HTTP basic-auth password (read from a file by the exporter's config). Needs `username`.
    pub password: Option<String>,
    /// A bearer token sent as `Authorization: Bearer <token>` (read from a file by the exporter's config).
    /// Cannot be combined with basic auth.
    pub bearer_token: Option<String>,
    /// How long one HTTP request (connect, send, the whole response) may take.
    pub request_timeout: Duration,
    /// Largest response body accepted, in bytes, after gzip decoding.
    pub max_response_bytes: u64,
    /// How many `client.get_worker_info` calls go into one `system.multicall` request. The default, 5000,
    /// reads a hub of up to 5,000 workers in 2 requests per scrape. The answer is about 0.5-2.5 KB per
    /// worker, depending on its arches and channels (2.3 KB for kobo-hubgen's workers): at most some 12
    /// MB for 5,000, well within the default `max_response_bytes`. Lower it for a proxy that limits body
    /// sizes.
    pub multicall_chunk: usize,
    /// The `User-Agent` header: `kobo-exporter/<version>` by default.
    pub user_agent: String,
    /// The zone of the hub's times (kobo exports naive datetimes: in UTC with `USE_TZ = True`, in its
    /// `TIME_ZONE` otherwise), and how long a new task id that does not answer is asked for again.
    pub task_flow: TaskFlowOptions,
}

/// The default [`XmlRpcOptions::multicall_chunk`]: workers per `system.multicall` of
/// `client.get_worker_info`.
pub const DEFAULT_MULTICALL_CHUNK: usize = 5000;

impl XmlRpcOptions {
    /// Options for this endpoint with the defaults: TLS verified against the system's roots, no
    /// credentials, 10 s per request, responses up to 64 MiB, 5000 workers per multicall.
    pub fn new(url: impl Into<String>) -> Self {
        XmlRpcOptions {
            url: url.into(),
            ca_file: None,
            tls_verify: true,
            username: None,
            password: None,
            bearer_token: None,
            request_timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024 * 1024,
            multicall_chunk: DEFAULT_MULTICALL_CHUNK,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            task_flow: TaskFlowOptions::default(),
        }
    }
}

impl fmt::Debug for XmlRpcOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("XmlRpcOptions")
            .field("url", &redact_url(&self.url))
            .field("ca_file", &self.ca_file)
            .field("tls_verify", &self.tls_verify)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("bearer_token", &redacted(&self.bearer_token))
            .field("request_timeout", &self.request_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("multicall_chunk", &self.multicall_chunk)
            .field("time_zone", &self.task_flow.time_zone.name())
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// What is sent in the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    None,
    Basic {
        username: String,
        password: Option<String>,
    },
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// The checked endpoint: where to POST, how to name it in messages, what to authenticate with. `Debug`
/// shows no secret.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// The URL requests go to: trailing slash added, user info removed.
    pub url: Url,
    /// The URL as shown in messages and by `describe()`: [`redact_url`] of `url`.
    pub shown: String,
    pub credentials: Credentials,
    /// Every secret of the configuration, in every form it is sent in (as written, percent-decoded, the
    /// base64 of basic auth's `user:password`), for scrubbing messages.
    pub secrets: Secrets,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.shown)
            .field("credentials", &self.credentials)
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// Checks the URL and the credential options (no I/O). Errors name the setting at fault and never hold a
/// secret.
pub(crate) fn endpoint(options: &XmlRpcOptions) -> Result<Endpoint, SourceError> {
    let shown_input = redact_url(&options.url);
    let invalid =
        |why: &str| SourceError::Config(format!("invalid XML-RPC URL {shown_input}: {why}"));
    let mut url = Url::parse(options.url.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if url.fragment().is_some() {
        return Err(invalid("a fragment (#...) has no meaning here"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }

    let mut secrets = Vec::new();
    let mut push_secret = |secret: &str| secrets.push(secret.to_string());
    // Credentials in the URL become basic auth; the URL used and shown carries none.
    let url_user = kobo_backend_api::secrets::percent_decode(url.username())
        .unwrap_or_else(|| url.username().to_string());
    let url_password = url.password().map(|p| {
        push_secret(p);
        kobo_backend_api::secrets::percent_decode(p).unwrap_or_else(|| p.to_string())
    });
    let url_has_credentials = !url_user.is_empty() || url_password.is_some();
    // Both calls only fail for URLs that cannot have credentials (no host), excluded above.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    for secret in options.password.iter().chain(options.bearer_token.iter()) {
        push_secret(secret);
    }
    // As written and percent-decoded; the forms sent in the Authorization header are added below.
    let secrets = Secrets::new(secrets);

    let config = |message: &str| {
        SourceError::Config(format!(
            "XML-RPC source {}: {message}",
            redact_url(url.as_str())
        ))
    };
    if url_has_credentials && (options.username.is_some() || options.password.is_some()) {
        return Err(config(
            "credentials are given both in the URL and as username/password: give them once",
        ));
    }
    let (username, password) = if url_has_credentials {
        (Some(url_user), url_password)
    } else {
        (options.username.clone(), options.password.clone())
    };
    let credentials = match (username, password, &options.bearer_token) {
        (Some(_), _, Some(_)) | (None, Some(_), Some(_)) => {
            return Err(config(
                "basic auth (username/password) and a bearer token cannot be used together",
            ));
        }
        (None, Some(_), None) => return Err(config("a password is given but no username")),
        (Some(username), password, None) => {
            if username.contains(':') {
                return Err(config("a basic-auth username cannot contain ':'"));
            }
            Credentials::Basic { username, password }
        }
        (None, None, Some(token)) => {
            if token.trim().is_empty() {
                return Err(config("the bearer token is empty"));
            }
            if token.trim().chars().any(|c| c.is_control() || c == ' ') {
                return Err(config(
                    "the bearer token holds spaces or control characters",
                ));
            }
            Credentials::Bearer(token.trim().to_string())
        }
        (None, None, None) => Credentials::None,
    };

    if options.multicall_chunk == 0 {
        return Err(config("multicall_chunk must be at least 1"));
    }
    if options.request_timeout.is_zero() {
        return Err(config("request_timeout must be more than 0"));
    }
    if options.max_response_bytes == 0 {
        return Err(config("max_response_bytes must be more than 0"));
    }
    // What a hub (or a proxy) that echoes the Authorization header would show.
    let secrets = match &credentials {
        Credentials::None => secrets,
        Credentials::Basic { username, password } => {
            secrets.with_basic_auth(username, password.as_deref())
        }
        Credentials::Bearer(token) => secrets.with_bearer_token(token),
    };
    Ok(Endpoint {
        shown: redact_url(url.as_str()),
        url,
        credentials,
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(options: &XmlRpcOptions) -> Endpoint {
        endpoint(options).unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(options: &XmlRpcOptions) -> String {
        match endpoint(options) {
            Ok(e) => panic!("accepted: {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_default_chunk_fits_in_the_default_response_cap() {
        let options = XmlRpcOptions::new("http://hub/");
        assert_eq!(options.multicall_chunk, DEFAULT_MULTICALL_CHUNK);
        // 2 requests for 5,000 workers; a get_worker_info export is 0.5-2.5 KB: allow 4 KB a worker.
        const { assert!(DEFAULT_MULTICALL_CHUNK >= 5000) };
        assert!(DEFAULT_MULTICALL_CHUNK as u64 * 4096 < options.max_response_bytes);
    }

    #[test]
    fn trailing_slash_is_added_once() {
        for url in ["http://hub/xmlrpc/client", "http://hub/xmlrpc/client/"] {
            let e = check(&XmlRpcOptions::new(url));
            assert_eq!(e.url.as_str(), "http://hub/xmlrpc/client/");
            assert_eq!(e.shown, "http://hub/xmlrpc/client/");
            assert_eq!(e.credentials, Credentials::None);
        }
        assert_eq!(
            check(&XmlRpcOptions::new("https://hub")).url.as_str(),
            "https://hub/"
        );
        assert_eq!(
            check(&XmlRpcOptions::new("https://hub:8443/x?a=b"))
                .url
                .as_str(),
            "https://hub:8443/x/?a=b"
        );
    }

    #[test]
    fn bad_urls_are_config_errors() {
        assert!(error(&XmlRpcOptions::new("ftp://hub/")).contains("http or https"));
        assert!(error(&XmlRpcOptions::new("not a url")).starts_with("invalid XML-RPC URL"));
        assert!(error(&XmlRpcOptions::new("http://hub/#x")).contains("fragment"));
        let e = error(&XmlRpcOptions::new("http://u:s3cret@[::1/"));
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn url_credentials_become_basic_auth_and_leave_the_url() {
        let e = check(&XmlRpcOptions::new(
            "https://mon%40x:p%40ss@hub/xmlrpc/client/",
        ));
        assert_eq!(e.url.as_str(), "https://hub/xmlrpc/client/");
        assert_eq!(e.shown, "https://hub/xmlrpc/client/");
        assert_eq!(
            e.credentials,
            Credentials::Basic {
                username: "mon@x".into(),
                password: Some("p@ss".into())
            }
        );
        // As written, percent-decoded, and base64("mon@x:p@ss") as sent.
        assert_eq!(
            e.secrets.scrub("p@ss p%40ss bW9uQHg6cEBzcw=="),
            "*** *** ***"
        );
        let both = XmlRpcOptions {
            username: Some("other".into()),
            ..XmlRpcOptions::new("https://mon:pw@hub/")
        };
        assert!(error(&both).contains("both in the URL"));
    }

    #[test]
    fn credential_combinations() {
        let base = XmlRpcOptions::new("https://hub/");
        let basic = check(&XmlRpcOptions {
            username: Some("mon".into()),
            password: Some("hunter2".into()),
            ..base.clone()
        });
        assert_eq!(
            basic.credentials,
            Credentials::Basic {
                username: "mon".into(),
                password: Some("hunter2".into())
            }
        );
        let bearer = check(&XmlRpcOptions {
            bearer_token: Some("tok3n\n".into()),
            ..base.clone()
        });
        assert_eq!(bearer.credentials, Credentials::Bearer("tok3n".into()));
        assert!(
            error(&XmlRpcOptions {
                username: Some("mon".into()),
                bearer_token: Some("t".into()),
                ..base.clone()
            })
            .contains("cannot be used together")
        );
        assert!(
            error(&XmlRpcOptions {
                password: Some("hunter2".into()),
                ..base.clone()
            })
            .contains("no username")
        );
        assert!(
            error(&XmlRpcOptions {
                bearer_token: Some("a b".into()),
                ..base.clone()
            })
            .contains("spaces")
        );
        assert!(
            error(&XmlRpcOptions {
                multicall_chunk: 0,
                ..base.clone()
            })
            .contains("multicall_chunk")
        );
        assert!(
            error(&XmlRpcOptions {
                request_timeout: Duration::ZERO,
                ..base
            })
            .contains("request_timeout")
        );
    }

    #[test]
    fn debug_redacts_every_secret() {
        let options = XmlRpcOptions {
            password: Some("hunter2".into()),
            bearer_token: Some("t0ken".into()),
            username: Some("mon".into()),
            ..XmlRpcOptions::new("https://u:s3cret@hub/xmlrpc/client/")
        };
        let debug = format!("{options:?}");
        for secret in ["hunter2", "t0ken", "s3cret"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("mon") && debug.contains("https://u:***@hub/xmlrpc/client/"));
        let credentials = format!(
            "{:?} {:?}",
            Credentials::Bearer("t0ken".into()),
            Credentials::Basic {
                username: "mon".into(),
                password: Some("hunter2".into())
            }
        );
        assert!(!credentials.contains("t0ken") && !credentials.contains("hunter2"));
        assert_eq!(
            XmlRpcOptions::new("http://h/").user_agent,
            DEFAULT_USER_AGENT
        );
        assert!(DEFAULT_USER_AGENT.starts_with("kobo-exporter/"));
    }
}
