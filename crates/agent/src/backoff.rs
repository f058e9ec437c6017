//! Restart back-off for crashing containers, as kubelet does it.
//!
//! The first exit restarts at once. After that each restart waits, measured from the exit,
//! 10 s, then 20 s, 40 s, … up to 300 s. A container that ran for twice the cap (10 min)
//! since its last restart has shown it is healthy, so the delay starts over.

use std::time::Duration;

use tokio::time::Instant;

pub const INITIAL_DELAY: Duration = Duration::from_secs(10);
pub const MAX_DELAY: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct RestartBackoff {
    /// The delay the next restart must wait, and when the previous restart happened;
    /// `None` before the first restart.
    current: Option<(Duration, Instant)>,
}

impl RestartBackoff {
    /// How long after `exited_at` the container may start again; records the restart.
    pub fn next_restart(&mut self, exited_at: Instant) -> Duration {
        let (delay, next) = match self.current {
            Some((delay, last_restart))
                if exited_at.saturating_duration_since(last_restart) <= MAX_DELAY * 2 =>
            {
                (delay, (delay * 2).min(MAX_DELAY))
            }
            _ => (Duration::ZERO, INITIAL_DELAY),
        };
        // The restart happens when the delay has run out.
        self.current = Some((next, exited_at + delay));
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_double_up_to_the_cap() {
        let mut backoff = RestartBackoff::default();
        let mut delays = Vec::new();
        for _ in 0..8 {
            let delay = backoff.next_restart(Instant::now());
            delays.push(delay.as_secs());
            // The container crashes right after each restart.
            tokio::time::advance(delay + Duration::from_secs(1)).await;
        }
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_healthy_run_resets_the_delay() {
        let mut backoff = RestartBackoff::default();
        assert_eq!(backoff.next_restart(Instant::now()), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(backoff.next_restart(Instant::now()), INITIAL_DELAY);
        tokio::time::advance(INITIAL_DELAY + Duration::from_secs(601)).await;
        assert_eq!(backoff.next_restart(Instant::now()), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(backoff.next_restart(Instant::now()), INITIAL_DELAY);
    }
}
