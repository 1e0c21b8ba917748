//! Signals the exporter has no use for yet. SIGHUP, SIGUSR1 and SIGUSR2 would end the process at once (the
//! default action), without a graceful shutdown, and systemd's `Restart=on-failure` does not restart a
//! process that a HUP ended. Until the configuration can be reloaded, they are ignored with a log line.
//! (SIGTERM and Ctrl-C are Rocket's: its `shutdown.signals` and `shutdown.ctrlc`.)

#[cfg(unix)]
use rocket::config::Sig;

/// Ignores SIGHUP, SIGUSR1 and SIGUSR2 with a warning for each one received, except those Rocket's
/// `shutdown.signals` names (those shut down). Call it inside the runtime, before serving.
#[cfg(unix)]
pub fn ignore_unused(config: &rocket::Config) {
    use rocket::tokio::signal::unix::{SignalKind, signal};

    let unused = [
        (Sig::Hup, SignalKind::hangup()),
        (Sig::Usr1, SignalKind::user_defined1()),
        (Sig::Usr2, SignalKind::user_defined2()),
    ];
    for (sig, kind) in unused {
        if config.shutdown.signals.contains(&sig) {
            continue;
        }
        match signal(kind) {
            Ok(mut received) => {
                rocket::tokio::spawn(async move {
                    while received.recv().await.is_some() {
                        log::warn!(
                            "received {sig}: ignored (the exporter does not reload its configuration: \
                             restart it to apply a change)"
                        );
                    }
                });
            }
            // Before Rocket's logger is installed: straight to stderr, as the other start-up lines.
            Err(e) => eprintln!("kobo-exporter: cannot ignore {sig}: {e}; it ends the process"),
        }
    }
}

/// No such signals elsewhere.
#[cfg(not(unix))]
pub fn ignore_unused(_config: &rocket::Config) {}
