//! Pod status writes: coalesced per pod, many in flight at once.
//!
//! Pod workers hand their latest status to the writer and move on. For each pod only the
//! newest status waits; a write for a pod never overlaps another write for the same pod, so
//! the API always ends on the newest one. Up to [`MAX_IN_FLIGHT`] pods are written at once,
//! which is what lets simulate mode start over a thousand pods a second.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::sync::Notify;

pub const MAX_IN_FLIGHT: usize = 128;
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Identifies a pod object (its uid guards against writing to a newer pod of the same name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Default)]
struct Queue {
    pending: HashMap<PodKey, PodStatus>,
    order: VecDeque<PodKey>,
    in_flight: HashSet<PodKey>,
    closed: bool,
}

/// Hands statuses to the background writer.
#[derive(Clone)]
pub struct StatusWriter {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
}

impl StatusWriter {
    /// Starts the writer task; it runs until [`StatusWriter::close`] and the queue is empty.
    pub fn start(client: kube::Client) -> (StatusWriter, tokio::task::JoinHandle<()>) {
        let writer = StatusWriter {
            queue: Arc::default(),
            wake: Arc::new(Notify::new()),
        };
        let task = tokio::spawn(writer.clone().drive(client));
        (writer, task)
    }

    /// Queues `status` as the pod's newest.
    pub fn submit(&self, key: PodKey, status: PodStatus) {
        let mut queue = self.queue.lock().expect("status queue poisoned");
        if queue.pending.insert(key.clone(), status).is_none() {
            queue.order.push_back(key);
        }
        drop(queue);
        self.wake.notify_one();
    }

    /// Finishes the queued writes, then stops.
    pub fn close(&self) {
        self.queue.lock().expect("status queue poisoned").closed = true;
        self.wake.notify_one();
    }

    /// Takes the next pod that has a status waiting and no write in flight.
    fn take(&self) -> Option<(PodKey, PodStatus)> {
        let mut queue = self.queue.lock().expect("status queue poisoned");
        let waiting = queue.order.len();
        for _ in 0..waiting {
            let key = queue.order.pop_front()?;
            if queue.in_flight.contains(&key) {
                queue.order.push_back(key);
                continue;
            }
            if let Some(status) = queue.pending.remove(&key) {
                queue.in_flight.insert(key.clone());
                return Some((key, status));
            }
        }
        None
    }

    fn finish(&self, key: &PodKey, retry: Option<PodStatus>) {
        let mut queue = self.queue.lock().expect("status queue poisoned");
        queue.in_flight.remove(key);
        if let Some(status) = retry
            && !queue.pending.contains_key(key)
        {
            queue.pending.insert(key.clone(), status);
            queue.order.push_back(key.clone());
        }
    }

    fn idle_and_closed(&self) -> bool {
        let queue = self.queue.lock().expect("status queue poisoned");
        queue.closed && queue.pending.is_empty() && queue.in_flight.is_empty()
    }

    async fn drive(self, client: kube::Client) {
        let mut writes = FuturesUnordered::new();
        loop {
            while writes.len() < MAX_IN_FLIGHT {
                let Some((key, status)) = self.take() else {
                    break;
                };
                writes.push(write(client.clone(), key, status));
            }
            if writes.is_empty() && self.idle_and_closed() {
                return;
            }
            tokio::select! {
                Some((key, retry)) = writes.next(), if !writes.is_empty() => {
                    self.finish(&key, retry);
                }
                () = self.wake.notified() => {}
            }
        }
    }
}

/// Writes one status; returns it back when the write should be retried.
async fn write(
    client: kube::Client,
    key: PodKey,
    status: PodStatus,
) -> (PodKey, Option<PodStatus>) {
    let pods: Api<Pod> = Api::namespaced(client, &key.namespace);
    let patch = json!({"metadata": {"uid": key.uid}, "status": status});
    let result = pods
        .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    let retry = match result {
        Ok(_) => None,
        // The pod is gone or is a different pod now: nothing to report to.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => None,
        Err(error) => {
            tracing::warn!(pod = %key.name, namespace = %key.namespace, %error, "writing pod status failed; retrying");
            // Waiting here keeps the pod's slot busy, so the retry cannot spin.
            tokio::time::sleep(RETRY_DELAY).await;
            Some(status)
        }
    };
    (key, retry)
}
