//! Serve's memory for one execution is a small constant times the output's size, however many
//! lines it has (it used to be ~750 bytes per line: a JSON object per line). Measured with a
//! counting allocator around the whole test process: the fake backend's output, the wrapper's
//! copies, serve's answer and the client's reading are all counted.

#![allow(clippy::unwrap_used)] // test helpers may unwrap
#![allow(unsafe_code)] // a GlobalAlloc is unsafe to implement

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use microsandbox_wrapper::backend::fake::{FakeBackend, Reply};
use microsandbox_wrapper::{ExecOutput, MicrosandboxWrapper, WrapperConfig};
use msbw_serve::ServeOptions;
use serde_json::json;
use support::Served;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One million one-character lines: 2 MB of output, 31 MB of JSON lines on the wire.
const LINES: usize = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_output_lines_cost_a_few_times_their_bytes() {
    let fake = FakeBackend::with_script(|_, _| Reply::Output(ExecOutput::completed("x\n".repeat(LINES), "", None)));
    let wrapper = MicrosandboxWrapper::with_backend(WrapperConfig::default(), Arc::new(fake)).unwrap();
    let served = Served::start(wrapper, ServeOptions::default()).await;
    let url = format!("{}/api/v1/rpc", served.url());
    let client = reqwest::Client::new();
    let start = json!({"jsonrpc": "2.0", "method": "sandbox.start", "id": 1,
        "params": {"sandbox": "big", "namespace": "default", "config": {"image": "microsandbox/python"}}});
    assert_eq!(client.post(&url).json(&start).send().await.unwrap().status(), 200);
    let run = json!({"jsonrpc": "2.0", "method": "sandbox.repl.run", "id": 2,
        "params": {"sandbox": "big", "namespace": "default", "language": "python", "code": "many lines"}});

    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let mut response = client.post(&url).json(&run).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // Read the answer piece by piece, counting lines, as a streaming client would.
    let (mut wire_bytes, mut lines, mut tail) = (0usize, 0usize, Vec::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        wire_bytes += chunk.len();
        tail.extend_from_slice(&chunk);
        const LINE: &str = r#"{"stream":"stdout","text":"x"}"#;
        let text = String::from_utf8_lossy(&tail).into_owned();
        lines += text.matches(LINE).count();
        let counted = text.rfind(LINE).map_or(0, |i| i + LINE.len());
        tail.drain(..counted);
    }
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    assert_eq!(lines, LINES, "every line arrives");
    let output_bytes = 2 * LINES;
    println!("{LINES} lines: {wire_bytes} bytes on the wire, peak {peak} bytes above the baseline");
    assert!(
        peak < 8 * output_bytes,
        "peak {peak} bytes for {output_bytes} bytes of output ({} bytes per line)",
        peak / LINES
    );
    served.stop().await;
}
