//! The MySQL/MariaDB source: reads a kobo hub's MySQL or MariaDB database, read-only, with mysql_async.
//!
//! Needs MySQL 5.7.22+ or MariaDB 10.5+ (`JSON_ARRAYAGG`).
//!
//! # URL
//! `mysql://` or `mariadb://` (read as `mysql://`), as mysql_async reads it, plus `ssl-mode`:
//! - `mysql://kobo_exporter@db.example.com:3306/kobo` over TCP (the database is required);
//! - `mysql://kobo_exporter@localhost/kobo?socket=/run/mysqld/mysqld.sock` over a Unix socket;
//! - TLS: `ssl-mode=DISABLED|REQUIRED|VERIFY_CA|VERIFY_IDENTITY` as with the mysql client (REQUIRED
//!   encrypts without checking the certificate; VERIFY_CA checks it against the CA; VERIFY_IDENTITY also
//!   checks the host name). `PREFERRED` is refused: it would silently fall back to plain text. The
//!   `ca_file` option sets the CA certificate; given without `ssl-mode` it means VERIFY_CA. mysql_async's
//!   own `require_ssl=true`, `verify_ca=`, `verify_identity=` parameters work as well.
//! - The password may be in the URL (`mysql://user:secret@host/db`) or given separately (the exporter's
//!   `password_file`), which wins. It never appears in errors: they name the redacted URL.
//!
//! A TCP connection to the local host stays on TCP (mysql_async would otherwise move it onto the server's
//! socket, where the server may match a different account); add `prefer_socket=true` to allow that.
//!
//! # What it does per scrape
//! What every SQL source does (`kobo_backend_sql`'s engine): one statement reading every worker with its
//! arches and channels (its own consistent snapshot), and for a task refresh that and the two task
//! aggregates in one read-only transaction with a consistent snapshot (`START TRANSACTION READ ONLY, WITH
//! CONSISTENT SNAPSHOT`). A constant number of queries whatever the number of workers. Every session is
//! read-only (`SET SESSION TRANSACTION READ ONLY`), so the exporter cannot write even if its user could.
//! Names are compared byte for byte (grouped as binary strings, sorted in Rust), as on PostgreSQL and
//! SQLite, not by the table's case-insensitive collation. What is here is MySQL's own: connections,
//! `information_schema`, `JSON_ARRAYAGG`, its values, the limits and the cancel.
//!
//! Connections come from a small lazy pool (the `connect` module): none is opened before the first scrape,
//! and one that the server closed (restart, `KILL`) is noticed and replaced. Each statement carries its
//! server-side limit, the query timeout or the time left before the scrape's deadline when that is nearer:
//! `SET STATEMENT max_statement_time = s FOR` on MariaDB (in a MariaDB-only executable comment; it also
//! bounds lock waits) and a `MAX_EXECUTION_TIME` hint on MySQL. When the deadline passes with a statement
//! in flight, `KILL QUERY` stops it from a connection of its own, and the connection is closed.
//!
//! # Least privilege
//! The exporter needs only `SELECT` on the six tables it reads (`hub_task` only for the task metrics). As
//! an administrator (replace the user, host, password and database as needed):
//!
//! ```sql
//! CREATE USER 'kobo_exporter'@'%' IDENTIFIED BY 'change-me';
//! GRANT SELECT ON kobo.hub_worker TO 'kobo_exporter'@'%';
//! GRANT SELECT ON kobo.hub_worker_arches TO 'kobo_exporter'@'%';
//! GRANT SELECT ON kobo.hub_arch TO 'kobo_exporter'@'%';
//! GRANT SELECT ON kobo.hub_worker_channels TO 'kobo_exporter'@'%';
//! GRANT SELECT ON kobo.hub_channel TO 'kobo_exporter'@'%';
//! GRANT SELECT ON kobo.hub_task TO 'kobo_exporter'@'%';
//! ```

mod connect;
mod driver;

pub use connect::PROGRAM_NAME;
pub use driver::{BACKEND, Mysql, MysqlSource, open, scrape_sql};

#[cfg(test)]
mod tests;
