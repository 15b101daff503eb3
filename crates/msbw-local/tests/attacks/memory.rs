//! Memory bombs: allocation stops at the flavor's memory and the sandbox keeps working.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cannot_allocate_past_the_memory_limit() {
    let mut spec = spec("mem", Template::Python);
    spec.memory_mb = 256;
    let sandbox = Sandbox::start(&backend(), &spec).await;
    sandbox.assert_raises("block = bytearray(1 << 30)", "MemoryError").await;

    // Many small allocations end the same way, or with the interpreter killed and restarted.
    let out = sandbox
        .python("chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))")
        .await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert!(
        out.stderr.contains("MemoryError") || out.stderr.contains("state was lost"),
        "{out:?}"
    );
    // The sandbox keeps working.
    sandbox.assert_prints("print('alive')", "alive\n").await;
    // A command is held to the same limit.
    let out = sandbox.command("python3", &["-c", "bytearray(1 << 30)"]).await;
    assert_ne!(out.exit_code, Some(0), "{out:?}");
    assert!(out.stderr.contains("MemoryError"), "{out:?}");
    sandbox.stop().await;
}
