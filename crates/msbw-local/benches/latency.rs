//! Latencies of the local backend on this host: a warm execution of trivial code in an existing
//! sandbox (python and node), a trivial command, and a sandbox's start and stop.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p msbw-local`). Prints one line per case:
//! iterations, mean, p50, p95.

use std::time::{Duration, Instant};

use msbw_backend::{CodeRequest, CommandRequest, SandboxBackend, SandboxId, SandboxSpec, Template};
use msbw_local::{LocalBackend, LocalConfig};

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len().max(1);
    let mean = samples.iter().sum::<Duration>() / n as u32;
    let p = |q: f64| samples[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "{name:<40} n={n:<5} mean={:>8.3} ms  p50={:>8.3} ms  p95={:>8.3} ms",
        mean.as_secs_f64() * 1e3,
        p(0.50).as_secs_f64() * 1e3,
        p(0.95).as_secs_f64() * 1e3
    );
}

fn spec(name: &str, template: Template) -> SandboxSpec {
    let mut spec = SandboxSpec::new(SandboxId::new("bench", name).expect("a valid name"), template);
    spec.memory_mb = 1024;
    spec
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let backend = LocalBackend::new(LocalConfig::default());
        let support = backend.host_support();
        if !support.usable() {
            eprintln!("the local backend cannot run on this host:\n{support}");
            std::process::exit(1);
        }
        let timeout = Duration::from_secs(30);
        for (template, code) in [(Template::Python, "x = 1 + 1"), (Template::Node, "var x = 1 + 1;")] {
            if !backend.capabilities().await.templates.contains(&template) {
                println!("{template}: interpreter not installed, not measured");
                continue;
            }
            let s = spec(&format!("warm-{template}"), template);
            backend.start(&s).await.expect("start");
            let request = CodeRequest {
                language: template,
                code: code.into(),
                timeout,
            };
            for _ in 0..20 {
                backend.run_code(&s.id, &request).await.expect("warm-up");
            }
            let mut samples = Vec::new();
            for _ in 0..500 {
                let t = Instant::now();
                backend.run_code(&s.id, &request).await.expect("run");
                samples.push(t.elapsed());
            }
            report(&format!("warm trivial code ({template})"), samples);
            if template == Template::Python {
                let command = CommandRequest {
                    command: "true".into(),
                    args: vec![],
                    timeout,
                };
                let mut samples = Vec::new();
                for _ in 0..200 {
                    let t = Instant::now();
                    backend.run_command(&s.id, &command).await.expect("command");
                    samples.push(t.elapsed());
                }
                report("trivial command (true)", samples);
            }
            backend.stop(&s.id).await.expect("stop");
        }
        let (mut starts, mut stops) = (Vec::new(), Vec::new());
        for i in 0..30 {
            let s = spec(&format!("cycle-{i}"), Template::Python);
            let t = Instant::now();
            backend.start(&s).await.expect("start");
            starts.push(t.elapsed());
            let t = Instant::now();
            backend.stop(&s.id).await.expect("stop");
            stops.push(t.elapsed());
        }
        report("sandbox start (python, ready to run)", starts);
        report("sandbox stop", stops);
    });
}
