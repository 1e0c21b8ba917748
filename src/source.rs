//! Opens the data source that `kobo.url` names.

use std::sync::Arc;

use kobo_backend_api::DataSource;

use crate::config::{ConfigError, Settings, SourceKind};

/// Opens the configured source. Errors name the config key at fault and where it was set. The worker
/// directory, when given, must exist and be readable.
pub fn open(settings: &Settings) -> Result<Arc<dyn DataSource>, ConfigError> {
    let url_error = |e: &dyn std::fmt::Display| {
        ConfigError(format!("`kobo.url` ({}): {e}", settings.url_origin))
    };
    if let Some(dir) = &settings.database.worker_dir {
        dir.check().map_err(|e| {
            ConfigError(format!(
                "`kobo.worker_dir` ({}): {e}",
                settings.worker_dir_origin
            ))
        })?;
    }
    let options = settings.database.clone();
    match settings.kind {
        SourceKind::Sqlite => {
            kobo_backend_sqlite::from_url(&options.url, options.worker_dir.clone())
                .map(|s| Arc::new(s) as Arc<dyn DataSource>)
                .map_err(|e| url_error(&e))
        }
        #[cfg(feature = "postgres")]
        SourceKind::Postgres => kobo_backend_postgres::open(options)
            .map(|s| Arc::new(s) as Arc<dyn DataSource>)
            .map_err(|e| url_error(&e)),
        #[cfg(feature = "mysql")]
        SourceKind::Mysql => kobo_backend_mysql::open(options)
            .map(|s| Arc::new(s) as Arc<dyn DataSource>)
            .map_err(|e| url_error(&e)),
        #[cfg(feature = "xmlrpc")]
        SourceKind::XmlRpc => {
            let mut http = kobo_backend_xmlrpc::XmlRpcOptions::new(options.url.clone());
            http.ca_file = options.ca_file.clone();
            http.password = options.password.clone();
            http.request_timeout = options.query_timeout;
            http.username = settings.http.username.clone();
            http.bearer_token = settings.http.bearer_token.clone();
            http.tls_verify = settings.http.tls_verify;
            if let Some(bytes) = settings.http.max_response_bytes {
                http.max_response_bytes = bytes;
            }
            if let Some(chunk) = settings.http.multicall_chunk {
                http.multicall_chunk = chunk;
            }
            kobo_backend_xmlrpc::XmlRpcSource::new(http)
                .map(|s| Arc::new(s) as Arc<dyn DataSource>)
                .map_err(|e| url_error(&e))
        }
        #[allow(unreachable_patterns)]
        kind => Err(url_error(&format!(
            "the {kind:?} source is not available in this build of kobo-exporter"
        ))),
    }
}
