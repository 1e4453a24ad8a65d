//! Ownership of the cache's background tasks.

use parking_lot::Mutex;

/// Ends the cache's background tasks (loads, refreshes, the backplane
/// listener) when the last handle is dropped.
#[derive(Default)]
pub(crate) struct TaskGuard {
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl TaskGuard {
    pub(crate) fn track(&self, handle: tokio::task::AbortHandle) {
        let mut tasks = self.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().drain(..) {
            t.abort();
        }
    }
}

/// A task handle that aborts the task when dropped, so that ending a load's
/// outer task also ends the loader it is waiting on.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    pub(crate) async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
