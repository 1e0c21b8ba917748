//! Collecting from a source in a test, without building a [`CollectRequest`] each time.

use std::future::Future;
use std::time::Duration;

use kobo_backend_api::{CollectRequest, DataSource, HubSnapshot, SourceError};

/// The deadline of a test's collection: long enough never to be what a test measures.
pub const UNHURRIED: Duration = Duration::from_secs(120);

/// `collect` with a request due [`UNHURRIED`] from now.
pub trait CollectExt {
    /// The workers, every metric.
    fn collect_workers(&self) -> impl Future<Output = Result<HubSnapshot, SourceError>> + Send;
    /// The workers and the task data, every metric.
    fn collect_tasks(&self) -> impl Future<Output = Result<HubSnapshot, SourceError>> + Send;
}

impl<T: DataSource + ?Sized> CollectExt for T {
    async fn collect_workers(&self) -> Result<HubSnapshot, SourceError> {
        self.collect(&CollectRequest::within(UNHURRIED)).await
    }

    async fn collect_tasks(&self) -> Result<HubSnapshot, SourceError> {
        self.collect(&CollectRequest::within(UNHURRIED).tasks(true))
            .await
    }
}
