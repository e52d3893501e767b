//! The store conformance suite: what every storage backend must do, as one function
//! per behaviour over `&mut dyn Store`. A backend's tests run all of them with one
//! line, one `#[test]` each so a failure names its behaviour:
//!
//! ```text
//! fleetbus_test_support::store_conformance!(|| {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = SqliteStore::open(dir.path()).unwrap();
//!     (Box::new(store) as Box<dyn Store>, dir)
//! });
//! ```
//!
//! The opener returns the store and a guard kept alive for the test (a temporary
//! directory, a database to drop).

use std::sync::Arc;

use fleetbus_engine::store::{Appended, JobUpdate, Millis, NewEvent, PruneCursor, Store};
use fleetbus_event::{Event, Meta, StoredEvent};
use time::OffsetDateTime;

/// A point in the suite's time, well after the epoch; every case counts from it.
const T0: Millis = 1_800_000_000_000;
const MINUTE: Millis = 60_000;
/// The dedup window the cases commit with.
const WINDOW: Millis = 10 * MINUTE;

/// An event `source`/`id` received at `at`, naming `resources`, with jobs for
/// `targets` of rule `r`.
fn new_event(source: &str, id: &str, at: Millis, resources: &[&str], targets: &[&str]) -> NewEvent {
    let mut event = Event::new(source, "Conformance", serde_json::Map::new());
    event.id = id.to_owned();
    event.resources = resources.iter().map(|r| r.to_string()).collect();
    let received_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .expect("suite time in range");
    event.time = received_at.replace_nanosecond(0).expect("whole seconds");
    let meta = Meta {
        bus: "default".into(),
        received_at,
        ingest_source: "conformance".into(),
        causation_id: None,
        hop: 0,
    };
    let json = event.to_json();
    let jobs = targets
        .iter()
        .map(|t| ("r".to_owned(), t.to_string()))
        .collect();
    NewEvent::new(StoredEvent { event, meta }, &json, jobs, Vec::new()).expect("valid event")
}

/// Commits `events` at their own time and returns the answers.
fn append(store: &mut dyn Store, events: Vec<NewEvent>, now: Millis) -> Vec<Appended> {
    store
        .commit(&events, &[], now, WINDOW)
        .expect("commit succeeds")
}

fn job_ids(a: &Appended) -> Vec<i64> {
    match a {
        Appended::Stored { job_ids, .. } => job_ids.clone(),
        Appended::Duplicate => panic!("expected a stored event, got a duplicate"),
    }
}

fn no_exclusion(_: i64) -> bool {
    false
}

/// An appended event reads back whole by id, on each resource's timeline (newest
/// first) and in its time range.
pub fn appended_events_read_back(store: &mut dyn Store) {
    let a = new_event("s", "a", T0, &["device/C02A"], &[]);
    let b = new_event("s", "b", T0 + 1000, &["device/C02A", "user/ada"], &[]);
    let expected_b = Arc::clone(&b.stored);
    append(store, vec![a, b], T0 + 1000);
    let read = store.event("b").unwrap().expect("event b by id");
    assert_eq!(read.event, expected_b.event);
    assert_eq!(read.meta.ingest_source, "conformance");
    assert!(store.event("nope").unwrap().is_none());
    let ids = |events: Vec<StoredEvent>| -> Vec<String> {
        events.into_iter().map(|e| e.event.id).collect()
    };
    assert_eq!(ids(store.timeline("device/C02A", 10).unwrap()), ["b", "a"]);
    assert_eq!(ids(store.timeline("user/ada", 10).unwrap()), ["b"]);
    assert_eq!(ids(store.timeline("device/C02A", 1).unwrap()), ["b"]);
    assert!(store.timeline("device/none", 10).unwrap().is_empty());
    assert_eq!(
        ids(store.events_between(T0, T0 + 1000, 10).unwrap()),
        ["a"],
        "the range is [from, to)"
    );
    assert_eq!(
        ids(store.events_between(T0, T0 + 1001, 10).unwrap()),
        ["a", "b"]
    );
}

/// A repeat of (source, id) within the window is a duplicate and adds no jobs; the
/// same id from another source, or after the window, is a new event.
pub fn duplicates_are_dropped_within_the_window_only(store: &mut dyn Store) {
    let first = append(store, vec![new_event("s", "x", T0, &[], &["t"])], T0);
    assert_eq!(job_ids(&first[0]).len(), 1);
    let again = append(
        store,
        vec![new_event("s", "x", T0 + MINUTE, &[], &["t"])],
        T0 + MINUTE,
    );
    assert!(matches!(again[0], Appended::Duplicate), "{again:?}");
    // Within one commit too.
    let both = append(
        store,
        vec![
            new_event("s", "y", T0 + MINUTE, &[], &["t"]),
            new_event("s", "y", T0 + MINUTE, &[], &["t"]),
        ],
        T0 + MINUTE,
    );
    assert!(matches!(both[0], Appended::Stored { .. }), "{both:?}");
    assert!(matches!(both[1], Appended::Duplicate), "{both:?}");
    let other_source = append(
        store,
        vec![new_event("s2", "x", T0 + MINUTE, &[], &[])],
        T0 + MINUTE,
    );
    assert!(matches!(other_source[0], Appended::Stored { .. }));
    let later = T0 + WINDOW + MINUTE;
    let after_window = append(store, vec![new_event("s", "x", later, &[], &[])], later);
    assert!(
        matches!(after_window[0], Appended::Stored { .. }),
        "{after_window:?}"
    );
    assert_eq!(store.pending_jobs().unwrap(), 2, "a duplicate queued jobs");
}

/// New jobs are due at once, oldest first, with their event; excluded ids (in
/// flight) and the limit are honoured; job ids follow the order of the jobs.
pub fn new_jobs_are_due_oldest_first(store: &mut dyn Store) {
    let first = append(store, vec![new_event("s", "1", T0, &[], &["a", "b"])], T0);
    let second = append(
        store,
        vec![new_event("s", "2", T0 + 1, &[], &["c"])],
        T0 + 1,
    );
    let ids = job_ids(&first[0]);
    assert_eq!(ids.len(), 2);
    let due = store.due_jobs(T0 + 1, 10, &no_exclusion).unwrap();
    let seen: Vec<(String, String)> = due
        .iter()
        .map(|j| (j.target.clone(), j.event.event.id.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("a".into(), "1".into()),
            ("b".into(), "1".into()),
            ("c".into(), "2".into())
        ]
    );
    assert_eq!(due[0].id, ids[0]);
    assert_eq!(due[0].attempts, 0);
    assert_eq!(due[0].rule, "r");
    let skip = ids[0];
    let rest = store.due_jobs(T0 + 1, 10, &|id| id == skip).unwrap();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|j| j.id != skip));
    assert_eq!(store.due_jobs(T0 + 1, 1, &no_exclusion).unwrap().len(), 1);
    assert_eq!(store.pending_jobs().unwrap(), 3);
    assert_eq!(store.counts().unwrap().pending_jobs, 3);
    assert!(job_ids(&second[0])[0] > ids[1], "job ids grow");
}

/// A retry leaves the job pending but not due before its time, and says when.
pub fn a_retried_job_falls_due_at_its_time(store: &mut dyn Store) {
    let a = append(store, vec![new_event("s", "1", T0, &[], &["t"])], T0);
    let id = job_ids(&a[0])[0];
    let retry = JobUpdate::Retry {
        id,
        attempts: 1,
        next_at: T0 + MINUTE,
        error: "503".into(),
    };
    store.commit(&[], &[retry], T0 + 10, WINDOW).unwrap();
    assert!(store
        .due_jobs(T0 + 10, 10, &no_exclusion)
        .unwrap()
        .is_empty());
    assert_eq!(store.next_due(T0 + 10).unwrap(), Some(T0 + MINUTE));
    let due = store.due_jobs(T0 + MINUTE, 10, &no_exclusion).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    assert_eq!(
        store.pending_jobs().unwrap(),
        1,
        "a retried job is still pending"
    );
}

/// A finished job leaves the queue; a dead one goes to the dead-letter queue with
/// its error, and a redrive (all, or by id) brings it back with a fresh count.
pub fn finished_and_dead_jobs_leave_the_queue_and_dead_ones_redrive(store: &mut dyn Store) {
    let a = append(
        store,
        vec![new_event("s", "1", T0, &[], &["ok", "bad", "worse"])],
        T0,
    );
    let ids = job_ids(&a[0]);
    let updates = [
        JobUpdate::Done {
            id: ids[0],
            attempts: 1,
            status: "200".into(),
        },
        JobUpdate::Dead {
            id: ids[1],
            attempts: 3,
            error: "gave up after 3 attempts".into(),
        },
        JobUpdate::Dead {
            id: ids[2],
            attempts: 1,
            error: "permanent failure: 400".into(),
        },
    ];
    store.commit(&[], &updates, T0 + 10, WINDOW).unwrap();
    assert_eq!(store.pending_jobs().unwrap(), 0);
    assert!(store
        .due_jobs(T0 + 10, 10, &no_exclusion)
        .unwrap()
        .is_empty());
    let counts = store.counts().unwrap();
    assert_eq!((counts.pending_jobs, counts.dead_jobs), (0, 2));
    let dlq = store.dlq_list(10).unwrap();
    assert_eq!(dlq.len(), 2);
    let bad = dlq
        .iter()
        .find(|d| d.job_id == ids[1])
        .expect("dead job listed");
    assert_eq!(
        (
            bad.event_id.as_str(),
            bad.rule.as_str(),
            bad.target.as_str(),
            bad.attempts
        ),
        ("1", "r", "bad", 3)
    );
    assert_eq!(bad.error, "gave up after 3 attempts");
    assert_eq!(store.dlq_list(1).unwrap().len(), 1, "the limit is honoured");
    assert_eq!(
        store.dlq_redrive(Some(&[ids[1]]), T0 + 20).unwrap(),
        [ids[1]]
    );
    assert_eq!(
        store.dlq_redrive(Some(&[ids[0]]), T0 + 20).unwrap(),
        Vec::<i64>::new(),
        "only dead jobs redrive"
    );
    let due = store.due_jobs(T0 + 20, 10, &no_exclusion).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].id, due[0].attempts), (ids[1], 0));
    assert_eq!(store.dlq_redrive(None, T0 + 30).unwrap(), [ids[2]]);
    assert_eq!(store.counts().unwrap().dead_jobs, 0);
    assert_eq!(store.pending_jobs().unwrap(), 2);
}

/// Events and jobs commit together: each event's answer carries its own jobs.
pub fn one_commit_appends_events_and_applies_updates_together(store: &mut dyn Store) {
    let a = append(store, vec![new_event("s", "1", T0, &[], &["t"])], T0);
    let old = job_ids(&a[0])[0];
    let answers = store
        .commit(
            &[
                new_event("s", "2", T0 + 1, &[], &["u", "v"]),
                new_event("s", "3", T0 + 1, &[], &[]),
            ],
            &[JobUpdate::Done {
                id: old,
                attempts: 1,
                status: "200".into(),
            }],
            T0 + 1,
            WINDOW,
        )
        .unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(job_ids(&answers[0]).len(), 2);
    assert!(job_ids(&answers[1]).is_empty());
    assert_eq!(store.pending_jobs().unwrap(), 2);
}

/// Pruning removes old events without pending or dead jobs and old finished jobs,
/// in chunks, and keeps everything else.
pub fn pruning_keeps_what_is_still_owed(store: &mut dyn Store) {
    let old = [
        new_event("s", "old-done", T0, &["device/P"], &["t"]),
        new_event("s", "old-pending", T0 + 1, &["device/P"], &["t"]),
        new_event("s", "old-dead", T0 + 2, &["device/P"], &["t"]),
        new_event("s", "old-plain", T0 + 3, &["device/P"], &[]),
    ];
    let answers = store.commit(&old, &[], T0 + 3, WINDOW).unwrap();
    let done = job_ids(&answers[0])[0];
    let dead = job_ids(&answers[2])[0];
    // The finished job's last update is old; the dead one's is recent.
    store
        .commit(
            &[],
            &[JobUpdate::Done {
                id: done,
                attempts: 1,
                status: "200".into(),
            }],
            T0 + 10,
            WINDOW,
        )
        .unwrap();
    store
        .commit(
            &[new_event("s", "new", T0 + 10 * MINUTE, &["device/P"], &[])],
            &[JobUpdate::Dead {
                id: dead,
                attempts: 1,
                error: "400".into(),
            }],
            T0 + 10 * MINUTE,
            WINDOW,
        )
        .unwrap();
    let (mut events, mut jobs) = (0, 0);
    // Two passes: an event whose last job the first pass removed may go in the next.
    for _ in 0..2 {
        let mut cursor = PruneCursor::default();
        let mut chunks = 0;
        loop {
            // One row per chunk: the cursor must carry the pass forward.
            let p = store
                .prune(T0 + 5 * MINUTE, T0 + 5 * MINUTE, 1, &mut cursor)
                .unwrap();
            events += p.events;
            jobs += p.jobs;
            chunks += 1;
            assert!(chunks < 20, "a pruning pass does not end");
            if !p.more {
                break;
            }
        }
    }
    assert_eq!(
        jobs, 1,
        "the old finished job goes, the recent dead one stays"
    );
    assert_eq!(events, 2, "old-done and old-plain go");
    for kept in ["old-pending", "old-dead", "new"] {
        assert!(store.event(kept).unwrap().is_some(), "{kept} was pruned");
    }
    for gone in ["old-done", "old-plain"] {
        assert!(store.event(gone).unwrap().is_none(), "{gone} was kept");
    }
    let timeline: Vec<String> = store
        .timeline("device/P", 10)
        .unwrap()
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(timeline, ["new", "old-dead", "old-pending"]);
    assert_eq!(store.dlq_list(10).unwrap().len(), 1);
}

/// One `#[test]` per behaviour of the suite, for a backend opened by `$open`: an
/// expression of a closure returning `(Box<dyn Store>, guard)`.
#[macro_export]
macro_rules! store_conformance {
    ($open:expr) => {
        $crate::store_conformance!(@cases $open;
            appended_events_read_back,
            duplicates_are_dropped_within_the_window_only,
            new_jobs_are_due_oldest_first,
            a_retried_job_falls_due_at_its_time,
            finished_and_dead_jobs_leave_the_queue_and_dead_ones_redrive,
            one_commit_appends_events_and_applies_updates_together,
            pruning_keeps_what_is_still_owed
        );
    };
    (@cases $open:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                let (mut store, _guard) = ($open)();
                $crate::store::$case(&mut *store);
            }
        )*
    };
}
