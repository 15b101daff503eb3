//! Commands start from the sandbox's launcher (a process that joined the sandbox's cgroups
//! once): they must still run inside every cgroup of the sandbox, like the interpreter, and a
//! command too big for a launcher request must still run (on the direct path).

mod common;

use common::*;
use msbw_backend::Template;

/// `controller:path` of every cgroup v1 controller line (or the v2 line) of a
/// `/proc/self/cgroup` text, for the controllers the backend uses.
fn sandbox_cgroups(text: &str, controllers: &[&str]) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            let used = names.split(',').any(|n| controllers.contains(&n)) || names.is_empty();
            used.then(|| format!("{names}:{path}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_in_the_sandboxs_cgroups_like_its_interpreter() {
    let sandbox = Sandbox::new("cg", Template::Python).await;
    let support = sandbox.backend.host_support();
    let from_command = sandbox.command("cat", &["/proc/self/cgroup"]).await;
    let from_code = sandbox.python("print(open('/proc/self/cgroup').read(), end='')").await;
    let controllers = &support.cgroup_controllers;
    if !controllers.is_empty() {
        let mine = sandbox_cgroups(&from_command.stdout, controllers);
        let theirs = sandbox_cgroups(&from_code.stdout, controllers);
        assert_eq!(mine, theirs, "{from_command:?} {from_code:?}");
        for controller in controllers {
            assert!(
                mine.iter()
                    .any(|line| line.contains(controller) && line.contains("msbw-local-")),
                "the command is not in the sandbox's {controller} cgroup: {from_command:?}"
            );
        }
    }
    // Many commands in a row, each in the cgroups.
    for _ in 0..5 {
        let again = sandbox.command("cat", &["/proc/self/cgroup"]).await;
        assert_eq!(again.stdout, from_command.stdout);
    }
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_too_big_for_the_launcher_still_runs() {
    let sandbox = Sandbox::new("big", Template::Python).await;
    // 100 KiB of arguments: more than one launcher request holds.
    let arg = "x".repeat(100 * 1024);
    let out = sandbox.command("printf", &["%s", &arg]).await;
    assert_eq!(out.exit_code, Some(0), "{:?}", out.stderr);
    assert_eq!(out.stdout.len(), arg.len());
    let out = sandbox.command("printf", &["%s", "small"]).await;
    assert_eq!(out.stdout, "small");
    sandbox.stop().await;
}
