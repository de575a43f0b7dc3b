//! The streaming transports: xhr-streaming, EventSource and htmlfile (`XhrStreaming`,
//! `EventSource`, `HtmlFile`). The test server ends a streaming response once 4096 bytes of
//! frames went out, so that browsers can free what they buffered.

use awc::http::Method;

use crate::checks::{
    assert_callback_rejected, assert_callback_required, assert_content_type, assert_cors,
    assert_no_cors, assert_nosniff, assert_not_cached, assert_options_preflight, UNSAFE_CALLBACKS,
};
use crate::common::{BodyStream, Reply, TestServer};
use crate::steps::{session_url, xhr_send};

/// The htmlfile page before the first frame, with `callback` as the parent's callback name.
fn htmlfile_head(callback: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {{c.message(d);}};
    window.onload = function() {{c.stop();}};
  </script>"#
    )
}

type Body = BodyStream<awc::ClientResponse>;

/// Starts xhr_streaming on the session at `url` and reads up to and including the open frame.
/// The 2 KiB of `h` before it make browsers start delivering.
async fn start_xhr_streaming(server: &TestServer, url: &str) -> (Reply, Body) {
    let path = format!("{url}/xhr_streaming");
    let (head, mut body) = server.open_stream(Method::POST, &path, &[]).await;
    assert_eq!(head.status, 200, "POST {path}");
    body.expect(&format!("{}\n", "h".repeat(2048))).await;
    body.expect("o\n").await;
    (head, body)
}

/// Starts an EventSource on the session at `url` and reads up to and including the open
/// frame. The leading new line works around an old Opera bug.
async fn start_eventsource(server: &TestServer, url: &str) -> (Reply, Body) {
    start_eventsource_from(server, url, &[]).await
}

/// [`start_eventsource`] with request headers.
async fn start_eventsource_from(
    server: &TestServer,
    url: &str,
    headers: &[(&str, &str)],
) -> (Reply, Body) {
    let path = format!("{url}/eventsource");
    let (head, mut body) = server.open_stream(Method::GET, &path, headers).await;
    assert_eq!(head.status, 200, "GET {path}");
    body.expect("\r\n").await;
    body.expect("data: o\r\n\r\n").await;
    (head, body)
}

/// Starts htmlfile with callback `callback` (sent url-encoded) on the session at `url`, checks the page before
/// the first frame (padded past 1 KiB so that browsers render early), and reads the open frame.
async fn start_htmlfile(server: &TestServer, url: &str) -> (Reply, Body) {
    let path = format!("{url}/htmlfile?c=%63allback");
    let origin = [("Origin", "http://example.com")];
    let (head, mut body) = server.open_stream(Method::GET, &path, &origin).await;
    assert_eq!(head.status, 200, "GET {path}");
    let prelude = body.read_before("<script>\np(").await;
    assert!(prelude.len() > 1024, "prelude of {} bytes", prelude.len());
    let prelude = String::from_utf8(prelude).expect("UTF-8 prelude");
    assert_eq!(prelude.trim(), htmlfile_head("callback"));
    body.expect("<script>\np(\"o\");\n</script>\r\n").await;
    (head, body)
}

#[actix_rt::test]
async fn xhr_streaming_answers_options_preflight() {
    let server = TestServer::sockjs().await;
    assert_options_preflight(&server, "/echo/abc/abc/xhr_streaming", "OPTIONS, POST").await;
}

#[actix_rt::test]
async fn xhr_streaming_sends_prelude_open_frame_and_messages() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let (head, mut body) = start_xhr_streaming(&server, &url).await;
    assert_content_type(&head, "application/javascript;charset=UTF-8");
    assert_cors(&head, None);
    assert_not_cached(&head);

    xhr_send(&server, &url, r#"["x"]"#).await;
    body.expect("a[\"x\"]\n").await;
}

#[actix_rt::test]
async fn xhr_streaming_response_ends_after_4096_bytes() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let (_head, mut body) = start_xhr_streaming(&server, &url).await;

    // 31 frames of 134 bytes: the 31st crosses 4096 bytes, the 30th does not.
    let message = format!("\"{}\"", "x".repeat(128));
    for _ in 0..31 {
        xhr_send(&server, &url, &format!("[{message}]")).await;
        body.expect(&format!("a[{message}]\n")).await;
    }
    body.expect_end().await;
}

#[actix_rt::test]
async fn eventsource_sends_prelude_open_frame_and_messages() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let (head, mut body) = start_eventsource(&server, &url).await;
    // As sockjs-node: no charset (the format is UTF-8 by definition).
    assert_content_type(&head, "text/event-stream");
    assert_not_cached(&head);
    assert_cors(&head, None);

    xhr_send(&server, &url, r#"["x"]"#).await;
    body.expect("data: a[\"x\"]\r\n\r\n").await;
}

/// An `EventSource` sends no credentials: `null` gets `*`, a real origin is echoed (as
/// sockjs-node's eventsource).
#[actix_rt::test]
async fn eventsource_cors_echoes_real_origins_and_gives_null_any() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let (head, _body) = start_eventsource_from(&server, &url, &[("Origin", "null")]).await;
    assert_eq!(head.header("access-control-allow-origin"), Some("*"));
    assert_eq!(head.header("access-control-allow-credentials"), None);
    assert_eq!(head.header("vary"), Some("Origin"));
    let url = session_url("/echo");
    let origin = [("Origin", "http://example.com")];
    let (head, _body) = start_eventsource_from(&server, &url, &origin).await;
    assert_cors(&head, Some("http://example.com"));
}

#[actix_rt::test]
async fn eventsource_frames_keep_control_characters_json_escaped() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let (_head, mut body) = start_eventsource(&server, &url).await;

    // A raw new line would end the event early; it must stay escaped inside the JSON.
    xhr_send(&server, &url, r#"["  \u0000\n\r "]"#).await;
    body.expect("data: a[\"  \\u0000\\n\\r \"]\r\n\r\n").await;
}

#[actix_rt::test]
async fn eventsource_response_ends_after_4096_bytes() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let (_head, mut body) = start_eventsource(&server, &url).await;

    let message = format!("\"{}\"", "x".repeat(4096));
    xhr_send(&server, &url, &format!("[{message}]")).await;
    body.expect(&format!("data: a[{message}]\r\n\r\n")).await;
    body.expect_end().await;
}

#[actix_rt::test]
async fn htmlfile_sends_padded_prelude_then_script_frames() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let (head, mut body) = start_htmlfile(&server, &url).await;
    assert_content_type(&head, "text/html;charset=UTF-8");
    assert_not_cached(&head);
    // A frame needs no CORS; nosniff keeps it from being taken for anything but html.
    assert_no_cors(&head);
    assert_nosniff(&head);

    xhr_send(&server, &url, r#"["x"]"#).await;
    body.expect("<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n")
        .await;
}

#[actix_rt::test]
async fn htmlfile_without_callback_is_500_callback_parameter_required() {
    let server = TestServer::sockjs().await;
    assert_callback_required(&server, "/echo/a/a/htmlfile").await;
}

#[actix_rt::test]
async fn htmlfile_refuses_callback_names_outside_letters_digits_dot_underscore() {
    let server = TestServer::sockjs().await;
    for (raw, encoded) in UNSAFE_CALLBACKS {
        let path = format!("{}/htmlfile?c={encoded}", session_url("/echo"));
        assert_callback_rejected(&server, &path, raw).await;
    }
}

#[actix_rt::test]
async fn htmlfile_response_ends_after_4096_bytes() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let (_head, mut body) = start_htmlfile(&server, &url).await;

    let message = "x".repeat(4096);
    xhr_send(&server, &url, &format!("[\"{message}\"]")).await;
    body.expect(&format!(
        "<script>\np(\"a[\\\"{message}\\\"]\");\n</script>\r\n"
    ))
    .await;
    body.expect_end().await;
}
