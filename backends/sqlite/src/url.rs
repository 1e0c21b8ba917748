//! `sqlite:` URLs.

use std::path::PathBuf;

use kobo_backend_api::secrets::percent_decode;
use kobo_backend_api::SourceError;

/// The database path in a `sqlite:` URL: `sqlite:///abs/hub.sqlite3` (absolute), `sqlite://rel/hub.sqlite3`
/// or `sqlite:rel/hub.sqlite3` (relative to the working directory). Percent-escapes (`%20`) are decoded.
/// A query string is refused rather than silently ignored.
pub fn path_from_url(url: &str) -> Result<PathBuf, SourceError> {
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| SourceError::Config(format!("not a sqlite: URL: {url}")))?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    if rest.contains('?') || rest.contains('#') {
        return Err(SourceError::Config(format!(
            "sqlite URL {url}: query strings and fragments are not supported; give the file path only"
        )));
    }
    let path = percent_decode(rest).ok_or_else(|| {
        SourceError::Config(format!(
            "sqlite URL {url}: the percent-decoded path is not UTF-8"
        ))
    })?;
    if path.is_empty() {
        return Err(SourceError::Config(format!(
            "sqlite URL {url} names no file"
        )));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_relative_and_escaped_paths() {
        let p = |u: &str| {
            path_from_url(u)
                .map(|p| p.display().to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            p("sqlite:///var/lib/kobo/hub.sqlite3"),
            Ok("/var/lib/kobo/hub.sqlite3".into())
        );
        assert_eq!(
            p("sqlite://demo/hub.sqlite3"),
            Ok("demo/hub.sqlite3".into())
        );
        assert_eq!(p("sqlite:hub.db"), Ok("hub.db".into()));
        assert_eq!(p("sqlite:///tmp/my%20hub.db"), Ok("/tmp/my hub.db".into()));
        assert!(p("sqlite:///tmp/hub.db?mode=rw").is_err());
        assert!(p("sqlite://").is_err());
        // A `%` that starts no escape stays as written, as URL parsers read it; bytes that are not UTF-8
        // are refused.
        assert_eq!(p("sqlite:///odd%zz"), Ok("/odd%zz".into()));
        assert!(p("sqlite:///bad%FF").is_err());
        assert!(p("postgres://x/y").is_err());
    }
}
