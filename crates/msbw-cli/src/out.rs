//! Writing to stdout and stderr without panicking when the reader has gone (`msbw doctor | head -1`),
//! colours on stderr (`--color`, `NO_COLOR`, `CLICOLOR_FORCE`), and errors as text or JSON.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use microsandbox_wrapper::WrapperError;

use crate::cli::ColorWhen;

static COLOR: AtomicBool = AtomicBool::new(false);

/// Decides once whether stderr gets colours: `--color always|never`, or for `auto` a terminal
/// unless `NO_COLOR` is set (`CLICOLOR_FORCE` forces colours), as anstream decides.
pub(crate) fn init_color(when: ColorWhen) -> bool {
    let choice = match when {
        ColorWhen::Always => anstream::ColorChoice::Always,
        ColorWhen::Never => anstream::ColorChoice::Never,
        ColorWhen::Auto => anstream::ColorChoice::Auto,
    };
    choice.write_global();
    let on = anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never;
    COLOR.store(on, Ordering::Relaxed);
    on
}

/// Whether stderr gets colours.
pub(crate) fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

/// Writes a line to stdout; a closed stdout is not an error worth a panic (the reader has what
/// it wanted).
pub(crate) fn stdout_line(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    let _ = out.flush();
}

/// Writes a line to stderr, through the progress indicator so neither overwrites the other.
pub(crate) fn stderr_line(args: fmt::Arguments<'_>) {
    let mut line = args.to_string();
    line.push('\n');
    crate::progress::write_stderr(line.as_bytes());
}

/// `println!` that survives a closed stdout.
macro_rules! outln {
    () => { $crate::out::stdout_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::out::stdout_line(format_args!($($arg)*)) };
}

/// `eprintln!` that survives a closed stderr and does not break the progress indicator.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::out::stderr_line(format_args!($($arg)*)) };
}

pub(crate) use {errln, outln};

/// `text` in `style` (an SGR code such as `1;31`) when stderr has colours.
pub(crate) fn paint(style: &str, text: &str) -> String {
    if color() {
        format!("\x1b[{style}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
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
        outln!("{value}");
        return;
    }
    errln!("msbw: {} [{}]: {e}", paint("1;31", "error"), e.code());
    for s in e.suggestions() {
        errln!("  {} {s}", paint("33", "hint:"));
    }
}

/// A usage error (bad arguments, unreadable input): `msbw: MESSAGE` on stderr, or with --json the
/// JSON error (`INVALID_INPUT_ERROR`) on stdout. Returns exit status 2.
pub(crate) fn usage(message: &str, json: bool) -> u8 {
    if json {
        print_error(
            &WrapperError::InvalidInput {
                what: "arguments".into(),
                message: message.to_owned(),
            },
            true,
        );
    } else {
        errln!("msbw: {message}");
    }
    crate::exit::USAGE
}

/// A warning for people (skipped with -q and --json goes to stderr too: it is not a result).
pub(crate) fn warn(message: &str) {
    errln!("msbw: {} {message}", paint("33", "warning:"));
}
