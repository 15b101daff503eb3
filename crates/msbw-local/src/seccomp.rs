//! The seccomp filter every program in a sandbox runs under: an allow-list of the system calls
//! interpreters and ordinary commands use, a classic BPF program (no libseccomp) that finds a
//! call's number by a binary search over the ranges of the lists below ([`search`]: about 160
//! instructions where seccompiler's linear list had 1,407, which the kernel converted and
//! JIT-compiled for every program). Everything else fails with `ENOSYS`, as on a kernel built
//! without it, which is the answer programs are written to handle (glibc falls back from
//! `clone3` to `clone`, libuv from io_uring to its thread pool). Nothing is killed and nothing is
//! logged.
//!
//! The filter is built once per process, in the parent, and installed by the program's process
//! just before `execve` (after `no_new_privs` and Landlock, see [`crate::child`]); it is
//! inherited by everything the program starts and cannot be removed. Each entry of the lists
//! below is justified in `docs/security.md` (Seccomp).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::BpfProgram;

/// A system call by number and name.
type Syscall = (i64, &'static str);

/// `[(libc::SYS_x, "SYS_x"), ...]` from `SYS_x, ...`.
macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((libc::$name, stringify!($name))),*]
    };
}

/// System calls allowed (without conditions). Only x86_64 is built and tested for now; other
/// architectures run without a filter (and `msbw doctor` says so).
#[cfg(target_arch = "x86_64")]
const ALLOWED: &[Syscall] = syscalls![
    // Memory.
    SYS_brk,
    SYS_mmap,
    SYS_munmap,
    SYS_mremap,
    SYS_mprotect,
    SYS_madvise,
    SYS_mincore,
    SYS_msync,
    SYS_mlock,
    SYS_mlock2,
    SYS_munlock,
    SYS_mlockall,
    SYS_munlockall,
    SYS_membarrier,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_memfd_create,
    SYS_mseal,
    // Threads, futexes, signals.
    SYS_futex,
    SYS_futex_waitv,
    SYS_set_robust_list,
    SYS_get_robust_list,
    SYS_set_tid_address,
    SYS_rseq,
    SYS_gettid,
    SYS_tkill,
    SYS_tgkill,
    SYS_rt_sigaction,
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_rt_sigpending,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_sigqueueinfo,
    SYS_rt_tgsigqueueinfo,
    SYS_sigaltstack,
    SYS_restart_syscall,
    SYS_kill,
    SYS_exit,
    SYS_exit_group,
    // Processes (clone and unshare have conditions, see below).
    SYS_execve,
    SYS_execveat,
    SYS_wait4,
    SYS_waitid,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_prctl,
    SYS_getpid,
    SYS_getppid,
    SYS_getpgid,
    SYS_setpgid,
    SYS_getsid,
    SYS_setsid,
    SYS_getpriority,
    SYS_setpriority,
    SYS_sched_yield,
    SYS_sched_getaffinity,
    SYS_sched_setaffinity,
    SYS_sched_getparam,
    SYS_sched_setparam,
    SYS_sched_getscheduler,
    SYS_sched_setscheduler,
    SYS_sched_getattr,
    SYS_sched_setattr,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_rr_get_interval,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_getrusage,
    SYS_getrlimit,
    SYS_setrlimit,
    SYS_prlimit64,
    SYS_seccomp,
    SYS_landlock_create_ruleset,
    SYS_landlock_add_rule,
    SYS_landlock_restrict_self,
    // Credentials (without capabilities they can only keep or drop privileges).
    SYS_getuid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getegid,
    SYS_getresuid,
    SYS_getresgid,
    SYS_getgroups,
    SYS_setuid,
    SYS_setgid,
    SYS_setreuid,
    SYS_setregid,
    SYS_setresuid,
    SYS_setresgid,
    SYS_setgroups,
    SYS_setfsuid,
    SYS_setfsgid,
    SYS_capget,
    SYS_capset,
    // Descriptors and I/O.
    SYS_read,
    SYS_write,
    SYS_readv,
    SYS_writev,
    SYS_pread64,
    SYS_pwrite64,
    SYS_preadv,
    SYS_pwritev,
    SYS_preadv2,
    SYS_pwritev2,
    SYS_lseek,
    SYS_close,
    SYS_close_range,
    SYS_dup,
    SYS_dup3,
    SYS_fcntl,
    SYS_ioctl,
    SYS_flock,
    SYS_pipe2,
    SYS_sendfile,
    SYS_splice,
    SYS_tee,
    SYS_vmsplice,
    SYS_copy_file_range,
    SYS_eventfd2,
    SYS_timerfd_create,
    SYS_timerfd_settime,
    SYS_timerfd_gettime,
    SYS_signalfd4,
    // Waiting.
    SYS_ppoll,
    SYS_pselect6,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_nanosleep,
    SYS_clock_nanosleep,
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_gettimeofday,
    SYS_getitimer,
    SYS_setitimer,
    SYS_timer_create,
    SYS_timer_settime,
    SYS_timer_gettime,
    SYS_timer_getoverrun,
    SYS_timer_delete,
    SYS_times,
    // Files (Landlock and the read-only mounts decide where).
    SYS_openat,
    SYS_openat2,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_newfstatat,
    SYS_fstat,
    SYS_statx,
    SYS_statfs,
    SYS_fstatfs,
    SYS_getdents64,
    SYS_getcwd,
    SYS_chdir,
    SYS_fchdir,
    SYS_mkdirat,
    SYS_mknodat,
    SYS_unlinkat,
    SYS_renameat,
    SYS_renameat2,
    SYS_linkat,
    SYS_symlinkat,
    SYS_readlinkat,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchmodat2,
    SYS_fchown,
    SYS_fchownat,
    SYS_truncate,
    SYS_ftruncate,
    SYS_fallocate,
    SYS_fadvise64,
    SYS_readahead,
    SYS_fsync,
    SYS_fdatasync,
    SYS_sync,
    SYS_syncfs,
    SYS_sync_file_range,
    SYS_utimensat,
    SYS_umask,
    SYS_getxattr,
    SYS_lgetxattr,
    SYS_fgetxattr,
    SYS_setxattr,
    SYS_lsetxattr,
    SYS_fsetxattr,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_flistxattr,
    SYS_removexattr,
    SYS_lremovexattr,
    SYS_fremovexattr,
    SYS_inotify_init1,
    SYS_inotify_add_watch,
    SYS_inotify_rm_watch,
    // Sockets (the sandbox's network namespace decides what they reach).
    SYS_socket,
    SYS_socketpair,
    SYS_bind,
    SYS_listen,
    SYS_accept,
    SYS_accept4,
    SYS_connect,
    SYS_getsockname,
    SYS_getpeername,
    SYS_sendto,
    SYS_recvfrom,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_sendmmsg,
    SYS_recvmmsg,
    SYS_shutdown,
    SYS_setsockopt,
    SYS_getsockopt,
    // System V IPC and POSIX message queues (the sandbox's own IPC namespace).
    SYS_shmget,
    SYS_shmat,
    SYS_shmdt,
    SYS_shmctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_semctl,
    SYS_msgget,
    SYS_msgsnd,
    SYS_msgrcv,
    SYS_msgctl,
    SYS_mq_open,
    SYS_mq_unlink,
    SYS_mq_timedsend,
    SYS_mq_timedreceive,
    SYS_mq_notify,
    SYS_mq_getsetattr,
    // Information.
    SYS_uname,
    SYS_sysinfo,
    SYS_getrandom,
    SYS_getcpu,
];

/// The older x86_64 system calls glibc, Python, Node and coreutils still use there.
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[Syscall] = syscalls![
    SYS_arch_prctl,
    SYS_set_thread_area,
    SYS_get_thread_area,
    SYS_open,
    SYS_creat,
    SYS_stat,
    SYS_lstat,
    SYS_access,
    SYS_pipe,
    SYS_dup2,
    SYS_poll,
    SYS_select,
    SYS_epoll_create,
    SYS_epoll_wait,
    SYS_eventfd,
    SYS_signalfd,
    SYS_inotify_init,
    SYS_fork,
    SYS_vfork,
    SYS_mkdir,
    SYS_rmdir,
    SYS_rename,
    SYS_link,
    SYS_unlink,
    SYS_symlink,
    SYS_readlink,
    SYS_chmod,
    SYS_chown,
    SYS_lchown,
    SYS_mknod,
    SYS_getdents,
    SYS_utime,
    SYS_utimes,
    SYS_futimesat,
    SYS_time,
    SYS_alarm,
    SYS_pause,
    SYS_getpgrp,
];

/// `map_shadow_stack` (x86_64, Linux 6.6; glibc uses it for shadow stacks), not in the libc
/// crate yet.
#[cfg(target_arch = "x86_64")]
const ALLOWED_EXTRA: &[Syscall] = &[(453, "SYS_map_shadow_stack")];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_EXTRA: &[Syscall] = &[];

#[cfg(not(target_arch = "x86_64"))]
const ALLOWED: &[Syscall] = &[];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[Syscall] = &[];
#[cfg(not(target_arch = "x86_64"))]
const DENIED: &[Syscall] = &[];

/// System calls that are denied on purpose (not on the allow-list), named so that tests,
/// `msbw doctor` and the documentation can refer to them. Any other call that is not on the
/// allow-list is denied too.
#[cfg(target_arch = "x86_64")]
const DENIED: &[Syscall] = syscalls![
    // The kernel keyring is not namespaced: keys would be shared with the host user.
    SYS_add_key,
    SYS_request_key,
    SYS_keyctl,
    // Large, young attack surfaces.
    SYS_io_uring_setup,
    SYS_io_uring_enter,
    SYS_io_uring_register,
    SYS_bpf,
    SYS_userfaultfd,
    SYS_perf_event_open,
    // Kernel modules and kexec.
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    SYS_kexec_load,
    SYS_kexec_file_load,
    // Mounts (no capabilities anyway; the filter also closes them to new namespaces).
    SYS_mount,
    SYS_umount2,
    SYS_pivot_root,
    SYS_chroot,
    SYS_move_mount,
    SYS_open_tree,
    SYS_fsopen,
    SYS_fsconfig,
    SYS_fsmount,
    SYS_fspick,
    SYS_mount_setattr,
    SYS_quotactl,
    SYS_quotactl_fd,
    SYS_swapon,
    SYS_swapoff,
    // Namespaces: joining (setns), and creating them (clone3, which cannot be inspected;
    // clone and unshare with namespace flags are refused by conditions).
    SYS_setns,
    SYS_clone3,
    // Other processes' memory.
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_process_madvise,
    SYS_kcmp,
    SYS_pidfd_getfd,
    // Handles bypass path checks; fanotify needs privileges.
    SYS_name_to_handle_at,
    SYS_open_by_handle_at,
    SYS_fanotify_init,
    SYS_fanotify_mark,
    // The clock, the host, the machine.
    SYS_settimeofday,
    SYS_clock_settime,
    SYS_clock_adjtime,
    SYS_adjtimex,
    SYS_sethostname,
    SYS_setdomainname,
    SYS_reboot,
    SYS_syslog,
    SYS_acct,
    SYS_vhangup,
    SYS_iopl,
    SYS_ioperm,
    SYS_modify_ldt,
    // NUMA placement of pages.
    SYS_mbind,
    SYS_set_mempolicy,
    SYS_get_mempolicy,
    SYS_migrate_pages,
    SYS_move_pages,
    // Obsolete or unneeded.
    SYS_uselib,
    SYS_ustat,
    SYS_sysfs,
    SYS_personality,
    SYS_remap_file_pages,
    SYS_memfd_secret,
    SYS_process_mrelease,
    SYS_io_setup,
    SYS_io_destroy,
    SYS_io_submit,
    SYS_io_cancel,
    SYS_io_getevents,
    SYS_lookup_dcookie,
];

/// Namespace flags of `clone` and `unshare`: a call with any of them is refused.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// `CLONE_NEWTIME`: for `unshare` only (in `clone` the same bit is part of the exit signal).
const CLONE_NEWTIME: u64 = 0x80;

/// What `seccomp(2)` gets: the compiled program.
pub(crate) type Program = &'static [seccompiler::sock_filter];

/// A summary of the filter, for `msbw doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeccompSummary {
    /// The architecture the filter was built for.
    pub arch: &'static str,
    /// How many system calls are allowed (`clone`, `unshare` without namespace flags).
    pub allowed: usize,
    /// How many system calls are denied by name (and every one not allowed is denied too).
    pub denied: usize,
}

struct Built {
    program: BpfProgram,
    summary: SeccompSummary,
}

/// `AUDIT_ARCH_X86_64`.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

fn target() -> Result<(u32, &'static str), String> {
    match std::env::consts::ARCH {
        "x86_64" => Ok((AUDIT_ARCH_X86_64, "x86_64")),
        other => Err(format!("no seccomp filter for the {other} architecture")),
    }
}

/// What the filter decides for a system call number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Allowed.
    Allow,
    /// Allowed if argument 0 has none of these bits, else `ENOSYS`.
    WithoutFlags(u64),
    /// `ENOSYS`.
    Deny,
}

/// The rule table: allowed numbers (sorted, each once) and the conditional ones.
fn table() -> (Vec<u32>, [(u32, u64); 2]) {
    let mut allowed: Vec<u32> = ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .chain(ALLOWED_EXTRA)
        .map(|&(nr, _)| nr as u32)
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    let conditional = [
        (libc::SYS_clone as u32, NAMESPACE_FLAGS),
        (libc::SYS_unshare as u32, NAMESPACE_FLAGS | CLONE_NEWTIME),
    ];
    (allowed, conditional)
}

/// The intervals `(first number, verdict)` covering every `u32`, in order; each runs to the next.
fn intervals(allowed: &[u32], conditional: &[(u32, u64)]) -> Vec<(u32, Verdict)> {
    let mut points: BTreeMap<u32, Verdict> = allowed.iter().map(|&nr| (nr, Verdict::Allow)).collect();
    points.extend(
        conditional
            .iter()
            .map(|&(nr, flags)| (nr, Verdict::WithoutFlags(flags))),
    );
    let mut out: Vec<(u32, Verdict)> = vec![(0, Verdict::Deny)];
    for (nr, verdict) in points {
        match out.last_mut() {
            Some(last) if last.0 == nr => last.1 = verdict,
            _ => out.push((nr, verdict)),
        }
        if let Some(next) = nr.checked_add(1) {
            out.push((next, Verdict::Deny));
        }
    }
    // Merge neighbours with the same verdict (runs of allowed numbers).
    out.dedup_by(|later, earlier| later.1 == earlier.1);
    out
}

const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
/// `struct seccomp_data` offsets: `nr`, `arch`, the low and high halves of `args[0]`
/// (little-endian, the only byte order built).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG0_LO: u32 = 16;
const OFFSET_ARG0_HI: u32 = 20;

fn stmt(code: u32, k: u32) -> seccompiler::sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> seccompiler::sock_filter {
    seccompiler::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The code deciding for a number (in the accumulator) within `intervals`, a balanced binary
/// search over their first numbers: a few comparisons per call instead of a linear list.
fn search(intervals: &[(u32, Verdict)]) -> Vec<seccompiler::sock_filter> {
    use libc::{BPF_ABS, BPF_JA, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W};
    const LD: u32 = BPF_LD | BPF_W | BPF_ABS;
    const RET: u32 = BPF_RET | BPF_K;
    if let [(_, verdict)] = intervals {
        return match *verdict {
            Verdict::Allow => vec![stmt(RET, libc::SECCOMP_RET_ALLOW)],
            Verdict::Deny => vec![stmt(RET, RET_ENOSYS)],
            Verdict::WithoutFlags(flags) => vec![
                stmt(LD, OFFSET_ARG0_LO),
                jump(BPF_JMP | BPF_JSET | BPF_K, flags as u32, 3, 0),
                stmt(LD, OFFSET_ARG0_HI),
                jump(BPF_JMP | BPF_JSET | BPF_K, (flags >> 32) as u32, 1, 0),
                stmt(RET, libc::SECCOMP_RET_ALLOW),
                stmt(RET, RET_ENOSYS),
            ],
        };
    }
    let (low, high) = intervals.split_at(intervals.len() / 2);
    let (low, high) = (search(low), search(high));
    let mut code = Vec::with_capacity(low.len() + high.len() + 2);
    let first_high = intervals[intervals.len() / 2].0;
    match u8::try_from(high.len()) {
        // A >= first_high: fall into `high`; else jump over it into `low`.
        Ok(skip) => code.push(jump(BPF_JMP | BPF_JGE | BPF_K, first_high, 0, skip)),
        // Too far for a conditional jump: through an unconditional one.
        Err(_) => {
            code.push(jump(BPF_JMP | BPF_JGE | BPF_K, first_high, 1, 0));
            code.push(stmt(BPF_JMP | BPF_JA, high.len() as u32));
        }
    }
    code.extend(high);
    code.extend(low);
    code
}

/// The filter as a BPF program: the architecture check (other architectures' calls kill the
/// process, as seccompiler's filters do), then [`search`] over the rule table.
fn compile(allowed: &[u32], conditional: &[(u32, u64)], audit_arch: u32) -> BpfProgram {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    const LD: u32 = BPF_LD | BPF_W | BPF_ABS;
    let mut program = vec![
        stmt(LD, OFFSET_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, audit_arch, 1, 0),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD, OFFSET_NR),
    ];
    program.extend(search(&intervals(allowed, conditional)));
    program
}

fn build() -> Result<Built, String> {
    let (audit_arch, arch_name) = target()?;
    let (allowed, conditional) = table();
    let program = compile(&allowed, &conditional, audit_arch);
    if program.len() >= 4096 {
        return Err(format!(
            "the seccomp filter is too long ({} instructions)",
            program.len()
        ));
    }
    Ok(Built {
        program,
        summary: SeccompSummary {
            arch: arch_name,
            allowed: allowed.len() + conditional.len(),
            denied: DENIED.len(),
        },
    })
}

fn built() -> &'static Result<Built, String> {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    BUILT.get_or_init(build)
}

/// The filter programs get, if this host can have one (see [`probe`]).
pub(crate) fn active() -> Option<Program> {
    static USABLE: OnceLock<bool> = OnceLock::new();
    let built = built().as_ref().ok()?;
    USABLE
        .get_or_init(|| probe().is_ok())
        .then_some(built.program.as_slice())
}

/// Whether this host can run the filter: its summary, or the reason it cannot.
pub(crate) fn probe() -> Result<SeccompSummary, String> {
    let summary = built().as_ref().map_err(Clone::clone)?.summary;
    // The kernel lists the actions it supports only if it has seccomp filters.
    let actions = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
        .map_err(|e| format!("the kernel has no seccomp filters ({e})"))?;
    if !actions.split_whitespace().any(|a| a == "errno") {
        return Err("the kernel's seccomp filters cannot return an errno".into());
    }
    Ok(summary)
}

/// Installs `program` on the calling thread. Async-signal-safe (it only makes system calls with
/// data on the stack), for the forked child; returns the errno on failure.
pub(crate) fn install(program: Program) -> Result<(), i32> {
    seccompiler::apply_filter(program).map_err(|e| match e {
        seccompiler::Error::Seccomp(e) | seccompiler::Error::Prctl(e) => e.raw_os_error().unwrap_or(libc::EINVAL),
        _ => libc::EINVAL,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_filter_builds_and_lists_do_not_overlap() {
        let program = active().expect("the filter builds and this host has seccomp filters");
        assert!(program.len() < 4096, "{} instructions", program.len());
        let allowed: Vec<i64> = ALLOWED
            .iter()
            .chain(ALLOWED_ARCH)
            .chain(ALLOWED_EXTRA)
            .map(|s| s.0)
            .collect();
        for (nr, name) in DENIED {
            assert!(!allowed.contains(nr), "{name} is both allowed and denied");
        }
        assert!(!allowed.contains(&libc::SYS_clone) && !allowed.contains(&libc::SYS_unshare));
        let mut sorted = allowed.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), allowed.len(), "an allowed system call is listed twice");
        let summary = probe().expect("this host has seccomp filters");
        assert_eq!(summary.allowed, allowed.len() + 2);
        assert_eq!(summary.denied, DENIED.len());
    }

    /// The filter as seccompiler built it before the binary search: the reference.
    fn seccompiler_program() -> BpfProgram {
        use seccompiler::{
            SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
        };
        let without_flags = |flags: u64| {
            vec![
                SeccompRule::new(vec![
                    SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flags), 0).unwrap(),
                ])
                .unwrap(),
            ]
        };
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
            .iter()
            .chain(ALLOWED_ARCH)
            .chain(ALLOWED_EXTRA)
            .map(|&(nr, _)| (nr, vec![]))
            .collect();
        rules.insert(libc::SYS_clone, without_flags(NAMESPACE_FLAGS));
        rules.insert(libc::SYS_unshare, without_flags(NAMESPACE_FLAGS | CLONE_NEWTIME));
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Errno(libc::ENOSYS as u32),
            SeccompAction::Allow,
            std::env::consts::ARCH.try_into().unwrap(),
        )
        .unwrap();
        BpfProgram::try_from(filter).unwrap()
    }

    /// Runs a classic BPF seccomp program (the instructions these filters use) on
    /// `struct seccomp_data` with `nr`, `arch` and `args[0]`; the return value.
    fn run(program: &[seccompiler::sock_filter], nr: u32, arch: u32, arg0: u64) -> u32 {
        let word = |offset: u32| match offset {
            OFFSET_NR => nr,
            OFFSET_ARCH => arch,
            OFFSET_ARG0_LO => arg0 as u32,
            OFFSET_ARG0_HI => (arg0 >> 32) as u32,
            other => panic!("load from offset {other}"),
        };
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = &program[pc];
            pc += 1;
            let jump = |taken: bool| if taken { i.jt as usize } else { i.jf as usize };
            match u32::from(i.code) {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => a = word(i.k),
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => a &= i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += i.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += jump(a == i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += jump(a >= i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => pc += jump(a > i.k),
                c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => pc += jump(a & i.k != 0),
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                other => panic!("instruction {other:#x} at {}", pc - 1),
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_binary_search_decides_every_call_as_the_linear_list_did() {
        let old = seccompiler_program();
        let new = &built().as_ref().unwrap().program;
        assert!(
            new.len() * 5 < old.len(),
            "{} instructions (seccompiler: {})",
            new.len(),
            old.len()
        );
        let mut arg0s = vec![0, u64::MAX, NAMESPACE_FLAGS, libc::SIGCHLD as u64];
        arg0s.extend((0..64).map(|bit| 1u64 << bit));
        arg0s.extend((0..64).map(|bit| !(1u64 << bit)));
        let x32 = 0x4000_0000u32;
        let numbers = (0..=450u32)
            .chain(451..=600)
            .chain((0..=600).map(|nr| nr | x32))
            .chain([u32::MAX, u32::MAX - 1, x32 - 1, 0x8000_0000]);
        let mut allowed = 0;
        for nr in numbers {
            for arch in [AUDIT_ARCH_X86_64, 0x4000_0003 /* i386 */, 0] {
                for &arg0 in &arg0s {
                    let (o, n) = (run(&old, nr, arch, arg0), run(new, nr, arch, arg0));
                    assert_eq!(o, n, "system call {nr:#x}, arch {arch:#x}, args[0] {arg0:#x}");
                    allowed += usize::from(n == libc::SECCOMP_RET_ALLOW);
                }
            }
        }
        // Not every answer is the same one.
        assert!(allowed > 0 && run(new, libc::SYS_bpf as u32, AUDIT_ARCH_X86_64, 0) == RET_ENOSYS);
        assert_eq!(run(new, libc::SYS_getpid as u32, 0, 0), libc::SECCOMP_RET_KILL_PROCESS);
        let clone = libc::SYS_clone as u32;
        assert_eq!(
            run(new, clone, AUDIT_ARCH_X86_64, libc::SIGCHLD as u64),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(new, clone, AUDIT_ARCH_X86_64, libc::CLONE_NEWUSER as u64),
            RET_ENOSYS
        );
    }

    #[test]
    fn intervals_cover_every_number_once() {
        let v = intervals(&[0, 1, 2, 5, u32::MAX], &[(3, 8)]);
        assert_eq!(
            v,
            [
                (0, Verdict::Allow),
                (3, Verdict::WithoutFlags(8)),
                (4, Verdict::Deny),
                (5, Verdict::Allow),
                (6, Verdict::Deny),
                (u32::MAX, Verdict::Allow),
            ]
        );
    }

    #[test]
    fn far_branches_go_through_an_unconditional_jump() {
        // Every other number allowed: many intervals, so the top levels jump further than 255.
        let allowed: Vec<u32> = (0..600).step_by(2).collect();
        let program = compile(&allowed, &[], AUDIT_ARCH_X86_64);
        assert!(
            program
                .iter()
                .any(|i| u32::from(i.code) == libc::BPF_JMP | libc::BPF_JA)
        );
        for nr in 0..700 {
            let expected = if nr < 600 && nr % 2 == 0 {
                libc::SECCOMP_RET_ALLOW
            } else {
                RET_ENOSYS
            };
            assert_eq!(run(&program, nr, AUDIT_ARCH_X86_64, 0), expected, "{nr}");
        }
    }
}
