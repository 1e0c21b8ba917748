//! What one source crate registers with the exporter ([`Backend`]): its kind, the URL schemes it reads,
//! the keys of the `kobo` table it owns, and how it reads them and opens the source. The exporter lists
//! the backends in one table (`src/source.rs`), picks one by the scheme of `kobo.url`, and knows nothing
//! else of it.

use std::any::Any;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;

use crate::{DataSource, DatabaseOptions, SourceError};

/// The keys of the `kobo` table as the exporter hands them to a backend. `key` is the bare name
/// (`username`); every error is a complete message that names `kobo.<key>` and where its value was set.
pub trait SourceKeys {
    /// A text value.
    fn text(&self, key: &str) -> Result<Option<String>, String>;
    /// A boolean.
    fn flag(&self, key: &str) -> Result<Option<bool>, String>;
    /// A whole number within `range`.
    fn number(&self, key: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, String>;
    /// The secret in the file that the key names: a small regular UTF-8 file, its trailing line break
    /// dropped, not empty.
    fn secret_file(&self, key: &str) -> Result<Option<String>, String>;
}

/// A backend's own settings, as its [`Backend::read_options`] made them; only its [`Backend::open`]
/// looks inside. `Debug` never shows them (they may hold a token).
#[derive(Clone, Default)]
pub struct OwnOptions(Option<Arc<dyn Any + Send + Sync>>);

impl OwnOptions {
    /// No settings of its own.
    pub fn none() -> Self {
        OwnOptions(None)
    }

    pub fn new<T: Any + Send + Sync>(options: T) -> Self {
        OwnOptions(Some(Arc::new(options)))
    }

    /// The settings, if they are a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|options| options.downcast_ref())
    }
}

impl fmt::Debug for OwnOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "OwnOptions(..)",
            None => "OwnOptions(none)",
        })
    }
}

/// How a backend opens its source: from the shared options and its own.
pub type OpenFn = fn(DatabaseOptions, &OwnOptions) -> Result<Arc<dyn DataSource>, SourceError>;

/// One kind of source, as its crate registers it.
#[derive(Debug)]
pub struct Backend {
    /// The source's kind (`DataSource::kind`).
    pub kind: &'static str,
    /// The URL schemes of `kobo.url` it reads (lower case).
    pub schemes: &'static [&'static str],
    /// The keys of the `kobo` table it owns, beyond those every source shares (`url`, `password_file`,
    /// `ca_file`, the timeouts, ...); each can be set as `KOBO_<KEY>` too.
    pub keys: &'static [&'static str],
    /// Whether the task metrics are on unless `kobo.task_metrics` says otherwise.
    pub task_metrics_by_default: bool,
    /// Reads and checks its keys. The exporter calls it for every backend whose keys are set, whatever
    /// the URL, so that a bad value is named before anything starts.
    pub read_options: fn(&dyn SourceKeys) -> Result<OwnOptions, String>,
    /// Opens the source for the shared options and its own (what [`read_options`](Self::read_options)
    /// gave). A network source does no I/O here.
    pub open: OpenFn,
}

impl Backend {
    /// A [`read_options`](Self::read_options) for a backend without keys of its own.
    pub fn no_options(_: &dyn SourceKeys) -> Result<OwnOptions, String> {
        Ok(OwnOptions::none())
    }

    /// Whether it reads URLs of this scheme (compared without regard to case).
    pub fn reads(&self, scheme: &str) -> bool {
        self.schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_options_are_found_by_type_and_never_shown() {
        #[derive(Debug, PartialEq)]
        struct Token(&'static str);
        let own = OwnOptions::new(Token("s3cret"));
        assert_eq!(own.get::<Token>(), Some(&Token("s3cret")));
        assert_eq!(own.get::<String>(), None);
        assert!(!format!("{own:?}").contains("s3cret"));
        assert_eq!(OwnOptions::none().get::<Token>(), None);
    }
}
