//! [`TestDb`] on a real MySQL/MariaDB server: the one named by `KOBO_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`, an administrator).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::{
    BoxError, READER_PASSWORD, TestDb, TestSession, cleanup_on_own_thread, connect_admin, head,
    unique_name,
};

/// The default administrator URL of the test server.
pub const DEFAULT_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306/test";

const ENV_VAR: &str = "KOBO_TEST_MYSQL_URL";

/// A MySQL/MariaDB database created for one test, dropped (with the users it made) on drop.
pub struct MysqlDb {
    name: String,
    admin: Opts,
    users: Vec<String>,
}

impl MysqlDb {
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
}

impl TestDb for MysqlDb {
    type Session = MysqlSession;

    const SERVER: &'static str = "MySQL/MariaDB";
    const SCHEMA: &'static str = "schema-mysql.sql";
    const PERMISSION_DENIED: &'static str = "command denied";

    async fn create() -> Option<MysqlDb> {
        let url = std::env::var(ENV_VAR).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
        let admin = Opts::from_url(&url).unwrap_or_else(|e| panic!("bad {ENV_VAR}: {e}"));
        let admin: Opts = OptsBuilder::from_opts(admin).prefer_socket(false).into();
        let mut conn = connect_admin(Self::SERVER, &url, ENV_VAR, Conn::new(admin.clone())).await?;
        let name = unique_name();
        conn.query_drop(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        drop(conn.disconnect().await);
        Some(MysqlDb {
            name,
            admin,
            users: Vec::new(),
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn url(&self) -> String {
        let user = self.admin.user().unwrap_or("root").to_string();
        let password = self.admin.pass().map(str::to_string);
        self.user_url(&user, password.as_deref())
    }

    fn user_url(&self, user: &str, password: Option<&str>) -> String {
        let password = password.map(|p| format!(":{p}")).unwrap_or_default();
        let host = format!("{}:{}", self.admin.ip_or_hostname(), self.admin.tcp_port());
        let socket = self
            .admin
            .socket()
            .map(|s| format!("?socket={s}"))
            .unwrap_or_default();
        format!("mysql://{user}{password}@{host}/{}{socket}", self.name)
    }

    /// Drops the foreign keys that use the column first: MySQL will not drop a column a foreign key
    /// needs. Its indexes go with it.
    async fn drop_column(&self, table: &str, column: &str) {
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

    fn create_login_sql(&self, role: &str) -> String {
        format!("CREATE USER '{role}'@'%' IDENTIFIED BY '{READER_PASSWORD}'")
    }

    fn grant_select_sql(&self, role: &str, table: &str) -> String {
        format!("GRANT SELECT ON {}.{table} TO '{role}'@'%'", self.name)
    }

    fn keep_role(&mut self, role: String) {
        self.users.push(role);
    }

    async fn try_execute_as(&self, user: &str, password: &str, sql: &str) -> Result<(), String> {
        let opts =
            Opts::from_url(&self.user_url(user, Some(password))).map_err(|e| e.to_string())?;
        let opts = OptsBuilder::from_opts(opts).prefer_socket(false);
        let mut conn = Conn::new(opts).await.map_err(|e| e.to_string())?;
        let result = conn.query_drop(sql).await.map_err(|e| e.to_string());
        drop(conn.disconnect().await);
        result
    }

    async fn session(&self) -> MysqlSession {
        MysqlSession {
            conn: self.connect().await,
            database: self.name.clone(),
        }
    }

    async fn kill_other_connections(&self) -> usize {
        let mut conn = self.connect().await;
        let ids: Vec<u64> = conn
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
                (&self.name,),
            )
            .await
            .expect("processlist");
        for id in &ids {
            conn.query_drop(format!("KILL {id}")).await.expect("kill");
        }
        drop(conn.disconnect().await);
        ids.len()
    }

    async fn running_statements(&self) -> Vec<String> {
        let mut conn = self.connect().await;
        let running: Vec<Option<String>> = conn
            .exec(
                "SELECT INFO FROM information_schema.PROCESSLIST \
                 WHERE DB = ? AND ID <> CONNECTION_ID() AND COMMAND = 'Query'",
                (&self.name,),
            )
            .await
            .expect("processlist");
        drop(conn.disconnect().await);
        running.into_iter().flatten().collect()
    }

    async fn connection_ids(&self) -> Vec<u64> {
        let mut conn = self.connect().await;
        let ids: Vec<u64> = conn
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE DB = ? AND ID <> CONNECTION_ID() ORDER BY ID",
                (&self.name,),
            )
            .await
            .expect("processlist");
        drop(conn.disconnect().await);
        ids
    }

    async fn tls_available(&self) -> bool {
        let mut conn = self.connect().await;
        let have_ssl: Option<(String, String)> = conn
            .query_first("SHOW VARIABLES LIKE 'have_ssl'")
            .await
            .expect("have_ssl");
        drop(conn.disconnect().await);
        have_ssl.is_some_and(|(_, v)| v == "YES")
    }
}

/// An administrator session on a [`MysqlDb`].
pub struct MysqlSession {
    conn: Conn,
    database: String,
}

impl MysqlSession {
    /// The session's connection.
    pub fn connection(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl TestSession for MysqlSession {
    async fn execute(&mut self, sql: &str) {
        self.conn
            .query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("running SQL on {}: {e}\n{}", self.database, head(sql)));
    }

    async fn lock_exclusive(&mut self, table: &str) {
        self.execute(&format!("LOCK TABLES {table} WRITE")).await;
    }

    async fn unlock(&mut self) {
        self.execute("UNLOCK TABLES").await;
    }

    async fn close(self) {
        drop(self.conn.disconnect().await);
    }
}

impl Drop for MysqlDb {
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
