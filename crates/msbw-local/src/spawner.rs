//! The thread that starts sandbox holders.
//!
//! A holder sets `PR_SET_PDEATHSIG`, which fires when the *thread* that created it exits, not
//! the process. Holders are therefore created on one long-lived thread per backend, which ends
//! when the backend is dropped (and takes every holder, and so every sandbox, with it).

use std::io;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// A long-lived thread that runs jobs one at a time.
#[derive(Debug, Default)]
pub(crate) struct Spawner {
    state: Mutex<Option<(mpsc::Sender<Job>, JoinHandle<()>)>>,
}

impl Spawner {
    /// Runs `job` on the spawner thread (starting it on first use) and returns its result.
    pub(crate) async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.is_none() {
                let (sender, receiver) = mpsc::channel::<Job>();
                let handle = std::thread::Builder::new()
                    .name("msbw-local-spawner".into())
                    .spawn(move || {
                        for job in receiver {
                            job();
                        }
                    })?;
                *state = Some((sender, handle));
            }
            let Some((sender, _)) = state.as_ref() else {
                return Err(io::Error::other("the spawner thread is gone"));
            };
            sender
                .send(job)
                .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        }
        rx.await
            .map_err(|_| io::Error::other("the spawner thread dropped a job"))
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((sender, handle)) = state {
            drop(sender);
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_one_named_thread() {
        let spawner = Spawner::default();
        let a = spawner.run(|| std::thread::current().id()).await.unwrap();
        let b = spawner
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(spawner.run(|| std::thread::current().id()).await.unwrap(), a);
        assert_eq!(b.as_deref(), Some("msbw-local-spawner"));
        assert_ne!(a, std::thread::current().id());
    }
}
