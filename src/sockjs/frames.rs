//! SockJS framing: the four frames a server sends and the JSON escaping they need.
//!
//! Every frame is text: `o` (open), `h` (heartbeat), `a[...]` (an array of JSON-encoded
//! messages) and `c[code,"reason"]` (close). Transports only wrap a frame (a newline for XHR,
//! `data: ` for EventSource, a `<script>` for htmlfile, a callback call for JSONP).
//!
//! Messages are encoded once, when they enter a session, into an [`EncodedMessage`]: the
//! JSON string literal with the characters browsers mangle escaped as `\uXXXX`. A message going to
//! many sessions is encoded once and its bytes shared; a message frame is then just those literals
//! joined by commas.

use bytes::{BufMut, Bytes, BytesMut};

/// The open frame.
pub const OPEN: &[u8] = b"o";
/// The heartbeat frame.
pub const HEARTBEAT: &[u8] = b"h";

/// One message as a ready-to-frame JSON string literal (quotes included), cheap to clone.
///
/// The literal is kept inside its own one-message frame, `a[literal]`: a session that has just
/// this message to send sends those shared bytes, without building a frame of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedMessage(Bytes);

/// What [`EncodedMessage`] keeps around its literal: `a[` before, `]` after.
const SINGLE_FRAME_OVERHEAD: usize = 3;

impl EncodedMessage {
    /// Encodes a message for SockJS framing.
    pub fn new(message: &str) -> Self {
        let mut out = BytesMut::with_capacity(message.len() + 2 + SINGLE_FRAME_OVERHEAD);
        out.put_slice(b"a[");
        quote_into(message, &mut out);
        out.put_u8(b']');
        EncodedMessage(out.freeze())
    }

    /// The encoded bytes: a JSON string literal.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0[2..self.0.len() - 1]
    }

    /// Length of the encoded literal in bytes.
    pub fn len(&self) -> usize {
        self.0.len() - SINGLE_FRAME_OVERHEAD
    }

    /// Whether the literal is empty (never true for a valid encoding).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame of this message alone, shared with every other session sending it.
    fn single_frame(&self) -> Bytes {
        self.0.clone()
    }
}

/// What a frame is, which decides how transports treat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Open,
    Heartbeat,
    Messages,
    Close,
}

/// A complete SockJS frame, ready to be wrapped by a transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub body: Bytes,
}

impl Frame {
    pub fn open() -> Self {
        Frame {
            kind: FrameKind::Open,
            body: Bytes::from_static(OPEN),
        }
    }

    pub fn heartbeat() -> Self {
        Frame {
            kind: FrameKind::Heartbeat,
            body: Bytes::from_static(HEARTBEAT),
        }
    }

    /// `a[m1,m2,...]` from already encoded messages.
    pub fn messages<'a, I>(messages: I) -> Self
    where
        I: IntoIterator<Item = &'a EncodedMessage>,
        I::IntoIter: Clone,
    {
        let iter = messages.into_iter();
        let mut count = iter.clone();
        if let (Some(only), None) = (count.next(), count.next()) {
            return Frame {
                kind: FrameKind::Messages,
                body: only.single_frame(),
            };
        }
        let size: usize = iter.clone().map(|m| m.len() + 1).sum::<usize>() + 2;
        let mut out = BytesMut::with_capacity(size);
        out.put_slice(b"a[");
        for (i, m) in iter.enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            out.put_slice(m.as_bytes());
        }
        out.put_u8(b']');
        Frame {
            kind: FrameKind::Messages,
            body: out.freeze(),
        }
    }

    /// `c[code,"reason"]`.
    pub fn close(code: u16, reason: &str) -> Self {
        let mut out = BytesMut::with_capacity(reason.len() + 12);
        out.put_slice(b"c[");
        out.put_slice(code.to_string().as_bytes());
        out.put_u8(b',');
        quote_into(reason, &mut out);
        out.put_u8(b']');
        Frame {
            kind: FrameKind::Close,
            body: out.freeze(),
        }
    }

    /// The frame text (frames are always ASCII-safe UTF-8).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}

/// Whether SockJS wants `c` sent as `\uXXXX`: characters that JSON requires escaped, and those
/// that browsers or proxies are known to mangle (control characters, invisible formatting
/// characters, line and paragraph separators, specials). Characters outside the BMP are always
/// escaped as surrogate pairs, so that UCS-2 clients see them unchanged.
fn needs_unicode_escape(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x1f
        | 0x7f..=0x9f
        | 0xad
        | 0x600..=0x604
        | 0x70f
        | 0x17b4..=0x17b5
        | 0x200c..=0x200f
        | 0x2028..=0x202f
        | 0x2060..=0x206f
        | 0xfeff
        | 0xfff0..=0xffff
        | 0x10000..)
}

/// Appends `s` as a JSON string literal with SockJS escaping.
pub fn quote_into(s: &str, out: &mut BytesMut) {
    out.reserve(s.len() + 2);
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    for (i, c) in s.char_indices() {
        let simple = match c {
            '"' => Some(&b"\\\""[..]),
            '\\' => Some(&b"\\\\"[..]),
            '\n' => Some(&b"\\n"[..]),
            '\r' => Some(&b"\\r"[..]),
            '\t' => Some(&b"\\t"[..]),
            _ => None,
        };
        if simple.is_none() && !needs_unicode_escape(c) {
            continue;
        }
        out.put_slice(&bytes[plain_from..i]);
        plain_from = i + c.len_utf8();
        match simple {
            Some(esc) => out.put_slice(esc),
            None => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    put_unicode_escape(*unit, out);
                }
            }
        }
    }
    out.put_slice(&bytes[plain_from..]);
    out.put_u8(b'"');
}

fn put_unicode_escape(unit: u16, out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.put_u8(HEX[usize::from((unit >> shift) & 0xf)]);
    }
}

/// A JSON string literal of `s` with SockJS escaping, as a `String`.
pub fn quote(s: &str) -> String {
    let mut out = BytesMut::new();
    quote_into(s, &mut out);
    // Only ASCII escapes were added to valid UTF-8 input.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// A JSON string literal of `s` that is also safe inside an HTML `<script>` element (htmlfile,
/// JSONP): `<`, `>` and `&` are escaped as well, so no message can close the script.
pub fn quote_script(s: &str) -> String {
    let quoted = quote(s);
    if !quoted.contains(['<', '>', '&']) {
        return quoted;
    }
    quoted
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Why a client payload could not be turned into messages.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("Payload expected.")]
    Empty,
    #[error("Broken JSON encoding.")]
    BrokenJson,
    /// An array holding something other than strings (SockJS messages are strings).
    #[error("Payload expected: an array of strings.")]
    NotStrings,
}

/// Which payloads a transport takes besides a JSON array of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadShape {
    /// Only an array (`xhr_send`, `jsonp_send`): anything else is "Payload expected.".
    Array,
    /// An array or a single JSON string (websocket frames).
    ArrayOrString,
}

/// Parses what a client sends: a JSON array of strings, or where `shape` allows, a single JSON
/// string. Not JSON: "Broken JSON encoding."; JSON of another shape: "Payload expected.".
pub fn parse_client_payload(
    payload: &[u8],
    shape: PayloadShape,
) -> Result<Vec<String>, PayloadError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    if let Ok(messages) = serde_json::from_slice::<Vec<String>>(payload) {
        return Ok(messages);
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::String(s)) if shape == PayloadShape::ArrayOrString => Ok(vec![s]),
        Ok(serde_json::Value::Array(_)) => Err(PayloadError::NotStrings),
        Ok(_) => Err(PayloadError::Empty),
        Err(_) => Err(PayloadError::BrokenJson),
    }
}

/// The messages of an `xhr_send` / `jsonp_send` body: a JSON array of strings, or for a
/// `form` body (`jsonp_send` posted as a form) the same in its first `d=` field.
pub fn parse_send_body(body: &[u8], form: bool) -> Result<Vec<String>, PayloadError> {
    if !form {
        return parse_client_payload(body, PayloadShape::Array);
    }
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    match fields.into_iter().find(|(k, _)| k == "d") {
        Some((_, d)) => parse_client_payload(d.as_bytes(), PayloadShape::Array),
        None => Err(PayloadError::Empty),
    }
}

/// Whether a JSONP/htmlfile callback name is safe to reflect: `^[a-zA-Z0-9_.]+$`.
pub fn valid_callback(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_heartbeat_and_close_frames() {
        assert_eq!(Frame::open().as_str(), "o");
        assert_eq!(Frame::heartbeat().as_str(), "h");
        assert_eq!(
            Frame::close(3000, "Go away!").as_str(),
            r#"c[3000,"Go away!"]"#
        );
    }

    #[test]
    fn message_frame_joins_encoded_messages() {
        let msgs = [EncodedMessage::new("a"), EncodedMessage::new("b\"c")];
        assert_eq!(Frame::messages(&msgs).as_str(), r#"a["a","b\"c"]"#);
        assert_eq!(Frame::messages(&[]).as_str(), "a[]");
    }

    #[test]
    fn control_and_mangled_characters_are_escaped() {
        assert_eq!(quote("  \u{0}\n\r "), r#""  \u0000\n\r ""#);
        assert_eq!(quote("\u{2028}\u{2029}"), r#""\u2028\u2029""#);
        assert_eq!(quote("\u{200c}\u{fff0}\u{ffff}"), r#""\u200c\ufff0\uffff""#);
        assert_eq!(quote("\u{7f}\u{ad}"), r#""\u007f\u00ad""#);
    }

    #[test]
    fn astral_characters_become_surrogate_pairs() {
        assert_eq!(quote("😀"), r#""\ud83d\ude00""#);
    }

    #[test]
    fn ordinary_unicode_passes_verbatim() {
        assert_eq!(quote("zażółć"), "\"zażółć\"");
    }

    #[test]
    fn every_escaped_string_round_trips() {
        let all: String = (0u32..0x11000)
            .filter_map(char::from_u32)
            .collect::<String>();
        let quoted = quote(&all);
        assert!(quoted.is_ascii() || quoted.chars().all(|c| !needs_unicode_escape(c)));
        let back: String = serde_json::from_str(&quoted).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn client_payloads() {
        use PayloadShape::{Array, ArrayOrString};
        for shape in [Array, ArrayOrString] {
            assert_eq!(
                parse_client_payload(br#"["a","b"]"#, shape),
                Ok(vec!["a".into(), "b".into()])
            );
            assert_eq!(parse_client_payload(b"", shape), Err(PayloadError::Empty));
            assert_eq!(parse_client_payload(b"  ", shape), Err(PayloadError::Empty));
            assert_eq!(
                parse_client_payload(br#"["a"#, shape),
                Err(PayloadError::BrokenJson)
            );
            assert_eq!(
                parse_client_payload(br#"[1]"#, shape),
                Err(PayloadError::NotStrings)
            );
            for other in [&br#"{}"#[..], b"1", b"null", b"true"] {
                assert_eq!(parse_client_payload(other, shape), Err(PayloadError::Empty));
            }
            assert_eq!(
                parse_client_payload(br#"["\u2028\ud83d\ude00"]"#, shape),
                Ok(vec!["\u{2028}😀".into()])
            );
        }
        assert_eq!(
            parse_client_payload(br#""a""#, ArrayOrString),
            Ok(vec!["a".into()])
        );
        // SockJS HTTP sends are arrays: a bare string is "Payload expected." (sockjs-node).
        assert_eq!(
            parse_client_payload(br#""a""#, Array),
            Err(PayloadError::Empty)
        );
        assert_eq!(parse_send_body(br#""a""#, false), Err(PayloadError::Empty));
        assert_eq!(
            parse_send_body(b"d=%22a%22", true),
            Err(PayloadError::Empty)
        );
    }

    #[test]
    fn script_quoting_cannot_close_the_script() {
        let q = quote_script("</script><b>&");
        assert!(!q.contains('<') && !q.contains('>') && !q.contains('&'));
        let back: String = serde_json::from_str(&q).unwrap();
        assert_eq!(back, "</script><b>&");
    }

    #[test]
    fn callback_names() {
        assert!(valid_callback("callback"));
        assert!(valid_callback("_jp.a1b2"));
        assert!(!valid_callback(""));
        assert!(!valid_callback("alert(1)"));
        assert!(!valid_callback("a b"));
        assert!(!valid_callback("a-b"));
    }
}
