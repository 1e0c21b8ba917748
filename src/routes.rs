//! The HTTP endpoints and the Rocket instance that serves them.
//!
//! `GET` (and, by Rocket's automatic handling, `HEAD`) on `/kobo_exporter/metrics`,
//! `/kobo_exporter/metrics/` (the reference exporter's paths) and `/metrics`; a landing page at `/`.

use std::sync::Arc;

use figment::Figment;
use kobo_backend_api::DataSource;
use rocket::http::{ContentType, Status};
use rocket::response::content::RawHtml;
use rocket::{get, routes, Build, Rocket, State};

/// What the routes share: the data source.
pub struct Exporter {
    pub source: Arc<dyn DataSource>,
}

/// The Rocket instance for this figment and source.
pub fn build(figment: Figment, source: Arc<dyn DataSource>) -> Rocket<Build> {
    rocket::custom(figment)
        .manage(Exporter { source })
        .mount("/", routes![index, metrics, reference_metrics])
}

/// The exposition text's Content-Type, [`exposition::CONTENT_TYPE`](crate::exposition::CONTENT_TYPE).
fn content_type() -> ContentType {
    ContentType::new("text", "plain").with_params([("version", "0.0.4"), ("charset", "utf-8")])
}

/// Collects from the source and renders. A failed collection is a 503 with the cause in the body and in
/// the log (no stale or partial numbers are served).
async fn scrape(exporter: &Exporter) -> (Status, (ContentType, String)) {
    let error = |status: Status, message: String| {
        log::error!("scrape failed: {message}");
        (
            status,
            (ContentType::Plain, format!("kobo-exporter: {message}\n")),
        )
    };
    let snapshot = match exporter.source.collect().await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            return error(
                Status::ServiceUnavailable,
                format!(
                    "collecting from the {} source failed: {e}",
                    exporter.source.kind()
                ),
            )
        }
    };
    for warning in &snapshot.warnings {
        log::warn!("{warning}");
    }
    match crate::render(&snapshot) {
        Ok(text) => (Status::Ok, (content_type(), text)),
        Err(e) => error(
            Status::InternalServerError,
            format!("rendering the metrics failed: {e}"),
        ),
    }
}

#[get("/metrics")]
async fn metrics(exporter: &State<Exporter>) -> (Status, (ContentType, String)) {
    scrape(exporter).await
}

#[get("/kobo_exporter/metrics")]
async fn reference_metrics(exporter: &State<Exporter>) -> (Status, (ContentType, String)) {
    scrape(exporter).await
}

#[get("/")]
fn index(exporter: &State<Exporter>) -> RawHtml<String> {
    RawHtml(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kobo-exporter</title></head>\n<body>\n\
         <h1>kobo-exporter {version}</h1>\n\
         <p>Prometheus exporter for a kobo hub. Source: <b>{kind}</b> ({description}).</p>\n\
         <ul>\n<li><a href=\"metrics\">metrics</a></li>\n\
         <li><a href=\"kobo_exporter/metrics\">kobo_exporter/metrics</a> (django-kobo-exporter's path)</li>\n</ul>\n\
         </body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        kind = exporter.source.kind(),
        description = html_escape(&exporter.source.describe()),
    ))
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
