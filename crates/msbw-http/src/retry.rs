//! How often and how patiently a failed call is tried again: bounded attempts, exponential
//! backoff with jitter, so that many clients that failed together do not retry together.

use std::time::Duration;

/// Retries of calls that are safe to repeat (see the crate docs for which ones are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times a call is sent at most, the first time included (1 means no retry).
    pub max_attempts: u32,
    /// The pause after the first failure; it doubles after each further failure.
    pub initial_backoff: Duration,
    /// The longest pause between two attempts.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The pause before attempt `attempt + 1`, after `attempt` failed attempts (1-based): the
    /// exponential delay capped at `max_backoff`, of which a random half is kept ("equal
    /// jitter"), so the pause is never shorter than half the nominal delay.
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff(self.initial_backoff, self.max_backoff, attempt)
    }
}

impl Default for RetryPolicy {
    /// Four attempts, pausing about 0.2 s, 0.4 s and 0.8 s (with jitter), never more than 5 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Exponential backoff with equal jitter: `d = min(max, initial * 2^(attempt-1))`, then a
/// random duration in `[d/2, d]`.
pub(crate) fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let nominal = initial.saturating_mul(1u32 << exponent).min(max);
    let half = nominal / 2;
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(fastrand::u64(0..=jitter_nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_its_jitter_band_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for (attempt, nominal_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000)] {
            for _ in 0..50 {
                let d = policy.backoff(attempt);
                let nominal = Duration::from_millis(nominal_ms);
                assert!(d >= nominal / 2 && d <= nominal, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn backoff_is_jittered() {
        let policy = RetryPolicy::default();
        let samples: std::collections::HashSet<Duration> = (0..20).map(|_| policy.backoff(3)).collect();
        assert!(samples.len() > 1, "twenty identical pauses: {samples:?}");
    }

    #[test]
    fn zero_backoff_and_no_retries_are_possible() {
        assert_eq!(backoff(Duration::ZERO, Duration::ZERO, 3), Duration::ZERO);
        assert_eq!(RetryPolicy::none().max_attempts, 1);
    }
}
