//! Starting a sandbox's holder (pid 1 of its namespaces): the plan that owns every descriptor
//! it inherits, the clone on the spawner thread, the id maps, and the wait for its report.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::net::unix::pipe::Receiver;
use tokio::time::Instant;

use crate::child::{self, HolderFds, HolderPlan, Record, stage};
use crate::error::{Context, LocalError};
use crate::plan::MountPlan;
use crate::spawner::Spawner;
use crate::sys::{self, Pid};

/// A holder that has built the sandbox's root and waits for its lifeline to close.
#[derive(Debug)]
pub(crate) struct Holder {
    /// Its pid (in the host's pid namespace).
    pub(crate) pid: Pid,
    /// The sandbox's namespaces, in the order `setns` needs them (user first).
    pub(crate) namespaces: Vec<OwnedFd>,
    /// The write end of its lifeline: the holder, and with it the sandbox, dies when it closes.
    pub(crate) lifeline: OwnedFd,
}

/// Who the sandbox's root is on the host, and whether the sandbox has its own network.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HolderIdentity {
    /// Host uid of the sandbox's root.
    pub(crate) uid: u32,
    /// Host gid of the sandbox's root.
    pub(crate) gid: u32,
    /// Whether the sandbox shares the host's network namespace.
    pub(crate) share_network: bool,
}

/// Kills a half-built sandbox's holder if the start fails or is abandoned.
#[derive(Debug)]
struct HolderGuard(Option<Pid>);

impl HolderGuard {
    fn pid(&self) -> Pid {
        self.0.unwrap_or(0)
    }

    fn disarm(mut self) -> Pid {
        self.0.take().unwrap_or(0)
    }
}

impl Drop for HolderGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            sys::kill(pid, libc::SIGKILL);
            let _ = sys::wait_blocking(pid);
        }
    }
}

/// Creates the holder for `mounts` with the sandbox's root at `new_root` (a host path), and
/// waits until it reports that the root is built (or `deadline`).
pub(crate) async fn start(
    spawner: &Spawner,
    new_root: &std::path::Path,
    mounts: MountPlan,
    identity: HolderIdentity,
    deadline: Instant,
    start_timeout: Duration,
) -> Result<Holder, LocalError> {
    let (report_read, report_write) = sys::pipe().context(|| "creating a pipe".into())?;
    let (go_read, go_write) = sys::pipe().context(|| "creating a pipe".into())?;
    let (life_read, life_write) = sys::pipe().context(|| "creating a pipe".into())?;
    let fds = HolderFds {
        report: report_write,
        go: go_read,
        lifeline: life_read,
        devnull: sys::dev_null().context(|| "opening /dev/null".into())?,
    };
    let new_root = sys::cstring(new_root).context(|| "the sandbox root path".into())?;
    let plan = HolderPlan::new(fds, new_root, mounts.steps, !identity.share_network);
    let descriptions = mounts.descriptions;
    // The plan (with every descriptor it names) moves into the job and is dropped right after the
    // clone, even if this future is dropped first; so is the holder, which is then killed.
    let (guard, namespaces) = spawner
        .run(move || {
            let result = clone_holder(&plan, go_write, identity);
            drop(plan);
            result
        })
        .await
        .context(|| "asking the spawner thread".into())?
        .context(|| "creating the sandbox's namespaces".into())?;

    let mut report = Receiver::from_owned_fd(report_read).context(|| "watching the report pipe".into())?;
    match tokio::time::timeout_at(deadline, read_record(&mut report)).await {
        Ok(Ok(Some(Record::Ready))) => Ok(Holder {
            pid: guard.disarm(),
            namespaces,
            lifeline: life_write,
        }),
        Ok(Ok(Some(Record::Failed { stage: s, errno }))) => {
            let what = match s.checked_sub(stage::STEP_BASE) {
                Some(i) => descriptions
                    .get(i as usize)
                    .cloned()
                    .unwrap_or_else(|| "a mount step".into()),
                None => stage::describe(s).to_owned(),
            };
            Err(LocalError::io(
                format!("setting up the sandbox failed while {what}"),
                io::Error::from_raw_os_error(errno),
            ))
        }
        Ok(_) => Err(LocalError::io(
            "setting up the sandbox",
            io::Error::other("the sandbox's holder exited during setup"),
        )),
        Err(_) => Err(LocalError::Timeout(format!(
            "the sandbox was not set up within {start_timeout:?}"
        ))),
    }
}

/// Reads one record from a report pipe.
pub(crate) async fn read_record(report: &mut Receiver) -> io::Result<Option<Record>> {
    let mut bytes = [0u8; child::RECORD_LEN];
    let mut have = 0;
    while have < bytes.len() {
        report.readable().await?;
        match report.try_read(&mut bytes[have..]) {
            Ok(0) => return Ok(None),
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Record::decode(&bytes))
}

/// Opens the holder's namespaces in the order `setns` needs them (user first, pid last: the
/// launcher enters all but the last, see `crate::launcher`).
fn open_namespaces(pid: Pid, share_network: bool) -> io::Result<Vec<OwnedFd>> {
    let mut kinds = vec!["user", "mnt"];
    if !share_network {
        kinds.push("net");
    }
    kinds.extend(["ipc", "uts", "pid"]);
    kinds.into_iter().map(|k| sys::open_namespace(pid, k)).collect()
}

/// Creates the holder (on the spawner thread), opens its namespaces, writes its id maps and
/// lets it go on. The holder is killed if the returned guard is dropped before it is disarmed.
fn clone_holder(plan: &HolderPlan, go: OwnedFd, identity: HolderIdentity) -> io::Result<(HolderGuard, Vec<OwnedFd>)> {
    let mut flags =
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if !identity.share_network {
        flags |= libc::CLONE_NEWNET;
    }
    let guard = HolderGuard(Some(child::spawn_holder(flags, plan)?));
    let pid = guard.pid();
    let namespaces = open_namespaces(pid, identity.share_network)?;
    std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {} 1\n", identity.uid))?;
    std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {} 1\n", identity.gid))?;
    let mut go = std::fs::File::from(go);
    io::Write::write_all(&mut go, b"g")?;
    Ok((guard, namespaces))
}
