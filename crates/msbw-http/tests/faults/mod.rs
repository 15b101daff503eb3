//! Test support for the fault matrix: a loopback stand-in server and a fault proxy in front of it.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "test support: each test target uses part of it"
)]

pub mod proxy;
pub mod stub;
