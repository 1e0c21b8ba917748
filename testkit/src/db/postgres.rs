//! [`TestDb`] on a real PostgreSQL server: the one named by `KOBO_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`, a superuser).

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, PgConnection};

use super::{
    BoxError, READER_PASSWORD, TestDb, TestSession, cleanup_on_own_thread, connect_admin, head,
    unique_name,
};

/// The default administrator URL of the test server.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

const ENV_VAR: &str = "KOBO_TEST_POSTGRES_URL";

/// A PostgreSQL database created for one test, dropped (with the roles it made) on drop.
pub struct PostgresDb {
    name: String,
    admin: PgConnectOptions,
    roles: Vec<String>,
}

impl PostgresDb {
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
}

impl TestDb for PostgresDb {
    type Session = PostgresSession;

    const SERVER: &'static str = "PostgreSQL";
    const SCHEMA: &'static str = "schema-postgres.sql";
    const PERMISSION_DENIED: &'static str = "permission denied";

    async fn create() -> Option<PostgresDb> {
        let url = std::env::var(ENV_VAR).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
        let admin: PgConnectOptions = url.parse().unwrap_or_else(|e| panic!("bad {ENV_VAR}: {e}"));
        let admin = admin.application_name("kobo-test-admin");
        let mut conn = connect_admin(Self::SERVER, &url, ENV_VAR, admin.connect()).await?;
        let name = unique_name();
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        drop(conn.close().await);
        Some(PostgresDb {
            name,
            admin,
            roles: Vec::new(),
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn url(&self) -> String {
        self.user_url(self.admin.get_username(), None)
    }

    fn user_url(&self, user: &str, password: Option<&str>) -> String {
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

    async fn drop_column(&self, table: &str, column: &str) {
        self.execute(&format!("ALTER TABLE {table} DROP COLUMN {column}"))
            .await;
    }

    /// CONNECT and USAGE ON SCHEMA public are PUBLIC's by default: granted anyway, so that the role does
    /// not depend on that.
    fn create_login_sql(&self, role: &str) -> String {
        format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{READER_PASSWORD}'; \
             GRANT CONNECT ON DATABASE {db} TO {role}; GRANT USAGE ON SCHEMA public TO {role}",
            db = self.name
        )
    }

    fn grant_select_sql(&self, role: &str, table: &str) -> String {
        format!("GRANT SELECT ON {table} TO {role}")
    }

    fn keep_role(&mut self, role: String) {
        self.roles.push(role);
    }

    async fn try_execute_as(&self, user: &str, password: &str, sql: &str) -> Result<(), String> {
        let mut conn = PgConnection::connect(&self.user_url(user, Some(password)))
            .await
            .map_err(|e| e.to_string())?;
        let result = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .map(drop)
            .map_err(|e| e.to_string());
        drop(conn.close().await);
        result
    }

    async fn session(&self) -> PostgresSession {
        PostgresSession {
            conn: self.connect().await,
            database: self.name.clone(),
        }
    }

    async fn kill_other_connections(&self) -> usize {
        let mut conn = self.connect().await;
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut conn)
        .await
        .expect("pg_terminate_backend");
        assert!(killed.iter().all(|k| *k), "terminated: {killed:?}");
        drop(conn.close().await);
        killed.len()
    }

    async fn running_statements(&self) -> Vec<String> {
        let mut conn = self.connect().await;
        let running: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND state NOT IN ('idle', 'idle in transaction') \
             AND backend_type = 'client backend'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("pg_stat_activity");
        drop(conn.close().await);
        running.into_iter().flatten().collect()
    }

    async fn connection_ids(&self) -> Vec<u64> {
        let mut conn = self.connect().await;
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY pid",
        )
        .fetch_all(&mut conn)
        .await
        .expect("pg_stat_activity");
        drop(conn.close().await);
        pids.into_iter()
            .filter_map(|pid| u64::try_from(pid).ok())
            .collect()
    }

    async fn tls_available(&self) -> bool {
        let mut conn = self.connect().await;
        let ssl: String = sqlx::query_scalar("SHOW ssl")
            .fetch_one(&mut conn)
            .await
            .expect("SHOW ssl");
        drop(conn.close().await);
        ssl == "on"
    }
}

/// A superuser session on a [`PostgresDb`].
pub struct PostgresSession {
    conn: PgConnection,
    database: String,
}

impl PostgresSession {
    /// The session's connection.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl TestSession for PostgresSession {
    async fn execute(&mut self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("running SQL on {}: {e}\n{}", self.database, head(sql)));
    }

    async fn lock_exclusive(&mut self, table: &str) {
        self.execute(&format!(
            "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
        ))
        .await;
    }

    async fn unlock(&mut self) {
        self.execute("ROLLBACK").await;
    }

    async fn close(self) {
        drop(self.conn.close().await);
    }
}

impl Drop for PostgresDb {
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
