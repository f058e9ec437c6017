//! Types every hollow component shares: the Kubernetes object model, the resources hollow
//! serves, and the rules for names, labels and selectors.
//!
//! # Layout
//!
//! * [`k8s_openapi`] is re-exported: the generated Kubernetes types are the typed views that the
//!   API server validates with and that controllers, DNS, agent and proxy read.
//! * [`resource`]: the registry of served resources (group, version, kind, plural, scope,
//!   short names, categories, verbs, subresources). Discovery, routing and storage keys are all
//!   derived from it, so adding a kind is one table entry.
//! * [`selector`]: label and field selectors, parsed and matched as kube-apiserver does.
//! * [`validation`]: DNS-1123/1035 names, qualified names, label values, object metadata, with
//!   kube-apiserver's messages, as [`validation::FieldError`]s that name the field.
//!
//! Nothing here does I/O or depends on an async runtime.

pub use k8s_openapi;

pub mod resource;
pub mod selector;
pub mod validation;

pub use resource::{RESOURCES, ResourceInfo, Scope};
