//! Drop-in compatibility: for the fixture hub, this exporter's output parses equal to what
//! django-kobo-exporter 1.1.1 served (`testkit/data/fixture-reference-metrics.txt`): the same families in
//! the same order, HELP, TYPE, label sets and values.

use crate::common;
use kobo_testkit::CollectExt;

use kobo_exporter::api::WorkerDir;
use kobo_testkit::exposition::parse;

/// The fixture hub in a SQLite file, rendered by this exporter.
async fn render_fixture() -> String {
    let (_dir, path) = common::fixture_sqlite();
    let workers = common::fixture_worker_dir();
    let source =
        kobo_backend_sqlite::open(&path, Some(WorkerDir::new(workers.path()))).expect("open");
    let snapshot = source.collect_workers().await.expect("collect");
    kobo_exporter::render(&snapshot).expect("render")
}

#[tokio::test]
async fn fixture_output_parses_equal_to_the_reference_exporter() {
    let reference = common::reference_exposition();
    let ours = parse(&render_fixture().await).expect("our output parses");
    assert_eq!(reference.order.len(), 6, "the reference has six families");
    // Every reference family: same HELP, TYPE, label sets and values.
    for name in &reference.order {
        assert_eq!(
            ours.families.get(name),
            reference.families.get(name),
            "family {name}"
        );
    }
    // First, in the reference's order; the exporter's own families come after them. (With
    // `metrics = "reference"` the output is exactly the reference's: tests/it/binary.rs.)
    assert_eq!(ours.order[..reference.order.len()], reference.order[..]);
}

#[test]
fn parser_compares_by_meaning() {
    let a =
        parse("# HELP m h\\\\x\n# TYPE m gauge\nm{b=\"q\\\"\\n\\\\\",a=\"1\"} 1.749999887e+09\n")
            .expect("a");
    let b = parse("# HELP m h\\\\x\n# TYPE m gauge\nm{a=\"1\",b=\"q\\\"\\n\\\\\"} 1749999887\n")
        .expect("b");
    assert_eq!(a, b);
    assert_eq!(a.families["m"].help.as_deref(), Some("h\\x"));
    let labels = vec![
        ("a".to_string(), "1".to_string()),
        ("b".to_string(), "q\"\n\\".to_string()),
    ];
    assert_eq!(
        a.families["m"].samples[&("m".to_string(), labels)],
        1_749_999_887.0
    );
    assert_eq!(parse("m 1.0\n"), parse("m 1\n"));
    assert_ne!(parse("m 1\n"), parse("m 1.5\n"));
    assert!(parse("m{a=\"1\"} x\n").is_err());
    assert!(parse("m{a=\"1} 1\n").is_err());
    assert!(parse("m 1\nm 2\n").is_err());
}
