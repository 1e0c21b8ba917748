//! The logger at `log_level = "debug"`.
//!
//! At that level Rocket's own logger prints every request and every response in full (`received request:
//! Request { ... headers: { ..., "authorization": "Basic ..." } }`), so the base64 credentials of every
//! authenticated scrape would reach the log. Rocket offers no way to leave those two records out, and its
//! logger is installed only if no other one is: at `debug` the exporter installs this one first. It writes
//! what Rocket's would (to stdout, in Rocket's layout, without colours), except those dumps: the request
//! line, the route matched and the outcome are still logged by Rocket at `normal` and `debug`.
//!
//! At the other levels Rocket's own logger runs, unchanged: they never dump headers.

use std::io::Write as _;

use log::{Level, LevelFilter, Log, Metadata, Record};
use rocket::config::LogLevel;

/// Where Rocket logs the full request and response (`rocket::server`, at debug level: nothing else of
/// Rocket's logs there at that level).
const DUMPS_TARGET: &str = "rocket::server";

struct DebugLogger;

/// Rocket's launch lines (`rocket::launch`) are shown at every level but `off`, as Rocket's logger does.
fn is_launch(metadata: &Metadata<'_>) -> bool {
    metadata.target().contains("rocket::launch")
}

impl Log for DebugLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        match log::max_level().to_level() {
            Some(max) => metadata.level() <= max || is_launch(metadata),
            None => false,
        }
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if record.level() >= Level::Debug && record.target() == DUMPS_TARGET {
            return;
        }
        // Rocket marks continuation lines with a target ending in `_` and indents them.
        let indented = record.target().ends_with('_');
        let level = if is_launch(record.metadata()) {
            Level::Info
        } else {
            record.level()
        };
        let line = match (level, indented) {
            (Level::Error, false) => format!("Error: {}\n", record.args()),
            (Level::Warn, false) => format!("Warning: {}\n", record.args()),
            (Level::Debug, _) => format!(
                "\n--> {}:{}\n\t{}\n",
                record.file().unwrap_or(""),
                record.line().unwrap_or(0),
                record.args()
            ),
            _ => format!("{}\n", record.args()),
        };
        let prefix = if indented { "   >> " } else { "" };
        // A closed stdout is no reason to fail a request: the line is lost.
        let _ = write!(std::io::stdout().lock(), "{prefix}{line}");
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

/// At `log_level = "debug"`, installs the logger that leaves out Rocket's request and response dumps.
/// Call it before the Rocket instance is built (Rocket installs its own logger then). No-op at the other
/// levels, or if a logger is already installed.
pub fn install(config: &rocket::Config) {
    if config.log_level != LogLevel::Debug {
        return;
    }
    if log::set_boxed_logger(Box::new(DebugLogger)).is_ok() {
        log::set_max_level(LevelFilter::Trace);
    }
}
