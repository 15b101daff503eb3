//! `msbw serve` and `msbw serve keygen`.

use std::net::{IpAddr, SocketAddr};

use microsandbox_wrapper::{BackendKind, MicrosandboxWrapper, WrapperConfig};
use msbw_cli::serve::{ServeOptions, Server, auth};

use crate::cli::{ServeArgs, ServeCommand};
use crate::{exit, print_error};

/// Runs the server until Ctrl-C or SIGTERM, then stops every sandbox it started.
pub(crate) async fn run(mut config: WrapperConfig, args: ServeArgs) -> u8 {
    if let Some(ServeCommand::Keygen(k)) = args.command {
        let validity = match auth::parse_validity(&k.expire) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("msbw: --expire {e}");
                return exit::USAGE;
            }
        };
        if k.namespace != "*" && !microsandbox_wrapper::backend::is_valid_name(&k.namespace) {
            eprintln!("msbw: --namespace {:?} is not a valid namespace name", k.namespace);
            return exit::USAGE;
        }
        println!("{}", auth::mint(&k.key, &k.namespace, validity));
        return exit::OK;
    }
    let key = match (args.dev, args.key) {
        (true, key) => {
            if key.is_some() {
                eprintln!("msbw serve: --dev given: ignoring the server key (--key / MSBW_SERVE_KEY)");
            }
            None
        }
        (false, Some(key)) if !key.trim().is_empty() => Some(key),
        _ => {
            eprintln!("msbw: choose --dev (no authentication) or --key KEY (or MSBW_SERVE_KEY)");
            return exit::USAGE;
        }
    };
    let host: IpAddr = match args.host.parse() {
        Ok(ip) => ip,
        Err(_) => {
            eprintln!("msbw: --host {:?} is not an IP address", args.host);
            return exit::USAGE;
        }
    };
    // The server is itself at the default URL: `auto` must not probe it, so it means local.
    if config.backend == BackendKind::Auto {
        config.backend = BackendKind::Local;
    }
    let wrapper = match MicrosandboxWrapper::new(config).await {
        Ok(w) => w,
        Err(e) => {
            print_error(&e, false);
            return exit::for_error(&e);
        }
    };
    let backend = wrapper.backend_selection().backend.clone();
    let dev = key.is_none();
    let options = ServeOptions {
        key,
        volume_roots: args.volume_roots,
    };
    let server = match Server::bind(SocketAddr::new(host, args.port), wrapper, options).await {
        Ok(s) => s,
        Err(e) => {
            print_error(&e, false);
            return exit::for_error(&e);
        }
    };
    let addr = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("{host}:{}", args.port));
    eprintln!(
        "msbw serve: listening on http://{addr} ({backend} backend, {})",
        if dev {
            "dev mode: no authentication"
        } else {
            "keys required"
        }
    );
    match server.run(shutdown_signal()).await {
        Ok(report) => {
            eprintln!(
                "msbw serve: stopped {} {}{}",
                report.stopped,
                if report.stopped == 1 { "sandbox" } else { "sandboxes" },
                if report.failed.is_empty() {
                    String::new()
                } else {
                    format!(", {} could not be stopped", report.failed.len())
                }
            );
            if report.failed.is_empty() {
                exit::OK
            } else {
                exit::INTERNAL
            }
        }
        Err(e) => {
            eprintln!("msbw serve: {e}");
            exit::INTERNAL
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
