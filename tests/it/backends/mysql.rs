//! The shared suite on MySQL/MariaDB (`KOBO_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`),
//! and what only this source does: construction without a runtime.

use kobo_exporter::api::{DataSource, DatabaseOptions, SourceError};
use kobo_testkit::db::{MysqlDb, TestDb};

use super::Backend;

/// The MySQL/MariaDB source.
pub struct Mysql;

impl Backend for Mysql {
    type Db = MysqlDb;

    const SCHEMES: [&'static str; 2] = ["mysql", "mariadb"];
    const FOREIGN_URL: &'static str = "postgres://u@h/d";
    const AUTH_REFUSED: &'static [&'static str] = &["Access denied"];

    const NEW: fn(DatabaseOptions) -> Result<Box<dyn DataSource>, SourceError> =
        |options| Ok(Box::new(kobo_backend_mysql::open(options)?));

    fn socket_url(db: &MysqlDb) -> Option<String> {
        let socket = "/run/mysqld/mysqld.sock";
        if !std::path::Path::new(socket).exists() {
            return None;
        }
        let url = db.url();
        let user = url
            .trim_start_matches("mysql://")
            .split(['@', ':'])
            .next()
            .unwrap_or("root");
        Some(format!(
            "mariadb://{user}@localhost/{}?socket={socket}",
            db.name()
        ))
    }

    fn tls_required_url(db: &MysqlDb) -> String {
        format!("{}?ssl-mode=REQUIRED", db.url())
    }
}

backend_suite!(Mysql);

#[test]
fn construction_needs_no_runtime() {
    // Nothing listens on port 1, and no runtime is running: construction still succeeds (the pool is lazy).
    let source = kobo_backend_mysql::open(DatabaseOptions::new("mariadb://u:pw@127.0.0.1:1/d"))
        .expect("lazy");
    assert_eq!(
        source.describe(),
        "MySQL/MariaDB database mariadb://u:***@127.0.0.1:1/d"
    );
}
