//! The HTTP endpoints and the Rocket instance that serves them.
//!
//! `GET` (and, by Rocket's automatic handling, `HEAD`) on `/kobo_exporter/metrics`,
//! `/kobo_exporter/metrics/` (the reference exporter's paths) and `/metrics`; a landing page at `/`;
//! `/-/healthy` and `/-/ready` for orchestration, as Prometheus and its exporters have them. Other methods
//! on these paths are a 405 with `Allow: GET, HEAD`. Under a path prefix (`/kobo`), the landing page is
//! at `/kobo/` (its links are relative): `/kobo` redirects there.
//!
//! The metrics are OpenMetrics 1.0.0 for an `Accept: application/openmetrics-text` that is preferred, the
//! text format 0.0.4 otherwise, and gzipped for an `Accept-Encoding` that takes gzip.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use rocket::data::Data;
use rocket::fairing::AdHoc;
use rocket::http::uri::Origin;
use rocket::http::{Header, Method, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::content::RawHtml;
use rocket::response::{self, Redirect, Responder, Response};
use rocket::route::{self, Handler, Route};
use rocket::{Build, Orbit, Rocket, State, get, routes};

use crate::auth::{self, Authorized, BasicAuth};
use crate::collector::{HubCollector, TIMEOUT_MARGIN};
use crate::compression;
use crate::exposition::Format;

/// How the routes are served.
#[derive(Debug)]
pub struct WebOptions {
    /// Where the routes are mounted (`/`, or a prefix such as `/kobo` behind a reverse proxy).
    pub path_prefix: String,
    /// HTTP basic auth for every route; `None`: none.
    pub basic_auth: Option<BasicAuth>,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            path_prefix: "/".into(),
            basic_auth: None,
        }
    }
}

/// The Rocket instance for this figment and collector, at `/`, without auth.
pub fn build(figment: Figment, collector: HubCollector) -> Rocket<Build> {
    build_with(figment, collector, WebOptions::default())
}

/// The Rocket instance for this figment, collector and web options.
pub fn build_with(figment: Figment, collector: HubCollector, web: WebOptions) -> Rocket<Build> {
    let mut rocket = rocket::custom(figment)
        .manage(collector)
        .attach(AdHoc::on_shutdown("abandon collections", |rocket| {
            Box::pin(async move { abandon_collections(rocket) })
        }))
        .mount(
            web.path_prefix.as_str(),
            routes![index, metrics, healthy, ready],
        )
        // The reference exporter's path: the same handler (the metric set is the configuration's).
        .mount(
            format!("{}/kobo_exporter", web.path_prefix.trim_end_matches('/')),
            routes![metrics],
        )
        .mount(
            web.path_prefix.as_str(),
            MethodNotAllowed::routes(&web.path_prefix),
        )
        .register(
            web.path_prefix.as_str(),
            rocket::catchers![auth::unauthorized],
        );
    if let Some(basic_auth) = web.basic_auth {
        rocket = rocket.manage(basic_auth);
    }
    rocket
}

/// On shutdown (SIGTERM, Ctrl-C), scrapes in flight must be answered within Rocket's `shutdown.grace`,
/// after which it cuts connections: collections still running then (minus the margin for sending the
/// answer) are abandoned, and their scrapes answer `kobo_up 0`.
fn abandon_collections(rocket: &Rocket<Orbit>) {
    if let Some(collector) = rocket.state::<HubCollector>() {
        let grace = Duration::from_secs(rocket.config().shutdown.grace.into());
        collector.shut_down(grace.saturating_sub(TIMEOUT_MARGIN));
    }
}

/// Prometheus' scrape timeout for this request, from its `X-Prometheus-Scrape-Timeout-Seconds` header.
pub struct ScrapeTimeout(Option<Duration>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ScrapeTimeout {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let timeout = request
            .headers()
            .get_one("X-Prometheus-Scrape-Timeout-Seconds")
            .and_then(|value| value.trim().parse::<f64>().ok())
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok());
        Outcome::Success(ScrapeTimeout(timeout))
    }
}

/// What the client accepts: the exposition format (`Accept`) and gzip (`Accept-Encoding`).
pub struct Negotiated {
    format: Format,
    gzip: bool,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Negotiated {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let joined = |name: &str| {
            let values: Vec<&str> = request.headers().get(name).collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        Outcome::Success(Negotiated {
            format: Format::negotiate(joined("Accept").as_deref()),
            gzip: compression::accepts_gzip(joined("Accept-Encoding").as_deref()),
        })
    }
}

/// A metrics answer: the body in the negotiated format, gzipped if asked for; `Vary` tells caches that it
/// depends on `Accept` and `Accept-Encoding`.
pub struct MetricsResponse {
    status: Status,
    content_type: &'static str,
    body: Vec<u8>,
    gzip: bool,
}

impl<'r> Responder<'r, 'static> for MetricsResponse {
    fn respond_to(self, _request: &'r Request<'_>) -> response::Result<'static> {
        let mut builder = Response::build();
        builder
            .status(self.status)
            .raw_header("Content-Type", self.content_type)
            .raw_header("Vary", "Accept, Accept-Encoding");
        if self.gzip {
            builder.raw_header("Content-Encoding", "gzip");
        }
        builder
            .sized_body(self.body.len(), Cursor::new(self.body))
            .ok()
    }
}

/// Collects and renders. A scrape that gives no metrics at all (a failed collection with the reference
/// set) is a 503 with the cause in the body (never gzipped); the collector has logged it.
async fn scrape(
    collector: &HubCollector,
    timeout: ScrapeTimeout,
    negotiated: Negotiated,
) -> MetricsResponse {
    let failed = |message: String| MetricsResponse {
        status: Status::ServiceUnavailable,
        content_type: "text/plain; charset=utf-8",
        body: format!("kobo-exporter: {message}\n").into_bytes(),
        gzip: false,
    };
    let text = match collector.scrape_as(timeout.0, negotiated.format).await {
        Ok(text) => text,
        Err(e) => return failed(e.0),
    };
    let (body, gzip) = if negotiated.gzip {
        match compression::gzip(text.as_bytes()) {
            Ok(packed) => (packed, true),
            Err(e) => {
                log::error!("gzip failed, answering uncompressed: {e}");
                (text.into_bytes(), false)
            }
        }
    } else {
        (text.into_bytes(), false)
    };
    MetricsResponse {
        status: Status::Ok,
        content_type: negotiated.format.content_type(),
        body,
        gzip,
    }
}

#[get("/metrics")]
async fn metrics(
    _auth: Authorized,
    collector: &State<HubCollector>,
    timeout: ScrapeTimeout,
    negotiated: Negotiated,
) -> MetricsResponse {
    scrape(collector, timeout, negotiated).await
}

/// The process serves.
#[get("/-/healthy")]
fn healthy(_auth: Authorized) -> &'static str {
    "kobo-exporter is Healthy.\n"
}

/// The last collection from the source succeeded (one is run if none has yet).
#[get("/-/ready")]
async fn ready(_auth: Authorized, collector: &State<HubCollector>) -> (Status, &'static str) {
    collector.ensure_collected().await;
    match collector.last_collection_succeeded() {
        Some(true) => (Status::Ok, "kobo-exporter is Ready.\n"),
        _ => (
            Status::ServiceUnavailable,
            "kobo-exporter is not ready: the last collection failed.\n",
        ),
    }
}

/// The landing page. Its links are relative: under a prefix it must be at `/prefix/`, so `/prefix`
/// redirects there (with a relative `Location`, right whatever prefix a proxy adds in front).
#[get("/")]
fn index(
    _auth: Authorized,
    collector: &State<HubCollector>,
    uri: &Origin<'_>,
) -> Result<RawHtml<String>, Box<Redirect>> {
    let path = uri.path().as_str();
    if !path.ends_with('/') {
        let last = path.rsplit('/').next().unwrap_or_default();
        return Err(Box::new(Redirect::permanent(format!("./{last}/"))));
    }
    Ok(RawHtml(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kobo-exporter</title></head>\n<body>\n\
         <h1>kobo-exporter {version}</h1>\n\
         <p>Prometheus exporter for a kobo hub. Source: <b>{kind}</b> ({description}).</p>\n\
         <ul>\n<li><a href=\"metrics\">metrics</a></li>\n\
         <li><a href=\"kobo_exporter/metrics\">kobo_exporter/metrics</a> (django-kobo-exporter's path)</li>\n</ul>\n\
         </body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        kind = collector.source().kind(),
        description = html_escape(&collector.source().describe()),
    )))
}

/// The paths served, under the mount point.
const PATHS: [&str; 5] = [
    "/",
    "/metrics",
    "/kobo_exporter/metrics",
    "/-/healthy",
    "/-/ready",
];

/// A 405 for the methods other than `GET` and `HEAD` on the paths served (after the credentials, when
/// basic auth is on); other paths go on to the 404.
#[derive(Clone)]
struct MethodNotAllowed {
    /// [`PATHS`] under the prefix, without a trailing slash (but `/`).
    paths: Arc<[String]>,
}

impl MethodNotAllowed {
    /// One catch-all route per method, below every other route.
    fn routes(prefix: &str) -> Vec<Route> {
        let prefix = prefix.trim_end_matches('/');
        let paths: Arc<[String]> = PATHS
            .iter()
            .map(
                |path| match format!("{prefix}{path}").trim_end_matches('/') {
                    "" => "/".to_string(),
                    full => full.to_string(),
                },
            )
            .collect();
        [
            Method::Post,
            Method::Put,
            Method::Delete,
            Method::Patch,
            Method::Options,
        ]
        .into_iter()
        .map(|method| {
            let handler = MethodNotAllowed {
                paths: Arc::clone(&paths),
            };
            Route::ranked(100, method, "/<path..>", handler)
        })
        .collect()
    }

    fn serves(&self, path: &str) -> bool {
        let path = match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        self.paths.iter().any(|served| served == path)
    }
}

/// The 405 answer.
#[derive(rocket::Responder)]
#[response(status = 405, content_type = "plain")]
struct NotAllowed {
    body: &'static str,
    allow: Header<'static>,
}

#[rocket::async_trait]
impl Handler for MethodNotAllowed {
    async fn handle<'r>(&self, request: &'r Request<'_>, data: Data<'r>) -> route::Outcome<'r> {
        if !self.serves(request.uri().path().as_str()) {
            return route::Outcome::Forward((data, Status::NotFound));
        }
        match request.guard::<Authorized>().await {
            Outcome::Success(Authorized) => route::Outcome::from(
                request,
                NotAllowed {
                    body: "kobo-exporter: method not allowed: only GET and HEAD\n",
                    allow: Header::new("Allow", "GET, HEAD"),
                },
            ),
            Outcome::Error((status, ())) | Outcome::Forward(status) => {
                route::Outcome::Error(status)
            }
        }
    }
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
