//! The per-session token bucket behind `limits.messages_per_second` and `limits.burst`.
//!
//! A bucket holds up to `burst` tokens and refills at `rate` tokens per second; each client
//! message takes one. A message that finds the bucket empty is refused (`rate_limited`), and a
//! client that keeps sending into an empty bucket — a whole burst's worth of refusals with no
//! message accepted in between — is abusing it and gets closed.

use std::time::Instant;

/// What the bucket says to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Refused; the client may retry later.
    Refuse,
    /// Refused, and the client has ignored a burst's worth of refusals: close the session.
    Abuse,
}

/// One session's token bucket; see the module docs.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// Refusals since the last accepted message.
    refused: u32,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket::starting_at(rate, burst, Instant::now())
    }

    fn starting_at(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            refilled: now,
            refused: 0,
        }
    }

    /// Takes a token for one message, if there is one.
    pub fn take(&mut self) -> Verdict {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            return Verdict::Accept;
        }
        self.refused = self.refused.saturating_add(1);
        if f64::from(self.refused) > self.burst {
            Verdict::Abuse
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_bucket_takes_a_burst_then_refuses() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::starting_at(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(bucket.take_at(t0), Verdict::Accept);
        }
        assert_eq!(bucket.take_at(t0), Verdict::Refuse);
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_beyond_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::starting_at(10, 5, t0);
        for _ in 0..5 {
            bucket.take_at(t0);
        }
        // 10 per second: one token every 100 ms.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(bucket.take_at(t1), Verdict::Accept);
        assert_eq!(bucket.take_at(t1), Verdict::Accept);
        assert_eq!(bucket.take_at(t1), Verdict::Refuse);
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        let accepted = (0..20)
            .filter(|_| bucket.take_at(t2) == Verdict::Accept)
            .count();
        assert_eq!(accepted, 5);
    }

    #[test]
    fn sending_on_into_an_empty_bucket_is_abuse() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::starting_at(1, 3, t0);
        for _ in 0..3 {
            assert_eq!(bucket.take_at(t0), Verdict::Accept);
        }
        let verdicts: Vec<Verdict> = (0..4).map(|_| bucket.take_at(t0)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Refuse,
                Verdict::Refuse,
                Verdict::Refuse,
                Verdict::Abuse
            ]
        );
    }

    #[test]
    fn an_accepted_message_forgives_earlier_refusals() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::starting_at(1, 2, t0);
        bucket.take_at(t0);
        bucket.take_at(t0);
        assert_eq!(bucket.take_at(t0), Verdict::Refuse);
        assert_eq!(bucket.take_at(t0), Verdict::Refuse);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(bucket.take_at(later), Verdict::Accept);
        assert_eq!(bucket.take_at(later), Verdict::Refuse);
        assert_eq!(bucket.take_at(later), Verdict::Refuse);
        assert_eq!(bucket.take_at(later), Verdict::Abuse);
    }
}
