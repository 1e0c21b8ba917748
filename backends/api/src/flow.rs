//! Task flow read incrementally and counted exactly once: [`FlowTracker`] keeps where the last read of the
//! tasks that started or finished ended (a watermark on their times) and the ids of those it has seen near
//! it, so that each read asks only for the tasks since the watermark minus a late-commit window, and each
//! task's start and finish is given once whatever the reads overlap.
//!
//! Why a window: kobo writes `dt_finished` before its transaction commits, so a task can become visible
//! with a time earlier than the last read's. Tasks are re-read for `window` behind the watermark and told
//! apart by id (and time: a task run again, as kobo's "free task" allows, starts and finishes again).
//!
//! A read goes in two steps: [`FlowTracker::next_read`] says what to read, [`FlowTracker::advance`] turns
//! the rows into events and a new [`Cursor`], which the source keeps ([`FlowTracker::commit`]) only when
//! its whole collection succeeded: a failed refresh is read again from the same place.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::clock::{HubZone, Micros};
use crate::records::{FinishedTask, StartedTask, TaskFlow, TaskRow};

/// How long a read reaches back behind the watermark unless configured (`task_late_commit_window`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// What a task-flow read reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowRead {
    /// The first read: nothing is counted. The source reads the latest `dt_started` and `dt_finished`,
    /// then the tasks within the window before it ([`FlowTracker::baseline_since`]), which are seen.
    Baseline,
    /// The tasks whose `dt_started` or `dt_finished` is at or after this instant.
    Since(Micros),
}

/// Where the last successful read left off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The latest start or finish seen; `None` while no task has started or finished.
    watermark: Option<Micros>,
    /// Starts and finishes seen at or after the last read's bound, by task id.
    started: HashMap<i64, Micros>,
    finished: HashMap<i64, Micros>,
}

/// The incremental task-flow state of one source.
#[derive(Debug)]
pub struct FlowTracker {
    window: Micros,
    zone: HubZone,
    cursor: Mutex<Option<Cursor>>,
}

impl FlowTracker {
    /// A tracker that reads `window` behind its watermark, for a hub whose naive times are in `zone`.
    pub fn new(window: Duration, zone: HubZone) -> Self {
        FlowTracker {
            window: i64::try_from(window.as_micros()).unwrap_or(i64::MAX / 2),
            zone,
            cursor: Mutex::new(None),
        }
    }

    pub fn zone(&self) -> &HubZone {
        &self.zone
    }

    fn cursor(&self) -> Option<Cursor> {
        self.cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What the next read is, `now` being the exporter's clock (microseconds since the epoch).
    pub fn next_read(&self, now: Micros) -> FlowRead {
        match self.cursor() {
            None => FlowRead::Baseline,
            Some(Cursor {
                watermark: None, ..
            }) => FlowRead::Since(0),
            Some(Cursor {
                watermark: Some(mark),
                ..
            }) => FlowRead::Since(self.bound(mark, now)),
        }
    }

    /// The bound of a baseline read whose latest start or finish is `latest` (`None`: there is none, and
    /// nothing to read).
    pub fn baseline_since(&self, latest: Option<Micros>, now: Micros) -> Option<Micros> {
        latest.map(|mark| self.bound(mark, now))
    }

    /// `window` before `mark`, lowered to the start of an hour the hub's clock repeats in between.
    fn bound(&self, mark: Micros, now: Micros) -> Micros {
        let from = mark.saturating_sub(self.window);
        self.zone.read_bound(from, now.max(mark))
    }

    /// The events of the rows of `read` (at `since`, the bound it read from: for a baseline,
    /// [`baseline_since`](Self::baseline_since)), and the cursor after it. A baseline's rows are seen, not
    /// counted; `latest` is its latest start or finish.
    pub fn advance(
        &self,
        read: FlowRead,
        since: Option<Micros>,
        latest: Option<Micros>,
        rows: &[TaskRow],
    ) -> (TaskFlow, Cursor) {
        let mut cursor = self.cursor().unwrap_or_default();
        let mut flow = TaskFlow::default();
        let since = since.unwrap_or(Micros::MAX);
        // Kept while a later read may return them: from the lowest bound a read can have from here (the
        // bound itself, or the start of a repeated hour coming within two days).
        let keep_from = self.zone.read_bound(since, since.saturating_add(DAY * 2));
        cursor.started.retain(|_, at| *at >= keep_from);
        cursor.finished.retain(|_, at| *at >= keep_from);
        let counting = read != FlowRead::Baseline;
        if !counting {
            cursor.watermark = latest;
        }
        for row in rows {
            for at in [row.started, row.finished].into_iter().flatten() {
                cursor.watermark = Some(cursor.watermark.map_or(at, |mark| mark.max(at)));
            }
            if let Some(started) = row.started.filter(|at| *at >= since)
                && cursor.started.insert(row.id, started) != Some(started)
                && counting
                && let Some(created) = row.created
            {
                flow.started.push(StartedTask::new(
                    &row.method,
                    &row.channel,
                    created,
                    started,
                ));
            }
            if let Some(finished) = row.finished.filter(|at| *at >= since)
                && row.state.is_finished()
                && cursor.finished.insert(row.id, finished) != Some(finished)
                && counting
            {
                flow.finished.push(FinishedTask::new(
                    row.state,
                    &row.method,
                    &row.channel,
                    row.started,
                    Some(finished),
                ));
            }
        }
        (flow, cursor)
    }

    /// Keeps `cursor` for the next read: only once the collection it was read in succeeded.
    pub fn commit(&self, cursor: Cursor) {
        *self.cursor.lock().unwrap_or_else(PoisonError::into_inner) = Some(cursor);
    }
}

const DAY: Micros = 86_400 * 1_000_000;

/// Microseconds as seconds, at least 0 (the hub's clocks may disagree).
pub(crate) fn seconds(micros: Micros) -> f64 {
    micros.max(0) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::TaskState::{self, *};
    use crate::tasks::parse_utc_micros;

    fn at(text: &str) -> Micros {
        parse_utc_micros(text).expect(text)
    }

    fn row(id: i64, state: TaskState, times: [Option<&str>; 3]) -> TaskRow {
        let [created, started, finished] = times.map(|t| t.map(at));
        TaskRow {
            id,
            state,
            method: "MockBuild".into(),
            channel: "default".into(),
            created,
            started,
            finished,
        }
    }

    /// One read through `tracker`, as a source does it, committed.
    fn read(tracker: &FlowTracker, now: &str, rows: &[TaskRow]) -> (FlowRead, TaskFlow) {
        let now = at(now);
        let read = tracker.next_read(now);
        let (since, latest) = match read {
            FlowRead::Since(since) => (Some(since), None),
            FlowRead::Baseline => {
                let latest = rows
                    .iter()
                    .flat_map(|r| [r.started, r.finished])
                    .flatten()
                    .max();
                (tracker.baseline_since(latest, now), latest)
            }
        };
        let (flow, cursor) = tracker.advance(read, since, latest, rows);
        tracker.commit(cursor);
        (read, flow)
    }

    #[test]
    fn each_start_and_finish_once_with_late_commits_and_ties() {
        let tracker = FlowTracker::new(Duration::from_secs(300), HubZone::utc());
        let old = row(
            1,
            Closed,
            [
                Some("2026-12-02 09:00:00"),
                Some("2026-12-02 09:01:00"),
                Some("2026-12-02 10:00:00"),
            ],
        );
        let (first, flow) = read(&tracker, "2026-12-02 10:00:05", std::slice::from_ref(&old));
        assert_eq!((first, flow), (FlowRead::Baseline, TaskFlow::default()));
        assert_eq!(
            tracker.next_read(at("2026-12-02 10:01:00")),
            FlowRead::Since(at("2026-12-02 09:55:00"))
        );
        // Two tasks finish in the watermark's second; the old one is read again and not counted.
        let tie_a = row(
            2,
            Failed,
            [
                Some("2026-12-02 09:59:00"),
                Some("2026-12-02 09:59:30"),
                Some("2026-12-02 10:00:00"),
            ],
        );
        let tie_b = row(
            3,
            Timeout,
            [
                Some("2026-12-02 09:59:00"),
                Some("2026-12-02 09:59:40"),
                Some("2026-12-02 10:00:00"),
            ],
        );
        let (_, flow) = read(
            &tracker,
            "2026-12-02 10:01:00",
            &[old.clone(), tie_a.clone(), tie_b.clone()],
        );
        assert_eq!(flow.finished.len(), 2);
        assert_eq!(flow.finished[0].run, Some(30.0));
        assert_eq!(
            flow.started.iter().map(|s| s.wait).collect::<Vec<_>>(),
            [30.0, 40.0]
        );
        // A late commit finishing before the watermark, inside the window, and a task canceled while FREE.
        let late = row(
            4,
            Closed,
            [
                Some("2026-12-02 09:50:00"),
                Some("2026-12-02 09:57:00"),
                Some("2026-12-02 09:58:00"),
            ],
        );
        let canceled = row(
            5,
            Canceled,
            [
                Some("2026-12-02 10:01:00"),
                None,
                Some("2026-12-02 10:02:00"),
            ],
        );
        let (_, flow) = read(
            &tracker,
            "2026-12-02 10:03:00",
            &[tie_a, tie_b, late.clone(), canceled.clone()],
        );
        assert_eq!(
            flow.finished
                .iter()
                .map(|f| (f.state, f.run))
                .collect::<Vec<_>>(),
            [(Closed, Some(60.0)), (Canceled, None)]
        );
        assert_eq!(
            flow.started.iter().map(|s| s.wait).collect::<Vec<_>>(),
            [420.0]
        );
        // Read again: nothing new.
        let (_, flow) = read(&tracker, "2026-12-02 10:04:00", &[late, canceled]);
        assert_eq!(flow, TaskFlow::default());
    }

    #[test]
    fn a_failed_read_is_read_again_and_a_rerun_counts_again() {
        let tracker = FlowTracker::new(Duration::from_secs(60), HubZone::utc());
        read(&tracker, "2026-12-02 10:00:00", &[]);
        assert_eq!(
            tracker.next_read(at("2026-12-02 10:00:00")),
            FlowRead::Since(0)
        );
        let done = row(
            7,
            Closed,
            [
                Some("2026-12-02 10:00:00"),
                Some("2026-12-02 10:00:10"),
                Some("2026-12-02 10:01:00"),
            ],
        );
        // Advanced but not committed (the collection failed): the same read comes again.
        let next = tracker.next_read(at("2026-12-02 10:02:00"));
        let (flow, _) = tracker.advance(next, Some(0), None, std::slice::from_ref(&done));
        assert_eq!(flow.finished.len(), 1);
        assert_eq!(tracker.next_read(at("2026-12-02 10:02:00")), next);
        let (_, flow) = read(&tracker, "2026-12-02 10:02:00", std::slice::from_ref(&done));
        assert_eq!((flow.started.len(), flow.finished.len()), (1, 1));
        // Freed and run again: a new start and finish of the same id.
        let again = row(
            7,
            Failed,
            [
                Some("2026-12-02 10:00:00"),
                Some("2026-12-02 10:01:30"),
                Some("2026-12-02 10:01:50"),
            ],
        );
        let (_, flow) = read(&tracker, "2026-12-02 10:03:00", &[again]);
        assert_eq!((flow.started.len(), flow.finished.len()), (1, 1));
        assert_eq!(flow.finished[0].run, Some(20.0));
    }

    #[test]
    fn tasks_of_the_repeated_hour_are_read_and_counted_once() {
        let zone = HubZone::named("America/New_York").expect("zone");
        let tracker = FlowTracker::new(Duration::from_secs(300), zone.clone());
        // Naive hub times, read in the zone: 01:50 is the first 01:50 (EDT, 05:50 UTC).
        let naive = |id, start: &str, end: &str| {
            row(id, Closed, [Some(start), Some(start), Some(end)]).in_zone(&zone)
        };
        let first = naive(1, "2026-11-01 01:40:00", "2026-11-01 01:50:00");
        read(
            &tracker,
            "2026-11-01 05:51:00",
            std::slice::from_ref(&first),
        );
        // An hour later by the clock (06:20 UTC is 01:20 EST): the clocks went back, the bound with them.
        assert_eq!(
            tracker.next_read(at("2026-11-01 06:20:00")),
            FlowRead::Since(at("2026-11-01 05:00:00"))
        );
        let second = naive(2, "2026-11-01 01:05:00", "2026-11-01 01:15:00");
        let (_, flow) = read(
            &tracker,
            "2026-11-01 06:20:00",
            &[first.clone(), second.clone()],
        );
        assert_eq!(flow.finished.len(), 1, "only the task of the second 01:xx");
        let (_, flow) = read(&tracker, "2026-11-01 06:40:00", &[first, second]);
        assert_eq!(flow, TaskFlow::default());
    }
}
