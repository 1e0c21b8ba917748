//! Content negotiation on the metrics routes, through Rocket's local client: `Accept:
//! application/openmetrics-text` gets OpenMetrics 1.0.0 (checked strictly, and equal in meaning to the
//! text format), anything else the text format 0.0.4; `Accept-Encoding: gzip` gets a gzipped body.

use std::io::Read as _;

use kobo_exporter::exposition::CONTENT_TYPE;
use kobo_exporter::openmetrics::CONTENT_TYPE as OPENMETRICS;
use rocket::http::{Header, Status};
use rocket::local::asynchronous::Client;

use crate::common::demo_client;

/// Samples by (name, labels).
type Samples = std::collections::BTreeMap<(String, Vec<(String, String)>), f64>;

/// Prometheus 2.42's own `Accept` header.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// GET /metrics with these headers: status, Content-Type, Content-Encoding, body bytes.
async fn get(
    client: &Client,
    headers: &[(&'static str, &'static str)],
) -> (Status, String, Option<String>, Vec<u8>) {
    let mut request = client.get("/metrics");
    for (name, value) in headers {
        request = request.header(Header::new(*name, *value));
    }
    let response = request.dispatch().await;
    let status = response.status();
    let content_type = response
        .headers()
        .get_one("Content-Type")
        .unwrap_or("")
        .to_string();
    let encoding = response
        .headers()
        .get_one("Content-Encoding")
        .map(str::to_string);
    assert_eq!(
        response.headers().get_one("Vary"),
        Some("Accept, Accept-Encoding")
    );
    let body = response.into_bytes().await.expect("body");
    (status, content_type, encoding, body)
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 body")
}

#[rocket::async_test]
async fn accept_picks_the_format() {
    let client = demo_client().await;
    let cases: [(&[(&str, &str)], &str); 10] = [
        (
            &[("Accept", "text/html, application/openmetrics-text;q=0.5")],
            OPENMETRICS,
        ),
        (
            &[("Accept", "application/vnd.google.protobuf")],
            CONTENT_TYPE,
        ),
        (&[], CONTENT_TYPE),
        (&[("Accept", "*/*")], CONTENT_TYPE),
        (&[("Accept", "text/plain")], CONTENT_TYPE),
        (&[("Accept", "application/openmetrics-text")], OPENMETRICS),
        (&[("Accept", PROMETHEUS_ACCEPT)], OPENMETRICS),
        (
            &[(
                "Accept",
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5",
            )],
            CONTENT_TYPE,
        ),
        (
            &[(
                "Accept",
                "application/openmetrics-text;version=2.0.0,text/plain;q=0.5",
            )],
            CONTENT_TYPE,
        ),
        (
            &[("Accept", "application/openmetrics-text;q=0")],
            CONTENT_TYPE,
        ),
    ];
    for (headers, want) in cases {
        let (status, content_type, encoding, body) = get(&client, headers).await;
        assert_eq!(status, Status::Ok, "{headers:?}");
        assert_eq!(content_type, want, "{headers:?}");
        assert_eq!(encoding, None);
        let body = utf8(body);
        if want == OPENMETRICS {
            kobo_testkit::openmetrics::check(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        } else {
            kobo_testkit::exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
            assert!(!body.contains("# EOF"));
        }
    }
}

#[rocket::async_test]
async fn openmetrics_means_the_same_as_the_text_format() {
    let client = demo_client().await;
    let (_, _, _, text) = get(&client, &[]).await;
    let text = kobo_testkit::exposition::parse(&utf8(text)).expect("text format");
    let (_, _, _, om) = get(&client, &[("Accept", PROMETHEUS_ACCEPT)]).await;
    let om = utf8(om);
    let families = kobo_testkit::openmetrics::check(&om).unwrap_or_else(|e| panic!("{e}\n{om}"));
    assert!(om.ends_with("\n# EOF\n"));

    // Counters: family without _total, samples with it; the build info is an info family.
    assert_eq!(families["kobo_exporter_collect_errors"].kind, "counter");
    assert!(!families.contains_key("kobo_exporter_collect_errors_total"));
    assert_eq!(families["kobo_exporter_build"].kind, "info");
    assert_eq!(families["process_cpu_seconds"].kind, "counter");

    // Every family of the text format, under its OpenMetrics name, with the same HELP and the same series.
    for (name, family) in &text.families {
        let kind = family.kind.as_deref().unwrap_or("");
        let om_name = match kind {
            "counter" => name.strip_suffix("_total").unwrap_or(name),
            _ if name == "kobo_exporter_build_info" => "kobo_exporter_build",
            _ => name.as_str(),
        };
        let om_family = families
            .get(om_name)
            .unwrap_or_else(|| panic!("{name} missing as {om_name}"));
        assert_eq!(
            family.help.as_deref(),
            Some(om_family.help.as_str()),
            "{name}"
        );
        let series = |samples: &Samples| samples.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            series(&family.samples),
            series(&om_family.samples),
            "{name}"
        );
        // Values that do not move between two scrapes are equal.
        if name.starts_with("kobo_worker_") || name.starts_with("kobo_tasks") || name == "kobo_up" {
            assert_eq!(family.samples, om_family.samples, "{name}");
        }
    }
    assert_eq!(families.len(), text.families.len());
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("valid gzip");
    out
}

#[rocket::async_test]
async fn gzip_round_trips_in_both_formats() {
    let client = demo_client().await;
    let (_, _, encoding, plain) = get(&client, &[("Accept-Encoding", "identity")]).await;
    assert_eq!(encoding, None);
    let plain = utf8(plain);

    let (status, content_type, encoding, packed) =
        get(&client, &[("Accept-Encoding", "gzip, deflate")]).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(content_type, CONTENT_TYPE);
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert!(packed.len() < plain.len());
    let unpacked = gunzip(&packed);
    let ours = kobo_testkit::exposition::parse(&unpacked).expect("parses");
    assert_eq!(
        ours.families["kobo_worker_enabled"],
        kobo_testkit::exposition::parse(&plain)
            .expect("parses")
            .families["kobo_worker_enabled"]
    );

    let (_, content_type, encoding, packed) = get(
        &client,
        &[("Accept", PROMETHEUS_ACCEPT), ("Accept-Encoding", "gzip")],
    )
    .await;
    assert_eq!(content_type, OPENMETRICS);
    assert_eq!(encoding.as_deref(), Some("gzip"));
    kobo_testkit::openmetrics::check(&gunzip(&packed)).expect("OpenMetrics");

    let (_, _, encoding, _) = get(&client, &[("Accept-Encoding", "gzip;q=0")]).await;
    assert_eq!(encoding, None);
}

#[rocket::async_test]
async fn head_gets_the_headers_only() {
    let client = demo_client().await;
    let response = client
        .head("/metrics")
        .header(Header::new("Accept", "application/openmetrics-text"))
        .header(Header::new("Accept-Encoding", "gzip"))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(
        response.headers().get_one("Content-Type"),
        Some(OPENMETRICS)
    );
    assert_eq!(response.headers().get_one("Content-Encoding"), Some("gzip"));
    assert!(response.into_bytes().await.unwrap_or_default().is_empty());
}

#[test]
fn the_checker_refuses_what_openmetrics_forbids() {
    let good = "# HELP a_errors E\n# TYPE a_errors counter\na_errors_total{x=\"1\"} 2\n\
                # HELP b B\n# TYPE b info\nb_info{v=\"1\"} 1\n\
                # HELP h H\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 3\n\
                h_count 3\nh_sum 7.5\n# EOF\n";
    kobo_testkit::openmetrics::check(good).expect("valid");
    let bad = [
        good.trim_end_matches("# EOF\n"),
        &good.replace("a_errors_total{", "a_errors{"),
        &good.replace("a_errors ", "a_errors_total "),
        &good.replace("b_info{v=\"1\"} 1", "b_info{v=\"1\"} 2"),
        &good.replace("# HELP b B\n", "\n# HELP b B\n"),
        &good.replace("x=\"1\"", "x=\"\\t\""),
        &good.replace("} 2", "} -1"),
        &good.replace("} 2", "} inf"),
        &format!(
            "{}# HELP a_errors again\n# EOF\n",
            good.trim_end_matches("# EOF\n")
        ),
        &good.replace("# TYPE b info\n", ""),
        &good.replace("h_bucket{le=\"1\"} 1", "h_bucket{le=\"1\"} 4"),
        &good.replace("h_count 3", "h_count 2"),
        &good.replace("h_bucket{le=\"+Inf\"} 3\n", ""),
        &good.replace("h_sum 7.5", "h_sum{le=\"1\"} 7.5"),
        &good.replace("h_bucket{le=\"1\"}", "h_bucket"),
    ];
    for text in bad {
        assert!(
            kobo_testkit::openmetrics::check(text).is_err(),
            "accepted {text:?}"
        );
    }
}
