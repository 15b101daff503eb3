//! Attack 4: output that the drivers used to lose. Node's stdout is an asynchronous pipe, so a
//! large write was still queued when the driver answered, and 1 MiB came back as 192 KiB with
//! no note. Both drivers now deliver everything up to the cap, and a cut is always reported.
#![allow(clippy::unwrap_used)]

use msbw_backend::{ExecOutput, ExecStatus, Template};

use crate::common::{Sandbox, backend, backend_with, spec};

/// The next execution sees only its own output: nothing of a big one is left over.
async fn assert_in_step(sandbox: &Sandbox) {
    let source = match sandbox.template {
        Template::Python => "print('next')",
        _ => "console.log('next')",
    };
    let out = sandbox.code(source).await;
    let template = sandbox.template;
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("next\n", ""), "{template}");
}

fn dropped_note(stream: &str, bytes: usize) -> String {
    format!("[msbw-local: {bytes} more bytes of {stream} were dropped]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_writes_arrive_whole_in_python_and_node() {
    let backend = backend();
    for template in [Template::Python, Template::Node] {
        let sandbox = Sandbox::start(&backend, &spec("big-write", template)).await;
        let cases: [(&str, &str); 3] = match template {
            Template::Python => [
                ("import sys\n_ = sys.stdout.write('x' * (1 << 20))", "stdout"),
                ("import sys\n_ = sys.stderr.write('x' * (1 << 20))", "stderr"),
                (
                    "import sys\n_ = sys.stdout.write('x' * (4 << 20)), sys.stderr.write('x' * (4 << 20))",
                    "both",
                ),
            ],
            _ => [
                ("void process.stdout.write('x'.repeat(1 << 20))", "stdout"),
                ("void process.stderr.write('x'.repeat(1 << 20))", "stderr"),
                (
                    "process.stdout.write('x'.repeat(4 << 20)); void process.stderr.write('x'.repeat(4 << 20))",
                    "both",
                ),
            ],
        };
        for (source, which) in cases {
            let out = sandbox.code(source).await;
            assert_eq!(out.status, ExecStatus::Completed, "{template} {which}");
            let (want_out, want_err) = match which {
                "stdout" => (1 << 20, 0),
                "stderr" => (0, 1 << 20),
                _ => (4 << 20, 4 << 20),
            };
            assert_eq!(
                (out.stdout.len(), out.stderr.len()),
                (want_out, want_err),
                "{template} {which}: {:?} / {:?}",
                &out.stdout[out.stdout.len().saturating_sub(200)..],
                &out.stderr[out.stderr.len().saturating_sub(200)..]
            );
            assert!(out.stdout.bytes().all(|b| b == b'x') && out.stderr.bytes().all(|b| b == b'x'));
            assert_in_step(&sandbox).await;
        }
        sandbox.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_writes_and_unicode_and_binary_arrive_whole() {
    let backend = backend();
    let lines: String = (0..100_000).map(|i| format!("{i}\n")).collect();
    let unicode = "é€😀\n".repeat(50_000);
    let binary: Vec<u8> = (0..(1 << 20)).map(|i| (i % 256) as u8).collect();
    let binary = String::from_utf8_lossy(&binary).into_owned();
    for template in [Template::Python, Template::Node] {
        let sandbox = Sandbox::start(&backend, &spec("small-writes", template)).await;
        let cases: [(&str, &String); 3] = match template {
            Template::Python => [
                (
                    "import sys\nfor i in range(100000):\n    _ = sys.stdout.write(f'{i}\\n')",
                    &lines,
                ),
                ("print('é€😀\\n' * 50000, end='')", &unicode),
                (
                    "import sys\n_ = sys.stdout.buffer.write(bytes(i % 256 for i in range(1 << 20)))",
                    &binary,
                ),
            ],
            _ => [
                (
                    "for (let i = 0; i < 100000; i++) process.stdout.write(`${i}\\n`);\nundefined",
                    &lines,
                ),
                ("void process.stdout.write('é€😀\\n'.repeat(50000))", &unicode),
                (
                    "const b = Buffer.alloc(1 << 20); for (let i = 0; i < b.length; i++) b[i] = i % 256; void process.stdout.write(b)",
                    &binary,
                ),
            ],
        };
        for (source, expected) in cases {
            let out = sandbox.code(source).await;
            assert_eq!(out.status, ExecStatus::Completed, "{template}: {source}");
            assert!(
                out.stdout == *expected,
                "{template}: {source}: {} bytes instead of {}",
                out.stdout.len(),
                expected.len()
            );
            assert_in_step(&sandbox).await;
        }
        // console.log many times, from timers that finish before the execution does.
        if template == Template::Node {
            let out = sandbox
                .node(
                "await new Promise((done) => { let n = 0; const t = setInterval(() => { for (let i = 0; i < 1000; i++) console.log('y'.repeat(100)); if (++n === 20) { clearInterval(t); done(); } }, 1); })",
                )
                .await;
            assert_eq!(out.stdout.len(), 20 * 1000 * 101, "{:?}", out.stderr);
        }
        sandbox.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_at_the_cap_is_whole_and_above_it_the_cut_is_reported() {
    let backend = backend_with(|config| config.max_output_bytes = 100_000);
    for template in [Template::Python, Template::Node] {
        let sandbox = Sandbox::start(&backend, &spec("cap", template)).await;
        let write = |stream: &str, what: &str| match template {
            Template::Python => format!("import sys\n_ = sys.{stream}.write({what})"),
            _ => format!("void process.{stream}.write({what})"),
        };
        let repeat = |text: &str, n: usize| match template {
            Template::Python => format!("'{text}' * {n}"),
            _ => format!("'{text}'.repeat({n})"),
        };
        for stream in ["stdout", "stderr"] {
            let pick = |out: &ExecOutput| {
                if stream == "stdout" {
                    out.stdout.clone()
                } else {
                    out.stderr.clone()
                }
            };
            // Exactly the cap: all of it, no note.
            let out = sandbox.code(&write(stream, &repeat("x", 100_000))).await;
            assert_eq!(pick(&out), "x".repeat(100_000), "{template} {stream}");
            // One byte more: the cap, and a note saying how much is missing.
            let out = sandbox.code(&write(stream, &repeat("x", 100_001))).await;
            let text = pick(&out);
            assert!(text.starts_with(&"x".repeat(100_000)), "{template} {stream}");
            assert!(
                text.ends_with(&format!("\n{}\n", dropped_note(stream, 1))),
                "{template} {stream}: {:?}",
                &text[100_000..]
            );
            assert_eq!(out.status, ExecStatus::Completed);
            // Far more: the same, the note counts everything.
            let out = sandbox.code(&write(stream, &repeat("x", 3_000_000))).await;
            assert!(
                pick(&out).contains(&dropped_note(stream, 2_900_000)),
                "{template} {stream}"
            );
            // A cut never splits a character: 33,333 whole euro signs (99,999 bytes) are kept.
            let out = sandbox.code(&write(stream, &repeat("€", 40_000))).await;
            let text = pick(&out);
            assert!(text.starts_with(&"€".repeat(33_333)), "{template} {stream}");
            assert!(!text.contains('\u{fffd}'), "{template} {stream}: a character was cut");
            assert!(
                text.contains(&dropped_note(stream, 120_000 - 99_999)),
                "{template} {stream}"
            );
            assert_in_step(&sandbox).await;
        }
        sandbox.stop().await;
    }
}
