//! The store conformance suite: what every storage backend must do, as one async
//! function per behaviour over `&dyn Store`. A backend's tests run all of them with
//! one line, one `#[tokio::test]` each so a failure names its behaviour:
//!
//! ```text
//! fleetbus_test_support::store_conformance!(|options| {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = SqliteStore::open(dir.path(), options).unwrap();
//!     (Box::new(store) as Box<dyn Store>, dir)
//! });
//! ```
//!
//! The opener gets the [`OPTIONS`] to open with and returns the store and a guard
//! kept alive for the test (a temporary directory, a database to drop). Every case
//! passes its own clock (`now`), so leases and windows are exact.

use std::sync::Arc;

use fleetbus_engine::store::{
    Appended, Attachment, EventQuery, GroupField, JobUpdate, Millis, NewEvent, PruneCursor,
    ReplaySpec, ReplayState, ReplayStep, Store, StoreOptions, FIRST_FENCE,
};
use fleetbus_event::{Event, Meta, StoredEvent};
use time::OffsetDateTime;

/// A point in the suite's time, well after the epoch; every case counts from it.
const T0: Millis = 1_800_000_000_000;
const MINUTE: Millis = 60_000;
/// The dedup window the cases open the store with.
const WINDOW: Millis = 10 * MINUTE;
/// How long a claim holds.
const LEASE: Millis = 5 * MINUTE;

/// What the opener must open the store with.
pub const OPTIONS: StoreOptions = StoreOptions {
    dedup_window_ms: WINDOW,
    lease_ms: LEASE,
};

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
        root_id: None,
        attachment: None,
    };
    let json = event.to_json();
    let jobs = targets
        .iter()
        .map(|t| ("r".to_owned(), t.to_string()))
        .collect();
    NewEvent::new(StoredEvent { event, meta }, &json, jobs, Vec::new()).expect("valid event")
}

/// Appends `events` at `now` and returns the answers.
async fn append(store: &dyn Store, events: Vec<NewEvent>, now: Millis) -> Vec<Appended> {
    store
        .append(events, now)
        .await
        .expect("append succeeds")
        .into_iter()
        .map(|(_, a)| a)
        .collect()
}

/// Applies `updates` at `now`; returns the ids refused for a stale fence.
async fn complete(store: &dyn Store, updates: Vec<JobUpdate>, now: Millis) -> Vec<i64> {
    store
        .complete(updates, Vec::new(), now)
        .await
        .expect("completion succeeds")
        .fenced
}

/// Ends the appender's claims on `ids`, so they are due at `now`.
async fn release(store: &dyn Store, ids: &[i64], now: Millis) {
    let claims = ids.iter().map(|&id| (id, FIRST_FENCE)).collect();
    store.release(claims, now).await.expect("release succeeds");
}

fn job_ids(a: &Appended) -> Vec<i64> {
    match a {
        Appended::Stored { job_ids, .. } => job_ids.clone(),
        Appended::Duplicate => panic!("expected a stored event, got a duplicate"),
    }
}

/// An appended event reads back whole by id, on each resource's timeline (newest
/// first) and in its time range.
pub async fn appended_events_read_back(store: &dyn Store) {
    let a = new_event("s", "a", T0, &["device/C02A"], &[]);
    let b = new_event("s", "b", T0 + 1000, &["device/C02A", "user/ada"], &[]);
    let expected_b = Arc::clone(&b.stored);
    append(store, vec![a, b], T0 + 1000).await;
    let read = store
        .event("b".into())
        .await
        .unwrap()
        .expect("event b by id");
    assert_eq!(read.event, expected_b.event);
    assert_eq!(read.meta.ingest_source, "conformance");
    assert!(store.event("nope".into()).await.unwrap().is_none());
    let ids = |events: Vec<StoredEvent>| -> Vec<String> {
        events.into_iter().map(|e| e.event.id).collect()
    };
    let timeline = |r: &str, n| store.timeline(r.to_owned(), n);
    assert_eq!(ids(timeline("device/C02A", 10).await.unwrap()), ["b", "a"]);
    assert_eq!(ids(timeline("user/ada", 10).await.unwrap()), ["b"]);
    assert_eq!(ids(timeline("device/C02A", 1).await.unwrap()), ["b"]);
    assert!(timeline("device/none", 10).await.unwrap().is_empty());
    assert_eq!(
        ids(store.events_between(T0, T0 + 1000, 10).await.unwrap()),
        ["a"],
        "the range is [from, to)"
    );
    assert_eq!(
        ids(store.events_between(T0, T0 + 1001, 10).await.unwrap()),
        ["a", "b"]
    );
}

/// A repeat of (source, id) within the window is a duplicate and adds no jobs; the
/// same id from another source, or after the window, is a new event.
pub async fn duplicates_are_dropped_within_the_window_only(store: &dyn Store) {
    let first = append(store, vec![new_event("s", "x", T0, &[], &["t"])], T0).await;
    assert_eq!(job_ids(&first[0]).len(), 1);
    let again = append(
        store,
        vec![new_event("s", "x", T0 + MINUTE, &[], &["t"])],
        T0 + MINUTE,
    )
    .await;
    assert!(matches!(again[0], Appended::Duplicate), "{again:?}");
    // Within one append too.
    let both = append(
        store,
        vec![
            new_event("s", "y", T0 + MINUTE, &[], &["t"]),
            new_event("s", "y", T0 + MINUTE, &[], &["t"]),
        ],
        T0 + MINUTE,
    )
    .await;
    assert!(matches!(both[0], Appended::Stored { .. }), "{both:?}");
    assert!(matches!(both[1], Appended::Duplicate), "{both:?}");
    let other_source = append(
        store,
        vec![new_event("s2", "x", T0 + MINUTE, &[], &[])],
        T0 + MINUTE,
    )
    .await;
    assert!(matches!(other_source[0], Appended::Stored { .. }));
    let later = T0 + WINDOW + MINUTE;
    let after_window = append(store, vec![new_event("s", "x", later, &[], &[])], later).await;
    assert!(
        matches!(after_window[0], Appended::Stored { .. }),
        "{after_window:?}"
    );
    assert_eq!(
        store.pending_jobs().await.unwrap(),
        2,
        "a duplicate queued jobs"
    );
}

/// Appended jobs are the appender's: nobody can claim them while its lease holds,
/// and anyone can once it has run out (a crashed appender's jobs are not lost).
pub async fn appended_jobs_are_claimed_by_the_appender_until_the_lease_ends(store: &dyn Store) {
    let a = append(store, vec![new_event("s", "1", T0, &[], &["a", "b"])], T0).await;
    let ids = job_ids(&a[0]);
    assert!(store.claim(T0, 10).await.unwrap().is_empty());
    assert!(store.claim(T0 + LEASE - 1, 10).await.unwrap().is_empty());
    assert_eq!(
        store.next_due(T0).await.unwrap(),
        Some(T0 + LEASE),
        "the lease's end"
    );
    let taken = store.claim(T0 + LEASE, 10).await.unwrap();
    let got: Vec<(i64, u64)> = taken.iter().map(|j| (j.id, j.fence)).collect();
    assert_eq!(got, [(ids[0], FIRST_FENCE + 1), (ids[1], FIRST_FENCE + 1)]);
    assert!(
        store.claim(T0 + LEASE, 10).await.unwrap().is_empty(),
        "a claimed job is not claimed twice"
    );
    assert_eq!(
        store.pending_jobs().await.unwrap(),
        2,
        "claimed jobs are pending"
    );
}

/// Released jobs are due at once, oldest first, with their event; the limit is
/// honoured; job ids follow the order of the jobs; a release under a stale fence
/// changes nothing.
pub async fn released_jobs_are_claimed_oldest_first(store: &dyn Store) {
    let first = append(store, vec![new_event("s", "1", T0, &[], &["a", "b"])], T0).await;
    let second = append(
        store,
        vec![new_event("s", "2", T0 + 1, &[], &["c"])],
        T0 + 1,
    )
    .await;
    let ids = job_ids(&first[0]);
    assert_eq!(ids.len(), 2);
    assert!(job_ids(&second[0])[0] > ids[1], "job ids grow");
    release(store, &[ids[0], ids[1], job_ids(&second[0])[0]], T0 + 1).await;
    let one = store.claim(T0 + 1, 1).await.unwrap();
    assert_eq!(one.len(), 1, "the limit is honoured");
    let rest = store.claim(T0 + 1, 10).await.unwrap();
    let seen: Vec<(String, String)> = one
        .iter()
        .chain(&rest)
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
    assert_eq!(one[0].id, ids[0]);
    assert_eq!(one[0].attempts, 0);
    assert_eq!(one[0].rule, "r");
    // The first claim's fence is stale now: releasing under it does nothing.
    release(store, &[ids[0]], T0 + 2).await;
    assert!(store.claim(T0 + 2, 10).await.unwrap().is_empty());
    assert_eq!(store.pending_jobs().await.unwrap(), 3);
    assert_eq!(store.counts().await.unwrap().pending_jobs, 3);
}

/// A retry leaves the job pending but not due before its time, and says when.
pub async fn a_retried_job_falls_due_at_its_time(store: &dyn Store) {
    let a = append(store, vec![new_event("s", "1", T0, &[], &["t"])], T0).await;
    let id = job_ids(&a[0])[0];
    let retry = JobUpdate::Retry {
        id,
        fence: FIRST_FENCE,
        attempts: 1,
        next_at: T0 + MINUTE,
        error: "503".into(),
    };
    assert!(complete(store, vec![retry], T0 + 10).await.is_empty());
    assert!(store.claim(T0 + 10, 10).await.unwrap().is_empty());
    assert_eq!(store.next_due(T0 + 10).await.unwrap(), Some(T0 + MINUTE));
    let due = store.claim(T0 + MINUTE, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    assert_eq!(
        store.pending_jobs().await.unwrap(),
        1,
        "a retried job is still pending"
    );
}

/// Only the latest claim completes a job: an attempt whose lease ran out and whose
/// job was claimed again is refused, and the new claim's outcome is applied.
pub async fn a_stale_claim_cannot_complete_a_job(store: &dyn Store) {
    let a = append(store, vec![new_event("s", "1", T0, &[], &["t"])], T0).await;
    let id = job_ids(&a[0])[0];
    let again = store.claim(T0 + LEASE, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    let done = |fence| JobUpdate::Done {
        id,
        fence,
        attempts: 1,
        status: "200".into(),
    };
    assert_eq!(
        complete(store, vec![done(FIRST_FENCE)], T0 + LEASE + 1).await,
        [id]
    );
    assert_eq!(
        store.pending_jobs().await.unwrap(),
        1,
        "a stale completion applied"
    );
    assert!(complete(store, vec![done(again[0].fence)], T0 + LEASE + 2)
        .await
        .is_empty());
    assert_eq!(store.pending_jobs().await.unwrap(), 0);
    assert_eq!(
        complete(store, vec![done(again[0].fence)], T0 + LEASE + 3).await,
        [id],
        "a finished job is not finished twice"
    );
}

/// A finished job leaves the queue; a dead one goes to the dead-letter queue with
/// its error, and a redrive (all, or by id) brings it back with a fresh count.
pub async fn finished_and_dead_jobs_leave_the_queue_and_dead_ones_redrive(store: &dyn Store) {
    let a = append(
        store,
        vec![new_event("s", "1", T0, &[], &["ok", "bad", "worse"])],
        T0,
    )
    .await;
    let ids = job_ids(&a[0]);
    let updates = vec![
        JobUpdate::Done {
            id: ids[0],
            fence: FIRST_FENCE,
            attempts: 1,
            status: "200".into(),
        },
        JobUpdate::Dead {
            id: ids[1],
            fence: FIRST_FENCE,
            attempts: 3,
            error: "gave up after 3 attempts".into(),
        },
        JobUpdate::Dead {
            id: ids[2],
            fence: FIRST_FENCE,
            attempts: 1,
            error: "permanent failure: 400".into(),
        },
    ];
    assert!(complete(store, updates, T0 + 10).await.is_empty());
    assert_eq!(store.pending_jobs().await.unwrap(), 0);
    assert!(store.claim(T0 + LEASE, 10).await.unwrap().is_empty());
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.pending_jobs, counts.dead_jobs), (0, 2));
    let dlq = store.dlq_list(10).await.unwrap();
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
    assert_eq!(
        store.dlq_list(1).await.unwrap().len(),
        1,
        "the limit is honoured"
    );
    assert_eq!(
        store
            .dlq_redrive(Some(vec![ids[1]]), T0 + 20)
            .await
            .unwrap(),
        [ids[1]]
    );
    assert_eq!(
        store
            .dlq_redrive(Some(vec![ids[0]]), T0 + 20)
            .await
            .unwrap(),
        Vec::<i64>::new(),
        "only dead jobs redrive"
    );
    let due = store.claim(T0 + 20, 10).await.unwrap();
    assert_eq!(due.len(), 1, "a redriven job is due at once");
    assert_eq!((due[0].id, due[0].attempts), (ids[1], 0));
    assert_eq!(store.dlq_redrive(None, T0 + 30).await.unwrap(), [ids[2]]);
    assert_eq!(store.counts().await.unwrap().dead_jobs, 0);
    assert_eq!(store.pending_jobs().await.unwrap(), 2);
}

/// A completion appends its outcome events with the updates: each event's answer
/// carries its own jobs.
pub async fn a_completion_appends_events_and_applies_updates_together(store: &dyn Store) {
    let a = append(store, vec![new_event("s", "1", T0, &[], &["t"])], T0).await;
    let old = job_ids(&a[0])[0];
    let completed = store
        .complete(
            vec![JobUpdate::Done {
                id: old,
                fence: FIRST_FENCE,
                attempts: 1,
                status: "200".into(),
            }],
            vec![
                new_event("s", "2", T0 + 1, &[], &["u", "v"]),
                new_event("s", "3", T0 + 1, &[], &[]),
            ],
            T0 + 1,
        )
        .await
        .unwrap();
    assert!(completed.fenced.is_empty());
    let answers: Vec<Appended> = completed.appended.into_iter().map(|(_, a)| a).collect();
    assert_eq!(answers.len(), 2);
    assert_eq!(job_ids(&answers[0]).len(), 2);
    assert!(job_ids(&answers[1]).is_empty());
    assert_eq!(store.pending_jobs().await.unwrap(), 2);
}

/// Pruning removes old events without pending or dead jobs and old finished jobs,
/// in chunks, and keeps everything else.
pub async fn pruning_keeps_what_is_still_owed(store: &dyn Store) {
    let old = vec![
        new_event("s", "old-done", T0, &["device/P"], &["t"]),
        new_event("s", "old-pending", T0 + 1, &["device/P"], &["t"]),
        new_event("s", "old-dead", T0 + 2, &["device/P"], &["t"]),
        new_event("s", "old-plain", T0 + 3, &["device/P"], &[]),
    ];
    let answers = append(store, old, T0 + 3).await;
    let done = job_ids(&answers[0])[0];
    let dead = job_ids(&answers[2])[0];
    // The finished job's last update is old; the dead one's is recent.
    let update = JobUpdate::Done {
        id: done,
        fence: FIRST_FENCE,
        attempts: 1,
        status: "200".into(),
    };
    assert!(complete(store, vec![update], T0 + 10).await.is_empty());
    store
        .complete(
            vec![JobUpdate::Dead {
                id: dead,
                fence: FIRST_FENCE,
                attempts: 1,
                error: "400".into(),
            }],
            vec![new_event("s", "new", T0 + 10 * MINUTE, &["device/P"], &[])],
            T0 + 10 * MINUTE,
        )
        .await
        .unwrap();
    let (mut events, mut jobs) = (0, 0);
    // Two passes: an event whose last job the first pass removed may go in the next.
    for _ in 0..2 {
        let mut cursor = PruneCursor::default();
        let mut chunks = 0;
        loop {
            // One row per chunk: the cursor must carry the pass forward.
            let (p, next) = store
                .prune(T0 + 5 * MINUTE, T0 + 5 * MINUTE, T0 + 5 * MINUTE, 1, cursor)
                .await
                .unwrap();
            cursor = next;
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
        assert!(
            store.event(kept.into()).await.unwrap().is_some(),
            "{kept} was pruned"
        );
    }
    for gone in ["old-done", "old-plain"] {
        assert!(
            store.event(gone.into()).await.unwrap().is_none(),
            "{gone} was kept"
        );
    }
    let timeline: Vec<String> = store
        .timeline("device/P".into(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(timeline, ["new", "old-dead", "old-pending"]);
    assert_eq!(store.dlq_list(10).await.unwrap().len(), 1);
}

/// A role has one holder at a time: it renews its own hold, and another holder
/// gets the role only once the hold has run out unrenewed. Roles are separate.
pub async fn leadership_has_one_holder_until_its_hold_runs_out(store: &dyn Store) {
    let lead = |who: &str, now| store.lead("prune", who.to_owned(), now, MINUTE);
    assert!(lead("a", T0).await.unwrap());
    assert!(!lead("b", T0 + 1).await.unwrap());
    assert!(
        lead("a", T0 + MINUTE - 1).await.unwrap(),
        "the holder renews"
    );
    assert!(
        !lead("b", T0 + MINUTE).await.unwrap(),
        "renewed until T0 + 2 min - 1"
    );
    assert!(
        store
            .lead("schedule", "b".into(), T0 + 1, MINUTE)
            .await
            .unwrap(),
        "another role is free"
    );
    assert!(
        lead("b", T0 + 2 * MINUTE - 1).await.unwrap(),
        "taken once run out"
    );
    assert!(!lead("a", T0 + 2 * MINUTE).await.unwrap());
}

/// Follows a query's pages to the end (window `window`), appending `more` events
/// before each page after the first; returns the ids seen, in order.
async fn follow(store: &dyn Store, mut q: EventQuery, window: u64, more: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut extra = 0;
    for page_no in 0.. {
        assert!(page_no < 1_000, "the pages never end");
        if page_no > 0 {
            let batch = (0..more)
                .map(|_| {
                    extra += 1;
                    new_event(
                        "late",
                        &format!("late-{extra}"),
                        T0 + 10 * MINUTE,
                        &["device/A"],
                        &[],
                    )
                })
                .collect();
            append(store, batch, T0 + 10 * MINUTE).await;
        }
        let page = store
            .query(q.clone(), window)
            .await
            .expect("query succeeds");
        assert!(
            page.events.len() <= q.limit,
            "a page holds at most limit events"
        );
        let seqs: Vec<i64> = page.events.iter().map(|(s, _)| *s).collect();
        let mut sorted = seqs.clone();
        if q.oldest_first {
            sorted.sort();
        } else {
            sorted.sort_by(|a, b| b.cmp(a));
        }
        assert_eq!(seqs, sorted, "a page is in the query's order");
        seen.extend(page.events.into_iter().map(|(_, e)| e.event.id));
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    seen
}

/// Queries filter by source, detail-type, resource and receipt time, and paging
/// (in either order, with windows smaller than the data) never skips or repeats
/// an event while others are appended: newest first ends at the events that were
/// there when it began, oldest first goes on into the new ones.
pub async fn queries_page_without_skips_or_repeats_under_concurrent_appends(store: &dyn Store) {
    let events: Vec<NewEvent> = (0..50)
        .map(|i| {
            let res: &[&str] = if i % 2 == 0 {
                &["device/A"]
            } else {
                &["device/B"]
            };
            new_event(
                if i % 5 == 0 { "five" } else { "other" },
                &format!("e{i:02}"),
                T0 + i * 1000,
                res,
                &[],
            )
        })
        .collect();
    append(store, events, T0 + 50_000).await;
    let all: Vec<String> = (0..50).map(|i| format!("e{i:02}")).collect();
    let q = EventQuery {
        limit: 7,
        ..EventQuery::default()
    };
    let newest = follow(store, q.clone(), 10, 3).await;
    let mut want = all.clone();
    want.reverse();
    assert_eq!(
        newest, want,
        "newest first: each event once, none of the late ones"
    );
    let oldest = follow(
        store,
        EventQuery {
            oldest_first: true,
            ..q.clone()
        },
        10,
        3,
    )
    .await;
    assert_eq!(
        &oldest[..50],
        &all[..],
        "oldest first: each event once, in order"
    );
    let mut unique = oldest.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), oldest.len(), "no repeats");
    assert!(oldest[50..].iter().all(|id| id.starts_with("late-")));
    // Filters.
    let five = follow(
        store,
        EventQuery {
            source: Some("five".into()),
            oldest_first: true,
            ..q.clone()
        },
        1_000,
        0,
    )
    .await;
    assert_eq!(
        five,
        ["e00", "e05", "e10", "e15", "e20", "e25", "e30", "e35", "e40", "e45"]
    );
    let b = follow(
        store,
        EventQuery {
            resource: Some("device/B".into()),
            until: Some(T0 + 10_000),
            oldest_first: true,
            ..q.clone()
        },
        3,
        0,
    )
    .await;
    assert_eq!(b, ["e01", "e03", "e05", "e07", "e09"]);
    let window = follow(
        store,
        EventQuery {
            since: Some(T0 + 47_000),
            until: Some(T0 + 49_500),
            ..q.clone()
        },
        1_000,
        0,
    )
    .await;
    assert_eq!(window, ["e49", "e48", "e47"]);
    let none = follow(
        store,
        EventQuery {
            detail_type: Some("Nothing Like It".into()),
            ..q
        },
        1_000,
        0,
    )
    .await;
    assert!(none.is_empty());
}

/// An event's effects are the events whose causation id is its id, oldest first.
pub async fn effects_are_the_events_an_event_caused(store: &dyn Store) {
    let root = new_event("s", "root", T0, &[], &[]);
    let root_stored = root.stored.clone();
    append(store, vec![root], T0).await;
    let derived = |id: &str, at: Millis, cause: &StoredEvent| {
        let mut e = new_event("fleetbus.delivery", id, at, &[], &[]);
        let mut stored = (*e.stored).clone();
        stored.meta = Meta {
            received_at: stored.meta.received_at,
            ..Meta::caused_by(cause, "default", "delivery")
        };
        e = NewEvent::new(
            stored.clone(),
            &stored.event.to_json(),
            Vec::new(),
            Vec::new(),
        )
        .expect("valid event");
        e
    };
    let a = derived("a", T0 + 1, &root_stored);
    let a_stored = a.stored.clone();
    append(store, vec![a, derived("b", T0 + 2, &root_stored)], T0 + 2).await;
    append(store, vec![derived("a1", T0 + 3, &a_stored)], T0 + 3).await;
    let ids = |v: Vec<StoredEvent>| v.into_iter().map(|e| e.event.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.effects("root".into(), 10).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(ids(store.effects("root".into(), 1).await.unwrap()), ["a"]);
    assert_eq!(ids(store.effects("a".into(), 10).await.unwrap()), ["a1"]);
    assert!(store.effects("b".into(), 10).await.unwrap().is_empty());
    assert!(store.effects("nope".into(), 10).await.unwrap().is_empty());
}

/// An attachment is stored with its event and read by the event's id; a duplicate's
/// attachment is not stored; pruning the event removes its attachment.
pub async fn attachments_live_and_go_with_their_event(store: &dyn Store) {
    let attached = |id: &str, at: Millis, body: &[u8]| {
        let mut e = new_event("s", id, at, &["device/A"], &[]);
        e.attachment = Some(std::sync::Arc::new(Attachment {
            content_type: "application/json".into(),
            body: body.to_vec(),
        }));
        e
    };
    let plain = new_event("s", "plain", T0, &[], &[]);
    let answers = append(
        store,
        vec![attached("big", T0, b"{\"apps\":[1,2,3]}"), plain],
        T0,
    )
    .await;
    assert!(matches!(answers[0], Appended::Stored { .. }));
    let got = store
        .attachment("big".into())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(got.content_type, "application/json");
    assert_eq!(got.body, b"{\"apps\":[1,2,3]}");
    assert_eq!(store.attachment("plain".into()).await.unwrap(), None);
    assert_eq!(store.attachment("nothing".into()).await.unwrap(), None);
    // A duplicate within the window adds nothing, its attachment neither.
    let again = append(store, vec![attached("big", T0 + 1, b"other")], T0 + 1).await;
    assert_eq!(again, [Appended::Duplicate]);
    let got = store.attachment("big".into()).await.unwrap().unwrap();
    assert_eq!(got.body, b"{\"apps\":[1,2,3]}");
    // Pruned with its event.
    let mut cursor = PruneCursor::default();
    loop {
        let (p, next) = store
            .prune(T0 + MINUTE, T0 + MINUTE, T0 + MINUTE, 100, cursor)
            .await
            .unwrap();
        cursor = next;
        if !p.more {
            break;
        }
    }
    assert!(store.event("big".into()).await.unwrap().is_none());
    assert_eq!(store.attachment("big".into()).await.unwrap(), None);
}

/// Prunes everything received before `before` at `now`, in one pass.
async fn prune_all(store: &dyn Store, now: Millis, before: Millis) -> usize {
    let mut cursor = PruneCursor::default();
    let mut events = 0;
    loop {
        let (p, next) = store.prune(now, before, before, 100, cursor).await.unwrap();
        cursor = next;
        events += p.events;
        if !p.more {
            return events;
        }
    }
}

/// An event kept by a named archive's retention outlives the default one, and
/// goes once that runs out.
pub async fn kept_events_outlive_the_default_retention(store: &dyn Store) {
    let mut kept = new_event("s", "kept", T0, &["device/K"], &[]);
    kept.keep_until = Some(T0 + 60 * MINUTE);
    let plain = new_event("s", "plain", T0, &["device/K"], &[]);
    append(store, vec![kept, plain], T0).await;
    assert_eq!(prune_all(store, T0 + 10 * MINUTE, T0 + MINUTE).await, 1);
    assert!(store.event("kept".into()).await.unwrap().is_some());
    assert!(store.event("plain".into()).await.unwrap().is_none());
    assert_eq!(prune_all(store, T0 + 61 * MINUTE, T0 + MINUTE).await, 1);
    assert!(store.event("kept".into()).await.unwrap().is_none());
}

fn spec(name: &str) -> ReplaySpec {
    ReplaySpec {
        name: name.into(),
        description: Some("after the outage".into()),
        archive: "default".into(),
        bus: "default".into(),
        from: T0,
        to: T0 + MINUTE,
        rules: vec!["audit".into()],
    }
}

/// A replay is created once by name, queues its jobs with the cursor in one step
/// (only while running), hands them out with `replay-name` on the event, and
/// moves between states only from the states given.
pub async fn replays_queue_their_jobs_with_their_cursor(store: &dyn Store) {
    let e = new_event("s", "r1", T0, &[], &[]);
    let seq = match &append(store, vec![e], T0).await[0] {
        Appended::Stored { seq, .. } => *seq,
        other => panic!("{other:?}"),
    };
    assert!(store.replay_create(spec("again"), T0 + 1).await.unwrap());
    assert!(
        !store.replay_create(spec("again"), T0 + 2).await.unwrap(),
        "the name is taken"
    );
    let r = store
        .replay("again".into())
        .await
        .unwrap()
        .expect("created");
    assert_eq!(
        (r.state, r.cursor, r.events, r.jobs),
        (ReplayState::Starting, None, 0, 0)
    );
    assert_eq!(r.spec, spec("again"));
    let step = |jobs: Vec<(i64, String, String)>| ReplayStep {
        name: "again".into(),
        jobs,
        cursor: seq,
        last_replayed: Some(T0),
        events: 1,
    };
    let job = vec![(seq, "audit".to_owned(), "t".to_owned())];
    assert_eq!(
        store
            .replay_advance(step(job.clone()), T0 + 3)
            .await
            .unwrap(),
        None,
        "a replay still starting queues nothing"
    );
    assert!(store
        .replay_state(
            "again".into(),
            vec![ReplayState::Starting],
            ReplayState::Running,
            None,
            T0 + 4
        )
        .await
        .unwrap());
    let ids = store
        .replay_advance(step(job), T0 + 5)
        .await
        .unwrap()
        .expect("running");
    assert_eq!(ids.len(), 1);
    let claimed = store.claim(T0 + 5, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, ids[0]);
    assert_eq!(claimed[0].event.event.id, "r1");
    assert_eq!(claimed[0].event.event.replay_name.as_deref(), Some("again"));
    let r = store.replay("again".into()).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.cursor, r.last_replayed, r.events, r.jobs),
        (ReplayState::Running, Some(seq), Some(T0), 1, 1)
    );
    assert!(
        !store
            .replay_state(
                "again".into(),
                vec![ReplayState::Starting],
                ReplayState::Completed,
                None,
                T0 + 6
            )
            .await
            .unwrap(),
        "not from a state it is not in"
    );
    assert!(store
        .replay_state(
            "again".into(),
            vec![ReplayState::Running],
            ReplayState::Cancelled,
            Some("asked".into()),
            T0 + 7
        )
        .await
        .unwrap());
    let r = store.replay("again".into()).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.reason.as_deref(), r.ended_at),
        (ReplayState::Cancelled, Some("asked"), Some(T0 + 7))
    );
    assert!(store.replay_create(spec("later"), T0 + 8).await.unwrap());
    let names: Vec<String> = store
        .replays(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.spec.name)
        .collect();
    assert_eq!(names, ["later", "again"], "most recent first");
    assert!(store.replay("nope".into()).await.unwrap().is_none());
}

/// API rules are documents by (bus, name): put creates or replaces, delete says
/// whether there was one.
pub async fn api_rules_are_kept_by_bus_and_name(store: &dyn Store) {
    assert!(store.api_rules().await.unwrap().is_empty());
    let put = |bus: &str, name: &str, doc: &str| {
        store.api_rule_put(bus.into(), name.into(), doc.into(), T0)
    };
    put("default", "b", "{\"v\":1}").await.unwrap();
    put("default", "a", "{\"v\":2}").await.unwrap();
    put("other", "a", "{\"v\":3}").await.unwrap();
    put("default", "b", "{\"v\":4}").await.unwrap();
    assert_eq!(
        store.api_rules().await.unwrap(),
        ["{\"v\":2}", "{\"v\":4}", "{\"v\":3}"]
    );
    assert!(store
        .api_rule_delete("default".into(), "a".into())
        .await
        .unwrap());
    assert!(!store
        .api_rule_delete("default".into(), "a".into())
        .await
        .unwrap());
    assert_eq!(store.api_rules().await.unwrap().len(), 2);
}

/// The store counts events per bucket and detail-type or source by itself.
pub async fn counts_are_grouped_by_bucket_and_field(store: &dyn Store) {
    let mut events = Vec::new();
    for (i, source) in ["a", "a", "b", "a"].iter().enumerate() {
        events.push(new_event(
            source,
            &format!("g{i}"),
            T0 + i as Millis * MINUTE,
            &[],
            &[],
        ));
    }
    append(store, events, T0 + 4 * MINUTE).await;
    // Buckets of two minutes counted from a minute before the first event; the
    // range leaves the last event out.
    let mut got = store
        .count_grouped(
            GroupField::Source,
            T0 - MINUTE,
            T0,
            T0 + 3 * MINUTE,
            2 * MINUTE,
        )
        .await
        .unwrap();
    got.sort();
    assert_eq!(
        got,
        [
            (0, "a".to_owned(), 1),
            (1, "a".to_owned(), 1),
            (1, "b".to_owned(), 1)
        ]
    );
    let by_type = store
        .count_grouped(GroupField::DetailType, T0, T0, T0 + 4 * MINUTE, 4 * MINUTE)
        .await
        .unwrap();
    assert_eq!(by_type, [(0, "Conformance".to_owned(), 4)]);
}

/// One `#[tokio::test]` per behaviour of the suite, for a backend opened by
/// `$open`: a closure taking the [`OPTIONS`] and returning `(Box<dyn Store>, guard)`.
#[macro_export]
macro_rules! store_conformance {
    ($open:expr) => {
        $crate::store_conformance!(@cases $open;
            appended_events_read_back,
            duplicates_are_dropped_within_the_window_only,
            appended_jobs_are_claimed_by_the_appender_until_the_lease_ends,
            released_jobs_are_claimed_oldest_first,
            a_retried_job_falls_due_at_its_time,
            a_stale_claim_cannot_complete_a_job,
            finished_and_dead_jobs_leave_the_queue_and_dead_ones_redrive,
            a_completion_appends_events_and_applies_updates_together,
            pruning_keeps_what_is_still_owed,
            leadership_has_one_holder_until_its_hold_runs_out,
            queries_page_without_skips_or_repeats_under_concurrent_appends,
            effects_are_the_events_an_event_caused,
            attachments_live_and_go_with_their_event,
            kept_events_outlive_the_default_retention,
            replays_queue_their_jobs_with_their_cursor,
            api_rules_are_kept_by_bus_and_name,
            counts_are_grouped_by_bucket_and_field
        );
    };
    (@cases $open:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = ($open)($crate::store::OPTIONS);
                $crate::store::$case(&*store).await;
            }
        )*
    };
}
