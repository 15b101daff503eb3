//! `msbw`: run code in sandbox sessions from the command line.

mod check;
mod cli;
mod doctor;
mod exec;
mod exit;
mod front;
mod input;
mod mcp_cmd;
mod out;
mod progress;
mod serve_cmd;
mod session_client;
mod session_cmd;
mod session_server;
mod settings;
mod shutdown;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use microsandbox_wrapper::{LogLevel, WrapperError};

use cli::{Cli, ColorWhen, Command, ConfigCommand, Global};
pub(crate) use out::print_error;
use out::{errln, outln};

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let early = EarlyFlags::scan(&argv);
    let color = out::init_color(early.color);
    let cli = match Cli::command()
        .color(if color {
            clap::ColorChoice::Always
        } else {
            clap::ColorChoice::Never
        })
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(clap_error(&e, early.json)),
    };
    if let Command::Completions(args) = &cli.command {
        let mut script = Vec::new();
        clap_complete::generate(args.shell, &mut Cli::command(), "msbw", &mut script);
        outln!("{}", String::from_utf8_lossy(&script).trim_end());
        return ExitCode::from(exit::OK);
    }
    let loaded = match settings::load(&cli.global) {
        Ok(loaded) => loaded,
        Err(e) => {
            print_error(&e, cli.global.json);
            return ExitCode::from(exit::USAGE);
        }
    };
    let report = loaded.report;
    init_logging(&cli.global, report.config.log_level, color);
    // `config check` lists these among its warnings.
    let checking = matches!(cli.command, Command::Config(ConfigCommand::Check));
    if !cli.global.quiet && !checking {
        for note in &loaded.notes {
            out::warn(note);
        }
    }

    if let Command::Config(ConfigCommand::Check) = &cli.command {
        return ExitCode::from(check::run(&report, &loaded.notes, cli.global.json));
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
            errln!("msbw: cannot start the async runtime: {e}");
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
            Command::Mcp(args) => mcp_cmd::run(config, args).await,
            Command::Session(command) => session_cmd::run(config, command, &cli.global).await,
            Command::Cp(args) => session_cmd::cp(config, args, &cli.global).await,
            Command::Config(_) | Command::Completions(_) => exit::INTERNAL,
        }
    });
    // Sandboxes are stopped by now; do not wait for blocking work (a stdin read) to finish.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// The flags that decide how errors look, read before parsing so that a usage error honours them.
struct EarlyFlags {
    json: bool,
    color: ColorWhen,
}

impl EarlyFlags {
    fn scan(argv: &[OsString]) -> EarlyFlags {
        let mut flags = EarlyFlags {
            json: false,
            color: ColorWhen::Auto,
        };
        let mut args = argv.iter().skip(1).filter_map(|a| a.to_str());
        while let Some(arg) = args.next() {
            let value = match arg {
                "--" => break,
                "--json" => {
                    flags.json = true;
                    continue;
                }
                "--color" => args.next(),
                _ => arg.strip_prefix("--color="),
            };
            flags.color = match value {
                Some("always") => ColorWhen::Always,
                Some("never") => ColorWhen::Never,
                _ => flags.color,
            };
        }
        flags
    }
}

/// Prints clap's error (help and version are not errors) and returns the exit status. With
/// --json, a usage error is the JSON error every other failure prints.
fn clap_error(e: &clap::Error, json: bool) -> u8 {
    use clap::error::ErrorKind;
    let informational = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if json && !informational {
        let rendered = e.render().to_string();
        // The error's own lines, without the usage and tips that follow a blank line.
        let message = rendered
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let message = message.trim_start_matches("error: ");
        return out::usage(message, true);
    }
    let _ = e.print();
    if informational { exit::OK } else { exit::USAGE }
}

/// Logs go to stderr (through the progress indicator): the level is MSB_LOG_LEVEL, raised by -v
/// and lowered to errors by -q.
fn init_logging(global: &Global, level: LogLevel, color: bool) {
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
        .with_writer(progress::LogWriter)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(color)
        .try_init();
}
