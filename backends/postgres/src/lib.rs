//! The PostgreSQL source: reads a kobo hub's PostgreSQL database, read-only, with sqlx.
//!
//! # URL
//! `postgres://` or `postgresql://`, as sqlx (and mostly libpq) reads it:
//! - `postgres://kobo_exporter@db.example.com:5432/kobo` over TCP;
//! - `postgres://kobo_exporter@localhost/kobo?host=/var/run/postgresql` over the Unix socket in that
//!   directory (`host=` starting with `/`; a percent-encoded path as the host,
//!   `postgres://kobo_exporter@%2Fvar%2Frun%2Fpostgresql/kobo`, works too);
//! - TLS: `sslmode=disable|allow|prefer|require|verify-ca|verify-full` (default `prefer`),
//!   `sslrootcert=/path/ca.pem`; the `ca_file` option sets the CA certificate as `sslrootcert` does.
//!   Use `verify-full` (or `verify-ca`) to have the server's certificate checked.
//! - The password may be in the URL (`postgres://user:secret@host/db`) or given separately (the exporter's
//!   `password_file`), which wins. It never appears in errors: they name the redacted URL.
//!
//! libpq's environment variables (`PGHOST`, `PGUSER`, `PGPASSWORD`, ...) and `~/.pgpass` fill what the URL
//! leaves out, as sqlx does.
//!
//! # What it does per scrape
//! What every SQL source does (`kobo_backend_sql`'s engine): one statement reading every worker with its
//! arches and channels (its own consistent snapshot), and for a task refresh that and the two task
//! aggregates in one read-only transaction (`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`). A constant
//! number of queries whatever the number of workers. Every session is read-only
//! (`default_transaction_read_only`), so the exporter cannot write even if its role could. What is here is
//! PostgreSQL's own: connections, the catalog, `array_agg`, its types, the cancel.
//!
//! Connections come from a small lazy pool (the `connect` module): none is opened before the first scrape,
//! and one that a server restart broke fails the ping before use and is replaced, so a restarted server
//! needs no exporter restart. Getting a connection is bounded by one `connect_timeout` and the scrape's
//! deadline, and the first failure to open one (refused, authentication, TLS, session set-up) is reported
//! at once, as what it is. Each statement's `statement_timeout` is the query timeout, or the time left
//! before the scrape's deadline when that is nearer (set only when it changes by more than
//! [`TIMEOUT_TOLERANCE`], so that a steady run of scrapes sends no `SET`). When the deadline passes with a
//! statement in flight, `pg_cancel_backend` stops it from a session of its own (sqlx keeps the backend
//! key data of a cancel request private), and the connection is closed. A connection goes back to the
//! pool only after a complete collection, so the pool can never be wedged by abandoned collections.
//!
//! # Least privilege
//! The exporter needs only `SELECT` on the six tables it reads. As a superuser, in the hub's database
//! (replace the role name, password, database and schema as needed):
//!
//! ```sql
//! CREATE ROLE kobo_exporter LOGIN PASSWORD 'change-me';
//! GRANT CONNECT ON DATABASE kobo TO kobo_exporter;
//! GRANT USAGE ON SCHEMA public TO kobo_exporter;
//! GRANT SELECT ON hub_worker, hub_worker_arches, hub_arch, hub_worker_channels, hub_channel, hub_task
//!     TO kobo_exporter;
//! ```
//!
//! (`CONNECT` and `USAGE ON SCHEMA public` are granted to `PUBLIC` by default; the lines make the role
//! independent of that. `hub_task` is read only for the task metrics.)

mod connect;
mod driver;

pub use connect::APPLICATION_NAME;
pub use driver::{BACKEND, Postgres, PostgresSource, TIMEOUT_TOLERANCE, open, scrape_sql};

#[cfg(test)]
mod tests;
