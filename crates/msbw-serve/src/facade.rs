//! What serve needs from the wrapper beyond its public calls, in one place: the backend's
//! capabilities, opening a session from a full spec, and the backend's listing. Today these
//! reach through `wrapper.manager()`; once the facade offers them as methods, only this file
//! changes.

use microsandbox_wrapper::manager::SessionSpec;
use microsandbox_wrapper::{Capabilities, ListFilter, MicrosandboxWrapper, WrapperError, backend::SandboxInfo};

/// What the backend can do.
pub(crate) async fn capabilities(wrapper: &MicrosandboxWrapper) -> Capabilities {
    wrapper.manager().backend().capabilities().await
}

/// Opens (creates and starts) a session from a full spec.
pub(crate) async fn open_session(wrapper: &MicrosandboxWrapper, spec: SessionSpec) -> Result<(), WrapperError> {
    wrapper
        .manager()
        .open_session(spec)
        .await
        .map(|_| ())
        .map_err(WrapperError::from)
}

/// The running sandboxes of the wrapper's namespace with their usage (empty if the backend
/// cannot list them).
pub(crate) async fn list_sandboxes(wrapper: &MicrosandboxWrapper) -> Vec<SandboxInfo> {
    wrapper
        .manager()
        .backend()
        .list(&ListFilter::namespace(&wrapper.config().namespace))
        .await
        .unwrap_or_default()
}
