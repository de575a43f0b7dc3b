//! HTTP/1.x over a plain TCP socket, for what an HTTP client would hide: chunk framing,
//! keep-alive, exact request headers, and cutting a request off mid-flight.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use super::body_stream::find;
use super::WAIT;

/// The status line and headers of a response read from a [`RawConnection`].
#[derive(Debug)]
pub struct RawHead {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    pub status: u16,
    /// Header names lowercased, values as sent.
    pub headers: Vec<(String, String)>,
}

impl RawHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A blocking HTTP/1.x connection over a plain socket, with a read timeout of [`WAIT`].
///
/// It blocks the test's thread while it waits, which is fine because the server under test
/// runs in another process; do not hold it across an `await` that needs the same thread to
/// make progress on something the socket waits for.
pub struct RawConnection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConnection {
    pub fn connect(port: u16) -> RawConnection {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
        stream
            .set_read_timeout(Some(WAIT))
            .expect("set the read timeout");
        RawConnection {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes one request. `version` is `"1.0"` or `"1.1"`; a `Host` header is always sent and
    /// a `Content-Length` header whenever there is a body.
    pub fn send_request(
        &mut self,
        method: &str,
        path: &str,
        version: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) {
        let mut req = format!("{method} {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n");
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream
            .write_all(req.as_bytes())
            .expect("write the request");
    }

    /// Reads more bytes into the buffer; false at end of stream.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!(
                "raw read failed ({e}); have {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    fn read_line(&mut self) -> String {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..at + 2).collect();
                return String::from_utf8_lossy(&line[..at]).into_owned();
            }
            assert!(self.fill(), "connection closed in the middle of a line");
        }
    }

    /// Reads a status line and headers.
    pub fn read_head(&mut self) -> RawHead {
        let status_line = self.read_line();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.read_line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        RawHead {
            version,
            status,
            headers,
        }
    }

    /// Reads exactly `n` bytes (of a body with `Content-Length`, or of a close-delimited one).
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill(), "connection closed before {n} bytes arrived");
        }
        self.buf.drain(..n).collect()
    }

    /// Reads one chunk of a `Transfer-Encoding: chunked` body; empty for the last chunk.
    pub fn read_chunk(&mut self) -> Vec<u8> {
        let size_line = self.read_line();
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        let data = self.read_exact(size);
        let end = self.read_exact(2);
        assert_eq!(end, b"\r\n", "chunk data not followed by CRLF");
        data
    }

    /// Decodes a chunked body until `n` bytes of payload arrived (chunks may be cut anywhere).
    pub fn read_chunked_payload(&mut self, n: usize) -> Vec<u8> {
        let mut payload = Vec::new();
        while payload.len() < n {
            let chunk = self.read_chunk();
            assert!(
                !chunk.is_empty(),
                "chunked body ended after {:?}, wanted {n} bytes",
                String::from_utf8_lossy(&payload)
            );
            payload.extend_from_slice(&chunk);
        }
        payload
    }

    /// Everything until the server closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    /// Reads the body that follows `head`: by `Content-Length`, by chunks, or until close.
    pub fn read_body(&mut self, head: &RawHead) -> Vec<u8> {
        if matches!(head.status, 101 | 204 | 304) {
            return Vec::new();
        }
        if let Some(length) = head.header("content-length") {
            let length = length.parse().expect("numeric Content-Length");
            return self.read_exact(length);
        }
        if head
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            let mut body = Vec::new();
            loop {
                let chunk = self.read_chunk();
                if chunk.is_empty() {
                    return body;
                }
                body.extend_from_slice(&chunk);
            }
        }
        self.read_to_end()
    }

    /// True if the server closed the connection (within [`WAIT`]) without sending more.
    pub fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}
