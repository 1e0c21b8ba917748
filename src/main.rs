//! `kobo-exporter`: serves a kobo hub's metrics for Prometheus. See the README for configuration.

use std::process::ExitCode;

use kobo_exporter::collector::HubCollector;
use kobo_exporter::{config, routes, source};

#[rocket::main]
async fn main() -> ExitCode {
    let figment = config::figment();
    let settings = match config::Settings::from_figment(&figment) {
        Ok(settings) => settings,
        Err(e) => return fail(&e),
    };
    let source = match source::open(&settings) {
        Ok(source) => source,
        Err(e) => return fail(&e),
    };
    eprintln!("kobo-exporter: serving metrics from {}", source.describe());
    let collector = HubCollector::new(source, settings.collector.clone());
    match routes::build(figment, collector).launch().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kobo-exporter: cannot serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("kobo-exporter: {error}");
    ExitCode::FAILURE
}
