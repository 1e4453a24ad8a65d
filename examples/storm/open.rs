//! [`OpenRequests`]: the requests under way, by user, and whether each
//! has an upstream call of its user to wait for.

use std::collections::HashMap;

/// Per user: open requests and upstream calls in flight. A request whose
/// user has a call in flight waits for that call (its own, a single-flight
/// leader's, or another replica's under the load lock); the rest are
/// "unbacked": they still work in real time, or wait on a retry's backoff.
#[derive(Debug, Default)]
pub(crate) struct OpenRequests {
    by_user: HashMap<u32, (usize, usize)>,
    unbacked: usize,
    unstarted: usize,
}

impl OpenRequests {
    /// Opens `n` requests of `user`, not started yet.
    pub(crate) fn open(&mut self, user: u32, n: usize) {
        self.unstarted += n;
        let (open, calls) = self.by_user.entry(user).or_default();
        *open += n;
        if *calls == 0 {
            self.unbacked += n;
        }
    }

    /// A request has started: it has looked at its caches.
    pub(crate) fn start(&mut self) {
        self.unstarted -= 1;
    }

    pub(crate) fn close(&mut self, user: u32) {
        let (open, calls) = self.by_user.entry(user).or_default();
        *open -= 1;
        if *calls == 0 {
            self.unbacked -= 1;
        }
    }

    pub(crate) fn call_started(&mut self, user: u32) {
        let (open, calls) = self.by_user.entry(user).or_default();
        if *calls == 0 {
            self.unbacked -= *open;
        }
        *calls += 1;
    }

    pub(crate) fn call_ended(&mut self, user: u32) {
        let (open, calls) = self.by_user.entry(user).or_default();
        *calls -= 1;
        if *calls == 0 {
            self.unbacked += *open;
        }
    }

    /// Open requests whose user has no call in flight, and requests not
    /// started (a call of their user in flight does not make them wait
    /// for it: they have not looked at their cache yet).
    pub(crate) fn unbacked(&self) -> usize {
        self.unbacked + self.unstarted
    }

    /// Open requests in all.
    pub(crate) fn len(&self) -> usize {
        self.by_user.values().map(|(open, _)| open).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_backed_while_a_call_of_its_user_is_in_flight() {
        let mut o = OpenRequests::default();
        o.open(1, 5);
        o.open(2, 1);
        for _ in 0..6 {
            o.start();
        }
        assert_eq!(o.unbacked(), 6);
        o.call_started(1);
        assert_eq!(o.unbacked(), 1);
        o.call_started(1);
        o.call_ended(1);
        assert_eq!(o.unbacked(), 1);
        o.close(1);
        o.call_ended(1);
        assert_eq!((o.unbacked(), o.len()), (5, 5));
    }
}
