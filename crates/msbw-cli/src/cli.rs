//! The command line: `msbw exec`, `msbw run`, `msbw config check`, `msbw doctor`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run untrusted code in sandbox sessions.
///
/// Settings come from MSB_* environment variables (see docs/configuration.md), from a .env file
/// in the current directory (or --env-file), and from the options below, which win. Without a
/// microsandbox server, sandboxes run on the local backend (isolated processes).
#[derive(Debug, Parser)]
#[command(name = "msbw", version, after_help = crate::exit::TABLE)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// When to colour stderr (errors, hints, logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set (CLICOLOR_FORCE forces it).
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// Load settings from this .env file, trusted fully (default: ./.env when it exists, which may
    /// not weaken isolation or raise limits: see docs/configuration.md).
    #[arg(long, global = true, env = "MSB_ENV_FILE", value_name = "PATH")]
    pub(crate) env_file: Option<PathBuf>,

    /// Do not load ./.env.
    #[arg(long, global = true, conflicts_with = "env_file")]
    pub(crate) no_env_file: bool,

    /// The backend: auto, microsandbox or local.
    #[arg(long, global = true, env = "MSB_BACKEND", value_name = "BACKEND")]
    pub(crate) backend: Option<String>,

    /// The microsandbox server's URL.
    #[arg(long, global = true, env = "MSB_SERVER_URL", value_name = "URL")]
    pub(crate) server_url: Option<String>,

    /// More logs on stderr (-v debug, -vv trace); the default level is MSB_LOG_LEVEL.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Only errors on stderr, no progress indicator.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,

    /// Print results as JSON on stdout (for scripts); errors too.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// When to use colours on stderr.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    pub(crate) color: ColorWhen,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run code in a sandbox and print its stdout and stderr.
    ///
    /// The code comes from the argument, from a file (-f FILE; .js and .mjs run on node), or from
    /// stdin (-). Exit status: 0 success, 1 the code raised, the code's own status when it exits
    /// with one (`sys.exit(3)`), 124 it timed out, 130 interrupted, others as in `msbw --help`.
    Exec(ExecArgs),

    /// Run a command in a sandbox; exit with the command's exit code.
    ///
    /// The command is executed directly, not by a shell: use `msbw run sh -c '...'` for shell
    /// syntax. Options of `run` come before the command; everything after it is its arguments.
    Run(RunArgs),

    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Say which backend would be used and why, whether it answers, and what the local
    /// backend's isolation needs and whether this host has it.
    Doctor,

    /// Serve the microsandbox server protocol (JSON-RPC over HTTP) over this machine's backend
    /// (the local one unless MSB_BACKEND=microsandbox), so existing microsandbox clients work
    /// where no microVM can run. Every sandbox is a session under the MSB_* limits.
    Serve(crate::serve_cmd::ServeArgs),

    /// Serve the sandbox sessions as Model Context Protocol tools for AI agents: over stdio (the
    /// default: an agent starts `msbw mcp` itself) or streamable HTTP at /mcp (--http). Sessions
    /// live as long as the server; every sandbox is stopped when it ends (stdin closed, SIGTERM,
    /// Ctrl-C). Off loopback, HTTP clients must send the bearer token MSB_MCP_TOKEN.
    Mcp(McpArgs),

    /// The persistent sessions (`--session`): list, stop, stats.
    #[command(subcommand)]
    Session(SessionCommand),

    /// Copy a file into or out of a persistent session: `msbw cp ./data.csv a:/tmp/data.csv`,
    /// `msbw cp a:/tmp/out.png ./out.png` (one side is SESSION:/PATH; the session must exist).
    Cp(CpArgs),

    /// Print a shell completion script: `msbw completions bash > ~/.local/share/bash-completion/completions/msbw`.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.
    #[arg(long)]
    pub(crate) http: bool,

    /// The address to listen on with --http (not loopback: MSB_MCP_TOKEN is required).
    #[arg(long, default_value = "127.0.0.1", requires = "http")]
    pub(crate) host: String,

    /// The port to listen on with --http (0 picks a free one).
    #[arg(long, default_value_t = 8775, requires = "http")]
    pub(crate) port: u16,
}

/// Where and how a call runs.
#[derive(Debug, Args)]
pub(crate) struct SessionArgs {
    /// The template: python or node (default: node for a -f FILE ending in .js, .mjs or .cjs,
    /// python otherwise).
    #[arg(long, short = 't')]
    pub(crate) template: Option<String>,

    /// Run in the persistent session ID, kept by the session server between commands (its
    /// variables, files, processes) until `msbw session stop ID` or MSB_SESSION_TIMEOUT idle.
    /// Without it the call runs in a sandbox of its own, stopped when msbw exits.
    #[arg(long, short = 's', value_name = "ID")]
    pub(crate) session: Option<String>,

    /// The flavor: small, medium or large (default: MSB_DEFAULT_FLAVOR).
    #[arg(long)]
    pub(crate) flavor: Option<String>,

    /// The time limit in seconds (default: MSB_EXECUTION_TIMEOUT).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timeout: Option<f64>,

    /// Print one JSON object per line on stdout as the output happens: chunks
    /// ({"event":"stdout","data":"..."}), then {"event":"finished","result":{...}} (see
    /// docs/streaming.md).
    #[arg(long)]
    pub(crate) jsonl: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    pub(crate) session: SessionArgs,

    /// Read the code from this file.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with = "code")]
    pub(crate) file: Option<PathBuf>,

    /// The code, or - to read it from stdin.
    #[arg(value_name = "CODE")]
    pub(crate) code: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) session: SessionArgs,

    /// The command and its arguments (a `--` before them is allowed).
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// The running sessions' ids, one a line (with --json, objects with their metrics).
    List,
    /// Stop a session and its sandbox (exit status 65 if there is none).
    Stop {
        /// The session id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Each running session's CPU, memory and disk use, as the server reports them.
    Stats,
}

#[derive(Debug, Args)]
pub(crate) struct CpArgs {
    /// What to copy: a local path, or SESSION:/PATH.
    #[arg(value_name = "SRC")]
    pub(crate) source: String,

    /// Where to: a local path, or SESSION:/PATH.
    #[arg(value_name = "DST")]
    pub(crate) destination: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate the configuration: each finding as a line (ok, warning, error), then a summary.
    /// With --json, the resolved configuration with `errors` and `warnings`. Exit status 2 when
    /// there are errors.
    Check,
}
