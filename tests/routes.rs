//! The HTTP surface, through Rocket's local client: every metrics route with GET and HEAD, the content
//! type, the landing page, a 404, and a source that fails.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use kobo_backend_sqlite::SqliteSource;
use kobo_exporter::api::{DataSource, HubSnapshot, SourceError, WorkerDir};
use kobo_exporter::exposition::CONTENT_TYPE;
use rocket::http::Status;
use rocket::local::asynchronous::Client;

const METRIC_PATHS: [&str; 3] = [
    "/kobo_exporter/metrics",
    "/kobo_exporter/metrics/",
    "/metrics",
];

/// A client for the app on the demo hub (the SQLite file the repository carries).
async fn demo_client() -> Client {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = SqliteSource::open(
        root.join("demo/hub.sqlite3"),
        Some(WorkerDir::new(root.join("demo/worker"))),
    )
    .expect("demo hub");
    client(Arc::new(source)).await
}

async fn client(source: Arc<dyn DataSource>) -> Client {
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    Client::tracked(kobo_exporter::routes::build(figment, source))
        .await
        .expect("rocket")
}

#[rocket::async_test]
async fn every_metrics_path_serves_the_exposition_on_get() {
    let client = demo_client().await;
    let mut bodies = Vec::new();
    for path in METRIC_PATHS {
        let response = client.get(path).dispatch().await;
        assert_eq!(response.status(), Status::Ok, "{path}");
        let content_type = response
            .headers()
            .get_one("Content-Type")
            .map(str::to_string);
        assert_eq!(content_type.as_deref(), Some(CONTENT_TYPE), "{path}");
        let body = response.into_string().await.expect("body");
        let parsed = common::exposition::parse(&body).expect("parses");
        assert_eq!(
            parsed.families["kobo_worker_enabled"].samples.len(),
            5,
            "{path}"
        );
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "all paths serve the same"
    );
}

#[rocket::async_test]
async fn head_gives_the_headers_without_a_body() {
    let client = demo_client().await;
    for path in METRIC_PATHS {
        let response = client.head(path).dispatch().await;
        assert_eq!(response.status(), Status::Ok, "{path}");
        assert_eq!(
            response.headers().get_one("Content-Type"),
            Some(CONTENT_TYPE),
            "{path}"
        );
        assert_eq!(
            response.into_string().await.unwrap_or_default(),
            "",
            "{path}"
        );
    }
}

#[rocket::async_test]
async fn landing_page_names_the_source_and_links_the_metrics() {
    let client = demo_client().await;
    let response = client.get("/").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(
        response.content_type(),
        Some(rocket::http::ContentType::HTML)
    );
    let body = response.into_string().await.expect("body");
    assert!(body.contains("<b>sqlite</b>"), "{body}");
    assert!(body.contains("href=\"metrics\""), "{body}");
    assert!(body.contains("href=\"kobo_exporter/metrics\""), "{body}");
}

#[rocket::async_test]
async fn unknown_paths_and_methods_are_refused() {
    let client = demo_client().await;
    for path in [
        "/nope",
        "/kobo_exporter",
        "/kobo_exporter/metrics/x",
        "/metrics/x",
    ] {
        assert_eq!(
            client.get(path).dispatch().await.status(),
            Status::NotFound,
            "{path}"
        );
    }
    assert_eq!(
        client.post("/metrics").dispatch().await.status(),
        Status::NotFound
    );
}

/// A source that always fails, with a message that must reach the body but never a credential.
struct FailingSource;

#[async_trait]
impl DataSource for FailingSource {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn describe(&self) -> String {
        "postgres://kobo:***@db/hub".into()
    }
    async fn collect(&self) -> Result<HubSnapshot, SourceError> {
        Err(SourceError::Connect {
            target: self.describe(),
            message: "connection refused".into(),
        })
    }
}

#[rocket::async_test]
async fn a_failing_source_gives_503_with_the_cause_and_no_numbers() {
    let client = client(Arc::new(FailingSource)).await;
    let response = client.get("/metrics").dispatch().await;
    assert_eq!(response.status(), Status::ServiceUnavailable);
    let body = response.into_string().await.expect("body");
    assert!(body.contains("connection refused"), "{body}");
    assert!(!body.contains("kobo_worker_"), "{body}");
    let landing = client
        .get("/")
        .dispatch()
        .await
        .into_string()
        .await
        .expect("body");
    assert!(
        landing.contains("<b>postgres</b>") && landing.contains("***"),
        "{landing}"
    );
}
