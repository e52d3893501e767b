//! Whether and when a failed delivery is tried again: a pure decision from the
//! error, the attempts made, the event's age and the target's retry policy, so
//! every give-up branch is tested on its own.

use std::time::Duration;

use fleetbus_config::RetryPolicy;
use fleetbus_targets::DeliveryError;

/// What happens after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Try again after this long.
    RetryAfter(Duration),
    /// Dead-letter it, for this reason (which names the last error).
    Dead(String),
}

/// Decides after a failed attempt. `attempts` counts this one (1 after the first
/// attempt); `age` is how long ago the event was received (a clock stepped back
/// counts as zero: young, not ancient); `backoff` gives the delay for an attempt
/// count when the receiver did not say (its `Retry-After` is honoured, never sooner
/// than 1 s).
pub(crate) fn decide(
    err: &DeliveryError,
    attempts: u32,
    age: Duration,
    policy: &RetryPolicy,
    backoff: impl FnOnce(u32) -> Duration,
) -> Decision {
    let max_age = policy.maximum_event_age;
    if !err.is_retryable() {
        return Decision::Dead(format!("permanent failure: {err}"));
    }
    if age >= max_age {
        return Decision::Dead(format!(
            "maximum event age {}s exceeded; last error: {err}",
            max_age.as_secs()
        ));
    }
    let asked = err.retry_after().map(|d| d.max(Duration::from_secs(1)));
    if let Some(delay) = asked {
        if age.saturating_add(delay) > max_age {
            return Decision::Dead(format!(
                "the receiver asked to wait {}s (Retry-After), past the maximum event age {}s; last error: {err}",
                delay.as_secs(),
                max_age.as_secs()
            ));
        }
    }
    if attempts > policy.maximum_retry_attempts {
        return Decision::Dead(format!(
            "gave up after {attempts} attempts; last error: {err}"
        ));
    }
    Decision::RetryAfter(asked.unwrap_or_else(|| backoff(attempts)))
}

/// Exponential backoff with full jitter: 1 s doubling per attempt, capped at 5 min,
/// drawn uniformly from the upper half so retries spread without collapsing to 0.
pub(crate) fn backoff(attempts: u32) -> Duration {
    let base_ms = 1000u64
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(300_000);
    Duration::from_millis(base_ms / 2 + fastrand::u64(0..=base_ms / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn policy(attempts: u32, age_secs: u64) -> RetryPolicy {
        RetryPolicy {
            maximum_retry_attempts: attempts,
            maximum_event_age: Duration::from_secs(age_secs),
        }
    }

    fn retryable() -> DeliveryError {
        DeliveryError::Retryable("503 Service Unavailable".into())
    }

    fn retry_after(secs: u64) -> DeliveryError {
        DeliveryError::RetryAfter {
            message: "429 Too Many Requests".into(),
            after: Duration::from_secs(secs),
        }
    }

    /// Backoff fixed at 7 s, so a decision is exact.
    fn fixed(_: u32) -> Duration {
        7 * SEC
    }

    #[test]
    fn decisions_table() {
        let permanent = DeliveryError::Permanent("400 Bad Request".into());
        let cases: Vec<(&str, DeliveryError, u32, Duration, RetryPolicy, Decision)> = vec![
            (
                "a retryable error within policy backs off",
                retryable(),
                1,
                SEC,
                policy(3, 3600),
                Decision::RetryAfter(7 * SEC),
            ),
            (
                "a permanent error is dead at once, whatever the policy",
                permanent.clone(),
                1,
                Duration::ZERO,
                policy(185, 86_400),
                Decision::Dead("permanent failure: 400 Bad Request".into()),
            ),
            (
                "the last allowed attempt still retries",
                retryable(),
                3,
                SEC,
                policy(3, 3600),
                Decision::RetryAfter(7 * SEC),
            ),
            (
                "one attempt past the maximum gives up",
                retryable(),
                4,
                SEC,
                policy(3, 3600),
                Decision::Dead(
                    "gave up after 4 attempts; last error: 503 Service Unavailable".into(),
                ),
            ),
            (
                "zero retries allowed: the first failure is final",
                retryable(),
                1,
                Duration::ZERO,
                policy(0, 3600),
                Decision::Dead(
                    "gave up after 1 attempts; last error: 503 Service Unavailable".into(),
                ),
            ),
            (
                "an event at the maximum age is dead",
                retryable(),
                1,
                60 * SEC,
                policy(185, 60),
                Decision::Dead(
                    "maximum event age 60s exceeded; last error: 503 Service Unavailable"
                        .into(),
                ),
            ),
            (
                "the receiver's Retry-After is honoured",
                retry_after(30),
                1,
                SEC,
                policy(185, 3600),
                Decision::RetryAfter(30 * SEC),
            ),
            (
                "a Retry-After below 1 s waits 1 s",
                retry_after(0),
                1,
                SEC,
                policy(185, 3600),
                Decision::RetryAfter(SEC),
            ),
            (
                "a Retry-After past the maximum age gives up now",
                retry_after(120),
                1,
                10 * SEC,
                policy(185, 60),
                Decision::Dead(
                    "the receiver asked to wait 120s (Retry-After), past the maximum event age 60s; last error: 429 Too Many Requests"
                        .into(),
                ),
            ),
            (
                "our own backoff past the maximum age still retries (the next failure ends it)",
                retryable(),
                1,
                55 * SEC,
                policy(185, 60),
                Decision::RetryAfter(7 * SEC),
            ),
        ];
        for (what, err, attempts, age, policy, expected) in cases {
            assert_eq!(
                decide(&err, attempts, age, &policy, fixed),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for attempt in 1..30 {
            let d = backoff(attempt).as_millis() as u64;
            let base = (1000u64 << (attempt - 1).min(20)).min(300_000);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d}");
        }
    }
}
