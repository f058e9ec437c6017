//! Client-side load balancing over headless services, fed live from watches.
//!
//! Not built yet: this crate holds the place of the client library in the workspace (see
//! ARCHITECTURE.md). It will keep an immutable endpoint set per service, rebuilt from
//! EndpointSlice watches, and pick among ready endpoints (round-robin, power of two choices).
