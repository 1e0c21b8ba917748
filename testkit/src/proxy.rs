//! A TCP proxy for fault injection: it listens on 127.0.0.1 and forwards every connection to a target,
//! faithfully or with a fault, switched at run time with [`Proxy::set`].
//!
//! Each connection is one task that reads from both sides and forwards chunk by chunk; before forwarding a
//! chunk it looks at the current [`Mode`], so a change applies to the connections already open as well as
//! to new ones. Everything stops by itself: when the [`Proxy`] is dropped or [`shut down`](Proxy::shutdown),
//! and in any case [`LIFETIME`] after it started (every loop waits on that deadline too).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The longest a proxy lives: its tasks end then, whatever the test does.
pub const LIFETIME: Duration = Duration::from_secs(120);

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything as it comes.
    Pass,
    /// The listening socket is closed: a new connection is refused (`ECONNREFUSED`). Open connections keep
    /// passing.
    Refuse,
    /// Every connection forwards at most `after` bytes from the server (counted from the switch to this
    /// mode, or from the connection's start), then is reset (RST) on both sides: a connection dropped in
    /// the middle of an answer. Bytes from the client pass.
    Reset { after: usize },
    /// Connections are accepted (and connected to the target), but nothing is forwarded in either direction
    /// until the mode changes; what was held is then forwarded (a network partition that heals).
    Stall,
    /// Every chunk is cut into pieces of at most `chunk` bytes, each sent after `delay`.
    Slow { delay: Duration, chunk: usize },
    /// The server goes away: every open connection is reset and new ones are refused. [`Mode::Pass`]
    /// brings it back on the same port.
    Down,
}

impl Mode {
    fn listens(self) -> bool {
        !matches!(self, Mode::Refuse | Mode::Down)
    }
}

/// The mode and a counter of switches (a connection in [`Mode::Reset`] counts its bytes per switch).
#[derive(Debug, Clone, Copy)]
struct Setting {
    mode: Mode,
    switch: u64,
}

/// What the proxy did so far.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicUsize,
    resets: AtomicUsize,
    delayed_pieces: AtomicUsize,
}

/// A running proxy.
pub struct Proxy {
    addr: std::net::SocketAddr,
    setting: watch::Sender<Setting>,
    listening: watch::Receiver<bool>,
    live: watch::Receiver<usize>,
    counters: Arc<Counters>,
    /// Every task of the proxy holds a clone of the sender: `recv` gives `None` once they have all ended.
    done: Option<mpsc::Sender<()>>,
    all_done: mpsc::Receiver<()>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 forwarding to `target`, in `mode`.
    pub async fn start(target: std::net::SocketAddr, mode: Mode) -> Proxy {
        let listener = bind(None).await;
        let addr = listener.local_addr().expect("proxy address");
        let (setting, setting_rx) = watch::channel(Setting { mode, switch: 0 });
        let (listening_tx, listening) = watch::channel(true);
        let (live_tx, live) = watch::channel(0usize);
        let counters = Arc::new(Counters::default());
        let (done, all_done) = mpsc::channel(1);
        let end = Instant::now() + LIFETIME;
        let context = Context {
            target,
            setting: setting_rx,
            live: Arc::new(live_tx),
            counters: Arc::clone(&counters),
            _done: done.clone(),
            end,
        };
        tokio::spawn(accept_loop(addr, listener, listening_tx, context));
        let proxy = Proxy {
            addr,
            setting,
            listening,
            live,
            counters,
            done: Some(done),
            all_done,
        };
        proxy.applied(mode).await;
        proxy
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Switches to `mode`; returns when it is in force: the listening socket closed or open again as the
    /// mode wants, and for [`Mode::Down`] every open connection reset.
    pub async fn set(&self, mode: Mode) {
        self.setting.send_modify(|s| {
            s.mode = mode;
            s.switch += 1;
        });
        self.applied(mode).await;
    }

    async fn applied(&self, mode: Mode) {
        let wait = async {
            let mut listening = self.listening.clone();
            listening
                .wait_for(|l| *l == mode.listens())
                .await
                .expect("the proxy's accept loop ended");
            if mode == Mode::Down {
                let mut live = self.live.clone();
                live.wait_for(|n| *n == 0)
                    .await
                    .expect("the proxy's connections ended");
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("the proxy did not switch to {mode:?} within 10 s"));
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Connections reset so far (by [`Mode::Reset`] or [`Mode::Down`]).
    pub fn resets(&self) -> usize {
        self.counters.resets.load(Ordering::SeqCst)
    }

    /// Pieces sent late by [`Mode::Slow`] so far.
    pub fn delayed_pieces(&self) -> usize {
        self.counters.delayed_pieces.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        *self.live.borrow()
    }

    /// Stops everything: the listening socket and every connection (both sides closed), and waits until
    /// every task of the proxy has ended.
    pub async fn shutdown(mut self) {
        self.setting.send_modify(|s| {
            s.mode = Mode::Down;
            s.switch += 1;
        });
        self.done = None;
        // Dropping the sender of the setting ends every loop; then every task drops its `done` clone.
        let (closed, _) = watch::channel(self.setting.borrow().to_owned());
        drop(std::mem::replace(&mut self.setting, closed));
        tokio::time::timeout(Duration::from_secs(10), self.all_done.recv())
            .await
            .expect("the proxy's tasks did not end within 10 s");
    }
}

/// What every task of the proxy shares.
#[derive(Clone)]
struct Context {
    target: std::net::SocketAddr,
    setting: watch::Receiver<Setting>,
    live: Arc<watch::Sender<usize>>,
    counters: Arc<Counters>,
    /// Held, never sent on: the proxy knows that every task ended when the last clone is dropped.
    _done: mpsc::Sender<()>,
    end: Instant,
}

/// A listening socket on a free port of 127.0.0.1.
async fn bind(addr: Option<std::net::SocketAddr>) -> TcpListener {
    reserve(addr.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()))
        .listen(128)
        .expect("listen")
}

/// A socket bound to `addr` that does not listen: it keeps the port while the proxy refuses connections
/// (a connection to it is refused), so that no other socket of the machine (another test's, an outgoing
/// connection's ephemeral port) takes the port before the proxy listens on it again. SO_REUSEPORT lets it
/// bind beside the listening socket it replaces, SO_REUSEADDR beside that one's closed connections.
fn reserve(addr: std::net::SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket
        .bind(addr)
        .unwrap_or_else(|e| panic!("the proxy cannot bind {addr}: {e}"));
    socket
}

/// Accepts connections while the mode wants it; closes the listening socket when it does not, and opens
/// it again on the same port when it wants again.
async fn accept_loop(
    addr: std::net::SocketAddr,
    listener: TcpListener,
    listening: watch::Sender<bool>,
    mut context: Context,
) {
    let end = context.end;
    let run = async move {
        let mut listener = Some(listener);
        // The port, held while nothing listens on it.
        let mut reserved: Option<TcpSocket> = None;
        loop {
            let mode = context.setting.borrow_and_update().mode;
            if !mode.listens() {
                if listener.is_some() {
                    reserved = Some(reserve(addr));
                    listener = None;
                }
            } else if listener.is_none() {
                let socket = reserved.take().unwrap_or_else(|| reserve(addr));
                listener = Some(socket.listen(128).expect("listen again"));
            }
            listening.send_replace(listener.is_some());
            let Some(open) = &listener else {
                if context.setting.changed().await.is_err() {
                    return;
                }
                continue;
            };
            tokio::select! {
                changed = context.setting.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                accepted = open.accept() => {
                    if let Ok((client, _)) = accepted {
                        context.counters.accepted.fetch_add(1, Ordering::SeqCst);
                        context.live.send_modify(|n| *n += 1);
                        tokio::spawn(connection(client, context.clone()));
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout_at(end, run).await;
}

/// What became of a chunk.
enum Forwarded {
    Sent,
    /// Reset both sides now.
    Reset,
    /// The proxy is stopping, or a side is gone.
    Closed,
}

/// One proxied connection.
async fn connection(client: TcpStream, mut context: Context) {
    let end = context.end;
    let live = Arc::clone(&context.live);
    let run = async move {
        let mut client = client;
        let Ok(Ok(mut server)) =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(context.target)).await
        else {
            reset(client, None, &context.counters);
            return;
        };
        let mut budget = ResetBudget::default();
        let mut from_client = vec![0u8; 16 * 1024];
        let mut from_server = vec![0u8; 16 * 1024];
        loop {
            let (n, upstream) = tokio::select! {
                changed = context.setting.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if context.setting.borrow().mode == Mode::Down {
                        reset(client, Some(server), &context.counters);
                        return;
                    }
                    continue;
                }
                read = client.read(&mut from_client) => match read {
                    Ok(n) if n > 0 => (n, true),
                    _ => return,
                },
                read = server.read(&mut from_server) => match read {
                    Ok(n) if n > 0 => (n, false),
                    _ => return,
                },
            };
            let (data, to, downstream) = if upstream {
                (&from_client[..n], &mut server, false)
            } else {
                (&from_server[..n], &mut client, true)
            };
            let outcome = forward(data, to, downstream, &mut budget, &mut context).await;
            match outcome {
                Forwarded::Sent => {}
                Forwarded::Closed => return,
                Forwarded::Reset => {
                    reset(client, Some(server), &context.counters);
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout_at(end, run).await;
    live.send_modify(|n| *n -= 1);
}

/// How much a connection may still forward from the server in [`Mode::Reset`].
#[derive(Default)]
struct ResetBudget {
    switch: Option<u64>,
    sent: usize,
}

/// Forwards one chunk as the mode says: waiting out a stall, piece by piece on a slow link. A change of
/// mode applies to the rest of the chunk at once (a stall or a slow link that ends does not hold the rest).
async fn forward(
    mut data: &[u8],
    to: &mut TcpStream,
    from_server: bool,
    budget: &mut ResetBudget,
    context: &mut Context,
) -> Forwarded {
    while !data.is_empty() {
        let setting = *context.setting.borrow_and_update();
        let (sent, rest) = match setting.mode {
            Mode::Pass | Mode::Refuse => (to.write_all(data).await, &data[data.len()..]),
            Mode::Down => return Forwarded::Reset,
            Mode::Stall => {
                // Hold the chunk until the mode changes.
                if context.setting.changed().await.is_err() {
                    return Forwarded::Closed;
                }
                continue;
            }
            Mode::Slow { delay, chunk } => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    changed = context.setting.changed() => {
                        if changed.is_err() {
                            return Forwarded::Closed;
                        }
                        continue;
                    }
                }
                context
                    .counters
                    .delayed_pieces
                    .fetch_add(1, Ordering::SeqCst);
                let (piece, rest) = data.split_at(chunk.clamp(1, data.len()));
                (to.write_all(piece).await, rest)
            }
            Mode::Reset { after } if from_server => {
                if budget.switch != Some(setting.switch) {
                    *budget = ResetBudget {
                        switch: Some(setting.switch),
                        sent: 0,
                    };
                }
                let room = after.saturating_sub(budget.sent);
                if data.len() > room {
                    // The part that fits, then the reset.
                    let _ = to.write_all(&data[..room]).await;
                    let _ = to.flush().await;
                    return Forwarded::Reset;
                }
                budget.sent += data.len();
                (to.write_all(data).await, &data[data.len()..])
            }
            Mode::Reset { .. } => (to.write_all(data).await, &data[data.len()..]),
        };
        if sent.is_err() {
            return Forwarded::Closed;
        }
        data = rest;
    }
    Forwarded::Sent
}

/// Closes the sockets with a reset (RST, `SO_LINGER` 0) instead of an orderly close.
fn reset(client: TcpStream, server: Option<TcpStream>, counters: &Counters) {
    counters.resets.fetch_add(1, Ordering::SeqCst);
    for stream in std::iter::once(client).chain(server) {
        let _ = stream.set_zero_linger();
        drop(stream);
    }
}

/// A database URL with its `host:port` replaced by `127.0.0.1:<proxy_port>`, and the address it named (the
/// proxy's target). Panics for a URL over a Unix socket: the proxy is TCP only.
pub async fn through(url: &str, proxy_port: u16) -> (String, std::net::SocketAddr) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    assert!(
        !tail.contains("host=") && !tail.contains("socket="),
        "the proxy needs the test server over TCP, not a Unix socket: {}",
        kobo_backend_api::redact_url(url)
    );
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (format!("{userinfo}@"), host_port),
        None => (String::new(), authority),
    };
    let target = tokio::net::lookup_host(host_port)
        .await
        .unwrap_or_else(|e| panic!("resolving {host_port}: {e}"))
        .find(std::net::SocketAddr::is_ipv4)
        .unwrap_or_else(|| panic!("{host_port} has no IPv4 address"));
    (
        format!("{scheme}://{userinfo}127.0.0.1:{proxy_port}{tail}"),
        target,
    )
}
