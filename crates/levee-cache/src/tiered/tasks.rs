//! Ownership of the cache's background tasks.

use parking_lot::Mutex;

/// Ends the cache's background tasks (loads, refreshes, the backplane
/// listener) when the last handle is dropped.
#[derive(Default)]
pub(crate) struct TaskGuard {
    tasks: Mutex<Tracked>,
}

#[derive(Default)]
struct Tracked {
    handles: Vec<tokio::task::AbortHandle>,
    /// Handles kept by the last sweep: finished ones are swept out once the
    /// list has doubled since, so a spawn costs O(1) amortised, and the
    /// list stays within twice the tasks running (plus 64).
    kept: usize,
}

impl TaskGuard {
    pub(crate) fn track(&self, handle: tokio::task::AbortHandle) {
        let mut t = self.tasks.lock();
        if t.handles.len() >= 2 * t.kept + 64 {
            t.handles.retain(|h| !h.is_finished());
            t.kept = t.handles.len();
        }
        t.handles.push(handle);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.tasks.lock().handles.len()
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().handles.drain(..) {
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

#[cfg(test)]
mod tests {
    use super::TaskGuard;

    #[tokio::test]
    async fn finished_tasks_are_swept_so_the_list_stays_bounded() {
        let guard = TaskGuard::default();
        for _ in 0..10_000 {
            let task = tokio::spawn(async {});
            let handle = task.abort_handle();
            task.await.unwrap();
            guard.track(handle);
        }
        assert!(guard.tracked() <= 64 + 1, "{}", guard.tracked());
    }
}
