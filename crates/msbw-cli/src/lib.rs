//! The library behind the `msbw` program: `msbw serve`, usable in-process (tests start it on a
//! free port).

pub mod serve;
