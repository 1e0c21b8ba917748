//! The command line: `--config FILE`, `--check-config`, `--once [--target NAME]`, or (by default) serve.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use figment::Figment;

use crate::auth::{AuthState, BasicAuth};
use crate::config::{self, ConfigError, ExporterConfig, Settings};
use crate::exposition::Format;
use crate::hubs::{Hub, HubSet, Hubs};
use crate::reload::{Launched, Reloader};
use crate::routes;

/// Prometheus exporter for kobo hubs. Configured by Rocket.toml (profiles picked with ROCKET_PROFILE),
/// ROCKET_* and KOBO_* environment variables; see the README.
#[derive(Debug, Parser)]
#[command(name = "kobo-exporter", version, about)]
pub struct Cli {
    /// The config file to read instead of Rocket.toml (the same as ROCKET_CONFIG=FILE).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Load and validate the configuration, read every hub once, print a one-line verdict per hub and
    /// exit: 0 if everything works, 1 if not.
    #[arg(long, conflicts_with = "once")]
    pub check_config: bool,
    /// Collect once, print the metrics (Prometheus text format) to stdout and exit: 0 on success, 1 with
    /// the error on stderr.
    #[arg(long)]
    pub once: bool,
    /// With --once: the named hub (`kobo.hubs.NAME`) to collect from, instead of the kobo table's own.
    #[arg(long, value_name = "NAME", requires = "once")]
    pub target: Option<String>,
}

/// Everything start-up prepares from the configuration.
struct Prepared {
    figment: Figment,
    config: ExporterConfig,
}

/// Reads and validates the configuration (the exporter's `kobo` table, its hubs and Rocket's own keys).
/// The error is one line, without secrets.
fn prepare() -> Result<Prepared, ConfigError> {
    let figment = config::figment();
    let config = ExporterConfig::from_figment(&figment)?;
    figment
        .extract::<rocket::Config>()
        .map_err(|e| ConfigError(format!("Rocket's settings: {e}")))?;
    Ok(Prepared { figment, config })
}

/// Runs the command line: parses the arguments, then checks, collects once or serves.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before Rocket's runtime starts (`rocket::execute` reads Rocket's figment and panics on a config file
    // it cannot read or parse) and before its threads start (`set_var`).
    if let Err(e) = set_up(&cli) {
        return if cli.check_config {
            verdict(Err(e.to_string()))
        } else {
            fail(&e)
        };
    }
    if cli.check_config || cli.once {
        // Serving installs Rocket's logger; without one the sources' warnings would go nowhere.
        StderrLogger::install();
    }
    rocket::execute(run(cli))
}

/// `--config` into `ROCKET_CONFIG`, then the checks that must come before Rocket reads its config.
#[allow(
    unsafe_code,
    reason = "set_var is unsafe since edition 2024; Rocket reads its config file from ROCKET_CONFIG"
)]
fn set_up(cli: &Cli) -> Result<(), ConfigError> {
    if let Some(path) = &cli.config {
        check_config_file(path)?;
        // SAFETY: called from `main` before Rocket's runtime or any other thread starts, so nothing reads
        // or writes the environment at the same time.
        unsafe { std::env::set_var("ROCKET_CONFIG", path) };
    }
    config::check_before_start()
}

async fn run(cli: Cli) -> ExitCode {
    let prepared = match prepare().and_then(|prepared| {
        if !cli.once {
            // What Rocket loads at launch, checked now: one line naming the key, not a launch failure.
            config::check_tls(&prepared.figment)?;
        }
        Ok(prepared)
    }) {
        Ok(prepared) => prepared,
        Err(e) if cli.check_config => return verdict(Err(e.to_string())),
        Err(e) => return fail(&e),
    };
    if cli.check_config {
        return check_every_hub(&prepared.config).await;
    }
    if cli.once {
        let settings = match once_settings(&prepared.config, cli.target.as_deref()) {
            Ok(settings) => settings,
            Err(e) => return fail(&e),
        };
        let hub = match Hub::open(settings) {
            Ok(hub) => hub,
            Err(e) => return fail(&e),
        };
        return match hub.collector.collect_once(Format::Text).await {
            Ok((_, text)) => {
                // Not print!: a closed pipe (`| head`) is an error to report, not a panic.
                let mut stdout = std::io::stdout().lock();
                match stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(&format!("writing the metrics to stdout: {e}")),
                }
            }
            // The collector logged it already (the logger above): once is enough.
            Err(e) if StderrLogger::printed(&e.0) => ExitCode::FAILURE,
            Err(e) => fail(&e.0),
        };
    }
    serve(prepared).await
}

/// The hub `--once` reads: `--target NAME`'s, else the `kobo` table's own.
fn once_settings<'a>(
    config: &'a ExporterConfig,
    target: Option<&str>,
) -> Result<&'a Settings, ConfigError> {
    let names = || crate::hubs::name_list(config.hubs.keys());
    match target {
        Some(name) => config.hubs.get(name).ok_or_else(|| {
            ConfigError(format!(
                "--target: no hub of that name in `kobo.hubs` (the hubs configured: {})",
                names()
            ))
        }),
        None => config.default.as_ref().ok_or_else(|| {
            ConfigError(format!(
                "the kobo table has no hub of its own (no `kobo.url`): give --target NAME (the hubs \
                 configured: {})",
                names()
            ))
        }),
    }
}

/// `--check-config`: every hub opened and read once, all at the same time; a verdict line per hub, in
/// the configuration's order (the `kobo` table's own first). With the `kobo` table's hub alone the line
/// is the one it always was.
async fn check_every_hub(config: &ExporterConfig) -> ExitCode {
    let single = config.hubs.is_empty();
    let mut checks = Vec::new();
    for (name, settings) in config.every_hub() {
        let prefix = match name {
            Some(name) => format!("hub {name}: "),
            None if single => String::new(),
            None => format!("hub {}: ", crate::hubs::label(None)),
        };
        let hub = Hub::open(settings);
        checks.push((
            prefix,
            tokio::spawn(async move {
                let hub = hub.map_err(|e| e.to_string())?;
                let description = hub.collector.source().describe();
                hub.collector
                    .collect_once(Format::Text)
                    .await
                    .map(|(workers, _)| format!("{description}, {workers} workers"))
                    .map_err(|e| e.0)
            }),
        ));
    }
    let mut code = ExitCode::SUCCESS;
    for (prefix, check) in checks {
        let result = check
            .await
            .unwrap_or_else(|e| Err(format!("the check did not finish: {e}")));
        if verdict(
            result
                .map(|ok| format!("{prefix}{ok}"))
                .map_err(|e| format!("{prefix}{e}")),
        ) != ExitCode::SUCCESS
        {
            code = ExitCode::FAILURE;
        }
    }
    code
}

/// A file named with `--config` must exist (Rocket.toml may be absent: then the defaults and the
/// environment apply), and its path must be UTF-8: Rocket and figment read `ROCKET_CONFIG` as a string
/// and would silently read `Rocket.toml` instead.
fn check_config_file(path: &std::path::Path) -> Result<(), ConfigError> {
    if path.to_str().is_none() {
        return Err(ConfigError(format!(
            "--config {}: the path is not valid UTF-8 (Rocket cannot read it): rename the file",
            path.display()
        )));
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "--config {}: not a regular file",
            path.display()
        )))
    }
}

/// The logger of `--once` and `--check-config`: warnings and errors on stderr, one line each, prefixed
/// like the exporter's own messages. Installed only if no other logger is.
struct StderrLogger;

/// The last error [`StderrLogger`] printed, so that `--once` does not print its failure twice.
static LAST_ERROR: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

impl StderrLogger {
    fn install() {
        static LOGGER: StderrLogger = StderrLogger;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Warn);
        }
    }

    /// Whether this message was the last error printed.
    fn printed(message: &str) -> bool {
        LAST_ERROR
            .lock()
            .is_ok_and(|last| *last == message.replace(['\r', '\n'], " "))
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                log::Level::Error => "error",
                _ => "warning",
            };
            let message = record.args().to_string().replace(['\r', '\n'], " ");
            if record.level() == log::Level::Error
                && let Ok(mut last) = LAST_ERROR.lock()
            {
                last.clone_from(&message);
            }
            // A closed stderr is nothing to report to.
            let _ = writeln!(std::io::stderr(), "kobo-exporter: {level}: {message}");
        }
    }

    fn flush(&self) {}
}

/// `--check-config`'s one line on stdout: `ok: ...` (exit 0) or `error: ...` (exit 1).
fn verdict(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(message) => {
            println!("ok: {message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            // One line, whatever the source's error text holds.
            println!("error: {}", message.replace(['\r', '\n'], " "));
            ExitCode::FAILURE
        }
    }
}

async fn serve(prepared: Prepared) -> ExitCode {
    let figment = client_from_peer_by_default(prepared.figment);
    let rocket_config = match figment.extract::<rocket::Config>() {
        Ok(config) => config,
        Err(e) => return fail(&ConfigError(format!("Rocket's settings: {e}"))),
    };
    let config = prepared.config;
    let (hubs, auth) = match HubSet::open(&config, None).and_then(|(set, _)| {
        let auth = BasicAuth::of(&config)?;
        Ok((set, auth))
    }) {
        Ok(opened) => opened,
        Err(e) => return fail(&e),
    };
    for hub in hubs.every() {
        match &hub.name {
            None => eprintln!(
                "kobo-exporter: serving metrics from {}",
                hub.collector.source().describe()
            ),
            Some(name) => eprintln!(
                "kobo-exporter: serving hub {name} at /probe?target={name} from {}",
                hub.collector.source().describe()
            ),
        }
    }
    let hubs = Arc::new(Hubs::new(hubs));
    let auth = AuthState::new(auth);
    let reloader = Arc::new(Reloader::new(
        Arc::clone(&hubs),
        auth.clone(),
        &config,
        Launched::of(&figment, &config),
        Reloader::from_environment(),
    ));
    // Both before Rocket starts: its logger is installed when the instance is built, and a HUP that came
    // before the handlers would end the process.
    crate::logging::install(&rocket_config);
    crate::signals::handle(&rocket_config, &reloader);
    // Rocket never times out a connection that sends no request: the watchdog closes them.
    let rocket = routes::build_hubs(figment, hubs, auth, &config.path_prefix, Some(reloader))
        .attach(crate::idle::watchdog());
    match rocket.launch().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot serve: {e}")),
    }
}

/// Rocket's `ip_header` (the header its client address is taken from) is off unless the configuration
/// sets it: without a proxy in front any client could name itself in it, and the client that log lines
/// name (refused credentials) is then the connection's peer.
pub(crate) fn client_from_peer_by_default(figment: Figment) -> Figment {
    let rockets_default = figment
        .find_metadata(rocket::Config::IP_HEADER)
        .is_none_or(|meta| meta.name.starts_with("rocket::Config"));
    if rockets_default {
        figment.merge(figment::providers::Serialized::default(
            rocket::Config::IP_HEADER,
            false,
        ))
    } else {
        figment
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("kobo-exporter: {error}");
    ExitCode::FAILURE
}
