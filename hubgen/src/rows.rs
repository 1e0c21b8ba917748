//! The synthetic hub's rows as pure functions of the row number and the seed, written once as SQL (per
//! dialect only where the databases disagree) and once in Rust (for the tests' expected counts).
//!
//! Every value depends only on `n` (the row number, 1-based) and the seed, through `hash(n, lane)`
//! (a quadratic mix modulo the prime 1000003, one lane per attribute), so every database gets identical rows.

/// The SQL dialect a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubSpec {
    pub workers: u32,
    pub tasks: u32,
    pub seed: u32,
}

const MODULUS: u64 = 1_000_003;
/// Per-lane multipliers: each attribute draws from its own lane so that they are not correlated.
const LANES: [(u64, u64); 8] = [
    (7919, 104_723),
    (6007, 99_991),
    (4999, 77_773),
    (3571, 65_537),
    (2741, 52_711),
    (1999, 40_009),
    (1511, 31_337),
    (1009, 27_487),
];

impl HubSpec {
    fn salt(&self, lane: usize) -> u64 {
        (u64::from(self.seed) * 104_729 + lane as u64 * 1_299_709) % MODULUS
    }

    /// `hash(n, lane)`: a quadratic residue mix modulo a prime, in 0..1000003.
    pub fn hash(&self, n: u64, lane: usize) -> u64 {
        let (a, b) = LANES[lane];
        let x = n % MODULUS;
        ((x * x % MODULUS) * a + x * b + self.salt(lane)) % MODULUS
    }

    /// `hash` in SQL, of the integer expression `n`.
    fn hash_sql(&self, n: &str, lane: usize) -> String {
        let (a, b) = LANES[lane];
        format!(
            "(((({n}) % {MODULUS}) * (({n}) % {MODULUS}) % {MODULUS} * {a} + (({n}) % {MODULUS}) * {b} + {}) % {MODULUS})",
            self.salt(lane)
        )
    }

    /// The state of task `n` (kobo's numbers: 0 FREE, 1 ASSIGNED, 2 OPEN, 3-7 finished, 8 CREATED).
    /// One task in 100 is active; one in 1000 is an OPEN waiting parent of the two active tasks 100 and
    /// 200 after it.
    pub fn task_state(&self, n: u64) -> u8 {
        if n % 1000 == 500 {
            2
        } else if n.is_multiple_of(100) {
            [0, 1, 2, 8][(self.hash(n, 0) % 4) as usize]
        } else {
            3 + (self.hash(n, 0) % 5) as u8
        }
    }

    /// Whether task `n` is archived: 30% of the finished ones.
    pub fn task_archived(&self, n: u64) -> bool {
        !n.is_multiple_of(100) && self.hash(n, 1) % 10 < 3
    }

    fn state_sql(&self) -> String {
        "CASE WHEN n % 1000 = 500 THEN 2 WHEN n % 100 = 0 THEN \
         (CASE h0 % 4 WHEN 0 THEN 0 WHEN 1 THEN 1 WHEN 2 THEN 2 ELSE 8 END) ELSE 3 + h0 % 5 END"
            .to_string()
    }

    /// `n` from 1 to `count` with its lanes `h0`..`h7`, as a derived table `series`.
    fn series(&self, dialect: Dialect, count: u32) -> String {
        let lanes: Vec<String> = (0..LANES.len())
            .map(|k| format!("{} AS h{k}", self.hash_sql("n", k)))
            .collect();
        format!(
            "(SELECT n, {} FROM {} s0) series",
            lanes.join(", "),
            Self::numbers(dialect, count)
        )
    }

    fn numbers(dialect: Dialect, count: u32) -> String {
        match dialect {
            Dialect::Sqlite => format!(
                "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {count}) SELECT n FROM s)"
            ),
            Dialect::Postgres => {
                format!("(SELECT n::bigint AS n FROM generate_series(1, {count}) n)")
            }
            Dialect::Mysql => format!("(SELECT seq AS n FROM seq_1_to_{count})"),
        }
    }

    fn timestamp(dialect: Dialect, seconds: &str) -> String {
        match dialect {
            Dialect::Sqlite => format!("datetime({seconds}, 'unixepoch')"),
            Dialect::Postgres => format!("to_timestamp({seconds})"),
            Dialect::Mysql => format!("FROM_UNIXTIME({seconds})"),
        }
    }

    /// The statements that fill an empty hub whose schema is loaded, in order. The MariaDB session must
    /// use `time_zone = '+00:00'`, the PostgreSQL one `TIME ZONE 'UTC'`.
    pub fn statements(&self, dialect: Dialect) -> Vec<String> {
        let mut out: Vec<String> = FIXED_ROWS.iter().map(|s| s.to_string()).collect();
        let (key, name) = match dialect {
            Dialect::Sqlite => (
                "'key-' || n".to_string(),
                "printf('worker-%05d.example.com', n)".to_string(),
            ),
            Dialect::Postgres => (
                "'key-' || n".to_string(),
                "'worker-' || lpad(n::text, 5, '0') || '.example.com'".to_string(),
            ),
            Dialect::Mysql => (
                "CONCAT('key-', n)".to_string(),
                "CONCAT('worker-', LPAD(n, 5, '0'), '.example.com')".to_string(),
            ),
        };
        if self.workers > 0 {
            out.push(format!(
                "INSERT INTO hub_worker (id, worker_key, name, enabled, max_load, max_tasks, ready, task_count, \
                 current_load, min_priority) SELECT n, {key}, {name}, h0 % 10 <> 0, 1 + h1 % 4, h2 % 3, \
                 h3 % 5 <> 0, 0, 0, CASE WHEN h4 % 7 = 0 THEN 10 ELSE 0 END FROM {}",
                self.series(dialect, self.workers)
            ));
            let wm = self.hash_sql("w.id", 7);
            out.push(format!(
                "INSERT INTO hub_worker_arches (worker_id, arch_id) SELECT w.id, a.id FROM hub_worker w, hub_arch a \
                 WHERE ({wm} + a.id) % 3 <> 0"
            ));
            out.push(format!(
                "INSERT INTO hub_worker_channels (worker_id, channel_id) SELECT w.id, c.id FROM hub_worker w, \
                 hub_channel c WHERE c.id = 1 OR ({wm} + c.id) % 4 = 0"
            ));
        }
        if self.tasks > 0 {
            let state = self.state_sql();
            let worker = if self.workers > 0 {
                format!(
                    "CASE WHEN ({state}) IN (0, 8) THEN NULL ELSE 1 + h2 % {} END",
                    self.workers
                )
            } else {
                "NULL".to_string()
            };
            let parent = "CASE WHEN n % 1000 IN (600, 700) THEN n - n % 1000 + 500 ELSE NULL END";
            out.push(format!(
                "INSERT INTO hub_task (id, archive, state, label, exclusive, method, args, result, waiting, awaited, \
                 dt_created, priority, weight, subtask_count, arch_id, channel_id, owner_id, parent_id, worker_id) \
                 SELECT n, n % 100 <> 0 AND h1 % 10 < 3, {state}, '', FALSE, 'Method', '{{}}', '', \
                 n % 1000 = 500, n % 1000 IN (600, 700), {created}, 10 + h3 % 3, 1 + h4 % 4, \
                 CASE WHEN n % 1000 = 500 THEN 2 ELSE 0 END, 1 + h5 % 6, 1 + h6 % 4, 1 + h7 % 6, {parent}, \
                 {worker} FROM {series}",
                created = Self::timestamp(dialect, "1700000000 + n * 30 + h3 % 30"),
                series = self.series(dialect, self.tasks),
            ));
        }
        out
    }

    /// The statement that sets the workers' task counts and loads from their ASSIGNED and OPEN tasks, to
    /// run after [`statements`](Self::statements) (and after `hub_task`'s index on `worker_id` exists).
    pub fn worker_load_statement(&self) -> &'static str {
        "UPDATE hub_worker SET task_count = (SELECT count(*) FROM hub_task t WHERE t.worker_id = \
         hub_worker.id AND t.state IN (1, 2)), current_load = (SELECT coalesce(sum(t.weight), 0) \
         FROM hub_task t WHERE t.worker_id = hub_worker.id AND t.state IN (1, 2))"
    }

    /// The last-seen mtime of worker `w` (Unix seconds), or `None` for a worker never seen (one in 8).
    pub fn last_seen(&self, w: u64) -> Option<i64> {
        let m = self.hash(w, 6);
        (!m.is_multiple_of(8)).then(|| 1_800_000_000 - (m % 86_400) as i64)
    }

    /// The name of worker `w`.
    pub fn worker_name(w: u64) -> String {
        format!("worker-{w:05}.example.com")
    }
}

/// Users, arches and channels: kobo's shared fixture rows.
const FIXED_ROWS: &[&str] = &[
    "INSERT INTO auth_user (id, password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) VALUES \
     (1, '!', NULL, TRUE, 'admin', '', '', 'admin@example.com', TRUE, TRUE, '2023-11-14 00:00:00'), \
     (2, '!', NULL, FALSE, 'alice', '', '', 'alice@example.com', FALSE, TRUE, '2023-11-14 00:00:00'), \
     (3, '!', NULL, FALSE, 'bob', '', '', 'bob@example.com', FALSE, TRUE, '2023-11-14 00:00:00'), \
     (4, '!', NULL, FALSE, 'carol', '', '', 'carol@example.com', FALSE, TRUE, '2023-11-14 00:00:00'), \
     (5, '!', NULL, FALSE, 'dave', '', '', 'dave@example.com', FALSE, TRUE, '2023-11-14 00:00:00'), \
     (6, '!', NULL, FALSE, 'eve', '', '', 'eve@example.com', FALSE, TRUE, '2023-11-14 00:00:00')",
    "INSERT INTO hub_arch (id, name, pretty_name) VALUES (1, 'noarch', 'noarch'), (2, 'x86_64', 'x86_64'), \
     (3, 'aarch64', 'ARM 64-bit'), (4, 'ppc64le', 'PowerPC 64-bit LE'), (5, 's390x', 'IBM System z'), (6, 'i386', 'i386')",
    "INSERT INTO hub_channel (id, name) VALUES (1, 'default'), (2, 'compose'), (3, 'scratch'), (4, 'signing')",
];
