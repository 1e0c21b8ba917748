//! The scrape's deadline reaches the source (the databases' own tests are in the backend suite,
//! `the_scrape_deadline_cancels_a_blocked_statement_on_the_server`): with Prometheus' scrape timeout at
//! 2 s, a SQLite hub held by a writer and an XML-RPC hub that never answers each give `kobo_up 0` within
//! 2 s, and one second later nothing of the collection is left running.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kobo_exporter::api::{CollectRequest, DataSource};
use tokio::io::AsyncReadExt;

use crate::common;

/// `/metrics` with Prometheus' scrape timeout of 2 s: the body and how long it took.
async fn scrape(client: &rocket::local::asynchronous::Client) -> (String, Duration) {
    let (_, body, took) = common::scrape_within(client, Duration::from_secs(2)).await;
    (body, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_hub_held_by_a_writer_answers_by_the_deadline_and_the_wait_ends_before_it() {
    let (_dir, path) = common::fixture_sqlite();
    let source: Arc<dyn DataSource> =
        Arc::new(kobo_backend_sqlite::open(&path, None).expect("open"));
    let direct = kobo_backend_sqlite::open(&path, None).expect("open");
    let client = common::app_client(source).await;
    let (body, _) = scrape(&client).await;
    assert!(body.contains("\nkobo_up 1\n"), "{body}");
    let writer = rusqlite::Connection::open(&path).expect("writer");
    writer
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("exclusive lock");
    let (body, took) = scrape(&client).await;
    assert!(body.contains("\nkobo_up 0\n"), "while locked: {body}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    // The statement's wait for the lock ends before the deadline, with SQLite's own error: nothing is left
    // waiting on the blocking pool (SQLite's usual 5 s busy timeout would still be waiting a second later).
    let started = Instant::now();
    let error = direct
        .collect(&CollectRequest::within(Duration::from_millis(1500)))
        .await
        .expect_err("locked");
    let took = started.elapsed();
    assert!(error.to_string().contains("database is locked"), "{error}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    writer.execute_batch("COMMIT").expect("commit");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (body, _) = scrape(&client).await;
    assert!(body.contains("\nkobo_up 1\n"), "after the lock: {body}");
}

#[tokio::test]
async fn a_stalled_xmlrpc_hub_answers_by_the_deadline_and_the_request_is_dropped() {
    kobo_testkit::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    // A hub that reads the request and never answers; it reports when the exporter hangs up.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<Instant>();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut buffer = [0u8; 4096];
        while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
        let _ = closed_tx.send(Instant::now());
    });
    let options = kobo_backend_xmlrpc::XmlRpcOptions {
        request_timeout: Duration::from_secs(60),
        ..kobo_backend_xmlrpc::XmlRpcOptions::new(format!("http://127.0.0.1:{port}/client/"))
    };
    let source: Arc<dyn DataSource> =
        Arc::new(kobo_backend_xmlrpc::XmlRpcSource::new(options).expect("source"));
    let client = common::app_client(source).await;
    let (body, took) = scrape(&client).await;
    let answered = Instant::now();
    assert!(body.contains("\nkobo_up 0\n"), "{body}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let closed = tokio::time::timeout(Duration::from_secs(1), closed_rx)
        .await
        .expect("the exporter hung up within a second of the answer")
        .expect("the hub saw the connection");
    assert!(closed <= answered + Duration::from_secs(1));
}
