//! The exposition formats: Prometheus text format 0.0.4, written by the `prometheus` crate's
//! `TextEncoder`, and OpenMetrics 1.0.0 ([`crate::openmetrics`]); [`Format::negotiate`] picks one from an
//! `Accept` header the way the Prometheus client libraries do.

use prometheus::TextEncoder;
use prometheus::proto::MetricFamily;

use crate::openmetrics;

/// The Content-Type of the text format, as the reference exporter and the Prometheus client libraries send it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics text format 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The Content-Type header of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => CONTENT_TYPE,
            Format::OpenMetrics => openmetrics::CONTENT_TYPE,
        }
    }

    /// Writes the families in this format.
    pub fn encode(self, families: &[MetricFamily]) -> Result<String, prometheus::Error> {
        match self {
            Format::Text => encode(families),
            Format::OpenMetrics => openmetrics::encode(families),
        }
    }

    /// Appends the families to `out`: for an exposition written group by group (the memory of one group
    /// at a time), ended by [`finish`](Self::finish).
    pub fn encode_into(
        self,
        families: &[MetricFamily],
        out: &mut String,
    ) -> Result<(), prometheus::Error> {
        match self {
            Format::Text => encode_into(families, out),
            Format::OpenMetrics => openmetrics::encode_into(families, out),
        }
    }

    /// Ends an exposition written with [`encode_into`](Self::encode_into) (`# EOF` for OpenMetrics).
    pub fn finish(self, out: &mut String) {
        if self == Format::OpenMetrics {
            openmetrics::finish(out);
        }
    }

    /// The format for an `Accept` header: OpenMetrics when `application/openmetrics-text` (no version,
    /// 1.0.0 or 0.0.1) is preferred to `text/plain`, `text/*` and `*/*`, otherwise the text format (also
    /// when nothing the exporter serves is named). Other media types are ignored, ties keep the header's
    /// order, and `q=0` entries are refused types.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut entries: Vec<(f64, usize, Format)> = Vec::new();
        for (index, media) in crate::negotiation::preferences(accept).enumerate() {
            let format = if media.is("application/openmetrics-text")
                && media
                    .param("version")
                    .is_none_or(|v| v == "1.0.0" || v == "0.0.1")
            {
                Format::OpenMetrics
            } else if media.is("text/plain") || media.is("text/*") || media.is("*/*") {
                Format::Text
            } else {
                // Types the exporter does not serve (protobuf, HTML, OpenMetrics 2.0, ...) play no part.
                continue;
            };
            if media.q > 0.0 {
                entries.push((media.q, index, format));
            }
        }
        entries
            .iter()
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
            .map_or(Format::Text, |entry| entry.2)
    }
}

/// Writes the families in the given order. A family without samples is written as its `# HELP` and
/// `# TYPE` lines only (the encoder refuses empty families, the reference exporter serves their headers).
pub fn encode(families: &[MetricFamily]) -> Result<String, prometheus::Error> {
    let mut out = String::with_capacity(capacity(families));
    encode_into(families, &mut out)?;
    Ok(out)
}

/// [`encode`], appending to `out`.
pub fn encode_into(families: &[MetricFamily], out: &mut String) -> Result<(), prometheus::Error> {
    let encoder = TextEncoder::new();
    for family in families {
        if family.get_metric().is_empty() {
            write_headers(family, out);
        } else {
            encoder.encode_utf8(std::slice::from_ref(family), out)?;
        }
    }
    Ok(())
}

/// About the size of the families' exposition, to allocate it at once.
pub(crate) fn capacity(families: &[MetricFamily]) -> usize {
    64 + families
        .iter()
        .map(|f| 64 + 96 * f.get_metric().len())
        .sum::<usize>()
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
