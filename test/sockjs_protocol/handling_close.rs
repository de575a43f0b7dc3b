//! How sessions end (`HandlingClose`): a close frame unlinks the receiving request, a second
//! receiver is turned away with 2010, and a receiver that vanishes mid-request interrupts the
//! session (the next request gets a new session or `c[1002,"Connection interrupted"]`).

use std::time::{Duration, Instant};

use awc::http::Method;

use crate::common::{BodyStream, RawConnection, TestServer, WAIT};
use crate::steps::{expect_xhr_poll, hold_xhr_poll, session_url, xhr_open, xhr_poll};

const PRELUDE_LEN: usize = 2049;
const ANOTHER_CONNECTION: &str = "c[2010,\"Another connection still open\"]\n";
const INTERRUPTED: &str = "c[1002,\"Connection interrupted\"]\n";

/// Opens xhr_streaming at `url` and reads its prelude of `h`s, stopping before the first frame.
async fn open_streaming(server: &TestServer, url: &str) -> BodyStream<awc::ClientResponse> {
    let path = format!("{url}/xhr_streaming");
    let (head, mut body) = server.open_stream(Method::POST, &path, &[]).await;
    assert_eq!(head.status, 200, "POST {path}");
    let prelude = body.read_exact(PRELUDE_LEN).await;
    assert!(is_prelude(&prelude), "not a prelude: {prelude:?}");
    body
}

/// 2048 `h` and a new line.
fn is_prelude(bytes: &[u8]) -> bool {
    bytes.len() == PRELUDE_LEN
        && bytes[..PRELUDE_LEN - 1].iter().all(|&b| b == b'h')
        && bytes[PRELUDE_LEN - 1] == b'\n'
}

/// Opens xhr_streaming at `url` over a raw socket, which the test can cut at will, and reads
/// the prelude and the open frame.
fn open_raw_streaming(server: &TestServer, url: &str) -> RawConnection {
    let mut conn = RawConnection::connect(server.port());
    conn.send_request("POST", &format!("{url}/xhr_streaming"), "1.1", &[], "");
    assert_eq!(conn.read_head().status, 200);
    let start = conn.read_chunked_payload(PRELUDE_LEN + 2);
    assert!(is_prelude(&start[..PRELUDE_LEN]));
    assert_eq!(&start[PRELUDE_LEN..], b"o\n");
    conn
}

/// Repeats `attempt` while it answers 2010: the server learns about a dropped connection
/// asynchronously. Returns the first other answer, bounded by [`WAIT`].
async fn first_answer_after_abort<F, Fut>(mut attempt: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = attempt().await;
        if answer != ANOTHER_CONNECTION || Instant::now() > deadline {
            return answer;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn close_frame_unlinks_the_streaming_request() {
    let server = TestServer::sockjs().await;
    let url = session_url("/close");
    let mut first = open_streaming(&server, &url).await;
    first.expect("o\n").await;
    first.expect("c[3000,\"Go away!\"]\n").await;

    // A new request gets the application's close frame, not "another connection".
    let mut second = open_streaming(&server, &url).await;
    second.expect("c[3000,\"Go away!\"]\n").await;

    first.expect_end().await;
    second.expect_end().await;
}

#[actix_rt::test]
async fn second_streaming_request_gets_2010_and_is_ended() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let mut first = open_streaming(&server, &url).await;
    first.expect("o\n").await;

    let mut second = open_streaming(&server, &url).await;
    second.expect(ANOTHER_CONNECTION).await;
    second.expect_end().await;
}

#[actix_rt::test]
async fn aborted_xhr_streaming_request_interrupts_the_session() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    let receiver = open_raw_streaming(&server, &url);

    let mut refused = open_streaming(&server, &url).await;
    refused.expect(ANOTHER_CONNECTION).await;
    refused.expect_end().await;

    drop(receiver);
    let (server, url) = (&server, url.as_str());
    let answer = first_answer_after_abort(move || async move {
        let mut next = open_streaming(server, url).await;
        let frame = next.read_before("\n").await;
        format!("{}\n", String::from_utf8_lossy(&frame))
    })
    .await;
    assert!(
        answer == "o\n" || answer == INTERRUPTED,
        "after an aborted receiver got {answer:?}"
    );
}

#[actix_rt::test]
async fn aborted_xhr_polling_request_interrupts_the_session() {
    let server = TestServer::sockjs().await;
    let url = session_url("/echo");
    xhr_open(&server, &url).await;
    let receiver = hold_xhr_poll(&server, &url).await;
    expect_xhr_poll(&server, &url, ANOTHER_CONNECTION).await;

    drop(receiver);
    let (server, url) = (&server, url.as_str());
    let answer =
        first_answer_after_abort(
            move || async move { xhr_poll(server, url).await.text().to_owned() },
        )
        .await;
    assert!(
        answer == "o\n" || answer == INTERRUPTED,
        "after an aborted receiver got {answer:?}"
    );
}
