//! From `client.get_worker_info` structs and `client.list_workers` arrays to the exporter's records.
//!
//! kobo's worker export is `{id, name, arches: [{id, name, pretty_name}], channels: [{id, name}], enabled,
//! max_load, ready, task_count, current_load, last_seen, version}`; it has no `max_tasks` nor
//! `min_priority` (left `None`). `last_seen` is `YYYY-MM-DDTHH:MM:SSZ` (UTC) or nil for a worker that never
//! called in. The ids (the worker's, its arches' and channels') are kept too: task exports refer to workers,
//! arches and channels by id only.

use std::collections::BTreeMap;

use dxr::Value;
use kobo_backend_api::normalise::sorted_names;
use kobo_backend_api::{LastSeen, WorkerRecord};

use crate::rpc::kind;

/// The names of a `client.list_workers` result (an array of strings).
pub(crate) fn worker_names(value: Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "the result is {}, not an array of worker names",
            kind(&value)
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(name) if !name.is_empty() => Ok(name),
            Value::String(_) => Err(format!("worker name {i} is empty")),
            other => Err(format!("worker name {i} is {}, not a string", kind(&other))),
        })
        .collect()
}

/// A decoded worker, and what could not be read without losing the worker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodedWorker {
    pub record: WorkerRecord,
    /// Set when `last_seen` is absent (hubs that predate it): last seen is unavailable.
    pub no_last_seen_field: bool,
    /// A problem with one field that left the rest usable (an unreadable `last_seen`), as a sentence part.
    pub note: Option<String>,
    /// The worker's `id`, when the export has an integer one.
    pub id: Option<i64>,
    /// `(id, name)` of its arches that have an integer id.
    pub arch_ids: Vec<(i64, String)>,
    /// `(id, name)` of its channels that have an integer id.
    pub channel_ids: Vec<(i64, String)>,
}

/// The record of the worker `requested` from its `client.get_worker_info` result. An empty struct (no such
/// worker: deleted since the list was read), a struct for another worker, or one that lacks a field or
/// holds a value of the wrong type is an error naming the field.
pub(crate) fn worker(requested: &str, value: Value) -> Result<DecodedWorker, String> {
    let Value::Struct(fields) = value else {
        return Err(format!(
            "client.get_worker_info returned {}, not a struct",
            kind(&value)
        ));
    };
    if fields.is_empty() {
        return Err("the hub has no such worker any more (deleted or renamed since the worker list was read)".into());
    }
    let fields = Fields(&fields);
    let name = fields.string("name")?;
    if name != requested {
        return Err(format!(
            "client.get_worker_info returned the worker {name:?} instead"
        ));
    }
    let mut record = WorkerRecord::new(name);
    record.enabled = fields.boolean("enabled")?;
    record.ready = fields.boolean("ready")?;
    record.current_load = fields.integer("current_load")?;
    record.max_load = fields.integer("max_load")?;
    record.task_count = fields.integer("task_count")?;
    record.max_tasks = None;
    record.min_priority = None;
    record.arches = fields.names("arches")?;
    record.channels = fields.names("channels")?;
    let (mut no_last_seen_field, mut note) = (false, None);
    record.last_seen = match fields.0.get("last_seen") {
        None => {
            no_last_seen_field = true;
            LastSeen::Unavailable
        }
        Some(value) => match last_seen(value) {
            Ok(last_seen) => last_seen,
            Err(why) => {
                note = Some(format!("its last_seen is unreadable ({why})"));
                LastSeen::Unavailable
            }
        },
    };
    Ok(DecodedWorker {
        record,
        no_last_seen_field,
        note,
        id: fields.0.get("id").and_then(integer),
        arch_ids: fields.ids("arches"),
        channel_ids: fields.ids("channels"),
    })
}

/// kobo's `last_seen`: `YYYY-MM-DDTHH:MM:SSZ` in UTC, nil when never seen; a `dateTime.iso8601` value is
/// read as UTC too.
pub(crate) fn last_seen(value: &Value) -> Result<LastSeen, String> {
    match value {
        Value::Nil => Ok(LastSeen::Never),
        Value::String(text) => parse_utc(text)
            .map(LastSeen::At)
            .ok_or_else(|| format!("{text:?} is not YYYY-MM-DDTHH:MM:SSZ")),
        Value::DateTime(dt) => datetime_seconds(dt)
            .map(LastSeen::At)
            .ok_or_else(|| format!("{dt} is not a valid date and time")),
        other => Err(format!("it is {}", kind(other))),
    }
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SSZ` (exactly that form, UTC).
pub(crate) fn parse_utc(text: &str) -> Option<i64> {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let datetime = time::PrimitiveDateTime::parse(text, &format).ok()?;
    Some(datetime.assume_utc().unix_timestamp())
}

/// Unix seconds of a `dateTime.iso8601` value, its fields read as UTC; `None` for an impossible date.
pub(crate) fn datetime_seconds(dt: &dxr::DateTime) -> Option<i64> {
    unix_seconds(
        i32::from(dt.year()),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
    )
}

fn unix_seconds(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<i64> {
    let month = time::Month::try_from(month).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let time = time::Time::from_hms(hour, minute, second).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// An `<int>` or `<i8>` value as `i64`.
pub(crate) fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(i) => Some(i64::from(*i)),
        Value::Long(i) => Some(*i),
        _ => None,
    }
}

/// Typed access to a struct's members; errors name the member.
pub(crate) struct Fields<'a>(pub(crate) &'a BTreeMap<String, Value>);

impl Fields<'_> {
    pub(crate) fn get(&self, name: &str) -> Result<&Value, String> {
        self.0
            .get(name)
            .ok_or_else(|| format!("the field {name} is missing"))
    }

    pub(crate) fn wrong(name: &str, value: &Value, expected: &str) -> String {
        format!("the field {name} is {}, not {expected}", kind(value))
    }

    pub(crate) fn string(&self, name: &str) -> Result<String, String> {
        match self.get(name)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(Self::wrong(name, other, "a string")),
        }
    }

    fn boolean(&self, name: &str) -> Result<bool, String> {
        match self.get(name)? {
            Value::Boolean(b) => Ok(*b),
            other => Err(Self::wrong(name, other, "a boolean")),
        }
    }

    pub(crate) fn integer(&self, name: &str) -> Result<i64, String> {
        let value = self.get(name)?;
        integer(value).ok_or_else(|| Self::wrong(name, value, "an integer"))
    }

    /// An integer or nil (`None`).
    pub(crate) fn optional_integer(&self, name: &str) -> Result<Option<i64>, String> {
        match self.get(name)? {
            Value::Nil => Ok(None),
            value => integer(value)
                .map(Some)
                .ok_or_else(|| Self::wrong(name, value, "an integer or nil")),
        }
    }

    /// `(id, name)` of the `{id, name, ...}` structs in an array, leaving out entries without an integer id
    /// or a non-empty string name (their names are in [`Fields::names`] all the same).
    fn ids(&self, name: &str) -> Vec<(i64, String)> {
        let Some(Value::Array(items)) = self.0.get(name) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match item {
                Value::Struct(members) => match (members.get("id"), members.get("name")) {
                    (Some(id), Some(Value::String(name))) if !name.is_empty() => {
                        integer(id).map(|id| (id, name.clone()))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// An array of `{name, ...}` structs (or plain strings) as sorted, de-duplicated names.
    fn names(&self, name: &str) -> Result<Vec<String>, String> {
        let Value::Array(items) = self.get(name)? else {
            return Err(Self::wrong(name, self.get(name)?, "an array"));
        };
        let names = items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Struct(members) => match members.get("name") {
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(other) => {
                        Err(format!("{name}[{i}].name is {}, not a string", kind(other)))
                    }
                    None => Err(format!("{name}[{i}] has no name")),
                },
                Value::String(s) => Ok(Some(s.clone())),
                other => Err(format!("{name}[{i}] is {}, not a struct", kind(other))),
            })
            .collect::<Result<Vec<Option<String>>, String>>()?;
        Ok(sorted_names(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn named(name: &str) -> Value {
        Value::Struct(
            [
                ("id".to_string(), Value::Integer(1)),
                ("name".to_string(), s(name)),
            ]
            .into(),
        )
    }

    /// worker-0002.example.com as the fixture hub exports it.
    fn export() -> BTreeMap<String, Value> {
        [
            ("id", Value::Integer(2)),
            ("name", s("worker-0002.example.com")),
            (
                "arches",
                Value::Array(vec![
                    named("x86_64"),
                    named("aarch64"),
                    named("noarch"),
                    named("x86_64"),
                ]),
            ),
            (
                "channels",
                Value::Array(vec![named("default"), named("compose")]),
            ),
            ("enabled", Value::Boolean(true)),
            ("max_load", Value::Integer(1)),
            ("ready", Value::Boolean(false)),
            ("task_count", Value::Integer(4)),
            ("current_load", Value::Long(4)),
            ("last_seen", s("2025-06-15T15:05:04Z")),
            ("version", Value::Nil),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn the_export_becomes_a_record() {
        let decoded = worker("worker-0002.example.com", Value::Struct(export())).unwrap();
        let mut expected = WorkerRecord::new("worker-0002.example.com");
        expected.enabled = true;
        expected.current_load = 4;
        expected.max_load = 1;
        expected.task_count = 4;
        expected.last_seen = LastSeen::At(1_749_999_904);
        expected.arches = vec!["aarch64".into(), "noarch".into(), "x86_64".into()];
        expected.channels = vec!["compose".into(), "default".into()];
        assert_eq!(decoded.record, expected);
        assert_eq!((decoded.no_last_seen_field, decoded.note), (false, None));
        assert_eq!(decoded.id, Some(2));
        assert_eq!(
            decoded.arch_ids,
            [
                (1, "x86_64".to_string()),
                (1, "aarch64".to_string()),
                (1, "noarch".to_string()),
                (1, "x86_64".to_string())
            ]
        );
        assert_eq!(
            decoded.channel_ids,
            [(1, "default".to_string()), (1, "compose".to_string())]
        );
    }

    #[test]
    fn ids_are_read_leniently() {
        let mut fields = export();
        fields.insert("id".into(), s("2"));
        fields.insert(
            "arches".into(),
            Value::Array(vec![
                Value::Struct([("name".to_string(), s("noarch"))].into()),
                Value::Struct(
                    [
                        ("id".to_string(), Value::Long(7)),
                        ("name".to_string(), s("i386")),
                    ]
                    .into(),
                ),
            ]),
        );
        let decoded = worker("worker-0002.example.com", Value::Struct(fields)).unwrap();
        assert_eq!(decoded.id, None);
        assert_eq!(decoded.arch_ids, [(7, "i386".to_string())]);
        assert_eq!(decoded.record.arches, ["i386", "noarch"]);
    }

    #[test]
    fn last_seen_forms() {
        assert_eq!(last_seen(&Value::Nil), Ok(LastSeen::Never));
        assert_eq!(last_seen(&s("1970-01-01T00:00:00Z")), Ok(LastSeen::At(0)));
        assert_eq!(
            last_seen(&s("2024-02-29T23:59:59Z")),
            Ok(LastSeen::At(1_709_251_199))
        );
        let dt: dxr::DateTime = "20250615T15:05:04".parse().unwrap();
        assert_eq!(
            last_seen(&Value::DateTime(dt)),
            Ok(LastSeen::At(1_749_999_904))
        );
        for bad in [
            "2025-06-15 15:05:04",
            "2025-06-15T15:05:04+02:00",
            "2025-02-30T00:00:00Z",
            "",
            "yesterday",
        ] {
            assert!(last_seen(&s(bad)).is_err(), "{bad}");
        }
        assert!(
            last_seen(&Value::Integer(5))
                .unwrap_err()
                .contains("integer")
        );
    }

    #[test]
    fn unreadable_last_seen_keeps_the_worker() {
        let mut fields = export();
        fields.insert("last_seen".into(), s("soon"));
        let decoded = worker("worker-0002.example.com", Value::Struct(fields.clone())).unwrap();
        assert_eq!(decoded.record.last_seen, LastSeen::Unavailable);
        assert!(decoded.note.unwrap().contains("\"soon\""));
        fields.remove("last_seen");
        let decoded = worker("worker-0002.example.com", Value::Struct(fields)).unwrap();
        assert_eq!(decoded.record.last_seen, LastSeen::Unavailable);
        assert!(decoded.no_last_seen_field);
    }

    #[test]
    fn broken_exports_are_errors_naming_the_field() {
        let name = "worker-0002.example.com";
        assert!(
            worker(name, Value::Struct(BTreeMap::new()))
                .unwrap_err()
                .contains("no such worker")
        );
        assert!(
            worker(name, Value::Nil)
                .unwrap_err()
                .contains("not a struct")
        );
        assert!(
            worker("other", Value::Struct(export()))
                .unwrap_err()
                .contains("instead")
        );
        let mut fields = export();
        fields.remove("max_load");
        assert_eq!(
            worker(name, Value::Struct(fields)).unwrap_err(),
            "the field max_load is missing"
        );
        let mut fields = export();
        fields.insert("enabled".into(), Value::Integer(1));
        assert_eq!(
            worker(name, Value::Struct(fields)).unwrap_err(),
            "the field enabled is an integer, not a boolean"
        );
        let mut fields = export();
        fields.insert("arches".into(), Value::Array(vec![Value::Integer(3)]));
        assert_eq!(
            worker(name, Value::Struct(fields)).unwrap_err(),
            "arches[0] is an integer, not a struct"
        );
    }

    #[test]
    fn worker_name_lists() {
        assert_eq!(
            worker_names(Value::Array(vec![s("b"), s("a")])),
            Ok(vec!["b".to_string(), "a".to_string()])
        );
        assert!(
            worker_names(Value::Struct(BTreeMap::new()))
                .unwrap_err()
                .contains("not an array")
        );
        assert!(
            worker_names(Value::Array(vec![Value::Nil]))
                .unwrap_err()
                .contains("nil")
        );
    }
}
