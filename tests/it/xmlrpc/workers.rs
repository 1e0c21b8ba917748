//! The workers over XML-RPC: the marshaller against the captures, the fixture hub's records and rendering,
//! the requests per scrape, and faults, vanished and undecodable workers inside the multicall.

use super::*;
use kobo_testkit::CollectExt;

use std::sync::Arc;
use std::time::Instant;

use kobo_backend_xmlrpc::{ALLOWED_METHODS, DEFAULT_MULTICALL_CHUNK};
use kobo_exporter::api::LastSeen;
use kobo_exporter::collector::{CollectorOptions, HubCollector};
use kobo_testkit::exposition::parse;
use kobo_testkit::xmlrpc_hub::XmlRpcHub;

#[test]
fn the_marshaller_reproduces_every_capture() {
    let exports = fixture_exports();
    let by_name = |n: &str| {
        exports
            .iter()
            .find(|e| e.name == n)
            .expect("fixture worker")
            .py()
    };
    let names = |enabled: bool| {
        Py::List(
            exports
                .iter()
                .filter(|e| e.enabled == enabled)
                .map(|e| Py::Str(e.name.clone()))
                .collect(),
        )
    };
    for (ours, heading) in [
        (py::response(&by_name("worker-0002.example.com")), INFO_SEEN),
        (
            py::response(&by_name("worker-0004.example.com")),
            INFO_NEVER_SEEN,
        ),
        (py::response(&Py::Dict(vec![])), INFO_MISSING),
        (py::response(&names(true)), LIST_ENABLED),
        (py::response(&names(false)), LIST_DISABLED),
        (
            py::multicall(&[
                Ok(py::value(&Py::Int(5))),
                Err((
                    1,
                    "<class 'Exception'>:method \"no.such\" is not supported".into(),
                )),
            ]),
            WORKER_MULTICALL,
        ),
        (
            py::fault(1, "PermissionDenied: Login required."),
            LOGIN_REQUIRED,
        ),
        (
            py::fault(
                1,
                "Exception: method \"system.listMethods\" is not supported",
            ),
            NOT_SUPPORTED,
        ),
    ] {
        assert_eq!(ours, text(&capture(heading)), "{heading}");
    }
    assert_eq!(utc(1_749_999_904), "2025-06-15T15:05:04Z");
    assert_eq!(utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
}

#[tokio::test]
async fn the_fixture_hub_gives_the_sqlite_sources_records_and_metrics() {
    let hub = hub(fixture_handler(Quirks::default())).await;
    let snapshot = source(&hub).collect_workers().await.expect("collect");
    assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);

    // The records: the SQLite source's, less what XML-RPC does not carry.
    let reference = sqlite_snapshot().await;
    let mut expected = reference.workers.clone();
    for worker in &mut expected {
        worker.max_tasks = None;
        worker.min_priority = None;
    }
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    let mut ours = snapshot.workers.clone();
    ours.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(ours, expected);
    let last_seen: Vec<LastSeen> = ours.iter().map(|w| w.last_seen).collect();
    assert_eq!(
        last_seen,
        [
            LastSeen::At(1_749_999_887),
            LastSeen::At(1_749_999_904),
            LastSeen::At(1_749_542_246),
            LastSeen::Never,
            LastSeen::At(1_749_999_913)
        ]
    );

    // The rendering, family by family, for the families XML-RPC provides.
    let text = kobo_exporter::render(&snapshot).expect("render");
    let ours = parse(&text).expect("our output parses");
    let sqlite =
        parse(&kobo_exporter::render(&reference).expect("render")).expect("SQLite output parses");
    let provided: Vec<&String> = ours
        .order
        .iter()
        .filter(|n| !ours.families[*n].samples.is_empty())
        .collect();
    for name in [
        "kobo_worker_enabled",
        "kobo_worker_ready",
        "kobo_worker_load",
        "kobo_worker_max_load",
        "kobo_worker_open_tasks",
        "kobo_worker_last_seen_seconds",
        "kobo_worker_arch",
        "kobo_worker_channel",
    ] {
        assert!(
            provided.iter().any(|n| *n == name),
            "XML-RPC provides {name}"
        );
    }
    for name in &provided {
        assert_eq!(
            ours.families.get(*name),
            sqlite.families.get(*name),
            "family {name}"
        );
    }
    // What XML-RPC cannot tell is absent, not a false value.
    if let Some(max_tasks) = ours.families.get("kobo_worker_max_tasks") {
        assert!(max_tasks.samples.is_empty());
    }
    // The reference exporter's six families, equal to what it served for this hub.
    let reference_metrics = common::reference_exposition();
    for name in &reference_metrics.order {
        assert_eq!(
            ours.families.get(name),
            reference_metrics.families.get(name),
            "family {name}"
        );
    }

    assert_snapshot(
        "xmlrpc__fixture",
        "the fixture hub read through its XML-RPC API (real kobo 0.42.0 wire captures)",
        &text,
    );

    // One scrape: one multicall of the two lists, then one multicall of the five workers; nothing else.
    let calls = calls(&hub);
    assert_eq!(hub.methods(), ["system.multicall", "system.multicall"]);
    assert_eq!(
        calls[0].inner_calls(),
        [list_workers(true), list_workers(false)]
    );
    assert_eq!(
        worker_info_names(&calls[1].inner_calls()),
        (1..=5)
            .map(|i| format!("worker-{i:04}.example.com"))
            .collect::<Vec<_>>()
    );
    for request in hub.received() {
        assert_eq!(request.path, "/xmlrpc/client/");
        assert_eq!(request.header("content-type"), Some("text/xml"));
        let agent = request.header("user-agent").expect("User-Agent");
        assert!(agent.starts_with("kobo-exporter/"), "{agent}");
        assert!(request.accepts_gzip());
        assert_eq!(request.header("authorization"), None);
    }
}

#[tokio::test]
async fn the_url_may_lack_the_trailing_slash() {
    let hub = hub(fixture_handler(Quirks::default())).await;
    let source = XmlRpcSource::new(options(hub.url().trim_end_matches('/'))).expect("source");
    assert_eq!(source.describe(), hub.url());
    assert_eq!(
        source
            .collect_workers()
            .await
            .expect("collect")
            .workers
            .len(),
        5
    );
    assert!(hub.received().iter().all(|r| r.path == "/xmlrpc/client/"));
}

#[tokio::test]
async fn requests_per_scrape_are_bounded_and_only_allowed_methods_are_called() {
    // One multicall of the two lists, then ceil(workers / chunk) multicalls of get_worker_info.
    for (workers, chunk, expected_requests) in [
        (0, DEFAULT_MULTICALL_CHUNK, 1),
        (1, DEFAULT_MULTICALL_CHUNK, 2),
        (2000, DEFAULT_MULTICALL_CHUNK, 2),
        (300, 300, 2),
        (2000, 300, 8),
        (7, 3, 4),
    ] {
        let hub = hub(synthetic_handler(workers)).await;
        let options = XmlRpcOptions {
            multicall_chunk: chunk,
            ..options(&hub.url())
        };
        let source = XmlRpcSource::new(options).expect("source");
        let started = Instant::now();
        let snapshot = source
            .collect_workers()
            .await
            .unwrap_or_else(|e| panic!("{workers} workers: {e}"));
        assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);
        assert_eq!(snapshot.workers.len(), workers);
        let methods = hub.methods();
        assert_eq!(
            methods.len(),
            expected_requests,
            "{workers} workers, chunks of {chunk}: {methods:?}"
        );
        assert!(
            methods.iter().all(|m| m == "system.multicall"),
            "{methods:?}"
        );
        let calls = calls(&hub);
        assert_eq!(
            calls[0].inner_calls(),
            [list_workers(true), list_workers(false)]
        );
        // Every worker asked for exactly once, at most `chunk` per request.
        let mut asked = Vec::new();
        for call in &calls[1..] {
            let inner = call.inner_calls();
            assert!(!inner.is_empty() && inner.len() <= chunk);
            for call in &inner {
                assert!(
                    ALLOWED_METHODS.contains(&call.method.as_str()),
                    "{}",
                    call.method
                );
            }
            asked.extend(worker_info_names(&inner));
        }
        let mut names: Vec<String> = snapshot.workers.iter().map(|w| w.name.clone()).collect();
        names.sort();
        asked.sort();
        assert_eq!(asked, names, "each worker asked for once");
        println!(
            "{workers} workers: {expected_requests} requests in {:?}",
            started.elapsed()
        );
    }
    // Odd names survive the round trip, and render as label values.
    let hub = hub(synthetic_handler(8)).await;
    let snapshot = source(&hub).collect_workers().await.expect("collect");
    let names: Vec<&str> = snapshot.workers.iter().map(|w| w.name.as_str()).collect();
    assert!(
        names.contains(&"w\u{f6}rker-00003.\u{e9}xample.com"),
        "{names:?}"
    );
    assert!(names.contains(&"odd&<00005>\"'.example.com"), "{names:?}");
    let text = kobo_exporter::render(&snapshot).expect("render");
    assert!(
        text.contains("worker=\"odd&<00005>\\\"'.example.com\""),
        "{text}"
    );
    for method in ALLOWED_METHODS {
        assert!(!method.starts_with("worker."), "{method}");
    }
}

#[tokio::test]
async fn the_request_count_stays_constant_as_workers_grow_from_10_to_2000() {
    // kobo_testkit's XML-RPC hub, as the benchmark runner serves it; the source with its defaults.
    let mut requests = Vec::new();
    for workers in [10, 2000] {
        let hub = XmlRpcHub::start(synthetic_exports(workers))
            .await
            .expect("hub");
        let source = XmlRpcSource::new(XmlRpcOptions::new(hub.url())).expect("source");
        let started = Instant::now();
        let snapshot = source
            .collect_workers()
            .await
            .unwrap_or_else(|e| panic!("{workers} workers: {e}"));
        let elapsed = started.elapsed();
        assert!(snapshot.warnings.is_empty(), "{:?}", snapshot.warnings);
        assert_eq!(snapshot.workers.len(), workers);
        assert_eq!(
            snapshot
                .workers
                .iter()
                .filter(|w| w.last_seen == LastSeen::Never)
                .count(),
            workers.div_ceil(11)
        );
        // The lists' multicall (2 calls) and one multicall of every worker's get_worker_info.
        assert_eq!(hub.calls(), 2 + workers, "{workers} workers");
        println!(
            "{workers} workers: {} requests, {} calls in {elapsed:?}",
            hub.requests(),
            hub.calls()
        );
        requests.push(hub.requests());
    }
    assert_eq!(
        requests,
        [2, 2],
        "requests per scrape for 10 and 2,000 workers"
    );
}

#[tokio::test]
async fn a_fault_on_list_workers_inside_the_multicall_fails_the_collection() {
    let fault = "PermissionDenied: Login required.";
    for (enabled, call) in [
        (true, "client.list_workers(True)"),
        (false, "client.list_workers(False)"),
    ] {
        let hub = hub(fixture_handler(Quirks {
            list_fault: Some((enabled, fault.into())),
            ..Quirks::default()
        }))
        .await;
        let error = message(source(&hub).collect_workers().await);
        assert_eq!(
            error,
            format!(
                "query on {} failed: {call} (in system.multicall): the hub answered with fault 1: {fault}",
                hub.url()
            )
        );
        // Nothing is read after the lists, and the task path fails the same way.
        assert_eq!(hub.methods(), ["system.multicall"]);
        let error = message(source(&hub).collect_tasks().await);
        assert!(
            error.contains(&format!(
                "{call} (in system.multicall): the hub answered with fault"
            )),
            "{error}"
        );
        assert_eq!(hub.methods(), ["system.multicall", "system.multicall"]);
    }
}

#[tokio::test]
async fn a_fault_or_a_vanished_worker_in_the_multicall_drops_only_that_worker() {
    let quirks = Quirks {
        faulting: vec!["worker-0003.example.com".into()],
        vanished: vec!["worker-0006.example.com".into()],
        ..Quirks::default()
    };
    let hub = hub(fixture_handler(quirks)).await;
    let snapshot = source(&hub)
        .collect_workers()
        .await
        .expect("a partial scrape is not a failure");
    let names: Vec<&str> = snapshot.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "worker-0001.example.com",
            "worker-0002.example.com",
            "worker-0004.example.com",
            "worker-0005.example.com"
        ]
    );
    assert_eq!(
        warnings(&snapshot),
        [
            (
                Part::Workers,
                "The worker \"worker-0003.example.com\" is left out of this scrape: client.get_worker_info \
                 answered fault 1: DoesNotExist: Worker matching query does not exist."
            ),
            (
                Part::Workers,
                "The worker \"worker-0006.example.com\" is left out of this scrape: the hub has no such worker \
                 any more (deleted or renamed since the worker list was read)."
            ),
        ]
    );
    assert_eq!(hub.methods().len(), 2);
}

#[tokio::test]
async fn when_no_worker_can_be_decoded_the_collection_fails() {
    // Every get_worker_info faults: the hub has workers, the scrape has none to show.
    let names: Vec<String> = fixture_exports().into_iter().map(|e| e.name).collect();
    let hub = hub(fixture_handler(Quirks {
        faulting: names.clone(),
        ..Quirks::default()
    }))
    .await;
    let error = message(source(&hub).collect_workers().await);
    assert!(
        error.starts_with(&format!("unexpected data in {}: ", hub.url()))
            && error.contains(&format!(
                "none of the {} workers the hub lists could be read",
                names.len()
            ))
            && error.contains(WORKER_MISSING),
        "{error}"
    );
    let error = message(source(&hub).collect_tasks().await);
    assert!(error.contains("could be read"), "{error}");

    // Exports that cannot be decoded at all.
    let hub = super::hub(two_worker_handler(|_| Ok(py::value(&Py::Int(7))))).await;
    let error = message(source(&hub).collect_workers().await);
    assert!(
        error.contains("none of the 2 workers the hub lists could be read")
            && error.contains("not a struct"),
        "{error}"
    );

    // Through the exporter: kobo_up 0, no worker families.
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    let options = CollectorOptions {
        task_metrics: false,
        reconnect_backoff_max: Duration::ZERO,
        ..CollectorOptions::default()
    };
    let collector = HubCollector::new(Arc::new(source(&hub)), options);
    let client = rocket::local::asynchronous::Client::tracked(kobo_exporter::routes::build(
        figment, collector,
    ))
    .await
    .expect("rocket");
    let body = common::get_text(&client, "/metrics").await;
    let parsed = parse(&body).expect("parses");
    assert_eq!(parsed.sample("kobo_up", &[]), Some(0.0), "{body}");

    // One worker readable is a partial scrape, not a failure; a hub with no workers is not one either.
    let hub = super::hub(one_of_two_readable("a.example.com", |_| {
        WORKER_MISSING.into()
    }))
    .await;
    let snapshot = source(&hub).collect_workers().await.expect("partial");
    assert_eq!(snapshot.workers.len(), 1);
    assert_eq!(snapshot.warnings.len(), 1, "{:?}", snapshot.warnings);
    let hub = super::hub(synthetic_handler(0)).await;
    let snapshot = source(&hub).collect_workers().await.expect("no workers");
    assert!(snapshot.workers.is_empty() && snapshot.warnings.is_empty());

    // Every listed worker deleted between the two requests: truly no workers, not a failure.
    let missing = result_value(&capture(INFO_MISSING)).to_string();
    let hub = super::hub(two_worker_handler(move |_| Ok(missing.clone()))).await;
    let snapshot = source(&hub).collect_workers().await.expect("all deleted");
    assert!(snapshot.workers.is_empty());
    assert_eq!(snapshot.warnings.len(), 2, "{:?}", snapshot.warnings);
}
