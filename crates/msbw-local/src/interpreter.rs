//! A sandbox's persistent interpreter: the driver process ([`DRIVER_PY`], [`DRIVER_JS`]) and the
//! backend's side of the driver protocol ([`crate::protocol`]).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use msbw_backend::Template;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio::net::unix::pipe::Receiver;
use tokio::time::Instant;

use crate::child::{Record, stage};
use crate::error::{Context, LocalError};
use crate::exec::{Available, Capture, Chain, Registry, Stream, read_available, read_rest};
use crate::launch::{Core, Program};
use crate::protocol::{DriverMessage, DriverStatus, ExecRequest, FrameReader, encode};
use crate::sys;

/// The Python driver, run with `python3 -c`.
pub(crate) const DRIVER_PY: &str = include_str!("driver.py");
/// The Node.js driver, run with `node -e`.
pub(crate) const DRIVER_JS: &str = include_str!("driver.js");

/// How an execution in the interpreter ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The driver reported the end of the execution.
    Finished {
        /// Whether the code raised.
        raised: bool,
    },
    /// The deadline passed; the interpreter is still running the code.
    TimedOut,
    /// The interpreter exited (wait status, if known).
    Died {
        /// Its wait status.
        status: Option<i32>,
    },
    /// The driver broke the protocol.
    Broken(String),
}

/// A running interpreter with its driver.
#[derive(Debug)]
pub(crate) struct Interpreter {
    chain: Chain,
    control: UnixStream,
    frames: FrameReader,
    out: Receiver,
    err: Receiver,
    next_id: u64,
    busy: bool,
    passes_fds: bool,
}

fn receiver(fd: OwnedFd) -> Result<Receiver, LocalError> {
    Receiver::from_owned_fd(fd).context(|| "watching an output pipe".into())
}

impl Interpreter {
    /// Starts the template's interpreter in the sandbox and waits until its driver is ready.
    pub(crate) async fn start(
        core: &Arc<Core>,
        registry: Registry,
        timeout: Duration,
    ) -> Result<Interpreter, LocalError> {
        let deadline = Instant::now() + timeout;
        let (control_host, control_child) = sys::socketpair().context(|| "creating the control socket".into())?;
        let (out_read, out_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let (err_read, err_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let (report_read, report_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let plan = core.exec_plan(
            Program::Interpreter,
            [core.devnull(), out_write.as_raw_fd(), err_write.as_raw_fd()],
            Some(control_child.as_raw_fd()),
            report_write.as_raw_fd(),
        )?;
        let keep_alive = (Arc::clone(core), out_write, err_write, control_child, report_write);
        let chain = Chain::spawn(plan, report_read, registry, keep_alive).await?;
        let std_control = std::os::unix::net::UnixStream::from(control_host);
        std_control
            .set_nonblocking(true)
            .context(|| "configuring the control socket".into())?;
        let control = UnixStream::from_std(std_control).context(|| "watching the control socket".into())?;
        let mut interpreter = Interpreter {
            chain,
            control,
            frames: FrameReader::default(),
            out: receiver(out_read)?,
            err: receiver(err_read)?,
            next_id: 1,
            busy: false,
            passes_fds: core.template() == Template::Python,
        };
        match interpreter.wait_ready(core, deadline).await {
            Ok(()) => Ok(interpreter),
            Err(e) => {
                interpreter.chain.kill();
                interpreter.chain.reap().await;
                Err(e)
            }
        }
    }

    async fn wait_ready(&mut self, core: &Core, deadline: Instant) -> Result<(), LocalError> {
        let name = core.interpreter().display().to_string();
        let mut startup = Capture::new(8 * 1024);
        let mut failed = None;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.frames.next_message() {
                Ok(Some(DriverMessage::Ready { .. })) => return Ok(()),
                Ok(Some(other)) => {
                    return Err(LocalError::Protocol(format!(
                        "the {name} driver sent {other:?} before it was ready"
                    )));
                }
                Ok(None) => {}
                Err(e) => return Err(LocalError::Protocol(e.to_string())),
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    return Err(LocalError::Timeout(format!("{name} did not become ready in time")));
                }
                read = self.control.read(&mut buf) => match read {
                    Ok(n) if n > 0 => self.frames.push(&buf[..n]),
                    _ => break,
                },
                ready = self.out.readable() => {
                    if ready.is_err() || read_available(&self.out, &mut startup, Stream::Out).unwrap_or(Available::Eof) == Available::Eof {
                        break;
                    }
                }
                ready = self.err.readable() => {
                    if ready.is_err() || read_available(&self.err, &mut startup, Stream::Err).unwrap_or(Available::Eof) == Available::Eof {
                        break;
                    }
                }
                record = self.chain.next_record() => match record {
                    Ok(Some(Record::Failed { stage, errno })) => { failed.get_or_insert((stage, errno)); }
                    Ok(Some(_)) => {}
                    _ => break,
                },
            }
        }
        // The driver went away before it was ready: say why as well as we can.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(Some(record)) = self.chain.next_record().await {
                if let Record::Failed { stage, errno } = record {
                    failed.get_or_insert((stage, errno));
                }
            }
        })
        .await;
        read_rest(&self.out, &self.err, &mut startup);
        let (_, stderr) = startup.finish();
        Err(match failed {
            Some((stage::EXEC, errno)) => LocalError::Unsupported(format!(
                "cannot run {name} inside the sandbox: {}",
                io::Error::from_raw_os_error(errno)
            )),
            Some((s, errno)) => LocalError::io(
                format!("starting {name}: {}", stage::describe(s)),
                io::Error::from_raw_os_error(errno),
            ),
            None => LocalError::Protocol(format!(
                "{name} exited before its driver was ready{}",
                if stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", stderr.trim())
                }
            )),
        })
    }

    /// Whether an execution was started and never finished (its caller gave up on it).
    pub(crate) fn busy(&self) -> bool {
        self.busy
    }

    /// Kills the interpreter and everything it started, and reaps it.
    pub(crate) async fn kill(mut self) {
        self.chain.kill();
        self.chain.reap().await;
    }

    /// Runs `code`, collecting its output into `capture`, until it finishes or `timeout`.
    pub(crate) async fn run(&mut self, code: &str, timeout: Duration, capture: &mut Capture) -> Outcome {
        let deadline = Instant::now() + timeout;
        // Whatever arrived between executions belongs to none of them.
        let mut discard = Capture::new(0);
        read_rest(&self.out, &self.err, &mut discard);
        // So do frames: only what the driver writes from now on can answer this execution.
        self.discard_frames();

        let id = self.next_id;
        self.next_id += 1;
        let request = ExecRequest::new(id, code);
        let frame = match encode(&request) {
            Ok(f) => f,
            Err(e) => return Outcome::Broken(e.to_string()),
        };
        self.busy = true;
        let pipes = if self.passes_fds {
            let pipes = sys::pipe().and_then(|out| sys::pipe().map(|err| (out, err)));
            let ((out_read, out_write), (err_read, err_write)) = match pipes {
                Ok(p) => p,
                Err(e) => return Outcome::Broken(format!("cannot create pipes: {e}")),
            };
            let fds = [out_write.as_raw_fd(), err_write.as_raw_fd()];
            let sent = tokio::time::timeout_at(deadline, self.send(&frame, &fds)).await;
            drop((out_write, err_write));
            match sent {
                Err(_) => return Outcome::TimedOut,
                Ok(Err(_)) => return self.died().await,
                Ok(Ok(())) => {}
            }
            match (Receiver::from_owned_fd(out_read), Receiver::from_owned_fd(err_read)) {
                (Ok(out), Ok(err)) => Some((out, err)),
                _ => return Outcome::Broken("cannot watch the execution's pipes".into()),
            }
        } else {
            match tokio::time::timeout_at(deadline, self.send(&frame, &[])).await {
                Err(_) => return Outcome::TimedOut,
                Ok(Err(_)) => return self.died().await,
                Ok(Ok(())) => None,
            }
        };
        let (out, err) = match &pipes {
            Some((out, err)) => (out, err),
            None => (&self.out, &self.err),
        };

        let mut buf = vec![0u8; 16 * 1024];
        let (mut out_eof, mut err_eof) = (false, false);
        loop {
            match self.frames.next_message() {
                Ok(Some(message)) => match request.answered_by(&message) {
                    Some(status) => {
                        read_rest(out, err, capture);
                        self.busy = false;
                        return Outcome::Finished {
                            raised: status == DriverStatus::Raised,
                        };
                    }
                    // Not the answer of this execution (the code may write on the driver's
                    // descriptor too, and cannot know the nonce): ignored.
                    None => continue,
                },
                Ok(None) => {}
                Err(e) => return Outcome::Broken(e.to_string()),
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    read_rest(out, err, capture);
                    return Outcome::TimedOut;
                }
                read = self.control.read(&mut buf) => match read {
                    Ok(n) if n > 0 => self.frames.push(&buf[..n]),
                    _ => {
                        read_rest(out, err, capture);
                        return self.died().await;
                    }
                },
                ready = out.readable(), if !out_eof => {
                    out_eof = ready.is_err() || read_available(out, capture, Stream::Out).unwrap_or(Available::Eof) == Available::Eof;
                }
                ready = err.readable(), if !err_eof => {
                    err_eof = ready.is_err() || read_available(err, capture, Stream::Err).unwrap_or(Available::Eof) == Available::Eof;
                }
            }
        }
    }

    /// Reads and forgets whatever the driver's socket holds now (between executions).
    fn discard_frames(&mut self) {
        let mut buf = [0u8; 4096];
        for _ in 0..256 {
            match sys::read_now(&self.control, &mut buf) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Empty, closed (noticed by the next read) or failed (likewise).
                _ => break,
            }
        }
        self.frames.clear();
    }

    /// Sends a frame, with `fds` attached to its first byte.
    async fn send(&mut self, frame: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let mut sent = 0;
        if !fds.is_empty() {
            let socket = self.control.as_raw_fd();
            loop {
                self.control.writable().await?;
                match self
                    .control
                    .try_io(Interest::WRITABLE, || sys::send_with_fds(socket, frame, fds))
                {
                    Ok(n) => {
                        sent = n;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        self.control.write_all(&frame[sent..]).await
    }

    /// The interpreter went away: its wait status, as its chain reports it.
    async fn died(&mut self) -> Outcome {
        let mut status = None;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(Some(record)) = self.chain.next_record().await {
                if let Record::Exited { status: s } = record {
                    status = Some(s);
                }
            }
        })
        .await;
        Outcome::Died { status }
    }
}

/// A sentence about an interpreter's wait status.
pub(crate) fn describe_exit(status: Option<i32>) -> String {
    match status {
        Some(s) if libc::WIFEXITED(s) => format!("exited with code {}", libc::WEXITSTATUS(s)),
        Some(s) if libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == libc::SIGKILL => {
            "was killed (SIGKILL; exceeding the sandbox's memory limit is the usual reason)".into()
        }
        Some(s) if libc::WIFSIGNALED(s) => format!("was killed by signal {}", libc::WTERMSIG(s)),
        _ => "went away".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_described() {
        assert_eq!(describe_exit(Some(3 << 8)), "exited with code 3");
        assert!(describe_exit(Some(libc::SIGKILL)).contains("memory limit"));
        assert_eq!(describe_exit(Some(libc::SIGSEGV)), "was killed by signal 11");
        assert_eq!(describe_exit(None), "went away");
    }

    #[test]
    fn the_drivers_are_embedded() {
        assert!(DRIVER_PY.contains("SCM_RIGHTS") || DRIVER_PY.contains("recvmsg"));
        assert!(DRIVER_JS.contains("AsyncLocalStorage"));
    }
}
