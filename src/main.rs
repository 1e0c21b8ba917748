//! `kobo-exporter`: serves a kobo hub's metrics for Prometheus. See the README for configuration.

use std::process::ExitCode;

use kobo_exporter::auth::BasicAuth;
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
    let basic_auth = if settings.basic_auth_users.0.is_empty() {
        None
    } else {
        match BasicAuth::new(settings.basic_auth_users.0.clone()) {
            Ok(auth) => Some(auth),
            Err(e) => {
                return fail(&format!(
                    "configuration error: `kobo.basic_auth_users`: {e}"
                ))
            }
        }
    };
    let web = routes::WebOptions {
        path_prefix: settings.path_prefix.clone(),
        basic_auth,
    };
    match routes::build_with(figment, collector, web).launch().await {
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
