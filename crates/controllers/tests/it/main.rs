//! End-to-end tests: hollow's API server in this process on loopback, the controllers
//! running against it through kube-rs, and the real `kubectl` driving both.
//!
//! No node agent runs here: the test plays the kubelet's part by writing pod status
//! (Running, an IP, Ready) through the status subresource, and by finishing the
//! graceful deletion of pods on its node.

mod cluster;
mod deployment;
mod statefulset;
