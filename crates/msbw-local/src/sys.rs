//! Thin, safe wrappers around the Linux system calls the parent process needs: pipes, socket
//! pairs, signals, reaping, descriptor passing, id-mapped mounts and feature probes.
//!
//! The code that runs in forked children lives in [`crate::child`]; everything here runs in the
//! (multi-threaded) host process.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// A process id.
pub(crate) type Pid = libc::pid_t;

/// `MOUNT_ATTR_RDONLY`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_NOSUID`.
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
/// `MOUNT_ATTR_NODEV`.
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
/// `MOUNT_ATTR_IDMAP`.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `OPEN_TREE_CLONE`.
pub(crate) const OPEN_TREE_CLONE: libc::c_uint = 1;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
pub(crate) struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

impl MountAttr {
    /// Sets `attrs`, and changes nothing else.
    pub(crate) const fn set(attrs: u64) -> MountAttr {
        MountAttr {
            attr_set: attrs,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        }
    }
}

/// The calling thread's `errno`. Allocates nothing, so it is safe between clone and exec.
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// open_tree(2): a detached recursive copy of the mount tree at the descriptor `fd` itself
/// (`AT_EMPTY_PATH`: no path is looked up), close-on-exec. Allocates nothing, so it is safe
/// between clone and exec; the errno on failure.
pub(crate) fn clone_tree(fd: RawFd) -> Result<RawFd, i32> {
    let empty = c"";
    // SAFETY: open_tree(2) on a descriptor (AT_EMPTY_PATH) with a valid C string.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd,
            empty.as_ptr(),
            OPEN_TREE_CLONE
                | libc::O_CLOEXEC as libc::c_uint
                | libc::AT_RECURSIVE as libc::c_uint
                | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    };
    if tree < 0 { Err(errno()) } else { Ok(tree as RawFd) }
}

/// mount_setattr(2): sets `attr` on the mount at `path` under `dirfd` (`c""` with
/// `AT_EMPTY_PATH` in `flags`: the descriptor itself). Allocates nothing, so it is safe between
/// clone and exec; the errno on failure.
pub(crate) fn mount_setattr(dirfd: RawFd, path: &CStr, flags: libc::c_int, attr: &MountAttr) -> Result<(), i32> {
    // SAFETY: mount_setattr(2) with a valid C string and a struct of the size passed, both
    // outliving the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn cvt_long(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// A path as a C string; paths with NUL bytes are refused.
pub(crate) fn cstring(path: impl AsRef<Path>) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_ref().as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// A pipe, both ends close-on-exec: `(read, write)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two descriptors for the kernel to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: the kernel just returned these two descriptors to us; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of Unix stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two descriptors for the kernel to fill.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: the kernel just returned these two descriptors to us; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Opens `/dev/null` for reading and writing, close-on-exec.
pub(crate) fn dev_null() -> io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    Ok(OwnedFd::from(file))
}

/// One `read(2)` on `fd` (non-blocking if the descriptor is), without any readiness
/// bookkeeping: tokio's `try_read` does not even try unless its reactor has seen the descriptor
/// become readable, which may not have happened yet for data that is already there.
pub(crate) fn read_now(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reading into a valid, writable buffer of the given length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub(crate) fn kill(pid: Pid, signal: libc::c_int) {
    if pid > 0 {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Waits (blocking) until the child `pid` exits and returns its wait status.
pub(crate) fn wait_blocking(pid: Pid) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Sends `data` on a stream socket with `fds` attached (`SCM_RIGHTS`). Returns how many bytes
/// were sent; the descriptors travel with the first byte.
pub(crate) fn send_with_fds(socket: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as libc::c_uint) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` bytes, enough for one header with `fds`.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as libc::c_uint) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cmsg), fd_bytes);
        }
    }
    // SAFETY: `msg` and everything it points to live until the call returns.
    let sent = unsafe { libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// Whether this process may write to `path` (`access(2)` with `W_OK`).
pub(crate) fn writable(path: &Path) -> bool {
    let Ok(c) = cstring(path) else {
        return false;
    };
    // SAFETY: access(2) with a valid C string.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// The effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective group id.
pub(crate) fn egid() -> u32 {
    // SAFETY: getegid(2) cannot fail.
    unsafe { libc::getegid() }
}

/// Clock ticks per second (for `/proc/<pid>/stat` times).
pub(crate) fn clock_ticks() -> u64 {
    // SAFETY: sysconf(3) has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// The page size in bytes.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf(3) has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// Where this process's command line lives in memory (`arg_start`, `arg_end` of
/// `/proc/self/stat`). Forked children overwrite it, so that processes visible inside a sandbox
/// do not show the host program's command line.
pub(crate) fn argv_area() -> Option<(usize, usize)> {
    static AREA: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    *AREA.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields are numbered from 1; the first after the name is field 3.
        let start: usize = fields.get(48 - 3)?.parse().ok()?;
        let end: usize = fields.get(49 - 3)?.parse().ok()?;
        (start > 0 && end > start && end - start < (1 << 20)).then_some((start, end))
    })
}

/// The highest capability number this kernel knows.
pub(crate) fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// The current soft and hard limit of `resource`.
pub(crate) fn getrlimit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    if unsafe { libc::getrlimit(resource, &mut limit) } == 0 {
        (limit.rlim_cur, limit.rlim_max)
    } else {
        (libc::RLIM_INFINITY, libc::RLIM_INFINITY)
    }
}

/// The Landlock ABI version the kernel offers, if any.
pub(crate) fn landlock_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute and size 0 the call only returns the ABI version.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (r > 0).then_some(r as u32)
}

/// Opens a namespace file (`/proc/<pid>/ns/<kind>`).
pub(crate) fn open_namespace(pid: Pid, kind: &str) -> io::Result<OwnedFd> {
    let file = std::fs::File::open(format!("/proc/{pid}/ns/{kind}"))?;
    Ok(OwnedFd::from(file))
}

/// `RESOLVE_NO_XDEV` .. `RESOLVE_IN_ROOT` of `openat2(2)`: the ones used here.
pub(crate) const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// Fail on any symbolic link in the path.
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// Stay below the starting directory (no absolute paths, no `..` above it).
pub(crate) const RESOLVE_BENEATH: u64 = 0x08;
/// What volume paths are resolved with: no link of any kind, never above the start.
pub(crate) const RESOLVE_STRICT: u64 = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH;

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
pub(crate) struct OpenHow {
    pub(crate) flags: u64,
    pub(crate) mode: u64,
    pub(crate) resolve: u64,
}

/// Opens the absolute host path `path` as an `O_PATH` descriptor, resolving it once from a
/// descriptor of `/` without following any symbolic link (`openat2` with
/// [`RESOLVE_STRICT`]): a link anywhere in the path fails with `ELOOP`, and what the descriptor
/// refers to cannot change afterwards. `ENOSYS` on kernels before 5.6.
pub(crate) fn open_no_symlinks(path: &Path) -> io::Result<OwnedFd> {
    let relative = path
        .strip_prefix("/")
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path is not absolute"))?;
    let root = std::fs::File::open("/")?;
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let c_path = cstring(relative)?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_STRICT,
    };
    // SAFETY: `c_path` and `how` outlive the call; the size is that of the struct passed.
    let fd = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c_path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: openat2 just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// What `fstat(2)` says about a descriptor (also an `O_PATH` one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    /// `st_mode` (read through [`FileStat::is_dir`] and [`FileStat::is_file`]).
    mode: u32,
    /// The owner.
    pub(crate) uid: u32,
    /// The group.
    pub(crate) gid: u32,
    /// The device.
    pub(crate) dev: u64,
    /// The inode.
    pub(crate) ino: u64,
}

impl FileStat {
    /// Whether it is a directory.
    pub(crate) fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// Whether it is a regular file.
    pub(crate) fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// `fstat(2)` on `fd`.
pub(crate) fn stat_fd(fd: &impl AsRawFd) -> io::Result<FileStat> {
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat(2) with a valid out-pointer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(FileStat {
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// A detached copy of the mount tree at the already opened `source` (no path is resolved
/// again), shown through the id mapping of the user namespace `userns`, with `attrs`
/// (`MOUNT_ATTR_*`) set. Needs root (`CAP_SYS_ADMIN` in the initial user namespace) and a
/// filesystem that supports id-mapped mounts.
pub(crate) fn idmapped_tree(source: &OwnedFd, userns: &OwnedFd, attrs: u64) -> io::Result<OwnedFd> {
    detached_tree(source, MOUNT_ATTR_IDMAP | attrs, Some(userns))
}

/// A detached copy of the mount tree at the already opened `source` with `attrs`
/// (`MOUNT_ATTR_*`) set.
pub(crate) fn plain_tree(source: &OwnedFd, attrs: u64) -> io::Result<OwnedFd> {
    detached_tree(source, attrs, None)
}

fn detached_tree(source: &OwnedFd, attrs: u64, userns: Option<&OwnedFd>) -> io::Result<OwnedFd> {
    let fd = clone_tree(source.as_raw_fd()).map_err(io::Error::from_raw_os_error)?;
    // SAFETY: open_tree just returned this descriptor to us.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    if attrs == 0 {
        return Ok(tree);
    }
    let attr = MountAttr {
        userns_fd: userns.map_or(0, |ns| ns.as_raw_fd() as u64),
        ..MountAttr::set(attrs)
    };
    mount_setattr(tree.as_raw_fd(), c"", libc::AT_EMPTY_PATH | libc::AT_RECURSIVE, &attr)
        .map_err(io::Error::from_raw_os_error)?;
    Ok(tree)
}

/// A pidfd for `pid` (`pidfd_open(2)`, Linux 5.3): it becomes readable when the process has
/// exited, and never refers to another process.
pub(crate) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) with a pid and no flags; the result is a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits until `fd` is readable or `timeout` has passed (blocking); whether it became readable.
pub(crate) fn wait_readable(fd: &OwnedFd, timeout: std::time::Duration) -> io::Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll(2) on one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, millis) } {
            r if r > 0 => return Ok(true),
            0 => return Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
