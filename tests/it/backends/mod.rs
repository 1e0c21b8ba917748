//! Database behaviour written once ([`suite`]) and stamped onto every database source, the way sqlx's shared
//! test crate runs the same tests on every driver: a [`Backend`] says how to make the source and the test
//! database, and what the backend's words for the same failure are. What only one backend can check (TLS
//! modes, construction outside a runtime) is in its own module; what needs a source's internals (its
//! transactions, its statement counts) is in the source's crate.

#[macro_use]
mod suite;

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;

use kobo_exporter::api::{DataSource, DatabaseOptions, SourceError};
use kobo_testkit::db::TestDb;

/// One database source under test.
pub trait Backend {
    /// Its throw-away test database.
    type Db: TestDb;

    /// The URL schemes the source accepts; the first is its [`DataSource::kind`]. Its
    /// [`DataSource::describe`] is `<TestDb::SERVER> database <redacted URL>`.
    const SCHEMES: [&'static str; 2];
    /// A URL of another source, which it refuses as `not a <TestDb::SERVER> URL`.
    const FOREIGN_URL: &'static str;
    /// Words of which one is in a refused authentication's error.
    const AUTH_REFUSED: &'static [&'static str];
    /// Makes the source for some options.
    const NEW: fn(DatabaseOptions) -> Result<Box<dyn DataSource>, SourceError>;

    /// The source for `options`.
    fn source(options: DatabaseOptions) -> Result<Box<dyn DataSource>, SourceError> {
        (Self::NEW)(options)
    }

    /// The URL of `db` over the test server's Unix socket; `None` where it has none here.
    fn socket_url(db: &Self::Db) -> Option<String>;

    /// The URL of `db` with TLS required (the certificate not checked).
    fn tls_required_url(db: &Self::Db) -> String;

    /// URLs of a server at 127.0.0.1:`port` (which never answers), each way the source can talk to it.
    fn silent_urls(port: u16) -> Vec<String> {
        vec![format!("{}://kobo@127.0.0.1:{port}/kobo", Self::SCHEMES[0])]
    }
}
