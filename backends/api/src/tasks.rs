//! Task aggregates for the SQL sources: the two grouped queries over `hub_task` (never one per worker) and
//! the mapping of their rows, shared so that every database counts the same way.
//!
//! Both count non-archived tasks in the active states only. `hub_task` has no index on `state`; on a large
//! hub these are full scans unless the optional index
//! `CREATE INDEX hub_task_archive_state ON hub_task (state, archive) WHERE archive = false` exists (a
//! partial index on PostgreSQL and SQLite; `(state, archive)` on MySQL/MariaDB).

use crate::clock::{HubZone, Micros};
use crate::records::{MethodCount, TaskCount, TaskGroup, TaskRow, TaskState, WorkerTaskCount};

/// How a source's warnings about task data begin (in words; the part they belong to is the warning's).
pub const WARNING_PREFIX: &str = "Task metrics:";

/// Groups with the same state, arch name and channel name as one: counts added, the oldest creation kept.
pub fn merge_groups(groups: Vec<TaskGroup>) -> Vec<TaskGroup> {
    let mut merged: Vec<TaskGroup> = Vec::with_capacity(groups.len());
    let mut index: std::collections::HashMap<(TaskState, String, String), usize> =
        std::collections::HashMap::new();
    for group in groups {
        let key = (group.state, group.arch.clone(), group.channel.clone());
        match index.get(&key) {
            Some(&i) => {
                let into = &mut merged[i];
                into.count += group.count;
                into.oldest_created = match (into.oldest_created, group.oldest_created) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            None => {
                index.insert(key, merged.len());
                merged.push(group);
            }
        }
    }
    merged
}

/// A row of the task-group query (`kobo_backend_sql`) as the record; the error names what is wrong.
pub fn group_from_row(
    state: i64,
    arch: String,
    channel: String,
    count: i64,
    oldest_created: Option<&str>,
) -> Result<TaskGroup, String> {
    let state = TaskState::from_code(state)
        .ok_or_else(|| format!("hub_task.state {state} is not a kobo task state"))?;
    let oldest_created = match oldest_created {
        None => None,
        Some(text) => Some(
            parse_utc_datetime(text)
                .ok_or_else(|| format!("hub_task.dt_created {text:?} is not a date and time"))?,
        ),
    };
    Ok(TaskGroup {
        state,
        arch,
        channel,
        count,
        oldest_created,
    })
}

/// Counts by (state, method) from counts by (state, arch, channel, method), ordered by state and method.
pub fn by_method(counts: &[TaskCount]) -> Vec<MethodCount> {
    let mut merged: std::collections::BTreeMap<(TaskState, &str), i64> =
        std::collections::BTreeMap::new();
    for count in counts {
        *merged
            .entry((count.group.state, count.method.as_str()))
            .or_default() += count.group.count;
    }
    merged
        .into_iter()
        .map(|((state, method), count)| MethodCount {
            state,
            method: method.to_string(),
            count,
        })
        .collect()
}

/// A datetime column's text as an instant: naive text is in `zone` (see [`crate::clock`]); the error names
/// the column.
pub fn instant_from_text(
    text: Option<&str>,
    zone: &HubZone,
    column: &str,
) -> Result<Option<Micros>, String> {
    match text {
        None => Ok(None),
        Some(text) => match parse_utc_micros(text) {
            Some(naive) => Ok(Some(zone.instant(naive))),
            None => Err(format!("{column} {text:?} is not a date and time")),
        },
    }
}

/// A row of the task-flow query (`kobo_backend_sql`) as the record, its times read as UTC (see
/// [`TaskRow::in_zone`]).
pub fn task_row(
    id: i64,
    state: i64,
    method: String,
    channel: String,
    times: [Option<&str>; 3],
) -> Result<TaskRow, String> {
    let zone = &HubZone::utc();
    let state = TaskState::from_code(state)
        .ok_or_else(|| format!("hub_task.state {state} is not a kobo task state"))?;
    let [created, started, finished] = times;
    Ok(TaskRow {
        id,
        state,
        method,
        channel,
        created: instant_from_text(created, zone, "hub_task.dt_created")?,
        started: instant_from_text(started, zone, "hub_task.dt_started")?,
        finished: instant_from_text(finished, zone, "hub_task.dt_finished")?,
    })
}

/// A row of the per-worker task query (`kobo_backend_sql`) as the record.
pub fn worker_count_from_row(
    worker: String,
    state: i64,
    count: i64,
) -> Result<WorkerTaskCount, String> {
    let state = TaskState::from_code(state)
        .ok_or_else(|| format!("hub_task.state {state} is not a kobo task state"))?;
    Ok(WorkerTaskCount {
        worker,
        state,
        count,
    })
}

/// Unix seconds of a UTC date and time written `YYYY-MM-DD HH:MM:SS` with optional fraction (up to
/// microseconds are kept), `T` instead of the space, and a trailing `Z` or `+00:00` accepted.
pub fn parse_utc_datetime(text: &str) -> Option<f64> {
    parse_utc_micros(text).map(|micros| micros as f64 / 1e6)
}

/// [`parse_utc_datetime`] in whole microseconds.
pub fn parse_utc_micros(text: &str) -> Option<Micros> {
    let format = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day][first [ ][T]][hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let text = text.trim();
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))
        .or_else(|| text.strip_suffix("+00"))
        .unwrap_or(text);
    let utc = time::PrimitiveDateTime::parse(text, &format)
        .ok()?
        .assume_utc();
    // Microseconds, as the databases keep them.
    Some(utc.unix_timestamp() * 1_000_000 + i64::from(utc.microsecond()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_in_every_database_spelling() {
        assert_eq!(parse_utc_datetime("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(
            parse_utc_datetime("2024-07-22 03:00:55"),
            Some(1_721_617_255.0)
        );
        assert_eq!(
            parse_utc_datetime("2024-07-22T03:00:55Z"),
            Some(1_721_617_255.0)
        );
        assert_eq!(
            parse_utc_datetime("2024-07-22 03:00:55+00:00"),
            Some(1_721_617_255.0)
        );
        assert_eq!(
            parse_utc_datetime("2026-11-25 18:17:10.274957"),
            Some(1_795_630_630.274_957)
        );
        assert_eq!(
            parse_utc_datetime("2026-11-25 18:17:10.5"),
            Some(1_795_630_630.5)
        );
        assert_eq!(
            parse_utc_datetime("2000-02-29 12:00:00"),
            Some(951_825_600.0)
        );
        assert_eq!(parse_utc_datetime("1969-12-31 23:59:59"), Some(-1.0));
        for bad in [
            "",
            "2024-07-22",
            "2024-13-01 00:00:00",
            "2024-07-22 25:00:00",
            "yesterday",
            "2024-07-22 03:00:55.x",
        ] {
            assert_eq!(parse_utc_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn rows_map_to_records_and_bad_states_are_errors() {
        let group = group_from_row(
            0,
            "x86_64".into(),
            "default".into(),
            3,
            Some("2024-07-22 03:00:55"),
        )
        .expect("row");
        assert_eq!(group.state, TaskState::Free);
        assert_eq!(group.oldest_created, Some(1_721_617_255.0));
        assert!(group_from_row(9, "a".into(), "c".into(), 1, None).is_err());
        assert!(group_from_row(0, "a".into(), "c".into(), 1, Some("soon")).is_err());
        assert_eq!(
            worker_count_from_row("w".into(), 2, 4).map(|c| c.state),
            Ok(TaskState::Open)
        );
    }

    #[test]
    fn same_named_groups_are_merged() {
        let group = |channel: &str, count, oldest| {
            group_from_row(0, "x86_64".into(), channel.into(), count, Some(oldest)).expect("row")
        };
        let merged = merge_groups(vec![
            group("default", 2, "2024-07-22 03:00:55"),
            group("other", 1, "2024-01-01 00:00:00"),
            group("default", 3, "2020-01-01 00:00:00"),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].count, 5);
        assert_eq!(
            merged[0].oldest_created,
            parse_utc_datetime("2020-01-01 00:00:00")
        );
        assert_eq!(merged[1].count, 1);
    }
}
