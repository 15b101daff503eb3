//! microsandbox-wrapper: filled by a later issue.
