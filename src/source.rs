//! The sources this build can read, in one table ([`BACKENDS`]), and opening the one `kobo.url` names.
//!
//! A source is a crate that exports a [`Backend`] (its kind, URL schemes, keys of the `kobo` table, and
//! how it opens); adding one is that crate and one line here.

use std::sync::Arc;

use kobo_backend_api::{Backend, DataSource};

use crate::config::{ConfigError, Settings};

/// Every source of this build.
pub static BACKENDS: &[&Backend] = &[
    &kobo_backend_sqlite::BACKEND,
    #[cfg(feature = "postgres")]
    &kobo_backend_postgres::BACKEND,
    #[cfg(feature = "mysql")]
    &kobo_backend_mysql::BACKEND,
    #[cfg(feature = "xmlrpc")]
    &kobo_backend_xmlrpc::BACKEND,
];

/// The backend that reads URLs of this scheme (compared without regard to case).
pub fn backend_for(scheme: &str) -> Option<&'static Backend> {
    BACKENDS
        .iter()
        .copied()
        .find(|backend| backend.reads(scheme))
}

/// Opens the configured source. Errors name the config key at fault and where it was set. The worker
/// directory, when given, must exist and be readable.
pub fn open(settings: &Settings) -> Result<Arc<dyn DataSource>, ConfigError> {
    if let Some(dir) = &settings.database.worker_dir {
        dir.check().map_err(|e| {
            ConfigError(format!(
                "`{}` ({}): {e}",
                settings.worker_dir_key, settings.worker_dir_origin
            ))
        })?;
    }
    (settings.backend.open)(settings.database.clone(), &settings.own).map_err(|e| {
        ConfigError(format!(
            "`{}` ({}): {e}",
            settings.url_key, settings.url_origin
        ))
    })
}
