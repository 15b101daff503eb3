//! msbw-local: filled by a later issue.
