//! `kobo-exporter`: serves a kobo hub's metrics for Prometheus. See the README for configuration and
//! `kobo-exporter --help` for the command line.

fn main() -> std::process::ExitCode {
    kobo_exporter::cli::main()
}
