//! Retries with exponential backoff and jitter for throttled and transient cloud calls.
//!
//! The AWS adapter also has the SDK's own adaptive retry; this layer is what makes the
//! simulated cloud's injected throttling survivable, and it bounds the total wait so a
//! scheduled invocation finishes inside its timeout and the next poll carries on.

use std::future::Future;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::CloudResult;

const MAX_ATTEMPTS: u32 = 8;
const FIRST_DELAY: Duration = Duration::from_millis(25);
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Runs `call` until it succeeds, fails for good, or has been throttled `MAX_ATTEMPTS` times.
pub async fn retrying<T, F, Fut>(operation: &str, mut call: F) -> CloudResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = CloudResult<T>>,
{
    let mut delay = FIRST_DELAY;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(error) if error.is_retryable() && attempt < MAX_ATTEMPTS => {
                // Full jitter: a random wait up to the current ceiling spreads retrying callers.
                let wait = rand::rngs::StdRng::from_entropy().gen_range(delay / 2..=delay);
                tracing::debug!(operation, attempt, %error, wait_ms = wait.as_millis() as u64, "retrying cloud call");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(MAX_DELAY);
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::CloudError;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn throttled_calls_are_retried_until_they_succeed() {
        let calls = AtomicU32::new(0);
        let out = retrying("test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(CloudError::Throttled("slow down".into()))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(out, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried_and_retries_are_bounded() {
        let calls = AtomicU32::new(0);
        let out: CloudResult<()> = retrying("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CloudError::NotFound("vol-1".into()))
        })
        .await;
        assert_eq!(out, Err(CloudError::NotFound("vol-1".into())));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let out: CloudResult<()> = retrying("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CloudError::Transient("500".into()))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), MAX_ATTEMPTS);
    }
}
