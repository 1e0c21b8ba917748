//! The XML-RPC source: reads a kobo hub through its client API (`<hub>/xmlrpc/client/`), with no database
//! access and no login on a stock hub.
//!
//! Per scrape ([`DataSource::collect`]) it makes one `system.multicall` of `client.list_workers(True)` and
//! `client.list_workers(False)`, then calls `client.get_worker_info(name)` for every worker, batched
//! through `system.multicall` in chunks of [`XmlRpcOptions::multicall_chunk`] (default
//! [`DEFAULT_MULTICALL_CHUNK`], 5000): `1 + ceil(workers / chunk)` HTTP requests, over one reused
//! connection pool. That is 2 requests per scrape whatever the number of workers, up to the chunk size (a
//! hub with no workers needs only the first). It never calls anything else ([`ALLOWED_METHODS`]): no
//! `worker.*` method (those need a worker's key and fake its last seen) and nothing that changes the hub;
//! the calls inside a multicall are checked against the same list.
//!
//! What it provides, per metric: `enabled`, `ready`, `current_load`, `max_load`, `task_count` (kobo's
//! cached columns, as the database sources), arches and channels, and last seen (from the hub's
//! worker_dir, which only the hub can read: `LastSeen::Never` for a worker that never called in). It has no
//! `max_tasks` and no `min_priority` (`None`).
//!
//! # Task metrics: only when enabled
//!
//! A collection with `tasks` asked for ([`kobo_backend_api::CollectRequest`]) adds the task aggregates
//! ([`kobo_backend_api::TaskSummary`]: tasks by state, arch and channel with the oldest creation time,
//! ASSIGNED and OPEN tasks per worker). kobo's API has
//! no aggregate call, so it reads the workers as above and then makes:
//!
//! 1. one `client.get_tasks([], [0, 1, 2, 8])`: the flat export of every non-archived task in an active
//!    state (FREE, ASSIGNED, OPEN, CREATED). It is **unpaginated and costly for the hub**: kobo loads and
//!    exports every such task (its owner, arguments and result too) in one response, which must arrive
//!    within [`XmlRpcOptions::request_timeout`] and fit in [`XmlRpcOptions::max_response_bytes`] (roughly 2
//!    KB per task);
//! 2. one `system.multicall` of `client.get_tasks(ids, [])` for the task flow ([`flow`]): the ids that left
//!    the active set, the new ids and the late ones, sized by what changed since the last refresh (none
//!    when a first refresh finds no active task);
//! 3. at most one `system.multicall` of `client.task_info(id)`, only when a task refers to an arch or
//!    channel that no worker export names (an arch nobody serves, i.e. a stranded queue): one task per such
//!    id, whose nested `arch` and `channel` structs give the names (the flow's tasks included).
//!
//! That is at most `1 + ceil(workers / chunk) + 2` requests (4 up to the chunk size), plus one when an arch
//! or channel needs a name. The exporter's collector calls it only when the operator sets `task_metrics =
//! true` for an XML-RPC source (the default there is `false`), and then at most once every
//! `task_refresh_interval`; the scrapes in between use [`DataSource::collect`] and the cached task data.
//! When it fails (a fault on `client.get_tasks`, a timeout, a response over the size cap), the collector
//! drops the task metrics and serves the workers.
//!
//! The aggregates are computed here by names, as the SQL sources group them (arch and channel names, not
//! ids; same-named channels are one group). The reads are not one consistent snapshot: a task may change
//! state between the calls. A task that cannot be read, or whose arch or channel still has no name, is
//! left out of the task metrics with a warning (starting with [`TASK_WARNING_PREFIX`]), never a failure.
//!
//! A worker whose `client.get_worker_info` fails inside the multicall (a fault, `{}` for a worker deleted
//! between the calls, a malformed export) is left out with a warning; the scrape goes on, unless not one of
//! the listed workers can be read (those deleted in between aside): then the collection fails, as the SQL
//! sources do on a row they cannot read, rather than pass for a hub without workers. Anything else
//! (no connection, a timeout, an HTTP error, a fault on either `client.list_workers` call inside their
//! multicall or on `client.get_tasks`, a body that is not XML-RPC or is over the size cap) fails the
//! collection with an error naming the hub URL (redacted) and the HTTP status. Passwords and tokens never
//! appear in `Debug` output, errors, warnings or logs, in any form (basic auth's base64 `user:password`
//! included, and the credentials of any `Authorization` header a hub or proxy echoes); what the hub sends
//! is scrubbed before it is shortened, and its control characters are escaped (`\n`, `\u{1b}`), so that a
//! hub cannot forge log lines.
//!
//! Modules: [`options`] (settings), `client` (HTTP), `rpc` (XML-RPC encoding, decoding, the allow-list),
//! `decode` (worker exports to records), `tasks` (task exports to aggregates), [`flow`] (the task flow).

pub mod backend;
mod client;
mod decode;
pub mod flow;
pub mod options;
mod rpc;
mod tasks;
mod worker_infos;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use dxr::Value;
use kobo_backend_api::secrets::Secrets;
use kobo_backend_api::{
    CollectRequest, DataSource, HubSnapshot, Part, SourceError, TaskFlowOptions, TaskState,
    Warning, WorkerRecord,
};

pub use backend::{BACKEND, HttpOptions};
pub use options::{DEFAULT_MULTICALL_CHUNK, DEFAULT_USER_AGENT, XmlRpcOptions};
pub use rpc::ALLOWED_METHODS;
pub use tasks::TASK_WARNING_PREFIX;

use client::HubClient;
use flow::{FlowState, Plan};
use rpc::ItemError;
use tasks::{Directory, TaskExport};
use worker_infos::{Answer, Decoded, WorkerInfos};

/// A kobo hub's XML-RPC client API.
#[derive(Debug)]
pub struct XmlRpcSource {
    client: HubClient,
    multicall_chunk: usize,
    task_flow: TaskFlowOptions,
    /// What the task flow keeps between refreshes ([`flow`]); replaced only when a collection succeeds.
    flow: Mutex<Option<FlowState>>,
}

impl XmlRpcSource {
    /// Checks the options and prepares the HTTP client (reading the CA file, if any). Does no network I/O:
    /// an unreachable hub shows at the first scrape.
    pub fn new(options: XmlRpcOptions) -> Result<Self, SourceError> {
        Ok(XmlRpcSource {
            client: HubClient::new(&options)?,
            multicall_chunk: options.multicall_chunk,
            task_flow: options.task_flow,
            flow: Mutex::new(None),
        })
    }

    /// Every worker's name, enabled and disabled, sorted and de-duplicated (a worker enabled or disabled
    /// between the two calls of the multicall may show in both lists, or in neither).
    async fn worker_names(&self) -> Result<Vec<String>, SourceError> {
        let (mut names, disabled) = self.client.worker_lists().await?;
        names.extend(disabled);
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    /// Every worker's record (the part of [`DataSource::collect`]) with the warnings, and the names of the
    /// ids the worker exports hold, for the task exports.
    async fn read_workers(&self) -> Result<(HubSnapshot, Directory), SourceError> {
        let names = self.worker_names().await?;
        let mut workers: Vec<WorkerRecord> = Vec::with_capacity(names.len());
        let mut directory = Directory::default();
        let mut warnings = Vec::new();
        let mut without_last_seen = 0usize;
        // Why the first worker left out for another reason than having been deleted was left out.
        let mut first_failure: Option<String> = None;
        for chunk in names.chunks(self.multicall_chunk) {
            let answers = self.client.worker_infos(chunk).await?;
            for (name, answer) in chunk.iter().zip(answers) {
                let deleted = is_deleted(&answer);
                match worker(name, answer, self.client.secrets()) {
                    Ok(decoded) => {
                        if let Some(note) = &decoded.note {
                            warnings.push(Warning::new(
                                Part::LastSeen,
                                self.client.scrub(sentence(format!(
                                    "The worker {name:?} has no last seen in this scrape: {note}"
                                ))),
                            ));
                        }
                        without_last_seen += usize::from(decoded.no_last_seen_field);
                        workers.push(directory.learn(decoded));
                    }
                    Err(why) => {
                        if !deleted && first_failure.is_none() {
                            first_failure = Some(format!("the first, {name:?}: {why}"));
                        }
                        warnings.push(Warning::new(
                            Part::Workers,
                            self.client.scrub(sentence(format!(
                                "The worker {name:?} is left out of this scrape: {why}"
                            ))),
                        ))
                    }
                }
            }
        }
        // Workers listed and not one of them readable (deleted in between aside): an empty scrape would
        // pass for a hub without workers. Fail, as the SQL sources do on a row they cannot read.
        if workers.is_empty()
            && let Some(first) = first_failure
        {
            return Err(self.client.data(format!(
                "none of the {} workers the hub lists could be read from client.get_worker_info \
                     ({first})",
                names.len()
            )));
        }
        if without_last_seen > 0 {
            warnings.push(Warning::new(
                Part::LastSeen,
                format!(
                    "{without_last_seen} worker(s) exported by {} have no last_seen field (a kobo hub \
                     older than the exporter expects?): their last seen is unavailable.",
                    self.client.shown()
                ),
            ));
        }
        let mut snapshot = HubSnapshot::new(workers);
        snapshot.warnings = warnings;
        Ok((snapshot, directory))
    }

    /// The task aggregates and the task flow: one `client.get_tasks([], active states)`, at most one
    /// multicall of `client.get_tasks(ids, [])` for the flow ([`flow`]), then at most one multicall of
    /// `client.task_info` for the arches and channels `directory` has no name for. Adds its warnings to
    /// `snapshot` and sets its `tasks` and `flow`; returns the flow state to keep if the collection succeeds.
    async fn read_tasks(
        &self,
        snapshot: &mut HubSnapshot,
        mut directory: Directory,
    ) -> Result<Option<FlowState>, SourceError> {
        let zone = &self.task_flow.time_zone;
        let states = TaskState::ACTIVE.iter().map(|s| s.code()).collect();
        let value = self.client.active_tasks(states).await?;
        let list = tasks::task_list(value, zone)
            .map_err(|why| self.client.data(format!("client.get_tasks: {why}")))?;
        let kept = self
            .flow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let plan = Plan::new(kept.as_ref(), &list.tasks);
        let (fetched, unreadable) = self.fetch_flow(&plan).await?;
        let lookups = tasks::lookups(list.tasks.iter().chain(&fetched), &directory);
        let mut failed = BTreeMap::new();
        if !lookups.is_empty() {
            let ids: Vec<i64> = lookups.iter().map(|l| l.task).collect();
            let results = self.client.task_infos(&ids).await?;
            for (id, result) in ids.into_iter().zip(results) {
                // Completes "client.task_info(<id>) ...".
                let failure = match result {
                    Ok(value) => directory
                        .learn_from_task_info(id, value)
                        .err()
                        .map(|why| format!("gave an unusable answer ({why})")),
                    Err(ItemError::Fault(fault)) => Some(format!(
                        "answered fault {}: {}",
                        fault.code(),
                        client::fault_text(self.client.secrets(), &fault)
                    )),
                    Err(ItemError::Malformed(what)) => {
                        Some(format!("got {what} from system.multicall"))
                    }
                };
                if let Some(why) = failure {
                    failed.insert(id, why);
                }
            }
        }
        let (summary, mut warnings) = tasks::summarise(&list, &directory, &lookups, &failed);
        let advanced = flow::advance(
            kept.as_ref(),
            &plan,
            &list.tasks,
            &fetched,
            &directory.channels,
            self.task_flow.late_commit_window,
            Instant::now(),
        );
        warnings.extend(tasks::flow_warnings(
            &unreadable,
            &advanced.vanished,
            advanced.unnamed,
        ));
        snapshot.warnings.extend(
            warnings
                .into_iter()
                .map(|warning| Warning::new(Part::Tasks, self.client.scrub(warning))),
        );
        snapshot.tasks = Some(summary);
        snapshot.flow = advanced.flow;
        Ok(advanced.state)
    }

    /// The tasks `plan` asks for, in one multicall of `client.get_tasks(ids, [])` (none when it asks for
    /// nothing), and the exports that could not be read. A fault on any of its calls fails the refresh:
    /// a flow read in part would lose what the rest holds.
    async fn fetch_flow(&self, plan: &Plan) -> Result<(Vec<TaskExport>, Vec<String>), SourceError> {
        let chunks = plan.chunks();
        if chunks.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let zone = &self.task_flow.time_zone;
        let mut fetched = Vec::new();
        let mut unreadable = Vec::new();
        for result in self.client.tasks_by_ids(&chunks).await? {
            let value = match result {
                Ok(value) => value,
                Err(ItemError::Fault(fault)) => {
                    return Err(self.client.data(format!(
                        "client.get_tasks(ids, []) of the task flow answered fault {}: {}",
                        fault.code(),
                        client::fault_text(self.client.secrets(), &fault)
                    )));
                }
                Err(ItemError::Malformed(what)) => {
                    return Err(self.client.data(format!(
                        "system.multicall answered {what} for a client.get_tasks call of the task flow"
                    )));
                }
            };
            let list = tasks::any_tasks(value, zone).map_err(|why| {
                self.client
                    .data(format!("client.get_tasks(ids, []): {why}"))
            })?;
            fetched.extend(list.tasks);
            unreadable.extend(list.unreadable);
        }
        Ok((fetched, unreadable))
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

    /// The workers: `1 + ceil(workers / multicall_chunk)` requests (2 up to the chunk size); with
    /// `request.tasks` then one `client.get_tasks`, at most one multicall of `client.get_tasks(ids, [])` for
    /// the task flow and at most one of `client.task_info` (see the crate documentation). The request in
    /// flight at the deadline is dropped (its connection closed).
    async fn collect(&self, request: &CollectRequest) -> Result<HubSnapshot, SourceError> {
        let began = tokio::time::Instant::now();
        match tokio::time::timeout_at(request.deadline, self.read(request.tasks)).await {
            Ok(result) => result,
            Err(_) => Err(self.client.query(format!(
                "no answer within the collection's deadline ({} s): the request was dropped",
                request
                    .deadline
                    .saturating_duration_since(began)
                    .as_secs_f64()
            ))),
        }
    }
}

impl XmlRpcSource {
    /// The workers, and the task aggregates if `with_tasks`.
    async fn read(&self, with_tasks: bool) -> Result<HubSnapshot, SourceError> {
        let started = Instant::now();
        let (mut snapshot, directory) = self.read_workers().await?;
        snapshot.timings.push((Part::Workers, started.elapsed()));
        if with_tasks {
            let started = Instant::now();
            let kept = self.read_tasks(&mut snapshot, directory).await?;
            snapshot.timings.push((Part::Tasks, started.elapsed()));
            // The last step, with no await after it: a collection dropped at its deadline keeps nothing.
            *self.flow.lock().unwrap_or_else(PoisonError::into_inner) = kept;
        }
        Ok(snapshot)
    }
}

/// Whether the answer is `{}`: the worker was deleted since the list was read.
fn is_deleted(answer: &Answer) -> bool {
    matches!(answer, Answer::Value(Ok(Value::Struct(fields))) if fields.is_empty())
}

/// One worker's record from its answer inside the multicall, or why it has none (a fault string is
/// scrubbed of `secrets` before it is shortened).
fn worker(name: &str, answer: Answer, secrets: &Secrets) -> Result<decode::DecodedWorker, String> {
    let result = match answer {
        Answer::Worker(decoded) => return Ok(*decoded),
        Answer::Value(result) => result,
    };
    let value = result.map_err(|error| match error {
        ItemError::Fault(fault) => format!(
            "client.get_worker_info answered fault {}: {}",
            fault.code(),
            client::fault_text(secrets, &fault)
        ),
        ItemError::Malformed(what) => {
            format!("system.multicall answered {what} for its client.get_worker_info call")
        }
    })?;
    decode::worker(name, value)
}

/// Not an API: exposed for the multicall benchmark (`benches/multicall.rs`) only. What a scrape does with
/// the body of one `system.multicall` of `client.get_worker_info` for `names`, without HTTP: the body fed
/// in pieces of `piece` bytes (as they arrive from the network) to the streaming decoder, or read whole by
/// dxr when `piece` is 0 (the old path, for comparison); each worker's record and the id directory.
/// Returns the records and how many workers were left out.
#[doc(hidden)]
pub fn decode_worker_infos(
    body: &[u8],
    names: &[String],
    piece: usize,
) -> Result<(Vec<WorkerRecord>, usize), String> {
    let answers = if piece == 0 {
        whole_answers(body, names)?
    } else {
        let mut decoder = WorkerInfos::new(names);
        for part in body.chunks(piece) {
            decoder.take(part)?;
        }
        match decoder.finish()? {
            Decoded::Answers(answers) => answers,
            Decoded::Whole(body) => whole_answers(&body, names)?,
        }
    };
    if answers.len() != names.len() {
        return Err(format!(
            "{} answers for {} calls",
            answers.len(),
            names.len()
        ));
    }
    let mut directory = Directory::default();
    let mut workers = Vec::with_capacity(names.len());
    let mut left_out = 0;
    let secrets = Secrets::default();
    for (name, answer) in names.iter().zip(answers) {
        match worker(name, answer, &secrets) {
            Ok(decoded) => workers.push(directory.learn(decoded)),
            Err(_) => left_out += 1,
        }
    }
    std::hint::black_box(&directory);
    Ok((workers, left_out))
}

/// The answers of a whole body read by dxr (the path of a body that is not a multicall's array).
fn whole_answers(body: &[u8], names: &[String]) -> Result<Vec<Answer>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8 ({e})"))?;
    let value = rpc::decode(text)?.map_err(|fault| format!("fault {}", fault.code()))?;
    Ok(rpc::multicall_results(value, names.len())?
        .into_iter()
        .map(Answer::Value)
        .collect())
}

/// `text` ending with a full stop.
pub(crate) fn sentence(mut text: String) -> String {
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process's crypto provider, as kobo-exporter's main installs it.
    fn provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    #[test]
    fn construction_does_no_io_and_describes_the_redacted_url() {
        provider();
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
        provider();
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
        let none = Secrets::default();
        assert_eq!(
            worker("w", Answer::Value(fault), &none).unwrap_err(),
            "client.get_worker_info answered fault 1: ValueError: bad"
        );
        let odd = Err(ItemError::Malformed(
            "a string instead of [value] or a fault".into(),
        ));
        assert!(
            worker("w", Answer::Value(odd), &none)
                .unwrap_err()
                .starts_with("system.multicall answered a string")
        );
        assert!(
            worker(
                "w",
                Answer::Value(Ok(Value::Struct(Default::default()))),
                &none
            )
            .unwrap_err()
            .contains("no such worker")
        );
        assert_eq!(sentence("a.".into()), "a.");
        assert_eq!(sentence("a".into()), "a.");
    }

    #[test]
    fn tls_verification_can_be_turned_off() {
        provider();
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
