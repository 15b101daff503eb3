//! The launcher: one process per sandbox that starts the sandbox's commands from inside its
//! namespaces and cgroups.
//!
//! Joining a cgroup on cgroup v1 (writing `cgroup.procs`) waits for an RCU grace period, 10 to
//! 25 ms, which was most of what a trivial command cost. The launcher joins the sandbox's
//! cgroups and enters its namespaces once, when the sandbox starts, and then forks the first
//! process of each command's chain (see [`crate::child`]): the chain inherits the namespaces and
//! cgroups instead of joining them. Everything after that (the execution's own pid namespace,
//! limits, credentials, Landlock, seccomp) is the same code as the direct path.
//!
//! The launcher is a forked copy of the host process, so it makes only async-signal-safe calls
//! and allocates nothing: the host sends each command as one `SOCK_SEQPACKET` message, flat
//! bytes ([`encode`]) with the command's descriptors attached, which the launcher decodes in
//! buffers allocated before it was forked. The second process of the chain waits for a go-ahead
//! byte that only the host sends, once it knows that process's pid: a command whose caller went
//! away before that never runs. A command that does not fit a request, or a sandbox whose
//! launcher could not start, takes the direct path (a fork from the host that joins the cgroups
//! itself).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use libc::{c_char, c_int};
use tokio::net::unix::pipe::Receiver;
use tokio::time::Instant;

use crate::child::{self, ExecPlan, Launch, Record, stage};
use crate::error::{Context, LocalError};
use crate::launch::{Core, Program};
use crate::spawner::Spawner;
use crate::sys::{self, Pid};

/// The largest request in bytes; bigger commands take the direct path.
pub(crate) const MAX_REQUEST: usize = 64 * 1024;
/// At most this many resource limits in a request.
const MAX_RLIMITS: usize = 8;
/// The first word of every request.
const MAGIC: u32 = 0x6d73_6c31;
/// The descriptors every request carries: the report pipe, the go-ahead pipe, stdin, stdout,
/// stderr.
const REQUEST_FDS: usize = 5;
/// Tasks the launcher and one running command's chain add to the sandbox's pids cgroup.
pub(crate) const EXTRA_TASKS: u32 = 4;

/// A request for the chain in `plan` (its argv, the programs to try and its limits), or `None`
/// when it does not fit one.
pub(crate) fn encode(plan: &ExecPlan) -> Option<Vec<u8>> {
    if plan.rlimits.len() > MAX_RLIMITS || plan.argv.is_empty() || plan.programs.is_empty() || plan.control.is_some() {
        return None;
    }
    let mut out = Vec::with_capacity(256);
    out.extend(MAGIC.to_ne_bytes());
    out.extend((plan.rlimits.len() as u32).to_ne_bytes());
    for &(resource, soft, hard) in &plan.rlimits {
        out.extend(resource.to_ne_bytes());
        out.extend(soft.to_ne_bytes());
        out.extend(hard.to_ne_bytes());
    }
    out.extend((plan.argv.len() as u32).to_ne_bytes());
    out.extend((plan.programs.len() as u32).to_ne_bytes());
    for s in plan.argv.iter().chain(&plan.programs) {
        out.extend(s.as_bytes_with_nul());
    }
    (out.len() <= MAX_REQUEST).then_some(out)
}

/// A decoded request: its limits, and how many of the decoded pointers are argv (followed by a
/// null) and programs.
#[derive(Debug)]
struct Request {
    rlimits: [(c_int, u64, u64); MAX_RLIMITS],
    n_rlimits: usize,
    argc: usize,
    programs: usize,
}

/// Decodes `buf` (one request), pointing `ptrs` at its strings: argv, a null, then the programs.
/// Allocates nothing; `None` for bytes [`encode`] does not make.
fn decode(buf: &[u8], ptrs: &mut [*const c_char]) -> Option<Request> {
    fn take<const N: usize>(buf: &[u8], at: &mut usize) -> Option<[u8; N]> {
        let bytes = buf.get(*at..at.checked_add(N)?)?.try_into().ok()?;
        *at += N;
        Some(bytes)
    }
    let mut at = 0;
    let u32_at = |at: &mut usize| take::<4>(buf, at).map(u32::from_ne_bytes);
    if u32_at(&mut at)? != MAGIC {
        return None;
    }
    let n_rlimits = u32_at(&mut at)? as usize;
    if n_rlimits > MAX_RLIMITS {
        return None;
    }
    let mut rlimits = [(0, 0, 0); MAX_RLIMITS];
    for slot in rlimits.iter_mut().take(n_rlimits) {
        let resource = c_int::from_ne_bytes(take::<4>(buf, &mut at)?);
        let soft = u64::from_ne_bytes(take::<8>(buf, &mut at)?);
        let hard = u64::from_ne_bytes(take::<8>(buf, &mut at)?);
        *slot = (resource, soft, hard);
    }
    let argc = u32_at(&mut at)? as usize;
    let programs = u32_at(&mut at)? as usize;
    let strings = argc.checked_add(programs)?;
    if argc == 0 || programs == 0 || strings.checked_add(1)? > ptrs.len() {
        return None;
    }
    let text = buf.get(at..)?;
    if text.last() != Some(&0) {
        return None;
    }
    let mut start = 0;
    let mut found = 0;
    for (i, &byte) in text.iter().enumerate() {
        if byte == 0 {
            if found == strings {
                return None;
            }
            // argv's strings, then a null, then the programs.
            let slot = if found < argc { found } else { found + 1 };
            ptrs[slot] = text[start..].as_ptr().cast();
            found += 1;
            start = i + 1;
        }
    }
    if found != strings {
        return None;
    }
    ptrs[argc] = std::ptr::null();
    Some(Request {
        rlimits,
        n_rlimits,
        argc,
        programs,
    })
}

/// Everything the launcher process needs, prepared by the host: the sandbox-wide part of a
/// chain's plan, its own socket and start-up report pipe, and the buffers it decodes requests
/// into.
struct LauncherPlan {
    /// The sandbox-wide plan ([`Program::Launcher`]); its report descriptor is the start-up
    /// report pipe.
    base: ExecPlan,
    /// `envp` of `base`, null-terminated.
    envp: Vec<*const c_char>,
    /// The launcher's end of the request socket.
    socket: OwnedFd,
    /// Descriptors to keep (sorted): `base`'s and the socket.
    keep: Vec<RawFd>,
    /// One request.
    buf: Box<[u8]>,
    /// Pointers into `buf`.
    ptrs: Box<[*const c_char]>,
}

// SAFETY: the raw pointers point into `base` and `buf`, which the plan owns and moves with it.
unsafe impl Send for LauncherPlan {}

/// The launcher process of a sandbox. Dropping it kills and reaps the launcher (it also exits
/// by itself when the host's end of its socket closes).
#[derive(Debug)]
pub(crate) struct Launcher {
    pid: Pid,
    /// The host's end of the request socket (non-blocking).
    socket: OwnedFd,
}

impl Launcher {
    /// Starts the launcher of the sandbox `core` describes (on the spawner thread, whose end
    /// is the launcher's parent-death signal) and waits until it has joined the sandbox.
    pub(crate) async fn start(spawner: &Spawner, core: &Arc<Core>, deadline: Instant) -> Result<Launcher, LocalError> {
        let (report_read, report_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let (host, own) = seqpacket_pair().context(|| "creating the launcher's socket".into())?;
        let devnull = core.devnull();
        let base = core.exec_plan(Program::Launcher, [devnull; 3], None, report_write.as_raw_fd())?;
        let mut keep = base.keep.clone();
        keep.push(own.as_raw_fd());
        keep.sort_unstable();
        let envp = base
            .envp
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let plan = LauncherPlan {
            base,
            envp,
            socket: own,
            keep,
            buf: vec![0u8; MAX_REQUEST].into_boxed_slice(),
            ptrs: vec![std::ptr::null(); MAX_REQUEST / 2 + 2].into_boxed_slice(),
        };
        let keep_alive = (Arc::clone(core), report_write);
        let pid = spawner
            .run(move || {
                let mut plan = plan;
                // SAFETY: `launcher_main` only makes async-signal-safe calls on data prepared in
                // `plan` and never returns.
                let pid = unsafe { child::fork_with(|| launcher_main(&mut plan)) };
                drop(plan);
                drop(keep_alive);
                pid
            })
            .await
            .context(|| "asking the spawner thread".into())?
            .context(|| "forking the launcher".into())?;
        let launcher = Launcher { pid, socket: host };
        let mut report = Receiver::from_owned_fd(report_read).context(|| "watching the report pipe".into())?;
        match tokio::time::timeout_at(deadline, crate::holder::read_record(&mut report)).await {
            Ok(Ok(Some(Record::Ready))) => Ok(launcher),
            Ok(Ok(Some(Record::Failed { stage: s, errno }))) => Err(LocalError::io(
                format!("starting the launcher failed while {}", stage::describe(s)),
                io::Error::from_raw_os_error(errno),
            )),
            Ok(_) => Err(LocalError::io(
                "starting the launcher",
                io::Error::other("it exited during setup"),
            )),
            Err(_) => Err(LocalError::Timeout("the launcher did not start in time".into())),
        }
    }

    /// The launcher's pid (the parent of every chain it starts).
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends `request` with the chain's descriptors (report, go-ahead, stdin, stdout, stderr).
    /// Never blocks: a full socket is an error, and then nothing was sent.
    pub(crate) fn send(&self, request: &[u8], fds: [RawFd; REQUEST_FDS]) -> io::Result<()> {
        let sent = sys::send_with_fds(self.socket.as_raw_fd(), request, &fds)?;
        if sent == request.len() {
            Ok(())
        } else {
            Err(io::Error::other("the launcher's socket took part of a request"))
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        sys::kill(self.pid, libc::SIGKILL);
        let _ = sys::wait_blocking(self.pid);
    }
}

/// A connected pair of Unix `SOCK_SEQPACKET` sockets, close-on-exec, the first non-blocking:
/// `(host, launcher)`.
fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two descriptors for the kernel to fill.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned these two descriptors to us; nothing else owns them.
    let (host, own) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(host.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(host.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((host, own))
}

/// The launcher process: enters the sandbox's namespaces and cgroups, reports
/// [`Record::Ready`], then starts one chain per request until the host closes its socket.
fn launcher_main(plan: &mut LauncherPlan) -> i32 {
    let base = &plan.base;
    child::disguise(c"msbw-launch", base.argv_area);
    child::close_other_fds(&plan.keep);
    child::null_stdio(base.devnull_fd, &plan.keep);
    // Every namespace but the pid namespace (last): a process that entered that one would fork
    // into it, and then report pids of the sandbox's namespace, not host pids. Each chain's first
    // process enters it, so that its child, the chain's second process, is forked into it.
    let Some((&pid_ns, others)) = base.namespaces.split_last() else {
        return 1;
    };
    let setup = (|| {
        child::enter_namespaces(base.drop_groups, others)?;
        child::join_cgroups(&base.cgroup_procs)?;
        // Entering the user namespace reset these.
        child::set_parent_death_signal()?;
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
        Ok(())
    })();
    if let Err(fail) = setup {
        return child::report_failure(base.report_fd, fail);
    }
    for &fd in &base.cgroup_procs {
        child::close_fd(fd);
    }
    // SAFETY: signal(2) with a constant disposition: the chains' first processes are reaped by
    // the kernel.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    child::report(base.report_fd, Record::Ready);
    child::close_fd(base.report_fd);
    let socket = plan.socket.as_raw_fd();
    loop {
        let mut fds = [-1 as RawFd; REQUEST_FDS];
        let n = match receive(socket, &mut plan.buf, &mut fds) {
            Ok(0) => return 0,
            Ok(n) => n,
            Err(libc::EINTR) => continue,
            Err(_) => return 1,
        };
        if fds.iter().all(|&fd| fd >= 0) {
            match decode(&plan.buf[..n], &mut plan.ptrs) {
                Some(request) => start_chain(base, &plan.envp, &plan.ptrs, &request, fds, [socket, pid_ns]),
                None => child::report(
                    fds[0],
                    Record::Failed {
                        stage: stage::REQUEST,
                        errno: libc::EINVAL,
                    },
                ),
            }
        }
        for fd in fds {
            if fd >= 0 {
                child::close_fd(fd);
            }
        }
    }
}

/// Forks the first process of a chain for a decoded request.
fn start_chain(
    base: &ExecPlan,
    envp: &[*const c_char],
    ptrs: &[*const c_char],
    request: &Request,
    fds: [RawFd; REQUEST_FDS],
    [socket, pid_ns]: [RawFd; 2],
) {
    let [report_fd, go, stdin, stdout, stderr] = fds;
    let first_program = request.argc + 1;
    let launch = Launch {
        report_fd,
        stdio: [stdin, stdout, stderr],
        control: None,
        rlimits: &request.rlimits[..request.n_rlimits],
        cgroup_procs: &[],
        cwd: &base.cwd,
        last_cap: base.last_cap,
        landlock: base.landlock.as_ref(),
        nosuid: base.nosuid,
        seccomp: base.seccomp,
        programs: &ptrs[first_program..first_program + request.programs],
        argv: ptrs.as_ptr(),
        envp: envp.as_ptr(),
    };
    // SAFETY: the child only makes async-signal-safe calls on `launch`, which lives in this
    // process's memory (copied by the fork).
    let forked = unsafe {
        child::fork_with(|| {
            // SAFETY: signal(2) with a constant disposition. Inherited from the launcher: the
            // chain waits for its children, and programs start with the default.
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            child::close_fd(socket);
            let started =
                child::enter_namespaces(false, &[pid_ns]).and_then(|()| child::start_second(&launch, go, None));
            match started {
                Ok(()) => 0,
                Err(fail) => child::report_failure(report_fd, fail),
            }
        })
    };
    if let Err(e) = forked {
        child::report(
            report_fd,
            Record::Failed {
                stage: stage::FORK,
                errno: e.raw_os_error().unwrap_or(libc::EIO),
            },
        );
    }
}

/// Receives one request into `buf` with up to [`REQUEST_FDS`] descriptors (close-on-exec) into
/// `fds`; a request with other descriptors keeps `-1`s (its descriptors are closed). Returns
/// the request's length, 0 at end of file, or the `errno`.
fn receive(socket: RawFd, buf: &mut [u8], fds: &mut [RawFd; REQUEST_FDS]) -> Result<usize, i32> {
    const SPACE: usize = 64;
    // Aligned for `cmsghdr`.
    let mut control = [0u64; SPACE / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = SPACE as _;
    // SAFETY: `msg` and everything it points to live until the call returns.
    let n = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(sys::errno());
    }
    let mut received = [-1 as RawFd; 16];
    let mut count = 0;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    if count < received.len() {
                        received[count] = fd;
                        count += 1;
                    } else {
                        child::close_fd(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let complete = count == REQUEST_FDS && msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) == 0;
    if complete {
        fds.copy_from_slice(&received[..REQUEST_FDS]);
    } else {
        for &fd in &received[..count] {
            child::close_fd(fd);
        }
        if n == 0 {
            return Ok(0);
        }
    }
    Ok(n as usize)
}

/// The argv strings a request's pointers name (for tests).
#[cfg(test)]
fn strings(ptrs: &[*const c_char]) -> Vec<std::ffi::CString> {
    ptrs.iter()
        // SAFETY: the test's pointers point at NUL-terminated strings in its buffer.
        .map(|&p| unsafe { std::ffi::CStr::from_ptr(p) }.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use super::*;

    fn plan(argv: &[&str], programs: &[&str], rlimits: Vec<(c_int, u64, u64)>) -> ExecPlan {
        let c = |v: &[&str]| v.iter().map(|s| CString::new(*s).unwrap()).collect::<Vec<_>>();
        ExecPlan {
            argv: c(argv),
            programs: c(programs),
            rlimits,
            ..ExecPlan::empty()
        }
    }

    #[test]
    fn requests_round_trip() {
        let limits = vec![(libc::RLIMIT_CPU as c_int, 3, 4), (libc::RLIMIT_CORE as c_int, 0, 0)];
        let p = plan(&["ls", "-l", ""], &["/usr/bin/ls", "/bin/ls"], limits.clone());
        let bytes = encode(&p).unwrap();
        let mut ptrs = vec![std::ptr::null(); 16];
        let r = decode(&bytes, &mut ptrs).unwrap();
        assert_eq!((r.argc, r.programs), (3, 2));
        assert_eq!(&r.rlimits[..r.n_rlimits], &limits[..]);
        assert_eq!(strings(&ptrs[..3]), p.argv);
        assert!(ptrs[3].is_null());
        assert_eq!(strings(&ptrs[4..6]), p.programs);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let p = plan(&["true"], &["/bin/true"], vec![]);
        let bytes = encode(&p).unwrap();
        let mut ptrs = vec![std::ptr::null(); 16];
        for bad in [
            &bytes[..bytes.len() - 1],
            &bytes[..8],
            &[0u8; 32][..],
            &[bytes.as_slice(), b"x\0"].concat()[..],
        ] {
            assert!(decode(bad, &mut ptrs).is_none(), "{bad:?}");
        }
        // More strings than pointers.
        let many: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(decode(&encode(&plan(&many, &["/bin/x"], vec![])).unwrap(), &mut ptrs).is_none());
        // Too big for a request: the direct path.
        let long = "x".repeat(MAX_REQUEST);
        assert!(encode(&plan(&[&long], &["/bin/x"], vec![])).is_none());
    }
}
