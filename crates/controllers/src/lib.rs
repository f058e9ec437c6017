//! hollow's controllers: the control loops that turn desired state into objects.
//!
//! - [`endpointslice`] and [`endpoints`]: a Service's selected pods become
//!   EndpointSlices (and the legacy Endpoints object). This is where a headless Service
//!   gets its members.
//! - [`statefulset`], [`replicaset`], [`deployment`]: workloads become pods.
//! - [`scheduler`]: pods without a node are bound to a Ready Node.
//! - [`garbage_collector`]: dependents of deleted owners go away (background,
//!   foreground and orphan propagation).
//! - [`index`]: pods by label, owner and name, Services by selector, slices by Service,
//!   so that one change costs work proportional to what it touches.
//!
//! Other crates call [`run`]`(client, Options::default(), shutdown)`: it watches the API
//! server, runs every controller until `shutdown` completes, and needs nothing but a
//! `kube::Client`, so it runs against a real cluster as well as against hollow's.
//!
//! # Layout and data flow
//!
//! ```text
//!  API server ──watch──▶ reflector stores (Arc<T>) ──▶ kube::runtime::Controller
//!                 (one watch per kind, fanned out)       │ (de-duplicating queue, back-off)
//!                                                        ▼
//!                                  pure reconcile(inputs) ──▶ Plan { create, update, … }
//!                                                                  │
//!  API server ◀──create/replace/patch/delete/events──── executor::Executor
//! ```
//!
//! Each watch updates its store and then, before any controller hears of the change, the
//! [`index`]es beside it. A pod change reaches the Services that select it through the
//! Service index, and each of them plans from its candidates in the pod index; the
//! EndpointSlice reconciler reuses a per-Service memo of unchanged pods' endpoints
//! ([`endpointslice::EndpointCache`]) and plans on its own recent writes until the slice
//! watch shows them, so a busy Service is reconciled again as soon as its last write
//! returns. The legacy Endpoints object has its own controller, so rewriting it for a big
//! Service never delays the slices.
//!
//! Every reconciler is a pure function from the object and the related cached objects
//! to a [`plan::Plan`]: no client, no clock (the time is passed in where a status needs
//! one). Tests assert on the exact plan. The private `wiring` module connects the
//! reconcilers to kube-rs's controller runtime, and [`executor::Executor`] applies plans
//! through `kube::Api`, recording events for `kubectl describe`.
//!
//! # Decisions worth knowing
//!
//! - EndpointSlices carry Kubernetes' own `endpointslice.kubernetes.io/managed-by:
//!   endpointslice-controller.k8s.io` by default (hollow is the controller manager);
//!   set [`endpointslice::Settings::managed_by`] through [`Options`] to run beside a real
//!   kube-controller-manager. Slices managed by anyone else are never touched.
//! - The annotation `service.alpha.kubernetes.io/tolerate-unready-endpoints: "true"`
//!   still acts as `publishNotReadyAddresses`, although upstream dropped it in 1.24.
//! - The legacy Endpoints object is owned by its Service (an owner reference), so the
//!   garbage collector removes it with the Service.
//! - Revisions of StatefulSets are template hashes rather than ControllerRevision
//!   objects; see [`statefulset`] and [`deployment`] for what else is left out.

pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod executor;
pub mod garbage_collector;
pub mod index;
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
