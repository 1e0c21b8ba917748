//! A fake source for tests: its kind and description as given, each collection whatever a closure makes of
//! the request.

use std::future::Future;

use async_trait::async_trait;
use kobo_exporter::api::{CollectRequest, DataSource, HubSnapshot, SourceError};

/// A [`DataSource`] whose `collect` is `collect(request)`.
pub struct FakeSource<F> {
    kind: &'static str,
    describe: String,
    collect: F,
}

impl<F, Fut> FakeSource<F>
where
    F: Fn(CollectRequest) -> Fut + Send + Sync,
    Fut: Future<Output = Result<HubSnapshot, SourceError>> + Send,
{
    pub fn new(kind: &'static str, describe: impl Into<String>, collect: F) -> FakeSource<F> {
        FakeSource {
            kind,
            describe: describe.into(),
            collect,
        }
    }
}

#[async_trait]
impl<F, Fut> DataSource for FakeSource<F>
where
    F: Fn(CollectRequest) -> Fut + Send + Sync,
    Fut: Future<Output = Result<HubSnapshot, SourceError>> + Send,
{
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn describe(&self) -> String {
        self.describe.clone()
    }
    async fn collect(&self, request: &CollectRequest) -> Result<HubSnapshot, SourceError> {
        (self.collect)(*request).await
    }
}

/// The error of a source, described as `target`, whose hub refused the connection.
pub fn connection_refused(target: &str) -> SourceError {
    SourceError::Connect {
        target: target.into(),
        message: "connection refused".into(),
    }
}

/// A PostgreSQL source, described as `target`, whose hub refuses every connection; `each` runs at every
/// collection (to count them, say).
pub fn refusing(target: &'static str, each: impl Fn() + Send + Sync) -> impl DataSource {
    FakeSource::new("postgres", target, move |_| {
        each();
        std::future::ready(Err(connection_refused(target)))
    })
}
