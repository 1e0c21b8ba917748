//! Throw-away hub databases on a real PostgreSQL server, for this crate's tests and the exporter's
//! conformance suite (feature `testing`; never part of a normal build).
//!
//! The server is the one named by `KOBO_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`, a superuser). Each [`TestDatabase`] is a new database
//! `kobo_test_<pid>_<n>_<time>` that is dropped (with any role it created) when the value is dropped, also
//! when a test fails. An unreachable server skips the test with a loud `SKIPPED:` line, or fails it when
//! `CI=true`.

use std::time::Duration;

pub use kobo_backend_api::testing::test_data;
use kobo_backend_api::testing::{cleanup_on_own_thread, head, unique_name, unreachable, BoxError};
use kobo_backend_api::DatabaseOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, PgConnection};

/// The default administrator URL of the test server.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The password of roles made by [`TestDatabase::create_reader`].
pub const READER_PASSWORD: &str = "kobo-reader-secret";

/// The administrator URL: `KOBO_TEST_POSTGRES_URL` or [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> String {
    std::env::var("KOBO_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// A database created for one test, dropped on drop.
pub struct TestDatabase {
    name: String,
    admin: PgConnectOptions,
    roles: Vec<String>,
}

impl TestDatabase {
    /// Creates an empty database; `None` if the server cannot be reached and `CI` is not `true` (a
    /// `SKIPPED:` line then says so on stderr).
    pub async fn create() -> Option<TestDatabase> {
        let url = admin_url();
        let admin: PgConnectOptions = url
            .parse()
            .unwrap_or_else(|e| panic!("bad KOBO_TEST_POSTGRES_URL: {e}"));
        let admin = admin.application_name("kobo-test-admin");
        let mut conn = match tokio::time::timeout(Duration::from_secs(5), admin.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return unreachable("PostgreSQL", &url, "KOBO_TEST_POSTGRES_URL", &e.to_string())
            }
            Err(_) => {
                return unreachable(
                    "PostgreSQL",
                    &url,
                    "KOBO_TEST_POSTGRES_URL",
                    "no answer within 5 s",
                )
            }
        };
        let name = unique_name();
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        drop(conn.close().await);
        Some(TestDatabase {
            name,
            admin,
            roles: Vec::new(),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A superuser URL of this database.
    pub fn url(&self) -> String {
        self.user_url(self.admin.get_username(), None)
    }

    /// The URL of this database for `user` (with `password` in it, if any).
    pub fn user_url(&self, user: &str, password: Option<&str>) -> String {
        let password = password.map(|p| format!(":{p}")).unwrap_or_default();
        let (host, query) = match self.admin.get_socket() {
            Some(dir) => ("localhost".to_string(), format!("?host={}", dir.display())),
            None => (self.admin.get_host().to_string(), String::new()),
        };
        format!(
            "postgres://{user}{password}@{host}:{}/{}{query}",
            self.admin.get_port(),
            self.name
        )
    }

    /// Source options for this database as the superuser, with short timeouts.
    pub fn options(&self) -> DatabaseOptions {
        DatabaseOptions {
            connect_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_secs(5),
            ..DatabaseOptions::new(self.url())
        }
    }

    /// A new superuser connection to this database (the session's time zone is UTC).
    pub async fn connect(&self) -> PgConnection {
        let mut conn = self
            .admin
            .clone()
            .database(&self.name)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name));
        conn.execute("SET TIME ZONE 'UTC'")
            .await
            .unwrap_or_else(|e| panic!("SET TIME ZONE: {e}"));
        conn
    }

    /// A superuser session kept open between statements (to hold a lock, say), for tests that do not
    /// use sqlx themselves.
    pub async fn session(&self) -> Session {
        Session {
            conn: self.connect().await,
            database: self.name.clone(),
        }
    }

    /// Runs `sql` (any number of statements) as the superuser.
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.connect().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("running SQL on {}: {e}\n{}", self.name, head(sql)));
        drop(conn.close().await);
    }

    /// Runs each statement in turn on one superuser connection.
    pub async fn execute_each(&self, statements: &[impl AsRef<str>]) {
        let mut conn = self.connect().await;
        for statement in statements {
            let statement = statement.as_ref();
            conn.execute(AssertSqlSafe(statement.to_string()))
                .await
                .unwrap_or_else(|e| {
                    panic!("running SQL on {}: {e}\n{}", self.name, head(statement))
                });
        }
        drop(conn.close().await);
    }

    /// Drops a column, with the constraints and indexes that use it (to make an old schema).
    pub async fn drop_column(&self, table: &str, column: &str) {
        self.execute(&format!("ALTER TABLE {table} DROP COLUMN {column}"))
            .await;
    }

    /// Loads kobo 0.42's schema (`testkit/data/schema-postgres.sql`).
    pub async fn load_schema(&self) {
        self.execute(&test_data("schema-postgres.sql")).await;
    }

    /// Loads the schema and the shared fixture hub (`testkit/data/fixture.sql`).
    pub async fn load_fixture(&self) {
        self.load_schema().await;
        self.execute(&test_data("fixture.sql")).await;
    }

    /// Creates a login role with the documented least privileges on this database (`SELECT` on the six
    /// tables the source reads, nothing else) and returns its name; it is dropped with the database.
    pub async fn create_reader(&mut self) -> String {
        let role = format!("{}_reader", self.name);
        self.roles.push(role.clone());
        self.execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{READER_PASSWORD}';
             GRANT CONNECT ON DATABASE {db} TO {role};
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT ON hub_worker, hub_worker_arches, hub_arch, hub_worker_channels, hub_channel, hub_task \
                 TO {role};",
            db = self.name
        ))
        .await;
        role
    }
}

/// A superuser session on a [`TestDatabase`] ([`TestDatabase::session`]).
pub struct Session {
    conn: PgConnection,
    database: String,
}

impl Session {
    /// Runs `sql` (any number of statements) in this session.
    pub async fn execute(&mut self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("running SQL on {}: {e}\n{}", self.database, head(sql)));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        let roles = std::mem::take(&mut self.roles);
        cleanup_on_own_thread(&format!("test database {name}"), move || async move {
            let mut conn = admin.connect().await?;
            conn.execute(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await?;
            for role in roles {
                conn.execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
                    .await?;
            }
            conn.close().await?;
            Ok::<_, BoxError>(())
        });
    }
}
