//! kobo-testkit: what the tests and benchmarks of kobo-exporter share (never part of the exporter).
//!
//! - [`data`]: the test material in `testkit/data/` (kobo's schemas, the fixture hub, the reference
//!   exporter's output, XML-RPC wire captures of a real hub);
//! - [`wire`]: kobo's XML-RPC wire format, byte for byte (Python's marshaller, `Worker.export()`);
//! - [`hub_server`]: the fake hubs' HTTP: a server on hyper with per-request handlers, requests read by
//!   dxr, and the one raw-TCP server, for malformed HTTP;
//! - [`xmlrpc_hub`]: a kobo hub served over XML-RPC from any hub database, with request counters;
//! - [`proxy`]: a TCP proxy that injects faults between the exporter and its source;
//! - [`collect`]: collecting from a source with an unhurried deadline ([`CollectExt`]);
//! - [`db`]: throw-away hub databases on the PostgreSQL and MariaDB test servers, behind one trait
//!   (features `postgres` and `mysql`);
//! - [`exposition`] and [`openmetrics`]: parsers and checkers of what the exporter serves.

pub mod collect;
pub mod db;
pub mod exposition;
pub mod hub_server;
pub mod openmetrics;
pub mod proxy;
pub mod wire;
pub mod xmlrpc_hub;

pub use collect::CollectExt;

/// Installs ring as the process's rustls crypto provider, as kobo-exporter's `main` does (the XML-RPC
/// source refuses to start without one). Idempotent: the fake hubs call it, tests that make a source
/// without one call it themselves.
pub fn install_crypto_provider() {
    // An error means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The test material: `testkit/data/<name>`.
pub mod data {
    use std::path::{Path, PathBuf};

    /// The folder of the test material.
    pub fn dir() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data"))
    }

    /// The path of a file of the test material, e.g. `schema-postgres.sql`, `fixture.sql`.
    pub fn path(name: &str) -> PathBuf {
        dir().join(name)
    }

    /// The text of a file of the test material; panics with its path when it cannot be read (a test needs
    /// it).
    pub fn read(name: &str) -> String {
        let path = path(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }
}
