//! The execution attacks (node output, timeout leftovers, seccomp) as their own test target
//! until they join the attack suite in `tests/attacks/`.

#[path = "common/mod.rs"]
mod common;
#[path = "attacks/node_output.rs"]
mod node_output;
#[path = "attacks/seccomp.rs"]
mod seccomp;
#[path = "attacks/timeout_leftovers.rs"]
mod timeout_leftovers;
