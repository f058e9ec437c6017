//! kube-rs lists, watches, writes, and recovers from an expired watch by relisting.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use hollow_store::StoreOptions;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

use crate::Server;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

async fn next_event<S>(stream: &mut S) -> Event<Pod>
where
    S: futures::Stream<Item = Result<Event<Pod>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("a watch event within 10 s")
        .expect("the watcher does not fail")
        .expect("the watch stream does not end")
}

#[tokio::test]
async fn watcher_sees_create_modify_delete_in_order() {
    let server = Server::start(StoreOptions::default()).await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    pods.create(&PostParams::default(), &pod("before"))
        .await
        .unwrap();

    let mut events = watcher::watcher(pods.clone(), watcher::Config::default()).boxed();
    assert!(matches!(next_event(&mut events).await, Event::Init));
    match next_event(&mut events).await {
        Event::InitApply(pod) => assert_eq!(pod.metadata.name.as_deref(), Some("before")),
        other => panic!("expected the existing pod, got {other:?}"),
    }
    assert!(matches!(next_event(&mut events).await, Event::InitDone));

    pods.create(&PostParams::default(), &pod("web-0"))
        .await
        .unwrap();
    pods.patch(
        "web-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
    )
    .await
    .unwrap();
    pods.delete("web-0", &DeleteParams::default())
        .await
        .unwrap();

    let created = match next_event(&mut events).await {
        Event::Apply(pod) => pod,
        other => panic!("expected the create, got {other:?}"),
    };
    assert_eq!(created.metadata.name.as_deref(), Some("web-0"));
    let modified = match next_event(&mut events).await {
        Event::Apply(pod) => pod,
        other => panic!("expected the modification, got {other:?}"),
    };
    assert_eq!(modified.metadata.labels.unwrap()["tier"], "front");
    let created_version: u64 = created.metadata.resource_version.unwrap().parse().unwrap();
    let modified_version: u64 = modified.metadata.resource_version.unwrap().parse().unwrap();
    assert!(modified_version > created_version);
    match next_event(&mut events).await {
        Event::Delete(pod) => assert_eq!(pod.metadata.name.as_deref(), Some("web-0")),
        other => panic!("expected the delete, got {other:?}"),
    }

    let listed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|pod| pod.metadata.name.clone())
        .collect();
    assert_eq!(names, ["before"]);
}

#[tokio::test]
async fn an_expired_watch_gets_an_in_stream_410_and_the_watcher_relists() {
    let history = 20;
    let server = Server::start(StoreOptions {
        history_capacity: history,
        ..StoreOptions::default()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let start = pods
        .create(&PostParams::default(), &pod("first"))
        .await
        .unwrap();
    let old_version = start.metadata.resource_version.unwrap();
    for index in 0..history * 2 {
        pods.create(&PostParams::default(), &pod(&format!("filler-{index}")))
            .await
            .unwrap();
    }

    // A raw watch from a version older than the history: HTTP 200, then an ERROR event with 410.
    let mut stream = pods
        .watch(&WatchParams::default(), &old_version)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
    {
        Ok(Some(WatchEvent::Error(status))) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected an in-stream 410, got {other:?}"),
    }

    // The runtime watcher: list, then (before it starts watching) the history moves on past the
    // list's version, so its watch expires; it must relist and carry on.
    let mut events = watcher::watcher(pods.clone(), watcher::Config::default()).boxed();
    assert!(matches!(next_event(&mut events).await, Event::Init));
    let mut initial = 0;
    loop {
        match next_event(&mut events).await {
            Event::InitApply(_) => initial += 1,
            Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(initial, 1 + history * 2);
    for index in 0..history * 2 {
        pods.delete(&format!("filler-{index}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    // kube-rs surfaces the 410 as one error item, then relists on the next poll.
    let item = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("a watch item within 10 s")
        .expect("the watch stream does not end");
    match item {
        Err(watcher::Error::WatchError(status)) => assert_eq!(status.code, 410),
        other => panic!("expected the in-stream 410, got {other:?}"),
    }
    assert!(
        matches!(next_event(&mut events).await, Event::Init),
        "the watcher relists after the 410"
    );
    let mut relisted = Vec::new();
    loop {
        match next_event(&mut events).await {
            Event::InitApply(pod) => relisted.push(pod.metadata.name.unwrap()),
            Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(relisted, ["first"]);
    pods.create(&PostParams::default(), &pod("after"))
        .await
        .unwrap();
    match next_event(&mut events).await {
        Event::Apply(pod) => assert_eq!(pod.metadata.name.as_deref(), Some("after")),
        other => panic!("expected the new pod, got {other:?}"),
    }
}

#[tokio::test]
async fn lists_page_with_limit_and_continue_and_filter_by_label() {
    let server = Server::start(StoreOptions::default()).await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    for index in 0..7 {
        let mut object = pod(&format!("p{index}"));
        if index % 2 == 1 {
            object
                .metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("odd".into(), "yes".into());
        }
        pods.create(&PostParams::default(), &object).await.unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(3);
    let mut pages = 0;
    let mut first_version = None;
    loop {
        let page = pods.list(&params).await.unwrap();
        pages += 1;
        names.extend(
            page.items
                .iter()
                .filter_map(|pod| pod.metadata.name.clone()),
        );
        first_version.get_or_insert(page.metadata.resource_version.clone());
        assert_eq!(
            Some(&page.metadata.resource_version),
            first_version.as_ref(),
            "every page reports the first page's revision"
        );
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);

    let odd = pods
        .list(&ListParams::default().labels("odd=yes").limit(2))
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 2);
    let rest = pods
        .list(
            &ListParams::default()
                .labels("odd=yes")
                .continue_token(odd.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    let mut all: Vec<_> = odd
        .items
        .iter()
        .chain(rest.items.iter())
        .filter_map(|pod| pod.metadata.name.clone())
        .collect();
    all.sort();
    assert_eq!(all, ["p1", "p3", "p5"]);
}
