//! The fuzz harnesses: one function per `cargo fuzz` target in `fuzz/fuzz_targets/`.
//!
//! Each harness feeds arbitrary bytes to one parser of untrusted input and then checks what must
//! hold for whatever the parser accepted (round trips, bounds, agreement between two ways of
//! saying the same thing). A broken invariant is a panic, which is what libFuzzer reports as a
//! crash; returning means the input was handled.
//!
//! The harnesses live in the library, not in `fuzz/`, so that the fuzz targets are one-liners and
//! `test/fuzz_corpus.rs` replays the committed corpus and every crash regression through exactly
//! the same code on each test run — no nightly toolchain needed for that.
//!
//! Inputs that are text on the wire (SockJS messages are strings) are decoded lossily rather than
//! skipped, so every input the fuzzer tries exercises the parser.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use serde_json::Value;
use tokio_util::codec::Decoder;

use crate::auth::token::{Expectations, TokenVerifier, VerifyingKey};
use crate::broker::local::wire::{self, Request, Response};
use crate::http_backend::parse_answer;
use crate::protocol::{
    envelope, parse_envelope, parse_hello, parse_refresh, BackendMessage, BackendMessageError,
    ClientError, ErrorCode, Hello, DIRECT_PREFIX,
};
use crate::resume::TokenKey;
use crate::router::Deliver;
use crate::sockjs::frames::{
    parse_client_payload, parse_send_body, quote_script, valid_callback, EncodedMessage, Frame,
    PayloadError, PayloadShape,
};
use crate::topics::{Pattern, Topic, TopicError};

/// The channel backend payloads are pretended to arrive on.
const CHANNEL: &str = "fuzz.channel";

/// A client's SockJS payload: an `xhr_send` (or raw `jsonp_send`) body, or a text message on the
/// framed SockJS websocket. Whatever parses must survive the way back to a client: encoded into
/// an `a[...]` frame (and script-quoted for JSONP/htmlfile), it decodes to the same messages.
pub fn sockjs_payload(data: &[u8]) {
    let parsed = parse_client_payload(data, PayloadShape::ArrayOrString);
    let sent = parse_send_body(data, false);
    match (&sent, &parsed) {
        // A bare string is a websocket message, never an xhr_send body.
        (Err(PayloadError::Empty), Ok(one)) => assert_eq!(one.len(), 1, "only a string differs"),
        _ => assert_eq!(sent, parsed, "xhr_send parses as websocket text"),
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        assert_eq!(parsed, Err(PayloadError::Empty));
    }
    if let Ok(messages) = parsed {
        check_message_frame(&messages);
    }
}

/// A `jsonp_send` form body (`d=<url-encoded JSON>`), and the same bytes as a JSONP callback
/// name. Accepted messages survive the frame round trip and a form encoding of them parses back
/// to themselves; an accepted callback name cannot break out of the `callback("frame");` call.
pub fn jsonp_send(data: &[u8]) {
    if let Ok(messages) = parse_send_body(data, true) {
        check_message_frame(&messages);
        let json = serde_json::to_string(&messages).expect("strings serialise");
        let form = serde_urlencoded::to_string([("d", json)]).expect("pairs serialise");
        assert_eq!(parse_send_body(form.as_bytes(), true), Ok(messages));
    }
    let callback = String::from_utf8_lossy(data);
    if valid_callback(&callback) {
        assert!(!callback.is_empty());
        assert!(
            !callback.contains(|c: char| "()<>&;\"'`/\\=+-{}[], \t\r\n".contains(c)),
            "callback {callback:?} accepted"
        );
    }
}

/// The handshake, in both modes (`compat.legacy_handshake` off and on). A legacy session id
/// must make a valid direct pattern (the session relies on it), a resume token goes on to
/// [`resume_token`]'s parser, and every refusal is a well-formed error envelope.
pub fn client_hello(data: &[u8]) {
    let message = String::from_utf8_lossy(data);
    let strict = parse_hello(&message, false).map(|h| h.hello);
    let legacy = parse_hello(&message, true).map(|h| h.hello);
    if let Ok(hello) = &strict {
        assert_eq!(
            &legacy, &strict,
            "legacy mode accepts every modern hello alike"
        );
        assert!(!matches!(hello, Hello::Legacy(_)));
    }
    for result in [strict, legacy] {
        match result {
            Ok(Hello::New) => {
                let value: Value = serde_json::from_str(&message).expect("a hello is JSON");
                assert_eq!(value["hello"], Value::from(1));
            }
            Ok(Hello::Resume { token, .. }) => {
                let _ = TokenKey::new("fuzzing secret").verify(&token);
            }
            Ok(Hello::Legacy(id)) => {
                assert_eq!(id, message.replacen('.', "", 1), "only the first dot goes");
                assert!(!id.is_empty() && id.len() <= crate::legacy::id::MAX_LEN);
                assert!(!id.contains('*'), "a wildcard id {id:?}");
                let direct = format!("{DIRECT_PREFIX}{id}");
                assert!(
                    Pattern::parse(&direct, usize::MAX).is_ok(),
                    "direct topic {direct:?}"
                );
            }
            Err(e) => {
                assert!(matches!(
                    e.code,
                    ErrorCode::HandshakeRequired | ErrorCode::InvalidMessage
                ));
                check_error_envelope(&e);
            }
        }
    }
}

/// A client envelope `{"topic", "data"}` after the handshake; the first byte picks
/// `limits.max_topic_len` (1..=256). An accepted topic is valid and within the bound, and the
/// envelope re-encoded the way the server encodes envelopes parses back to itself.
pub fn client_envelope(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(first) + 1;
    let message = String::from_utf8_lossy(rest);
    match parse_envelope(&message, max) {
        Ok(parsed) => {
            let topic = parsed.topic.as_str();
            assert!(!topic.is_empty() && topic.len() <= max);
            assert_eq!(Topic::parse(topic, max).as_ref(), Ok(&parsed.topic));
            let again = parse_envelope(&envelope(topic, &parsed.data), max)
                .expect("a re-encoded envelope parses");
            assert_eq!(again.topic, parsed.topic);
            assert!(same_json(&again.data, &parsed.data));
        }
        Err(e) => {
            assert!(matches!(
                e.code,
                ErrorCode::InvalidJson | ErrorCode::InvalidMessage | ErrorCode::InvalidTopic
            ));
            check_error_envelope(&e);
        }
    }
}

/// Topic names and whitelist patterns: the input is `first line \n second line`, the first byte
/// picking the length bound (1..=256). Both lines are checked as topics and as patterns (same
/// rules, text kept verbatim, bound respected, the Redis glob unescapes to the pattern), and the
/// first line, as a pattern, must match the second exactly as a naive reference matcher does.
pub fn topic_pattern(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(first) + 1;
    let text = String::from_utf8_lossy(rest);
    let (a, b) = text.split_once('\n').unwrap_or((&text, ""));
    for s in [a, b] {
        check_topic_and_pattern(s, max);
    }
    if let Ok(pattern) = Pattern::parse(a, usize::MAX) {
        let expected = reference_match(a, b);
        assert_eq!(pattern.matches(b), expected, "{a:?} against {b:?}");
        if pattern.is_exact() {
            assert_eq!(expected, a == b);
        }
    }
}

/// A message from the broker (Redis or the embedded one): parsed the way the topic router
/// parses it, then turned into the delivery every session shares. See
/// [`check_backend_message`] for what must hold.
pub fn backend_message(data: &[u8]) {
    match BackendMessage::parse(data) {
        Ok(message) => {
            let value: Value = serde_json::from_slice(data).expect("an accepted payload is JSON");
            assert_eq!(BackendMessage::from_value(value).as_ref(), Ok(&message));
            check_backend_message(message);
        }
        Err(BackendMessageError::NotJson) => {
            assert!(serde_json::from_slice::<Value>(data).is_err());
        }
        Err(BackendMessageError::NotObject) => {
            let value: Value = serde_json::from_slice(data).expect("reported as JSON");
            assert!(!value.is_object());
        }
        Err(BackendMessageError::Malformed(_)) => {
            let value: Value = serde_json::from_slice(data).expect("reported as JSON");
            assert!(value.is_object());
        }
    }
}

/// A 2xx answer body of an HTTP backend (`[[http_topics]]`): empty means no answer, a JSON
/// object is a backend message (checked as [`backend_message`] does), anything else is a
/// `backend_error` for the client.
pub fn http_answer(data: &[u8]) {
    match parse_answer(data, Some("application/json")) {
        Ok(None) => assert!(data.iter().all(u8::is_ascii_whitespace)),
        Ok(Some(map)) => {
            if let Ok(message) = BackendMessage::from_value(Value::Object(map)) {
                check_backend_message(message);
            }
        }
        Err(e) => assert_eq!(e.code(), "backend_error"),
    }
}

/// The embedded broker's wire: the input is one frame's content (header length, JSON header,
/// body) as both sides decode it, and also a byte stream cut into frames by the length codec.
/// Every decoded frame re-encodes to a frame that decodes to the same header and body.
pub fn broker_wire(data: &[u8]) {
    check_wire_frame(BytesMut::from(data));
    let mut codec = wire::codec();
    let mut stream = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut stream) {
        check_wire_frame(frame);
    }
}

/// Resume tokens: only the exact token the server issued verifies (no other spelling of the
/// same tag), a genuine token verifies to its session id, and a genuine token with one byte
/// changed (position and value from the input) verifies to nothing.
pub fn resume_token(data: &[u8]) {
    let key = TokenKey::new("fuzzing secret");
    let text = String::from_utf8_lossy(data);
    if let Some(id) = key.verify(&text) {
        assert_eq!(
            key.issue(&id),
            text,
            "a token that was never issued verifies"
        );
    }
    let genuine = key.issue(&text);
    let expected = (!text.is_empty()).then(|| text.to_string());
    assert_eq!(key.verify(&genuine), expected);

    let token = key.issue("0123456789abcdef0123456789abcdef");
    if let [position, byte, ..] = data {
        let mut bytes = token.clone().into_bytes();
        let at = usize::from(*position) % bytes.len();
        bytes[at] = *byte;
        let changed = String::from_utf8_lossy(&bytes);
        if changed != token {
            assert_eq!(key.verify(&changed), None, "{changed:?} verifies");
        }
    }
}

/// The HS256 secret of [`auth_token`].
const TOKEN_SECRET: &str = "the fuzzing secret of thirty-two bytes";

/// A token in a hello or a refresh, and the same bytes as the claims of a token signed with the
/// verifier's own secret. Nothing the fuzzer writes verifies by itself (it cannot sign); signed
/// claims verify only with a numeric `exp` still ahead, and then say what they hold.
pub fn auth_token(data: &[u8]) {
    static VERIFIER: OnceLock<TokenVerifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| {
        let key = VerifyingKey::hs256(TOKEN_SECRET).expect("a long enough secret");
        TokenVerifier::new(&[key], &Expectations::default()).expect("one key")
    });
    let text = String::from_utf8_lossy(data);
    assert!(
        verifier.verify(&text).is_err(),
        "{text:?} verifies unsigned"
    );
    if let Some(token) = parse_refresh(&text) {
        assert!(verifier.verify(&token).is_err());
    }
    let Ok(claims) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let key = jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()).expect("a secret");
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let Ok(token) = jsonwebtoken::encode(&header, &claims, &key) else {
        return;
    };
    let before = jsonwebtoken::get_current_timestamp();
    if let Ok(verified) = verifier.verify(&token) {
        let exp = claims["exp"]
            .as_f64()
            .expect("a verified token has a numeric exp");
        assert!(exp >= before as f64, "{claims}");
        assert_eq!(verified.valid_until, verified.expires, "no leeway here");
        assert_eq!(verified.subject.as_deref(), claims["sub"].as_str());
        let granted = &claims["rohrpost"]["add"];
        if let Some(patterns) = granted.as_array() {
            assert_eq!(verified.grant.add.len(), patterns.len());
        }
    }
}

/// What must hold for any message frame: the `a[...]` frame of `messages` is UTF-8 without raw
/// line breaks, decodes to the messages again (as the client does, and as a client payload),
/// and its script-quoted form (JSONP, htmlfile) cannot close a `<script>`.
fn check_message_frame(messages: &[String]) {
    let encoded: Vec<EncodedMessage> = messages.iter().map(|m| EncodedMessage::new(m)).collect();
    let frame = Frame::messages(&encoded);
    let text = frame.as_str();
    assert_eq!(text.as_bytes(), &frame.body[..], "frames are UTF-8");
    let array = text
        .strip_prefix('a')
        .expect("a message frame starts with `a`");
    assert!(!array.contains(['\n', '\r', '\u{2028}', '\u{2029}']));
    let back: Vec<String> = serde_json::from_str(array).expect("a frame holds a JSON array");
    assert_eq!(back, messages);
    assert_eq!(
        parse_client_payload(array.as_bytes(), PayloadShape::Array).as_deref(),
        Ok(messages)
    );
    let script = quote_script(text);
    assert!(!script.contains(['<', '>', '&']));
    let unquoted: String = serde_json::from_str(&script).expect("script quoting is JSON");
    assert_eq!(unquoted, text);
}

/// What must hold for any backend message: its delivery carries data exactly when the message
/// does, as an encoded envelope on the right topic with that data; added patterns the session
/// accepts are kept verbatim.
fn check_backend_message(message: BackendMessage) {
    for added in &message.add {
        if let Ok(pattern) = Pattern::parse(added, usize::MAX) {
            assert_eq!(pattern.as_str(), added);
        }
    }
    let delivery = Deliver::new(Arc::from(CHANNEL), message.clone(), None);
    assert_eq!(
        delivery.topic(),
        message.topic.as_deref().unwrap_or(CHANNEL)
    );
    assert_eq!(delivery.encoded.is_some(), message.data.is_some());
    let (Some(encoded), Some(data)) = (&delivery.encoded, &message.data) else {
        return;
    };
    let text: String =
        serde_json::from_slice(encoded.as_bytes()).expect("an encoded message is a JSON string");
    check_message_frame(std::slice::from_ref(&text));
    let sent: Value = serde_json::from_str(&text).expect("an envelope is JSON");
    assert_eq!(sent["topic"], Value::from(delivery.topic()));
    assert!(same_json(&sent["data"], data));
}

/// A decoded wire frame re-encodes to the same header and body.
fn check_wire_frame(frame: BytesMut) {
    if let Ok((request, body)) = wire::decode::<Request>(frame.clone()) {
        let again = wire::encode(&request, &body);
        let decoded = wire::decode::<Request>(BytesMut::from(&again[..]));
        let (request2, body2) = decoded.expect("an encoded request decodes");
        assert_eq!((request2, body2), (request, body));
    }
    if let Ok((response, body)) = wire::decode::<Response>(frame) {
        let again = wire::encode(&response, &body);
        let decoded = wire::decode::<Response>(BytesMut::from(&again[..]));
        let (response2, body2) = decoded.expect("an encoded response decodes");
        assert_eq!((response2, body2), (response, body));
    }
}

/// Topic and pattern rules for one string under bound `max`.
fn check_topic_and_pattern(s: &str, max: usize) {
    let topic = Topic::parse(s, max);
    let pattern = Pattern::parse(s, max);
    assert_eq!(
        topic.as_ref().err(),
        pattern.as_ref().err(),
        "same rules for {s:?}"
    );
    match &topic {
        Ok(t) => {
            assert_eq!(t.as_str(), s);
            assert_eq!(t.to_string(), s);
            assert!(!s.is_empty() && s.len() <= max);
            assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
            let exact = Pattern::exact(t);
            assert!(exact.matches(s));
            // Literal since issue 12: a `*` in it matches only itself.
            assert!(exact.is_exact());
        }
        Err(TopicError::Empty) => assert!(s.is_empty()),
        Err(TopicError::TooLong { len, max: m }) => assert!(*len == s.len() && *len > *m),
        Err(TopicError::BadCharacter { found }) => assert!(s.contains(*found)),
    }
    if let Ok(p) = &pattern {
        assert_eq!(p.to_string(), s);
        assert!(p.matches(s), "a pattern matches its own text");
        assert_eq!(unescape_redis_glob(&p.redis_glob()), s);
    }
}

/// Undoes [`Pattern::redis_glob`], checking that every Redis special but `*` is escaped.
fn unescape_redis_glob(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        assert!(!matches!(c, '?' | '[' | ']'), "unescaped {c:?} in {glob:?}");
        if c == '\\' {
            let escaped = chars.next().expect("a backslash escapes something");
            assert!(matches!(escaped, '?' | '[' | ']' | '\\'));
            out.push(escaped);
        } else {
            out.push(c);
        }
    }
    out
}

/// `*`-only wildcard matching written the obvious way: the text must start with the part before
/// the first star, end with the part after the last, and hold the parts between in order.
fn reference_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (Some(head), Some(tail)) = (parts.first(), parts.last()) else {
        return false;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    if text.len() < head.len() + tail.len() || !text.starts_with(head) || !text.ends_with(tail) {
        return false;
    }
    let mut rest = &text[head.len()..text.len() - tail.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Every error report is a JSON envelope on the error topic carrying its code.
fn check_error_envelope(error: &ClientError) {
    let value: Value =
        serde_json::from_str(&error.to_envelope()).expect("error envelopes are JSON");
    assert_eq!(value["data"]["code"], Value::from(error.code.as_str()));
}

/// JSON equality, except that floats need only agree to about 15 digits: serde_json's default
/// float parsing is not exactly round-trip (no `float_roundtrip` feature), so a float printed and
/// read back may come back one unit in the last place off.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
