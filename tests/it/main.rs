//! The integration tests: one binary, a module per theme, so that a change relinks one test executable
//! instead of one per file.
//!
//! - [`common`]: the test material (`testkit/data/`), SQLite fixture hubs, worker directories, the
//!   exposition and OpenMetrics parsers, the skip-or-fail rule for database servers;
//! - [`support`]: the fault proxy, the local XML-RPC hub, kobo's wire format, scrape helpers.
//!
//! Tests that change the process's environment or working directory (figment's `Jail`) run in a child
//! process of their own (`rusty_fork`), so that the tests running beside them never see those changes.

mod common;
mod support;

mod binary;
mod cli;
mod compat;
mod concurrency;
mod config;
mod conformance;
mod deploy;
mod faults;
mod monitoring;
mod negotiation;
mod prometheus;
mod render_reuse;
mod routes;
mod security;
mod sqlite_source;
mod task_metrics;
mod xmlrpc;
