//! The HTTP endpoints and the Rocket instance that serves them.
//!
//! `GET` (and, by Rocket's automatic handling, `HEAD`) on `/kobo_exporter/metrics`,
//! `/kobo_exporter/metrics/` (the reference exporter's paths) and `/metrics` (the `kobo` table's own hub
//! and the process-wide metrics); `/probe?target=<name>` (a named hub, the multi-target pattern); a
//! landing page at `/`; `/-/healthy` and `/-/ready` for orchestration, and `POST /-/reload`, as
//! Prometheus and its exporters have them. Other methods on these paths are a 405 with the `Allow` of
//! the path. Under a path prefix (`/kobo`), the landing page is at `/kobo/` (its links are relative):
//! `/kobo` redirects there.
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
use rocket::{Build, Orbit, Rocket, State, get, post, put, routes};

use crate::auth::{self, AuthState, Authorized, BasicAuth};
use crate::collector::{HubCollector, TIMEOUT_MARGIN};
use crate::compression;
use crate::exposition::Format;
use crate::hubs::{Hub, HubSet, Hubs};
use crate::metrics::exporter;
use crate::reload::Reloader;
use crate::render::Exposition;

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

/// The Rocket instance for this figment, collector (the one hub, the `kobo` table's) and web options.
pub fn build_with(figment: Figment, collector: HubCollector, web: WebOptions) -> Rocket<Build> {
    let hubs = Arc::new(Hubs::new(HubSet::single(collector)));
    build_hubs(
        figment,
        hubs,
        AuthState::new(web.basic_auth),
        &web.path_prefix,
        None,
    )
}

/// The Rocket instance serving these hubs, letting in the users of `auth`, under `path_prefix`;
/// `POST /-/reload` reloads through `reloader` when there is one and it is enabled.
pub fn build_hubs(
    figment: Figment,
    hubs: Arc<Hubs>,
    auth: AuthState,
    path_prefix: &str,
    reloader: Option<Arc<Reloader>>,
) -> Rocket<Build> {
    rocket::custom(figment)
        .manage(hubs)
        .manage(auth)
        .attach(AdHoc::on_shutdown("abandon collections", |rocket| {
            Box::pin(async move { abandon_collections(rocket) })
        }))
        .mount(
            path_prefix,
            routes![
                index,
                metrics,
                probe,
                healthy,
                ready,
                reload_post,
                reload_put
            ],
        )
        // The reference exporter's path: the same handler (the metric set is the configuration's).
        .mount(
            format!("{}/kobo_exporter", path_prefix.trim_end_matches('/')),
            routes![metrics],
        )
        .mount(path_prefix, MethodNotAllowed::routes(path_prefix))
        .register(path_prefix, rocket::catchers![auth::unauthorized])
        .manage(Reloading(reloader))
}

/// The reloader of `POST /-/reload`, if the instance has one (always managed: Rocket refuses to launch
/// with a route that asks for state it does not manage, even as an `Option`).
struct Reloading(Option<Arc<Reloader>>);

/// On shutdown (SIGTERM, Ctrl-C), scrapes in flight must be answered within Rocket's `shutdown.grace`,
/// after which it cuts connections: collections still running then (minus the margin for sending the
/// answer) are abandoned, and their scrapes answer `kobo_up 0`.
fn abandon_collections(rocket: &Rocket<Orbit>) {
    if let Some(hubs) = rocket.state::<Arc<Hubs>>() {
        let grace = Duration::from_secs(rocket.config().shutdown.grace.into());
        for hub in hubs.current().every() {
            hub.collector
                .shut_down(grace.saturating_sub(TIMEOUT_MARGIN));
        }
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

/// Collects and renders (with `process_wide` families after the exporter's own). A scrape that gives no
/// metrics at all (a failed collection with the reference set) is a 503 with the cause in the body (never
/// gzipped); the collector has logged it.
async fn scrape(
    collector: &HubCollector,
    timeout: ScrapeTimeout,
    negotiated: Negotiated,
    process_wide: &[prometheus::proto::MetricFamily],
) -> MetricsResponse {
    match collector
        .scrape_exposition(timeout.0, negotiated.format, process_wide)
        .await
    {
        Ok(exposition) => metrics_response(exposition, &negotiated),
        Err(e) => text_response(Status::ServiceUnavailable, e.0),
    }
}

/// A plain-text answer (an error's), never gzipped.
fn text_response(status: Status, message: String) -> MetricsResponse {
    MetricsResponse {
        status,
        content_type: "text/plain; charset=utf-8",
        body: format!("kobo-exporter: {message}\n").into_bytes(),
        gzip: false,
    }
}

/// An exposition in the negotiated format, gzipped (from its pieces) if asked for.
fn metrics_response(exposition: Exposition, negotiated: &Negotiated) -> MetricsResponse {
    let (body, gzip) = if negotiated.gzip {
        match exposition.gzip() {
            Ok(packed) => (packed, true),
            Err(e) => {
                log::error!("gzip failed, answering uncompressed: {e}");
                (exposition.into_string().into_bytes(), false)
            }
        }
    } else {
        (exposition.into_string().into_bytes(), false)
    };
    MetricsResponse {
        status: Status::Ok,
        content_type: negotiated.format.content_type(),
        body,
        gzip,
    }
}

/// The `kobo` table's own hub, with the process-wide metrics (the reload status); without such a hub,
/// the process-wide metrics alone.
#[get("/metrics")]
async fn metrics(
    _auth: Authorized,
    hubs: &State<Arc<Hubs>>,
    reloading: &State<Reloading>,
    timeout: ScrapeTimeout,
    negotiated: Negotiated,
) -> MetricsResponse {
    let reload = reloading.0.as_ref().map(|r| r.status());
    let set = hubs.current();
    match &set.default {
        Some(hub) => {
            let families = reload
                .map(|status| exporter::reload_families(&status))
                .unwrap_or_default();
            scrape(&hub.collector, timeout, negotiated, &families).await
        }
        None => {
            let status = reload.unwrap_or(exporter::ReloadStatus {
                successful: true,
                success_timestamp: 0.0,
            });
            let process = cfg!(target_os = "linux")
                .then(prometheus::process_collector::ProcessCollector::for_self);
            let families = exporter::process_families(&status, process.as_ref());
            let mut text = String::new();
            match negotiated.format.encode_into(&families, &mut text) {
                Ok(()) => {
                    negotiated.format.finish(&mut text);
                    metrics_response(Exposition::from(text), &negotiated)
                }
                Err(e) => text_response(
                    Status::InternalServerError,
                    format!("rendering the metrics failed: {e}"),
                ),
            }
        }
    }
}

/// A named hub's metrics (`kobo.hubs.<target>`): the multi-target pattern. The target is a configured
/// name only, never a URL; the error names no secret and does not echo what was asked.
#[get("/probe?<target>")]
async fn probe(
    _auth: Authorized,
    hubs: &State<Arc<Hubs>>,
    target: Option<String>,
    timeout: ScrapeTimeout,
    negotiated: Negotiated,
) -> MetricsResponse {
    let set = hubs.current();
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return text_response(
            Status::BadRequest,
            format!(
                "give the hub to probe: /probe?target=NAME (the hubs configured: {})",
                set.names()
            ),
        );
    };
    let Some(hub) = set.named.get(&target).map(Arc::clone) else {
        return text_response(
            Status::NotFound,
            format!(
                "no hub of that name is configured (`kobo.hubs.<name>`; the hubs configured: {})",
                set.names()
            ),
        );
    };
    // The scrape keeps its hub, not the whole set: a reload meanwhile frees the hubs it removes.
    drop(set);
    scrape(&hub.collector, timeout, negotiated, &[]).await
}

/// The process serves.
#[get("/-/healthy")]
fn healthy(_auth: Authorized) -> &'static str {
    "kobo-exporter is Healthy.\n"
}

/// The last collection from the `kobo` table's own hub succeeded (one is run if none has yet). The named
/// hubs do not count: a probed target that is down is its `kobo_up`'s to say, as for other multi-target
/// exporters.
#[get("/-/ready")]
async fn ready(_auth: Authorized, hubs: &State<Arc<Hubs>>) -> (Status, &'static str) {
    let set = hubs.current();
    let Some(hub) = &set.default else {
        return (Status::Ok, "kobo-exporter is Ready.\n");
    };
    hub.collector.ensure_collected().await;
    match hub.collector.last_collection_succeeded() {
        Some(true) => (Status::Ok, "kobo-exporter is Ready.\n"),
        _ => (
            Status::ServiceUnavailable,
            "kobo-exporter is not ready: the last collection failed.\n",
        ),
    }
}

/// Reloads the configuration when `kobo.enable_reload` is on (403 otherwise, as Prometheus answers with
/// its lifecycle API off); 500 with the reason when the new configuration is refused.
#[post("/-/reload")]
async fn reload_post(_auth: Authorized, reloading: &State<Reloading>) -> (Status, String) {
    reload(reloading, "POST /-/reload").await
}

#[put("/-/reload")]
async fn reload_put(_auth: Authorized, reloading: &State<Reloading>) -> (Status, String) {
    reload(reloading, "PUT /-/reload").await
}

async fn reload(reloading: &Reloading, trigger: &str) -> (Status, String) {
    match reloading.0.as_ref().filter(|r| r.enabled()) {
        None => (
            Status::Forbidden,
            "kobo-exporter: reloading over HTTP is off: set `enable_reload = true` in the kobo table \
             (SIGHUP reloads too)\n"
                .into(),
        ),
        Some(reloader) => match reloader.reload(trigger).await {
            Ok(done) => (
                Status::Ok,
                format!("kobo-exporter: configuration reloaded: {done}\n"),
            ),
            Err(e) => (
                Status::InternalServerError,
                format!("kobo-exporter: {}\n", e.replace(['\r', '\n'], " ")),
            ),
        },
    }
}

/// The landing page. Its links are relative: under a prefix it must be at `/prefix/`, so `/prefix`
/// redirects there (with a relative `Location`, right whatever prefix a proxy adds in front).
#[get("/")]
fn index(
    _auth: Authorized,
    hubs: &State<Arc<Hubs>>,
    uri: &Origin<'_>,
) -> Result<RawHtml<String>, Box<Redirect>> {
    let path = uri.path().as_str();
    if !path.ends_with('/') {
        let last = path.rsplit('/').next().unwrap_or_default();
        return Err(Box::new(Redirect::permanent(format!("./{last}/"))));
    }
    let set = hubs.current();
    let source = |hub: &Hub| {
        format!(
            "<b>{}</b> ({})",
            hub.collector.source().kind(),
            html_escape(&hub.collector.source().describe())
        )
    };
    let mut body = match &set.default {
        Some(hub) => format!(
            "<p>Prometheus exporter for a kobo hub. Source: {}.</p>\n\
             <ul>\n<li><a href=\"metrics\">metrics</a></li>\n\
             <li><a href=\"kobo_exporter/metrics\">kobo_exporter/metrics</a> (django-kobo-exporter's path)</li>\n</ul>\n",
            source(hub)
        ),
        None => "<p>Prometheus exporter for kobo hubs.</p>\n\
                 <ul>\n<li><a href=\"metrics\">metrics</a> (the exporter's own)</li>\n</ul>\n"
            .to_string(),
    };
    if !set.named.is_empty() {
        body.push_str("<h2>Hubs</h2>\n<ul>\n");
        for (name, hub) in &set.named {
            // Hub names are ASCII letters, digits, `-`, `_` and `.`: nothing to escape in a query.
            body.push_str(&format!(
                "<li><a href=\"probe?target={name}\">{name}</a>: {}</li>\n",
                source(hub)
            ));
        }
        body.push_str("</ul>\n");
    }
    Ok(RawHtml(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kobo-exporter</title></head>\n<body>\n\
         <h1>kobo-exporter {version}</h1>\n{body}</body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
    )))
}

/// The paths served, under the mount point, with the methods each allows.
const PATHS: [(&str, &str); 7] = [
    ("/", "GET, HEAD"),
    ("/metrics", "GET, HEAD"),
    ("/kobo_exporter/metrics", "GET, HEAD"),
    ("/probe", "GET, HEAD"),
    ("/-/healthy", "GET, HEAD"),
    ("/-/ready", "GET, HEAD"),
    ("/-/reload", "POST, PUT"),
];

/// A 405 for the methods a path served does not allow (after the credentials, when basic auth is on);
/// other paths go on to the 404.
#[derive(Clone)]
struct MethodNotAllowed {
    /// [`PATHS`] under the prefix, without a trailing slash (but `/`), with their `Allow`.
    paths: Arc<[(String, &'static str)]>,
}

impl MethodNotAllowed {
    /// One catch-all route per method, below every other route (so a method a path allows is the
    /// path's own route's).
    fn routes(prefix: &str) -> Vec<Route> {
        let prefix = prefix.trim_end_matches('/');
        let paths: Arc<[(String, &'static str)]> = PATHS
            .iter()
            .map(|&(path, allow)| {
                let full = match format!("{prefix}{path}").trim_end_matches('/') {
                    "" => "/".to_string(),
                    full => full.to_string(),
                };
                (full, allow)
            })
            .collect();
        [
            Method::Get,
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

    /// The `Allow` of a path served.
    fn allow(&self, path: &str) -> Option<&'static str> {
        let path = match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        self.paths
            .iter()
            .find(|(served, _)| served == path)
            .map(|&(_, allow)| allow)
    }
}

/// The 405 answer.
#[derive(rocket::Responder)]
#[response(status = 405, content_type = "plain")]
struct NotAllowed {
    body: String,
    allow: Header<'static>,
}

#[rocket::async_trait]
impl Handler for MethodNotAllowed {
    async fn handle<'r>(&self, request: &'r Request<'_>, data: Data<'r>) -> route::Outcome<'r> {
        let Some(allow) = self.allow(request.uri().path().as_str()) else {
            return route::Outcome::Forward((data, Status::NotFound));
        };
        // A method the path allows that reached here matched none of its routes (`/-/ready/x`...).
        if allow.split(", ").any(|m| m == request.method().as_str()) {
            return route::Outcome::Forward((data, Status::NotFound));
        }
        match request.guard::<Authorized>().await {
            Outcome::Success(Authorized) => route::Outcome::from(
                request,
                NotAllowed {
                    body: format!(
                        "kobo-exporter: method not allowed: only {}\n",
                        allow.replace(", ", " and ")
                    ),
                    allow: Header::new("Allow", allow),
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
