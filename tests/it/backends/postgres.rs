//! The shared suite on PostgreSQL (`KOBO_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), and what only PostgreSQL has: sslmode's certificate checks,
//! the source's need of a runtime, its URL parameters.

use kobo_testkit::CollectExt;
use std::time::Duration;

use kobo_exporter::api::{DataSource, DatabaseOptions, SourceError};
use kobo_testkit::db::{PostgresDb, TestDb};

use super::Backend;
use super::suite::{collect, collect_error, sqlite_fixture};

/// The PostgreSQL source.
pub struct Postgres;

impl Backend for Postgres {
    type Db = PostgresDb;

    const SCHEMES: [&'static str; 2] = ["postgres", "postgresql"];
    const FOREIGN_URL: &'static str = "mysql://u@h/d";
    const AUTH_REFUSED: &'static [&'static str] =
        &["password authentication failed", "does not exist"];
    const NEW: fn(DatabaseOptions) -> Result<Box<dyn DataSource>, SourceError> =
        |options| Ok(Box::new(kobo_backend_postgres::open(options)?));

    fn socket_url(db: &PostgresDb) -> Option<String> {
        let dir = std::path::Path::new("/var/run/postgresql");
        if !dir.join(".s.PGSQL.5432").exists() {
            return None;
        }
        let url = db.url();
        let user = url
            .trim_start_matches("postgres://")
            .split('@')
            .next()
            .unwrap_or("postgres");
        Some(format!(
            "postgres://{user}@localhost/{}?host={}",
            db.name(),
            dir.display()
        ))
    }

    fn tls_required_url(db: &PostgresDb) -> String {
        format!("{}?sslmode=require", db.url())
    }

    /// Without TLS the startup message is the first word, with it (`prefer`) the TLS request.
    fn silent_urls(port: u16) -> Vec<String> {
        let url = format!("postgres://kobo@127.0.0.1:{port}/kobo");
        vec![format!("{url}?sslmode=disable"), url]
    }
}

backend_suite!(Postgres);

#[tokio::test]
async fn tls_verify_full_and_encrypted_connections() {
    let Some(db) = PostgresDb::with_fixture().await else {
        return;
    };
    if !db.tls_available().await {
        eprintln!("SKIPPED (part): the server has no TLS");
        return;
    }
    let snakeoil = std::path::Path::new("/etc/ssl/certs/ssl-cert-snakeoil.pem");
    if snakeoil.exists() {
        // The server's self-signed certificate does not name 127.0.0.1: verify-full must refuse it.
        let options = DatabaseOptions {
            ca_file: Some(snakeoil.into()),
            connect_timeout: Duration::from_secs(3),
            ..DatabaseOptions::new(format!("{}?sslmode=verify-full", db.url()))
        };
        let error = collect_error::<Postgres>(options, Duration::from_secs(10)).await;
        assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
        eprintln!("verify-full against the snake-oil certificate: {error}");
        // By the name the certificate has, with it as the CA: verified.
        let options = DatabaseOptions {
            ca_file: Some(snakeoil.into()),
            connect_timeout: Duration::from_secs(3),
            ..DatabaseOptions::new(format!(
                "{}?sslmode=verify-full",
                db.url().replacen("127.0.0.1", "localhost", 1)
            ))
        };
        match collect::<Postgres>(options).await {
            Ok(snapshot) => assert_eq!(snapshot, sqlite_fixture().await),
            Err(error) => {
                eprintln!("note: verify-full by name with the snake-oil certificate as CA: {error}")
            }
        }
    }
    let source = kobo_backend_postgres::open(DatabaseOptions::new(Postgres::tls_required_url(&db)))
        .expect("source");
    source.collect_workers().await.expect("collect over TLS");
    let mut admin = db.connect().await;
    let encrypted: bool = sqlx::query_scalar(
        "SELECT bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = current_database() AND a.application_name = $1",
    )
    .bind(kobo_backend_postgres::APPLICATION_NAME)
    .fetch_one(&mut admin)
    .await
    .expect("pg_stat_ssl");
    assert!(encrypted, "the exporter's connection is not encrypted");
}

#[test]
fn construction_needs_a_runtime_and_a_usable_url() {
    // Outside a runtime: a clear error, not a panic.
    let error = kobo_backend_postgres::open(DatabaseOptions::new("postgres://u@h/d"))
        .err()
        .expect("no runtime");
    assert!(error.to_string().contains("tokio runtime"), "{error}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for url in [
            "postgres://u:p@h/d?sslmode=bogus",
            "postgres://u:p@h:99999/d",
        ] {
            let error = kobo_backend_postgres::open(DatabaseOptions::new(url))
                .err()
                .expect(url);
            assert!(matches!(error, SourceError::Config(_)), "{url}: {error:?}");
            assert!(
                error.to_string().contains("invalid PostgreSQL URL"),
                "{url}: {error}"
            );
        }
    });
}
