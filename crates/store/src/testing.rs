//! The conformance suite: behaviour every [`Store`] must show, whatever its backend.
//!
//! Each check is a public `async fn` taking a constructor that builds a [`Store`] over a fresh,
//! empty backend with the given [`StoreOptions`]. The checks panic on a failure, like tests.
//! [`conformance_tests!`](crate::conformance_tests) turns the whole suite into one
//! `#[tokio::test]` per check:
//!
//! ```text
//! mod memory {
//!     hollow_store::conformance_tests!(|options| hollow_store::Store::in_memory(options));
//! }
//! ```
//!
//! The checks never assert on timing; they only bound waits so that a hang fails instead of
//! stalling the test run.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;

use crate::{
    Encoder, Error, Event, EventKind, Precondition, Result, Revision, Store, StoreOptions, Write,
    constant,
};

/// Builds a store over a fresh, empty backend.
pub type MakeStore<'a> = &'a dyn Fn(StoreOptions) -> Store;

/// How long any single check may take before it counts as hung.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Generates one `#[tokio::test]` per conformance check, each building its stores with `$make`
/// (an expression evaluating to a `Fn(StoreOptions) -> Store`, evaluated once per test). The
/// calling crate needs `tokio` with the `macros`, `rt-multi-thread` and `time` features.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            create_get_and_list,
            list_pages_with_start_after_and_limit,
            list_matching_filters_before_the_limit,
            revisions_strictly_increase_across_keys,
            preconditions_guard_writes,
            delete_honours_preconditions,
            encoder_sees_current_record_and_revision,
            watch_from_zero_replays_everything,
            watch_from_a_recent_revision,
            watch_delivers_live_events,
            watch_has_no_gap_between_replay_and_live,
            watch_filters_by_prefix,
            watch_before_retained_history_is_expired,
            slow_watcher_expires_without_blocking_writes,
            concurrent_writers_get_distinct_revisions,
            shutdown_ends_writes_and_watches
        );
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let make = $make;
                let check = $crate::testing::$check(&make);
                if tokio::time::timeout($crate::testing::CHECK_TIMEOUT, check).await.is_err() {
                    panic!("conformance check {} hung", stringify!($check));
                }
            }
        )*
    };
}

fn put(key: &str, precondition: Precondition, value: &str) -> Write {
    Write::Put {
        key: key.to_owned(),
        precondition,
        value: constant(Bytes::copy_from_slice(value.as_bytes())),
    }
}

fn delete(key: &str, precondition: Precondition) -> Write {
    Write::Delete {
        key: key.to_owned(),
        precondition,
        final_value: constant(Bytes::from_static(b"gone")),
    }
}

fn never_called() -> Encoder {
    Box::new(|_, _| panic!("the encoder of a write whose precondition failed must not run"))
}

async fn must(store: &Store, write: Write) -> Event {
    match store.write(write).await {
        Ok(event) => event,
        Err(error) => panic!("write failed: {error}"),
    }
}

async fn next_event(watch: &mut crate::Watch) -> Event {
    match watch.next().await {
        Some(Ok(event)) => Event::clone(&event),
        Some(Err(error)) => panic!("watch failed: {error}"),
        None => panic!("watch ended early"),
    }
}

fn keys(page: &crate::Page) -> Vec<&str> {
    page.records
        .iter()
        .map(|record| record.key.as_str())
        .collect()
}

/// Created keys can be read back one by one and listed by prefix, in key order.
pub async fn create_get_and_list(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    let start = store.current_revision();
    let b = must(&store, put("/pods/b", Precondition::MustNotExist, "B")).await;
    let a = must(&store, put("/pods/a", Precondition::MustNotExist, "A")).await;
    let service = must(&store, put("/services/a", Precondition::MustNotExist, "S")).await;
    assert_eq!(b.kind, EventKind::Created);
    assert_eq!(b.revision, start + 1);
    assert_eq!(b.previous, None);
    assert_eq!(service.revision, start + 3);
    assert_eq!(store.current_revision(), start + 3);

    let record = store
        .get("/pods/a")
        .unwrap()
        .expect("created key is readable");
    assert_eq!(record.key, "/pods/a");
    assert_eq!(record.value, Bytes::from_static(b"A"));
    assert_eq!(record.create_revision, a.revision);
    assert_eq!(record.mod_revision, a.revision);
    assert_eq!(store.get("/pods/missing").unwrap(), None);
    // A prefix of a key is not the key.
    assert_eq!(store.get("/pods/").unwrap(), None);

    let pods = store.list("/pods/", None, None).unwrap();
    assert_eq!(keys(&pods), ["/pods/a", "/pods/b"]);
    assert_eq!(pods.revision, start + 3);
    assert!(!pods.more);
    let everything = store.list("", None, None).unwrap();
    assert_eq!(keys(&everything), ["/pods/a", "/pods/b", "/services/a"]);
    assert!(
        store
            .list("/nodes/", None, None)
            .unwrap()
            .records
            .is_empty()
    );
}

/// `start_after` and `limit` walk a prefix page by page without gaps or repeats.
pub async fn list_pages_with_start_after_and_limit(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    for index in (0..25).rev() {
        must(
            &store,
            put(&format!("/items/{index:03}"), Precondition::None, "x"),
        )
        .await;
    }
    must(&store, put("/itemz", Precondition::None, "outside")).await;
    must(&store, put("/item", Precondition::None, "outside")).await;

    let mut seen = Vec::new();
    let mut start_after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list("/items/", start_after.as_deref(), Some(10))
            .unwrap();
        pages += 1;
        assert_eq!(page.revision, store.current_revision());
        seen.extend(page.records.iter().map(|record| record.key.clone()));
        if !page.more {
            assert_eq!(page.records.len(), 5);
            break;
        }
        assert_eq!(page.records.len(), 10);
        start_after = page.records.last().map(|record| record.key.clone());
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|index| format!("/items/{index:03}")).collect();
    assert_eq!(seen, expected);

    // A limit equal to what is left reports no more; a start_after before the prefix is ignored.
    let page = store.list("/items/", Some("/items/019"), Some(5)).unwrap();
    assert_eq!(page.records.len(), 5);
    assert!(!page.more);
    let page = store.list("/items/", Some("/a"), Some(1)).unwrap();
    assert_eq!(keys(&page), ["/items/000"]);
    assert!(page.more);
    let page = store.list("/items/", Some("/items/024"), None).unwrap();
    assert!(page.records.is_empty());
    assert!(!page.more);
}

/// A filtered list counts only matching records against its limit and pages through the rest.
pub async fn list_matching_filters_before_the_limit(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    for index in 0..20 {
        let colour = if index % 3 == 0 { "red" } else { "blue" };
        must(
            &store,
            put(&format!("/things/{index:02}"), Precondition::None, colour),
        )
        .await;
    }
    must(&store, put("/thingz", Precondition::None, "red")).await;
    let mut red = |_: &str, value: &[u8]| value == b"red";

    let everything = store
        .list_matching("/things/", None, None, &mut red)
        .unwrap();
    assert_eq!(
        keys(&everything),
        [
            "/things/00",
            "/things/03",
            "/things/06",
            "/things/09",
            "/things/12",
            "/things/15",
            "/things/18"
        ]
    );
    assert!(!everything.more);
    assert_eq!(everything.revision, store.current_revision());

    let mut seen = Vec::new();
    let mut start_after: Option<String> = None;
    loop {
        let page = store
            .list_matching("/things/", start_after.as_deref(), Some(3), &mut red)
            .unwrap();
        assert!(page.records.len() <= 3);
        assert!(page.records.iter().all(|record| record.value == "red"));
        seen.extend(page.records.iter().map(|record| record.key.clone()));
        if !page.more {
            break;
        }
        start_after = page.records.last().map(|record| record.key.clone());
    }
    let expected: Vec<String> = keys(&everything)
        .iter()
        .map(|key| key.to_string())
        .collect();
    assert_eq!(seen, expected);

    // The filter sees every key under the prefix, with its value.
    let mut visited = 0;
    let none = store
        .list_matching("/things/", None, None, &mut |key, _| {
            assert!(key.starts_with("/things/"));
            visited += 1;
            false
        })
        .unwrap();
    assert!(none.records.is_empty());
    assert_eq!(visited, 20);
}

/// One global revision: every write, whatever its key, gets the next one.
pub async fn revisions_strictly_increase_across_keys(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    let start = store.current_revision();
    let mut last = start;
    for index in 0..20 {
        let key = format!("/key/{}", index % 3);
        let event = must(&store, put(&key, Precondition::None, "v")).await;
        assert_eq!(event.revision, last + 1);
        last = event.revision;
        let record = store.get(&key).unwrap().unwrap();
        assert_eq!(record.mod_revision, event.revision);
        assert!(record.create_revision <= record.mod_revision);
    }
    assert_eq!(store.current_revision(), start + 20);
}

/// MustNotExist, MustExist and ModRevision; failures consume no revision.
pub async fn preconditions_guard_writes(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    let created = must(&store, put("/k", Precondition::MustNotExist, "1")).await;
    let after_create = store.current_revision();

    let duplicate = store
        .create("/k".to_owned(), never_called())
        .await
        .unwrap_err();
    assert!(matches!(duplicate, Error::AlreadyExists(ref key) if key == "/k"));
    let missing = store
        .update("/missing", Precondition::MustExist, never_called())
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(ref key) if key == "/missing"));
    let missing = store
        .update("/missing", Precondition::ModRevision(1), never_called())
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)));
    let stale = store
        .update(
            "/k",
            Precondition::ModRevision(created.revision + 1000),
            never_called(),
        )
        .await
        .unwrap_err();
    match stale {
        Error::Conflict {
            key,
            expected,
            current,
        } => {
            assert_eq!(key, "/k");
            assert_eq!(expected, created.revision + 1000);
            assert_eq!(current, created.revision);
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(store.current_revision(), after_create);

    let updated = must(
        &store,
        put("/k", Precondition::ModRevision(created.revision), "2"),
    )
    .await;
    assert_eq!(updated.kind, EventKind::Updated);
    assert_eq!(updated.revision, after_create + 1);
    assert_eq!(updated.previous, Some(Bytes::from_static(b"1")));
    // The old revision no longer matches.
    let stale = store
        .update(
            "/k",
            Precondition::ModRevision(created.revision),
            never_called(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(stale, Error::Conflict { current, .. } if current == updated.revision),
        "{stale}"
    );
    let again = must(&store, put("/k", Precondition::MustExist, "3")).await;
    let upsert = must(&store, put("/new", Precondition::None, "4")).await;
    assert_eq!(upsert.kind, EventKind::Created);
    let record = store.get("/k").unwrap().unwrap();
    assert_eq!(record.create_revision, created.revision);
    assert_eq!(record.mod_revision, again.revision);
    assert_eq!(record.value, Bytes::from_static(b"3"));
}

/// Deletes need the key to exist and honour ModRevision; the event carries the final value.
pub async fn delete_honours_preconditions(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    let missing = store
        .delete("/gone", Precondition::None, never_called())
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)));

    let created = must(&store, put("/k", Precondition::None, "alive")).await;
    let stale = store
        .delete(
            "/k",
            Precondition::ModRevision(created.revision + 1),
            never_called(),
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, Error::Conflict { current, .. } if current == created.revision));
    assert!(store.get("/k").unwrap().is_some());

    let deleted = must(
        &store,
        delete("/k", Precondition::ModRevision(created.revision)),
    )
    .await;
    assert_eq!(deleted.kind, EventKind::Deleted);
    assert_eq!(deleted.revision, created.revision + 1);
    assert_eq!(deleted.value, Bytes::from_static(b"gone"));
    assert_eq!(deleted.previous, Some(Bytes::from_static(b"alive")));
    assert_eq!(store.get("/k").unwrap(), None);
    assert!(store.list("/k", None, None).unwrap().records.is_empty());
    let twice = store
        .delete("/k", Precondition::MustExist, never_called())
        .await
        .unwrap_err();
    assert!(matches!(twice, Error::NotFound(_)));

    // Re-creating starts a new life: a new create revision.
    let reborn = must(&store, put("/k", Precondition::MustNotExist, "again")).await;
    assert_eq!(reborn.kind, EventKind::Created);
    let record = store.get("/k").unwrap().unwrap();
    assert_eq!(record.create_revision, reborn.revision);
}

/// The encoder gets the key's current record and the revision its write will have.
pub async fn encoder_sees_current_record_and_revision(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    let created = store
        .create(
            "/k",
            Box::new(|current, revision| {
                assert!(current.is_none(), "a create sees no current record");
                Bytes::from(format!("v@{revision}"))
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        created.value,
        Bytes::from(format!("v@{}", created.revision))
    );

    let created_revision = created.revision;
    let updated = store
        .update(
            "/k",
            Precondition::MustExist,
            Box::new(move |current, revision| {
                let current = current.expect("an update sees the current record");
                assert_eq!(current.key, "/k");
                assert_eq!(current.mod_revision, created_revision);
                assert_eq!(revision, created_revision + 1);
                let mut value = current.value.to_vec();
                value.extend_from_slice(format!("+v@{revision}").as_bytes());
                Bytes::from(value)
            }),
        )
        .await
        .unwrap();
    let expected = format!("v@{created_revision}+v@{}", updated.revision);
    assert_eq!(updated.value, Bytes::from(expected.clone()));
    assert_eq!(
        store.get("/k").unwrap().unwrap().value,
        Bytes::from(expected)
    );

    let updated_revision = updated.revision;
    let deleted = store
        .delete(
            "/k",
            Precondition::None,
            Box::new(move |current, revision| {
                let current = current.expect("a delete sees the current record");
                assert_eq!(current.mod_revision, updated_revision);
                Bytes::from(format!("deleted@{revision}"))
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        deleted.value,
        Bytes::from(format!("deleted@{}", deleted.revision))
    );

    // Writes batched together see each other: the second encoder sees the first write.
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.create("/batched", constant("first")).await }
    });
    let second = store
        .update(
            "/batched",
            Precondition::None,
            Box::new(|current, _| match current {
                Some(record) => {
                    Bytes::from(format!("{}+second", String::from_utf8_lossy(&record.value)))
                }
                None => Bytes::from_static(b"second"),
            }),
        )
        .await
        .unwrap();
    let first = first.await.unwrap();
    let value = store.get("/batched").unwrap().unwrap().value;
    match first {
        // The create went first; the update built on it.
        Ok(first) => {
            assert!(first.revision < second.revision);
            assert_eq!(value, Bytes::from_static(b"first+second"));
        }
        // The update went first and created the key; the create found it.
        Err(Error::AlreadyExists(_)) => assert_eq!(value, Bytes::from_static(b"second")),
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// A watch from the store's first revision replays every event, in order.
pub async fn watch_from_zero_replays_everything(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    let start = store.current_revision();
    assert_eq!(store.oldest_watchable_revision(), start);
    let created = must(&store, put("/k", Precondition::None, "1")).await;
    let updated = must(&store, put("/k", Precondition::None, "2")).await;
    let deleted = must(&store, delete("/k", Precondition::None)).await;

    let mut watch = store.watch("", start).unwrap();
    for expected in [&created, &updated, &deleted] {
        let event = next_event(&mut watch).await;
        assert_eq!(event.revision, expected.revision);
        assert_eq!(event.kind, expected.kind);
        assert_eq!(event.key, expected.key);
        assert_eq!(event.value, expected.value);
        assert_eq!(event.previous, expected.previous);
    }
    assert_eq!(
        [created.kind, updated.kind, deleted.kind],
        [EventKind::Created, EventKind::Updated, EventKind::Deleted]
    );
}

/// A watch from a recent revision gets exactly the events after it.
pub async fn watch_from_a_recent_revision(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    let mut revisions = Vec::new();
    for index in 0..10 {
        let event = must(&store, put(&format!("/k/{index}"), Precondition::None, "v")).await;
        revisions.push(event.revision);
    }
    let mut watch = store.watch("", revisions[6]).unwrap();
    for expected in &revisions[7..] {
        assert_eq!(next_event(&mut watch).await.revision, *expected);
    }
    let live = must(&store, put("/k/live", Precondition::None, "v")).await;
    let event = next_event(&mut watch).await;
    assert_eq!(event.revision, live.revision);
    assert_eq!(event.key, "/k/live");

    // A watch from the current revision replays nothing and sees only what comes next.
    let mut watch = store.watch("", store.current_revision()).unwrap();
    let next = must(&store, put("/k/next", Precondition::None, "v")).await;
    assert_eq!(next_event(&mut watch).await.revision, next.revision);

    // A watch from a revision the store has not reached yet skips everything up to it.
    let ahead = store.current_revision() + 2;
    let mut watch = store.watch("", ahead).unwrap();
    for index in 0..3 {
        must(
            &store,
            put(&format!("/k/ahead/{index}"), Precondition::None, "v"),
        )
        .await;
    }
    let event = next_event(&mut watch).await;
    assert_eq!(event.revision, ahead + 1);
    assert_eq!(event.key, "/k/ahead/2");
}

/// Events written after the watch started arrive, in order, to every watcher.
pub async fn watch_delivers_live_events(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    let start = store.current_revision();
    let mut first = store.watch("/live/", start).unwrap();
    let mut second = store.watch("/live/", start).unwrap();
    let consumer = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..30 {
            seen.push(next_event(&mut first).await.revision);
        }
        seen
    });
    let mut written = Vec::new();
    for index in 0..30 {
        let event = must(
            &store,
            put(&format!("/live/{}", index % 4), Precondition::None, "v"),
        )
        .await;
        written.push(event.revision);
    }
    assert_eq!(consumer.await.unwrap(), written);
    for expected in &written {
        assert_eq!(next_event(&mut second).await.revision, *expected);
    }
}

/// A watch opened while writes are in flight sees every revision after its start exactly once.
pub async fn watch_has_no_gap_between_replay_and_live(make: MakeStore<'_>) {
    const WRITERS: usize = 4;
    const WRITES_EACH: usize = 100;
    let store = make(StoreOptions::default());
    let start = store.current_revision();
    let total = (WRITERS * WRITES_EACH) as Revision;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for index in 0..WRITES_EACH {
                let key = format!("/gap/{writer}/{index}");
                store
                    .write(put(&key, Precondition::MustNotExist, "v"))
                    .await
                    .unwrap();
            }
        }));
    }
    // Open watches at several points while the writers run.
    let mut watches = Vec::new();
    while watches.len() < 5 {
        let now = store.current_revision();
        let after = now.saturating_sub(7).max(start);
        watches.push((after, store.watch("/gap/", after).unwrap()));
        if now >= start + total {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for (after, mut watch) in watches {
        let mut expected = after + 1;
        while expected <= start + total {
            let event = next_event(&mut watch).await;
            assert_eq!(event.revision, expected, "watch from {after}");
            assert!(event.key.starts_with("/gap/"));
            expected += 1;
        }
    }
}

/// A watch sees only keys under its prefix.
pub async fn watch_filters_by_prefix(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    let start = store.current_revision();
    must(&store, put("/pods/default/a", Precondition::None, "v")).await;
    must(&store, put("/services/default/a", Precondition::None, "v")).await;
    must(&store, put("/pods/kube-system/a", Precondition::None, "v")).await;
    let mut pods = store.watch("/pods/", start).unwrap();
    let mut default_pods = store.watch("/pods/default/", start).unwrap();
    must(&store, put("/podsecurity/x", Precondition::None, "v")).await;
    must(&store, put("/pods/default/b", Precondition::None, "v")).await;

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut pods).await.key);
    }
    assert_eq!(
        seen,
        ["/pods/default/a", "/pods/kube-system/a", "/pods/default/b"]
    );
    assert_eq!(next_event(&mut default_pods).await.key, "/pods/default/a");
    assert_eq!(next_event(&mut default_pods).await.key, "/pods/default/b");
}

/// Once the history is trimmed, a watch from before it is refused with `Expired`.
pub async fn watch_before_retained_history_is_expired(make: MakeStore<'_>) {
    let store = make(StoreOptions {
        history_capacity: 5,
        ..StoreOptions::default()
    });
    let start = store.current_revision();
    for index in 0..20 {
        must(&store, put(&format!("/k/{index}"), Precondition::None, "v")).await;
    }
    let oldest = start + 15;
    assert_eq!(store.oldest_watchable_revision(), oldest);
    match store.watch("", start + 1) {
        Err(Error::Expired {
            requested,
            oldest: reported,
        }) => {
            assert_eq!(requested, start + 1);
            assert_eq!(reported, oldest);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(matches!(
        store.watch("", oldest - 1),
        Err(Error::Expired { .. })
    ));
    let mut watch = store.watch("", oldest).unwrap();
    for revision in oldest + 1..=start + 20 {
        assert_eq!(next_event(&mut watch).await.revision, revision);
    }
}

/// A watcher nobody reads is cut off with `Expired`; writes and other watchers carry on.
pub async fn slow_watcher_expires_without_blocking_writes(make: MakeStore<'_>) {
    let store = make(StoreOptions {
        watch_buffer: 4,
        ..StoreOptions::default()
    });
    let start = store.current_revision();
    let mut slow = store.watch("", start).unwrap();
    let mut fast = store.watch("", start).unwrap();
    for index in 0..50 {
        let event = must(&store, put(&format!("/k/{index}"), Precondition::None, "v")).await;
        assert_eq!(next_event(&mut fast).await.revision, event.revision);
    }
    match slow.next().await {
        Some(Err(Error::Expired { requested, .. })) => assert_eq!(requested, start),
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(slow.next().await.is_none());
    assert!(slow.next().await.is_none());
    // The expired watcher no longer holds anything back; a new watch resumes fine.
    let mut again = store.watch("", start + 45).unwrap();
    assert_eq!(next_event(&mut again).await.revision, start + 46);
}

/// 16 tasks × 200 writes: all acknowledged, all with distinct, contiguous revisions.
pub async fn concurrent_writers_get_distinct_revisions(make: MakeStore<'_>) {
    const WRITERS: usize = 16;
    const WRITES_EACH: usize = 200;
    // The watch below is read only after all writes; let its queue hold all of them.
    let store = make(StoreOptions {
        watch_buffer: 2 * WRITERS * WRITES_EACH,
        ..StoreOptions::default()
    });
    let start = store.current_revision();
    let mut watch = store.watch("/concurrent/", start).unwrap();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::with_capacity(WRITES_EACH);
            for index in 0..WRITES_EACH {
                let key = format!("/concurrent/{writer:02}/{index:04}");
                let event: Result<Event> = store.create(key, constant("v")).await;
                revisions.push(event.unwrap().revision);
            }
            revisions
        }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        let revisions = task.await.unwrap();
        assert!(
            revisions.windows(2).all(|pair| pair[0] < pair[1]),
            "one writer's revisions increase"
        );
        all.extend(revisions);
    }
    let total = (WRITERS * WRITES_EACH) as Revision;
    assert_eq!(all.len() as Revision, total, "revisions are distinct");
    assert_eq!(all.first().copied(), Some(start + 1));
    assert_eq!(all.last().copied(), Some(start + total));
    assert_eq!(store.current_revision(), start + total);
    let page = store.list("/concurrent/", None, None).unwrap();
    assert_eq!(page.records.len() as Revision, total);
    assert_eq!(page.revision, start + total);
    for revision in start + 1..=start + total {
        assert_eq!(next_event(&mut watch).await.revision, revision);
    }
}

/// After shutdown, writes fail with `Closed` and watches end once drained.
pub async fn shutdown_ends_writes_and_watches(make: MakeStore<'_>) {
    let store = make(StoreOptions::default());
    let start = store.current_revision();
    let mut watch = store.watch("", start).unwrap();
    let written = must(&store, put("/k", Precondition::None, "v")).await;
    let clone = store.clone();
    store.shutdown().await;
    assert!(matches!(
        clone.write(put("/k2", Precondition::None, "v")).await,
        Err(Error::Closed)
    ));
    assert_eq!(next_event(&mut watch).await.revision, written.revision);
    assert!(watch.next().await.is_none());
    // Reads still work from the backend.
    assert!(store.get("/k").unwrap().is_some());
    let mut late = store.watch("", start).unwrap();
    assert_eq!(next_event(&mut late).await.revision, written.revision);
    assert!(late.next().await.is_none());
}
