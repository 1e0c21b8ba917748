//! kobo-exporter: a Prometheus exporter for kobo hubs.
//!
//! - [`config`]: the `kobo` table of the figment config (Rocket.toml, `KOBO_*` environment variables),
//!   with its named hubs (`kobo.hubs.<name>`).
//! - [`source`]: picks and opens the data source from `kobo.url`; [`hubs`]: the hubs served, each with
//!   its own collector; [`reload`]: the configuration read again on SIGHUP or `POST /-/reload`.
//! - [`collector`]: the collection policy of a scrape: deadline, single flight, minimum interval,
//!   back-off, task data between refreshes, statistics; [`render`]: the outcome and the exporter's
//!   status to exposition text, with its encoding cache.
//! - [`metrics`]: turns a [`HubSnapshot`](kobo_backend_api::HubSnapshot) into metric families, one module
//!   per group of metrics.
//! - [`exposition`]: writes metric families as Prometheus text or ([`openmetrics`]) OpenMetrics.
//! - [`negotiation`]: the one parser of `Accept` and `Accept-Encoding` weighted lists.
//! - [`routes`]: the HTTP endpoints and the Rocket instance; [`auth`]: optional HTTP basic auth.
//! - [`cli`]: the command line (`--config`, `--check-config`, `--once`, `--target`) and start-up;
//!   [`signals`]: SIGHUP reloads, the other unused signals are ignored; [`logging`]: the logger at `log_level = "debug"`; [`idle`]: closes
//!   connections that send no request.

pub mod auth;
pub mod cli;
pub mod collector;
pub mod compression;
pub mod config;
pub mod exposition;
pub mod hubs;
pub mod idle;
pub mod logging;
pub mod metrics;
pub mod negotiation;
pub mod openmetrics;
pub mod reload;
pub mod render;
pub mod routes;
pub mod signals;
pub mod source;

pub use kobo_backend_api as api;

/// Renders the hub metrics of a snapshot (the full set, without the exporter's own) as Prometheus text
/// exposition format 0.0.4.
pub fn render(snapshot: &api::HubSnapshot) -> Result<String, prometheus::Error> {
    exposition::encode(&metrics::hub_families(snapshot, metrics::MetricSet::All))
}
