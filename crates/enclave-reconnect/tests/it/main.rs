//! The integration tests of `enclave-reconnect`, one test binary with a module per area (one link,
//! not one per file; see docs/ARCHITECTURE.md, "Tests").

mod common;
mod live;

mod backpressure;
mod chaos;
mod client_proptest;
mod client_reconnect;
mod hub_backpressure;
mod hub_metrics;
mod hub_properties;
mod hub_resume;
mod hub_session;
mod lane;
mod limits;
mod next_ready;
mod refusals;
