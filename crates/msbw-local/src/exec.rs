//! One program running inside a sandbox: its process chain ([`Chain`]), what it reports, and
//! capturing its output ([`Capture`]) with a bound on size.

use std::collections::HashSet;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use msbw_backend::stream::ChunkSink;
use tokio::net::unix::pipe::Receiver;
use tokio::time::Instant;

use crate::child::{ExecPlan, ExecPointers, RECORD_LEN, Record};
use crate::error::{Context, LocalError};
use crate::sys::{self, Pid};

/// The pids of a sandbox's running chains (their first process), for listing and stopping.
pub(crate) type Registry = Arc<Mutex<HashSet<Pid>>>;

/// Locks a registry (a poisoned lock is still usable: the set is always consistent).
pub(crate) fn lock_registry(registry: &Registry) -> std::sync::MutexGuard<'_, HashSet<Pid>> {
    registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A started chain of processes running one program (see [`crate::child`]). Killing its first
/// process kills the whole chain and, with it, every process the program started. Dropping a
/// chain that was not reaped kills it and reaps it in the background.
#[derive(Debug)]
pub(crate) struct Chain {
    /// The first process, a child of this process; `None` for a chain the sandbox's launcher
    /// started (its first process is the launcher's child, reaped by the kernel).
    pid: Option<Pid>,
    inner: Option<Pid>,
    /// A pidfd of the execution's init, taken when the chain is killed.
    init: Option<OwnedFd>,
    report: Receiver,
    partial: Vec<u8>,
    eof: bool,
    reaped: bool,
    registry: Registry,
}

impl Chain {
    /// Forks the chain for `plan`; `report` is the read end of the plan's report pipe.
    /// `keep_alive` owns every descriptor the plan names (the child's ends of its pipes, the
    /// sandbox's core): it is dropped only after the fork, even if this future is dropped first,
    /// so that a descriptor number in the plan can never refer to another file by then.
    pub(crate) async fn spawn(
        plan: ExecPlan,
        report: OwnedFd,
        registry: Registry,
        keep_alive: impl Send + 'static,
    ) -> Result<Chain, LocalError> {
        let report = Receiver::from_owned_fd(report).context(|| "watching the report pipe".into())?;
        let pid = tokio::task::spawn_blocking(move || {
            let pointers = ExecPointers::new(&plan);
            let pid = crate::child::spawn_chain(&plan, &pointers);
            drop(pointers);
            drop(plan);
            drop(keep_alive);
            pid
        })
        .await
        .map_err(|e| LocalError::io("forking", io::Error::other(e.to_string())))?
        .context(|| "forking".into())?;
        lock_registry(&registry).insert(pid);
        Ok(Chain::new(Some(pid), report, registry))
    }

    /// A chain whose report pipe is `report`; `pid` is its first process when it is our child.
    fn new(pid: Option<Pid>, report: Receiver, registry: Registry) -> Chain {
        Chain {
            pid,
            inner: None,
            init: None,
            report,
            partial: Vec::new(),
            eof: false,
            reaped: false,
            registry,
        }
    }

    /// A chain the sandbox's launcher was asked to start (see [`crate::launcher`]): waits
    /// until its second process reports its pid, then lets it go on through `go` (the write
    /// end of the go-ahead pipe whose read end went with the request). Dropping this future
    /// first closes `go`, and the chain ends without running anything.
    pub(crate) async fn launched(report: OwnedFd, go: OwnedFd, registry: Registry) -> Result<Chain, LocalError> {
        let report = Receiver::from_owned_fd(report).context(|| "watching the report pipe".into())?;
        let mut chain = Chain::new(None, report, registry);
        while chain.inner.is_none() && !chain.eof && chain.partial.len() < RECORD_LEN {
            chain
                .read_some()
                .await
                .context(|| "reading the launcher's report".into())?;
            if chain.partial.len() >= RECORD_LEN {
                let mut bytes = [0u8; RECORD_LEN];
                bytes.copy_from_slice(&chain.partial[..RECORD_LEN]);
                if let Some(Record::Started { pid }) = Record::decode(&bytes) {
                    chain.partial.drain(..RECORD_LEN);
                    chain.inner = Some(pid);
                }
            }
        }
        if chain.inner.is_some() {
            // A one-byte write to a new pipe does not block.
            let _ = io::Write::write_all(&mut std::fs::File::from(go), b"g");
        }
        Ok(chain)
    }

    /// The next record the chain reports; `None` once every process of the chain has exited.
    /// Cancel-safe.
    pub(crate) async fn next_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            if let Some(record) = self.take_record() {
                return Ok(Some(record));
            }
            if self.eof {
                return Ok(None);
            }
            self.read_some().await?;
        }
    }

    /// Waits for the report pipe and reads what it has. Cancel-safe.
    async fn read_some(&mut self) -> io::Result<()> {
        self.report.readable().await?;
        let mut buf = [0u8; 4 * RECORD_LEN];
        match self.report.try_read(&mut buf) {
            Ok(0) => self.eof = true,
            Ok(n) => self.partial.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The next complete record already read, noting (and skipping) [`Record::Started`].
    fn take_record(&mut self) -> Option<Record> {
        while self.partial.len() >= RECORD_LEN {
            let mut bytes = [0u8; RECORD_LEN];
            bytes.copy_from_slice(&self.partial[..RECORD_LEN]);
            self.partial.drain(..RECORD_LEN);
            match Record::decode(&bytes) {
                Some(Record::Started { pid }) => self.inner = Some(pid),
                Some(record) => return Some(record),
                None => {}
            }
        }
        None
    }

    /// Kills the chain and so everything the program started.
    ///
    /// It kills the chain's second process, a member of the sandbox's pid namespace: its
    /// parent-death signal kills the execution's init, whose death makes the kernel kill every
    /// process of the execution's pid namespace; the first process then reaps the second and
    /// exits. (Killing the first process instead would leave the second a zombie for the host's
    /// init to reap, holding up the sandbox's pid namespace when it is stopped.)
    pub(crate) fn kill(&mut self) {
        if self.reaped {
            return;
        }
        // Pick up the second process's pid if it has been reported but not read yet.
        let mut buf = [0u8; 4 * RECORD_LEN];
        while let Ok(n) = sys::read_now(&self.report, &mut buf) {
            if n == 0 {
                break;
            }
            self.partial.extend_from_slice(&buf[..n]);
        }
        if self.inner.is_none() {
            let mut kept = Vec::new();
            while let Some(record) = self.take_record() {
                kept.push(record);
            }
            for record in kept.into_iter().rev() {
                self.partial.splice(0..0, record.encode());
            }
        }
        // The execution's init dies by its parent-death signal, and takes a moment to kill the
        // execution's processes: keep a handle on it, so that `reap` can wait for that.
        if self.init.is_none() {
            self.init = self.inner.and_then(execution_init);
        }
        if let Some(pid) = self.inner.or(self.pid) {
            sys::kill(pid, libc::SIGKILL);
        }
    }

    /// Waits for the chain's first process to exit and reaps it. After a [`kill`](Self::kill),
    /// also waits until every process and thread of the execution is gone, so that nothing of
    /// it runs once this returns.
    pub(crate) async fn reap(mut self) {
        self.reaped = true;
        match self.pid {
            Some(pid) => {
                lock_registry(&self.registry).remove(&pid);
                let _ = tokio::task::spawn_blocking(move || sys::wait_blocking(pid)).await;
            }
            None => {
                // The launcher's child: gone once the report pipe's last writer is.
                let limit = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
                while let Ok(Ok(Some(_))) = tokio::time::timeout_at(limit, self.next_record()).await {}
            }
        }
        if let Some(init) = self.init.take() {
            // Readable once the init has exited, which it does only after the kernel has killed
            // and reaped every other process of its pid namespace.
            let limit = std::time::Duration::from_secs(10);
            match tokio::task::spawn_blocking(move || sys::wait_readable(&init, limit)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => tracing::warn!("a killed execution still has processes after 10 s"),
                Ok(Err(e)) => tracing::warn!("cannot wait for a killed execution to end: {e}"),
                Err(e) => tracing::warn!("cannot wait for a killed execution to end: {e}"),
            }
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            if let Some(pid) = self.pid {
                lock_registry(&self.registry).remove(&pid);
                let _ = std::thread::Builder::new()
                    .name("msbw-local-reaper".into())
                    .spawn(move || sys::wait_blocking(pid));
            }
        }
    }
}

/// A pidfd of the third process of a chain (the execution's init), found through its parent,
/// the second, which must still be alive (so that the init is its child and its pid has not
/// been reused).
fn execution_init(second: Pid) -> Option<OwnedFd> {
    let children = std::fs::read_to_string(format!("/proc/{second}/task/{second}/children")).ok()?;
    let pid: Pid = children.split_whitespace().next()?.parse().ok()?;
    let pidfd = sys::pidfd_open(pid).ok()?;
    // Still the second process's child now that the pidfd holds it: then it is the init.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let parent: Pid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
    (parent == second).then_some(pidfd)
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// The output of one execution, each stream bounded by a limit. With a sink, what is kept is
/// also sent to a streaming caller as it arrives (and so are the notes of [`Capture::finish`]), so
/// that the chunks sent add up to the final text.
#[derive(Debug)]
pub(crate) struct Capture {
    out: Vec<u8>,
    err: Vec<u8>,
    limit: usize,
    dropped: [u64; 2],
    notes: Vec<String>,
    sink: Option<ChunkSink>,
}

impl Capture {
    /// An empty capture keeping at most `limit` bytes per stream.
    pub(crate) fn new(limit: usize) -> Self {
        Capture {
            out: Vec::new(),
            err: Vec::new(),
            limit,
            dropped: [0; 2],
            notes: Vec::new(),
            sink: None,
        }
    }

    /// Also sends what is kept to `sink` as it arrives.
    pub(crate) fn with_sink(mut self, sink: Option<ChunkSink>) -> Self {
        self.sink = sink;
        self
    }

    /// Adds output. Once a stream is cut at the limit (never in the middle of a character that
    /// did not fit whole), the rest of it is dropped and counted.
    pub(crate) fn push(&mut self, stream: Stream, data: &[u8]) {
        let (buf, dropped) = match stream {
            Stream::Out => (&mut self.out, &mut self.dropped[0]),
            Stream::Err => (&mut self.err, &mut self.dropped[1]),
        };
        let start = buf.len();
        let room = if *dropped > 0 {
            0
        } else {
            self.limit.saturating_sub(start)
        };
        let take = room.min(data.len());
        buf.extend_from_slice(&data[..take]);
        if take < data.len() {
            if *dropped == 0 {
                let cut = incomplete_tail(buf);
                buf.truncate(buf.len() - cut);
                *dropped += cut as u64;
            }
            *dropped += (data.len() - take) as u64;
        }
        if let Some(sink) = &self.sink {
            let kept = &buf[start.min(buf.len())..];
            match stream {
                Stream::Out => sink.stdout(kept),
                Stream::Err => sink.stderr(kept),
            }
        }
    }

    /// Adds a message of the backend's to stderr (after the program's own output).
    pub(crate) fn note(&mut self, message: impl Into<String>) {
        self.notes.push(message.into());
    }

    /// The streams as text (invalid UTF-8 replaced), with truncation and backend notes (sent to
    /// the sink too).
    pub(crate) fn finish(self) -> (String, String) {
        let mut out = String::from_utf8_lossy(&self.out).into_owned();
        let mut err = String::from_utf8_lossy(&self.err).into_owned();
        let mut out_tail = String::new();
        let mut err_tail = String::new();
        if self.dropped[0] > 0 {
            out_tail = format!(
                "\n[msbw-local: {} more bytes of stdout were dropped]\n",
                self.dropped[0]
            );
        }
        if self.dropped[1] > 0 {
            err_tail = format!(
                "\n[msbw-local: {} more bytes of stderr were dropped]\n",
                self.dropped[1]
            );
        }
        for note in self.notes {
            let ends_line = if err_tail.is_empty() {
                err.is_empty() || err.ends_with('\n')
            } else {
                err_tail.ends_with('\n')
            };
            if !ends_line {
                err_tail.push('\n');
            }
            err_tail.push_str("msbw-local: ");
            err_tail.push_str(&note);
            err_tail.push('\n');
        }
        if let Some(sink) = &self.sink {
            sink.stdout(out_tail.as_bytes());
            sink.stderr(err_tail.as_bytes());
        }
        out.push_str(&out_tail);
        err.push_str(&err_tail);
        (out, err)
    }
}

/// How many bytes at the end of `buf` are the start of a UTF-8 character whose other bytes are
/// missing (0 if it ends with a whole character or with bytes that are not UTF-8 anyway).
fn incomplete_tail(buf: &[u8]) -> usize {
    let tail = &buf[buf.len().saturating_sub(3)..];
    for (back, &byte) in tail.iter().rev().enumerate() {
        let have = back + 1;
        let needed = match byte {
            0x80..=0xbf => continue,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return 0,
        };
        return if have < needed { have } else { 0 };
    }
    0
}

/// What [`read_available`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Available {
    /// The pipe is closed and empty.
    Eof,
    /// Nothing more to read right now.
    Empty,
    /// It stopped after a bounded amount; there may be more.
    More,
}

/// Reads what `pipe` has now into `capture`, after `readable()` said there is something (a
/// bounded amount, so that a program that never stops writing cannot starve the caller).
pub(crate) fn read_available(pipe: &Receiver, capture: &mut Capture, stream: Stream) -> io::Result<Available> {
    read_with(capture, stream, |buf| pipe.try_read(buf))
}

/// Like [`read_available`], but reads even if the reactor has not yet seen the pipe become
/// readable: for collecting what is known to have been written already.
pub(crate) fn read_now(pipe: &Receiver, capture: &mut Capture, stream: Stream) -> io::Result<Available> {
    read_with(capture, stream, |buf| sys::read_now(pipe, buf))
}

fn read_with(
    capture: &mut Capture,
    stream: Stream,
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
) -> io::Result<Available> {
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..16 {
        match read(&mut buf) {
            Ok(0) => return Ok(Available::Eof),
            Ok(n) => capture.push(stream, &buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Available::Empty),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Available::More)
}

/// Reads everything `out` and `err` hold right now (what a program wrote before it said it
/// was done), giving up after a bounded amount if something keeps writing.
pub(crate) fn read_rest(out: &Receiver, err: &Receiver, capture: &mut Capture) {
    for _ in 0..64 {
        let o = read_now(out, capture, Stream::Out).unwrap_or(Available::Eof);
        let e = read_now(err, capture, Stream::Err).unwrap_or(Available::Eof);
        if o != Available::More && e != Available::More {
            return;
        }
    }
}

/// How a chain's program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Every process of the chain exited; the first failure report and the exit status, if any.
    Finished {
        /// A step that failed (e.g. the program could not be executed).
        failed: Option<(u32, i32)>,
        /// The program's wait status.
        status: Option<i32>,
    },
    /// The deadline passed first.
    TimedOut,
}

/// Follows a chain until it has exited and both output pipes are closed, or until `deadline`.
pub(crate) async fn follow(
    chain: &mut Chain,
    out: &Receiver,
    err: &Receiver,
    capture: &mut Capture,
    deadline: Instant,
) -> io::Result<Ending> {
    let (mut out_eof, mut err_eof, mut report_eof) = (false, false, false);
    let mut failed = None;
    let mut status = None;
    loop {
        if out_eof && err_eof && report_eof {
            return Ok(Ending::Finished { failed, status });
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return Ok(Ending::TimedOut),
            ready = out.readable(), if !out_eof => {
                ready?;
                out_eof = read_available(out, capture, Stream::Out)? == Available::Eof;
            }
            ready = err.readable(), if !err_eof => {
                ready?;
                err_eof = read_available(err, capture, Stream::Err)? == Available::Eof;
            }
            record = chain.next_record(), if !report_eof => match record? {
                Some(Record::Failed { stage, errno }) => { failed.get_or_insert((stage, errno)); }
                Some(Record::Exited { status: s }) => status = Some(s),
                Some(Record::Ready | Record::Started { .. }) => {}
                None => report_eof = true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_are_bounded_and_noted() {
        let mut c = Capture::new(4);
        c.push(Stream::Out, b"abcdef");
        c.push(Stream::Err, b"xy");
        c.push(Stream::Err, b"z");
        c.note("restarted");
        let (out, err) = c.finish();
        assert!(
            out.starts_with("abcd\n[msbw-local: 2 more bytes of stdout were dropped]"),
            "{out}"
        );
        assert_eq!(err, "xyz\nmsbw-local: restarted\n");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let mut c = Capture::new(5);
        c.push(Stream::Out, "abcdé€".as_bytes());
        let (out, _) = c.finish();
        assert!(out.starts_with("abcd\n[msbw-local: 5 more bytes"), "{out}");
        let mut c = Capture::new(6);
        c.push(Stream::Out, "abcdé€".as_bytes());
        assert!(c.finish().0.starts_with("abcdé\n[msbw-local: 3 more bytes"));
        assert_eq!(incomplete_tail(b"ab\xf0\x9f\x98"), 3);
        assert_eq!(incomplete_tail(b"ab\xff"), 0);
        assert_eq!(incomplete_tail(b""), 0);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut c = Capture::new(100);
        c.push(Stream::Out, &[0x66, 0xff, 0x6f]);
        assert_eq!(c.finish().0, "f\u{fffd}o");
    }
}
