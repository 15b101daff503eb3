//! One real `msbserver` 0.2.6 on a free loopback port, with a private `MICROSANDBOX_HOME` and
//! working folder, in dev mode or keyed mode: start, health wait, restart, keys, stop.
//!
//! Recipes and quirks from /work/krun-standin/NOTES.md: msbserver prints "listening" before it
//! binds, so readiness is `/api/v1/health` answering while the process is still alive; the
//! namespaces folder is created first, as `msb server start` does (a bare msbserver answers
//! `metrics *` with a 500 until it exists); `msbserver --key` does not write `server.key`, which
//! `msb server keygen` needs, so the harness writes it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use msbw_harness::random_key;

use super::cache::Binaries;
use super::minihttp;
use super::procs::{self, MARKER_VAR};

/// How long a server may take to answer its health route after being started.
const HEALTH_WAIT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed server may take to exit before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// How the server authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `msbserver --dev`: no authentication.
    Dev,
    /// `msbserver --key K`: every RPC call needs an `msb_` key signed with K.
    Keyed,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Dev => "dev",
            Mode::Keyed => "keyed",
        }
    }
}

/// A running server and everything needed to restart it the same way.
#[derive(Debug)]
pub(crate) struct LocalServer {
    mode: Mode,
    port: u16,
    bins: Binaries,
    /// This server's private folder: `home/` (MICROSANDBOX_HOME), the rootfs folders, logs.
    dir: PathBuf,
    home: PathBuf,
    run_id: String,
    /// The server's signing key (keyed mode).
    key: Option<String>,
    child: Option<Child>,
    launches: u32,
}

fn mkdir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

impl LocalServer {
    /// Prepares the private folders under `dir` and starts the server.
    pub(crate) fn start(bins: &Binaries, dir: &Path, run_id: &str, mode: Mode) -> Result<LocalServer, String> {
        let home = dir.join("home");
        mkdir(&home.join("namespaces"))?;
        for rootfs in ["rootfs-python", "rootfs-node"] {
            mkdir(&dir.join(rootfs))?;
        }
        let key = match mode {
            Mode::Dev => None,
            Mode::Keyed => {
                let key = random_key()?;
                let path = home.join("server.key");
                std::fs::write(&path, &key).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Some(key)
            }
        };
        let mut server = LocalServer {
            mode,
            port: 0,
            bins: bins.clone(),
            dir: dir.to_owned(),
            home,
            run_id: run_id.to_owned(),
            key,
            child: None,
            launches: 0,
        };
        // A free port can be taken by someone else before msbserver binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = minihttp::free_port()?;
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(Launch::PortTaken(why)) => last = why,
                Err(Launch::Failed(why)) => return Err(why),
            }
        }
        Err(format!("msbserver could not bind a free port in 5 tries: {last}"))
    }

    /// The base URL, e.g. `http://127.0.0.1:43017`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The mode it runs in.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The folder of the sandboxes' "images" for a template (`python`, `node`): a host folder,
    /// which the stand-in uses as the agent's working directory.
    pub(crate) fn rootfs(&self, template: &str) -> PathBuf {
        self.dir.join(format!("rootfs-{template}"))
    }

    /// The PID of the running msbserver.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("msbserver-{}.log", self.launches))
    }

    /// Starts msbserver and waits until it answers its health route.
    fn launch(&mut self) -> Result<(), Launch> {
        self.launches += 1;
        let log_path = self.log_path();
        let log = File::create(&log_path)
            .map_err(|e| Launch::Failed(format!("cannot create {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Launch::Failed(format!("cannot open {} twice: {e}", log_path.display())))?;
        let mut command = Command::new(&self.bins.msbserver);
        command
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--path"])
            .arg(self.home.join("namespaces"))
            .current_dir(&self.dir)
            .env("MICROSANDBOX_HOME", &self.home)
            .env("MSBRUN_EXE", &self.bins.msbrun)
            .env("MSBW_STANDIN_PORTAL", &self.bins.portal)
            .env("RUST_LOG", "info")
            .env(MARKER_VAR, &self.run_id)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Its own process group: a Ctrl-C in the terminal reaches the harness, whose reaper
        // then stops the server and its sandboxes in order.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        match &self.key {
            Some(key) => command.args(["--key", key]),
            None => command.arg("--dev"),
        };
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| Launch::Failed(format!("cannot start {}: {e}", self.bins.msbserver.display())))?;
        self.child = Some(child);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let why = format!(
                    "msbserver exited at start ({status}); the end of {}:\n{}",
                    log_path.display(),
                    tail.join("\n")
                );
                return Err(if log.contains("Address already in use") {
                    Launch::PortTaken(why)
                } else {
                    Launch::Failed(why)
                });
            }
            if minihttp::get_status(self.port, "/api/v1/health", Duration::from_secs(1)) == Ok(200) {
                return Ok(());
            }
            if started.elapsed() > HEALTH_WAIT {
                self.terminate();
                return Err(Launch::Failed(format!(
                    "msbserver did not answer /api/v1/health within {HEALTH_WAIT:?}; see {}",
                    log_path.display()
                )));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Stops msbserver (SIGTERM, then SIGKILL after a while) and waits for it. Its sandboxes
    /// keep running, as with a real server; [`procs::end_all`] ends those.
    pub(crate) fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        procs::signal(&[child.id()], "TERM");
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Restarts the server on the same port and folders, as an operator would: the sandboxes
    /// keep running meanwhile. Returns how long the server was away.
    pub(crate) fn restart(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        self.terminate();
        // The port is usually free at once; allow a moment if it is not.
        let mut last = String::new();
        for _ in 0..20 {
            match self.launch() {
                Ok(()) => return Ok(started.elapsed()),
                Err(Launch::PortTaken(why)) => {
                    last = why;
                    sleep(Duration::from_millis(250));
                }
                Err(Launch::Failed(why)) => return Err(why),
            }
        }
        Err(format!("msbserver could not bind port {} again: {last}", self.port))
    }

    /// A key minted by `msb server keygen`: for all namespaces, or for one.
    pub(crate) fn keygen(&self, namespace: Option<&str>) -> Result<String, String> {
        if self.key.is_none() {
            return Err("the server runs in dev mode: there is no server key to mint keys with".into());
        }
        let mut command = Command::new(&self.bins.msb);
        command.args(["server", "keygen"]);
        if let Some(ns) = namespace {
            command.args(["--namespace", ns]);
        }
        let out = command
            .current_dir(&self.dir)
            .env("MICROSANDBOX_HOME", &self.home)
            .env(MARKER_VAR, &self.run_id)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bins.msb.display()))?;
        // keygen prints a log line on stdout before `Token: msb_...`.
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().find_map(|l| l.trim().strip_prefix("Token: ")) {
            Some(token) if out.status.success() => Ok(token.trim().to_owned()),
            _ => Err(format!(
                "msb server keygen failed ({}): {} {}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }

    /// A key signed with this server's key by hand (`msb_` + an HS256 JWT with `exp`, `iat`
    /// and `namespace`), expiring `exp_offset` seconds from now (negative: already expired).
    /// `msb server keygen` cannot mint an expired key, and the server allows 60 s of leeway.
    pub(crate) fn mint(&self, namespace: &str, exp_offset: i64) -> Result<String, String> {
        let Some(key) = &self.key else {
            return Err("the server runs in dev mode: there is no server key to sign with".into());
        };
        const SCRIPT: &str = r#"
import base64, hashlib, hmac, json, os, sys, time
key = os.environ["MSBW_SIGNING_KEY"].encode()
namespace, offset = sys.argv[1], int(sys.argv[2])
enc = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
part = lambda obj: enc(json.dumps(obj, separators=(",", ":")).encode())
now = int(time.time())
head = part({"alg": "HS256", "typ": "JWT"})
body = part({"exp": now + offset, "iat": min(now, now + offset) - 60, "namespace": namespace})
sig = enc(hmac.new(key, (head + "." + body).encode(), hashlib.sha256).digest())
print("msb_" + head + "." + body + "." + sig)
"#;
        let out = Command::new("python3")
            .args(["-c", SCRIPT, namespace, &exp_offset.to_string()])
            // The key goes through the environment, not the command line (visible in ps).
            .env("MSBW_SIGNING_KEY", key)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run python3 to mint a key: {e}"))?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !(out.status.success() && token.starts_with("msb_")) {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!("minting a key failed ({}): {}", out.status, stderr.trim()));
        }
        Ok(token)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Why a launch failed.
enum Launch {
    /// Someone else had bound the port: try another (or wait).
    PortTaken(String),
    /// Anything else: give up.
    Failed(String),
}
