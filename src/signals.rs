//! Signals while serving. SIGHUP reloads the configuration ([`Reloader`]). SIGUSR1 and SIGUSR2 would end
//! the process at once (the default action), without a graceful shutdown, and systemd's
//! `Restart=on-failure` does not restart a process that a signal ended: they are ignored with a log line.
//! (SIGTERM and Ctrl-C are Rocket's: its `shutdown.signals` and `shutdown.ctrlc`; a signal named there
//! shuts down, whatever this module says.)

use std::sync::Arc;

#[cfg(unix)]
use rocket::config::Sig;

use crate::reload::Reloader;

/// Reloads on SIGHUP and ignores SIGUSR1 and SIGUSR2 with a warning for each one received, except those
/// Rocket's `shutdown.signals` names (those shut down). Call it inside the runtime, before serving.
#[cfg(unix)]
pub fn handle(config: &rocket::Config, reloader: &Arc<Reloader>) {
    use rocket::tokio::signal::unix::{SignalKind, signal};

    let handled = [
        (Sig::Hup, SignalKind::hangup()),
        (Sig::Usr1, SignalKind::user_defined1()),
        (Sig::Usr2, SignalKind::user_defined2()),
    ];
    for (sig, kind) in handled {
        if config.shutdown.signals.contains(&sig) {
            continue;
        }
        match signal(kind) {
            Ok(mut received) => {
                let reloader = Arc::clone(reloader);
                rocket::tokio::spawn(async move {
                    while received.recv().await.is_some() {
                        if sig == Sig::Hup {
                            // The outcome is logged (and in the reload metrics).
                            let _outcome = reloader.reload("SIGHUP").await;
                        } else {
                            log::warn!(
                                "received {sig}: ignored (SIGHUP reloads the configuration)"
                            );
                        }
                    }
                });
            }
            // Before Rocket's logger is installed: straight to stderr, as the other start-up lines.
            Err(e) => eprintln!("kobo-exporter: cannot handle {sig}: {e}; it ends the process"),
        }
    }
}

/// No such signals elsewhere.
#[cfg(not(unix))]
pub fn handle(_config: &rocket::Config, _reloader: &Arc<Reloader>) {}
