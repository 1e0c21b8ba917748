//! TLS against a local HTTPS hub (127.0.0.1, a certificate from the test CA in `tests/tls/`): verification is
//! on by default and refuses an unknown issuer, `ca_file` makes the hub trusted, `tls_verify = false`
//! accepts it, and no TLS connection panics over the rustls crypto provider (ring is used throughout).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is the verdict"
)]

use kobo_testkit::CollectExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kobo_backend_xmlrpc::{XmlRpcOptions, XmlRpcSource};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

/// The `system.multicall` of `client.list_workers(True)` and `client.list_workers(False)` of a hub with no
/// workers, as kobo sends it: two empty lists.
const EMPTY_LISTS: &str = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n\
    <value><array><data>\n<value><array><data>\n</data></array></value>\n</data></array></value>\n\
    <value><array><data>\n<value><array><data>\n</data></array></value>\n</data></array></value>\n\
    </data></array></value>\n</param>\n</params>\n</methodResponse>\n";

/// An HTTPS hub with no workers; counts completed requests. Returns its URL (by IP, which the
/// certificate names).
async fn https_hub() -> (String, Arc<AtomicUsize>) {
    kobo_testkit::install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(data("server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(data("server.key")).expect("server.key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "https://{}/xmlrpc/client/",
        listener.local_addr().expect("address")
    );
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), Arc::clone(&count));
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length: usize = text[..head_end]
                            .lines()
                            .filter_map(|l| l.split_once(':'))
                            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                            .and_then(|(_, v)| v.trim().parse().ok())
                            .unwrap_or(0);
                        if request.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{EMPTY_LISTS}",
                    EMPTY_LISTS.len()
                );
                if tls.write_all(response.as_bytes()).await.is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, served)
}

fn options(url: &str) -> XmlRpcOptions {
    XmlRpcOptions {
        request_timeout: Duration::from_secs(5),
        ..XmlRpcOptions::new(url)
    }
}

/// The error of a collection with `options` that must fail (`why`), printed.
async fn refused(options: XmlRpcOptions, why: &str) -> String {
    let source = XmlRpcSource::new(options).expect("source");
    let error = source.collect_workers().await.expect_err(why).to_string();
    println!("error: {error}");
    error
}

#[tokio::test]
async fn an_unknown_issuer_is_refused_by_default() {
    let (url, served) = https_hub().await;
    let error = refused(options(&url), "the test CA is not trusted").await;
    assert!(error.contains(&url), "{error}");
    assert!(
        error.contains("certificate") || error.contains("Certificate"),
        "{error}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_ca_file_makes_the_hub_trusted() {
    let (url, served) = https_hub().await;
    let source = XmlRpcSource::new(XmlRpcOptions {
        ca_file: Some(data("ca.pem")),
        ..options(&url)
    })
    .expect("source");
    let snapshot = source.collect_workers().await.expect("collect over TLS");
    assert!(snapshot.workers.is_empty() && snapshot.warnings.is_empty());
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "the multicall of the two list_workers calls"
    );
    // The CA file replaces the system roots, so it also names the only issuer trusted: the server's own
    // certificate is not a CA and verifies nothing.
    let error = refused(
        XmlRpcOptions {
            ca_file: Some(data("server.pem")),
            ..options(&url)
        },
        "not a CA",
    )
    .await;
    assert!(error.contains("certificate"), "{error}");
}

#[tokio::test]
async fn verification_can_be_turned_off() {
    let (url, served) = https_hub().await;
    let source = XmlRpcSource::new(XmlRpcOptions {
        tls_verify: false,
        ..options(&url)
    })
    .expect("source");
    source
        .collect_workers()
        .await
        .expect("collect without verification");
    assert_eq!(served.load(Ordering::SeqCst), 1);
}
