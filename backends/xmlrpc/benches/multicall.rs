//! Decoding benchmarks (issue 7): the body of a `system.multicall` of `client.get_worker_info`, in kobo's
//! exact wire format (Python's xmlrpc.client marshaller, `kobo_hubgen::wire`), through what a scrape does
//! with it after the HTTP read (`decode_worker_infos`: UTF-8, the XML-RPC response, the multicall results,
//! each worker's record and the id directory).
//!
//! - `multicall/one_response`: all the workers in one response (2,000 and 10,000 workers).
//!
//! Run with `cargo bench -p kobo-backend-xmlrpc --bench multicall`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use kobo_backend_xmlrpc::decode_worker_infos;
use kobo_hubgen::wire::{py, utc, Export};

/// A small deterministic generator (SplitMix64), so every run decodes the same hub.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `true` with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// (name, pretty_name); the id is the position + 1.
const ARCHES: [(&str, &str); 10] = [
    ("aarch64", "ARM 64-bit"),
    ("armv7hl", "ARM v7 hard float"),
    ("i386", "Intel 386"),
    ("i686", "Intel 686"),
    ("noarch", "Architecture independent"),
    ("ppc64", "PowerPC 64-bit big endian"),
    ("ppc64le", "PowerPC 64-bit little endian"),
    ("riscv64", "RISC-V 64-bit"),
    ("s390x", "IBM System z"),
    ("x86_64", "AMD64 & Intel 64"),
];

/// The id is the position + 1.
const CHANNELS: [&str; 20] = [
    "default",
    "rhel-8",
    "rhel-9",
    "rhel-10",
    "fedora-rawhide",
    "fedora-42",
    "fedora-43",
    "centos-stream-9",
    "centos-stream-10",
    "scratch",
    "kernel",
    "kernel-rt",
    "container-builds",
    "image-builds",
    "compose",
    "signing",
    "errata",
    "testing",
    "long-running",
    "priority",
];

const ROLES: [&str; 6] = ["builder", "compose", "image", "test", "sign", "scratch"];
const SITES: [&str; 4] = ["brq", "rdu", "phx", "bos"];

/// `count` distinct positions in `0..len`.
fn pick(rng: &mut Rng, len: usize, count: usize) -> Vec<usize> {
    let mut picked = Vec::with_capacity(count);
    while picked.len() < count {
        let i = rng.below(len as u64) as usize;
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked
}

/// `workers` worker exports, sorted by name (as `client.list_workers` gives the names): 2-4 arches (ordered
/// by name), 1-3 channels (ordered by id), 3% never seen.
fn exports(workers: usize) -> Vec<Export> {
    let mut rng = Rng(0x6b6f_626f ^ workers as u64);
    let now: i64 = 1_780_000_000;
    let mut exports: Vec<Export> = (0..workers)
        .map(|i| {
            let role = ROLES[i % ROLES.len()];
            let site = SITES[(i / 7) % SITES.len()];
            let enabled = rng.chance(90);
            let max_load = [1, 2, 4, 8, 16][rng.below(5) as usize];
            let current_load = rng.below(max_load as u64 + 1) as i64;
            let arch_count = 2 + rng.below(3) as usize;
            let mut arches = pick(&mut rng, ARCHES.len(), arch_count);
            arches.sort_unstable_by_key(|&a| ARCHES[a].0);
            let channel_count = 1 + rng.below(3) as usize;
            let mut channels = pick(&mut rng, CHANNELS.len(), channel_count);
            channels.sort_unstable();
            Export {
                id: i as i64 + 1,
                name: format!("{role}-{i:05}.{site}.example.com"),
                arches: arches
                    .into_iter()
                    .map(|a| (a as i64 + 1, ARCHES[a].0.into(), ARCHES[a].1.into()))
                    .collect(),
                channels: channels
                    .into_iter()
                    .map(|c| (c as i64 + 1, CHANNELS[c].into()))
                    .collect(),
                enabled,
                max_load,
                ready: enabled && rng.chance(75),
                task_count: rng.below(current_load as u64 + 1) as i64,
                current_load,
                last_seen: (!rng.chance(3)).then(|| utc(now - rng.below(86_400 * 3) as i64)),
            }
        })
        .collect();
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

/// Decodes every response; the number of workers decoded.
fn decode_all(responses: &[(Vec<u8>, Vec<String>)]) -> usize {
    responses
        .iter()
        .map(|(body, names)| {
            let (workers, _) = decode_worker_infos(body, names).expect("the response decodes");
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
    for (id, workers, chunk) in [
        ("one_response", 2_000usize, 2_000usize),
        ("one_response", 10_000, 10_000),
    ] {
        let exports = exports(workers);
        let responses = responses(&exports, chunk);
        // Outside the timed loop: every worker decodes, with its fields.
        let mut decoded = Vec::new();
        for (body, names) in &responses {
            let (records, left_out) = decode_worker_infos(body, names).expect("decodes");
            assert_eq!(left_out, 0, "{id}/{workers}: workers left out");
            decoded.extend(records);
        }
        assert_eq!(decoded.len(), workers, "{id}/{workers}: decoded workers");
        for (record, export) in decoded.iter().zip(&exports) {
            assert_eq!(record.name, export.name);
            assert_eq!(record.arches.len(), export.arches.len());
            assert_eq!(record.channels.len(), export.channels.len());
            assert_eq!(record.current_load, export.current_load);
        }
        let bytes: usize = responses.iter().map(|(body, _)| body.len()).sum();
        eprintln!(
            "multicall/{id}/{workers}: {} response(s), {bytes} bytes",
            responses.len()
        );
        group.throughput(Throughput::Elements(workers as u64));
        group.bench_function(BenchmarkId::new(id, workers), |b| {
            b.iter(|| decode_all(black_box(&responses)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_multicall);
criterion_main!(benches);
