//! OpenMetrics text format 1.0.0, written over the `prometheus` crate's `MetricFamily` data model (the
//! crate has no OpenMetrics encoder).
//!
//! The rules this writer follows (and `tests/it/common/openmetrics.rs` checks):
//! - every family has `# HELP` then `# TYPE`; HELP and label values escape `\`, `"` and newline;
//! - a counter family is named without `_total` (`kobo_exporter_collect_errors`) and its samples with it
//!   (`kobo_exporter_collect_errors_total{...}`);
//! - a gauge named `..._info` whose samples are all 1 (`kobo_exporter_build_info`) is an info family named
//!   without the suffix (`kobo_exporter_build`), its samples keep it;
//! - values are the shortest decimal that reads back the same, `+Inf`, `-Inf`, `NaN`; timestamps (when
//!   set) are seconds;
//! - the exposition ends with `# EOF`.
//!
//! - a histogram's samples are `_bucket` (cumulative, `le` last, ending with `le="+Inf"`), `_count` and
//!   `_sum`.
//!
//! Summaries and untyped families are not written (the exporter has none): they are an error.

use std::fmt::Write as _;

use prometheus::proto::{Metric, MetricFamily, MetricType};

/// The Content-Type of OpenMetrics 1.0.0.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Writes the families, then `# EOF`.
pub fn encode(families: &[MetricFamily]) -> Result<String, prometheus::Error> {
    let mut out = String::with_capacity(crate::exposition::capacity(families));
    encode_into(families, &mut out)?;
    finish(&mut out);
    Ok(out)
}

/// Appends the families to `out`, without `# EOF` ([`finish`]).
pub fn encode_into(families: &[MetricFamily], out: &mut String) -> Result<(), prometheus::Error> {
    for family in families {
        write_family(family, out)?;
    }
    Ok(())
}

/// Ends the exposition.
pub fn finish(out: &mut String) {
    out.push_str("# EOF\n");
}

/// How a family is written: its OpenMetrics name and type, and the suffix of its samples.
struct Shape<'a> {
    name: &'a str,
    kind: &'static str,
    sample_suffix: &'static str,
}

fn shape(family: &MetricFamily) -> Result<Shape<'_>, prometheus::Error> {
    let name = family.name();
    Ok(match family.get_field_type() {
        MetricType::COUNTER => Shape {
            name: name.strip_suffix("_total").unwrap_or(name),
            kind: "counter",
            sample_suffix: "_total",
        },
        MetricType::GAUGE if is_info(family) => Shape {
            name: name.strip_suffix("_info").unwrap_or(name),
            kind: "info",
            sample_suffix: "_info",
        },
        MetricType::GAUGE => Shape {
            name,
            kind: "gauge",
            sample_suffix: "",
        },
        MetricType::HISTOGRAM => Shape {
            name,
            kind: "histogram",
            sample_suffix: "",
        },
        other => {
            return Err(prometheus::Error::Msg(format!(
                "OpenMetrics: {other:?} family {name} is not supported"
            )));
        }
    })
}

/// A gauge named `..._info` with samples that are all 1 (and at least one).
fn is_info(family: &MetricFamily) -> bool {
    family.name().len() > "_info".len()
        && family.name().ends_with("_info")
        && !family.get_metric().is_empty()
        && family
            .get_metric()
            .iter()
            .all(|m| m.get_gauge().get_value() == 1.0)
}

fn write_family(family: &MetricFamily, out: &mut String) -> Result<(), prometheus::Error> {
    let shape = shape(family)?;
    out.push_str("# HELP ");
    out.push_str(shape.name);
    out.push(' ');
    escape_into(family.help(), out);
    out.push_str("\n# TYPE ");
    out.push_str(shape.name);
    out.push(' ');
    out.push_str(shape.kind);
    out.push('\n');
    for metric in family.get_metric() {
        if family.get_field_type() == MetricType::HISTOGRAM {
            write_histogram(shape.name, metric, out);
            continue;
        }
        let value = match family.get_field_type() {
            MetricType::COUNTER => metric.get_counter().get_value(),
            _ => metric.get_gauge().get_value(),
        };
        if family.get_field_type() == MetricType::COUNTER && (value < 0.0 || value.is_nan()) {
            return Err(prometheus::Error::Msg(format!(
                "OpenMetrics: counter {} has the value {value}",
                family.name()
            )));
        }
        out.push_str(shape.name);
        out.push_str(shape.sample_suffix);
        write_labels(metric, out);
        out.push(' ');
        out.push_str(&number(value));
        if metric.timestamp_ms() != 0 {
            let _ = write!(out, " {}", number(metric.timestamp_ms() as f64 / 1000.0));
        }
        out.push('\n');
    }
    Ok(())
}

/// A histogram's `_bucket` samples (with the `+Inf` one), `_count` and `_sum`.
fn write_histogram(name: &str, metric: &Metric, out: &mut String) {
    let histogram = metric.get_histogram();
    let count = histogram.get_sample_count();
    let mut bounds: Vec<(String, u64)> = histogram
        .get_bucket()
        .iter()
        .map(|b| (number(b.upper_bound()), b.cumulative_count()))
        .collect();
    if bounds.last().is_none_or(|(le, _)| le != "+Inf") {
        bounds.push(("+Inf".into(), count));
    }
    for (le, cumulative) in bounds {
        out.push_str(name);
        out.push_str("_bucket");
        write_labels_with(metric, Some(&le), out);
        let _ = writeln!(out, " {cumulative}");
    }
    out.push_str(name);
    out.push_str("_count");
    write_labels(metric, out);
    let _ = writeln!(out, " {count}");
    out.push_str(name);
    out.push_str("_sum");
    write_labels(metric, out);
    let _ = writeln!(out, " {}", number(histogram.get_sample_sum()));
}

fn write_labels(metric: &Metric, out: &mut String) {
    write_labels_with(metric, None, out);
}

/// The metric's labels, and `le` last if given.
fn write_labels_with(metric: &Metric, le: Option<&str>, out: &mut String) {
    let labels = metric.get_label();
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let pairs = labels.iter().map(|pair| (pair.name(), pair.value()));
    for (i, (name, value)) in pairs.chain(le.map(|le| ("le", le))).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_into(value, out);
        out.push('"');
    }
    out.push('}');
}

/// Escapes `\`, `"` and newline, as OpenMetrics wants in HELP texts and label values.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A value as OpenMetrics writes it: `+Inf`, `-Inf`, `NaN`, else the shortest form that reads back the same.
pub fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::{counter_family, gauge_family, push_counter, push_gauge};

    #[test]
    fn counters_info_and_eof() {
        let mut errors = counter_family("x_errors_total", "Errors \"so far\"\nsince start");
        push_counter(&mut errors, &[("collector", "a\\b\"c\nd")], 3.0);
        let mut info = gauge_family("x_build_info", "Build");
        push_gauge(&mut info, &[("version", "1")], 1.0);
        let mut not_info = gauge_family("x_weird_info", "Not 1");
        push_gauge(&mut not_info, &[], 2.0);
        let text = encode(&[errors, info, not_info]).expect("encodes");
        assert_eq!(
            text,
            "# HELP x_errors Errors \\\"so far\\\"\\nsince start\n# TYPE x_errors counter\n\
             x_errors_total{collector=\"a\\\\b\\\"c\\nd\"} 3\n\
             # HELP x_build Build\n# TYPE x_build info\nx_build_info{version=\"1\"} 1\n\
             # HELP x_weird_info Not 1\n# TYPE x_weird_info gauge\nx_weird_info 2\n# EOF\n"
        );
    }

    #[test]
    fn histograms_with_inf_count_and_sum() {
        let mut totals = crate::metrics::flow::FlowTotals::new(vec![1.0, 2.5], 10);
        let mut flow = kobo_backend_api::TaskFlow::default();
        flow.started.push(kobo_backend_api::StartedTask {
            method: "M".into(),
            channel: "c".into(),
            wait: 2.0,
        });
        totals.add(&flow);
        let wait = totals.families().swap_remove(1);
        assert_eq!(
            encode(&[wait]).expect("encodes"),
            "# HELP kobo_task_wait_seconds Time from creation to start (dt_started - dt_created) of the tasks \
             seen started since the exporter started, by method and channel\n\
             # TYPE kobo_task_wait_seconds histogram\n\
             kobo_task_wait_seconds_bucket{method=\"M\",channel=\"c\",le=\"1\"} 0\n\
             kobo_task_wait_seconds_bucket{method=\"M\",channel=\"c\",le=\"2.5\"} 1\n\
             kobo_task_wait_seconds_bucket{method=\"M\",channel=\"c\",le=\"+Inf\"} 1\n\
             kobo_task_wait_seconds_count{method=\"M\",channel=\"c\"} 1\n\
             kobo_task_wait_seconds_sum{method=\"M\",channel=\"c\"} 2\n# EOF\n"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
    }
}
