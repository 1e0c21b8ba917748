//! A strict checker of the OpenMetrics 1.0.0 text format, for the rules the exporter's writer implements:
//! the exposition ends with `# EOF` and a newline and has no blank lines; every family has one `# HELP` and
//! one `# TYPE` before its samples, and its samples are together; names and label names are valid, label
//! values and HELP texts use only the `\\`, `\"` and `\n` escapes; counter families are named without
//! `_total` and their samples with it (or `_created`), with values >= 0; info families' samples are
//! `<name>_info` with value 1; gauge and unknown samples carry the family's name; values are numbers,
//! `+Inf`, `-Inf` or `NaN`; no sample is repeated; no sample name clashes with another family's name.

use std::collections::BTreeMap;

/// A checked family: its type, HELP text (unescaped) and samples by (sample name, sorted labels).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

const TYPES: [&str; 8] = [
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "stateset",
    "info",
    "summary",
    "unknown",
];

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    valid_name(name) && !name.contains(':')
}

/// Unescapes `\\`, `\"` and `\n`; any other backslash, or a raw `"` when `in_quotes`, is an error.
fn unescape(text: &str, in_quotes: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('n') => out.push('\n'),
                other => return Err(format!("bad escape \\{other:?}")),
            },
            '"' if in_quotes => return Err("unescaped quote".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if text
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
            && !text.is_empty() =>
        {
            text.parse::<f64>()
                .map_err(|e| format!("bad value {text:?}: {e}"))
        }
        _ => Err(format!("bad value {text:?}")),
    }
}

/// Splits `name{labels} value [timestamp]`.
/// A sample: name, sorted labels, value.
type Sample = (String, Vec<(String, String)>, f64);

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut remaining = inner;
        loop {
            if let Some(after) = remaining.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = remaining.split_once("=\"").ok_or("label without =\"")?;
            if !valid_label_name(label) {
                return Err(format!("bad label name {label:?}"));
            }
            // The value ends at the first quote not escaped.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unterminated label value")?;
            let value = unescape(&after[..end], true)?;
            if labels.iter().any(|(l, _): &(String, String)| l == label) {
                return Err(format!("label {label} twice"));
            }
            labels.push((label.to_string(), value));
            remaining = &after[end + 1..];
            if let Some(next) = remaining.strip_prefix(',') {
                remaining = next;
                if remaining.starts_with('}') {
                    return Err("trailing comma in labels".into());
                }
            } else if !remaining.starts_with('}') {
                return Err("labels not separated by a comma".into());
            }
        }
    }
    let fields: Vec<&str> = rest
        .strip_prefix(' ')
        .ok_or("no single space before the value")?
        .split(' ')
        .collect();
    if fields.is_empty() || fields.len() > 2 || fields.iter().any(|f| f.is_empty()) {
        return Err("want `value [timestamp]` separated by single spaces".into());
    }
    let value = parse_value(fields[0])?;
    if let Some(ts) = fields.get(1) {
        parse_value(ts)?;
    }
    labels.sort();
    Ok((name.to_string(), labels, value))
}

/// Checks an exposition; `Err` names the first line that breaks a rule.
pub fn check(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or("no `# EOF` at the end")?;
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    // Sample name -> the family it belongs to: one family per sample name.
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (number, line) in body.lines().enumerate() {
        let bad = |why: String| format!("line {}: {why}: {line:?}", number + 1);
        if line.is_empty() {
            return Err(bad("blank line".into()));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest
                .split_once(' ')
                .ok_or_else(|| bad("bad comment".into()))?;
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            if !valid_name(name) {
                return Err(bad(format!("bad family name {name:?}")));
            }
            if current.as_deref() != Some(name) {
                if families.contains_key(name) {
                    return Err(bad(format!("family {name} is split or declared twice")));
                }
                families.insert(name.to_string(), Family::default());
                order.push(name.to_string());
                current = Some(name.to_string());
            }
            let family = families.get_mut(name).expect("inserted");
            if !family.samples.is_empty() {
                return Err(bad("metadata after samples".into()));
            }
            match keyword {
                "HELP" => {
                    if !family.help.is_empty() {
                        return Err(bad("second HELP".into()));
                    }
                    family.help = unescape(value, false).map_err(bad)?;
                }
                "TYPE" => {
                    if !family.kind.is_empty() {
                        return Err(bad("second TYPE".into()));
                    }
                    if !TYPES.contains(&value) {
                        return Err(bad(format!("unknown type {value:?}")));
                    }
                    if value == "counter" && name.ends_with("_total") {
                        return Err(bad("counter family named with _total".into()));
                    }
                    if value == "info" && name.ends_with("_info") {
                        return Err(bad("info family named with _info".into()));
                    }
                    family.kind = value.to_string();
                }
                "UNIT" => {}
                other => return Err(bad(format!("unknown descriptor {other}"))),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(bad("comment that is not a descriptor".into()));
        }
        let (name, labels, value) = parse_sample(line).map_err(bad)?;
        let family_name = current
            .clone()
            .ok_or_else(|| bad("sample before any family".into()))?;
        let family = families.get_mut(&family_name).expect("current");
        if family.kind.is_empty() {
            return Err(bad("sample of a family without TYPE".into()));
        }
        let allowed: Vec<String> = match family.kind.as_str() {
            "counter" => vec![
                format!("{family_name}_total"),
                format!("{family_name}_created"),
            ],
            "info" => vec![format!("{family_name}_info")],
            "gauge" | "unknown" => vec![family_name.clone()],
            "histogram" => ["_bucket", "_count", "_sum", "_created"]
                .map(|suffix| format!("{family_name}{suffix}"))
                .to_vec(),
            other => return Err(bad(format!("the checker does not handle {other} families"))),
        };
        if !allowed.contains(&name) {
            return Err(bad(format!(
                "sample {name} in family {family_name} ({})",
                family.kind
            )));
        }
        if family.kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(bad("counter value not >= 0".into()));
        }
        if family.kind == "info" && value != 1.0 {
            return Err(bad("info value not 1".into()));
        }
        if family.kind == "histogram" {
            let is_bucket = name.ends_with("_bucket");
            if is_bucket != labels.iter().any(|(label, _)| label == "le") {
                return Err(bad(
                    "le on a sample that is not a bucket, or a bucket without le".into(),
                ));
            }
            if value.is_nan() || value < 0.0 {
                return Err(bad("histogram value not >= 0".into()));
            }
        }
        if let Some(owner) = owners.insert(name.clone(), family_name.clone())
            && owner != family_name
        {
            return Err(bad(format!("sample name {name} is also in family {owner}")));
        }
        if families.keys().any(|f| *f == name && *f != family_name) {
            return Err(bad(format!("sample name {name} is another family's name")));
        }
        let family = families.get_mut(&family_name).expect("current");
        if family.samples.insert((name, labels), value).is_some() {
            return Err(bad("duplicate sample".into()));
        }
    }
    for name in &order {
        let family = &families[name];
        if family.kind.is_empty() || family.help.is_empty() {
            return Err(format!("family {name} lacks TYPE or HELP"));
        }
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(families)
}

/// Each series of a histogram: cumulative buckets in increasing `le`, the last `+Inf`, equal to `_count`.
fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    type Labels = Vec<(String, String)>;
    let mut buckets: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for ((sample, labels), value) in &family.samples {
        if sample.ends_with("_bucket") {
            let le = labels
                .iter()
                .find(|(l, _)| l == "le")
                .map(|(_, v)| v.as_str());
            let bound = match le {
                Some("+Inf") => f64::INFINITY,
                Some(text) => text
                    .parse::<f64>()
                    .map_err(|_| format!("{name}: le {text:?} is not a number"))?,
                None => return Err(format!("{name}: a bucket without le")),
            };
            let series: Vec<_> = labels.iter().filter(|(l, _)| l != "le").cloned().collect();
            buckets.entry(series).or_default().push((bound, *value));
        }
    }
    for (series, mut bounds) in buckets {
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        if bounds.windows(2).any(|pair| pair[1].1 < pair[0].1) {
            return Err(format!("{name}{series:?}: buckets are not cumulative"));
        }
        let count = family
            .samples
            .get(&(format!("{name}_count"), series.clone()));
        match bounds.last() {
            Some((bound, value)) if bound.is_infinite() && Some(value) == count => {}
            _ => return Err(format!("{name}{series:?}: no +Inf bucket equal to _count")),
        }
    }
    Ok(())
}
