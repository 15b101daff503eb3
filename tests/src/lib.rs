//! Shared helpers of the cross-crate tests.
//!
//! The README's Rust examples are doctests of this crate, compiled with exactly the dependencies
//! the README tells a user to add (tests/Cargo.toml's dev-dependencies; the tidy tests check
//! that the two agree) and with warnings denied, so an unused import fails too.

#![doc(test(attr(deny(warnings))))]

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;
