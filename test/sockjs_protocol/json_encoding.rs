//! Unicode through the JSON framing (`JSONEncoding`): the server escapes characters that
//! browsers or proxies mangle, and decodes whatever the client escaped.

use crate::common::TestServer;
use crate::steps::{session_url, xhr_open, xhr_poll, xhr_send};

/// Characters above U+00FF the server must send as `\uXXXX`: invisible joiners and marks,
/// line and paragraph separators, and the specials block.
const ESCAPED_BY_SERVER: &[(u32, u32)] = &[
    (0x200c, 0x200f),
    (0x2028, 0x202f),
    (0x2060, 0x206f),
    (0xfff0, 0xffff),
];

/// Characters the SockJS client escapes before sending, because browsers alter them on the way
/// out: quotes and backslash, controls, and a long list of combining and compatibility marks.
const ESCAPED_BY_CLIENT: &[(u32, u32)] = &[
    (0x0000, 0x001f),
    (0x0022, 0x0022),
    (0x005c, 0x005c),
    (0x007f, 0x009f),
    (0x00ad, 0x00ad),
    (0x0300, 0x0333),
    (0x033d, 0x0346),
    (0x034a, 0x034c),
    (0x0350, 0x0352),
    (0x0357, 0x0358),
    (0x035c, 0x0362),
    (0x0374, 0x0374),
    (0x037e, 0x037e),
    (0x0387, 0x0387),
    (0x0591, 0x05af),
    (0x05c4, 0x05c4),
    (0x0600, 0x0604),
    (0x0610, 0x0617),
    (0x0653, 0x0654),
    (0x0657, 0x065b),
    (0x065d, 0x065e),
    (0x06df, 0x06e2),
    (0x06eb, 0x06ec),
    (0x070f, 0x070f),
    (0x0730, 0x0730),
    (0x0732, 0x0733),
    (0x0735, 0x0736),
    (0x073a, 0x073a),
    (0x073d, 0x073d),
    (0x073f, 0x0741),
    (0x0743, 0x0743),
    (0x0745, 0x0745),
    (0x0747, 0x0747),
    (0x07eb, 0x07f1),
    (0x0951, 0x0951),
    (0x0958, 0x095f),
    (0x09dc, 0x09dd),
    (0x09df, 0x09df),
    (0x0a33, 0x0a33),
    (0x0a36, 0x0a36),
    (0x0a59, 0x0a5b),
    (0x0a5e, 0x0a5e),
    (0x0b5c, 0x0b5d),
    (0x0e38, 0x0e39),
    (0x0f43, 0x0f43),
    (0x0f4d, 0x0f4d),
    (0x0f52, 0x0f52),
    (0x0f57, 0x0f57),
    (0x0f5c, 0x0f5c),
    (0x0f69, 0x0f69),
    (0x0f72, 0x0f76),
    (0x0f78, 0x0f78),
    (0x0f80, 0x0f83),
    (0x0f93, 0x0f93),
    (0x0f9d, 0x0f9d),
    (0x0fa2, 0x0fa2),
    (0x0fa7, 0x0fa7),
    (0x0fac, 0x0fac),
    (0x0fb9, 0x0fb9),
    (0x17b4, 0x17b5),
    (0x1939, 0x193a),
    (0x1a17, 0x1a17),
    (0x1b6b, 0x1b6b),
    (0x1cda, 0x1cdb),
    (0x1dc0, 0x1dcf),
    (0x1dfc, 0x1dfc),
    (0x1dfe, 0x1dfe),
    (0x1f71, 0x1f71),
    (0x1f73, 0x1f73),
    (0x1f75, 0x1f75),
    (0x1f77, 0x1f77),
    (0x1f79, 0x1f79),
    (0x1f7b, 0x1f7b),
    (0x1f7d, 0x1f7d),
    (0x1fbb, 0x1fbb),
    (0x1fbe, 0x1fbe),
    (0x1fc9, 0x1fc9),
    (0x1fcb, 0x1fcb),
    (0x1fd3, 0x1fd3),
    (0x1fdb, 0x1fdb),
    (0x1fe3, 0x1fe3),
    (0x1feb, 0x1feb),
    (0x1fee, 0x1fef),
    (0x1ff9, 0x1ff9),
    (0x1ffb, 0x1ffb),
    (0x1ffd, 0x1ffd),
    (0x2000, 0x20ff),
    (0x2126, 0x2126),
    (0x212a, 0x212b),
    (0x2329, 0x232a),
    (0x2adc, 0x2adc),
    (0x302b, 0x302c),
    (0xaab2, 0xaab3),
    (0xf900, 0xfa0d),
    (0xfa10, 0xfa10),
    (0xfa12, 0xfa12),
    (0xfa15, 0xfa1e),
    (0xfa20, 0xfa20),
    (0xfa22, 0xfa22),
    (0xfa25, 0xfa26),
    (0xfa2a, 0xfa2d),
    (0xfa30, 0xfa6d),
    (0xfa70, 0xfad9),
    (0xfb1d, 0xfb1d),
    (0xfb1f, 0xfb1f),
    (0xfb2a, 0xfb36),
    (0xfb38, 0xfb3c),
    (0xfb3e, 0xfb3e),
    (0xfb40, 0xfb41),
    (0xfb43, 0xfb44),
    (0xfb46, 0xfb4e),
    (0xfeff, 0xfeff),
    (0xfff0, 0xffff),
];

/// Every character of the Basic Multilingual Plane inside `ranges`, in order.
fn chars_in(ranges: &[(u32, u32)]) -> String {
    (0..=0xffff)
        .filter(|c| ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(c)))
        .filter_map(char::from_u32)
        .collect()
}

/// `text` as JSON string content with every character written `\uXXXX` (lowercase hex).
fn all_escaped(text: &str) -> String {
    text.chars()
        .map(|c| format!("\\u{:04x}", u32::from(c)))
        .collect()
}

/// Sends `payload` to a fresh echo session with xhr_send and returns the JSON text between
/// `a[` and `]` of the frame that comes back.
async fn echo_through_xhr(server: &TestServer, payload: &str) -> String {
    let url = session_url("/echo");
    xhr_open(server, &url).await;
    xhr_send(server, &url, payload).await;
    let r = xhr_poll(server, &url).await;
    assert_eq!(r.status, 200);
    r.text()
        .strip_prefix("a[")
        .and_then(|rest| rest.strip_suffix("]\n"))
        .unwrap_or_else(|| panic!("not an array frame: {:?}", r.text()))
        .to_owned()
}

fn decode(json_string: &str) -> String {
    serde_json::from_str(json_string)
        .unwrap_or_else(|e| panic!("{json_string:?} is not a JSON string: {e}"))
}

#[actix_rt::test]
async fn server_escapes_invisible_and_separator_characters_in_frames() {
    let server = TestServer::sockjs().await;
    let chars = chars_in(ESCAPED_BY_SERVER);
    let received = echo_through_xhr(&server, &format!("[\"{chars}\"]")).await;
    assert_eq!(received, format!("\"{}\"", all_escaped(&chars)));
}

#[actix_rt::test]
async fn server_never_sends_raw_control_characters_in_frames() {
    let server = TestServer::sockjs().await;
    let controls = chars_in(&[(0x00, 0x1f)]);
    let received = echo_through_xhr(&server, &format!("[\"{}\"]", all_escaped(&controls))).await;
    assert!(
        received.bytes().all(|b| b >= 0x20),
        "raw control character in {received:?}"
    );
    assert_eq!(decode(&received), controls);
}

#[actix_rt::test]
async fn server_decodes_characters_escaped_by_the_client() {
    let server = TestServer::sockjs().await;
    let chars = chars_in(ESCAPED_BY_CLIENT);
    let received = echo_through_xhr(&server, &format!("[\"{}\"]", all_escaped(&chars))).await;
    assert_eq!(decode(&received), chars);
}
