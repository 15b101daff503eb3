//! Persistent sessions of the real `msbw` binary: the per-user session server started on
//! demand, state kept between commands, `msbw session`, `msbw cp`, limits across processes, the
//! idle exit (the host process table is checked), the start lock, and the owner-only socket.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{is_root, msbw, run, wait_within};

/// A private runtime directory (XDG_RUNTIME_DIR) and working directory for one test.
struct Env {
    runtime: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            runtime: tempfile::tempdir().expect("a runtime directory"),
            work: tempfile::tempdir().expect("a working directory"),
        }
    }

    /// `msbw` with this runtime directory and a one-second idle exit of its session server.
    fn msbw(&self) -> Command {
        let mut cmd = msbw(self.work.path());
        cmd.env("XDG_RUNTIME_DIR", self.runtime.path())
            .env("MSBW_SESSION_SERVER_IDLE_EXIT", "1");
        cmd
    }

    fn dir(&self) -> PathBuf {
        self.runtime.path().join("msbw")
    }

    fn socket(&self) -> PathBuf {
        self.dir().join("server.sock")
    }

    /// Live host processes of this test's session server.
    fn servers(&self) -> Vec<u32> {
        processes_mentioning(&self.socket())
    }

    /// Stops these sessions, each cleanly, then waits until the session server has exited.
    fn stop_sessions_and_wait(&self, ids: impl IntoIterator<Item = impl AsRef<str>>) {
        for id in ids {
            let id = id.as_ref();
            let (code, _, err) = run(self.msbw().args(["session", "stop", id]));
            assert_eq!(code, 0, "session stop {id}: {err}");
        }
        self.wait_until_no_server();
    }

    /// Waits (polling the host process table, within a deadline) until no session server of
    /// this test is left.
    fn wait_until_no_server(&self) {
        poll(Duration::from_secs(30), "the session server exits on its own", || {
            self.servers().is_empty()
        });
    }
}

/// Polls `done` until it holds, failing the test after `limit`.
fn poll(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// Pids of live (not zombie) processes whose command line has `needle` as an argument.
fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
        if !zombie && cmdline.split(|b| *b == 0).any(|arg| arg == needle) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn state_lives_between_commands_until_the_session_is_stopped_then_the_server_exits() {
    let env = Env::new();
    let (code, out, err) = run(env.msbw().args(["exec", "--session", "a", "x = 41"]));
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(env.msbw().args(["exec", "--session", "a", "print(x + 1)"]));
    assert_eq!((code, out.as_str()), (0, "42\n"), "{err}");
    let (code, out, _) = run(env.msbw().args(["--json", "exec", "--session", "a", "print(x)"]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(code, 0);
    assert_eq!(
        (
            &json["stdout"],
            &json["session_id"],
            &json["session_created"],
            &json["status"]
        ),
        (&"41".into(), &"a".into(), &false.into(), &"completed".into()),
        "{json}"
    );
    assert_eq!(env.servers().len(), 1, "one session server runs between the commands");

    let (code, out, err) = run(env.msbw().args(["session", "list"]));
    assert_eq!((code, out.as_str()), (0, "a\n"), "{err}");
    let (code, out, _) = run(env.msbw().args(["--json", "session", "list"]));
    let rows: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(code, 0);
    assert_eq!(rows[0]["session"], "a", "{rows}");
    let (code, out, _) = run(env.msbw().args(["session", "stats"]));
    assert_eq!(code, 0);
    assert!(
        out.starts_with("SESSION") && out.lines().nth(1).is_some_and(|l| l.starts_with("a ")),
        "{out}"
    );

    let (code, _, err) = run(env.msbw().args(["session", "stop", "a"]));
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(env.msbw().args(["session", "list"]));
    assert_eq!((code, out.as_str()), (0, ""), "the stopped session is not listed");
    let (code, _, err) = run(env.msbw().args(["session", "stop", "a"]));
    assert_eq!(code, 65, "stopping it again: no such session: {err}");
    assert!(err.contains("SESSION_NOT_FOUND_ERROR"), "{err}");

    env.wait_until_no_server();
    assert!(!env.socket().exists(), "the server removes its socket when it exits");
    // Without a server, the session commands start none.
    let (code, out, _) = run(env.msbw().args(["session", "list"]));
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(env.servers().is_empty() && !env.socket().exists());
}

#[test]
fn without_a_session_exec_is_a_one_shot_and_starts_no_server() {
    let env = Env::new();
    let (code, out, err) = run(env.msbw().args(["exec", "x = 1\nprint(x)"]));
    assert_eq!((code, out.as_str()), (0, "1\n"), "{err}");
    assert!(!env.dir().exists(), "no session server directory: {:?}", env.dir());
    assert!(env.servers().is_empty());
}

#[test]
fn a_third_session_from_a_third_process_is_refused_with_the_limit_error() {
    let env = Env::new();
    let limited = || {
        let mut cmd = env.msbw();
        cmd.env("MSB_MAX_SESSIONS", "2");
        cmd
    };
    for id in ["one", "two"] {
        let (code, _, err) = run(limited().args(["exec", "--session", id, "1"]));
        assert_eq!(code, 0, "{id}: {err}");
    }
    let (code, _, err) = run(limited().args(["exec", "--session", "three", "1"]));
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("RESOURCE_LIMIT_ERROR") && err.contains("limit 2"), "{err}");
    let (code, out, _) = run(limited().args(["--json", "run", "--session", "three", "true"]));
    assert_eq!(code, 75);
    let error: serde_json::Value = serde_json::from_str(&out).expect("a JSON error");
    assert_eq!(error["error"]["code"], "RESOURCE_LIMIT_ERROR", "{error}");
    // The two sessions are unharmed and reusing one is not a new session.
    let (code, out, err) = run(limited().args(["exec", "--session", "two", "print('still here')"]));
    assert_eq!((code, out.as_str()), (0, "still here\n"), "{err}");
    let (_, out, _) = run(env.msbw().args(["session", "list"]));
    assert_eq!(out, "one\ntwo\n");
    env.stop_sessions_and_wait(["one", "two"]);
}

#[test]
fn processes_racing_to_start_the_server_start_one() {
    let env = Env::new();
    let children: Vec<_> = (0..4)
        .map(|i| {
            env.msbw()
                .args(["exec", "--session", &format!("race{i}"), "print('ok')"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("msbw starts")
        })
        .collect();
    for child in children {
        let out = wait_within(child, Duration::from_secs(120));
        assert!(
            out.status.success() && out.stdout == b"ok\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        env.servers().len(),
        1,
        "exactly one session server: {:?}",
        env.servers()
    );
    let (_, out, _) = run(env.msbw().args(["session", "list"]));
    assert_eq!(out, "race0\nrace1\nrace2\nrace3\n");
    env.stop_sessions_and_wait((0..4).map(|i| format!("race{i}")));
}

#[test]
fn the_socket_and_its_directory_are_owner_only() {
    let env = Env::new();
    assert_eq!(run(env.msbw().args(["exec", "--session", "p", "1"])).0, 0);
    let me = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    let dir = std::fs::symlink_metadata(env.dir()).expect("the directory");
    let socket = std::fs::symlink_metadata(env.socket()).expect("the socket");
    assert_eq!((dir.uid(), dir.permissions().mode() & 0o777), (me, 0o700));
    assert_eq!((socket.uid(), socket.permissions().mode() & 0o777), (me, 0o600));
    for file in ["server.log", "server.lock"] {
        let meta = std::fs::symlink_metadata(env.dir().join(file)).expect(file);
        assert_eq!(meta.permissions().mode() & 0o077, 0, "{file} is private");
    }
    env.stop_sessions_and_wait(["p"]);
}

#[test]
fn a_directory_open_to_others_is_refused() {
    let env = Env::new();
    std::fs::create_dir(env.dir()).expect("mkdir");
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (code, _, err) = run(env.msbw().args(["exec", "--session", "a", "1"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("open to other users"), "{err}");
    assert!(
        !env.socket().exists() && env.servers().is_empty(),
        "nothing was started"
    );
}

/// An attacker (another user) who owns the runtime directory, or plants a socket in ours, must
/// get nothing: msbw refuses, starts no server, and never connects to the planted socket.
#[test]
fn a_directory_or_socket_of_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to create files of another user");
        return;
    }
    const OTHER: u32 = support::VOLUME_OWNER;
    // Their directory.
    let env = Env::new();
    std::fs::create_dir(env.dir()).expect("mkdir");
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::chown(env.dir(), Some(OTHER), Some(OTHER)).expect("chown");
    let (code, _, err) = run(env.msbw().args(["exec", "--session", "a", "1"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("belongs to uid {OTHER}")), "{err}");
    assert!(!env.socket().exists() && env.servers().is_empty());

    // Their socket in our directory: a listener that would read our code.
    let env = Env::new();
    std::fs::create_dir(env.dir()).expect("mkdir");
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let planted = std::os::unix::net::UnixListener::bind(env.socket()).expect("bind");
    planted.set_nonblocking(true).expect("nonblocking");
    std::os::unix::fs::lchown(env.socket(), Some(OTHER), Some(OTHER)).expect("chown");
    for args in [
        &["exec", "--session", "a", "print('secret')"][..],
        &["session", "list"][..],
        &["cp", "/etc/hostname", "a:/tmp/x"][..],
    ] {
        let (code, _, err) = run(env.msbw().args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("refusing to connect"), "{args:?}: {err}");
    }
    assert!(
        matches!(planted.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "msbw connected to the planted socket"
    );
    assert!(
        env.servers().is_empty(),
        "no server was started over the planted socket"
    );
}

#[test]
fn exit_statuses_pass_through_a_session() {
    let env = Env::new();
    let cases: [(&[&str], i32); 4] = [
        (&["exec", "--session", "py", "import sys\nsys.exit(3)"], 3),
        (&["exec", "--session", "py", "raise ValueError('no')"], 1),
        (&["exec", "--session", "js", "-t", "node", "process.exit(3)"], 3),
        (&["run", "--session", "py", "sh", "-c", "exit 7"], 7),
    ];
    for (args, want) in cases {
        let (code, _, err) = run(env.msbw().args(args));
        assert_eq!(code, want, "{args:?}: {err}");
    }
    env.stop_sessions_and_wait(["py", "js"]);
}

#[test]
fn a_call_refused_by_the_managers_checks_starts_no_session() {
    let env = Env::new();
    // The session client checks a call by the manager's rules (`Call::work`) before it asks the
    // server to start the session's sandbox.
    let (code, _, err) = run(env.msbw().args(["run", "--session", "empty", "  "]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("INVALID_INPUT_ERROR") && err.contains("command"), "{err}");
    let (code, out, err) = run(env.msbw().args(["session", "list"]));
    assert_eq!((code, out.as_str()), (0, ""), "no session was created: {err}");
    env.wait_until_no_server();
}

#[test]
fn cp_copies_into_and_out_of_a_session() {
    let env = Env::new();
    // 200 kB of every byte value: several chunks, binary-safe.
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let local = env.work.path().join("in.bin");
    std::fs::write(&local, &data).expect("write");
    // Into a session that does not exist: refused, nothing started.
    let (code, _, err) = run(env.msbw().args(["cp", local.to_str().unwrap(), "cpy:/tmp/x"]));
    assert_eq!(code, 65, "{err}");
    assert!(env.servers().is_empty());

    assert_eq!(run(env.msbw().args(["exec", "--session", "cpy", "1"])).0, 0);
    // Quotes, spaces and a command substitution in the name are only a name.
    let remote = "cpy:/tmp/a b'c\"$(touch zz).bin";
    let (code, _, err) = run(env.msbw().args(["cp", local.to_str().unwrap(), remote]));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(env.msbw().args(["run", "--session", "cpy", "sh", "-c", "ls -a /tmp ."]));
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == "a b'c\"$(touch zz).bin"), "{out}");
    assert!(
        !out.lines().any(|l| l == "zz") && !out.contains("msbw-cp-part"),
        "{out}"
    );

    let back = env.work.path().join("out.bin");
    let (code, out, err) = run(env.msbw().args(["--json", "cp", remote, back.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).expect("JSON")["copied_bytes"],
        200_000
    );
    assert!(
        std::fs::read(&back).expect("copied back") == data,
        "the bytes came back unchanged"
    );
    // Into a directory: the remote file's name.
    let (code, _, err) = run(env.msbw().args(["cp", remote, env.work.path().to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert!(env.work.path().join("a b'c\"$(touch zz).bin").exists());

    let (code, _, err) = run(env.msbw().args(["cp", "cpy:/tmp/missing", back.to_str().unwrap()]));
    assert_eq!(code, 66, "{err}");
    assert!(err.contains("FILE_NOT_FOUND_ERROR"), "{err}");
    // A folder is not a file, either way; nothing is left behind.
    let (code, _, err) = run(env.msbw().args(["cp", "cpy:/tmp", back.to_str().unwrap()]));
    assert_eq!(code, 66, "{err}");
    let (code, _, err) = run(env.msbw().args(["cp", local.to_str().unwrap(), "cpy:/tmp"]));
    assert_eq!(code, 66, "{err}");
    // Missing parent folders in the session are created.
    let (code, _, err) = run(env.msbw().args(["cp", local.to_str().unwrap(), "cpy:/tmp/new/dir/x"]));
    assert_eq!(code, 0, "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(env.work.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".msbw-cp-"))
        .collect();
    assert!(leftovers.is_empty(), "no partial download is left: {leftovers:?}");
    let (code, _, _) = run(env.msbw().args(["cp", "a", "b"]));
    assert_eq!(code, 2, "two local paths are a usage error");

    env.stop_sessions_and_wait(["cpy"]);
}

/// With a server named by the configuration (`msbw serve` here), that server owns the sessions
/// and no per-user server is started.
#[test]
fn a_configured_server_owns_the_sessions() {
    let env = Env::new();
    let mut serve = env
        .msbw()
        .args(["serve", "--dev", "--port", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("msbw serve starts");
    let stderr = serve.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let url = loop {
        let line = lines.next().expect("msbw serve says where it listens").expect("a line");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().expect("a URL").to_owned();
        }
    };
    let remote = || {
        let mut cmd = env.msbw();
        cmd.env("MSB_BACKEND", "microsandbox").env("MSB_SERVER_URL", &url);
        cmd
    };
    assert_eq!(run(remote().args(["exec", "--session", "srv", "y = 20"])).0, 0);
    let (code, out, err) = run(remote().args(["exec", "--session", "srv", "print(y + 1)"]));
    assert_eq!((code, out.as_str()), (0, "21\n"), "{err}");
    let (_, out, _) = run(remote().args(["session", "list"]));
    assert_eq!(out, "srv\n");
    assert!(!env.dir().exists(), "no per-user session server");
    assert_eq!(run(remote().args(["session", "stop", "srv"])).0, 0);
    let _ = Command::new("kill").args(["-TERM", &serve.id().to_string()]).status();
    let status = serve.wait().expect("msbw serve exits");
    assert!(status.success(), "{status}");
}
