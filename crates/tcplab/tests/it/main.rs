//! Integration tests: one test binary, one module per area (ripgrep's layout).
//! Tests that need root call [`support::privileged`] first.

mod connect;
mod lab;
mod serve;
mod support;
mod sysctl;
mod twohost;
mod wire;
