//! `kobo-exporter`: serves a kobo hub's metrics for Prometheus. See the README for configuration and
//! `kobo-exporter --help` for the command line.

fn main() -> std::process::ExitCode {
    tune_malloc();
    // The one TLS crypto provider of the process (ring), for the XML-RPC source's HTTPS and anything
    // else that asks rustls for the process default. An error means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    kobo_exporter::cli::main()
}

/// glibc malloc settings for a process that builds a large response per scrape and then frees it:
/// - one arena for the whole process: by default glibc gives threads arenas of their own (up to 8 per
///   core) and keeps what they freed, so the blocking thread that reads the database and the worker that
///   renders each held a high-water mark (1,000 workers, full set: 25 -> 18 MB, same p50);
/// - buffers of 1 MiB and more (an XML-RPC answer, the exposition of thousands of workers) in their own
///   mappings, given back when freed, instead of glibc's threshold that rises to the largest buffer ever
///   freed and keeps them in the heap (XML-RPC source, 1,000 workers: 23 -> 16 MB). Not lower: a 256 KiB
///   threshold also mapped the exposition of 1,000 workers anew per scrape (full set: 7.5 -> 9.3 ms).
///
/// `MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_` in the environment still win. Measured with kobo-bench.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "mallopt has no safe wrapper; called before any thread starts"
)]
fn tune_malloc() {
    let settings = [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 1),
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            1024 * 1024,
        ),
    ];
    for (variable, parameter, value) in settings {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only sets an allocator parameter; it is called before any thread starts.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
