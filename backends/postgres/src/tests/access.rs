//! Who may read and how: the least-privilege role, the read-only transaction, passwords that never show,
//! Unix sockets and TLS.

use std::time::Duration;

use kobo_backend_api::{DataSource, DatabaseOptions, SourceError};
use sqlx::{Connection, Executor};

use super::{collect, collect_error, fixture_database, sqlite_fixture};
use crate::testing::READER_PASSWORD;
use crate::{connect, PostgresSource, BEGIN};

#[tokio::test]
async fn least_privilege_role_can_collect_but_not_write() {
    let Some(mut db) = fixture_database().await else {
        return;
    };
    let reader = db.create_reader().await;
    let options = DatabaseOptions::new(db.user_url(&reader, Some(READER_PASSWORD)));
    let source = PostgresSource::new(options).expect("source");
    assert_eq!(
        kobo_backend_api::testing::comparable(
            source
                .collect_with_tasks()
                .await
                .expect("collect as reader")
        ),
        sqlite_fixture().await
    );
    // Inside the exporter's own transaction even a write the role could not do fails as read-only first.
    let mut conn = source.pool.acquire(&source.context).await.expect("conn");
    let mut tx = conn.begin_with(BEGIN).await.expect("begin");
    let error = tx
        .execute("INSERT INTO hub_channel (id, name) VALUES (99, 'x')")
        .await
        .expect_err("write");
    assert!(
        error.to_string().contains("read-only transaction"),
        "{error}"
    );
    drop(tx);
    // And outside of it the role has no write privilege either.
    let mut plain = sqlx::PgConnection::connect(&db.user_url(&reader, Some(READER_PASSWORD)))
        .await
        .expect("connect");
    let error = plain
        .execute("INSERT INTO hub_channel (id, name) VALUES (99, 'x')")
        .await
        .expect_err("write");
    assert!(error.to_string().contains("permission denied"), "{error}");
}

#[tokio::test]
async fn the_exporters_transaction_is_read_only_even_for_a_superuser() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let source = PostgresSource::new(db.options()).expect("source");
    let mut conn = source.pool.acquire(&source.context).await.expect("conn");
    let mut tx = conn.begin_with(BEGIN).await.expect("begin");
    let level: String = sqlx::query_scalar("SHOW transaction_isolation")
        .fetch_one(&mut *tx)
        .await
        .expect("show");
    assert_eq!(level, "repeatable read");
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut *tx)
        .await
        .expect("show");
    assert_eq!(timeout, "5s", "statement_timeout is the query timeout");
    let zone: String = sqlx::query_scalar("SHOW TimeZone")
        .fetch_one(&mut *tx)
        .await
        .expect("show");
    assert_eq!(zone, "UTC");
    let error = tx
        .execute("UPDATE hub_worker SET enabled = NOT enabled")
        .await
        .expect_err("write");
    let message = connect::describe(&error);
    assert!(message.contains("SQLSTATE 25006"), "{message}");
}

#[tokio::test]
async fn the_exporters_session_is_read_only_outside_a_transaction_too() {
    // The worker query of a scrape runs without BEGIN: the session default must make it read-only.
    let Some(db) = fixture_database().await else {
        return;
    };
    let source = PostgresSource::new(db.options()).expect("source");
    let mut conn = source.pool.acquire(&source.context).await.expect("conn");
    let error = conn
        .execute("UPDATE hub_worker SET enabled = NOT enabled")
        .await
        .expect_err("write");
    let message = connect::describe(&error);
    assert!(message.contains("SQLSTATE 25006"), "{message}");
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_without_the_password() {
    let Some(mut db) = fixture_database().await else {
        return;
    };
    let reader = db.create_reader().await;
    let secret = "Wr0ng-Pa55word";
    for options in [
        DatabaseOptions::new(db.user_url(&reader, Some(secret))),
        DatabaseOptions {
            password: Some(secret.into()),
            ..DatabaseOptions::new(db.user_url(&reader, None))
        },
        // A role that does not exist: refused even where the server trusts local connections.
        DatabaseOptions::new(db.user_url("kobo_no_such_role", Some(secret))),
    ] {
        let options = DatabaseOptions {
            connect_timeout: Duration::from_secs(3),
            ..options
        };
        match collect(options.clone()).await {
            Ok(_) => eprintln!(
                "note: the server trusts {} without a password (pg_hba `trust`); only the missing role is checked",
                kobo_backend_api::redact_url(&options.url)
            ),
            Err(error) => {
                let text = format!("{error} {error:?}");
                assert!(matches!(error, SourceError::Connect { .. }), "{text}");
                assert!(!text.contains(secret), "the password leaked: {text}");
                assert!(text.contains("***") || options.password.is_some(), "names the redacted URL: {text}");
                assert!(text.contains("password authentication failed") || text.contains("does not exist"), "{text}");
            }
        }
    }
    let source = PostgresSource::new(DatabaseOptions::new(db.user_url(&reader, Some(secret))))
        .expect("source");
    assert!(
        !source.describe().contains(secret) && source.describe().contains("***"),
        "{}",
        source.describe()
    );
    assert_eq!(source.kind(), "postgres");
}

#[tokio::test]
async fn unix_socket_directory_in_the_host_parameter() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let socket_dir = std::path::Path::new("/var/run/postgresql");
    if !socket_dir.join(".s.PGSQL.5432").exists() {
        eprintln!(
            "SKIPPED (part): no PostgreSQL socket in {}",
            socket_dir.display()
        );
        return;
    }
    let url = db.url();
    let user = url
        .trim_start_matches("postgres://")
        .split('@')
        .next()
        .unwrap_or("postgres")
        .to_string();
    let options = DatabaseOptions::new(format!(
        "postgres://{user}@localhost/{}?host={}",
        db.name(),
        socket_dir.display()
    ));
    match collect(options).await {
        Ok(snapshot) => assert_eq!(snapshot, sqlite_fixture().await),
        // The socket may ask for peer authentication of an OS user that is not the role.
        Err(error) => {
            let text = error.to_string();
            assert!(text.contains("authentication"), "{text}");
            eprintln!("note: socket reached but authentication refused: {text}");
        }
    }
}

#[tokio::test]
async fn tls_sslmode_and_ca_file() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let mut admin = db.connect().await;
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut admin)
        .await
        .expect("show ssl");
    let missing_ca = DatabaseOptions {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..db.options()
    };
    let error = PostgresSource::new(missing_ca)
        .err()
        .expect("missing ca_file");
    assert!(
        matches!(error, SourceError::Config(_))
            && error.to_string().contains("/nonexistent/ca.pem"),
        "{error}"
    );
    if ssl != "on" {
        eprintln!("SKIPPED (part): the server has ssl = {ssl}");
        return;
    }
    let required = DatabaseOptions::new(format!("{}?sslmode=require", db.url()));
    assert_eq!(
        collect(required).await.expect("sslmode=require"),
        sqlite_fixture().await
    );
    let snakeoil = std::path::Path::new("/etc/ssl/certs/ssl-cert-snakeoil.pem");
    if snakeoil.exists() {
        // The server's self-signed certificate does not name 127.0.0.1: verify-full must refuse it.
        let options = DatabaseOptions {
            ca_file: Some(snakeoil.into()),
            connect_timeout: Duration::from_secs(3),
            ..DatabaseOptions::new(format!("{}?sslmode=verify-full", db.url()))
        };
        let error = collect_error(options, Duration::from_secs(10)).await;
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
        match collect(options).await {
            Ok(snapshot) => assert_eq!(snapshot, sqlite_fixture().await),
            Err(error) => {
                eprintln!("note: verify-full by name with the snake-oil certificate as CA: {error}")
            }
        }
    }
    let source = PostgresSource::new(DatabaseOptions::new(format!(
        "{}?sslmode=require",
        db.url()
    )))
    .expect("source");
    source.collect().await.expect("collect over TLS");
    let encrypted: bool = sqlx::query_scalar(
        "SELECT bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = current_database() AND a.application_name = $1",
    )
    .bind(crate::APPLICATION_NAME)
    .fetch_one(&mut admin)
    .await
    .expect("pg_stat_ssl");
    assert!(encrypted, "the exporter's connection is not encrypted");
}
