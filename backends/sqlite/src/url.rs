//! `sqlite:` URLs.

use std::path::PathBuf;

use kobo_backend_api::SourceError;
use kobo_backend_api::secrets::percent_decode;

/// The database path in a `sqlite:` URL: `sqlite:///abs/hub.sqlite3` (absolute), `sqlite://rel/hub.sqlite3`
/// or `sqlite:rel/hub.sqlite3` (relative to the working directory). Percent-escapes (`%20`) are decoded.
/// A query string is refused rather than silently ignored.
///
/// Not read with the `url` crate, on purpose: a `sqlite:` URL is a file path with a prefix, and the crate
/// would change the path (`sqlite:///a/../b` and `sqlite:///a/%2e%2e/b` resolved to `/b`, though `a` may be
/// a symbolic link; `sqlite://demo:1/x` read as host and port). sqlx's SQLite driver reads the path of
/// these URLs the same way: the prefix stripped, the path cut at `?` and percent-decoded (the
/// `percent-encoding` crate).
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
        // The path as written: no `..` resolved, no host or port read.
        assert_eq!(p("sqlite:///a/../b.db"), Ok("/a/../b.db".into()));
        assert_eq!(p("sqlite:///a/%2e%2e/b.db"), Ok("/a/../b.db".into()));
        assert_eq!(p("sqlite://demo:1/x.db"), Ok("demo:1/x.db".into()));
        assert!(p("sqlite:///tmp/hub.db#x").is_err());
    }
}
