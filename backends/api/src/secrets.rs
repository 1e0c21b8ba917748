//! Keeping credentials out of messages.
//!
//! Sources build their own messages from the redacted URL ([`crate::redact_url`]), but a driver's error
//! text is not under their control. [`Secrets`] knows every password a source was configured with and
//! removes each from any text before it becomes a [`crate::SourceError`] or a warning.

use std::fmt::Display;

use crate::{redact_url, DatabaseOptions, SourceError};

/// The passwords of one source's configuration: the URL's (as written and percent-decoded), a `password=`
/// query parameter's, and the separate password.
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
        let mut raw = url_passwords(&options.url);
        raw.extend(options.password.iter().cloned());
        let mut secrets = Vec::new();
        for secret in raw {
            if let Some(decoded) = percent_decode(&secret) {
                secrets.push(decoded);
            }
            secrets.push(secret);
        }
        secrets.retain(|s| !s.is_empty());
        // Longest first, so that a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Secrets { secrets }
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub(&self, text: impl Display) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
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

/// The password in a URL's authority (`scheme://user:password@host`) and any `password=` query values,
/// as written (percent-encoded).
fn url_passwords(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut found = Vec::new();
    if let Some((userinfo, _host)) = authority.rsplit_once('@') {
        if let Some((_user, password)) = userinfo.split_once(':') {
            found.push(password.to_string());
        }
    }
    if let Some((_, query)) = tail.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for pair in query.split('&') {
            if let Some((key, value)) = pair.split_once('=') {
                if key.eq_ignore_ascii_case("password") {
                    found.push(value.replace('+', " "));
                    found.push(value.to_string());
                }
            }
        }
    }
    found
}

/// Decodes `%XX` escapes; `None` if an escape is invalid or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
        assert_eq!(error, "cannot connect to postgres://kobo:***@db/hub?password=***&sslmode=require: password authentication failed: ***");
        assert_eq!(percent_decode("a%2Fb"), Some("a/b".into()));
        assert_eq!(percent_decode("a%zz"), None);
    }
}
