//! `kobo-hubgen --url <sqlite:///path|postgres://…|mysql://…> --workers N --tasks M [--seed S]
//! [--worker-dir DIR]`: writes a deterministic synthetic kobo hub into an empty database.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use kobo_hubgen::HubSpec;

/// Writes a deterministic synthetic kobo hub (kobo's schema, users, 6 arches, 4 channels, N workers, M
/// tasks) into an empty SQLite file, PostgreSQL database or MariaDB database.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// sqlite:///path/to/hub.sqlite3, postgres://user@host/db or mysql://user@host/db (must be empty).
    #[arg(long)]
    url: String,
    /// Number of workers.
    #[arg(long)]
    workers: u32,
    /// Number of tasks.
    #[arg(long)]
    tasks: u32,
    /// Seed: the same workers, tasks and seed give the same rows in every database.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Also write kobo's last-seen files here (some workers are never seen).
    #[arg(long)]
    worker_dir: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let spec = HubSpec {
        workers: cli.workers,
        tasks: cli.tasks,
        seed: cli.seed,
    };
    let start = Instant::now();
    if let Err(e) = kobo_hubgen::generate(&cli.url, &spec).await {
        eprintln!("kobo-hubgen: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(dir) = &cli.worker_dir
        && let Err(e) = kobo_hubgen::write_worker_dir(dir, &spec)
    {
        eprintln!("kobo-hubgen: worker dir {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    eprintln!(
        "kobo-hubgen: {} workers, {} tasks (seed {}) in {:.1} s",
        spec.workers,
        spec.tasks,
        spec.seed,
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
