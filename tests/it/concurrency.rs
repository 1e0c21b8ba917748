//! Concurrent scrapes: many at once get correct, complete answers while the source sees one collection at
//! a time and far fewer collections than scrapes (single-flight); a minimum scrape interval answers
//! back-to-back scrapes from one collection; scrapes queued behind a stuck collection answer by their own
//! deadline, and the stuck collection is abandoned, not left running.
//!
//! The source is a [`Counting`] wrapper around a real source (the fixture hub in SQLite, and on the
//! PostgreSQL test server behind the proxy of `kobo_testkit::proxy`, which also counts the connections): it
//! counts the collections with and without task data, records the most in flight at once, and makes
//! each collection last a while longer (200 ms by default), so that scrapes pile up behind it.
//!
//! The tests whose sources are all in-process (the SQLite fixture, a fake source) and that wait for a
//! deadline, an interval or a backoff run on tokio's paused clock (`start_paused`, on the current-thread
//! runtime): the collector reads tokio's clock, so they check those times exactly and take milliseconds.
//! The tests through Rocket's local client or a real database server run in real time.

use crate::common;
use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kobo_exporter::api::{
    CollectRequest, DataSource, DatabaseOptions, HubSnapshot, SourceError, WorkerDir,
};
use kobo_exporter::collector::{CollectorOptions, HubCollector, TIMEOUT_MARGIN};
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use tokio::sync::watch;
use tokio::time::Instant;

use kobo_testkit::db::{PostgresDb, TestDb};
use kobo_testkit::exposition::Family;
use kobo_testkit::proxy::{Mode, Proxy};
use support::fixture::{self, Scrape, SqliteFixture};

/// Scrapes fired at once.
const SCRAPES: usize = 200;

/// How much longer each collection takes than the source's own read.
const DELAY: Duration = Duration::from_millis(200);

/// A source that counts its collections and how many run at once, and makes each last longer.
struct Counting {
    inner: Arc<dyn DataSource>,
    /// Added to every collection, in milliseconds (changed by a test to unstick the source).
    delay_ms: AtomicU64,
    collects: AtomicUsize,
    collects_with_tasks: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// When set to `(arrivals, n)`, a collection first waits until the burst of `n` scrapes under way has
    /// fully arrived (see [`Arrivals`]): the burst then shares one collection, whatever the timing. (A second
    /// collection in the same burst does not wait: a collector that did not share fails quickly.)
    gate: Option<(watch::Receiver<usize>, usize)>,
    started: watch::Sender<usize>,
}

/// A collection in flight; counted out when it ends, also when it is abandoned (the future dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Counting {
    fn new(inner: Arc<dyn DataSource>, delay: Duration) -> Counting {
        Counting {
            inner,
            delay_ms: AtomicU64::new(delay.as_millis() as u64),
            collects: AtomicUsize::new(0),
            collects_with_tasks: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            gate: None,
            started: watch::channel(0).0,
        }
    }

    /// Each collection waits until the burst of `burst` scrapes under way has arrived before its delay.
    fn gated(mut self, arrivals: &Arrivals, burst: usize) -> Counting {
        self.gate = Some((arrivals.0.subscribe(), burst));
        self
    }

    /// Collections started so far.
    fn collections(&self) -> usize {
        self.collects.load(Ordering::SeqCst) + self.collects_with_tasks.load(Ordering::SeqCst)
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `n` collections have started.
    async fn started(&self, n: usize) {
        let mut started = self.started.subscribe();
        tokio::time::timeout(Duration::from_secs(10), started.wait_for(|s| *s >= n))
            .await
            .expect("a collection started within 10 s")
            .expect("the source is alive");
    }

    async fn counted(&self, request: &CollectRequest) -> Result<HubSnapshot, SourceError> {
        let calls = if request.tasks {
            &self.collects_with_tasks
        } else {
            &self.collects
        };
        calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _in_flight = InFlight(&self.in_flight);
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        self.started.send_modify(|n| *n += 1);
        if let Some((arrivals, burst)) = &self.gate {
            let mut arrivals = arrivals.clone();
            let so_far = *arrivals.borrow();
            let end_of_burst = so_far.div_ceil(*burst).max(1) * burst;
            // A test whose scrapes do not all arrive fails on the number of collections, not here.
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                arrivals.wait_for(|n| *n >= end_of_burst),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        self.inner.collect(request).await
    }
}

#[async_trait]
impl DataSource for Counting {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn collect(&self, request: &CollectRequest) -> Result<HubSnapshot, SourceError> {
        self.counted(request).await
    }
}

/// Scrapes about to start: each task counts itself in right before it calls `scrape`, in the same poll
/// (`scrape` notes its arrival before its first `await`), so a gated collection that waits for all of them,
/// and then its delay, ends after every scrape arrived: they must all share it.
#[derive(Clone)]
struct Arrivals(Arc<watch::Sender<usize>>);

impl Arrivals {
    fn new() -> Arrivals {
        Arrivals(Arc::new(watch::channel(0).0))
    }

    fn arrive(&self) {
        self.0.send_modify(|n| *n += 1);
    }
}

/// Checks one answer: `kobo_up 1`, no error, and the hub families equal to the expected ones.
fn assert_complete(text: &str, expected: &BTreeMap<String, Family>, what: &str) {
    let scrape = Scrape::parse(text);
    assert_eq!(scrape.up(), Some(1.0), "{what}: kobo_up\n{text}");
    assert_eq!(
        scrape.errors("workers"),
        Some(0.0),
        "{what}: errors\n{text}"
    );
    let hub = scrape.hub();
    assert_eq!(
        hub.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: the hub families"
    );
    for (name, family) in expected {
        assert_eq!(hub.get(name), Some(family), "{what}: family {name}");
    }
}

/// Fires [`SCRAPES`] scrapes at once through `collector` from as many tasks; returns the answers.
async fn scrape_at_once(collector: &Arc<HubCollector>, arrivals: &Arrivals) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(SCRAPES));
    for _ in 0..SCRAPES {
        let (collector, barrier, arrivals) = (
            Arc::clone(collector),
            Arc::clone(&barrier),
            arrivals.clone(),
        );
        tasks.spawn(async move {
            barrier.wait().await;
            arrivals.arrive();
            collector.scrape(None).await
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.expect("a scrape task").expect("a scrape"));
    }
    answers
}

/// Two bursts of [`SCRAPES`] scrapes at once through `collector` (on the gated `source`): every answer
/// complete, and every scrape of a burst arrived while its collection was in flight, so they all shared
/// it; never two collections at once. `after_burst(round, elapsed)` checks more after each.
async fn bursts_share_one_collection_each(
    collector: &Arc<HubCollector>,
    source: &Counting,
    arrivals: &Arrivals,
    expected: &BTreeMap<String, Family>,
    mut after_burst: impl FnMut(usize, Duration),
) {
    for round in 1..=2 {
        let started = Instant::now();
        let answers = scrape_at_once(collector, arrivals).await;
        let elapsed = started.elapsed();
        assert_eq!(answers.len(), SCRAPES);
        for (i, answer) in answers.iter().enumerate() {
            assert_complete(answer, expected, &format!("round {round}, answer {i}"));
        }
        assert_eq!(
            source.collections(),
            round,
            "collections after {round} burst(s) of {SCRAPES} concurrent scrapes"
        );
        assert_eq!(source.max_in_flight(), 1);
        after_burst(round, elapsed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scrapes_share_one_collection() {
    let options = CollectorOptions::default();
    let expected = fixture::reference(&options).await;
    let fixture = SqliteFixture::open();
    let arrivals = Arrivals::new();
    let source = Arc::new(Counting::new(fixture.source.clone(), DELAY).gated(&arrivals, SCRAPES));
    let collector = Arc::new(HubCollector::new(source.clone(), options));

    bursts_share_one_collection_each(
        &collector,
        &source,
        &arrivals,
        &expected,
        |round, elapsed| {
            eprintln!("burst {round}: {SCRAPES} concurrent scrapes, one collection, {elapsed:?}");
        },
    )
    .await;
    // The first collection read the task data; the second served it from the cache (refresh interval).
    assert_eq!(source.collects_with_tasks.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_http_scrapes_share_collections() {
    let options = CollectorOptions::default();
    let expected = fixture::reference(&options).await;
    let fixture = SqliteFixture::open();
    let source = Arc::new(Counting::new(fixture.source.clone(), DELAY));
    let collector = HubCollector::new(source.clone(), options);
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    let client = Arc::new(
        Client::tracked(kobo_exporter::routes::build(figment, collector))
            .await
            .expect("rocket"),
    );

    let started = Instant::now();
    let barrier = Arc::new(tokio::sync::Barrier::new(SCRAPES));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SCRAPES {
        let (client, barrier) = (Arc::clone(&client), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            let response = client.get("/metrics").dispatch().await;
            let status = response.status();
            (status, response.into_string().await.expect("a body"))
        });
    }
    let mut answers = 0;
    while let Some(joined) = tasks.join_next().await {
        let (status, body) = joined.expect("a scrape task");
        assert_eq!(status, Status::Ok);
        assert_complete(&body, &expected, &format!("HTTP answer {answers}"));
        answers += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(answers, SCRAPES);
    let collections = source.collections();
    eprintln!("{SCRAPES} concurrent HTTP scrapes: {collections} collection(s), {elapsed:?}");
    // A request reaches the collector a little after it was sent, so on a loaded machine a few may arrive
    // after a collection ended and start the next one; never more than one at a time.
    assert_eq!(source.max_in_flight(), 1);
    assert!(
        (1..=3).contains(&collections),
        "{collections} collections for {SCRAPES} concurrent HTTP scrapes"
    );
}

#[tokio::test(start_paused = true)]
async fn back_to_back_scrapes_within_the_minimum_interval_share_one_collection() {
    let interval = Duration::from_secs(1);
    let options = CollectorOptions {
        min_scrape_interval: interval,
        ..CollectorOptions::default()
    };
    let expected = fixture::reference(&options).await;
    let fixture = SqliteFixture::open();
    let source = Arc::new(Counting::new(fixture.source.clone(), DELAY));
    let collector = HubCollector::new(source.clone(), options);

    let first = collector.scrape(None).await.expect("a scrape");
    let collected = Instant::now();
    assert_complete(&first, &expected, "the first scrape");
    assert_eq!(source.collections(), 1);
    let mut scrapes = 1;
    // Back-to-back scrapes over the interval (at least five, the clock moved on by a tenth of it after
    // each, the last one 1 ms before it ends): all from the cache. A collection would take DELAY.
    while scrapes < 5 || collected.elapsed() < interval / 2 {
        if scrapes > 1 {
            tokio::time::advance(interval / 10).await;
        }
        let started = Instant::now();
        let answer = collector.scrape(None).await.expect("a scrape");
        assert!(
            started.elapsed() < DELAY,
            "a cached answer took {:?}",
            started.elapsed()
        );
        assert_complete(&answer, &expected, &format!("scrape {}", scrapes + 1));
        scrapes += 1;
    }
    assert!(collected.elapsed() < interval, "the scrapes were quick");
    tokio::time::sleep_until(collected + interval - Duration::from_millis(1)).await;
    let answer = collector.scrape(None).await.expect("a scrape");
    assert_complete(
        &answer,
        &expected,
        "the scrape 1 ms before the interval ends",
    );
    scrapes += 1;
    assert_eq!(
        source.collections(),
        1,
        "{scrapes} scrapes within {interval:?} of the first collection"
    );
    // Once the interval has passed since that collection ended, the next scrape collects again.
    tokio::time::sleep_until(collected + interval).await;
    let answer = collector.scrape(None).await.expect("a scrape");
    assert_complete(&answer, &expected, "the scrape after the interval");
    assert_eq!(source.collections(), 2);
    assert_eq!(source.max_in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn scrapes_behind_a_stuck_collection_answer_by_their_own_deadline() {
    let options = CollectorOptions::default();
    let fixture = SqliteFixture::open();
    let source = Arc::new(Counting::new(
        fixture.source.clone(),
        Duration::from_secs(30),
    ));
    let collector = Arc::new(HubCollector::new(source.clone(), options));
    // Prometheus' timeouts: a long one for the scrape that starts the stuck collection, short ones after.
    let long = Duration::from_secs(4);
    let short = Duration::from_millis(1500);
    // A scrape (`which`) with Prometheus' `timeout` that answered `kobo_up 0` at its deadline: parsed.
    let down_at_deadline = |answer: &str, elapsed: Duration, timeout: Duration, which: &str| {
        let deadline = timeout - TIMEOUT_MARGIN;
        // On the paused clock a timer fires at its deadline, rounded up to tokio's 1 ms timer tick.
        assert!(
            elapsed >= deadline
                && elapsed < timeout
                && elapsed <= deadline + Duration::from_millis(2),
            "{which} answered after {elapsed:?} (deadline {deadline:?})"
        );
        let scrape = Scrape::parse(answer);
        assert_eq!(scrape.up(), Some(0.0), "{answer}");
        scrape
    };

    let first = {
        let collector = Arc::clone(&collector);
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = collector.scrape(Some(long)).await.expect("a scrape");
            (answer, started.elapsed())
        })
    };
    source.started(1).await;
    let queued = 50;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..queued {
        let collector = Arc::clone(&collector);
        tasks.spawn(async move {
            let started = Instant::now();
            let answer = collector.scrape(Some(short)).await.expect("a scrape");
            (answer, started.elapsed())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (answer, elapsed) = joined.expect("a scrape task");
        let scrape = down_at_deadline(&answer, elapsed, short, "a queued scrape");
        assert!(scrape.hub().is_empty(), "no hub metric with kobo_up 0");
        let errors = scrape.errors("workers").expect("error counter");
        assert!(
            (1.0..=queued as f64).contains(&errors),
            "{errors} errors seen by a queued scrape"
        );
    }
    // The stuck collection was still running all along; it is abandoned at its scrape's deadline.
    assert_eq!(
        source.in_flight(),
        1,
        "the stuck collection is still in flight"
    );
    let (answer, elapsed) = first.await.expect("the first scrape");
    let scrape = down_at_deadline(&answer, elapsed, long, "the first scrape");
    // Every scrape failed once: the 50 that gave up waiting, and the one whose collection was abandoned.
    assert_eq!(
        scrape.errors("workers"),
        Some((queued + 1) as f64),
        "{answer}"
    );
    assert_eq!(
        source.in_flight(),
        0,
        "the abandoned collection is not left running"
    );
    assert_eq!(source.collections(), 1);
    assert_eq!(source.max_in_flight(), 1);

    // The source answers again: the next scrape after the reconnect backoff (1 s after one failed
    // collection) is complete.
    source.delay_ms.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = collector.scrape(Some(short)).await.expect("a scrape");
    let scrape = Scrape::parse(&answer);
    assert_eq!(scrape.up(), Some(1.0), "{answer}");
    assert_eq!(scrape.errors("workers"), Some((queued + 1) as f64));
    // The workers' families are complete. (The task data is not checked: the abandoned collection was the
    // task refresh, and the collector tries it again only after task_refresh_interval; the task data after
    // a recovery is checked in `every_fault_on_every_source` in faults.rs.)
    let hub = scrape.hub();
    let workers = fixture::reference(&CollectorOptions {
        task_metrics: false,
        ..CollectorOptions::default()
    })
    .await;
    for (name, family) in &workers {
        assert_eq!(
            hub.get(name),
            Some(family),
            "family {name} after the stuck collection"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scrapes_of_postgresql_use_one_collection_and_one_connection() {
    let Some(db) = PostgresDb::with_fixture().await else {
        return;
    };
    let options = CollectorOptions::default();
    let expected = fixture::reference(&options).await;
    // The database through the proxy, which counts the connections the source opens.
    let (_, target) = kobo_testkit::proxy::through(&db.url(), 0).await;
    let proxy = Proxy::start(target, Mode::Pass).await;
    let (url, _) = kobo_testkit::proxy::through(&db.url(), proxy.port()).await;
    let worker_dir = common::fixture_worker_dir();
    let source = kobo_backend_postgres::open(DatabaseOptions {
        max_connections: 2,
        worker_dir: Some(WorkerDir::new(worker_dir.path())),
        ..DatabaseOptions::new(format!("{url}?sslmode=disable"))
    })
    .expect("PostgreSQL source");
    let arrivals = Arrivals::new();
    let source = Arc::new(Counting::new(Arc::new(source), DELAY).gated(&arrivals, SCRAPES));
    let collector = Arc::new(HubCollector::new(source.clone(), options));

    bursts_share_one_collection_each(&collector, &source, &arrivals, &expected, |round, _| {
        // One collection at a time needs one connection, kept by the pool for the next.
        assert_eq!(
            proxy.accepted(),
            1,
            "connections opened after round {round}"
        );
    })
    .await;
    drop(collector);
    drop(source);
    proxy.shutdown().await;
    drop(db);
}

#[tokio::test(start_paused = true)]
async fn a_down_source_is_retried_with_backoff_not_at_every_scrape() {
    // Fails every collection, and counts them.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let source = Arc::new(support::fake::refusing(
        "postgres://127.0.0.1:1/hub",
        move || {
            counted.fetch_add(1, Ordering::SeqCst);
        },
    ));
    let options = CollectorOptions {
        reconnect_backoff_max: Duration::from_secs(2),
        ..CollectorOptions::default()
    };
    let collector = HubCollector::new(source.clone(), options);
    let scrape = || async { Scrape::parse(&collector.scrape(None).await.expect("a scrape")) };
    for _ in 0..10 {
        let answer = scrape().await;
        assert_eq!(answer.up(), Some(0.0));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one attempt, then 1 s of backoff"
    );
    // Every scrape that got kobo_up 0 counts as a failed collection.
    assert_eq!(scrape().await.errors("workers"), Some(11.0));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    scrape().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "tried again after 1 s");
    for _ in 0..5 {
        scrape().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "then 2 s of backoff");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    scrape().await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "tried again after 2 s");
    // Uncapped, the next pause would be 4 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    scrape().await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "the backoff is capped at 2 s"
    );
}
