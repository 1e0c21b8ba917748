//! What every SQL source (SQLite, PostgreSQL, MySQL/MariaDB) shares: the tables and columns a hub must
//! have, the `hub_worker` part of the worker query, and the mapping of one worker row, already decoded into
//! primitive values by the source's driver, to a [`WorkerRecord`].
//!
//! Keeping this in one place makes the three sources give the same records for the same hub: sorting and
//! de-duplicating names here (never by the database's collation), the same NULL handling, the same error
//! messages.

use crate::records::WorkerRecord;

/// Tables the worker query reads. A database without one of them is not a kobo hub.
pub const REQUIRED_TABLES: [&str; 5] = [
    "hub_worker",
    "hub_worker_arches",
    "hub_arch",
    "hub_worker_channels",
    "hub_channel",
];

/// Names the worker in an error about one of its columns: `hub_worker.enabled is TEXT, not an integer`
/// becomes `hub_worker.enabled of worker "w1" is TEXT, not an integer` (the column is the message's first
/// word). Sources decode a worker's columns under their bare names and call this only when decoding failed:
/// formatting the worker's name for every column of every row would cost more than the decoding.
pub fn of_worker(message: String, worker: &str) -> String {
    let end = message.find([' ', ':']).unwrap_or(message.len());
    format!(
        "{} of worker {worker:?}{}",
        &message[..end],
        &message[end..]
    )
}

/// `hub_worker` columns every kobo hub has. `min_priority` (a 2016 migration) is optional.
pub const REQUIRED_WORKER_COLUMNS: [&str; 8] = [
    "id",
    "name",
    "enabled",
    "ready",
    "current_load",
    "max_load",
    "task_count",
    "max_tasks",
];

/// What a source found out about a hub's schema: enough to build its worker query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubSchema {
    /// Whether `hub_worker.min_priority` exists (hubs older than 2016 lack it).
    pub min_priority: bool,
}

impl HubSchema {
    /// Checks the schema a source read from its catalog: `tables` are the names of the
    /// [`REQUIRED_TABLES`] that exist (others may be included), `worker_columns` the columns of
    /// `hub_worker`. The error names the first missing table or column, e.g. `table hub_arch is missing`.
    pub fn check<T: AsRef<str>, C: AsRef<str>>(
        tables: &[T],
        worker_columns: &[C],
    ) -> Result<Self, String> {
        let has = |names: &[T], wanted: &str| {
            names
                .iter()
                .any(|n| n.as_ref().eq_ignore_ascii_case(wanted))
        };
        if let Some(missing) = REQUIRED_TABLES.iter().find(|t| !has(tables, t)) {
            return Err(format!("table {missing} is missing"));
        }
        let has_column = |wanted: &str| {
            worker_columns
                .iter()
                .any(|c| c.as_ref().eq_ignore_ascii_case(wanted))
        };
        if let Some(missing) = REQUIRED_WORKER_COLUMNS.iter().find(|c| !has_column(c)) {
            return Err(format!("column hub_worker.{missing} is missing"));
        }
        Ok(HubSchema {
            min_priority: has_column("min_priority"),
        })
    }
}

/// One row of the worker query, decoded by a source into primitive values. `None` is SQL `NULL`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerRow {
    pub name: String,
    pub enabled: Option<bool>,
    pub ready: Option<bool>,
    pub current_load: Option<i64>,
    pub max_load: Option<i64>,
    pub task_count: Option<i64>,
    pub max_tasks: Option<i64>,
    pub min_priority: Option<i64>,
    /// Arch names in any order, possibly repeated; `None` entries (a `NULL` name) are dropped.
    pub arches: Vec<Option<String>>,
    /// Channel names in any order, possibly repeated (channel names are not unique in kobo).
    pub channels: Vec<Option<String>>,
}

impl WorkerRow {
    /// The record for this row: arches and channels sorted (byte order, not a collation) and
    /// de-duplicated; every column but `min_priority` must be non-NULL. The error names the column and the
    /// worker.
    pub fn into_record(self) -> Result<WorkerRecord, String> {
        let name = self.name;
        let null = |column: &str| format!("hub_worker.{column} of worker {name:?} is NULL");
        let mut worker = WorkerRecord::new(name.clone());
        worker.enabled = self.enabled.ok_or_else(|| null("enabled"))?;
        worker.ready = self.ready.ok_or_else(|| null("ready"))?;
        worker.current_load = self.current_load.ok_or_else(|| null("current_load"))?;
        worker.max_load = self.max_load.ok_or_else(|| null("max_load"))?;
        worker.task_count = self.task_count.ok_or_else(|| null("task_count"))?;
        worker.max_tasks = Some(self.max_tasks.ok_or_else(|| null("max_tasks"))?);
        worker.min_priority = self.min_priority;
        worker.arches = sorted_names(self.arches);
        worker.channels = sorted_names(self.channels);
        Ok(worker)
    }
}

/// Names sorted in byte order and de-duplicated, `None` entries dropped.
pub fn sorted_names(names: impl IntoIterator<Item = Option<String>>) -> Vec<String> {
    let mut names: Vec<String> = names.into_iter().flatten().collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Parses a JSON array of names (strings or `null`), as `json_group_array` / `JSON_ARRAYAGG` give them; SQL
/// `NULL` (an aggregate over no rows) is an empty list. Not sorted: see [`WorkerRow::into_record`].
pub fn names_from_json(json: Option<&str>) -> Result<Vec<Option<String>>, String> {
    match json {
        None => Ok(Vec::new()),
        Some(json) => match plain_names(json) {
            Some(names) => Ok(names),
            None => {
                serde_json::from_str(json).map_err(|e| format!("not a JSON array of names: {e}"))
            }
        },
    }
}

/// The common case of [`names_from_json`] without serde_json (which took a quarter of a SQLite scrape):
/// an array of `null`s and strings without escapes, as databases write ordinary names. `None` for anything
/// else (escapes, other values, any irregularity), which serde_json then parses, or refuses.
fn plain_names(json: &str) -> Option<Vec<Option<String>>> {
    let inner = json.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner
        .split(',')
        .map(|item| match item.trim() {
            "null" => Some(None),
            item => {
                let name = item.strip_prefix('"')?.strip_suffix('"')?;
                // A quote inside means the comma was inside a string; a backslash is an escape; control
                // characters are not valid JSON: all left to serde_json.
                let plain = !name.contains(['"', '\\']) && !name.chars().any(char::is_control);
                plain.then(|| Some(name.to_string()))
            }
        })
        .collect()
}

/// An integer column as `i64`, from an unsigned value (MySQL `int unsigned`, `bigint unsigned`): an error
/// naming the column if it does not fit.
pub fn int_from_unsigned(value: u64, column: &str) -> Result<i64, String> {
    i64::try_from(value)
        .map_err(|_| format!("{column} = {value} does not fit in a signed 64-bit integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_the_same_with_and_without_the_fast_path() {
        for json in [
            r#"["x86_64", "aarch64", null]"#,
            r#"["a,b", "c"]"#,
            r#"["tab\there", "quote\"d", "\u00e9"]"#,
            "[]",
            " [ \"s390x\" ] ",
            r#"["é", "日本"]"#,
        ] {
            let slow: Vec<Option<String>> = serde_json::from_str(json).expect(json);
            assert_eq!(names_from_json(Some(json)), Ok(slow), "{json}");
        }
        for bad in ["[1]", r#"["a""#, "[,]", r#"["a",]"#, "x"] {
            assert!(names_from_json(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_error_about_a_column_names_the_worker() {
        assert_eq!(
            of_worker("hub_worker.enabled is TEXT, not an integer".into(), "w\"1"),
            "hub_worker.enabled of worker \"w\\\"1\" is TEXT, not an integer"
        );
        assert_eq!(
            of_worker("hub_worker.max_load: bad value".into(), "w1"),
            "hub_worker.max_load of worker \"w1\": bad value"
        );
        assert_eq!(of_worker("arches".into(), "w1"), "arches of worker \"w1\"");
    }

    #[test]
    fn schema_check_names_the_first_missing_table_or_column() {
        let all_tables = REQUIRED_TABLES.to_vec();
        let mut columns = REQUIRED_WORKER_COLUMNS.to_vec();
        assert_eq!(
            HubSchema::check(&all_tables, &columns),
            Ok(HubSchema {
                min_priority: false
            })
        );
        columns.push("min_priority");
        assert_eq!(
            HubSchema::check(&all_tables, &columns),
            Ok(HubSchema { min_priority: true })
        );
        let tables = ["hub_worker", "hub_arch"];
        assert_eq!(
            HubSchema::check(&tables, &columns),
            Err("table hub_worker_arches is missing".to_string())
        );
        assert_eq!(
            HubSchema::check(&all_tables, &["id", "name"]),
            Err("column hub_worker.enabled is missing".to_string())
        );
    }

    #[test]
    fn rows_become_records_with_sorted_unique_names() {
        let row = WorkerRow {
            name: "w".into(),
            enabled: Some(true),
            ready: Some(false),
            current_load: Some(2),
            max_load: Some(3),
            task_count: Some(1),
            max_tasks: Some(0),
            min_priority: None,
            arches: vec![Some("x86_64".into()), None, Some("aarch64".into())],
            channels: vec![
                Some("b".into()),
                Some("a".into()),
                Some("b".into()),
                Some("B".into()),
            ],
        };
        let record = row.clone().into_record().expect("complete row");
        assert_eq!(record.arches, ["aarch64", "x86_64"]);
        assert_eq!(record.channels, ["B", "a", "b"]);
        assert_eq!(
            (record.current_load, record.max_tasks, record.min_priority),
            (2, Some(0), None)
        );
        let error = WorkerRow {
            max_load: None,
            ..row
        }
        .into_record()
        .expect_err("NULL max_load");
        assert_eq!(error, "hub_worker.max_load of worker \"w\" is NULL");
    }

    #[test]
    fn json_names_and_unsigned_integers() {
        assert_eq!(names_from_json(None), Ok(vec![]));
        assert_eq!(
            names_from_json(Some(r#"["a\"b", null, "\\"]"#)),
            Ok(vec![Some("a\"b".into()), None, Some("\\".into())])
        );
        assert!(names_from_json(Some("[1]")).is_err());
        assert_eq!(int_from_unsigned(7, "hub_worker.max_load"), Ok(7));
        assert!(
            int_from_unsigned(u64::MAX, "hub_worker.max_load")
                .unwrap_err()
                .contains("max_load")
        );
    }
}
