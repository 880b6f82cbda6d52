//! A role's share of the threads for file work.
//!
//! All file-system work runs on the runtime's blocking pool
//! ([`super::BLOCKING_THREADS`] threads), in bounded steps: a chunk, a span
//! of at most 64 MiB, a bundle, one directory, at most 64 MiB of copying.
//! A role (one per session on a server) runs at most its share of those
//! steps at once, so a session cannot take every thread from the others;
//! and a step whose caller gave up (its session ended) before a thread was
//! free never starts.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::error::{Error, Result};

/// Steps of file work a role may run at once; cheap to clone.
#[derive(Debug, Clone)]
pub struct FileWork {
    share: Arc<Semaphore>,
}

/// Stops a blocking task that has not started when its caller is gone.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        // A no-op for a task that is running or done.
        self.0.abort();
    }
}

impl FileWork {
    /// A share of `steps` steps at once (at least one).
    pub fn new(steps: usize) -> FileWork {
        FileWork { share: Arc::new(Semaphore::new(steps.max(1))) }
    }

    /// Runs one step of blocking work within this share.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        // The step holds its place in the share until the work is done, even
        // when its caller gives up meanwhile (a blocking task runs to its end).
        let step = self.share.clone().acquire_owned().await.map_err(|_| Error::io("file work stopped"))?;
        run_blocking(move || {
            let _step = step;
            work()
        })
        .await
    }
}

/// Runs one step of blocking work on the pool, outside any share (what the
/// server does before a session exists).
pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let handle = tokio::task::spawn_blocking(work);
    let _abort = AbortOnDrop(handle.abort_handle());
    handle.await.unwrap_or_else(|e| Err(Error::io(format!("file-system task failed: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_share_bounds_the_steps_at_once_and_a_dropped_step_never_starts() {
        let work = FileWork::new(2);
        let (running, most, started) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let steps: Vec<_> = (0..8)
            .map(|_| {
                let (work, running, most, started) =
                    (work.clone(), running.clone(), most.clone(), started.clone());
                tokio::spawn(async move {
                    work.run(move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        // Give up on the last ones before they can have started.
        tokio::time::sleep(Duration::from_millis(5)).await;
        for step in &steps[4..] {
            step.abort();
        }
        for step in steps {
            let _ = step.await;
        }
        // (Fewer may overlap on a busy machine; never more.)
        let most = most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} steps ran at once, more than the share");
        assert!(started.load(Ordering::SeqCst) <= 6, "{} steps started", started.load(Ordering::SeqCst));
    }
}
