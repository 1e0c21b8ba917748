//! Credentials and hostile hubs: basic auth, bearer token and credentials in the URL are sent and never
//! shown, not even echoed back by the hub; control characters from the hub are escaped.

use super::*;
use kobo_testkit::CollectExt;

/// base64("monitor:hunter2 s3cret"), the basic credentials as sent.
const BASIC: &str = "bW9uaXRvcjpodW50ZXIyIHMzY3JldA==";

/// The Authorization header of a request, or `none`.
fn echo(request: &Request) -> String {
    request
        .header("authorization")
        .unwrap_or("none")
        .to_string()
}

/// A piece of `secret` that `text` shows: no 8 characters in a row of it, so that a cut-off copy does not
/// leak either.
fn leaks(text: &str, secret: &str) -> Option<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .map(|w| w.iter().collect::<String>())
        .find(|part| text.contains(part.as_str()))
}

/// No character of `text` is a control character, nor a bidirectional override or a line separator.
fn assert_no_raw_controls(text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| {
            c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
        })
        .collect();
    assert!(bad.is_empty(), "raw control characters {bad:?} in {text:?}");
}

#[tokio::test]
async fn credentials_are_sent_and_never_shown() {
    type Credentials = fn(XmlRpcOptions) -> XmlRpcOptions;
    let basic: Credentials = |options| XmlRpcOptions {
        username: Some("monitor".into()),
        password: Some(PASSWORD.into()),
        ..options
    };
    let bearer: Credentials = |options| XmlRpcOptions {
        bearer_token: Some(TOKEN.into()),
        ..options
    };
    for (credentials, header, secrets) in [
        (basic, format!("Basic {BASIC}"), &[PASSWORD, "s3cret"][..]),
        (bearer, format!("Bearer {TOKEN}"), &[TOKEN][..]),
    ] {
        let hub = hub(fixture_handler(Quirks::default())).await;
        let options = credentials(options(&hub.url()));
        let source = XmlRpcSource::new(options.clone()).expect("source");
        source.collect_workers().await.expect("collect");
        let debug = format!("{options:?} {source:?}");
        for secret in secrets {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert_eq!(hub.received().len(), 2);
        for request in hub.received() {
            assert_eq!(request.header("authorization"), Some(header.as_str()));
        }
    }

    // Credentials in the URL are sent as basic auth and appear nowhere.
    let hub = hub(|_| http(403, &[], "denied")).await;
    let url = hub
        .url()
        .replace("http://", "http://monitor:hunter2%20s3cret@");
    let source = XmlRpcSource::new(XmlRpcOptions::new(&url)).expect("source");
    assert_eq!(source.describe(), hub.url());
    let error = message(source.collect_workers().await);
    assert!(
        !error.contains("hunter2") && !error.contains("s3cret") && !error.contains("monitor"),
        "{error}"
    );
    assert!(error.contains("HTTP 403 Forbidden"), "{error}");
    assert_eq!(
        hub.received()[0].header("authorization"),
        Some(&*format!("Basic {BASIC}"))
    );

    // A password echoed by a proxy into its error page is scrubbed.
    check_errors(vec![(
        Answer::Http(http(
            400,
            &[("Content-Type", "text/plain")],
            format!("bad password {PASSWORD}"),
        )),
        &["bad password ***"],
    )])
    .await;
}

#[tokio::test]
async fn control_characters_from_the_hub_are_escaped_in_errors_and_warnings() {
    // A raw CR is a line end to an XML parser (only `&#13;` stays a CR, below).
    let nasty = "Boom\u{1b}[2K\u{1b}[1Afake: kobo_up 1\tand\u{7} \u{202e}desrever";
    // Top-level faults; HTTP error bodies, HTML titles, header values (a tab is a valid header
    // character); not XML-RPC: the diagnosis quotes the hub's element names.
    let errors = check_errors(vec![
        (
            Answer::Http(xml(py::fault(1, nasty))),
            &["fault 1: Boom\\u{1b}[2K\\u{1b}[1Afake: kobo_up 1\\tand\\u{7} \\u{202e}desrever"],
        ),
        (
            Answer::Http(xml(py::fault(1, "Boom CR fake").replace(" CR ", "&#13;"))),
            &[],
        ),
        (
            Answer::Http(http(
                500,
                &[("Content-Type", "text/html;\tcharset=utf-8")],
                format!("<html><head><title>Oops{nasty}</title></head></html>"),
            )),
            &["text/html;\\tcharset=utf-8"],
        ),
        (
            Answer::Http(http(502, &[("Content-Type", "text/plain")], nasty)),
            &[],
        ),
        (
            Answer::Http(http(
                302,
                &[("Location", "https://elsewhere.example/\tx")],
                "",
            )),
            &["elsewhere.example/\\tx"],
        ),
        (
            Answer::Http(http(
                200,
                &[("Content-Type", "text/xml")],
                "<x\u{1b}[2Ky></x\u{1b}[2Ky>",
            )),
            &[],
        ),
    ])
    .await;
    for error in &errors {
        assert_no_raw_controls(error);
    }
    assert!(errors[1].ends_with("fault 1: Boom\\rfake"), "{}", errors[1]);

    // A fault inside the multicall of the lists.
    let hub = hub(fixture_handler(Quirks {
        list_fault: Some((false, nasty.into())),
        ..Quirks::default()
    }))
    .await;
    let error = message(source(&hub).collect_workers().await);
    assert_no_raw_controls(&error);
    assert!(error.contains("Boom\\u{1b}[2K"), "{error}");
    // Faults of get_worker_info (warnings), one worker with a name full of control characters.
    let hub = super::hub(one_of_two_readable("b\u{1b}[31m\rgus", |_| nasty.into())).await;
    let error = message(source(&hub).collect_workers().await);
    assert_no_raw_controls(&error);
    assert!(error.contains("\"b\\u{1b}[31m\\ngus\""), "{error}");
    let hub = super::hub(one_of_two_readable("a.example.com", |_| nasty.into())).await;
    let snapshot = source(&hub).collect_workers().await.expect("partial");
    assert_eq!(snapshot.warnings.len(), 1);
    assert_no_raw_controls(&snapshot.warnings[0].message);
    assert!(
        snapshot.warnings[0].message.contains("Boom\\u{1b}[2K"),
        "{:?}",
        snapshot.warnings
    );
}

#[tokio::test]
async fn an_echoed_authorization_header_is_scrubbed_in_every_form() {
    // Each case: the hub's answer made from the Authorization header it got, and what the error says.
    let mut cases: Vec<(Handler, Option<&str>)> = Vec::new();
    // In a plain-text error page, at its start and cut off at the end of the quoted part.
    for padding in [0, 90, 100, 110] {
        let page: Handler = Box::new(move |request| {
            let body = format!(
                "{}Authorization: {} was refused",
                "x".repeat(padding),
                echo(request)
            );
            http(400, &[("Content-Type", "text/plain")], body)
        });
        cases.push((
            page,
            (padding == 0).then_some("Authorization: Basic *** was refused"),
        ));
    }
    // In a fault string (a Django debug dump of the request), in an HTML title.
    cases.push((
        Box::new(|request| {
            xml(py::fault(
                1,
                &format!(
                    "ValueError: {{'HTTP_AUTHORIZATION': '{}', 'HTTP_HOST': 'hub'}}",
                    echo(request)
                ),
            ))
        }),
        Some("'HTTP_AUTHORIZATION': 'Basic ***', 'HTTP_HOST': 'hub'"),
    ));
    cases.push((
        Box::new(|request| {
            let body = format!(
                "<html><head><title>Denied for {}</title></head></html>",
                echo(request)
            );
            http(403, &[("Content-Type", "text/html")], body)
        }),
        Some("Denied for Basic ***"),
    ));
    for (handler, says) in cases {
        let (error, _) = error_from(handler).await;
        assert_eq!(leaks(&error, BASIC), None, "{error}");
        if let Some(says) = says {
            assert!(error.contains(says), "{says:?} in {error}");
        }
    }

    // The bearer token, in the header form and alone.
    let hub = hub(|request| {
        let body = format!("bad {} (token {TOKEN})", echo(request));
        http(401, &[("Content-Type", "text/plain")], body)
    })
    .await;
    let options = XmlRpcOptions {
        bearer_token: Some(TOKEN.into()),
        ..options(&hub.url())
    };
    let error = message(
        XmlRpcSource::new(options)
            .expect("source")
            .collect_workers()
            .await,
    );
    assert_eq!(leaks(&error, TOKEN), None, "{error}");
    assert!(error.contains("bad Bearer *** (token ***)"), "{error}");

    // As a warning for one worker (a multicall fault).
    let hub = super::hub(one_of_two_readable("a.example.com", |request| {
        format!("PermissionDenied: {}", echo(request))
    }))
    .await;
    let options = XmlRpcOptions {
        username: Some("monitor".into()),
        password: Some(PASSWORD.into()),
        ..super::options(&hub.url())
    };
    let snapshot = XmlRpcSource::new(options)
        .expect("source")
        .collect_workers()
        .await
        .expect("partial");
    assert_eq!(snapshot.warnings.len(), 1);
    assert_eq!(
        leaks(&snapshot.warnings[0].message, BASIC),
        None,
        "{:?}",
        snapshot.warnings
    );
    assert!(
        snapshot.warnings[0]
            .message
            .contains("PermissionDenied: Basic ***"),
        "{:?}",
        snapshot.warnings
    );
}
