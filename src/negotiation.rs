//! The one parser of HTTP's weighted lists, for `Accept` ([`Format::negotiate`](crate::exposition::Format))
//! and `Accept-Encoding` ([`accepts_gzip`](crate::compression::accepts_gzip)): `value;param=x;q=0.5, ...`.

/// One element of a weighted list.
#[derive(Debug, Clone, PartialEq)]
pub struct Preference<'a> {
    /// The media type or content coding, trimmed, as written (compare it case-insensitively).
    pub value: &'a str,
    /// Its weight: the `q` parameter (1 when absent, 0 when it cannot be read, so that a garbled entry
    /// never wins).
    pub q: f64,
    /// Its other parameters, names as written, values without quotes.
    params: Vec<(&'a str, &'a str)>,
}

impl Preference<'_> {
    /// The value of the parameter `name` (case-insensitive), if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }

    /// Whether the value is `name` (case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.value.eq_ignore_ascii_case(name)
    }
}

/// The elements of a header's weighted list, in the header's order (empty elements skipped).
pub fn preferences(header: &str) -> impl Iterator<Item = Preference<'_>> {
    header.split(',').filter_map(|entry| {
        let mut parts = entry.split(';').map(str::trim);
        let value = parts.next().filter(|value| !value.is_empty())?;
        let mut q = 1.0;
        let mut params = Vec::new();
        for (key, raw) in parts.filter_map(|param| param.split_once('=')) {
            let (key, raw) = (key.trim(), raw.trim().trim_matches('"'));
            if key.eq_ignore_ascii_case("q") {
                q = raw
                    .parse::<f64>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
                    .unwrap_or(0.0);
            } else {
                params.push((key, raw));
            }
        }
        Some(Preference { value, q, params })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parameters_and_garbage() {
        let list: Vec<Preference> = preferences(
            "application/openmetrics-text; version=\"1.0.0\"; q=0.5 , text/plain;Q=0,, gzip;q=x, br;q=2",
        )
        .collect();
        assert_eq!(list.len(), 4);
        assert!(list[0].is("Application/OpenMetrics-Text"));
        assert_eq!((list[0].q, list[0].param("VERSION")), (0.5, Some("1.0.0")));
        assert_eq!((list[1].value, list[1].q), ("text/plain", 0.0));
        assert_eq!(list[2].q, 0.0, "an unreadable q never wins");
        assert_eq!(list[3].q, 0.0, "q above 1 is not a weight");
        assert_eq!(preferences("").count(), 0);
        assert_eq!(preferences("*").next().map(|p| p.q), Some(1.0));
    }
}
