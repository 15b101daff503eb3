//! `msbw serve` and `msbw serve keygen`: flags and signals only; the server is the msbw-serve
//! crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use microsandbox_wrapper::{ApiKey, BackendKind, WrapperConfig};
use msbw_serve::{Limits, ServeOptions, Server, key};

use crate::{exit, print_error};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ServeArgs {
    #[command(subcommand)]
    pub(crate) command: Option<ServeCommand>,

    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,

    /// The port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 5555)]
    pub(crate) port: u16,

    /// No authentication (for local development only); wins over --key and MSBW_SERVE_KEY.
    #[arg(long)]
    pub(crate) dev: bool,

    /// The server key: clients send keys minted with `msbw serve keygen` from it.
    #[arg(long, env = "MSBW_SERVE_KEY", hide_env_values = true, value_name = "KEY")]
    pub(crate) key: Option<ApiKey>,

    /// A host folder under which clients may map volumes (repeatable; none: no client volumes).
    #[arg(long = "volume-root", value_name = "DIR")]
    pub(crate) volume_roots: Vec<PathBuf>,

    /// Open connections at most; at the limit new ones wait until one closes.
    #[arg(long, default_value_t = Limits::default().max_connections as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) max_connections: u64,

    /// Seconds a request's headers may take to arrive (also the idle keep-alive timeout).
    #[arg(long, default_value_t = Limits::default().header_read_timeout.as_secs(), value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) header_timeout: u64,

    /// Seconds a request's body may take to arrive after its headers.
    #[arg(long, default_value_t = Limits::default().body_read_timeout.as_secs(), value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) body_timeout: u64,

    /// Seconds requests in progress may take to finish on shutdown before they are cut.
    #[arg(long, default_value_t = Limits::default().shutdown_grace.as_secs(), value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub(crate) shutdown_grace: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServeCommand {
    /// Mint an API key (`msb_` + an HS256 JWT) for clients of `msbw serve --key KEY`.
    Keygen(KeygenArgs),
}

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// The server key the API key is signed with.
    #[arg(long, env = "MSBW_SERVE_KEY", hide_env_values = true, value_name = "KEY")]
    pub(crate) key: ApiKey,

    /// How long the key is valid: 30s, 15m, 1h, 7d.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub(crate) expire: String,

    /// The namespace the key may use (`*` for all).
    #[arg(short = 'n', long, default_value = "*")]
    pub(crate) namespace: String,
}

fn keygen(k: &KeygenArgs) -> u8 {
    let validity = match key::parse_validity(&k.expire) {
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
    println!("{}", key::mint(k.key.expose(), &k.namespace, validity));
    exit::OK
}

/// Runs the server until Ctrl-C or SIGTERM, then stops every sandbox it started.
pub(crate) async fn run(mut config: WrapperConfig, args: ServeArgs) -> u8 {
    if let Some(ServeCommand::Keygen(k)) = &args.command {
        return keygen(k);
    }
    let key = match (args.dev, args.key) {
        (true, key) => {
            if key.is_some() {
                eprintln!("msbw serve: --dev given: ignoring the server key (--key / MSBW_SERVE_KEY)");
            }
            None
        }
        (false, Some(key)) if !key.expose().trim().is_empty() => Some(key),
        _ => {
            eprintln!("msbw: choose --dev (no authentication) or --key KEY (or MSBW_SERVE_KEY)");
            return exit::USAGE;
        }
    };
    let host = match crate::front::host_ip(&args.host) {
        Ok(ip) => ip,
        Err(status) => return status,
    };
    // The server is itself at the default URL: `auto` must not probe it, so it means local.
    if config.backend == BackendKind::Auto {
        config.backend = BackendKind::Local;
    }
    let wrapper = match crate::front::open(config).await {
        Ok(w) => w,
        Err(status) => return status,
    };
    let backend = wrapper.backend_selection().backend.clone();
    let dev = key.is_none();
    let options = ServeOptions {
        key,
        volume_roots: args.volume_roots,
        limits: Limits {
            max_connections: args.max_connections as usize,
            header_read_timeout: Duration::from_secs(args.header_timeout),
            body_read_timeout: Duration::from_secs(args.body_timeout),
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
            ..Limits::default()
        },
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
        "msbw serve: listening on http://{addr} ({backend} backend, {}, at most {} connections)",
        if dev {
            "dev mode: no authentication"
        } else {
            "keys required"
        },
        args.max_connections
    );
    let report = server.run(crate::shutdown::signal()).await;
    crate::shutdown::finish("serve", &report)
}
