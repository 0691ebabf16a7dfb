//! Integration tests: one test binary, one module per area (ripgrep's layout).
//! Tests that need root call [`support::privileged`] first.

mod bench;
mod capture;
mod connect;
mod lab;
mod replay;
mod serve;
mod support;
mod sysctl;
mod twohost;
mod watch;
mod wire;
