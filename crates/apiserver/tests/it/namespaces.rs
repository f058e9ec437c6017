//! Writes into a namespace stop as soon as the namespace is deleted, even right after a write
//! into it succeeded (the server remembers namespaces it found active).

use hollow_store::StoreOptions;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::Server;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

#[tokio::test]
async fn a_deleted_namespace_refuses_the_next_create() {
    let server = Server::start(StoreOptions::default()).await;
    let client = server.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "doomed");
    for name in ["first", "second"] {
        pods.create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }

    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let refused = pods
        .create(&PostParams::default(), &pod("third"))
        .await
        .expect_err("a create into a deleted namespace is refused");
    let kube::Error::Api(status) = refused else {
        panic!("expected a Status, got {refused:?}");
    };
    // Terminating (403) while the cleaner works, not found (404) once it is done.
    assert!(
        [403, 404].contains(&status.code),
        "unexpected status {status:?}"
    );

    // A namespace of the same name made again takes writes again.
    let recreated = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            if namespaces
                .create(&PostParams::default(), &namespace)
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(recreated.is_ok(), "the namespace is removed and made again");
    pods.create(&PostParams::default(), &pod("fourth"))
        .await
        .unwrap();
}
