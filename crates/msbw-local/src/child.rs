//! Code that runs in forked children: the sandbox holder and the chain of processes that starts
//! a program inside a sandbox.
//!
//! The host process is multi-threaded, so between `fork`/`clone` and `execve` a child may only
//! make async-signal-safe calls: no allocation, no locks, no `std` I/O. Everything the children
//! need (paths, argv, envp, descriptor numbers) is prepared by the parent in [`HolderPlan`] and
//! [`ExecPlan`]; the functions here only issue system calls. Credentials are changed with raw
//! system calls, because glibc's `setresuid` would try to synchronise threads that do not exist
//! in the child. Failures are reported to the parent as fixed-size [`Record`]s on a pipe.
//!
//! Process layout (see the local backend in `docs/backends.md`):
//!
//! ```text
//! host                              sandbox pid ns                 per-execution pid ns
//! backend ─clone(NEWUSER|NEWNS|…)─▶ H  holder, pid 1 (mounts, /proc, then waits)
//! backend ─fork─▶ C1 ─setns(all)─fork─▶ C2 ─unshare(NEWPID)─fork─▶ C3 init, pid 1 (reaps)
//!                                                                   └─fork─▶ C4 program
//! ```

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use libc::{c_char, c_int, c_ulong};

use crate::sys::{
    MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MountAttr, OpenHow, Pid, RESOLVE_STRICT, clone_tree, errno,
    mount_setattr,
};

/// Length of one [`Record`] on the report pipe.
pub(crate) const RECORD_LEN: usize = 16;

/// What a child tells the parent on the report pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    /// The holder finished setting up the sandbox.
    Ready,
    /// A step failed with an `errno`.
    Failed {
        /// Which step ([`stage`] constants, or [`stage::STEP_BASE`] + index of a mount step).
        stage: u32,
        /// The `errno` it failed with.
        errno: i32,
    },
    /// The program exited; the raw wait status.
    Exited {
        /// The wait status, as from `waitpid`.
        status: i32,
    },
    /// The chain's second process (the first inside the sandbox) was forked, with this host
    /// pid. Killing it ends the execution cleanly: see [`crate::exec::Chain::kill`].
    Started {
        /// Its pid in the host's pid namespace.
        pid: i32,
    },
}

impl Record {
    /// The record's bytes.
    pub(crate) fn encode(self) -> [u8; RECORD_LEN] {
        let (kind, a, b) = match self {
            Record::Ready => (1u32, 0u32, 0i32),
            Record::Failed { stage, errno } => (2, stage, errno),
            Record::Exited { status } => (3, 0, status),
            Record::Started { pid } => (4, 0, pid),
        };
        let mut out = [0u8; RECORD_LEN];
        out[0..4].copy_from_slice(&kind.to_ne_bytes());
        out[4..8].copy_from_slice(&a.to_ne_bytes());
        out[8..12].copy_from_slice(&b.to_ne_bytes());
        out
    }

    /// Reads a record; `None` for bytes no child writes.
    pub(crate) fn decode(bytes: &[u8; RECORD_LEN]) -> Option<Record> {
        let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        let kind = u32::from_ne_bytes(word(0));
        let a = u32::from_ne_bytes(word(4));
        let b = i32::from_ne_bytes(word(8));
        match kind {
            1 => Some(Record::Ready),
            2 => Some(Record::Failed { stage: a, errno: b }),
            3 => Some(Record::Exited { status: b }),
            4 => Some(Record::Started { pid: b }),
            _ => None,
        }
    }
}

/// The steps a child reports failures of.
pub(crate) mod stage {
    /// Waiting for the parent's go-ahead (the parent died).
    pub(crate) const WAIT_PARENT: u32 = 1;
    /// Switching to the sandbox's root user.
    pub(crate) const CREDENTIALS: u32 = 2;
    /// Making the mount tree private.
    pub(crate) const PRIVATE_MOUNTS: u32 = 3;
    /// Mounting the root tmpfs.
    pub(crate) const ROOT_TMPFS: u32 = 4;
    /// Switching to the new root (`pivot_root`).
    pub(crate) const PIVOT_ROOT: u32 = 5;
    /// Making the root read-only.
    pub(crate) const ROOT_READ_ONLY: u32 = 6;
    /// Setting the hostname.
    pub(crate) const HOSTNAME: u32 = 7;
    /// Bringing up the loopback interface.
    pub(crate) const LOOPBACK: u32 = 8;
    /// Dropping the supplementary groups.
    pub(crate) const SETGROUPS: u32 = 10;
    /// Entering the sandbox's namespaces.
    pub(crate) const SETNS: u32 = 11;
    /// Forking.
    pub(crate) const FORK: u32 = 12;
    /// Creating the execution's pid namespace.
    pub(crate) const NEW_PID_NS: u32 = 13;
    /// Joining the sandbox's cgroups.
    pub(crate) const CGROUP: u32 = 14;
    /// Setting resource limits.
    pub(crate) const RLIMIT: u32 = 15;
    /// Changing to the working directory.
    pub(crate) const CHDIR: u32 = 16;
    /// Arranging standard descriptors.
    pub(crate) const DESCRIPTORS: u32 = 17;
    /// Dropping capabilities.
    pub(crate) const CAPABILITIES: u32 = 18;
    /// Setting no_new_privs.
    pub(crate) const NO_NEW_PRIVS: u32 = 19;
    /// Applying the Landlock ruleset.
    pub(crate) const LANDLOCK: u32 = 20;
    /// Executing the program.
    pub(crate) const EXEC: u32 = 21;
    /// Installing the seccomp filter.
    pub(crate) const SECCOMP: u32 = 22;
    /// Installing the seccomp filter against set-uid files ([`crate::nosuid`]).
    pub(crate) const SET_ID_FILTER: u32 = 30;
    /// Reading a request of the sandbox's launcher ([`crate::launcher`]).
    pub(crate) const REQUEST: u32 = 31;
    /// The first mount step; step `i` of a [`super::HolderPlan`] is `STEP_BASE + i`.
    pub(crate) const STEP_BASE: u32 = 1000;

    /// What a stage number means, for messages.
    pub(crate) fn describe(stage: u32) -> &'static str {
        match stage {
            WAIT_PARENT => "waiting for the backend (it went away)",
            CREDENTIALS => "switching to the sandbox's root user",
            PRIVATE_MOUNTS => "making the mount tree private",
            ROOT_TMPFS => "mounting the sandbox's root filesystem",
            PIVOT_ROOT => "switching to the sandbox's root (pivot_root)",
            ROOT_READ_ONLY => "making the root read-only",
            HOSTNAME => "setting the hostname",
            LOOPBACK => "bringing up the loopback interface",
            SETGROUPS => "dropping supplementary groups",
            SETNS => "entering the sandbox's namespaces",
            FORK => "forking",
            NEW_PID_NS => "creating the execution's pid namespace",
            CGROUP => "joining the sandbox's cgroups",
            RLIMIT => "setting resource limits",
            CHDIR => "changing to the working directory",
            DESCRIPTORS => "arranging standard input and output",
            CAPABILITIES => "dropping capabilities",
            NO_NEW_PRIVS => "setting no_new_privs",
            LANDLOCK => "applying the Landlock ruleset",
            EXEC => "executing the program",
            SECCOMP => "installing the seccomp filter",
            SET_ID_FILTER => "installing the seccomp filter against set-uid files",
            REQUEST => "reading the launcher's request",
            _ => "setting up the sandbox",
        }
    }
}

/// A failed step: which, and its `errno`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fail {
    stage: u32,
    errno: i32,
}

/// The result of a step in a child.
pub(crate) type Step<T = ()> = Result<T, Fail>;

/// mount(2), with `None` for the null pointers; the errno on failure. Allocates nothing, so it
/// is safe between clone and exec.
fn mount(
    source: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: c_ulong,
    data: Option<&std::ffi::CStr>,
) -> Result<(), i32> {
    let ptr = |s: Option<&std::ffi::CStr>| s.map_or(std::ptr::null(), std::ffi::CStr::as_ptr);
    // SAFETY: every pointer is null or a valid NUL-terminated string that outlives the call.
    let r = unsafe { libc::mount(ptr(source), target.as_ptr(), ptr(fstype), flags, ptr(data).cast()) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn check(r: c_int, stage: u32) -> Step<c_int> {
    if r < 0 {
        Err(Fail { stage, errno: errno() })
    } else {
        Ok(r)
    }
}

fn check_long(r: libc::c_long, stage: u32) -> Step<libc::c_long> {
    if r < 0 {
        Err(Fail { stage, errno: errno() })
    } else {
        Ok(r)
    }
}

/// Forks; the child runs `child` and exits with its result.
///
/// # Safety
/// `child` runs in a copy of a multi-threaded process: it must only make async-signal-safe
/// calls (no allocation, no locks, no `std` I/O) and must not return into the caller.
pub(crate) unsafe fn fork_with(child: impl FnOnce() -> i32) -> io::Result<Pid> {
    // SAFETY: the caller promises that `child` is async-signal-safe.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let code = child();
            // SAFETY: _exit never returns and skips atexit handlers and destructors.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid),
    }
}

/// Like [`fork_with`], with `clone(2)` flags (new namespaces).
///
/// # Safety
/// As for [`fork_with`]; in addition, `child` must change credentials only with raw system
/// calls (glibc's wrappers would signal threads that do not exist in the child).
pub(crate) unsafe fn clone_with(flags: c_int, child: impl FnOnce() -> i32) -> io::Result<Pid> {
    // SAFETY: with a null stack pointer clone(2) behaves like fork(2): the child continues on a
    // copy of this stack. The argument order of the unused pointers differs between
    // architectures, but they are all zero.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let code = child();
            // SAFETY: _exit never returns and skips atexit handlers and destructors.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid as Pid),
    }
}

/// Starts the holder of a new sandbox in new namespaces (`flags`). Call it from the spawner
/// thread: the holder's parent-death signal is tied to the calling thread.
pub(crate) fn spawn_holder(flags: c_int, plan: &HolderPlan) -> io::Result<Pid> {
    // SAFETY: `holder_main` only makes async-signal-safe calls on data prepared in `plan`, and
    // changes credentials with raw system calls.
    unsafe { clone_with(flags, || holder_main(plan)) }
}

/// Starts an execution chain for `plan`; returns the pid of its first process.
pub(crate) fn spawn_chain(plan: &ExecPlan, pointers: &ExecPointers) -> io::Result<Pid> {
    // SAFETY: `exec_main` only makes async-signal-safe calls on data prepared in `plan`.
    unsafe { fork_with(|| exec_main(plan, pointers)) }
}

/// Starts a child in new namespaces (`flags`) that checks it may mount there; it exits with 0
/// if so.
pub(crate) fn spawn_probe(flags: c_int) -> io::Result<Pid> {
    // SAFETY: the child only calls mount(2) and returns.
    unsafe { clone_with(flags, probe_main) }
}

fn probe_main() -> i32 {
    let tmpfs = Some(c"tmpfs");
    if mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).is_err() {
        return 1;
    }
    if mount(tmpfs, c"/", tmpfs, 0, None).is_err() {
        return 2;
    }
    0
}

/// Closes `fd`, ignoring errors.
pub(crate) fn close_fd(fd: RawFd) {
    // SAFETY: closing a descriptor number has no memory-safety preconditions.
    unsafe { libc::close(fd) };
}

/// Blocks until `fd` reaches end of file (or fails).
pub(crate) fn wait_for_eof(fd: RawFd) {
    let mut byte = 0u8;
    loop {
        // SAFETY: reading one byte into a valid buffer.
        let r = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        if r == 0 || (r < 0 && errno() != libc::EINTR) {
            return;
        }
    }
}

/// Writes a record to the report pipe, ignoring errors (the parent may be gone).
pub(crate) fn report(fd: RawFd, record: Record) {
    let bytes = record.encode();
    // SAFETY: writing from a valid buffer; 16 bytes are below PIPE_BUF, so the write is atomic.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

/// Reports `fail` on `fd`; the exit code of a child whose setup failed.
pub(crate) fn report_failure(fd: RawFd, fail: Fail) -> i32 {
    report(
        fd,
        Record::Failed {
            stage: fail.stage,
            errno: fail.errno,
        },
    );
    1
}

/// Closes every descriptor from 3 up that is not in `keep` (sorted ascending).
pub(crate) fn close_other_fds(keep: &[RawFd]) {
    let mut next: u32 = 3;
    for &fd in keep {
        if fd < 3 {
            continue;
        }
        let fd = fd as u32;
        if fd > next {
            close_range(next, fd - 1);
        }
        next = next.max(fd + 1);
    }
    close_range(next, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range(2) has no memory-safety preconditions.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if r < 0 {
        // Kernels before 5.9: close one by one, up to a sane bound.
        let last = last.min(first.saturating_add(65_536));
        for fd in first..=last {
            close_fd(fd as RawFd);
        }
    }
}

/// Points descriptors 0 to 2 that are not in `keep` at `/dev/null`.
pub(crate) fn null_stdio(devnull: RawFd, keep: &[RawFd]) {
    for fd in 0..3 {
        if !keep.contains(&fd) {
            // SAFETY: dup2(2) on descriptor numbers.
            unsafe { libc::dup2(devnull, fd) };
        }
    }
}

/// Hides what a forked copy of the host process would show to processes in the sandbox:
/// makes it non-dumpable (so its memory, environment and descriptors cannot be read through
/// `/proc` or ptrace), names it `title` and overwrites the host program's command line.
pub(crate) fn disguise(title: &std::ffi::CStr, argv_area: Option<(usize, usize)>) {
    // SAFETY: prctl with integer arguments and a valid C string (at most 16 bytes are read).
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0 as c_ulong, 0, 0, 0);
        libc::prctl(libc::PR_SET_NAME, title.as_ptr() as c_ulong, 0, 0, 0);
    }
    if let Some((start, end)) = argv_area {
        let len = end - start;
        let text = title.to_bytes();
        let n = text.len().min(len.saturating_sub(1));
        // SAFETY: [start, end) is this process's own argument area (from /proc/self/stat of the
        // process we are a copy of), mapped readable and writable; nothing else uses it here.
        unsafe {
            std::ptr::write_bytes(start as *mut u8, 0, len);
            std::ptr::copy_nonoverlapping(text.as_ptr(), start as *mut u8, n);
        }
    }
}

pub(crate) fn set_parent_death_signal() -> Step {
    // SAFETY: prctl(PR_SET_PDEATHSIG) with a signal number.
    check(
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0) },
        stage::WAIT_PARENT,
    )
    .map(drop)
}

/// Waits for the parent's go-ahead byte; end of file means the parent died before we set our
/// parent-death signal, so we must not continue.
fn wait_for_go(fd: RawFd) -> Step {
    let mut byte = 0u8;
    loop {
        // SAFETY: reading one byte into a valid buffer.
        let r = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        if r == 1 {
            close_fd(fd);
            return Ok(());
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        return Err(Fail {
            stage: stage::WAIT_PARENT,
            errno: libc::ESRCH,
        });
    }
}

fn send_go(fd: RawFd) {
    let byte = b'g';
    // SAFETY: writing one byte from a valid buffer.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    close_fd(fd);
}

/// Switches to uid and gid 0 of the current user namespace (raw system calls: see the module
/// documentation).
fn become_namespace_root() -> Step {
    // SAFETY: raw credential system calls with plain integer arguments.
    unsafe {
        check_long(libc::syscall(libc::SYS_setresgid, 0, 0, 0), stage::CREDENTIALS)?;
        check_long(libc::syscall(libc::SYS_setresuid, 0, 0, 0), stage::CREDENTIALS)?;
    }
    Ok(())
}

/// `waitpid` that retries on `EINTR`.
fn wait_child(pid: Pid) -> Option<c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        return None;
    }
}

// ---------------------------------------------------------------------------------------------
// The holder
// ---------------------------------------------------------------------------------------------

/// One step of building the sandbox's root, on host paths below the new root (before
/// `pivot_root`).
#[derive(Debug)]
pub(crate) enum MountStep {
    /// `mkdir`, ignoring `EEXIST`.
    Dir {
        /// The directory.
        path: CString,
    },
    /// Create an empty file (a mount point for a file), ignoring `EEXIST`.
    File {
        /// The file.
        path: CString,
    },
    /// A symbolic link.
    Symlink {
        /// What it points to.
        target: CString,
        /// Where it is created.
        path: CString,
    },
    /// A recursive bind mount, then `attrs` (`MOUNT_ATTR_*`) set on the whole tree.
    Bind {
        /// The host path.
        source: CString,
        /// The mount point.
        target: CString,
        /// Attributes to set after mounting.
        attrs: u64,
    },
    /// A new tmpfs.
    Tmpfs {
        /// The mount point.
        target: CString,
        /// Mount options (`mode=..,size=..`).
        data: CString,
    },
    /// A volume: the mount point is created and resolved beneath the new root without following
    /// symbolic links (a volume mounted earlier may contain links the sandbox planted), then
    /// `source` is mounted on it.
    Volume {
        /// Where it goes.
        at: Beneath,
        /// Whether it is a directory (else a regular file).
        is_dir: bool,
        /// What is mounted.
        source: VolumeSource,
    },
    /// A new procfs for the sandbox's pid namespace.
    Proc {
        /// The mount point.
        target: CString,
    },
    /// Set `attrs` on an existing mount (not recursive).
    SetAttrs {
        /// The mount point.
        target: CString,
        /// Attributes to set.
        attrs: u64,
    },
}

/// A path beneath the sandbox's new root, as the holder creates and resolves it.
#[derive(Debug)]
pub(crate) struct Beneath {
    /// `(parent, name)` pairs, outermost first: `name` is created in `parent` (relative to the
    /// new root); the last pair is the mount point itself.
    pub(crate) steps: Vec<(CString, CString)>,
    /// The mount point, relative to the new root.
    pub(crate) target: CString,
}

/// What a volume's mount is made from.
#[derive(Debug)]
pub(crate) enum VolumeSource {
    /// A detached (id-mapped) mount tree the parent made from the host path's descriptor.
    Tree(OwnedFd),
    /// The host path relative to `/` (unprivileged hosts, where the parent cannot make trees):
    /// the holder opens it without following links in its own mount namespace and checks it is
    /// the inode the parent checked.
    Host {
        /// The path, relative to `/`.
        path: CString,
        /// The device the parent saw.
        dev: u64,
        /// The inode the parent saw.
        ino: u64,
        /// `MOUNT_ATTR_*` flags of the mount.
        attrs: u64,
    },
}

/// The descriptors the holder inherits; owned by its plan, so they stay open until the holder
/// has been created and are closed once the plan is dropped.
#[derive(Debug)]
pub(crate) struct HolderFds {
    /// Write end of the report pipe.
    pub(crate) report: OwnedFd,
    /// Read end of the go-ahead pipe (the parent writes after setting up the id maps).
    pub(crate) go: OwnedFd,
    /// Read end of the lifeline: the holder lives until it reaches end of file.
    pub(crate) lifeline: OwnedFd,
    /// `/dev/null`, for descriptors 0 to 2.
    pub(crate) devnull: OwnedFd,
}

/// Everything the holder needs, prepared by the parent. It owns every descriptor it names.
#[derive(Debug)]
pub(crate) struct HolderPlan {
    fds: HolderFds,
    /// Descriptors to keep open (sorted); all others are closed first thing.
    keep: Vec<RawFd>,
    new_root: CString,
    root_data: CString,
    steps: Vec<MountStep>,
    hostname: CString,
    loopback: bool,
    argv_area: Option<(usize, usize)>,
}

impl HolderPlan {
    /// The plan to build a sandbox's root at `new_root` (a host path) with `steps`; `loopback`
    /// when the sandbox has its own network namespace.
    pub(crate) fn new(fds: HolderFds, new_root: CString, steps: Vec<MountStep>, loopback: bool) -> HolderPlan {
        let mut keep = vec![
            fds.report.as_raw_fd(),
            fds.go.as_raw_fd(),
            fds.lifeline.as_raw_fd(),
            fds.devnull.as_raw_fd(),
        ];
        keep.extend(steps.iter().filter_map(|s| match s {
            MountStep::Volume {
                source: VolumeSource::Tree(tree),
                ..
            } => Some(tree.as_raw_fd()),
            _ => None,
        }));
        keep.sort_unstable();
        HolderPlan {
            fds,
            keep,
            new_root,
            root_data: c"mode=0755,size=1m,nr_inodes=4096".to_owned(),
            steps,
            hostname: c"sandbox".to_owned(),
            loopback,
            argv_area: crate::sys::argv_area(),
        }
    }
}

/// The holder: runs as pid 1 of the sandbox's namespaces, builds the root filesystem, reports
/// [`Record::Ready`] and then waits for the lifeline to close. Returns the exit code.
pub(crate) fn holder_main(plan: &HolderPlan) -> i32 {
    let report_fd = plan.fds.report.as_raw_fd();
    close_other_fds(&plan.keep);
    null_stdio(plan.fds.devnull.as_raw_fd(), &plan.keep);
    match holder_setup(plan) {
        Ok(()) => {
            report(report_fd, Record::Ready);
            close_fd(report_fd);
            // Children reparented to us are reaped automatically (SIGCHLD ignored).
            wait_for_eof(plan.fds.lifeline.as_raw_fd());
            0
        }
        Err(fail) => report_failure(report_fd, fail),
    }
}

fn holder_setup(plan: &HolderPlan) -> Step {
    set_parent_death_signal()?;
    // The parent opens our namespace files before it lets us go on, which it could not do
    // (without being root) once we are not dumpable.
    wait_for_go(plan.fds.go.as_raw_fd())?;
    disguise(c"msbw-sandbox", plan.argv_area);
    become_namespace_root()?;
    // A change of credentials clears the parent-death signal: set it again.
    set_parent_death_signal()?;
    // SAFETY: signal(2) with a constant disposition; orphans are then reaped by the kernel.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };

    let root = c"/";
    mount(None, root, None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(|errno| Fail {
        stage: stage::PRIVATE_MOUNTS,
        errno,
    })?;
    let tmpfs = Some(c"tmpfs");
    mount(
        tmpfs,
        &plan.new_root,
        tmpfs,
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&plan.root_data),
    )
    .map_err(|errno| Fail {
        stage: stage::ROOT_TMPFS,
        errno,
    })?;
    // Volume steps resolve their paths beneath these; no other step needs them.
    let has_volumes = plan.steps.iter().any(|s| matches!(s, MountStep::Volume { .. }));
    let dirs = if has_volumes {
        HolderDirs::open(&plan.new_root)?
    } else {
        HolderDirs { host: -1, new_root: -1 }
    };
    let steps = plan
        .steps
        .iter()
        .enumerate()
        .try_for_each(|(i, step)| mount_step(step, stage::STEP_BASE + i as u32, &dirs));
    dirs.close();
    steps?;

    let dot = c".";
    // SAFETY: chdir, pivot_root and umount2 with valid C strings.
    unsafe {
        check(libc::chdir(plan.new_root.as_ptr()), stage::PIVOT_ROOT)?;
        check_long(
            libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()),
            stage::PIVOT_ROOT,
        )?;
        check(libc::umount2(dot.as_ptr(), libc::MNT_DETACH), stage::PIVOT_ROOT)?;
        check(libc::chdir(root.as_ptr()), stage::PIVOT_ROOT)?;
    }
    set_attrs(root, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, false).map_err(|errno| Fail {
        stage: stage::ROOT_READ_ONLY,
        errno,
    })?;
    // SAFETY: sethostname with a valid buffer and its length.
    check(
        unsafe { libc::sethostname(plan.hostname.as_ptr(), plan.hostname.as_bytes().len()) },
        stage::HOSTNAME,
    )?;
    if plan.loopback {
        loopback_up()?;
    }
    // The credential change made us dumpable again: nothing in the sandbox may ptrace the
    // holder or read its memory.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as c_ulong, 0, 0, 0) };
    Ok(())
}

/// `O_PATH` descriptors of the host's `/` and of the new root, which volume steps resolve
/// beneath.
struct HolderDirs {
    host: RawFd,
    new_root: RawFd,
}

impl HolderDirs {
    fn open(new_root: &std::ffi::CStr) -> Step<HolderDirs> {
        let open = |path: &std::ffi::CStr| {
            // SAFETY: open with a valid C string.
            check(
                unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) },
                stage::ROOT_TMPFS,
            )
        };
        Ok(HolderDirs {
            host: open(c"/")?,
            new_root: open(new_root)?,
        })
    }

    fn close(self) {
        close_all(&[self.host, self.new_root]);
    }
}

/// `openat2(dir, path, flags | O_CLOEXEC)` with [`RESOLVE_STRICT`]: no symbolic link anywhere,
/// never above `dir`.
fn open_beneath(dir: RawFd, path: &std::ffi::CStr, flags: c_int) -> Result<RawFd, i32> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_STRICT,
    };
    // SAFETY: `path` and `how` outlive the call; the size is that of the struct passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if r < 0 { Err(errno()) } else { Ok(r as RawFd) }
}

fn fstat_fd(fd: RawFd) -> Result<libc::stat, i32> {
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat(2) with a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        Err(errno())
    } else {
        Ok(st)
    }
}

/// Closes the descriptors in `fds` that were opened (`>= 0`).
fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        if fd >= 0 {
            close_fd(fd);
        }
    }
}

/// Creates `at`'s directories and mount point, resolves the mount point, makes the mount from
/// `source` and attaches it there. Every path is resolved with [`open_beneath`].
fn mount_volume(at: &Beneath, is_dir: bool, source: &VolumeSource, dirs: &HolderDirs) -> Result<(), i32> {
    let last = at.steps.len().saturating_sub(1);
    for (i, (parent, name)) in at.steps.iter().enumerate() {
        let parent_fd = open_beneath(dirs.new_root, parent, libc::O_PATH | libc::O_DIRECTORY)?;
        // SAFETY: mkdirat/mknodat with a descriptor and a valid C string.
        let r = unsafe {
            if i < last || is_dir {
                libc::mkdirat(parent_fd, name.as_ptr(), 0o755)
            } else {
                libc::mknodat(parent_fd, name.as_ptr(), libc::S_IFREG | 0o644, 0)
            }
        };
        let e = errno();
        close_fd(parent_fd);
        if r < 0 && e != libc::EEXIST {
            return Err(e);
        }
    }
    let kind = if is_dir { libc::O_DIRECTORY } else { 0 };
    let target = open_beneath(dirs.new_root, &at.target, libc::O_PATH | kind)?;
    let mut fds = [target, -1, -1];
    let result = (|| {
        let st = fstat_fd(target)?;
        let want = if is_dir { libc::S_IFDIR } else { libc::S_IFREG };
        if st.st_mode & libc::S_IFMT != want {
            return Err(if is_dir { libc::ENOTDIR } else { libc::EISDIR });
        }
        let tree = match source {
            VolumeSource::Tree(tree) => tree.as_raw_fd(),
            VolumeSource::Host { path, dev, ino, attrs } => {
                let host = open_beneath(dirs.host, path, libc::O_PATH)?;
                fds[1] = host;
                let st = fstat_fd(host)?;
                if st.st_dev != *dev || st.st_ino != *ino {
                    return Err(libc::ESTALE);
                }
                let tree = clone_tree(host)?;
                fds[2] = tree;
                set_attrs_fd(tree, *attrs)?;
                tree
            }
        };
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
        const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
        // SAFETY: move_mount(2) between two descriptors (empty paths), with valid C strings.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree,
                c"".as_ptr(),
                target,
                c"".as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
            )
        };
        if r < 0 { Err(errno()) } else { Ok(()) }
    })();
    close_all(&fds);
    if let VolumeSource::Tree(tree) = source {
        close_fd(tree.as_raw_fd());
    }
    result
}

/// Sets `attrs` on the detached tree `tree` and everything below it.
fn set_attrs_fd(tree: RawFd, attrs: u64) -> Result<(), i32> {
    let attr = MountAttr::set(attrs);
    mount_setattr(tree, c"", libc::AT_EMPTY_PATH | libc::AT_RECURSIVE, &attr)
}

fn mount_step(step: &MountStep, stage: u32, dirs: &HolderDirs) -> Step {
    let fail = |errno: i32| Fail { stage, errno };
    match step {
        MountStep::Dir { path } => {
            // SAFETY: mkdir with a valid C string.
            if unsafe { libc::mkdir(path.as_ptr(), 0o755) } < 0 && errno() != libc::EEXIST {
                return Err(fail(errno()));
            }
        }
        MountStep::File { path } => {
            // SAFETY: open with a valid C string.
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                )
            };
            if fd < 0 {
                return Err(fail(errno()));
            }
            close_fd(fd);
        }
        MountStep::Symlink { target, path } => {
            // SAFETY: symlink with valid C strings.
            if unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) } < 0 && errno() != libc::EEXIST {
                return Err(fail(errno()));
            }
        }
        MountStep::Bind { source, target, attrs } => {
            mount(Some(source), target, None, libc::MS_BIND | libc::MS_REC, None).map_err(fail)?;
            if *attrs != 0 {
                set_attrs(target, *attrs, true).map_err(fail)?;
            }
        }
        MountStep::Tmpfs { target, data } => {
            let tmpfs = Some(c"tmpfs");
            mount(tmpfs, target, tmpfs, libc::MS_NOSUID | libc::MS_NODEV, Some(data)).map_err(fail)?;
        }
        MountStep::Volume { at, is_dir, source } => mount_volume(at, *is_dir, source, dirs).map_err(fail)?,
        MountStep::Proc { target } => {
            let proc_ = Some(c"proc");
            mount(
                proc_,
                target,
                proc_,
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            )
            .map_err(fail)?;
        }
        MountStep::SetAttrs { target, attrs } => set_attrs(target, *attrs, false).map_err(fail)?,
    }
    Ok(())
}

/// Sets `MOUNT_ATTR_*` flags on the mount at `target` (and below it when `recursive`), with a
/// remount fallback for kernels before 5.12. Returns the `errno` on failure.
fn set_attrs(target: &std::ffi::CStr, attrs: u64, recursive: bool) -> Result<(), i32> {
    let attr = MountAttr::set(attrs);
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    match mount_setattr(libc::AT_FDCWD, target, flags, &attr) {
        Err(libc::ENOSYS) => {}
        done => return done,
    }
    // Fallback: a bind remount must repeat the flags the kernel locked on the mount.
    // SAFETY: an all-zero statvfs is valid; statvfs fills it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(3) with a valid C string and out-pointer. Since Linux 2.6.36 the kernel
    // reports the mount flags itself, so glibc does not read /proc/mounts (no allocation).
    if unsafe { libc::statvfs(target.as_ptr(), &mut st) } < 0 {
        return Err(errno());
    }
    let current = st.f_flag as c_ulong;
    let mut ms = libc::MS_BIND | libc::MS_REMOUNT;
    for (st_flag, ms_flag) in [
        (1, libc::MS_RDONLY),
        (2, libc::MS_NOSUID),
        (4, libc::MS_NODEV),
        (8, libc::MS_NOEXEC),
        (1024, libc::MS_NOATIME),
        (2048, libc::MS_NODIRATIME),
        (4096, libc::MS_RELATIME),
    ] {
        if current & st_flag != 0 {
            ms |= ms_flag;
        }
    }
    if attrs & MOUNT_ATTR_RDONLY != 0 {
        ms |= libc::MS_RDONLY;
    }
    if attrs & MOUNT_ATTR_NOSUID != 0 {
        ms |= libc::MS_NOSUID;
    }
    if attrs & MOUNT_ATTR_NODEV != 0 {
        ms |= libc::MS_NODEV;
    }
    mount(None, target, None, ms, None)
}

/// `struct ifreq` with the flags member of its union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn loopback_up() -> Step {
    // SAFETY: socket(2) with constant arguments.
    let sock = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) },
        stage::LOOPBACK,
    )?;
    let mut req = IfReqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write a `struct ifreq`, which `req` mirrors.
    let result = unsafe {
        check(
            libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req as *mut IfReqFlags),
            stage::LOOPBACK,
        )
        .and_then(|_| {
            req.flags |= libc::IFF_UP as libc::c_short;
            check(
                libc::ioctl(sock, libc::SIOCSIFFLAGS, &req as *const IfReqFlags),
                stage::LOOPBACK,
            )
        })
    };
    close_fd(sock);
    result.map(drop)
}

// ---------------------------------------------------------------------------------------------
// The execution chain
// ---------------------------------------------------------------------------------------------

/// A Landlock ruleset to apply before `execve`.
#[derive(Debug, Clone)]
pub(crate) struct LandlockPlan {
    /// The filesystem rights the ruleset handles (everything else is unrestricted).
    pub(crate) handled_fs: u64,
    /// The rights that apply to files (the rest only make sense on directories).
    pub(crate) file_rights: u64,
    /// Directories and the rights granted beneath them.
    pub(crate) rules: Vec<(CString, u64)>,
    /// Scopes (ABI 6: abstract unix sockets, signals).
    pub(crate) scoped: u64,
    /// How much of the ruleset attribute the kernel understands (8, 16 or 24 bytes).
    pub(crate) attr_size: usize,
}

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

fn apply_landlock(plan: &LandlockPlan) -> Step {
    const RULE_PATH_BENEATH: c_int = 1;
    let fail = |errno: i32| Fail {
        stage: stage::LANDLOCK,
        errno,
    };
    let attr = RulesetAttr {
        handled_access_fs: plan.handled_fs,
        handled_access_net: 0,
        scoped: plan.scoped,
    };
    // SAFETY: the kernel reads `attr_size` bytes (at most the struct's size) from `attr`.
    let ruleset = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            plan.attr_size.min(std::mem::size_of::<RulesetAttr>()),
            0u32,
        )
    };
    if ruleset < 0 {
        return Err(fail(errno()));
    }
    let ruleset = ruleset as c_int;
    let result = (|| {
        for (path, access) in &plan.rules {
            // SAFETY: open with a valid C string.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if fd < 0 {
                if errno() == libc::ENOENT || errno() == libc::ENOTDIR {
                    continue;
                }
                return Err(fail(errno()));
            }
            // A file (a volume that is a single file) only takes the rights that apply to files.
            // SAFETY: an all-zero stat is valid; fstat fills it.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fstat(2) on a descriptor we own, with a valid out-pointer.
            let is_dir = unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            let rights = if is_dir { *access } else { access & plan.file_rights };
            let rule = PathBeneathAttr {
                allowed_access: rights & plan.handled_fs,
                parent_fd: fd,
            };
            // SAFETY: the kernel reads a `struct landlock_path_beneath_attr`, which `rule` mirrors.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_landlock_add_rule,
                    ruleset,
                    RULE_PATH_BENEATH,
                    &rule as *const PathBeneathAttr,
                    0u32,
                )
            };
            let e = errno();
            close_fd(fd);
            if r < 0 {
                return Err(fail(e));
            }
        }
        // SAFETY: restricting ourselves with a ruleset descriptor.
        let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) };
        if r < 0 { Err(fail(errno())) } else { Ok(()) }
    })();
    close_fd(ruleset);
    result
}

/// Everything the execution chain needs, prepared by the parent. Raw pointers for `execve`
/// are built right before forking ([`ExecPointers`]).
#[derive(Debug)]
pub(crate) struct ExecPlan {
    /// Write end of the report pipe.
    pub(crate) report_fd: RawFd,
    /// `/dev/null`.
    pub(crate) devnull_fd: RawFd,
    /// Descriptors to keep open in the first child (sorted); all others are closed.
    pub(crate) keep: Vec<RawFd>,
    /// Namespace descriptors to enter, the user namespace first.
    pub(crate) namespaces: Vec<RawFd>,
    /// Whether to drop supplementary groups before entering (needs root).
    pub(crate) drop_groups: bool,
    /// `cgroup.procs` descriptors the program joins.
    pub(crate) cgroup_procs: Vec<RawFd>,
    /// Resource limits: `(resource, soft, hard)`.
    pub(crate) rlimits: Vec<(c_int, u64, u64)>,
    /// The program's standard input, output and error.
    pub(crate) stdio: [RawFd; 3],
    /// A descriptor that becomes the program's descriptor 3 (the driver's control socket).
    pub(crate) control: Option<RawFd>,
    /// The working directory inside the sandbox.
    pub(crate) cwd: CString,
    /// The highest capability number, for dropping the bounding set.
    pub(crate) last_cap: u32,
    /// The Landlock ruleset, when the kernel has Landlock.
    pub(crate) landlock: Option<LandlockPlan>,
    /// The seccomp filter, installed last before `execve`, when the host has seccomp.
    pub(crate) seccomp: Option<crate::seccomp::Program>,
    /// Full paths to try, in order (a `PATH` search done ahead).
    pub(crate) programs: Vec<CString>,
    /// `argv`.
    pub(crate) argv: Vec<CString>,
    /// `envp` entries (`NAME=value`).
    pub(crate) envp: Vec<CString>,
    /// The host process's argument area, overwritten (see [`crate::sys::argv_area`]).
    pub(crate) argv_area: Option<(usize, usize)>,
    /// The seccomp filter against set-uid files, when it could be built.
    pub(crate) nosuid: Option<&'static crate::nosuid::NoSuidFilter>,
}

#[cfg(test)]
impl ExecPlan {
    /// A plan with nothing in it, for tests that fill in a few fields.
    pub(crate) fn empty() -> ExecPlan {
        ExecPlan {
            report_fd: -1,
            devnull_fd: -1,
            keep: Vec::new(),
            namespaces: Vec::new(),
            drop_groups: false,
            cgroup_procs: Vec::new(),
            rlimits: Vec::new(),
            stdio: [-1; 3],
            control: None,
            cwd: c"/".to_owned(),
            last_cap: 0,
            landlock: None,
            seccomp: None,
            programs: Vec::new(),
            argv: Vec::new(),
            envp: Vec::new(),
            argv_area: None,
            nosuid: None,
        }
    }
}

/// What the processes of a chain read: the per-program part of an [`ExecPlan`] with raw
/// pointers for `execve`, or the same made by the sandbox's launcher from a request.
#[derive(Debug)]
pub(crate) struct Launch<'a> {
    /// Write end of the report pipe.
    pub(crate) report_fd: RawFd,
    /// The program's standard input, output and error.
    pub(crate) stdio: [RawFd; 3],
    /// A descriptor that becomes the program's descriptor 3.
    pub(crate) control: Option<RawFd>,
    /// Resource limits: `(resource, soft, hard)`.
    pub(crate) rlimits: &'a [(c_int, u64, u64)],
    /// `cgroup.procs` descriptors the program joins (none when the chain was forked inside the
    /// cgroups already).
    pub(crate) cgroup_procs: &'a [RawFd],
    /// The working directory inside the sandbox.
    pub(crate) cwd: &'a std::ffi::CStr,
    /// The highest capability number.
    pub(crate) last_cap: u32,
    /// The Landlock ruleset.
    pub(crate) landlock: Option<&'a LandlockPlan>,
    /// The seccomp filter against set-uid files.
    pub(crate) nosuid: Option<&'static crate::nosuid::NoSuidFilter>,
    /// The seccomp filter.
    pub(crate) seccomp: Option<crate::seccomp::Program>,
    /// Full paths to try, in order.
    pub(crate) programs: &'a [*const c_char],
    /// `argv`, null-terminated.
    pub(crate) argv: *const *const c_char,
    /// `envp`, null-terminated.
    pub(crate) envp: *const *const c_char,
}

/// Null-terminated pointer arrays into an [`ExecPlan`], built in the parent before forking.
pub(crate) struct ExecPointers {
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    programs: Vec<*const c_char>,
}

impl ExecPointers {
    /// Pointers into `plan`, which must outlive them.
    pub(crate) fn new(plan: &ExecPlan) -> Self {
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        ExecPointers {
            argv: ptrs(&plan.argv),
            envp: ptrs(&plan.envp),
            programs: plan.programs.iter().map(|c| c.as_ptr()).collect(),
        }
    }

    /// The chain's view of `plan`.
    fn launch<'a>(&'a self, plan: &'a ExecPlan) -> Launch<'a> {
        Launch {
            report_fd: plan.report_fd,
            stdio: plan.stdio,
            control: plan.control,
            rlimits: &plan.rlimits,
            cgroup_procs: &plan.cgroup_procs,
            cwd: &plan.cwd,
            last_cap: plan.last_cap,
            landlock: plan.landlock.as_ref(),
            nosuid: plan.nosuid,
            seccomp: plan.seccomp,
            programs: &self.programs,
            argv: self.argv.as_ptr(),
            envp: self.envp.as_ptr(),
        }
    }
}

/// The first child (host pid namespace): enters the sandbox's namespaces and forks the second.
/// Returns the exit code.
pub(crate) fn exec_main(plan: &ExecPlan, ptrs: &ExecPointers) -> i32 {
    disguise(c"msbw-exec", plan.argv_area);
    close_other_fds(&plan.keep);
    null_stdio(plan.devnull_fd, &plan.keep);
    let result = enter_namespaces(plan.drop_groups, &plan.namespaces).and_then(|()| {
        let (go_read, go_write) = go_pipe()?;
        start_second(&ptrs.launch(plan), go_read, Some(go_write))
    });
    match result {
        Ok(()) => 0,
        Err(fail) => report_failure(plan.report_fd, fail),
    }
}

/// Drops the supplementary groups (with `drop_groups`, on root hosts) and enters `namespaces`
/// (closing their descriptors).
pub(crate) fn enter_namespaces(drop_groups: bool, namespaces: &[RawFd]) -> Step {
    if drop_groups {
        // SAFETY: raw setgroups with an empty list.
        check_long(
            unsafe { libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) },
            stage::SETGROUPS,
        )?;
    }
    for &ns in namespaces {
        // SAFETY: setns(2) with a namespace descriptor.
        check(unsafe { libc::setns(ns, 0) }, stage::SETNS)?;
    }
    for &ns in namespaces {
        close_fd(ns);
    }
    Ok(())
}

/// Forks the chain's second process (into the sandbox's pid namespace, which applies to
/// children only), reports its pid, lets it go on (with `go_write`; without it, whoever holds
/// the other end of `go_read` does) and waits for it.
pub(crate) fn start_second(launch: &Launch<'_>, go_read: RawFd, go_write: Option<RawFd>) -> Step {
    // SAFETY: the child runs only async-signal-safe code.
    let pid = unsafe { fork_with(|| child_in_sandbox(launch, go_read, go_write)) }.map_err(|e| Fail {
        stage: stage::FORK,
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    close_fd(go_read);
    report(launch.report_fd, Record::Started { pid });
    if let Some(go_write) = go_write {
        send_go(go_write);
    }
    wait_child(pid);
    Ok(())
}

fn go_pipe() -> Step<(RawFd, RawFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 with a valid two-element array.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, stage::FORK)?;
    Ok((fds[0], fds[1]))
}

/// The second child (a member of the sandbox's pid namespace): creates the execution's own pid
/// namespace, whose init is the third child.
fn child_in_sandbox(plan: &Launch<'_>, go_read: RawFd, go_write: Option<RawFd>) -> i32 {
    if let Some(go_write) = go_write {
        close_fd(go_write);
    }
    let result: Step = (|| {
        set_parent_death_signal()?;
        wait_for_go(go_read)?;
        // SAFETY: unshare(2) with a constant flag.
        check(unsafe { libc::unshare(libc::CLONE_NEWPID) }, stage::NEW_PID_NS)?;
        let (read2, write2) = go_pipe()?;
        // SAFETY: the child runs only async-signal-safe code.
        let pid = unsafe { fork_with(|| execution_init(plan, read2, write2)) }.map_err(|e| Fail {
            stage: stage::FORK,
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        })?;
        close_fd(read2);
        send_go(write2);
        wait_child(pid);
        Ok(())
    })();
    match result {
        Ok(()) => 0,
        Err(fail) => report_failure(plan.report_fd, fail),
    }
}

/// The third child: pid 1 of the execution's pid namespace. Forks the program, reaps
/// everything, and reports the program's exit. When it exits, the kernel kills whatever the
/// program left behind in the namespace.
fn execution_init(plan: &Launch<'_>, go_read: RawFd, go_write: RawFd) -> i32 {
    close_fd(go_write);
    if set_parent_death_signal().is_err() || wait_for_go(go_read).is_err() {
        return 1;
    }
    // SAFETY: the child runs only async-signal-safe code and never returns (execve or _exit).
    let program = match unsafe { fork_with(|| run_program(plan)) } {
        Ok(pid) => pid,
        Err(e) => {
            report(
                plan.report_fd,
                Record::Failed {
                    stage: stage::FORK,
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                },
            );
            return 1;
        }
    };
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == program {
            report(plan.report_fd, Record::Exited { status });
            return 0;
        }
        if r < 0 && errno() != libc::EINTR {
            return 0;
        }
    }
}

/// The fourth child: applies limits and restrictions, then executes the program. Only returns
/// on failure (after reporting it).
fn run_program(plan: &Launch<'_>) -> i32 {
    match prepare_program(plan) {
        Ok(report_fd) => {
            let mut last = libc::ENOENT;
            for &program in plan.programs {
                // SAFETY: execve with a valid path and null-terminated pointer arrays whose
                // strings live in the plan (or the launcher's request).
                unsafe { libc::execve(program, plan.argv, plan.envp) };
                let e = errno();
                // Like execvp: remember a permission problem over "not found".
                if e != libc::ENOENT && e != libc::ENOTDIR {
                    last = e;
                }
            }
            report(
                report_fd,
                Record::Failed {
                    stage: stage::EXEC,
                    errno: last,
                },
            );
            127
        }
        Err(fail) => {
            report(
                plan.report_fd,
                Record::Failed {
                    stage: fail.stage,
                    errno: fail.errno,
                },
            );
            127
        }
    }
}

/// Everything before `execve`; returns the (moved) report descriptor.
fn prepare_program(plan: &Launch<'_>) -> Step<RawFd> {
    join_cgroups(plan.cgroup_procs)?;
    for &(resource, soft, hard) in plan.rlimits {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit with a valid struct.
        check(
            unsafe { libc::setrlimit(resource as libc::__rlimit_resource_t, &limit) },
            stage::RLIMIT,
        )?;
    }
    become_namespace_root()?;
    set_parent_death_signal()?;
    // SAFETY: chdir with a valid C string.
    check(unsafe { libc::chdir(plan.cwd.as_ptr()) }, stage::CHDIR)?;

    // Move everything we need above the low numbers, then place stdio (and the control socket).
    let high = |fd: RawFd| {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor number.
        check(
            unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) },
            stage::DESCRIPTORS,
        )
    };
    let report_fd = high(plan.report_fd)?;
    let stdio = [high(plan.stdio[0])?, high(plan.stdio[1])?, high(plan.stdio[2])?];
    let control = match plan.control {
        Some(fd) => Some(high(fd)?),
        None => None,
    };
    for (target, fd) in stdio.iter().enumerate() {
        // SAFETY: dup2(2) on descriptor numbers.
        check(unsafe { libc::dup2(*fd, target as c_int) }, stage::DESCRIPTORS)?;
    }
    if let Some(fd) = control {
        // SAFETY: dup2(2) on descriptor numbers.
        check(unsafe { libc::dup2(fd, 3) }, stage::DESCRIPTORS)?;
    }
    let with_control = [3, report_fd];
    let without_control = [report_fd];
    close_other_fds(if control.is_some() {
        &with_control
    } else {
        &without_control
    });

    // No capabilities, ever again: empty the ambient and bounding sets, forbid privilege gains,
    // restrict filesystem access, then clear the remaining sets.
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong, 0, 0, 0);
        for cap in 0..=plan.last_cap {
            libc::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0, 0, 0);
        }
        check(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as c_ulong, 0, 0, 0),
            stage::NO_NEW_PRIVS,
        )?;
    }
    if let Some(landlock) = plan.landlock {
        apply_landlock(landlock)?;
    }
    if let Some(filter) = plan.nosuid {
        for program in [&filter.modes, &filter.unfilterable] {
            install_filter(program)?;
        }
    }
    drop_capabilities()?;
    if let Some(program) = plan.seccomp {
        crate::seccomp::install(program).map_err(|errno| Fail {
            stage: stage::SECCOMP,
            errno,
        })?;
    }
    Ok(report_fd)
}

/// Moves the calling process into the cgroups whose `cgroup.procs` descriptors are `procs`.
pub(crate) fn join_cgroups(procs: &[RawFd]) -> Step {
    for &fd in procs {
        let zero = b"0";
        // SAFETY: writing from a valid buffer; "0" means the writing process.
        if unsafe { libc::write(fd, zero.as_ptr().cast(), 1) } < 0 {
            return Err(Fail {
                stage: stage::CGROUP,
                errno: errno(),
            });
        }
    }
    Ok(())
}

/// Installs a seccomp filter (after `no_new_privs`) with `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: the
/// filter is about what the sandbox may do to the host, and the kernel's default of also forcing
/// speculation mitigations on filtered tasks (store-bypass disable, IBPB on every context switch)
/// made commands markedly slower. Falls back to no flags on kernels before 4.17.
fn install_filter(program: &[seccompiler::sock_filter]) -> Step {
    const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 1 << 2;
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        // seccompiler's `sock_filter` is the kernel's `struct sock_filter`, like libc's.
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    let install = |flags: libc::c_ulong| {
        // SAFETY: seccomp(2) reads `fprog` and the instructions it points to, which outlive
        // the call.
        unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &fprog as *const libc::sock_fprog,
            )
        }
    };
    let mut r = install(SECCOMP_FILTER_FLAG_SPEC_ALLOW);
    if r < 0 && errno() == libc::EINVAL {
        r = install(0);
    }
    check_long(r, stage::SET_ID_FILTER).map(drop)
}

fn drop_capabilities() -> Step {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: capset(2) reads a v3 header and two data structs, which these mirror.
    check_long(
        unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) },
        stage::CAPABILITIES,
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for record in [
            Record::Ready,
            Record::Failed {
                stage: stage::EXEC,
                errno: libc::ENOENT,
            },
            Record::Exited { status: 3 << 8 },
            Record::Started { pid: 4242 },
        ] {
            assert_eq!(Record::decode(&record.encode()), Some(record));
        }
        assert_eq!(Record::decode(&[0xff; RECORD_LEN]), None);
    }

    #[test]
    fn every_stage_has_a_description() {
        for s in [stage::WAIT_PARENT, stage::SETNS, stage::LANDLOCK, stage::EXEC] {
            assert_ne!(stage::describe(s), "setting up the sandbox");
        }
    }
}
