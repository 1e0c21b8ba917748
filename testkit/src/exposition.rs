//! A parser of the Prometheus text exposition format (0.0.4), for comparing outputs by meaning: values are
//! parsed as floats (`1.0` equals `1`, `1.749999887e+09` equals `1749999887`), label values are unescaped,
//! and every line must be well-formed.

use std::collections::BTreeMap;

/// A parsed metric family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Family {
    pub help: Option<String>,
    pub kind: Option<String>,
    /// Samples by their label set (sorted `(name, value)` pairs); the sample's own name is in the key too,
    /// for families whose samples have suffixes.
    pub samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

/// Families by name, and the order in which their names first appeared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
    pub order: Vec<String>,
}

/// A label set as a sample's key holds it: `(name, value)` pairs, sorted.
pub fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    labels
}

impl Exposition {
    /// The value of the sample `name{labels}` (in any family: a histogram's `_bucket`, say), if present.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let key = (name.to_string(), self::labels(labels));
        self.families
            .values()
            .find_map(|family| family.samples.get(&key))
            .copied()
    }

    fn family(&mut self, name: &str) -> &mut Family {
        if !self.families.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.families.entry(name.to_string()).or_default()
    }
}

/// Parses an exposition; `Err` names the first bad line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (number, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let family = out.family(name);
            if family.help.is_some() {
                return Err(bad("second HELP"));
            }
            family.help = Some(unescape(help, false).map_err(|e| bad(&e))?);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| bad("TYPE without type"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(bad("unknown type"));
            }
            let family = out.family(name);
            if family.kind.is_some() {
                return Err(bad("second TYPE"));
            }
            family.kind = Some(kind.to_string());
        } else if line.starts_with('#') {
            continue;
        } else {
            let (name, labels, rest) = parse_sample(line).map_err(|e| bad(&e))?;
            let mut fields = rest.split_whitespace();
            let value = fields.next().ok_or_else(|| bad("no value"))?;
            let value = parse_value(value).ok_or_else(|| bad("bad value"))?;
            if let Some(ts) = fields.next() {
                ts.parse::<i64>().map_err(|_| bad("bad timestamp"))?;
            }
            if fields.next().is_some() {
                return Err(bad("trailing fields"));
            }
            let family_name = family_of(&out, &name);
            let family = out.family(&family_name);
            if family.samples.insert((name, labels), value).is_some() {
                return Err(bad("duplicate sample"));
            }
        }
    }
    Ok(out)
}

/// The family a sample belongs to: its own name, or that name without a histogram/summary suffix when such
/// a family was declared.
fn family_of(out: &Exposition, sample: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix)
            && out
                .families
                .get(base)
                .and_then(|f| f.kind.as_deref())
                .is_some_and(|k| k == "histogram" || k == "summary")
        {
            return base.to_string();
        }
    }
    sample.to_string()
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

type Labels = Vec<(String, String)>;

fn parse_sample(line: &str) -> Result<(String, Labels, &str), String> {
    let end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map(|(i, _)| i)
        .unwrap_or(line.len());
    if end == 0 {
        return Err("no metric name".into());
    }
    let name = line[..end].to_string();
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            // label name
            while chars.peek().is_some_and(|&(_, c)| c == ' ' || c == ',') {
                chars.next();
            }
            match chars.peek() {
                Some(&(i, '}')) => {
                    rest = &inner[i + 1..];
                    break;
                }
                None => return Err("unterminated labels".into()),
                _ => {}
            }
            let mut label = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' {
                    break;
                }
                if !is_name_char(c, label.is_empty()) {
                    return Err(format!("bad label name character {c:?}"));
                }
                label.push(c);
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('=')
                || chars.next().map(|(_, c)| c) != Some('"')
            {
                return Err("label without =\"".into());
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, '\n')) | None => return Err("unterminated label value".into()),
                    Some((_, c)) => value.push(c),
                }
            }
            if labels.iter().any(|(l, _): &(String, String)| *l == label) {
                return Err(format!("label {label} twice"));
            }
            labels.push((label, value));
        }
    }
    if !rest.starts_with(' ') {
        return Err("no space before the value".into());
    }
    labels.sort();
    Ok((name, labels, rest))
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse::<f64>().ok(),
    }
}

fn unescape(text: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('"') if quotes => out.push('"'),
                other => return Err(format!("bad escape {other:?}")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}
