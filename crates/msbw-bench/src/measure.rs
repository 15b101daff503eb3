//! How rows measure: the client runtime (whose threads' CPU time is counted), samples of
//! per-operation latencies, interleaved repetitions of two sides, and callers in parallel.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::report::Side;

/// What every row gets: the mode and the runtime clients run on.
pub(crate) struct Ctx {
    /// Tiny sizes: every row runs, the figures mean little.
    pub(crate) quick: bool,
    /// Two workers, as `msbw` uses. Only these threads' CPU time is "client CPU".
    pub(crate) rt: Runtime,
    threads: Arc<Mutex<Vec<u32>>>,
}

impl Ctx {
    pub(crate) fn new(quick: bool) -> Result<Ctx, String> {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let seen = threads.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            // Debug builds (the quick run) nest large futures.
            .thread_stack_size(16 << 20)
            .enable_all()
            .on_thread_start(move || {
                if let Some(tid) = current_tid() {
                    seen.lock().unwrap_or_else(PoisonError::into_inner).push(tid);
                }
            })
            .build()
            .map_err(|e| format!("cannot build the runtime: {e}"))?;
        Ok(Ctx { quick, rt, threads })
    }

    /// `full` in a full run, `quick` in a quick one.
    pub(crate) fn size(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }

    /// Repetitions of each side: 7 in a full run, 2 in a quick one.
    pub(crate) fn reps(&self) -> usize {
        self.size(7, 2)
    }

    /// CPU time used so far by the client runtime's threads.
    pub(crate) fn client_cpu(&self) -> Duration {
        let tids = self.threads.lock().unwrap_or_else(PoisonError::into_inner).clone();
        tids.into_iter().map(thread_cpu).sum()
    }

    /// Runs `fut` on the client runtime (spawned, so it runs on a worker thread).
    pub(crate) fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        self.rt
            .block_on(self.rt.spawn(fut))
            .map_err(|e| format!("a benchmark task failed: {e}"))?
    }
}

/// This thread's id, from `/proc/thread-self` (a link to `PID/task/TID`).
fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU time of one thread of this process: the first field of its schedstat, in ns.
fn thread_cpu(tid: u32) -> Duration {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// One repetition of one side: per-operation latencies and how long the whole took.
#[derive(Debug, Default)]
pub(crate) struct Rep {
    pub(crate) latencies: Vec<Duration>,
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
}

impl Rep {
    pub(crate) fn ops_per_s(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub(crate) fn cpu_per_op(&self) -> Duration {
        self.cpu / self.latencies.len().max(1) as u32
    }
}

/// Every repetition of one side.
#[derive(Debug, Default)]
pub(crate) struct Reps(pub(crate) Vec<Rep>);

impl Reps {
    /// All latencies of all repetitions, sorted.
    fn latencies(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = self.0.iter().flat_map(|r| r.latencies.iter().copied()).collect();
        all.sort();
        all
    }

    /// The median of all per-operation latencies.
    pub(crate) fn median(&self) -> Duration {
        quantile(&self.latencies(), 0.5)
    }

    /// The 99th percentile of all per-operation latencies.
    pub(crate) fn p99(&self) -> Duration {
        quantile(&self.latencies(), 0.99)
    }

    /// The median over repetitions of the throughput.
    pub(crate) fn ops_per_s(&self) -> f64 {
        median_f64(self.0.iter().map(Rep::ops_per_s).collect())
    }

    /// The median over repetitions of the CPU time per operation.
    pub(crate) fn cpu_per_op(&self) -> Duration {
        let mut all: Vec<Duration> = self.0.iter().map(Rep::cpu_per_op).collect();
        all.sort();
        quantile(&all, 0.5)
    }

    /// A latency side: median and p99 of every operation, in ms.
    pub(crate) fn latency_side(&self, label: impl Into<String>) -> Side {
        Side::new(label, ms(self.median()), ms(self.p99()), "ms")
    }

    /// A CPU side: the median over repetitions of the CPU time per operation, and the worst
    /// repetition's in place of the p99, in µs.
    pub(crate) fn cpu_side(&self, label: impl Into<String>, unit: &'static str) -> Side {
        let worst = self.0.iter().map(Rep::cpu_per_op).max().unwrap_or_default();
        Side::new(label, us(self.cpu_per_op()), us(worst), unit).p99_in("µs (worst rep)")
    }

    /// A throughput side: median ops/s over repetitions, p99 latency in ms.
    pub(crate) fn rate_side(&self, label: impl Into<String>) -> Side {
        Side::new(label, self.ops_per_s(), ms(self.p99()), "ops/s").p99_in("ms")
    }
}

/// Milliseconds as a float.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Microseconds as a float.
pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The `q` quantile of sorted samples (zero if none).
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The median of floats (zero if none).
pub(crate) fn median_f64(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `reps` repetitions of each side, interleaved (a, b, b, a, a, b, ...) so that a change
/// of the machine's load affects both alike.
pub(crate) fn interleave(
    reps: usize,
    mut a: impl FnMut() -> Result<Rep, String>,
    mut b: impl FnMut() -> Result<Rep, String>,
) -> Result<(Reps, Reps), String> {
    let (mut ra, mut rb) = (Reps::default(), Reps::default());
    for i in 0..reps {
        if i % 2 == 0 {
            ra.0.push(a()?);
            rb.0.push(b()?);
        } else {
            rb.0.push(b()?);
            ra.0.push(a()?);
        }
    }
    Ok((ra, rb))
}

/// Times `n` sequential runs of a blocking operation.
pub(crate) fn sequential(n: usize, mut op: impl FnMut() -> Result<(), String>) -> Result<Rep, String> {
    let mut rep = Rep::default();
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        op()?;
        rep.latencies.push(t.elapsed());
    }
    rep.wall = started.elapsed();
    Ok(rep)
}

/// An operation one caller repeats: gets the caller's index.
pub(crate) type Op = Arc<dyn Fn(usize) -> futures_lite::BoxFuture<Result<(), String>> + Send + Sync>;

/// `callers` callers in parallel on the client runtime, each running `op` `per_caller` times;
/// the client runtime's CPU time is measured around the whole.
pub(crate) fn parallel(ctx: &Ctx, callers: usize, per_caller: usize, op: &Op) -> Result<Rep, String> {
    let op = op.clone();
    let cpu_before = ctx.client_cpu();
    let mut rep = ctx.run(async move {
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(callers);
        for caller in 0..callers {
            let op = op.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_caller);
                for _ in 0..per_caller {
                    let t = Instant::now();
                    op(caller).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, String>(latencies)
            }));
        }
        let mut rep = Rep::default();
        for task in tasks {
            let latencies = task.await.map_err(|e| format!("a caller failed: {e}"))??;
            rep.latencies.extend(latencies);
        }
        rep.wall = started.elapsed();
        Ok(rep)
    })?;
    rep.cpu = ctx.client_cpu().saturating_sub(cpu_before);
    Ok(rep)
}

/// Boxed futures without another dependency.
pub(crate) mod futures_lite {
    use std::future::Future;
    use std::pin::Pin;

    /// A boxed, sendable future.
    pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
}
