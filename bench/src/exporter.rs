//! The exporter under test: its config file, its process, its memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Context, Result, Scenario};

/// The `kobo` table of one row's config.
pub struct KoboSettings {
    url: String,
    worker_dir: Option<PathBuf>,
    scenario: Scenario,
}

impl KoboSettings {
    pub fn new(url: String, worker_dir: Option<PathBuf>, scenario: Scenario) -> KoboSettings {
        KoboSettings {
            url,
            worker_dir,
            scenario,
        }
    }

    fn toml(&self, port: u16) -> String {
        let mut kobo = format!("url = {}\n", quoted(&self.url));
        if let Some(dir) = &self.worker_dir {
            kobo += &format!("worker_dir = {}\n", quoted(&dir.display().to_string()));
        }
        kobo += match self.scenario {
            Scenario::Reference => "metrics = \"reference\"\n",
            // The defaults: task metrics on for SQL sources (off for XML-RPC), refreshed every 60 s.
            Scenario::Full => "metrics = \"all\"\n",
            Scenario::FullRefresh => {
                "metrics = \"all\"\ntask_metrics = true\ntask_refresh_interval = 0\n"
            }
        };
        format!(
            "[default]\naddress = \"127.0.0.1\"\nport = {port}\nlog_level = \"critical\"\n\n\
             [default.kobo]\n{kobo}"
        )
    }
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A running exporter; killed when dropped.
pub struct Exporter {
    child: Child,
    port: u16,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exporter {
    /// Writes `<out>/<name>.toml`, starts `binary --config` on it (output to `<out>/<name>.log`) and waits
    /// until it answers `/-/healthy`.
    pub async fn start(
        binary: &Path,
        out: &Path,
        name: &str,
        settings: &KoboSettings,
    ) -> Result<Exporter> {
        let port = free_port()?;
        let config = out.join(format!("{name}.toml"));
        std::fs::write(&config, settings.toml(port))
            .context(format!("writing {}", config.display()))?;
        let log_path = out.join(format!("{name}.log"));
        let log = File::create(&log_path).context(format!("creating {}", log_path.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("the log file")?)
            .stderr(log);
        // Only the config file configures it: no KOBO_* or ROCKET_* from the caller's environment.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("KOBO_") || key.starts_with("ROCKET_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .context(format!("starting {}", binary.display()))?;
        let mut exporter = Exporter { child, port };
        exporter.wait_healthy(&log_path).await?;
        Ok(exporter)
    }

    async fn wait_healthy(&mut self, log: &Path) -> Result<()> {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/-/healthy", self.port);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.child.try_wait().context("watching the exporter")? {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                return Err(anyhow::anyhow!(
                    "the exporter exited ({status}) before answering; its log ({}):\n{tail}",
                    log.display()
                ));
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(anyhow::anyhow!(
            "the exporter did not answer {url} within 30 s (log: {})",
            log.display()
        ))
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        self.status_kib("VmRSS")
    }

    /// Peak resident memory, KiB.
    pub fn rss_peak_kib(&self) -> Result<u64> {
        self.status_kib("VmHWM")
    }

    fn status_kib(&self, field: &str) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).context(format!("reading {path}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{path} has no {field}"))
    }

    /// Stops the exporter (its database connections close with it).
    pub fn stop(self) {
        drop(self);
    }
}

/// A port nobody listens on now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("finding a free port")?.port())
}
