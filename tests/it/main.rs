//! The integration tests: one binary, a module per theme, so that a change relinks one test executable
//! instead of one per file.
//!
//! - [`common`]: SQLite fixture hubs (from `kobo_testkit::data`, the test material), worker directories,
//!   jails in a process of their own;
//! - [`support`]: the fixture served over XML-RPC, in kobo's wire format, scrape helpers;
//! - the crate `kobo_testkit`: the test material, the fault proxy, the exposition and OpenMetrics checkers,
//!   kobo's wire format and a hub served over XML-RPC.
//!
//! Tests that change the process's environment or working directory (figment's `Jail`) run in a child
//! process of their own ([`common::jail`]), so that the tests running beside them never see those changes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is the verdict"
)]

mod common;
mod support;

mod backends;
mod binary;
mod cli;
mod compat;
mod concurrency;
mod config;
mod conformance;
mod deadline;
mod deploy;
mod faults;
mod hubs;
mod monitoring;
mod negotiation;
mod prometheus;
mod render_reuse;
mod routes;
mod security;
mod sqlite_source;
mod task_flow;
mod task_metrics;
mod xmlrpc;
