//! Work a worker must finish before it exits: client messages and backend answers on their way
//! to the broker. Each holds a [`Pending`] guard while it is under way ([`spawn`] runs a task
//! holding one); a draining worker waits (up to `workers.drain_timeout`) until [`count`] is zero.

use std::sync::atomic::{AtomicUsize, Ordering};

static UNDER_WAY: AtomicUsize = AtomicUsize::new(0);

/// Counts one piece of work as under way until dropped.
pub struct Pending(());

impl Pending {
    pub fn start() -> Pending {
        UNDER_WAY.fetch_add(1, Ordering::Relaxed);
        Pending(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        UNDER_WAY.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `work` as a task of its own, counted as under way from now until it is done.
pub fn spawn(work: impl std::future::Future<Output = ()> + 'static) {
    let guard = Pending::start();
    actix_rt::spawn(async move {
        work.await;
        drop(guard);
    });
}

/// How many pieces of work are under way.
pub fn count() -> usize {
    UNDER_WAY.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_while_alive() {
        let before = count();
        let a = Pending::start();
        let b = Pending::start();
        assert_eq!(count(), before + 2);
        drop(a);
        drop(b);
        assert_eq!(count(), before);
    }
}
