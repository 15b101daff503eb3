//! msbw-manager: filled by a later issue.
