//! The task flow over XML-RPC: which tasks started and finished since the last task refresh, read by ids
//! because kobo's client API has no "changed since" call and no way to ask for finished tasks short of an
//! unpaginated export of every one.
//!
//! The source keeps, between refreshes, the active set of the last one (each id with whether its start was
//! counted) and `top`, the id up to which every task has been looked at. Task ids grow with creation, so
//! a refresh, after its `client.get_tasks([], active states)`, fetches with `client.get_tasks(ids, [])`
//! (in chunks of [`FETCH_CHUNK`] ids, in one `system.multicall`) only:
//! - the ids that **left the active set** since the last refresh: they finished (or were archived or
//!   deleted; those are warned about and not counted);
//! - the **new ids** above `top`: up to the newest active task and [`PROBE`] ids beyond it (tasks created
//!   and finished between two refreshes, which no active set shows), at most [`MAX_NEW_IDS`] per refresh
//!   (the rest at the next ones);
//! - the **holes**: new ids at or below `top` that did not answer (a task whose transaction commits late,
//!   or an id no task will have), asked again until the late-commit window has passed.
//!
//! The cost of a refresh is thus one request whose size follows the flow (the tasks that finished or were
//! created since the last refresh), not the hub's history. The first refresh is the baseline: it counts
//! nothing, notes every active task (their starts predate the exporter) and probes [`PROBE`] ids above the
//! newest active task for finished ones; a first refresh that finds no active task has no id to start
//! from, and the next refresh is the baseline again. A task is counted once: its start when a refresh
//! first sees it started (`dt_started - dt_created`), its end when one first sees it finished; tasks not
//! followed since the baseline count only with times at or after the newest time the baseline read.
//! Nothing is kept unless the whole collection succeeds (the kept `FlowState` is replaced at its end).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kobo_backend_api::clock::Micros;
use kobo_backend_api::{FinishedTask, StartedTask, TaskFlow};

use crate::tasks::TaskExport;

/// Task ids per `client.get_tasks(ids, [])` call inside the refresh's multicall.
pub const FETCH_CHUNK: usize = 500;

/// How many ids above the newest task seen a refresh asks for: tasks created after it that finished before
/// the refresh.
pub const PROBE: i64 = 100;

/// At most this many new ids per refresh (a burst of new tasks is read over several refreshes).
pub const MAX_NEW_IDS: i64 = 5_000;

/// What the source keeps of the task flow between refreshes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FlowState {
    /// The tasks active at the last refresh, and whether their start is counted (or predates the baseline).
    active: BTreeMap<i64, bool>,
    /// Every id up to this one has been looked at.
    top: i64,
    /// Ids above `top` already followed in the active set: not fetched as new when `top` passes them.
    beyond: BTreeSet<i64>,
    /// New ids at or below `top` that did not answer, and when they first did not.
    holes: BTreeMap<i64, Instant>,
    /// The newest time the baseline read: tasks not followed since count only from it.
    since: Micros,
}

/// What a refresh fetches by id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// No baseline, and no active task to start from: nothing to fetch, nothing counted.
    Wait,
    /// The first refresh: the ids above the newest active task.
    Baseline { probe: Vec<i64> },
    /// The ids that left the active set, the new ids up to `upper`, and the holes.
    Since {
        left: Vec<i64>,
        new: Vec<i64>,
        upper: i64,
    },
}

impl Plan {
    /// What to fetch after `active`, the refresh's active set, given the kept `state`.
    pub(crate) fn new(state: Option<&FlowState>, active: &[TaskExport]) -> Plan {
        let newest = active.iter().map(|t| t.id).max();
        let Some(state) = state else {
            return match newest {
                None => Plan::Wait,
                Some(newest) => Plan::Baseline {
                    probe: (newest + 1..=newest + PROBE).collect(),
                },
            };
        };
        let now: BTreeSet<i64> = active.iter().map(|t| t.id).collect();
        let left = state
            .active
            .keys()
            .filter(|id| !now.contains(id))
            .copied()
            .collect();
        let reach = newest.unwrap_or(state.top).max(state.top) + PROBE;
        let upper = reach.min(state.top + MAX_NEW_IDS);
        let new = (state.top + 1..=upper)
            .filter(|id| !now.contains(id) && !state.beyond.contains(id))
            .chain(state.holes.keys().copied().filter(|id| !now.contains(id)))
            .collect();
        Plan::Since { left, new, upper }
    }

    /// Every id to fetch, ascending.
    pub(crate) fn ids(&self) -> Vec<i64> {
        let ids: BTreeSet<i64> = match self {
            Plan::Wait => BTreeSet::new(),
            Plan::Baseline { probe } => probe.iter().copied().collect(),
            Plan::Since { left, new, .. } => left.iter().chain(new).copied().collect(),
        };
        ids.into_iter().collect()
    }

    /// The ids to fetch in [`FETCH_CHUNK`]s, one `client.get_tasks` call each.
    pub(crate) fn chunks(&self) -> Vec<Vec<i64>> {
        self.ids()
            .chunks(FETCH_CHUNK)
            .map(<[i64]>::to_vec)
            .collect()
    }
}

/// A refresh's flow, and the state to keep if the collection succeeds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Advanced {
    pub state: Option<FlowState>,
    /// `None` while there is no baseline.
    pub flow: Option<TaskFlow>,
    /// Ids that left the active set and did not answer (archived or deleted): not counted.
    pub vanished: Vec<i64>,
    /// Tasks that could not be counted because their channel has no name.
    pub unnamed: usize,
}

/// The refresh's flow from its active set and what `plan` fetched; `channels` names the channel ids, and
/// `window` is how long a hole is asked for again. `now` is when the refresh was made.
pub(crate) fn advance(
    state: Option<&FlowState>,
    plan: &Plan,
    active: &[TaskExport],
    fetched: &[TaskExport],
    channels: &HashMap<i64, String>,
    window: Duration,
    now: Instant,
) -> Advanced {
    let in_active: BTreeSet<i64> = active.iter().map(|t| t.id).collect();
    // The hub answers only ids it was asked for; anything else, or an active one, is ignored.
    let asked: BTreeSet<i64> = plan.ids().into_iter().collect();
    let fetched: Vec<&TaskExport> = fetched
        .iter()
        .filter(|t| asked.contains(&t.id) && !in_active.contains(&t.id))
        .collect();
    let (state, left, upper) = match (state, plan) {
        (_, Plan::Wait) | (None, Plan::Since { .. }) => {
            return Advanced {
                state: state.cloned(),
                flow: None,
                vanished: Vec::new(),
                unnamed: 0,
            };
        }
        (_, Plan::Baseline { .. }) => {
            return baseline(active, &fetched);
        }
        (Some(state), Plan::Since { left, upper, .. }) => (state, left, *upper),
    };
    let mut next = FlowState {
        since: state.since,
        ..FlowState::default()
    };
    let mut flow = TaskFlow::default();
    let mut unnamed = 0;
    let mut count = |task: &TaskExport, start_counted: bool| {
        // Not followed since the baseline: only what happened from the baseline's newest time on.
        let followed = state.active.contains_key(&task.id);
        let since = if followed { Micros::MIN } else { state.since };
        let starts = task.started.filter(|at| *at >= since && !start_counted);
        let ends = task.state.is_finished() && task.finished.is_none_or(|at| at >= since);
        if starts.is_none() && !ends {
            return;
        }
        let Some(channel) = channels.get(&task.channel) else {
            unnamed += 1;
            return;
        };
        if let Some(started) = starts {
            flow.started.push(StartedTask::new(
                &task.method,
                channel,
                task.created,
                started,
            ));
        }
        if ends {
            flow.finished.push(FinishedTask::new(
                task.state,
                &task.method,
                channel,
                task.started,
                task.finished,
            ));
        }
    };
    for task in active.iter().chain(fetched.iter().copied()) {
        let counted = state.active.get(&task.id).copied().unwrap_or(false);
        count(task, counted);
        if !task.state.is_finished() {
            next.active
                .insert(task.id, counted || task.started.is_some());
        }
    }
    let answered: BTreeSet<i64> = fetched.iter().map(|t| t.id).collect();
    let vanished = left
        .iter()
        .filter(|id| !answered.contains(id))
        .copied()
        .collect();
    // Everything up to the newest task read within `upper` has been looked at.
    next.top = answered
        .iter()
        .chain(&in_active)
        .copied()
        .filter(|id| *id <= upper)
        .chain([state.top])
        .max()
        .unwrap_or(state.top);
    let asked_new = (state.top + 1..=next.top).filter(|id| !state.beyond.contains(id));
    for id in asked_new.chain(state.holes.keys().copied()) {
        if answered.contains(&id) || in_active.contains(&id) {
            continue;
        }
        let first = state.holes.get(&id).copied().unwrap_or(now);
        if now.saturating_duration_since(first) < window {
            next.holes.insert(id, first);
        }
    }
    next.beyond = state
        .beyond
        .iter()
        .chain(next.active.keys())
        .copied()
        .filter(|id| *id > next.top)
        .collect();
    Advanced {
        state: Some(next),
        flow: Some(flow),
        vanished,
        unnamed,
    }
}

/// The first refresh: every active task noted (a started one's start predates the exporter), the newest
/// id read as `top`, the newest time read as where untracked tasks start to count.
fn baseline(active: &[TaskExport], fetched: &[&TaskExport]) -> Advanced {
    let mut next = FlowState::default();
    for task in active.iter().chain(fetched.iter().copied()) {
        if !task.state.is_finished() {
            next.active.insert(task.id, task.started.is_some());
        }
        next.top = next.top.max(task.id);
        let times = [Some(task.created), task.started, task.finished];
        for at in times.into_iter().flatten() {
            next.since = next.since.max(at);
        }
    }
    Advanced {
        state: Some(next),
        flow: Some(TaskFlow::default()),
        vanished: Vec::new(),
        unnamed: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kobo_backend_api::TaskState::{self, *};

    const S: Micros = 1_000_000;

    /// A hub's tasks as `client.get_tasks` sees them (archived ones are absent).
    #[derive(Default)]
    struct Hub(BTreeMap<i64, TaskExport>);

    impl Hub {
        /// Task `id` in `state` with times (seconds) created, started, finished; channel 1 unless 9 is asked.
        fn set(&mut self, id: i64, state: TaskState, times: (i64, Option<i64>, Option<i64>)) {
            let method = if id % 2 == 0 { "Build" } else { "Compose" };
            self.0.insert(
                id,
                TaskExport {
                    id,
                    state,
                    worker: None,
                    arch: 1,
                    channel: 1,
                    method: method.into(),
                    created: times.0 * S,
                    started: times.1.map(|t| t * S),
                    finished: times.2.map(|t| t * S),
                },
            );
        }

        fn active(&self) -> Vec<TaskExport> {
            let active = self
                .0
                .values()
                .filter(|t| TaskState::ACTIVE.contains(&t.state));
            active.cloned().collect()
        }

        fn get(&self, ids: &[i64]) -> Vec<TaskExport> {
            ids.iter()
                .filter_map(|id| self.0.get(id))
                .cloned()
                .collect()
        }
    }

    /// A refresh at `now`: its flow as sorted (kind, id-free) lines, the asked ids, and the new state.
    fn refresh(
        hub: &Hub,
        state: Option<&FlowState>,
        now: Instant,
    ) -> (Vec<String>, Vec<i64>, Advanced) {
        let active = hub.active();
        let plan = Plan::new(state, &active);
        let ids = plan.ids();
        let fetched = hub.get(&ids);
        let channels = HashMap::from([(1, "default".to_string())]);
        let window = Duration::from_secs(300);
        let advanced = advance(state, &plan, &active, &fetched, &channels, window, now);
        let mut lines = Vec::new();
        if let Some(flow) = &advanced.flow {
            for s in &flow.started {
                lines.push(format!(
                    "started {} {} wait={:?}",
                    s.method, s.channel, s.wait
                ));
            }
            for f in &flow.finished {
                lines.push(format!(
                    "finished {} {} {} run={:?}",
                    f.state.name(),
                    f.method,
                    f.channel,
                    f.run
                ));
            }
        }
        lines.sort();
        (lines, ids, advanced)
    }

    #[test]
    fn lifecycles_are_counted_once_each_from_the_ids_that_moved() {
        let t0 = Instant::now();
        let mut hub = Hub::default();
        // Old history, archived tasks aside: 3 finished long ago, 10 FREE, 12 OPEN, 11 and 13 finished
        // before the exporter started (above the newest active task: the baseline's probe reads them).
        hub.set(3, Closed, (100, Some(110), Some(120)));
        hub.set(10, Free, (1_000, None, None));
        hub.set(11, Closed, (1_001, Some(1_002), Some(1_010)));
        hub.set(12, Open, (1_005, Some(1_020), None));
        hub.set(13, Failed, (1_006, Some(1_007), Some(1_030)));

        // Nothing active: no baseline yet.
        let empty = Hub::default();
        let (lines, ids, waiting) = refresh(&empty, None, t0);
        assert_eq!((lines, ids), (vec![], vec![]));
        assert_eq!((waiting.state, waiting.flow), (None, None));

        let (lines, ids, base) = refresh(&hub, None, t0);
        assert!(lines.is_empty());
        assert_eq!(
            ids,
            (13..=112).collect::<Vec<_>>(),
            "the probe above task 12"
        );
        assert_eq!(base.flow, Some(TaskFlow::default()));
        let state = base.state.expect("a baseline");
        assert_eq!((state.top, state.since), (13, 1_030 * S));

        // 10 starts, 12 closes, 14 is created, runs and fails between two refreshes, 15 is FREE, 17 is
        // OPEN and 16 not committed yet (a hole); 11 and 13 are never counted.
        hub.set(10, Open, (1_000, Some(1_100), None));
        hub.set(12, Closed, (1_005, Some(1_020), Some(1_200)));
        hub.set(14, Failed, (1_040, Some(1_045), Some(1_145)));
        hub.set(15, Free, (1_050, None, None));
        hub.set(17, Open, (1_060, Some(1_061), None));
        let base_state = state.clone();
        let (lines, ids, second) = refresh(&hub, Some(&state), t0);
        assert_eq!(
            lines,
            [
                "finished CLOSED Build default run=Some(180.0)",
                "finished FAILED Build default run=Some(100.0)",
                "started Build default wait=100.0",
                "started Build default wait=5.0",
                "started Compose default wait=1.0",
            ]
        );
        let mut asked = vec![12, 14, 16];
        asked.extend(18..=117);
        assert_eq!(
            ids, asked,
            "12 left the active set; 14 and 16 are new; 18 up are probed"
        );
        // The same refresh again (as after a collection that failed: the kept state is the baseline's):
        // the same flow and state, nothing counted twice.
        let (again, _, retried) = refresh(&hub, Some(&base_state), t0);
        assert_eq!((&again, &retried), (&lines, &second));
        let state = second.state.expect("kept");
        assert_eq!(state.top, 17);
        assert_eq!(state.holes.keys().copied().collect::<Vec<_>>(), [16]);

        // 16 commits late, already canceled while FREE; 15 is archived; 17 times out. Nothing else moves.
        hub.set(16, Canceled, (1_055, None, Some(1_300)));
        hub.0.remove(&15);
        hub.set(17, Timeout, (1_060, Some(1_061), Some(1_400)));
        let (lines, ids, third) = refresh(&hub, Some(&state), t0 + Duration::from_secs(60));
        assert_eq!(
            lines,
            [
                "finished CANCELED Build default run=None",
                "finished TIMEOUT Compose default run=Some(339.0)",
            ]
        );
        assert!(ids.starts_with(&[15, 16, 17, 18]), "{ids:?}");
        assert_eq!(third.vanished, [15]);
        let state = third.state.expect("kept");
        assert!(state.holes.is_empty() && state.active.keys().eq([10].iter()));

        // Nothing moves: nothing counted, and only the probe above the newest task is asked.
        let (lines, ids, fourth) = refresh(&hub, Some(&state), t0 + Duration::from_secs(120));
        assert!(lines.is_empty());
        assert_eq!(ids, (18..=117).collect::<Vec<_>>());
        assert_eq!(fourth.state.as_ref(), Some(&state));

        // A hole that never answers is dropped once the late-commit window has passed.
        hub.set(19, Free, (1_500, None, None));
        let (_, _, fifth) = refresh(&hub, Some(&state), t0 + Duration::from_secs(180));
        let state = fifth.state.expect("kept");
        assert_eq!(state.holes.keys().copied().collect::<Vec<_>>(), [18]);
        hub.0.remove(&19);
        let (_, ids, sixth) = refresh(&hub, Some(&state), t0 + Duration::from_secs(400));
        assert!(ids.contains(&18));
        assert_eq!(sixth.vanished, [19]);
        let state = sixth.state.expect("kept");
        assert_eq!(
            state.holes.keys().copied().collect::<Vec<_>>(),
            [18],
            "220 s: asked again"
        );
        let (_, ids, seventh) = refresh(&hub, Some(&state), t0 + Duration::from_secs(481));
        assert!(ids.contains(&18));
        assert!(
            seventh.state.expect("kept").holes.is_empty(),
            "301 s: given up"
        );
    }

    #[test]
    fn a_burst_of_new_ids_is_read_over_several_refreshes_and_never_twice() {
        let t0 = Instant::now();
        let mut hub = Hub::default();
        hub.set(1, Free, (0, None, None));
        let (_, _, base) = refresh(&hub, None, t0);
        let mut state = base.state.expect("a baseline");
        // 12,000 tasks created and closed, and the newest one still OPEN.
        for id in 2..=12_000 {
            hub.set(id, Closed, (10, Some(20), Some(30)));
        }
        hub.set(12_001, Open, (10, Some(20), None));
        let mut counted = 0;
        let mut refreshes = 0;
        loop {
            let (lines, ids, advanced) = refresh(&hub, Some(&state), t0);
            assert!(ids.len() <= 1 + MAX_NEW_IDS as usize, "{}", ids.len());
            counted += lines.iter().filter(|l| l.starts_with("finished")).count();
            refreshes += 1;
            state = advanced.state.expect("kept");
            if lines.is_empty() {
                break;
            }
        }
        assert_eq!(counted, 11_999, "every closed task once");
        assert_eq!(
            refreshes, 4,
            "three refreshes of at most 5,000 new ids, then nothing"
        );
        // 12,001 was followed in the active set (its start counted once), not read again as new.
        hub.set(12_001, Closed, (10, Some(20), Some(40)));
        let (lines, _, _) = refresh(&hub, Some(&state), t0);
        assert_eq!(lines, ["finished CLOSED Compose default run=Some(20.0)"]);
    }
}
