//! The XML-RPC source: reads a kobo hub through its client API (`<hub>/xmlrpc/client/`), with no database
//! access and no login on a stock hub.
//!
//! Per scrape it calls `client.list_workers(True)`, `client.list_workers(False)`, then
//! `client.get_worker_info(name)` for every worker, batched through `system.multicall` in chunks of
//! [`XmlRpcOptions::multicall_chunk`]: `2 + ceil(workers / chunk)` HTTP requests, over one reused
//! connection pool. It never calls anything else ([`ALLOWED_METHODS`]): no `worker.*` method (those need a
//! worker's key and fake its last seen) and nothing that changes the hub.
//!
//! What it provides, per metric: `enabled`, `ready`, `current_load`, `max_load`, `task_count` (kobo's
//! cached columns, as the database sources), arches and channels, and last seen (from the hub's
//! worker_dir, which only the hub can read: `LastSeen::Never` for a worker that never called in). It has no
//! `max_tasks` and no `min_priority` (`None`).
//!
//! A worker whose `client.get_worker_info` fails inside the multicall (a fault, `{}` for a worker deleted
//! between the calls, a malformed export) is left out with a warning; the scrape goes on. Anything else
//! (no connection, a timeout, an HTTP error, a fault on `client.list_workers`, a body that is not XML-RPC
//! or is over the size cap) fails the scrape with an error naming the hub URL (redacted) and the HTTP
//! status. Passwords and tokens never appear in `Debug` output, errors, warnings or logs.
//!
//! Modules: [`options`] (settings), `client` (HTTP), `rpc` (XML-RPC encoding, decoding, the allow-list),
//! `decode` (worker exports to records).

mod client;
mod decode;
pub mod options;
mod rpc;

use async_trait::async_trait;
use dxr::Value;
use kobo_backend_api::{DataSource, HubSnapshot, SourceError, WorkerRecord};

pub use options::{XmlRpcOptions, DEFAULT_USER_AGENT};
pub use rpc::ALLOWED_METHODS;

use client::HubClient;
use rpc::ItemError;

/// A kobo hub's XML-RPC client API.
#[derive(Debug)]
pub struct XmlRpcSource {
    client: HubClient,
    multicall_chunk: usize,
}

impl XmlRpcSource {
    /// Checks the options and prepares the HTTP client (reading the CA file, if any). Does no network I/O:
    /// an unreachable hub shows at the first scrape.
    pub fn new(options: XmlRpcOptions) -> Result<Self, SourceError> {
        Ok(XmlRpcSource {
            client: HubClient::new(&options)?,
            multicall_chunk: options.multicall_chunk,
        })
    }

    /// Every worker's name, enabled and disabled, sorted and de-duplicated (a worker enabled or disabled
    /// between the two calls shows in both lists).
    async fn worker_names(&self) -> Result<Vec<String>, SourceError> {
        let mut names = self.client.list_workers(true).await?;
        names.extend(self.client.list_workers(false).await?);
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }
}

#[async_trait]
impl DataSource for XmlRpcSource {
    fn kind(&self) -> &'static str {
        "xmlrpc"
    }

    fn describe(&self) -> String {
        self.client.shown().to_string()
    }

    async fn collect(&self) -> Result<HubSnapshot, SourceError> {
        let names = self.worker_names().await?;
        let mut workers: Vec<WorkerRecord> = Vec::with_capacity(names.len());
        let mut warnings = Vec::new();
        let mut without_last_seen = 0usize;
        for chunk in names.chunks(self.multicall_chunk) {
            let results = self.client.worker_infos(chunk).await?;
            for (name, result) in chunk.iter().zip(results) {
                match worker(name, result) {
                    Ok(decoded) => {
                        if let Some(note) = decoded.note {
                            warnings.push(self.client.scrub(sentence(format!(
                                "The worker {name:?} has no last seen in this scrape: {note}"
                            ))));
                        }
                        without_last_seen += usize::from(decoded.no_last_seen_field);
                        workers.push(decoded.record);
                    }
                    Err(why) => warnings.push(self.client.scrub(sentence(format!(
                        "The worker {name:?} is left out of this scrape: {why}"
                    )))),
                }
            }
        }
        if without_last_seen > 0 {
            warnings.push(format!(
                "{without_last_seen} worker(s) exported by {} have no last_seen field (a kobo hub older than \
                 the exporter expects?): their last seen is unavailable.",
                self.client.shown()
            ));
        }
        let mut snapshot = HubSnapshot::new(workers);
        snapshot.warnings = warnings;
        Ok(snapshot)
    }
}

/// One worker's record from its answer inside the multicall, or why it has none.
fn worker(name: &str, result: Result<Value, ItemError>) -> Result<decode::DecodedWorker, String> {
    let value = result.map_err(|error| match error {
        ItemError::Fault(fault) => format!(
            "client.get_worker_info answered fault {}: {}",
            fault.code(),
            rpc::summarise_fault(fault.string())
        ),
        ItemError::Malformed(what) => {
            format!("system.multicall answered {what} for its client.get_worker_info call")
        }
    })?;
    decode::worker(name, value)
}

/// `text` ending with a full stop.
fn sentence(mut text: String) -> String {
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_does_no_io_and_describes_the_redacted_url() {
        let source = XmlRpcSource::new(XmlRpcOptions::new(
            "https://mon:s3cret@hub.invalid/hub/xmlrpc/client",
        ))
        .unwrap();
        assert_eq!(source.kind(), "xmlrpc");
        assert_eq!(source.describe(), "https://hub.invalid/hub/xmlrpc/client/");
        assert!(!format!("{source:?}").contains("s3cret"));
    }

    #[test]
    fn ca_file_problems_are_config_errors() {
        let missing = XmlRpcOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..XmlRpcOptions::new("https://hub.invalid/")
        };
        let e = XmlRpcSource::new(missing).unwrap_err();
        assert!(
            matches!(&e, SourceError::Config(m) if m.contains("/nonexistent/ca.pem")),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("kobo-xmlrpc-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let garbage = XmlRpcOptions {
            ca_file: Some(dir.clone()),
            ..XmlRpcOptions::new("https://hub.invalid/")
        };
        let e = XmlRpcSource::new(garbage).unwrap_err().to_string();
        std::fs::remove_file(&dir).unwrap();
        assert!(
            e.contains("holds no certificate") || e.contains("not a PEM"),
            "{e}"
        );
    }

    #[test]
    fn multicall_answers_become_records_or_reasons() {
        let fault = Err(ItemError::Fault(dxr::Fault::new(
            1,
            "Traceback (most recent call last):\n  File \"x\"\nValueError: bad\n<LOCALS>\n".into(),
        )));
        assert_eq!(
            worker("w", fault).unwrap_err(),
            "client.get_worker_info answered fault 1: ValueError: bad"
        );
        let odd = Err(ItemError::Malformed(
            "a string instead of [value] or a fault".into(),
        ));
        assert!(worker("w", odd)
            .unwrap_err()
            .starts_with("system.multicall answered a string"));
        assert!(worker("w", Ok(Value::Struct(Default::default())))
            .unwrap_err()
            .contains("no such worker"));
        assert_eq!(sentence("a.".into()), "a.");
        assert_eq!(sentence("a".into()), "a.");
    }

    #[test]
    fn tls_verification_can_be_turned_off() {
        let options = XmlRpcOptions {
            tls_verify: false,
            ..XmlRpcOptions::new("https://hub.invalid/")
        };
        assert!(XmlRpcSource::new(options).is_ok());
        let bad_agent = XmlRpcOptions {
            user_agent: "bad\nagent".into(),
            ..XmlRpcOptions::new("https://hub.invalid/")
        };
        assert!(matches!(
            XmlRpcSource::new(bad_agent),
            Err(SourceError::Config(_))
        ));
    }
}
