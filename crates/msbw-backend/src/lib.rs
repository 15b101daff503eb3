//! msbw-backend: filled by a later issue.
