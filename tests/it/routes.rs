//! The HTTP surface, through Rocket's local client: every metrics route with GET and HEAD, the content
//! type, the landing page, a 404, and a source that fails.

use std::sync::Arc;

use crate::support::fake;
use kobo_backend_sqlite::SqliteSource;
use kobo_exporter::api::DataSource;
use kobo_exporter::collector::{CollectorOptions, HubCollector};
use kobo_exporter::exposition::CONTENT_TYPE;
use kobo_exporter::metrics::MetricSet;
use rocket::http::Status;
use rocket::local::asynchronous::Client;

const METRIC_PATHS: [&str; 3] = [
    "/kobo_exporter/metrics",
    "/kobo_exporter/metrics/",
    "/metrics",
];

use crate::common::{self, app_client as client, app_client_with as client_with, demo_client};

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
        let parsed = kobo_testkit::exposition::parse(&body).expect("parses");
        assert_eq!(
            parsed.families["kobo_worker_enabled"].samples.len(),
            5,
            "{path}"
        );
        // The hub's metrics; the exporter's own (durations, process) change from scrape to scrape.
        let mut hub = parsed.families;
        hub.retain(|name, _| !name.starts_with("kobo_exporter_") && !name.starts_with("process_"));
        bodies.push(hub);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "all paths serve the same hub metrics"
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
    use rocket::http::Method::{Get, Post};
    let client = demo_client().await;
    // Another method on a path that is not served is a 404 too (a served one: a 405, below).
    for (method, path) in [
        (Get, "/nope"),
        (Get, "/kobo_exporter"),
        (Get, "/kobo_exporter/metrics/x"),
        (Get, "/metrics/x"),
        (Post, "/nope"),
    ] {
        assert_eq!(
            client.req(method, path).dispatch().await.status(),
            Status::NotFound,
            "{method} {path}"
        );
    }
}

#[rocket::async_test]
async fn other_methods_on_served_paths_are_405_with_allow() {
    let client = demo_client().await;
    let paths = [
        "/",
        "/metrics",
        "/metrics/",
        "/kobo_exporter/metrics",
        "/kobo_exporter/metrics/",
        "/-/healthy",
        "/-/ready",
    ];
    let methods = [
        rocket::http::Method::Post,
        rocket::http::Method::Put,
        rocket::http::Method::Delete,
        rocket::http::Method::Patch,
        rocket::http::Method::Options,
    ];
    for path in paths {
        for method in methods {
            let response = client.req(method, path).body("x").dispatch().await;
            assert_eq!(
                response.status(),
                Status::MethodNotAllowed,
                "{method} {path}"
            );
            assert_eq!(
                response.headers().get_one("Allow"),
                Some("GET, HEAD"),
                "{method} {path}"
            );
        }
    }
}

/// The app on the demo hub under `/kobo`, with basic auth for `prometheus` (password `s3cret`).
async fn prefixed_client_with_basic_auth() -> Client {
    let hash = bcrypt::hash("s3cret", 4).expect("hash");
    let auth = kobo_exporter::auth::BasicAuth::new([("prometheus".to_string(), hash)].into())
        .expect("auth");
    let web = kobo_exporter::routes::WebOptions {
        path_prefix: "/kobo".into(),
        basic_auth: Some(auth),
    };
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    let collector = HubCollector::new(Arc::new(demo_source()), CollectorOptions::default());
    Client::tracked(kobo_exporter::routes::build_with(figment, collector, web))
        .await
        .expect("rocket")
}

/// The `Authorization` header of user `prometheus` with this password.
fn basic_auth(password: &str) -> rocket::http::Header<'static> {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{password}"));
    rocket::http::Header::new("Authorization", format!("Basic {encoded}"))
}

/// `method path` as user `prometheus` with this password.
async fn request_as<'c>(
    client: &'c Client,
    method: rocket::http::Method,
    path: &str,
    password: &str,
) -> rocket::local::asynchronous::LocalResponse<'c> {
    client
        .req(method, path.to_string())
        .header(basic_auth(password))
        .dispatch()
        .await
}

#[rocket::async_test]
async fn under_a_prefix_other_methods_need_credentials_then_get_405() {
    use rocket::http::Method::Delete;
    let client = prefixed_client_with_basic_auth().await;
    for path in ["/kobo", "/kobo/", "/kobo/metrics", "/kobo/-/ready"] {
        let anonymous = client.delete(path).dispatch().await;
        assert_eq!(anonymous.status(), Status::Unauthorized, "{path}");
        let authorized = request_as(&client, Delete, path, "s3cret").await;
        assert_eq!(authorized.status(), Status::MethodNotAllowed, "{path}");
        assert_eq!(authorized.headers().get_one("Allow"), Some("GET, HEAD"));
    }
    for path in ["/metrics", "/kobo/nope"] {
        let outside = request_as(&client, Delete, path, "s3cret").await;
        assert_eq!(outside.status(), Status::NotFound, "{path}");
    }
}

#[rocket::async_test]
async fn under_a_prefix_the_bare_prefix_redirects_to_the_landing_page() {
    let web = kobo_exporter::routes::WebOptions {
        path_prefix: "/kobo".into(),
        basic_auth: None,
    };
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    let collector = HubCollector::new(Arc::new(demo_source()), CollectorOptions::default());
    let client = Client::tracked(kobo_exporter::routes::build_with(figment, collector, web))
        .await
        .expect("rocket");
    let bare = client.get("/kobo").dispatch().await;
    assert_eq!(bare.status(), Status::PermanentRedirect);
    // Relative: `/kobo` + `./kobo/` is `/kobo/`, and `/outer/kobo/` behind a proxy that adds `/outer`.
    assert_eq!(bare.headers().get_one("Location"), Some("./kobo/"));
    let landing = client.get("/kobo/").dispatch().await;
    assert_eq!(landing.status(), Status::Ok);
    let body = landing.into_string().await.expect("body");
    assert!(body.contains("href=\"metrics\""), "{body}");
    // The link resolved against /kobo/ is served.
    assert_eq!(
        client.get("/kobo/metrics").dispatch().await.status(),
        Status::Ok
    );
}

/// A source that always fails, with a message that must reach the body but never a credential.
fn failing_source() -> Arc<dyn DataSource> {
    Arc::new(fake::refusing("postgres://kobo:***@db/hub", || {}))
}

#[rocket::async_test]
async fn a_failing_source_gives_kobo_up_0_and_no_hub_metrics() {
    let client = client(failing_source()).await;
    for _ in 0..2 {
        let response = client.get("/metrics").dispatch().await;
        assert_eq!(response.status(), Status::Ok);
        let body = response.into_string().await.expect("body");
        let parsed = kobo_testkit::exposition::parse(&body).expect("parses");
        assert_eq!(parsed.sample("kobo_up", &[]), Some(0.0), "{body}");
        assert!(!body.contains("kobo_worker_"), "no hub metrics: {body}");
        assert_eq!(
            parsed.sample(
                "kobo_exporter_build_info",
                &[
                    ("source", "postgres"),
                    ("version", env!("CARGO_PKG_VERSION"))
                ]
            ),
            Some(1.0)
        );
        assert!(
            parsed
                .families
                .contains_key("process_resident_memory_bytes"),
            "{body}"
        );
    }
    // Two failed scrapes, two errors.
    let body = common::get_text(&client, "/metrics").await;
    assert!(
        body.contains("kobo_exporter_collect_errors_total{collector=\"workers\"} 3"),
        "{body}"
    );
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

#[rocket::async_test]
async fn with_the_reference_set_a_failing_source_gives_503_with_the_cause() {
    let options = CollectorOptions {
        metrics: MetricSet::Reference,
        ..CollectorOptions::default()
    };
    let client = client_with(failing_source(), options).await;
    let response = client.get("/kobo_exporter/metrics").dispatch().await;
    assert_eq!(response.status(), Status::ServiceUnavailable);
    let body = response.into_string().await.expect("body");
    assert!(body.contains("connection refused"), "{body}");
    assert!(!body.contains("kobo_"), "{body}");
}

#[rocket::async_test]
async fn the_reference_set_serves_exactly_the_six_families() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = kobo_backend_sqlite::open(root.join("demo/hub.sqlite3"), None).expect("demo hub");
    let options = CollectorOptions {
        metrics: MetricSet::Reference,
        ..CollectorOptions::default()
    };
    let client = client_with(Arc::new(source), options).await;
    let body = client
        .get("/kobo_exporter/metrics")
        .dispatch()
        .await
        .into_string()
        .await
        .expect("body");
    let parsed = kobo_testkit::exposition::parse(&body).expect("parses");
    let names: Vec<&str> = parsed.order.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        kobo_exporter::metrics::workers::REFERENCE_GAUGES.map(|g| g.0)
    );
}

fn demo_source() -> SqliteSource {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    kobo_backend_sqlite::open(root.join("demo/hub.sqlite3"), None).expect("demo hub")
}

#[rocket::async_test]
async fn a_stalled_source_is_cut_off_at_prometheus_scrape_timeout() {
    // Takes 30 s per collection.
    let inner = Arc::new(demo_source());
    let source = fake::FakeSource::new("sqlite", inner.describe(), move |request| {
        let inner = inner.clone();
        async move {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            inner.collect(&request).await
        }
    });
    let client = client(Arc::new(source)).await;
    let (status, body, elapsed) =
        common::scrape_within(&client, std::time::Duration::from_millis(1500)).await;
    // 1.5 s minus the 0.5 s margin, plus a little for the answer.
    assert!(
        elapsed >= std::time::Duration::from_millis(950),
        "{elapsed:?}"
    );
    assert!(
        elapsed < std::time::Duration::from_millis(1400),
        "{elapsed:?}"
    );
    assert_eq!(status, Status::Ok);
    assert!(body.contains("kobo_up 0"), "{body}");
    assert!(
        body.contains("kobo_exporter_collect_errors_total{collector=\"workers\"} 1"),
        "{body}"
    );
    assert!(!body.contains("kobo_worker_enabled{"), "{body}");
}

#[rocket::async_test]
async fn health_and_readiness() {
    let demo = demo_client().await;
    let failing = client_with(failing_source(), CollectorOptions::default()).await;
    // Healthy while it runs; ready only while its source answers.
    for (client, source, path, status) in [
        (&demo, "demo", "/-/healthy", Status::Ok),
        (&demo, "demo", "/-/ready", Status::Ok),
        (&failing, "failing", "/-/healthy", Status::Ok),
        (&failing, "failing", "/-/ready", Status::ServiceUnavailable),
    ] {
        assert_eq!(
            client.get(path).dispatch().await.status(),
            status,
            "{source} source, {path}"
        );
    }
}

#[rocket::async_test]
async fn path_prefix_and_basic_auth() {
    use rocket::http::Method::Get;
    let client = prefixed_client_with_basic_auth().await;
    for path in [
        "/kobo/metrics",
        "/kobo/kobo_exporter/metrics",
        "/kobo/",
        "/kobo/-/healthy",
        "/kobo/-/ready",
    ] {
        let anonymous = client.get(path).dispatch().await;
        assert_eq!(anonymous.status(), Status::Unauthorized, "{path}");
        assert!(
            anonymous
                .headers()
                .get_one("WWW-Authenticate")
                .is_some_and(|h| h.starts_with("Basic")),
            "{path}"
        );
        let wrong = request_as(&client, Get, path, "wrong").await;
        assert_eq!(wrong.status(), Status::Unauthorized, "{path}");
        let right = request_as(&client, Get, path, "s3cret").await;
        assert_eq!(right.status(), Status::Ok, "{path}");
    }
    let outside = request_as(&client, Get, "/metrics", "s3cret").await;
    assert_eq!(outside.status(), Status::NotFound);
}
