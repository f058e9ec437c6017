//! A redb store reopened from its file has every acknowledged write and keeps counting.

use bytes::Bytes;
use hollow_store::{Error, EventKind, Precondition, Store, StoreOptions, constant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_redb_store_keeps_every_acknowledged_write() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("store.redb");

    let store = Store::open_redb(&path, StoreOptions::default()).unwrap();
    assert_eq!(store.current_revision(), 0);
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for index in 0..25 {
                store
                    .create(
                        format!("/reopen/{writer}/{index}"),
                        constant(format!("{writer}.{index}")),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let updated = store
        .update("/reopen/0/0", Precondition::MustExist, constant("updated"))
        .await
        .unwrap();
    let deleted = store
        .delete("/reopen/0/1", Precondition::None, constant("final"))
        .await
        .unwrap();
    assert_eq!(deleted.kind, EventKind::Deleted);
    let last = store.current_revision();
    assert_eq!(last, 202);
    drop(store);

    let store = Store::open_redb(&path, StoreOptions::default()).unwrap();
    assert_eq!(store.current_revision(), last);
    // History does not survive a restart: only watches from now on.
    assert_eq!(store.oldest_watchable_revision(), last);
    assert!(matches!(store.watch("", 0), Err(Error::Expired { .. })));

    let page = store.list("/reopen/", None, None).unwrap();
    assert_eq!(page.revision, last);
    assert_eq!(page.records.len(), 199);
    for writer in 0..8 {
        for index in 0..25 {
            let key = format!("/reopen/{writer}/{index}");
            let record = store.get(&key).unwrap();
            match (writer, index) {
                (0, 0) => {
                    let record = record.unwrap();
                    assert_eq!(record.value, Bytes::from_static(b"updated"));
                    assert_eq!(record.mod_revision, updated.revision);
                    assert!(record.create_revision < updated.revision);
                }
                (0, 1) => assert!(record.is_none()),
                _ => assert_eq!(
                    record.expect("acknowledged create survives").value,
                    Bytes::from(format!("{writer}.{index}"))
                ),
            }
        }
    }

    let mut watch = store.watch("/reopen/", last).unwrap();
    let next = store.create("/reopen/after", constant("x")).await.unwrap();
    assert_eq!(next.revision, last + 1);
    assert_eq!(watch.next().await.unwrap().unwrap().revision, last + 1);
    drop(watch);
    drop(store);

    let store = Store::open_redb(&path, StoreOptions::default()).unwrap();
    assert_eq!(store.current_revision(), last + 1);
}

#[tokio::test]
async fn a_redb_file_cannot_be_opened_twice() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("store.redb");
    let _store = Store::open_redb(&path, StoreOptions::default()).unwrap();
    assert!(matches!(
        Store::open_redb(&path, StoreOptions::default()),
        Err(Error::Backend(_))
    ));
}
