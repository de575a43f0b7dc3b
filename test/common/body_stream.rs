//! Reading a streaming response body with bounded waits: a network read may hold half a frame
//! or several, so [`BodyStream`] accumulates bytes until what the test expects is complete.

use awc::error::PayloadError;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::WAIT;

/// Reads a streaming response body with bounded waits, independent of how the bytes were cut
/// into network reads or HTTP chunks.
pub struct BodyStream<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S> BodyStream<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    pub fn new(stream: S) -> Self {
        BodyStream {
            stream,
            buf: Vec::new(),
        }
    }

    /// Pulls the next piece of the body into the buffer; false at the end of the body.
    async fn fill(&mut self) -> bool {
        match actix_rt::time::timeout(WAIT, self.stream.next()).await {
            Err(_) => panic!(
                "no more body within {WAIT:?}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(None) => false,
            Ok(Some(Ok(bytes))) => {
                self.buf.extend_from_slice(&bytes);
                true
            }
            Ok(Some(Err(e))) => panic!("streaming body failed: {e}"),
        }
    }

    /// The next `n` bytes of the body.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(
                self.fill().await,
                "body ended after {:?}, wanted {n} bytes",
                String::from_utf8_lossy(&self.buf)
            );
        }
        self.buf.drain(..n).collect()
    }

    /// Asserts that the body continues with exactly `expected`.
    pub async fn expect(&mut self, expected: &str) {
        let got = self.read_exact(expected.len()).await;
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    /// The body before the first occurrence of `pattern`, which stays unread.
    pub async fn read_before(&mut self, pattern: &str) -> Vec<u8> {
        let pattern = pattern.as_bytes();
        loop {
            if let Some(at) = find(&self.buf, pattern) {
                return self.buf.drain(..at).collect();
            }
            assert!(
                self.fill().await,
                "body ended before {:?}; have {:?}",
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// The rest of the body, which must end within [`WAIT`] per piece.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    /// Asserts that the body ends now, with no further bytes.
    pub async fn expect_end(&mut self) {
        let rest = self.read_to_end().await;
        assert!(
            rest.is_empty(),
            "expected the body to end, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
