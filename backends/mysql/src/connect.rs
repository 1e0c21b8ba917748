//! Connecting: [`DatabaseOptions`] to mysql_async options and a lazy pool, getting a connection from it,
//! and mysql_async errors to messages.

use std::time::Duration;

use kobo_backend_api::secrets::ErrorContext;
use kobo_backend_api::{DatabaseOptions, SourceError};
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, SslOpts};
use url::{Url, form_urlencoded};

/// The `program_name` connection attribute of the exporter's sessions.
pub const PROGRAM_NAME: &str = "kobo-exporter";

/// URL schemes this source accepts; `mariadb://` is read as `mysql://`.
const SCHEMES: [&str; 2] = ["mysql", "mariadb"];

/// URL parameters with MySQL's `--ssl-mode` meaning, which mysql_async itself does not know.
const SSL_MODE_PARAMS: [&str; 3] = ["ssl-mode", "ssl_mode", "sslmode"];

/// How long an idle connection is kept (unless the URL's `inactive_connection_ttl` says otherwise): long
/// enough to serve the next scrapes without reconnecting, as sqlx's pools do for PostgreSQL.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Room for the JSON lists of arch and channel names (MariaDB's `JSON_ARRAYAGG` is cut at
/// `group_concat_max_len`, 1 MiB by default; MySQL's at 1 KiB).
const GROUP_CONCAT_MAX_LEN: u32 = 16 * 1024 * 1024;

/// MySQL's `--ssl-mode`, as the `ssl-mode` URL parameter gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disabled,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        match value.to_ascii_lowercase().replace('-', "_").as_str() {
            "disabled" | "disable" => Ok(SslMode::Disabled),
            "required" | "require" => Ok(SslMode::Required),
            "verify_ca" => Ok(SslMode::VerifyCa),
            "verify_identity" | "verify_full" => Ok(SslMode::VerifyIdentity),
            "preferred" | "prefer" => Err(
                "ssl-mode=PREFERRED (fall back to plain text) is not supported: use REQUIRED, VERIFY_CA, \
                 VERIFY_IDENTITY or DISABLED"
                    .to_string(),
            ),
            _ => Err(format!(
                "unknown ssl-mode {value:?}: use DISABLED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY"
            )),
        }
    }
}

/// The session set-up each new connection runs (the statements' time limits are set per statement, see
/// `driver`).
/// On MariaDB the session's `max_statement_time` (seconds, in a MariaDB-only executable comment, which
/// MySQL skips) is the query timeout; a statement that must end sooner says so itself (see `driver`).
pub(crate) fn session_setup(query_timeout: Duration) -> Vec<String> {
    vec![
        format!(
            "SET SESSION group_concat_max_len = {GROUP_CONCAT_MAX_LEN} /*M!100108 , max_statement_time = {:.3} */",
            query_timeout.as_secs_f64().max(0.001)
        ),
        // Every transaction of the session read-only, also the worker query's own (autocommit).
        "SET SESSION TRANSACTION READ ONLY".to_string(),
    ]
}

/// mysql_async options for `options`: the URL as mysql_async reads it (`socket=`, `require_ssl=`, ...)
/// plus `ssl-mode`, the separate password and CA file, the pool limits (0 to `max_connections`, idle ones
/// kept for a while, no reset on return: every scrape's transaction ends) and the session set-up.
pub(crate) fn opts(options: &DatabaseOptions, context: &ErrorContext) -> Result<Opts, SourceError> {
    let not_mysql = || {
        SourceError::Config(format!(
            "{} is not a MySQL/MariaDB URL: the scheme must be mysql:// or mariadb://",
            context.target()
        ))
    };
    // The `url` crate is what mysql_async reads the URL with; a URL it re-serialises means the same to it.
    let mut url = Url::parse(&options.url).map_err(|e| context.config("invalid MySQL URL", e))?;
    if !SCHEMES.contains(&url.scheme()) || url.cannot_be_a_base() {
        return Err(not_mysql());
    }
    // mysql_async knows only `mysql://` (changing between schemes that are not special cannot fail).
    url.set_scheme("mysql").map_err(|()| not_mysql())?;
    let ssl_mode = match take_params(&mut url, &SSL_MODE_PARAMS).last() {
        Some(value) => {
            Some(SslMode::parse(value).map_err(|e| context.config("invalid MySQL URL", e))?)
        }
        None => None,
    };
    let url_sets_prefer_socket = url
        .query_pairs()
        .any(|(name, _)| name.eq_ignore_ascii_case("prefer_socket"));
    let parsed =
        Opts::from_url(url.as_str()).map_err(|e| context.config("invalid MySQL URL", e))?;
    if parsed.db_name().is_none() {
        return Err(SourceError::Config(format!(
            "MySQL URL {} names no database: give it as the path, mysql://user@host/kobo",
            context.target()
        )));
    }
    options.check_max_connections(context.target())?;
    let max = usize::try_from(options.max_connections).unwrap_or(usize::MAX);
    let constraints = PoolConstraints::new(0, max).ok_or_else(|| {
        SourceError::Config(format!(
            "max_connections {max} for {} is unusable",
            context.target()
        ))
    })?;
    let ssl_opts = tls(ssl_mode, parsed.ssl_opts().cloned(), options, context)?;
    let mut pool_opts = parsed
        .pool_opts()
        .clone()
        .with_constraints(constraints)
        .with_reset_connection(false);
    if pool_opts.inactive_connection_ttl().is_zero() {
        pool_opts = pool_opts.with_inactive_connection_ttl(IDLE_TIMEOUT);
    }
    let mut builder = OptsBuilder::from_opts(parsed)
        .pool_opts(pool_opts)
        .setup(session_setup(options.query_timeout))
        .ssl_opts(ssl_opts)
        .connect_attribute("program_name", PROGRAM_NAME);
    if !url_sets_prefer_socket {
        // mysql_async would otherwise move a TCP connection to 127.0.0.1 onto the server's Unix socket,
        // where the server matches a different account ('user'@'localhost'). Connect as configured.
        builder = builder.prefer_socket(false);
    }
    if let Some(password) = &options.password {
        builder = builder.pass(Some(password.clone()));
    }
    Ok(builder.into())
}

/// The TLS settings: `ssl-mode` if given, else what the URL's own parameters (`require_ssl`, `verify_ca`,
/// `verify_identity`) say; `ca_file` as the root certificate (given without `ssl-mode` it means
/// VERIFY_CA, as with the mysql client's `--ssl-ca`).
fn tls(
    mode: Option<SslMode>,
    from_url: Option<SslOpts>,
    options: &DatabaseOptions,
    context: &ErrorContext,
) -> Result<Option<SslOpts>, SourceError> {
    let ssl = match mode {
        Some(SslMode::Disabled) => {
            if options.ca_file.is_some() {
                return Err(SourceError::Config(format!(
                    "ca_file is set but ssl-mode=DISABLED for {}",
                    context.target()
                )));
            }
            return Ok(None);
        }
        Some(SslMode::Required) => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        Some(SslMode::VerifyCa) => {
            Some(SslOpts::default().with_danger_skip_domain_validation(true))
        }
        Some(SslMode::VerifyIdentity) => Some(SslOpts::default()),
        None if from_url.is_none() && options.ca_file.is_some() => {
            Some(SslOpts::default().with_danger_skip_domain_validation(true))
        }
        None => from_url,
    };
    let Some(ca_file) = &options.ca_file else {
        return Ok(ssl);
    };
    if !ca_file.is_file() {
        return Err(SourceError::Config(format!(
            "ca_file {} for {} is not a readable file",
            ca_file.display(),
            context.target()
        )));
    }
    Ok(ssl.map(|ssl| ssl.with_root_certs(vec![ca_file.clone().into()])))
}

/// Takes the query parameters named in `names` (in any case) out of `url`, and returns their values,
/// decoded as mysql_async decodes the others (`form_urlencoded`: `+` is a space). The other parameters stay
/// as written: re-encoding them (`Url::query_pairs_mut`) would mean the same to mysql_async but hand it
/// `socket=%2Frun%2Fmysqld%2Fmysqld.sock` for `socket=/run/mysqld/mysqld.sock`.
fn take_params(url: &mut Url, names: &[&str]) -> Vec<String> {
    let Some(query) = url.query() else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match form_urlencoded::parse(pair.as_bytes()).next() {
            Some((name, value)) if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) => {
                taken.push(value.into_owned());
            }
            _ => kept.push(pair),
        }
    }
    let kept = kept.join("&");
    url.set_query(Some(kept.as_str()).filter(|kept| !kept.is_empty()));
    taken
}

/// A connection from the pool within `connect_timeout` and by `deadline`. An idle connection the server
/// closed (a restart, `KILL`) is noticed and replaced by the pool.
pub(crate) async fn acquire(
    pool: &Pool,
    connect_timeout: Duration,
    deadline: tokio::time::Instant,
) -> Result<Conn, String> {
    let own = tokio::time::Instant::now().checked_add(connect_timeout);
    let by = own.map_or(deadline, |own| own.min(deadline));
    match tokio::time::timeout_at(by, pool.get_conn()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err(format!(
            "no connection within connect_timeout ({} s) or the scrape's deadline: the server did not answer",
            connect_timeout.as_secs_f64()
        )),
    }
}

/// A message for a mysql_async error, with a plain-words note for the common causes.
pub(crate) fn describe(error: &mysql_async::Error) -> String {
    let note = match error {
        mysql_async::Error::Server(e) => match e.code {
            // 1698: MariaDB's answer for a user it does not know.
            1045 | 1698 => " (check the user and password)",
            1049 => " (check the database name in the URL)",
            1142 | 1143 | 1044 => {
                " (the user lacks a privilege: see the GRANTs in the documentation)"
            }
            1969 | 3024 | 1317 => {
                " (the statement ran past its limit, query_timeout or the scrape's deadline, and was stopped)"
            }
            1792 => " (the exporter's transactions are read-only)",
            _ => "",
        },
        _ => "",
    };
    format!("{error}{note}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_mode_is_taken_out_of_the_url() {
        let take = |url: &str, names: &[&str]| {
            let mut url = Url::parse(url).expect(url);
            let taken = take_params(&mut url, names);
            (url.to_string(), taken)
        };
        assert_eq!(
            take(
                "mysql://u@h/db?ssl-mode=REQUIRED&socket=/run/x.sock",
                &SSL_MODE_PARAMS
            ),
            (
                "mysql://u@h/db?socket=/run/x.sock".to_string(),
                vec!["REQUIRED".to_string()]
            )
        );
        assert_eq!(
            take("mysql://u@h/db?sslmode=verify-ca", &SSL_MODE_PARAMS),
            ("mysql://u@h/db".to_string(), vec!["verify-ca".to_string()])
        );
        // Names in any case, values decoded; the rest as written (empty pairs dropped), the order kept.
        assert_eq!(
            take(
                "mysql://u:p%40ss@h/db?socket=/run/my%20x.sock&&SSL_MODE=verify%5Fca&x=a+b&ssl-mode=Verify+Identity",
                &SSL_MODE_PARAMS
            ),
            (
                "mysql://u:p%40ss@h/db?socket=/run/my%20x.sock&x=a+b".to_string(),
                vec!["verify_ca".to_string(), "Verify Identity".to_string()]
            )
        );
        assert_eq!(
            take("mysql://u@h/db", &SSL_MODE_PARAMS),
            ("mysql://u@h/db".to_string(), vec![])
        );
        assert_eq!(
            SslMode::parse("VERIFY_IDENTITY"),
            Ok(SslMode::VerifyIdentity)
        );
        assert!(
            SslMode::parse("PREFERRED")
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn options_from_urls() {
        let context = |o: &DatabaseOptions| ErrorContext::new(o);
        let ok = |url: &str| {
            let o = DatabaseOptions::new(url);
            opts(&o, &context(&o))
        };
        let parsed = ok("mariadb://kobo:pw@db:3307/hub?ssl-mode=required").expect("mariadb URL");
        assert_eq!(
            (parsed.ip_or_hostname(), parsed.tcp_port(), parsed.db_name()),
            ("db", 3307, Some("hub"))
        );
        assert!(parsed.ssl_opts().is_some_and(|s| s.accept_invalid_certs()));
        assert!(!parsed.prefer_socket());
        let socket =
            ok("mysql://kobo@localhost/hub?socket=/run/mysqld/mysqld.sock").expect("socket URL");
        assert_eq!(socket.socket(), Some("/run/mysqld/mysqld.sock"));
        assert!(socket.ssl_opts().is_none());
        let options = DatabaseOptions {
            password: Some("sep".into()),
            ..DatabaseOptions::new("mysql://kobo:inurl@db/hub")
        };
        assert_eq!(
            opts(&options, &context(&options)).expect("password").pass(),
            Some("sep")
        );
        // The URL's password reaches mysql_async as written, which decodes it; so does a socket path.
        let parsed = ok("MariaDB://kobo:p%40ss@db/hub?socket=%2Frun%2Fx.sock&ssl_mode=VERIFY%5FCA")
            .expect("escapes");
        assert_eq!(
            (parsed.pass(), parsed.socket()),
            (Some("p@ss"), Some("/run/x.sock"))
        );
        assert!(
            parsed
                .ssl_opts()
                .is_some_and(|s| s.skip_domain_validation() && !s.accept_invalid_certs())
        );
        for (url, expected) in [
            ("postgres://u@h/d", "not a MySQL/MariaDB URL"),
            ("mysql://u:secret@h/d?bogus=1", "invalid MySQL URL"),
            ("mysql://u:secret@h/d?ssl-mode=preferred", "not supported"),
            ("mysql://u:secret@h", "names no database"),
            // No authority (the slashes forgotten): all of it a path to the `url` crate.
            ("mysql:u:secret@h/d", "not a MySQL/MariaDB URL"),
            ("hub.db", "invalid MySQL URL"),
            // A password with an unescaped `/`, `?` or `#`: the `url` crate reads a bad port.
            (
                "mysql://u:sec/secret@h/d",
                "invalid MySQL URL mysql://u:***@h/d",
            ),
            (
                "mysql://u:s#secret@h/d",
                "invalid MySQL URL mysql://u:***@h/d",
            ),
            (
                "mysql://u:p@h/d?ssl-mode=x&password=secret",
                "unknown ssl-mode",
            ),
        ] {
            let error = ok(url).expect_err(url).to_string();
            assert!(
                error.contains(expected) && !error.contains("secret"),
                "{url}: {error}"
            );
        }
        let setup = session_setup(Duration::from_millis(1500));
        assert!(setup[0].contains("max_statement_time = 1.500"), "{setup:?}");
        assert_eq!(setup[1], "SET SESSION TRANSACTION READ ONLY");
    }
}
