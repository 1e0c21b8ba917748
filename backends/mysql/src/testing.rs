//! Throw-away hub databases on a real MySQL/MariaDB server, for this crate's tests and the exporter's
//! conformance suite (feature `testing`; never part of a normal build).
//!
//! The server is the one named by `KOBO_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`, an
//! administrator). Each [`TestDatabase`] is a new database `kobo_test_<pid>_<n>_<time>` that is dropped
//! (with any user it created) when the value is dropped, also when a test fails. An unreachable server
//! skips the test with a loud `SKIPPED:` line, or fails it when `CI=true`.

use std::time::Duration;

pub use kobo_backend_api::testing::test_data;
use kobo_backend_api::testing::{cleanup_on_own_thread, head, unique_name, unreachable, BoxError};
use kobo_backend_api::DatabaseOptions;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

/// The default administrator URL of the test server.
pub const DEFAULT_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// The password of users made by [`TestDatabase::create_reader`].
pub const READER_PASSWORD: &str = "kobo-reader-secret";

/// The administrator URL: `KOBO_TEST_MYSQL_URL` or [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> String {
    std::env::var("KOBO_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// A database created for one test, dropped on drop.
pub struct TestDatabase {
    name: String,
    admin: Opts,
    users: Vec<String>,
}

impl TestDatabase {
    /// Creates an empty database; `None` if the server cannot be reached and `CI` is not `true` (a
    /// `SKIPPED:` line then says so on stderr).
    pub async fn create() -> Option<TestDatabase> {
        let url = admin_url();
        let admin = Opts::from_url(&url).unwrap_or_else(|e| panic!("bad KOBO_TEST_MYSQL_URL: {e}"));
        let admin: Opts = OptsBuilder::from_opts(admin).prefer_socket(false).into();
        let mut conn = match tokio::time::timeout(Duration::from_secs(5), Conn::new(admin.clone()))
            .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return unreachable("MySQL/MariaDB", &url, "KOBO_TEST_MYSQL_URL", &e.to_string())
            }
            Err(_) => {
                return unreachable(
                    "MySQL/MariaDB",
                    &url,
                    "KOBO_TEST_MYSQL_URL",
                    "no answer within 5 s",
                )
            }
        };
        let name = unique_name();
        conn.query_drop(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        drop(conn.disconnect().await);
        Some(TestDatabase {
            name,
            admin,
            users: Vec::new(),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An administrator URL of this database.
    pub fn url(&self) -> String {
        let user = self.admin.user().unwrap_or("root").to_string();
        let password = self.admin.pass().map(str::to_string);
        self.user_url(&user, password.as_deref())
    }

    /// The URL of this database for `user` (with `password` in it, if any).
    pub fn user_url(&self, user: &str, password: Option<&str>) -> String {
        let password = password.map(|p| format!(":{p}")).unwrap_or_default();
        let host = format!("{}:{}", self.admin.ip_or_hostname(), self.admin.tcp_port());
        let socket = self
            .admin
            .socket()
            .map(|s| format!("?socket={s}"))
            .unwrap_or_default();
        format!("mysql://{user}{password}@{host}/{}{socket}", self.name)
    }

    /// Source options for this database as the administrator, with short timeouts.
    pub fn options(&self) -> DatabaseOptions {
        DatabaseOptions {
            connect_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_secs(5),
            ..DatabaseOptions::new(self.url())
        }
    }

    /// A new administrator connection to this database. Its `sql_mode` has `NO_BACKSLASH_ESCAPES`, so that
    /// hand-written SQL means the same as on PostgreSQL and SQLite (`'a\b'` is three characters).
    pub async fn connect(&self) -> Conn {
        let opts = OptsBuilder::from_opts(self.admin.clone()).db_name(Some(self.name.clone()));
        let mut conn = Conn::new(opts)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name));
        conn.query_drop("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES'), time_zone = '+00:00'")
            .await
            .unwrap_or_else(|e| panic!("SET sql_mode: {e}"));
        conn
    }

    /// Runs `sql` (any number of statements) as the administrator.
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.connect().await;
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("running SQL on {}: {e}\n{}", self.name, head(sql)));
        drop(conn.disconnect().await);
    }

    /// Runs each statement in turn on one administrator connection.
    pub async fn execute_each(&self, statements: &[impl AsRef<str>]) {
        let mut conn = self.connect().await;
        for statement in statements {
            let statement = statement.as_ref();
            conn.query_drop(statement).await.unwrap_or_else(|e| {
                panic!("running SQL on {}: {e}\n{}", self.name, head(statement))
            });
        }
        drop(conn.disconnect().await);
    }

    /// Drops a column (to make an old schema), after the foreign keys that use it: MySQL will not drop a
    /// column a foreign key needs. Its indexes go with it.
    pub async fn drop_column(&self, table: &str, column: &str) {
        let mut conn = self.connect().await;
        let foreign_keys: Vec<String> = conn
            .exec(
                "SELECT CONSTRAINT_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ? \
                 AND REFERENCED_TABLE_NAME IS NOT NULL",
                (table, column),
            )
            .await
            .unwrap_or_else(|e| panic!("foreign keys of {table}.{column}: {e}"));
        for key in foreign_keys {
            conn.query_drop(format!("ALTER TABLE {table} DROP FOREIGN KEY `{key}`"))
                .await
                .unwrap_or_else(|e| panic!("dropping foreign key {key}: {e}"));
        }
        conn.query_drop(format!("ALTER TABLE {table} DROP COLUMN {column}"))
            .await
            .unwrap_or_else(|e| panic!("dropping {table}.{column}: {e}"));
        drop(conn.disconnect().await);
    }

    /// Loads kobo 0.42's schema (`testkit/data/schema-mysql.sql`).
    pub async fn load_schema(&self) {
        self.execute(&test_data("schema-mysql.sql")).await;
    }

    /// Loads the schema and the shared fixture hub (`testkit/data/fixture.sql`).
    pub async fn load_fixture(&self) {
        self.load_schema().await;
        self.execute(&test_data("fixture.sql")).await;
    }

    /// Creates a user with the documented least privileges on this database (`SELECT` on the six tables
    /// the source reads, nothing else) and returns its name; it is dropped with the database.
    pub async fn create_reader(&mut self) -> String {
        let user = format!("{}_r", self.name);
        self.users.push(user.clone());
        let grants: String = [
            "hub_worker",
            "hub_worker_arches",
            "hub_arch",
            "hub_worker_channels",
            "hub_channel",
            "hub_task",
        ]
        .iter()
        .map(|table| format!("GRANT SELECT ON {}.{table} TO '{user}'@'%';", self.name))
        .collect();
        self.execute(&format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY '{READER_PASSWORD}'; {grants}"
        ))
        .await;
        user
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        let users = std::mem::take(&mut self.users);
        cleanup_on_own_thread(&format!("test database {name}"), move || async move {
            let mut conn = Conn::new(admin).await?;
            conn.query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                .await?;
            for user in users {
                conn.query_drop(format!("DROP USER IF EXISTS '{user}'@'%'"))
                    .await?;
            }
            conn.disconnect().await?;
            Ok::<_, BoxError>(())
        });
    }
}
