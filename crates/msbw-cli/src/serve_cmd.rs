//! `msbw serve` and `msbw serve keygen`: flags and signals only; the server is the msbw-serve
//! crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use microsandbox_wrapper::{ApiKey, BackendKind, MicrosandboxWrapper, WrapperConfig};
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

    /// Listen on this Unix socket (mode 0600) instead of TCP; no key is needed (only the socket's
    /// owner can connect). `msbw exec --session` starts such a server on demand.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["host", "port"])]
    pub(crate) unix: Option<PathBuf>,

    /// Exit on its own once it has had no session and no open connection for this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) idle_exit: Option<u64>,

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
        // The socket's mode (0600) is the access control.
        (false, None) if args.unix.is_some() => None,
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
    // Watched before the listener answers anything (see `Signals`).
    let signals = crate::shutdown::signal();
    let watched = wrapper.clone();
    let bound = match &args.unix {
        Some(path) => Server::bind_unix(path, wrapper, options).await,
        None => Server::bind(SocketAddr::new(host, args.port), wrapper, options).await,
    };
    let server = match bound {
        Ok(s) => s,
        Err(e) => {
            print_error(&e, false);
            return exit::for_error(&e);
        }
    };
    let addr = match &args.unix {
        Some(path) => format!("unix:{}", path.display()),
        None => server
            .local_addr()
            .map(|a| format!("http://{a}"))
            .unwrap_or_else(|_| format!("http://{host}:{}", args.port)),
    };
    eprintln!(
        "msbw serve: listening on {addr} ({backend} backend, {}, at most {} connections)",
        if args.unix.is_some() {
            "owner only"
        } else if dev {
            "dev mode: no authentication"
        } else {
            "keys required"
        },
        args.max_connections
    );
    let activity = server.activity();
    let idle_exit = args.idle_exit.map(Duration::from_secs);
    let socket = args.unix.clone();
    let report = server
        .run(async move {
            tokio::select! {
                () = signals => {}
                () = idle(watched, activity, idle_exit) => {
                    tracing::info!("no session and no connection for the idle time: exiting");
                }
            }
            // Gone from the path before the listener closes: a client that arrives now starts
            // a new server rather than connecting to this one as it ends.
            if let Some(path) = socket {
                let _ = std::fs::remove_file(path);
            }
        })
        .await;
    crate::shutdown::finish("serve", &report)
}

/// Completes once the server has had no session and no open connection for `limit` (never
/// without a limit). Sessions end by `sandbox.stop` or after MSB_SESSION_TIMEOUT idle.
async fn idle(wrapper: MicrosandboxWrapper, activity: msbw_serve::Activity, limit: Option<Duration>) {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    let tick = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut idle_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let busy = activity.open_connections() > 0 || wrapper.get_sessions(None).map_or(true, |s| !s.is_empty());
        let now = tokio::time::Instant::now();
        if busy {
            idle_since = now;
        } else if now.duration_since(idle_since) >= limit {
            return;
        }
    }
}
