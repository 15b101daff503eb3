//! msbw-http: filled by a later issue.
