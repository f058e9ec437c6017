//! Service proxy for ClusterIP, NodePort and LoadBalancer services.
//!
//! Not built yet: this crate holds the place of the proxy in the workspace (see
//! ARCHITECTURE.md). It will serve each service's virtual address from an immutable table
//! rebuilt from Service and EndpointSlice watches, balancing connections over ready endpoints
//! with `hollow-lb`.
