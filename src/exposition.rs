//! Prometheus text exposition format 0.0.4, written by the `prometheus` crate's `TextEncoder`.

use prometheus::proto::MetricFamily;
use prometheus::TextEncoder;

/// The Content-Type of the text format, as the reference exporter and the Prometheus client libraries send it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes the families in the given order. A family without samples is written as its `# HELP` and
/// `# TYPE` lines only (the encoder refuses empty families, the reference exporter serves their headers).
pub fn encode(families: &[MetricFamily]) -> Result<String, prometheus::Error> {
    let encoder = TextEncoder::new();
    let mut out = String::with_capacity(
        families
            .iter()
            .map(|f| 64 + 96 * f.get_metric().len())
            .sum(),
    );
    for family in families {
        if family.get_metric().is_empty() {
            write_headers(family, &mut out);
        } else {
            encoder.encode_utf8(std::slice::from_ref(family), &mut out)?;
        }
    }
    Ok(out)
}

/// `# HELP` and `# TYPE` lines, escaped as the encoder escapes them.
fn write_headers(family: &MetricFamily, out: &mut String) {
    out.push_str("# HELP ");
    out.push_str(family.name());
    out.push(' ');
    for c in family.help().chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(family.name());
    out.push(' ');
    out.push_str(&format!("{:?}", family.get_field_type()).to_lowercase());
    out.push('\n');
}
