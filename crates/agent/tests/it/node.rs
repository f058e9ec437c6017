//! Node registration and pod ranges.

use hollow_agent::AgentConfig;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::Agent;
use hollow_testkit::LocalApiServer;

async fn wait_for_node(client: &kube::Client, name: &str) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + crate::WAIT;
    loop {
        if let Some(node) = nodes.get_opt(name).await.unwrap()
            && node
                .status
                .as_ref()
                .and_then(|status| status.node_info.as_ref())
                .is_some()
        {
            return node;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {name} never registered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn nodes_register_ready_with_their_own_ranges() {
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = hollow_testkit::TempDir::new().unwrap();
    // Simulated agents: registration does not depend on the mode.
    let mut first = AgentConfig::new("n1", data.path().join("n1"));
    first.simulate = true;
    let first = Agent::start(client.clone(), first);
    let n1 = wait_for_node(&client, "n1").await;
    let mut second = AgentConfig::new("n2", data.path().join("n2"));
    second.simulate = true;
    let second = Agent::start(client.clone(), second);
    let n2 = wait_for_node(&client, "n2").await;

    assert_eq!(
        n1.spec.as_ref().unwrap().pod_cidr.as_deref(),
        Some("127.244.0.0/24")
    );
    assert_eq!(
        n2.spec.as_ref().unwrap().pod_cidr.as_deref(),
        Some("127.244.1.0/24")
    );
    let status = n1.status.unwrap();
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|condition| condition.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert!(ready.last_heartbeat_time.is_some());
    let addresses = status.addresses.unwrap();
    assert!(
        addresses
            .iter()
            .any(|address| address.type_ == "InternalIP" && address.address == "127.0.0.1")
    );
    assert_eq!(status.capacity.unwrap()["pods"].0, "253");
    assert!(
        status
            .node_info
            .unwrap()
            .kubelet_version
            .starts_with("v1.37")
    );
    first.stop().await;
    second.stop().await;

    // A restarted agent keeps its node's range.
    let mut again = AgentConfig::new("n2", data.path().join("n2"));
    again.simulate = true;
    let again = Agent::start(client.clone(), again);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let n2 = wait_for_node(&client, "n2").await;
    assert_eq!(n2.spec.unwrap().pod_cidr.as_deref(), Some("127.244.1.0/24"));
    again.stop().await;
}
