//! Rows to records, written once for every driver: a driver hands over each value as a [`Value`] (its
//! own types mapped to a handful), and the records find their columns by name ([`Columns`]), once per
//! result, then read every row by position.

use kobo_backend_api::clock::Micros;
use kobo_backend_api::normalise::{WorkerRow, int_from_unsigned, names_from_json, of_worker};
use kobo_backend_api::{TaskCount, TaskRow, WorkerRecord, WorkerTaskCount, tasks};

/// One value of a row, as a driver gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    UInt(u64),
    Real(f64),
    Bool(bool),
    /// A value of a text type.
    Text(&'a str),
    /// A value of unknown type as the bytes of its text form (MySQL's text protocol gives every value so):
    /// read as a number where a number is wanted and as UTF-8 where text is.
    Unparsed(&'a [u8]),
    /// A list of names (PostgreSQL's `text[]`).
    Names(Vec<Option<String>>),
    /// A value of a type the engine does not read, by its type's name.
    Other(String),
}

impl Value<'_> {
    /// What kind of value this is, for messages.
    fn kind(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Int(_) | Value::UInt(_) => "an integer".into(),
            Value::Real(_) => "a real number".into(),
            Value::Bool(_) => "a boolean".into(),
            Value::Text(_) | Value::Unparsed(_) => "text".into(),
            Value::Names(_) => "a list of names".into(),
            Value::Other(type_name) => format!("of type {type_name}"),
        }
    }
}

/// A row of a result, value by value.
pub trait Row {
    /// The value at `index` (0-based, as the driver numbers the result's columns).
    fn value(&self, index: usize) -> Result<Value<'_>, String>;
}

/// A record read from rows of one statement (`Clone`: a driver may keep a result it can prove unchanged,
/// SQLite's `PRAGMA data_version`).
pub trait FromRow: Sized + Send + Clone + 'static {
    /// The names of the columns it reads, in the order [`decode`](FromRow::decode) asks for them.
    const COLUMNS: &'static [&'static str];
    /// Those a result may lack (read as NULL).
    const OPTIONAL: &'static [&'static str] = &[];

    /// The record of one row.
    fn decode(row: &dyn Row, columns: &Columns) -> Result<Self, String>;
}

/// Where each of a record's columns stands in a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    at: Vec<Option<usize>>,
}

impl Columns {
    /// Finds `R`'s columns among the result's column `names` (compared without regard to case).
    pub fn find<R: FromRow>(names: &[&str]) -> Result<Columns, String> {
        let at = R::COLUMNS
            .iter()
            .map(|wanted| {
                let found = names.iter().position(|n| n.eq_ignore_ascii_case(wanted));
                match found {
                    Some(index) => Ok(Some(index)),
                    None if R::OPTIONAL.contains(wanted) => Ok(None),
                    None => Err(format!("the result has no column {wanted}")),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Columns { at })
    }

    /// The value of the `nth` of the record's columns (NULL for an optional one the result lacks);
    /// errors name it as `what`.
    fn get<'r>(&self, row: &'r dyn Row, nth: usize, what: &str) -> Result<Value<'r>, String> {
        match self.at.get(nth).copied().flatten() {
            Some(index) => row.value(index).map_err(|e| format!("{what}: {e}")),
            None => Ok(Value::Null),
        }
    }
}

/// Decodes every row of a result with the column `names` (a driver's rows, each as its [`Row`]).
pub fn decode_all<R: FromRow, W: Row>(
    names: &[&str],
    rows: impl IntoIterator<Item = W>,
) -> Result<Vec<R>, String> {
    let columns = Columns::find::<R>(names)?;
    rows.into_iter()
        .map(|row| R::decode(&row, &columns))
        .collect()
}

/// An integer of any width or sign; a whole REAL (SQLite, written by hand) is one too.
fn int(value: Value<'_>, what: &str) -> Result<Option<i64>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Int(v) => Ok(Some(v)),
        Value::UInt(v) => int_from_unsigned(v, what).map(Some),
        Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        Value::Unparsed(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|_| format!("{what} is not a number"))?;
            match (text.parse::<i64>(), text.parse::<u64>()) {
                (Ok(v), _) => Ok(Some(v)),
                (Err(_), Ok(v)) => int_from_unsigned(v, what).map(Some),
                _ => Err(format!("{what} = {text:?} is not an integer")),
            }
        }
        other => Err(format!("{what} is {}, not an integer", other.kind())),
    }
}

/// A boolean, or an integer read as C does (SQLite and MySQL store Django's booleans as integers).
fn flag(value: Value<'_>, what: &str) -> Result<Option<bool>, String> {
    match value {
        Value::Bool(b) => Ok(Some(b)),
        other => Ok(int(other, what)?.map(|v| v != 0)),
    }
}

/// A UTF-8 string.
fn text(value: Value<'_>, what: &str) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Text(text) => Ok(Some(text.to_string())),
        Value::Unparsed(bytes) => String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| format!("{what} is not valid UTF-8")),
        other => Err(format!("{what} is {}, not text", other.kind())),
    }
}

/// Names as a list, or as a JSON array of them; NULL (an aggregate over no rows) is none.
fn names(value: Value<'_>, what: &str) -> Result<Vec<Option<String>>, String> {
    let json = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Names(names) => return Ok(names),
        Value::Text(text) => text,
        Value::Unparsed(bytes) => {
            std::str::from_utf8(bytes).map_err(|_| format!("{what} is not valid UTF-8"))?
        }
        other => return Err(format!("{what} is {}, not a list of names", other.kind())),
    };
    names_from_json(Some(json)).map_err(|e| format!("{what}: {e}"))
}

fn required<T>(value: Option<T>, what: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("{what} is NULL"))
}

impl FromRow for WorkerRecord {
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "enabled",
        "ready",
        "current_load",
        "max_load",
        "task_count",
        "max_tasks",
        "min_priority",
        "arches",
        "channels",
    ];
    /// The reference metric set reads no names.
    const OPTIONAL: &'static [&'static str] = &["arches", "channels"];

    fn decode(row: &dyn Row, at: &Columns) -> Result<Self, String> {
        let name = required(
            text(at.get(row, 0, "hub_worker.name")?, "hub_worker.name")?,
            "hub_worker.name",
        )?;
        // Decoded under the bare column names; the worker is named only when something is wrong
        // (formatting it for every column of every row would cost more than the decoding).
        let columns = || -> Result<WorkerRow, String> {
            let int_at = |nth: usize, what: &str| int(at.get(row, nth, what)?, what);
            let flag_at = |nth: usize, what: &str| flag(at.get(row, nth, what)?, what);
            let names_at = |nth: usize, what: &str| names(at.get(row, nth, what)?, what);
            Ok(WorkerRow {
                enabled: flag_at(1, "hub_worker.enabled")?,
                ready: flag_at(2, "hub_worker.ready")?,
                current_load: int_at(3, "hub_worker.current_load")?,
                max_load: int_at(4, "hub_worker.max_load")?,
                task_count: int_at(5, "hub_worker.task_count")?,
                max_tasks: int_at(6, "hub_worker.max_tasks")?,
                min_priority: int_at(7, "hub_worker.min_priority")?,
                arches: names_at(8, "hub_worker.arches")?,
                channels: names_at(9, "hub_worker.channels")?,
                name: name.clone(),
            })
        };
        columns()
            .map_err(|message| of_worker(message, &name))?
            .into_record()
    }
}

impl FromRow for TaskCount {
    const COLUMNS: &'static [&'static str] = &["state", "arch", "channel", "n", "oldest", "method"];

    fn decode(row: &dyn Row, at: &Columns) -> Result<Self, String> {
        let int_at = |nth: usize, what: &str| required(int(at.get(row, nth, what)?, what)?, what);
        let text_at = |nth: usize, what: &str| text(at.get(row, nth, what)?, what);
        let group = tasks::group_from_row(
            int_at(0, "hub_task.state")?,
            required(text_at(1, "hub_arch.name")?, "hub_arch.name")?,
            required(text_at(2, "hub_channel.name")?, "hub_channel.name")?,
            int_at(3, "count")?,
            text_at(4, "hub_task.dt_created")?.as_deref(),
        )?;
        Ok(TaskCount {
            group,
            method: required(text_at(5, "hub_task.method")?, "hub_task.method")?,
        })
    }
}

impl FromRow for TaskRow {
    const COLUMNS: &'static [&'static str] = &[
        "id", "state", "method", "channel", "created", "started", "finished",
    ];

    fn decode(row: &dyn Row, at: &Columns) -> Result<Self, String> {
        let int_at = |nth: usize, what: &str| required(int(at.get(row, nth, what)?, what)?, what);
        let text_at = |nth: usize, what: &str| text(at.get(row, nth, what)?, what);
        tasks::task_row(
            int_at(0, "hub_task.id")?,
            int_at(1, "hub_task.state")?,
            required(text_at(2, "hub_task.method")?, "hub_task.method")?,
            required(text_at(3, "hub_channel.name")?, "hub_channel.name")?,
            [
                text_at(4, "hub_task.dt_created")?.as_deref(),
                text_at(5, "hub_task.dt_started")?.as_deref(),
                text_at(6, "hub_task.dt_finished")?.as_deref(),
            ],
        )
    }
}

/// The latest start or finish of any task, read as UTC (`None`: no task has started or finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestFlow(pub Option<Micros>);

impl FromRow for LatestFlow {
    const COLUMNS: &'static [&'static str] = &["started", "finished"];

    fn decode(row: &dyn Row, at: &Columns) -> Result<Self, String> {
        let zone = kobo_backend_api::HubZone::utc();
        let mut latest = None;
        for (nth, column) in [
            (0, "max(hub_task.dt_started)"),
            (1, "max(hub_task.dt_finished)"),
        ] {
            let value = text(at.get(row, nth, column)?, column)?;
            let at = tasks::instant_from_text(value.as_deref(), &zone, column)?;
            latest = latest.max(at);
        }
        Ok(LatestFlow(latest))
    }
}

impl FromRow for WorkerTaskCount {
    const COLUMNS: &'static [&'static str] = &["worker", "state", "n"];

    fn decode(row: &dyn Row, at: &Columns) -> Result<Self, String> {
        let int_at = |nth: usize, what: &str| required(int(at.get(row, nth, what)?, what)?, what);
        tasks::worker_count_from_row(
            required(
                text(at.get(row, 0, "hub_worker.name")?, "hub_worker.name")?,
                "hub_worker.name",
            )?,
            int_at(1, "hub_task.state")?,
            int_at(2, "count")?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Values(Vec<Value<'static>>);

    impl Row for Values {
        fn value(&self, index: usize) -> Result<Value<'_>, String> {
            self.0
                .get(index)
                .cloned()
                .ok_or_else(|| "no such column".to_string())
        }
    }

    fn worker(values: Vec<Value<'static>>) -> Result<WorkerRecord, String> {
        // Columns in another order than the record lists them: found by name.
        let names = [
            "channels",
            "NAME",
            "enabled",
            "ready",
            "current_load",
            "max_load",
            "task_count",
            "max_tasks",
            "min_priority",
            "arches",
        ];
        let row = Values(values);
        decode_all::<WorkerRecord, _>(&names, [row]).map(|mut v| v.remove(0))
    }

    #[test]
    fn values_of_every_driver_decode_alike() {
        let record = worker(vec![
            Value::Names(vec![Some("b".into()), None, Some("a".into())]),
            Value::Text("w1"),
            Value::Bool(true),
            Value::Int(0),
            Value::Unparsed(b"3"),
            Value::UInt(7),
            Value::Real(2.0),
            Value::Int(0),
            Value::Null,
            Value::Unparsed(br#"["x86_64","noarch","x86_64"]"#),
        ])
        .expect("a worker");
        assert_eq!(record.name, "w1");
        assert!(record.enabled && !record.ready);
        assert_eq!(
            (record.current_load, record.max_load, record.task_count),
            (3, 7, 2)
        );
        assert_eq!((record.max_tasks, record.min_priority), (Some(0), None));
        assert_eq!(record.arches, ["noarch", "x86_64"]);
        assert_eq!(record.channels, ["a", "b"]);
    }

    #[test]
    fn errors_name_the_column_and_the_worker() {
        let mut values = vec![
            Value::Null,
            Value::Text("w1"),
            Value::Text("yes"),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Null,
            Value::Null,
        ];
        let error = worker(values.clone()).expect_err("text flag");
        assert_eq!(
            error,
            "hub_worker.enabled of worker \"w1\" is text, not an integer"
        );
        for (text, expected) in [
            (&b"18446744073709551615"[..], "signed 64-bit"),
            (b"1.5", "\"1.5\" is not an integer"),
        ] {
            values[2] = Value::Unparsed(text);
            let error = worker(values.clone()).expect_err("not an i64");
            assert!(error.contains(expected), "{error}");
        }
        values[2] = Value::UInt(u64::MAX);
        assert!(
            worker(values.clone())
                .expect_err("too big")
                .contains("signed 64-bit")
        );
        values[2] = Value::Other("JSONB".into());
        assert!(
            worker(values.clone())
                .expect_err("jsonb")
                .contains("of type JSONB")
        );
        values[2] = Value::Int(1);
        values[3] = Value::Null;
        assert_eq!(
            worker(values).expect_err("null"),
            "hub_worker.ready of worker \"w1\" is NULL"
        );
        assert_eq!(
            Columns::find::<TaskCount>(&["state", "arch"]).expect_err("missing"),
            "the result has no column channel"
        );
    }

    #[test]
    fn task_rows() {
        let names = ["state", "arch", "channel", "method", "n", "oldest"];
        let row = Values(vec![
            Value::Int(2),
            Value::Unparsed(b"x86_64"),
            Value::Text("default"),
            Value::Unparsed(b"MockBuild"),
            Value::Int(5),
            Value::Text("2024-01-02 03:04:05.250000"),
        ]);
        let counts = decode_all::<TaskCount, _>(&names, [row]).expect("a group");
        assert_eq!(
            (counts[0].group.count, counts[0].method.as_str()),
            (5, "MockBuild")
        );
        assert_eq!(counts[0].group.oldest_created, Some(1_704_164_645.25));
        let bad = Values(vec![
            Value::Int(99),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Int(1),
            Value::Null,
        ]);
        assert!(
            decode_all::<TaskCount, _>(&names, [bad])
                .expect_err("no arch")
                .contains("hub_arch.name is NULL")
        );
        // A task-flow row; times read as UTC; a task canceled while FREE has no start.
        let names = [
            "id", "state", "method", "channel", "created", "started", "finished",
        ];
        let row = Values(vec![
            Value::Int(7),
            Value::Int(4),
            Value::Text("MockBuild"),
            Value::Text("default"),
            Value::Text("2024-01-02 03:04:05"),
            Value::Null,
            Value::Text("2024-01-02 03:04:06.5"),
        ]);
        let rows = decode_all::<TaskRow, _>(&names, [row]).expect("a row");
        assert_eq!(rows[0].state, kobo_backend_api::TaskState::Canceled);
        assert_eq!(
            (rows[0].started, rows[0].finished),
            (None, Some(1_704_164_646_500_000))
        );
        let latest = Values(vec![Value::Text("2024-01-02 03:04:05"), Value::Null]);
        assert_eq!(
            decode_all::<LatestFlow, _>(&["started", "finished"], [latest]).expect("latest"),
            [LatestFlow(Some(1_704_164_645_000_000))]
        );
    }
}
