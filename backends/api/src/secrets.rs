//! Keeping credentials out of messages.
//!
//! Sources build their own messages from the redacted URL ([`crate::redact_url`]), but a driver's error
//! text is not under their control, nor is what a hub or a proxy answers. [`Secrets`] knows every password
//! and token a source was configured with, in every form it is sent in (as written, percent-decoded, and
//! for HTTP basic auth the base64 of `user:password`), and removes each from any text before it becomes a
//! [`crate::SourceError`] or a warning. It also removes the credentials of anything that looks like an
//! `Authorization` header (`Authorization: Basic <base64>`, `'HTTP_AUTHORIZATION': 'Bearer <token>'`, ...)
//! and of a `Basic <base64 of user:password>` anywhere, so that an echoed header leaks nothing even when
//! cut short. [`escape_controls`] (and [`Secrets::clean`]) make outside text safe to log on one line.

use std::fmt::Display;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::{DatabaseOptions, SourceError, redact_url};

/// The passwords of one source's configuration: the URL's (as the `url` crate, which sqlx and mysql_async
/// read it with, writes it, and percent-decoded), every `password=` query parameter's (as written and
/// decoded), also from a URL the crate refuses (see [`crate::redact_url`]), and the separate password.
#[derive(Clone, Default)]
pub struct Secrets {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.secrets.len())
    }
}

impl Secrets {
    /// The secrets of these options.
    pub fn from_options(options: &DatabaseOptions) -> Self {
        let mut raw = crate::options::url_secrets(&options.url).secrets;
        raw.extend(options.password.iter().cloned());
        Secrets::new(raw)
    }

    /// These secrets, each as given and percent-decoded (when that is valid and differs).
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let mut out = Secrets::default();
        for secret in secrets {
            let secret = secret.as_ref();
            if let Some(decoded) = percent_decode(secret) {
                out.secrets.push(decoded);
            }
            out.secrets.push(secret.to_string());
        }
        out.sorted()
    }

    /// Adds HTTP basic-auth credentials: the password, and `base64(username:password)` as sent in
    /// `Authorization: Basic ...` (standard and URL-safe alphabets, with and without padding). Without a
    /// password nothing is secret.
    pub fn with_basic_auth(mut self, username: &str, password: Option<&str>) -> Self {
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            self.secrets.push(password.to_string());
            let pair = format!("{username}:{password}");
            for engine in [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                self.secrets.push(engine.encode(&pair));
            }
        }
        self.sorted()
    }

    /// Adds a bearer token (sent as `Authorization: Bearer <token>`).
    pub fn with_bearer_token(mut self, token: &str) -> Self {
        self.secrets.push(token.trim().to_string());
        self.secrets.push(token.to_string());
        self.sorted()
    }

    /// Empty secrets dropped, longest first (so that a secret containing another is removed whole), no
    /// duplicates.
    fn sorted(mut self) -> Self {
        self.secrets.retain(|s| !s.is_empty());
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.secrets.dedup();
        self
    }

    /// `text` with every secret replaced by `***`, and the credentials of anything that looks like an
    /// `Authorization` header or a basic-auth value (see the module documentation).
    pub fn scrub(&self, text: impl Display) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        scrub_authorization(&text)
    }

    /// [`scrub`](Self::scrub), then [`escape_controls`]: for text from outside (a hub's fault string or
    /// error page) that goes into an error, a warning or the log.
    pub fn clean(&self, text: impl Display) -> String {
        escape_controls(&self.scrub(text))
    }
}

/// `text` with its control characters escaped as Rust does (`\n`, `\r`, `\t`, `\u{1b}`), and the
/// characters that reorder or break lines when shown (bidirectional overrides and isolates, the line and
/// paragraph separators) as `\u{...}`: text from outside cannot start a new log line, move the cursor or
/// hide what follows. Everything else, backslashes included, is left as it is.
pub fn escape_controls(text: &str) -> String {
    let needs_escape = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{061c}'
                    | '\u{200e}'
                    | '\u{200f}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202a}'..='\u{202e}'
                    | '\u{2066}'..='\u{2069}'
            )
    };
    if !text.chars().any(needs_escape) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// The authentication schemes whose credentials are removed.
const SCHEMES: [&str; 2] = ["basic", "bearer"];

/// `text` with `***` for the credentials of every `Authorization` header in it (after the name, a few of
/// `: = ' "` and spaces, then `Basic` or `Bearer` and the credentials), and of every `Basic <token>` whose
/// token is base64 of something with a `:` (a `user:password` pair), wherever it is.
fn scrub_authorization(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    // (start, end) byte ranges of credentials, in order.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find("authorization") {
        let mut i = at + found + "authorization".len();
        at = i;
        let bytes = lower.as_bytes();
        let start = i;
        while i < bytes.len()
            && i - start < 8
            && matches!(bytes[i], b' ' | b'\t' | b':' | b'=' | b'\'' | b'"' | b'\\')
        {
            i += 1;
        }
        if let Some(range) = credentials_after_scheme(text, &lower, i, true) {
            ranges.push(range);
            at = range.1;
        }
    }
    // `Basic <base64 of user:password>` anywhere (at a word start).
    let mut at = 0;
    while let Some(found) = lower[at..].find("basic") {
        let i = at + found;
        at = i + "basic".len();
        let word_start = i == 0 || !lower.as_bytes()[i - 1].is_ascii_alphanumeric();
        if !word_start || ranges.iter().any(|&(s, e)| s <= i && i < e) {
            continue;
        }
        if let Some(range) = credentials_after_scheme(text, &lower, i, false) {
            if !ranges.contains(&range) {
                ranges.push(range);
            }
            at = range.1;
        }
    }
    if ranges.is_empty() {
        return text.to_string();
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in ranges {
        if start < last {
            continue;
        }
        out.push_str(&text[last..start]);
        out.push_str("***");
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// The byte range of the credentials after a scheme word at `at` (`Basic` or `Bearer`, any case, then
/// spaces): up to the next space, quote or delimiter. Unless `in_header`, only basic credentials that are
/// base64 of a `user:password` pair count. Credentials already scrubbed (`***`) are left alone.
fn credentials_after_scheme(
    text: &str,
    lower: &str,
    at: usize,
    in_header: bool,
) -> Option<(usize, usize)> {
    let rest = &lower[at..];
    let scheme = SCHEMES.iter().find(|scheme| rest.starts_with(**scheme))?;
    let bytes = lower.as_bytes();
    let mut start = at + scheme.len();
    let after_scheme = start;
    while start < bytes.len() && matches!(bytes[start], b' ' | b'\t') {
        start += 1;
    }
    if start == after_scheme {
        return None;
    }
    let end = text[start..]
        .find(|c: char| c.is_whitespace() || c.is_control() || "'\"`,;<>()[]{}\\&|".contains(c))
        .map_or(text.len(), |n| start + n);
    let token = &text[start..end];
    if token.is_empty() || token.chars().all(|c| c == '*') {
        return None;
    }
    if !in_header && (*scheme != "basic" || !is_basic_pair(token)) {
        return None;
    }
    Some((start, end))
}

/// Whether `token` is base64 (either alphabet, padding optional) of bytes holding a `:`.
fn is_basic_pair(token: &str) -> bool {
    let unpadded = token.trim_end_matches('=');
    if unpadded.len() < 4 {
        return false;
    }
    [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD]
        .iter()
        .filter_map(|engine| engine.decode(unpadded).ok())
        .any(|bytes| bytes.contains(&b':'))
}

/// Where a database source's errors happen: its redacted URL as the target of every [`SourceError`], and
/// its [`Secrets`], scrubbed from every message.
#[derive(Debug, Clone)]
pub struct ErrorContext {
    target: String,
    secrets: Secrets,
}

impl ErrorContext {
    pub fn new(options: &DatabaseOptions) -> Self {
        ErrorContext {
            target: redact_url(&options.url),
            secrets: Secrets::from_options(options),
        }
    }

    /// A context for a target that holds no secret (a file's path).
    pub fn without_secrets(target: impl Into<String>) -> Self {
        ErrorContext {
            target: target.into(),
            secrets: Secrets::default(),
        }
    }

    /// The redacted URL.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// `text` without any secret.
    pub fn scrub(&self, text: impl Display) -> String {
        self.secrets.scrub(text)
    }

    /// [`SourceError::Config`]: `what` (e.g. "invalid URL") for the redacted URL, and the scrubbed cause.
    pub fn config(&self, what: &str, cause: impl Display) -> SourceError {
        SourceError::Config(format!("{what} {}: {}", self.target, self.scrub(cause)))
    }

    /// [`SourceError::Connect`] with the scrubbed message.
    pub fn connect(&self, message: impl Display) -> SourceError {
        SourceError::Connect {
            target: self.target.clone(),
            message: self.scrub(message),
        }
    }

    /// [`SourceError::Query`] with the scrubbed message.
    pub fn query(&self, message: impl Display) -> SourceError {
        SourceError::Query {
            target: self.target.clone(),
            message: self.scrub(message),
        }
    }

    /// [`SourceError::Schema`] with the scrubbed message.
    pub fn schema(&self, message: impl Display) -> SourceError {
        SourceError::Schema {
            target: self.target.clone(),
            message: self.scrub(message),
        }
    }

    /// [`SourceError::Data`] with the scrubbed message.
    pub fn data(&self, message: impl Display) -> SourceError {
        SourceError::Data {
            target: self.target.clone(),
            message: self.scrub(message),
        }
    }
}

/// Decodes `%XX` escapes (the `percent-encoding` crate; a `%` not followed by two hex digits stays as
/// written); `None` if the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_every_password_is_scrubbed() {
        let options = DatabaseOptions {
            password: Some("hunter2".into()),
            ..DatabaseOptions::new("postgres://kobo:p%40ss@db/hub?password=q%20w&sslmode=require")
        };
        let secrets = Secrets::from_options(&options);
        let text = "auth failed: p%40ss p@ss q w q%20w hunter2 kobo db";
        assert_eq!(
            secrets.scrub(text),
            "auth failed: *** *** *** *** *** kobo db"
        );
        assert!(!format!("{secrets:?}").contains("hunter2"));
        assert_eq!(
            Secrets::from_options(&DatabaseOptions::new("mysql://kobo@db/hub")).scrub("kobo"),
            "kobo"
        );
        let context = ErrorContext::new(&options);
        let error = context
            .connect("password authentication failed: hunter2")
            .to_string();
        assert_eq!(
            error,
            "cannot connect to postgres://kobo:***@db/hub?password=***&sslmode=require: password authentication failed: ***"
        );
        assert_eq!(percent_decode("a%2Fb"), Some("a/b".into()));
        assert_eq!(percent_decode("a%zz"), Some("a%zz".into()));
        assert_eq!(percent_decode("a%FF"), None, "not UTF-8");
    }

    #[test]
    fn passwords_are_scrubbed_in_the_forms_the_drivers_and_the_url_crate_write() {
        let scrub =
            |url: &str, text: &str| Secrets::from_options(&DatabaseOptions::new(url)).scrub(text);
        // An unescaped `@` in the password: the `url` crate (and so the drivers) write it as `%40`.
        assert_eq!(
            scrub("postgres://kobo:p@ss@db/hub", "p@ss p%40ss kobo"),
            "*** *** kobo"
        );
        assert_eq!(scrub("mysql://kobo:a%7Cb@db/hub", "a%7Cb a|b"), "*** ***");
        // `password` parameters: any case, the name decoded, the value as written and decoded (`+` a space).
        assert_eq!(
            scrub(
                "postgres://db/hub?PASSWORD=a+b%21&pass%77ord=c%26d&user=kobo",
                "a+b%21 a b! c%26d c&d kobo"
            ),
            "*** *** *** *** kobo"
        );
        // URLs the `url` crate refuses (the password's `/`, `?` or `#` make the rest a bad port).
        assert_eq!(
            scrub("postgres://kobo:pa/s%24s@db/hub", "pa/s%24s pa/s$s"),
            "*** ***"
        );
        assert_eq!(
            scrub(
                "postgres://kobo:x#y@db:bad/hub?password=q%20w",
                "x#y q w q%20w"
            ),
            "*** *** ***"
        );
        // A tab in the password: the drivers read it without (the `url` crate drops it).
        assert_eq!(
            scrub("postgres://kobo:p\tw@db/hub", "p\tw pw kobo"),
            "*** *** kobo"
        );
        let options = DatabaseOptions::new("postgres://kobo:pa?ss@db/hub");
        let error = ErrorContext::new(&options)
            .config("invalid URL", "invalid port number: pa?ss")
            .to_string();
        assert_eq!(
            error,
            "invalid URL postgres://kobo:***@db/hub: invalid port number: ***"
        );
    }

    #[test]
    fn basic_auth_and_bearer_credentials_are_scrubbed_in_the_forms_they_are_sent_in() {
        // base64("monitor:hunter2 s3cret"), and the same with `+`/`/` in both alphabets.
        let basic = "bW9uaXRvcjpodW50ZXIyIHMzY3JldA==";
        let secrets = Secrets::new(["t%20k"]).with_basic_auth("monitor", Some("hunter2 s3cret"));
        assert_eq!(
            secrets.scrub(format!(
                "got {basic} and bW9uaXRvcjpodW50ZXIyIHMzY3JldA; t k t%20k"
            )),
            "got *** and ***; *** ***"
        );
        assert_eq!(secrets.scrub("hunter2 s3cret"), "***");
        let odd = Secrets::default().with_basic_auth("u", Some("??>>"));
        assert_eq!(odd.scrub("dTo/Pz4+ dTo_Pz4- dTo/Pz4+"), "*** *** ***");
        // No password: nothing is secret (the user name is not).
        assert_eq!(
            Secrets::default()
                .with_basic_auth("monitor", None)
                .scrub("monitor bW9uaXRvcjo="),
            "monitor bW9uaXRvcjo="
        );
        let bearer = Secrets::default().with_bearer_token("t0ken-abc\n");
        assert_eq!(
            bearer.scrub("Bearer t0ken-abc, t0ken-abc"),
            "Bearer ***, ***"
        );
        assert!(!format!("{secrets:?} {bearer:?}").contains("t0ken"));
    }

    #[test]
    fn any_authorization_header_and_basic_pair_is_scrubbed() {
        let none = Secrets::default();
        for (text, expected) in [
            (
                "Authorization: Basic dXNlcjpwdw== was refused",
                "Authorization: Basic *** was refused",
            ),
            // Cut short (as a shortened message does), and in a Django request dump.
            (
                "authorization: basic dXNlcjpwd...",
                "authorization: basic ***",
            ),
            (
                "{'HTTP_AUTHORIZATION': 'Bearer abc.def-ghi', 'HTTP_HOST': 'hub'}",
                "{'HTTP_AUTHORIZATION': 'Bearer ***', 'HTTP_HOST': 'hub'}",
            ),
            (
                "\"authorization\":\"Bearer x\"",
                "\"authorization\":\"Bearer ***\"",
            ),
            ("<td>Basic dXNlcjpwdw</td>", "<td>Basic ***</td>"),
            ("Basic  dXNlcjpwdw==\n", "Basic  ***\n"),
        ] {
            assert_eq!(none.scrub(text), expected, "{text}");
        }
        // Text that only names the schemes is left as it is.
        for text in [
            "401 Authorization Required",
            "WWW-Authenticate: Basic realm=\"kobo\"",
            "basic auth (username/password) and a bearer token cannot be used together",
            "set a username and password, or a bearer token",
            "Basic authentication failed; Bearer token expired",
            "Authorization: Basic ***",
            "Basic",
            "Authorization:",
        ] {
            assert_eq!(none.scrub(text), text);
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_controls("a\nb\r\tc\u{1b}[0m\u{0}\u{7f}\u{85}"),
            "a\\nb\\r\\tc\\u{1b}[0m\\0\\u{7f}\\u{85}"
        );
        assert_eq!(
            escape_controls("x\u{202e}y\u{2066}\u{2028}"),
            "x\\u{202e}y\\u{2066}\\u{2028}"
        );
        // Backslashes and other text unchanged: escaping twice changes nothing more.
        assert_eq!(
            escape_controls("caf\u{e9} \\n \u{263a}"),
            "caf\u{e9} \\n \u{263a}"
        );
        let once = escape_controls("a\nb");
        assert_eq!(escape_controls(&once), once);
        let secrets = Secrets::new(["pw"]);
        assert_eq!(secrets.clean("pw\r\nnext"), "***\\r\\nnext");
    }
}
