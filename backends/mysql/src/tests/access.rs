//! Who may read and how: the least-privilege user, the read-only transaction, passwords that never show,
//! Unix sockets and TLS.

use std::time::Duration;

use kobo_backend_api::testing::comparable;
use kobo_backend_api::{DataSource, DatabaseOptions, SourceError};
use mysql_async::prelude::Queryable;

use super::{collect, collect_error, fixture_database, sqlite_fixture};
use crate::testing::READER_PASSWORD;
use crate::{connect, snapshot_tx, MysqlSource};

#[tokio::test]
async fn least_privilege_user_can_collect_but_not_write() {
    let Some(mut db) = fixture_database().await else {
        return;
    };
    let reader = db.create_reader().await;
    let source = MysqlSource::new(DatabaseOptions::new(
        db.user_url(&reader, Some(READER_PASSWORD)),
    ))
    .expect("source");
    assert_eq!(
        comparable(
            source
                .collect_with_tasks()
                .await
                .expect("collect as reader")
        ),
        sqlite_fixture().await
    );
    let mut conn = connect::acquire(&source.pool, Duration::from_secs(3), &source.context)
        .await
        .expect("conn");
    let error = conn
        .query_drop("INSERT INTO hub_channel (id, name) VALUES (99, 'x')")
        .await
        .expect_err("write");
    assert!(
        connect::describe(&error).contains("lacks a privilege"),
        "{error}"
    );
}

#[tokio::test]
async fn the_exporters_transaction_is_read_only_even_for_an_administrator() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let source = MysqlSource::new(DatabaseOptions {
        query_timeout: Duration::from_millis(2500),
        ..db.options()
    })
    .expect("source");
    let mut conn = connect::acquire(&source.pool, Duration::from_secs(3), &source.context)
        .await
        .expect("conn");
    let mut tx = conn.start_transaction(snapshot_tx()).await.expect("begin");
    let settings: Option<(String, String, String)> = tx
        .query_first("SELECT @@tx_isolation, @@max_statement_time, @@group_concat_max_len")
        .await
        .expect("settings");
    let (isolation, limit, concat) = settings.expect("one row");
    assert_eq!(
        (isolation.as_str(), concat.as_str()),
        ("REPEATABLE-READ", "16777216")
    );
    assert_eq!(
        limit.parse::<f64>().ok(),
        Some(2.5),
        "max_statement_time is the query timeout"
    );
    let error = tx
        .query_drop("UPDATE hub_worker SET enabled = 1 - enabled")
        .await
        .expect_err("write");
    let message = connect::describe(&error);
    assert!(message.contains("read-only"), "{message}");
}

#[tokio::test]
async fn the_exporters_session_is_read_only_outside_a_transaction_too() {
    // The worker query of a scrape runs without START TRANSACTION: the session must make it read-only.
    let Some(db) = fixture_database().await else {
        return;
    };
    let source = MysqlSource::new(db.options()).expect("source");
    let mut conn = connect::acquire(&source.pool, Duration::from_secs(3), &source.context)
        .await
        .expect("conn");
    let error = conn
        .query_drop("UPDATE hub_worker SET enabled = 1 - enabled")
        .await
        .expect_err("write");
    let message = connect::describe(&error);
    assert!(message.contains("read-only"), "{message}");
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
            // The separate password wins over the (right) one in the URL.
            password: Some(secret.into()),
            ..DatabaseOptions::new(db.user_url(&reader, Some(READER_PASSWORD)))
        },
    ] {
        let error = collect_error(options, Duration::from_secs(5)).await;
        let text = format!("{error} {error:?}");
        assert!(matches!(error, SourceError::Connect { .. }), "{text}");
        assert!(
            text.contains("Access denied") && text.contains("check the user and password"),
            "{text}"
        );
        assert!(
            !text.contains(secret) && !text.contains(READER_PASSWORD),
            "a password leaked: {text}"
        );
        assert!(text.contains(db.name()), "names the database: {text}");
    }
    let source =
        MysqlSource::new(DatabaseOptions::new(db.user_url(&reader, Some(secret)))).expect("source");
    assert!(
        !source.describe().contains(secret) && source.describe().contains("***"),
        "{}",
        source.describe()
    );
    assert_eq!(source.kind(), "mysql");
}

#[tokio::test]
async fn unix_socket_parameter() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let socket = "/run/mysqld/mysqld.sock";
    if !std::path::Path::new(socket).exists() {
        eprintln!("SKIPPED (part): no MariaDB socket at {socket}");
        return;
    }
    let url = db.url();
    let user = url
        .trim_start_matches("mysql://")
        .split(['@', ':'])
        .next()
        .unwrap_or("root")
        .to_string();
    let options = DatabaseOptions::new(format!(
        "mariadb://{user}@localhost/{}?socket={socket}",
        db.name()
    ));
    match collect(options).await {
        Ok(snapshot) => assert_eq!(snapshot, sqlite_fixture().await),
        // 'user'@'localhost' may be another account than 'user'@'127.0.0.1' (e.g. unix_socket auth).
        Err(error) => {
            let text = error.to_string();
            assert!(text.contains("Access denied"), "{text}");
            eprintln!("note: socket reached but the account was refused: {text}");
        }
    }
}

#[tokio::test]
async fn tls_modes_are_enforced() {
    let Some(db) = fixture_database().await else {
        return;
    };
    let missing_ca = DatabaseOptions {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..db.options()
    };
    let error = MysqlSource::new(missing_ca).err().expect("missing ca_file");
    assert!(
        matches!(error, SourceError::Config(_))
            && error.to_string().contains("/nonexistent/ca.pem"),
        "{error}"
    );
    let mut admin = db.connect().await;
    let have_ssl: Option<(String, String)> = admin
        .query_first("SHOW VARIABLES LIKE 'have_ssl'")
        .await
        .expect("have_ssl");
    let have_ssl = have_ssl.map(|(_, v)| v).unwrap_or_default();
    let required = DatabaseOptions {
        connect_timeout: Duration::from_secs(3),
        ..DatabaseOptions::new(format!("{}?ssl-mode=REQUIRED", db.url()))
    };
    if have_ssl == "YES" {
        assert_eq!(
            collect(required).await.expect("ssl-mode=REQUIRED"),
            sqlite_fixture().await
        );
    } else {
        // TLS required but the server has none: refused, never silently in plain text.
        let error = collect_error(required, Duration::from_secs(5)).await;
        assert!(matches!(error, SourceError::Connect { .. }), "{error:?}");
        eprintln!("ssl-mode=REQUIRED against a server without TLS ({have_ssl}): {error}");
    }
}
