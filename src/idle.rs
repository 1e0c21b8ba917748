//! Connections that never send a request are closed.
//!
//! Rocket 0.5 turns its HTTP server's header-read timeout off, has no setting for it and no public way to
//! serve on a listener of one's own: a client that connects and sends nothing is held for as long as it
//! likes, one file descriptor each, until the process runs out of them and every scrape fails. Short of
//! forking Rocket, the exporter looks at its own sockets: once a second it lists the process' descriptors
//! (`/proc/self/fd`), and shuts down (`shutdown(2)`, which the server then sees as the client going away)
//! every TCP connection to the served address that has received no byte at all for longer than the limit.
//! A connection that has sent anything (a request in flight, a keep-alive connection between scrapes, a TLS
//! handshake) is never touched. Each descriptor is first duplicated, and the duplicate is checked and shut
//! down: a descriptor closed and reused meanwhile cannot make it act on another socket (see `sweep` for
//! when no descriptor is left to duplicate into).
//!
//! Linux with glibc only (`TCP_INFO`'s received-bytes count); elsewhere nothing is done.

#![allow(
    unsafe_code,
    reason = "dup, getsockopt(TCP_INFO), getsockname and shutdown on the process' own sockets: no safe \
              API reaches a socket Rocket owns; each block has its SAFETY note"
)]

use std::net::SocketAddr;
use std::time::Duration;

use rocket::fairing::AdHoc;

/// The limit when Rocket's `keep_alive` is 0.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(5);

/// A fairing that, once the server listens, closes connections that send nothing within Rocket's
/// `keep_alive` seconds (its idle-connection time, 5 by default, which Rocket 0.5 does not enforce; 0:
/// [`DEFAULT_LIMIT`]).
pub fn watchdog() -> AdHoc {
    AdHoc::on_liftoff("close silent connections", |rocket| {
        Box::pin(async move {
            let config = rocket.config();
            let limit = match config.keep_alive {
                0 => DEFAULT_LIMIT,
                seconds => Duration::from_secs(seconds.into()),
            };
            let served = SocketAddr::new(config.address, config.port);
            rocket::tokio::spawn(watch(served, limit));
        })
    })
}

async fn watch(served: SocketAddr, limit: Duration) {
    let mut ticks = rocket::tokio::time::interval(Duration::from_secs(1).min(limit));
    ticks.set_missed_tick_behavior(rocket::tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let closed = rocket::tokio::task::spawn_blocking(move || sweep(served, limit))
            .await
            .unwrap_or(0);
        if closed > 0 {
            log::warn!(
                "closed {closed} connection(s) that sent no request within {} s",
                limit.as_secs_f64()
            );
        }
    }
}

/// Shuts down the silent connections to `served`; how many.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn sweep(served: SocketAddr, limit: Duration) -> usize {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let limit_ms = u32::try_from(limit.as_millis()).unwrap_or(u32::MAX);
    let mut closed = 0;
    for fd in socket_descriptors() {
        // Checked and shut down through a duplicate: the descriptor may be closed and its number reused
        // meanwhile. Without a descriptor to spare (silent connections took them all, the very case this
        // is for), through the descriptor itself: a reuse between the check and the shutdown, within
        // microseconds, is then possible but needs a silent client to leave in that window.
        // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor (or fails, for one closed meanwhile).
        let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        let (target, _owned) = if duplicate >= 0 {
            // SAFETY: `duplicate` is a new descriptor that nothing else owns; it is closed on drop.
            let owned = unsafe { OwnedFd::from_raw_fd(duplicate) };
            (owned.as_raw_fd(), Some(owned))
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EMFILE) {
            (fd, None)
        } else {
            continue;
        };
        if is_silent_connection(target, served, limit_ms) {
            // SAFETY: shutdown(2) ends the connection, it closes no descriptor: the owner still closes its own.
            if unsafe { libc::shutdown(target, libc::SHUT_RDWR) } == 0 {
                closed += 1;
            }
        }
    }
    closed
}

/// The process' socket descriptors, from `/proc/self/fd`; when that cannot be opened (no descriptor to
/// spare), every descriptor number below the limit.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn socket_descriptors() -> Vec<i32> {
    use std::os::unix::ffi::OsStrExt;

    match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .flatten()
            .filter(|entry| {
                std::fs::read_link(entry.path())
                    .is_ok_and(|target| target.as_os_str().as_bytes().starts_with(b"socket:"))
            })
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => {
            // SAFETY: rlimit is plain integers; getrlimit only writes it.
            let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
            let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
                limit.rlim_cur
            } else {
                1024
            };
            (0..i32::try_from(soft.min(1 << 20)).unwrap_or(1 << 20)).collect()
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn sweep(_served: SocketAddr, _limit: Duration) -> usize {
    0
}

/// An established TCP connection to `served` (the port, and the address unless it is unspecified) that
/// has received no byte in the `limit_ms` since it was accepted.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn is_silent_connection(fd: i32, served: SocketAddr, limit_ms: u32) -> bool {
    /// `TCP_ESTABLISHED` of linux/tcp_states.h.
    const ESTABLISHED: u8 = 1;
    let Some(local) = local_address(fd) else {
        return false;
    };
    if local.port() != served.port() || (!served.ip().is_unspecified() && local.ip() != served.ip())
    {
        return false;
    }
    // SAFETY: tcp_info is plain integers: all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes; the kernel writes at most that and sets `len`.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    // Kernels before 4.1 have no received-bytes count: then nothing is known, nothing is done.
    let needed =
        std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + std::mem::size_of::<u64>();
    got == 0
        && len as usize >= needed
        && info.tcpi_state == ESTABLISHED
        && info.tcpi_bytes_received == 0
        // For a connection that never received data: the time since it was set up.
        && info.tcpi_last_data_recv >= limit_ms
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn local_address(fd: i32) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    // SAFETY: sockaddr_storage is plain bytes: all zeros is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes.
    if unsafe { libc::getsockname(fd, (&raw mut storage).cast(), &mut len) } != 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
            let v4: libc::sockaddr_in = unsafe { std::ptr::read((&raw const storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
