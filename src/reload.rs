//! Reloading the configuration without a restart: on SIGHUP, and on `POST /-/reload` when
//! `kobo.enable_reload` is on.
//!
//! The config file (and the environment the process started with) is read and validated whole, as at
//! start-up; a configuration that fails is refused, logged with the key at fault, and the old one keeps
//! serving. Hubs whose settings did not change keep their connections and caches ([`HubSet::open`]);
//! changed and removed ones are swapped out, finish their scrapes in flight, and close their connections
//! when the last of them ends. The basic-auth users are replaced. What Rocket fixed at launch (address,
//! port, TLS, workers, the path prefix its routes are mounted under) needs a restart: a reload that
//! changes it says so in a warning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use figment::Figment;

use crate::auth::{AuthState, BasicAuth};
use crate::config::{self, ConfigError, ExporterConfig};
use crate::hubs::{HubSet, Hubs};
use crate::metrics::exporter::ReloadStatus;

/// What Rocket fixed at launch, as the configuration then gave it: a reload that changes it warns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    path_prefix: String,
    /// Rocket's settings that it reads once (address, port, workers, TLS, ...), in a comparable form.
    rocket: String,
    /// The contents of the TLS certificate chain and key files (a hash).
    tls_files: u64,
}

impl Launched {
    pub fn of(figment: &Figment, config: &ExporterConfig) -> Launched {
        let rocket_config = figment.extract::<rocket::Config>();
        let rocket = match &rocket_config {
            Ok(c) => format!(
                "address {} port {} workers {} max_blocking {} keep_alive {} tls {} ident {:?} \
                 ip_header {:?} log_level {:?} limits {:?} shutdown {:?} temp_dir {:?}",
                c.address,
                c.port,
                c.workers,
                c.max_blocking,
                c.keep_alive,
                c.tls_enabled(),
                c.ident,
                c.ip_header,
                c.log_level,
                c.limits,
                c.shutdown,
                c.temp_dir,
            ),
            Err(e) => format!("unreadable: {e}"),
        };
        Launched {
            path_prefix: config.path_prefix.clone(),
            rocket,
            tls_files: rocket_config.as_ref().map_or(0, tls_files),
        }
    }

    /// Warnings for what differs in `new` (it needs a restart to apply).
    fn restart_needed(&self, new: &Launched) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.path_prefix != new.path_prefix {
            warnings.push(format!(
                "`kobo.path_prefix` changed ({} -> {}): the routes stay under {} until a restart",
                self.path_prefix, new.path_prefix, self.path_prefix
            ));
        }
        if self.rocket != new.rocket {
            warnings.push(
                "Rocket's own settings changed (address, port, workers, max_blocking, keep_alive, \
                 tls, ident, ip_header, log_level, limits, shutdown or temp_dir): they apply at the \
                 next restart"
                    .into(),
            );
        }
        if self.tls_files != new.tls_files {
            warnings.push(
                "the TLS certificate or key file changed: Rocket 0.5 loads them once at launch, so \
                 the old certificate is served until a restart (or rotate it at the reverse proxy)"
                    .into(),
            );
        }
        warnings
    }
}

/// A hash of the TLS files' contents (0 without TLS).
fn tls_files(config: &rocket::Config) -> u64 {
    use std::hash::{Hash as _, Hasher as _};

    let Some(tls) = &config.tls else {
        return 0;
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in [tls.certs().left(), tls.key().left()].into_iter().flatten() {
        match config::read_small_file(&path, config::MAX_FILE_BYTES) {
            Ok(text) => text.hash(&mut hasher),
            Err(e) => e.hash(&mut hasher),
        }
    }
    hasher.finish()
}

/// Reloads the configuration into the hubs and the basic-auth users being served.
pub struct Reloader {
    hubs: Arc<Hubs>,
    auth: AuthState,
    /// Whether `POST /-/reload` may reload (`kobo.enable_reload`, as the configuration in force says).
    enabled: AtomicBool,
    launched: Launched,
    status: Mutex<ReloadStatus>,
    /// One reload at a time (a HUP and a POST together run one after the other).
    running: tokio::sync::Mutex<()>,
    /// Reads the configuration anew: [`config::figment`], or a test's.
    read: Box<dyn Fn() -> Result<Figment, ConfigError> + Send + Sync>,
}

impl Reloader {
    /// A reloader for what is served now (`hubs`, `auth`), started from `config`.
    pub fn new(
        hubs: Arc<Hubs>,
        auth: AuthState,
        config: &ExporterConfig,
        launched: Launched,
        read: Box<dyn Fn() -> Result<Figment, ConfigError> + Send + Sync>,
    ) -> Reloader {
        Reloader {
            hubs,
            auth,
            enabled: AtomicBool::new(config.enable_reload),
            launched,
            status: Mutex::new(ReloadStatus {
                successful: true,
                success_timestamp: unix_now(),
            }),
            running: tokio::sync::Mutex::new(()),
            read,
        }
    }

    /// The configuration as the process reads it at start-up: the config file and the environment.
    pub fn from_environment() -> Box<dyn Fn() -> Result<Figment, ConfigError> + Send + Sync> {
        Box::new(|| {
            config::check_before_start()?;
            Ok(crate::cli::client_from_peer_by_default(config::figment()))
        })
    }

    /// Whether `POST /-/reload` is on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> ReloadStatus {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads, validates and applies the configuration; `trigger` (`SIGHUP`, `POST /-/reload`) is for the
    /// log. The error (one line, naming the key, no secret) is logged too.
    pub async fn reload(&self, trigger: &str) -> Result<String, String> {
        let _one_at_a_time = self.running.lock().await;
        match self.apply() {
            Ok(done) => {
                *self.status.lock().unwrap_or_else(PoisonError::into_inner) = ReloadStatus {
                    successful: true,
                    success_timestamp: unix_now(),
                };
                log::info!("configuration reloaded ({trigger}): {done}");
                Ok(done)
            }
            Err(e) => {
                self.status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .successful = false;
                let message = format!(
                    "configuration reload ({trigger}) refused, the configuration in force keeps \
                     serving: {e}"
                );
                log::error!("{message}");
                Err(message)
            }
        }
    }

    fn apply(&self) -> Result<String, ConfigError> {
        let figment = (self.read)()?;
        let config = ExporterConfig::from_figment(&figment)?;
        config::check_tls(&figment)?;
        let auth = BasicAuth::of(&config)?;
        for warning in self
            .launched
            .restart_needed(&Launched::of(&figment, &config))
        {
            log::warn!("configuration reload: {warning}");
        }
        let current = self.hubs.current();
        let (set, changes) = HubSet::open(&config, Some(&current))?;
        drop(current);
        // The old set goes when the scrapes in flight on it end (each holds its hub).
        drop(self.hubs.replace(set));
        self.auth.replace(auth);
        self.enabled.store(config.enable_reload, Ordering::Relaxed);
        Ok(changes.to_string())
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs_f64())
        .unwrap_or(0.0)
}
