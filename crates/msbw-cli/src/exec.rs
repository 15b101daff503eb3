//! `msbw exec` and `msbw run`.

use std::io::{Read, Write};
use std::time::Duration;

use microsandbox_wrapper::{
    CodeCall, CommandCall, ExecStatus, MicrosandboxWrapper, SandboxFlavor, SessionOptions, Template, WrapperConfig,
    WrapperError,
};

use crate::cli::{ExecArgs, Global, RunArgs, SessionArgs};
use crate::{exit, print_error, progress};

/// A usage error: printed like clap's, exit status 2.
fn usage(message: &str) -> u8 {
    eprintln!("msbw: {message}");
    exit::USAGE
}

fn session_options(args: &SessionArgs) -> Result<(Template, SessionOptions), String> {
    let template: Template = args
        .template
        .parse()
        .map_err(|e: microsandbox_wrapper::backend::UnknownTemplate| e.to_string())?;
    let flavor = match &args.flavor {
        Some(f) => Some(f.parse::<SandboxFlavor>().map_err(|e| e.to_string())?),
        None => None,
    };
    let timeout = match args.timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t <= MicrosandboxWrapper::MAX_TIMEOUT.as_secs_f64() => {
            Some(Duration::from_secs_f64(t))
        }
        Some(t) => {
            return Err(format!(
                "--timeout {t} is not a number of seconds from 0 (exclusive) to {}",
                MicrosandboxWrapper::MAX_TIMEOUT.as_secs()
            ));
        }
    };
    Ok((
        template,
        SessionOptions {
            session_id: args.session.clone(),
            flavor,
            timeout,
            must_exist: false,
        },
    ))
}

fn read_code(args: &ExecArgs) -> Result<String, String> {
    match (&args.file, args.code.as_deref()) {
        (Some(path), None) => std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display())),
        (None, Some("-")) => {
            let mut code = String::new();
            std::io::stdin()
                .read_to_string(&mut code)
                .map_err(|e| format!("cannot read the code from stdin: {e}"))?;
            Ok(code)
        }
        (None, Some(code)) => Ok(code.to_owned()),
        (None, None) => Err("no code given: pass CODE, -f FILE, or - to read stdin (see msbw exec --help)".into()),
        (Some(_), Some(_)) => Err("give the code either as CODE or with -f FILE, not both".into()),
    }
}

/// Builds and starts a wrapper, runs `f`, and stops the wrapper (on Ctrl-C too).
async fn with_wrapper<T>(
    config: WrapperConfig,
    global: &Global,
    f: impl AsyncFnOnce(&MicrosandboxWrapper) -> Result<T, WrapperError>,
) -> Result<T, WrapperError> {
    let wrapper = MicrosandboxWrapper::new(config).await?;
    tracing::debug!(backend = %wrapper.backend_selection().backend, reason = %wrapper.backend_selection().reason, "backend");
    wrapper.start().await?;
    let spinner = progress::Spinner::start(&wrapper, global);
    let result = tokio::select! {
        r = f(&wrapper) => r,
        _ = tokio::signal::ctrl_c() => Err(WrapperError::InvalidInput { what: "run".into(), message: "interrupted".into() }),
    };
    spinner.stop().await;
    let report = wrapper.stop().await;
    for (sandbox, why) in &report.failed {
        tracing::error!(%sandbox, error = %why, "could not stop sandbox");
    }
    result
}

/// `msbw exec`.
pub(crate) async fn exec(config: WrapperConfig, args: ExecArgs, global: &Global) -> u8 {
    let (template, options) = match session_options(&args.session) {
        Ok(v) => v,
        Err(e) => return usage(&e),
    };
    let code = match read_code(&args) {
        Ok(code) => code,
        Err(e) => return usage(&e),
    };
    let call = CodeCall {
        code,
        template,
        options,
    };
    let result = with_wrapper(config, global, async |w| w.execute_code(call).await).await;
    match result {
        Ok(r) => {
            print_result(&r, &r.stdout, &r.stderr, r.status, global.json);
            match r.status {
                ExecStatus::Completed => exit::OK,
                ExecStatus::Raised => exit::FAILED,
                ExecStatus::TimedOut { .. } => exit::TIMED_OUT,
            }
        }
        Err(e) => {
            print_error(&e, global.json);
            exit::for_error(&e)
        }
    }
}

/// `msbw run`.
pub(crate) async fn run(config: WrapperConfig, args: RunArgs, global: &Global) -> u8 {
    let (template, options) = match session_options(&args.session) {
        Ok(v) => v,
        Err(e) => return usage(&e),
    };
    let mut words = args.command.into_iter();
    let Some(command) = words.next() else {
        return usage("no command given (msbw run -- COMMAND [ARGS...])");
    };
    let call = CommandCall {
        command,
        args: words.collect(),
        template,
        options,
    };
    let result = with_wrapper(config, global, async |w| w.execute_command(call).await).await;
    match result {
        Ok(r) => {
            print_result(&r, &r.stdout, &r.stderr, r.status, global.json);
            match (r.status, r.exit_code) {
                (ExecStatus::TimedOut { .. }, _) => exit::TIMED_OUT,
                (_, Some(code)) => u8::try_from(code.rem_euclid(256)).unwrap_or(exit::FAILED),
                (_, None) => exit::KILLED,
            }
        }
        Err(e) => {
            print_error(&e, global.json);
            exit::for_error(&e)
        }
    }
}

fn describe(aftermath: microsandbox_wrapper::Aftermath) -> &'static str {
    match aftermath {
        microsandbox_wrapper::Aftermath::Intact => "the session is intact",
        microsandbox_wrapper::Aftermath::StateLost => "the interpreter was restarted; its state is lost",
        microsandbox_wrapper::Aftermath::Unusable => "the sandbox will be replaced",
    }
}

/// Prints a result: as JSON on stdout, or its outputs on the matching streams and a line on
/// stderr when it timed out.
fn print_result(result: &impl serde::Serialize, stdout: &str, stderr: &str, status: ExecStatus, json: bool) {
    if json {
        println!("{}", serde_json::to_string(result).unwrap_or_default());
        return;
    }
    write_streams(stdout, stderr);
    if let ExecStatus::TimedOut { after, aftermath } = status {
        eprintln!(
            "msbw: timed out after {:.1} s ({})",
            after.as_secs_f64(),
            describe(aftermath)
        );
    }
}

/// Prints the outputs on the matching streams, each ending with a newline.
fn write_streams(stdout: &str, stderr: &str) {
    if !stdout.is_empty() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{stdout}");
        let _ = out.flush();
    }
    if !stderr.is_empty() {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{stderr}");
    }
}
