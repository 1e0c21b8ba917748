//! Decoding benchmarks (issue 7): the body of a `system.multicall` of `client.get_worker_info`, in kobo's
//! exact wire format (Python's xmlrpc.client marshaller, `kobo_testkit::wire`), through what a scrape does
//! with it after the HTTP read (`decode_worker_infos`: UTF-8, the XML-RPC response, the multicall results,
//! each worker's record and the id directory).
//!
//! - `multicall/streamed`: all the workers in one response, fed in 16 KiB pieces to the streaming decoder
//!   (what a scrape does; 2,000 and 10,000 workers);
//! - `multicall/dxr`: the same response read whole by dxr (the old path), as the baseline of the same run.
//!
//! Run with `cargo bench -p kobo-backend-xmlrpc --bench multicall`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is the verdict"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use kobo_backend_xmlrpc::decode_worker_infos;
use kobo_hubgen::HubSpec;
use kobo_testkit::wire::{Export, py};
use kobo_testkit::xmlrpc_hub::exports_from_sqlite;

/// `workers` worker exports, sorted by name (as `client.list_workers` gives the names): kobo-hubgen's
/// synthetic hub (the one kobo-bench serves), written to a temporary SQLite file with its last-seen files
/// and exported as kobo's `Worker.export()` would.
fn exports(workers: u32) -> Vec<Export> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, worker_dir) = (dir.path().join("hub.sqlite3"), dir.path().join("worker"));
    let spec = HubSpec {
        workers,
        tasks: 0,
        seed: 1,
    };
    kobo_hubgen::sqlite::generate(&db, &spec).expect("generate the hub");
    kobo_hubgen::write_worker_dir(&worker_dir, &spec).expect("last-seen files");
    let mut exports = exports_from_sqlite(&db, Some(&worker_dir)).expect("export the workers");
    exports.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    exports
}

/// The hub's answer to the multicall of `client.get_worker_info` for these workers, byte for byte.
fn body(exports: &[Export]) -> Vec<u8> {
    let items: Vec<Result<String, (i64, String)>> =
        exports.iter().map(|e| Ok(py::value(&e.py()))).collect();
    py::multicall(&items).into_bytes()
}

/// The responses and requested names of a scrape that reads `exports` in chunks of `chunk`.
fn responses(exports: &[Export], chunk: usize) -> Vec<(Vec<u8>, Vec<String>)> {
    exports
        .chunks(chunk)
        .map(|part| (body(part), part.iter().map(|e| e.name.clone()).collect()))
        .collect()
}

/// Bytes per piece fed to the streaming decoder: about what hyper hands over per read.
const PIECE: usize = 16 * 1024;

/// Decodes every response (in pieces of `piece` bytes; whole with dxr when 0); the number of workers
/// decoded.
fn decode_all(responses: &[(Vec<u8>, Vec<String>)], piece: usize) -> usize {
    responses
        .iter()
        .map(|(body, names)| {
            let (workers, _) =
                decode_worker_infos(body, names, piece).expect("the response decodes");
            black_box(workers).len()
        })
        .sum()
}

fn bench_multicall(c: &mut Criterion) {
    let mut group = c.benchmark_group("multicall");
    // A decode takes 0.1 to 0.6 s: 20 samples of a fixed number of iterations, rather than 100 growing ones.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .measurement_time(Duration::from_secs(12));
    for workers in [2_000u32, 10_000] {
        let exports = exports(workers);
        let responses = responses(&exports, workers as usize);
        // Outside the timed loop: every worker decodes, with its fields, and both paths agree.
        for piece in [PIECE, 0] {
            let mut decoded = Vec::new();
            for (body, names) in &responses {
                let (records, left_out) = decode_worker_infos(body, names, piece).expect("decodes");
                assert_eq!(left_out, 0, "{workers}: workers left out");
                decoded.extend(records);
            }
            assert_eq!(
                decoded.len(),
                workers as usize,
                "{workers}: decoded workers"
            );
            for (record, export) in decoded.iter().zip(&exports) {
                assert_eq!(record.name, export.name);
                assert_eq!(record.arches.len(), export.arches.len());
                assert_eq!(record.channels.len(), export.channels.len());
                assert_eq!(record.current_load, export.current_load);
            }
        }
        let bytes: usize = responses.iter().map(|(body, _)| body.len()).sum();
        eprintln!(
            "multicall/{workers}: {} response(s), {bytes} bytes",
            responses.len()
        );
        group.throughput(Throughput::Elements(workers as u64));
        for (id, piece) in [("streamed", PIECE), ("dxr", 0)] {
            group.bench_function(BenchmarkId::new(id, workers), |b| {
                b.iter(|| decode_all(black_box(&responses), piece))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_multicall);
criterion_main!(benches);
