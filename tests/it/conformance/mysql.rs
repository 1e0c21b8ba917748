//! The conformance hubs on MySQL/MariaDB: kobo's MariaDB schema in a fresh database on the test server
//! (`KOBO_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`), dropped afterwards. Statements run
//! with `NO_BACKSLASH_ESCAPES`, so their string literals mean what they mean on the other databases.

#[tokio::test]
async fn every_hub_renders_its_shared_snapshot() {
    super::on_database::<crate::backends::mysql::Mysql>().await;
}
