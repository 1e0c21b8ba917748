//! The conformance hubs on PostgreSQL: kobo's PostgreSQL schema in a fresh database on the test server
//! (`KOBO_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`), dropped afterwards.

#[tokio::test]
async fn every_hub_renders_its_shared_snapshot() {
    super::on_database::<crate::backends::postgres::Postgres>().await;
}
