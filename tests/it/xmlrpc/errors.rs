//! Hubs that answer wrongly: faults at the top level, error pages, malformed, truncated and oversized
//! bodies, no answer, no listener; and hubs that answer right in other ways: gzip, one connection for all.

use super::*;
use kobo_testkit::CollectExt;

use std::time::Instant;

/// A Django 500 page, an nginx 502 page.
const DJANGO_500: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta http-equiv=\"content-type\" content=\"text/html; charset=utf-8\">\n  <title>Server Error (500)</title>\n</head>\n<body><h1>Server Error (500)</h1><p></p></body>\n</html>\n";
const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

#[tokio::test]
async fn top_level_faults_are_errors() {
    // A hub running with DEBUG = True sends a whole traceback: the error keeps the exception line.
    let traceback = "Traceback (most recent call last):\n  File \"/srv/hub/venv/lib/python3.11/site-packages/kobo/django/xmlrpc/dispatcher.py\", line 91, in _marshaled_dispatch\n    response = self._dispatch(method, params)\nkobo.hub.models.Worker.DoesNotExist: Worker matching query does not exist.\nFrame get in /srv/hub/x.py at line 639\n<LOCALS>\n  secret_local = 'x'\n</LOCALS>";
    check_errors(vec![(
        Answer::Http(capture(LOGIN_REQUIRED).into()),
        &["system.multicall of client.list_workers: the hub answered with fault 1: PermissionDenied: \
             Login required."],
    )])
    .await;
    let error = error_of(Answer::Http(xml(py::fault(1, traceback)))).await;
    assert!(
        error.ends_with(
            "fault 1: kobo.hub.models.Worker.DoesNotExist: Worker matching query does not exist."
        ),
        "{error}"
    );
    assert!(!error.contains("LOCALS"), "{error}");
}

#[tokio::test]
async fn http_errors_name_the_status() {
    check_errors(vec![
        (
            Answer::Http(http(
                500,
                &[("Content-Type", "text/html; charset=utf-8")],
                DJANGO_500,
            )),
            &[
                "HTTP 500 Internal Server Error",
                "an HTML page titled \"Server Error (500)\"",
            ],
        ),
        (
            Answer::Http(http(
                502,
                &[("Server", "nginx"), ("Content-Type", "text/html")],
                NGINX_502,
            )),
            &["system.multicall of client.list_workers: HTTP 502 Bad Gateway: text/html, an HTML page \
               titled \"502 Bad Gateway\""],
        ),
        // A 200 page of a proxy or a login form is not XML-RPC either.
        (
            Answer::Http(http(
                200,
                &[("Content-Type", "text/html")],
                "<!doctype html><html><head><title>Sign in</title></head></html>",
            )),
            &[
                "HTTP 200 OK, but the response is not XML-RPC: the body is an HTML page, not an XML-RPC \
                 <methodResponse>",
                "titled \"Sign in\"",
            ],
        ),
        (
            Answer::Http(http(
                301,
                &[("Location", "https://hub.example.com/xmlrpc/client/")],
                "",
            )),
            &["HTTP 301 Moved Permanently: redirected to https://hub.example.com/xmlrpc/client/"],
        ),
    ])
    .await;

    // Credentials rejected, after one request; or wanted and not given.
    let (error, hub) = error_from(|_| {
        http(
            401,
            &[("WWW-Authenticate", "Basic realm=\"kobo\"")],
            "Authorization Required",
        )
    })
    .await;
    assert!(
        error.contains("HTTP 401 Unauthorized (the credentials were rejected)"),
        "{error}"
    );
    assert_eq!(hub.received().len(), 1);
    let hub = super::hub(|_| http(401, &[], "")).await;
    let error = message(source(&hub).collect_workers().await);
    assert!(
        error
            .contains("HTTP 401 Unauthorized (the hub or a proxy in front of it wants credentials"),
        "{error}"
    );
}

#[tokio::test]
async fn malformed_and_truncated_xml_are_errors() {
    let malformed = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n</param>\n</params>\n</methodResponse>\n";
    let list = capture(LIST_ENABLED);
    // A body cut short, with a Content-Length that matches what is sent.
    let cut = text(&list)[..list.body.len() / 2].to_string();
    // A body that breaks off before its Content-Length: only the raw server sends that.
    let broken_off = {
        let wire = list.to_http_bytes();
        wire[..wire.len() - 100].to_vec()
    };
    check_errors(vec![
        (
            Answer::Http(xml(malformed)),
            &["HTTP 200 OK, but the response is not XML-RPC: not well-formed XML at byte"],
        ),
        (
            Answer::Http(xml(cut)),
            &["not XML-RPC: the XML ends early", "truncated"],
        ),
        (
            Answer::Raw(broken_off),
            &["system.multicall of client.list_workers, HTTP 200 OK, the response broke off after"],
        ),
        // Not XML at all, and not HTTP at all.
        (
            Answer::Http(http(200, &[("Content-Type", "text/plain")], "OK")),
            &["not XML-RPC: the body holds no XML element (text/plain, 2 bytes starting \"OK\")"],
        ),
        (
            Answer::Raw(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
            &["system.multicall of client.list_workers"],
        ),
        // A valid response of the wrong shape: the multicall's result, or a list inside it.
        (
            Answer::Http(xml(py::response(&Py::Int(3)))),
            &["system.multicall of client.list_workers: the system.multicall result is an integer, not \
               an array"],
        ),
        (
            Answer::Http(xml(py::multicall(&[
                Ok(py::value(&Py::Int(3))),
                Ok(py::value(&Py::List(vec![]))),
            ]))),
            &["client.list_workers(True): the result is an integer, not an array"],
        ),
        (
            Answer::Http(xml(py::multicall(&[Ok(py::value(&Py::List(vec![])))]))),
            &["system.multicall of client.list_workers: system.multicall answered 1 results for 2 calls"],
        ),
    ])
    .await;
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let big = format!(
        "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><string>{}</string></value>\n</param>\n</params>\n</methodResponse>\n",
        "x".repeat(10_000)
    );
    let capped = |hub: &HubServer| {
        let options = XmlRpcOptions {
            max_response_bytes: 4096,
            ..options(&hub.url())
        };
        XmlRpcSource::new(options).expect("source")
    };
    let announced = xml(big.clone());
    let hub = super::hub(move |_| announced.clone()).await;
    let error = message(capped(&hub).collect_workers().await);
    let length = big.len();
    assert!(
        error.contains(&format!(
            "larger than max_response_bytes (4096 bytes): Content-Length {length}"
        )),
        "{error}"
    );

    // Without a Content-Length (chunked), and gzipped: the cap counts decoded bytes.
    let chunked: Reply = Response::new(
        200,
        &[
            ("Content-Type", "text/xml"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
        ],
        big,
    )
    .gzipped()
    .into();
    let hub = super::hub(move |_| chunked.clone()).await;
    let error = message(capped(&hub).collect_workers().await);
    assert!(hub.received()[0].accepts_gzip());
    assert!(
        error.contains("larger than max_response_bytes (4096 bytes): more than"),
        "{error}"
    );
}

#[tokio::test]
async fn a_hub_that_never_answers_times_out() {
    let hub = hub(|_| Reply::Stall).await;
    let options = XmlRpcOptions {
        request_timeout: Duration::from_secs(1),
        bearer_token: Some(TOKEN.into()),
        ..XmlRpcOptions::new(hub.url())
    };
    let started = Instant::now();
    let error = message(
        XmlRpcSource::new(options)
            .expect("source")
            .collect_workers()
            .await,
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(900), "took {elapsed:?}");
    assert!(
        error.contains(
            "system.multicall of client.list_workers: no complete response within 1s (request_timeout)"
        ),
        "{error}"
    );
    assert!(
        error.contains(&hub.url()) && !error.contains(TOKEN),
        "{error}"
    );
    assert_eq!(hub.received().len(), 1);

    // Nobody listening at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/xmlrpc/client/",
        listener.local_addr().expect("address")
    );
    drop(listener);
    let error = message(
        XmlRpcSource::new(XmlRpcOptions::new(&url))
            .expect("source")
            .collect_workers()
            .await,
    );
    assert!(
        error.starts_with(&format!(
            "cannot connect to {url}: system.multicall of client.list_workers: "
        )),
        "{error}"
    );
}

#[tokio::test]
async fn gzip_responses_and_connection_reuse() {
    let hub = hub(fixture_handler(Quirks {
        gzip: true,
        keep_alive: true,
        ..Quirks::default()
    }))
    .await;
    let source = source(&hub);
    let first = source.collect_workers().await.expect("first scrape");
    let second = source.collect_workers().await.expect("second scrape");
    // The same but for the timings.
    assert_eq!(
        (&first.workers, &first.tasks, &first.warnings),
        (&second.workers, &second.tasks, &second.warnings)
    );
    assert_eq!(first.workers.len(), 5);
    assert_eq!(hub.received().len(), 4);
    assert_eq!(hub.connections(), 1, "both scrapes over one connection");

    let plain = super::hub(fixture_handler(Quirks::default())).await;
    let reference = super::source(&plain)
        .collect_workers()
        .await
        .expect("plain scrape");
    assert_eq!(
        kobo_exporter::render(&first).expect("render"),
        kobo_exporter::render(&reference).expect("render")
    );
}
