//! How the long-running fronts (`msbw serve`, `msbw mcp`) start: the address they listen on
//! and the wrapper they serve. How they end is in [`crate::shutdown`].

use std::net::IpAddr;

use microsandbox_wrapper::{MicrosandboxWrapper, WrapperConfig};

use crate::{exit, print_error};

/// `--host` as an IP address; otherwise says so and gives the usage exit status.
pub(crate) fn host_ip(host: &str) -> Result<IpAddr, u8> {
    host.parse().map_err(|_| {
        eprintln!("msbw: --host {host:?} is not an IP address");
        exit::USAGE
    })
}

/// The wrapper for `config`; otherwise prints why and gives the error's exit status.
pub(crate) async fn open(config: WrapperConfig) -> Result<MicrosandboxWrapper, u8> {
    MicrosandboxWrapper::new(config).await.map_err(|e| {
        print_error(&e, false);
        exit::for_error(&e)
    })
}
