//! The control socket: how the suites (a separate program) ask the harness, which owns the
//! server, to do what only the owner can: restart the server, mint keys.
//!
//! A Unix socket in the run's private folder; one request per connection, one line each way:
//!
//! | request | answer |
//! |---|---|
//! | `restart` | `ok <milliseconds the server was away> <new pid>` |
//! | `keygen <namespace or *>` | `ok <key from msb server keygen>` |
//! | `mint <namespace or *> <exp offset in seconds>` | `ok <key signed by hand>` (negative offset: expired) |
//! | anything that fails | `err <why>` |
//!
//! The client side is `msbw_integration::control`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::server::LocalServer;

/// A running control socket.
pub(crate) struct Control {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Control {
    /// Listens on `path` for requests about `server`.
    pub(crate) fn start(path: &Path, server: Arc<Mutex<LocalServer>>) -> Result<Control, String> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("cannot listen on the control socket {}: {e}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve(stream, &server);
                }
            }
        });
        Ok(Control {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers one request.
fn serve(stream: UnixStream, server: &Mutex<LocalServer>) {
    let mut line = String::new();
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    if BufReader::new(reader).read_line(&mut line).is_err() {
        return;
    }
    let answer = match handle(line.trim(), server) {
        Ok(text) => format!("ok {text}\n"),
        Err(why) => format!("err {}\n", why.replace('\n', " | ")),
    };
    let mut stream = stream;
    let _ = stream.write_all(answer.as_bytes());
}

fn handle(request: &str, server: &Mutex<LocalServer>) -> Result<String, String> {
    let mut words = request.split_whitespace();
    let verb = words.next().unwrap_or_default();
    let args: Vec<&str> = words.collect();
    let mut server = server.lock().unwrap_or_else(PoisonError::into_inner);
    match (verb, args.as_slice()) {
        ("restart", []) => {
            eprintln!(
                "xtask: restarting msbserver ({} mode) at the suites' request",
                server.mode().as_str()
            );
            let away = server.restart()?;
            let pid = server.pid().map(|p| p.to_string()).unwrap_or_else(|| "?".into());
            Ok(format!("{} {pid}", away.as_millis()))
        }
        ("keygen", [namespace]) => server.keygen((*namespace != "*").then_some(*namespace)),
        ("mint", [namespace, offset]) => {
            let offset: i64 = offset
                .parse()
                .map_err(|_| format!("not a number of seconds: {offset}"))?;
            server.mint(namespace, offset)
        }
        _ => Err(format!("unknown request {request:?}")),
    }
}
