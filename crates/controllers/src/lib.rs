//! hollow's controllers: the control loops that turn desired state into objects.
//!
//! - [`endpointslice`] and [`endpoints`]: a Service's selected pods become
//!   EndpointSlices (and the legacy Endpoints object). This is where a headless Service
//!   gets its members.
//! - [`statefulset`], [`replicaset`], [`deployment`]: workloads become pods.
//! - [`scheduler`]: pods without a node are bound to a Ready Node.
//! - [`garbage_collector`]: dependents of deleted owners go away (background,
//!   foreground and orphan propagation).
//!
//! # Layout and data flow
//!
//! ```text
//!  API server ──watch──▶ reflector stores (Arc<T>) ──▶ kube::runtime::Controller
//!                                                        │ (dedup queue, back-off)
//!                                                        ▼
//!                                  pure reconcile(inputs) ──▶ Plan { create, update, … }
//!                                                                  │
//!  API server ◀──create/replace/patch/delete────── executor::Executor
//! ```
//!
//! Every reconciler is a pure function from the object and the related cached objects
//! to a [`plan::Plan`]; no client, no clock (the time is passed in where a status needs
//! one). Tests assert on the exact plan. [`run`] wires the reconcilers to kube-rs's
//! controller runtime, and [`executor::Executor`] applies plans through `kube::Api`.
//! Controllers talk to the API server only through the Kubernetes API, so they run
//! against a real cluster as well as against hollow's.

pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod executor;
pub mod garbage_collector;
pub mod meta;
pub mod plan;
pub mod replicaset;
pub mod scheduler;
pub mod statefulset;
mod wiring;

#[cfg(test)]
mod fixtures;

pub use plan::Plan;
pub use wiring::{Error, Options, run};
