//! `msbw`: run code in sandbox sessions from the command line.

mod check;
mod cli;
mod doctor;
mod exec;
mod exit;
mod progress;
mod serve_cmd;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use microsandbox_wrapper::config::{ConfigReport, process_vars, read_env_file};
use microsandbox_wrapper::{ConfigKey, LogLevel, WrapperConfig, WrapperError};

use cli::{Cli, Command, ConfigCommand, Global};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let report = match load_config(&cli.global) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("msbw: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    init_logging(&cli.global, report.config.log_level);

    if let Command::Config(ConfigCommand::Check) = &cli.command {
        return ExitCode::from(check::run(&report, cli.global.json));
    }
    if !report.is_valid() {
        let err = WrapperError::from(microsandbox_wrapper::ConfigError::Invalid {
            problems: report.problems.clone(),
        });
        print_error(&err, cli.global.json);
        return ExitCode::from(exit::USAGE);
    }
    for unknown in &report.unknown {
        tracing::warn!("{unknown}");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("msbw: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let config = report.config;
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Exec(args) => exec::exec(config, args, &cli.global).await,
            Command::Run(args) => exec::run(config, args, &cli.global).await,
            Command::Doctor => doctor::run(config, cli.global.json).await,
            Command::Serve(args) => serve_cmd::run(config, args).await,
            Command::Config(_) => exit::INTERNAL,
        }
    });
    ExitCode::from(code)
}

/// Reads the settings: a .env file (given, or ./.env when present), the environment on top,
/// the command-line options on top of that.
fn load_config(global: &Global) -> Result<ConfigReport, WrapperError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let env_file = match &global.env_file {
        Some(path) => Some(path.clone()),
        None if !global.no_env_file && std::path::Path::new(".env").is_file() => Some(".env".into()),
        None => None,
    };
    if let Some(path) = env_file {
        vars.extend(read_env_file(&path)?);
    }
    vars.extend(process_vars());
    if let Some(backend) = &global.backend {
        vars.push((ConfigKey::Backend.var_name().to_owned(), backend.clone()));
    }
    if let Some(url) = &global.server_url {
        vars.push((ConfigKey::ServerUrl.var_name().to_owned(), url.clone()));
    }
    let mut report = WrapperConfig::report_from_vars(vars);
    // Backend settings (MSB_PYTHON_IMAGE, ...) are validated by their backends.
    report
        .problems
        .extend(microsandbox_wrapper::backend_problems(&report.config));
    report
        .problems
        .sort_by_key(|p| ConfigKey::ALL.iter().position(|k| *k == p.key));
    Ok(report)
}

/// Logs go to stderr: the level is MSB_LOG_LEVEL, raised by -v and lowered to errors by -q.
fn init_logging(global: &Global, level: LogLevel) {
    use tracing_subscriber::filter::LevelFilter;
    let level = if global.quiet {
        LevelFilter::ERROR
    } else {
        match global.verbose {
            0 => match level {
                LogLevel::Debug => LevelFilter::DEBUG,
                LogLevel::Info => LevelFilter::INFO,
                LogLevel::Warning => LevelFilter::WARN,
                LogLevel::Error | LogLevel::Critical => LevelFilter::ERROR,
            },
            1 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    };
    // Info-level progress of the wrapper is noise for a one-shot command: show it with -v.
    let level = if global.verbose == 0 && level == LevelFilter::INFO {
        LevelFilter::WARN
    } else {
        level
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Prints an error on stderr, or as JSON on stdout with --json.
pub(crate) fn print_error(e: &WrapperError, json: bool) {
    if json {
        let context: serde_json::Map<String, serde_json::Value> =
            e.context().into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
        let value = serde_json::json!({
            "error": {
                "code": e.code(),
                "category": e.category().as_str(),
                "message": e.to_string(),
                "context": context,
                "suggestions": e.suggestions(),
            }
        });
        println!("{value}");
        return;
    }
    eprintln!("msbw: error [{}]: {e}", e.code());
    for s in e.suggestions() {
        eprintln!("  hint: {s}");
    }
}
