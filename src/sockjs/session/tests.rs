//! The session state machine, driven through its messages with time paused: receivers,
//! coalescing, heartbeats, timeouts and close codes.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;

use super::*;
use crate::sockjs::receiver::{self, FrameStream};

/// Records what the session told its handler; echoes messages; closes on "close".
struct Recorder {
    events: Rc<RefCell<Vec<String>>>,
}

impl SessionHandler for Recorder {
    fn on_open(&mut self, _session: &mut SessionCtx<'_, Self>) {
        self.events.borrow_mut().push("open".into());
    }

    fn on_message(&mut self, message: String, session: &mut SessionCtx<'_, Self>) {
        self.events.borrow_mut().push(format!("message:{message}"));
        if message == "close" {
            session.close(3000, "Go away!");
        } else {
            session.send(&message);
        }
    }

    fn on_close(&mut self, cause: CloseCause) {
        self.events.borrow_mut().push(format!("close:{cause:?}"));
    }
}

fn options() -> Arc<SockjsOptions> {
    Arc::new(SockjsOptions {
        heartbeat: Duration::from_secs(25),
        disconnect_delay: Duration::from_secs(5),
        outbound_queue: 64,
        ..SockjsOptions::default()
    })
}

struct Harness {
    addr: Addr<Session<Recorder>>,
    events: Rc<RefCell<Vec<String>>>,
}

fn start(kind: ReceiverKind, lifetime: Lifetime) -> (Harness, FrameStream) {
    let events = Rc::new(RefCell::new(Vec::new()));
    let (first, mut frames) = receiver::channel(kind);
    let addr = Session::start(
        Arc::from("s1"),
        options(),
        lifetime,
        first,
        Recorder {
            events: events.clone(),
        },
        None,
    );
    frames.set_session(addr.clone().recipient());
    (Harness { addr, events }, frames)
}

impl Harness {
    fn attach(&self, kind: ReceiverKind) -> FrameStream {
        let (receiver, mut frames) = receiver::channel(kind);
        frames.set_session(self.addr.clone().recipient());
        self.addr.do_send(Attach(receiver));
        frames
    }

    fn send(&self, messages: &[&str]) {
        self.addr.do_send(ClientMessages(
            messages.iter().map(|m| m.to_string()).collect(),
        ));
    }

    fn events(&self) -> Vec<String> {
        self.events.borrow().clone()
    }
}

/// Lets the actors process their mailboxes.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

async fn next(frames: &mut FrameStream) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(60), frames.next())
        .await
        .ok()
        .flatten()
        .map(|f| f.as_str().to_string())
}

#[actix_rt::test]
async fn new_session_sends_open_frame_and_opens_handler() {
    let (h, mut frames) = start(ReceiverKind::Streaming, Lifetime::Detachable);
    assert_eq!(next(&mut frames).await.as_deref(), Some("o"));
    settle().await;
    assert_eq!(h.events(), vec!["open"]);
}

#[actix_rt::test]
async fn polling_receiver_gets_one_frame_then_is_let_go() {
    let (h, mut first) = start(ReceiverKind::Polling, Lifetime::Detachable);
    assert_eq!(next(&mut first).await.as_deref(), Some("o"));
    assert_eq!(next(&mut first).await, None, "poll ends after one frame");
    let mut second = h.attach(ReceiverKind::Polling);
    h.send(&["a"]);
    assert_eq!(next(&mut second).await.as_deref(), Some(r#"a["a"]"#));
}

#[actix_rt::test]
async fn messages_queued_without_receiver_coalesce_into_one_frame() {
    let (h, mut first) = start(ReceiverKind::Polling, Lifetime::Detachable);
    assert_eq!(next(&mut first).await.as_deref(), Some("o"));
    h.send(&["a", "b", "c"]);
    settle().await;
    let mut poll = h.attach(ReceiverKind::Polling);
    assert_eq!(next(&mut poll).await.as_deref(), Some(r#"a["a","b","c"]"#));
}

#[actix_rt::test]
async fn second_receiver_gets_another_connection_still_open() {
    let (h, mut first) = start(ReceiverKind::Streaming, Lifetime::Detachable);
    assert_eq!(next(&mut first).await.as_deref(), Some("o"));
    let mut second = h.attach(ReceiverKind::Streaming);
    assert_eq!(
        next(&mut second).await.as_deref(),
        Some(r#"c[2010,"Another connection still open"]"#)
    );
    // The first receiver is still the session's.
    h.send(&["x"]);
    assert_eq!(next(&mut first).await.as_deref(), Some(r#"a["x"]"#));
}

#[actix_rt::test]
async fn heartbeat_is_sent_every_interval() {
    tokio::time::pause();
    let (_h, mut frames) = start(ReceiverKind::Streaming, Lifetime::Detachable);
    assert_eq!(next(&mut frames).await.as_deref(), Some("o"));
    tokio::time::advance(Duration::from_secs(26)).await;
    assert_eq!(next(&mut frames).await.as_deref(), Some("h"));
    tokio::time::advance(Duration::from_secs(25)).await;
    assert_eq!(next(&mut frames).await.as_deref(), Some("h"));
}

#[actix_rt::test]
async fn session_without_receiver_times_out_after_disconnect_delay() {
    tokio::time::pause();
    let (h, mut first) = start(ReceiverKind::Polling, Lifetime::Detachable);
    assert_eq!(next(&mut first).await.as_deref(), Some("o"));
    tokio::time::advance(Duration::from_secs(4)).await;
    settle().await;
    assert!(h.addr.connected(), "alive before the delay");
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    assert!(!h.addr.connected(), "gone after the delay");
    assert_eq!(h.events(), vec!["open", "close:TimedOut"]);
}

#[actix_rt::test]
async fn attached_receiver_keeps_session_alive() {
    tokio::time::pause();
    let (h, mut frames) = start(ReceiverKind::Streaming, Lifetime::Detachable);
    assert_eq!(next(&mut frames).await.as_deref(), Some("o"));
    tokio::time::advance(Duration::from_secs(60)).await;
    settle().await;
    assert!(h.addr.connected());
}

#[actix_rt::test]
async fn closed_session_serves_close_frame_until_it_expires() {
    tokio::time::pause();
    let (h, mut first) = start(ReceiverKind::Streaming, Lifetime::Detachable);
    assert_eq!(next(&mut first).await.as_deref(), Some("o"));
    h.send(&["close"]);
    assert_eq!(
        next(&mut first).await.as_deref(),
        Some(r#"c[3000,"Go away!"]"#)
    );
    for _ in 0..2 {
        let mut again = h.attach(ReceiverKind::Polling);
        assert_eq!(
            next(&mut again).await.as_deref(),
            Some(r#"c[3000,"Go away!"]"#)
        );
    }
    tokio::time::advance(Duration::from_secs(6)).await;
    settle().await;
    assert!(!h.addr.connected());
    assert_eq!(h.events(), vec!["open", "message:close", "close:Closed"]);
}

#[actix_rt::test]
async fn interrupted_receiver_closes_session_with_1002() {
    let (h, mut first) = start(ReceiverKind::Streaming, Lifetime::Detachable);
    assert_eq!(next(&mut first).await.as_deref(), Some("o"));
    drop(first); // the client hung up mid-response
    settle().await;
    let mut again = h.attach(ReceiverKind::Polling);
    assert_eq!(
        next(&mut again).await.as_deref(),
        Some(r#"c[1002,"Connection interrupted"]"#)
    );
    assert_eq!(h.events(), vec!["open", "close:Interrupted"]);
}

#[actix_rt::test]
async fn finished_receiver_leaves_session_open() {
    let (h, mut first) = start(ReceiverKind::Streaming, Lifetime::Detachable);
    assert_eq!(next(&mut first).await.as_deref(), Some("o"));
    first.finish(); // response limit reached
    drop(first);
    settle().await;
    h.send(&["later"]);
    settle().await;
    let mut again = h.attach(ReceiverKind::Polling);
    assert_eq!(next(&mut again).await.as_deref(), Some(r#"a["later"]"#));
}

#[actix_rt::test]
async fn overflowing_outbound_queue_closes_with_1013() {
    let (h, mut first) = start(ReceiverKind::Polling, Lifetime::Detachable);
    assert_eq!(next(&mut first).await.as_deref(), Some("o"));
    let too_many: Vec<String> = (0..65).map(|i| i.to_string()).collect();
    h.addr.do_send(ClientMessages(too_many));
    settle().await;
    let mut poll = h.attach(ReceiverKind::Polling);
    assert_eq!(
        next(&mut poll).await.as_deref(),
        Some(r#"c[1013,"Outbound queue full"]"#)
    );
    assert!(h.events().contains(&"close:QueueFull".to_string()));
}

#[actix_rt::test]
async fn slow_streaming_receiver_gets_coalesced_frames() {
    let (h, mut frames) = start(ReceiverKind::Streaming, Lifetime::Detachable);
    // Do not read: the channel (16 frames) fills, the rest waits in the session queue
    // (below its bound of 64) and goes out coalesced once the client reads again.
    let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    for m in &many {
        h.send(&[m]);
        settle().await;
    }
    let mut seen = Vec::new();
    assert_eq!(next(&mut frames).await.as_deref(), Some("o"));
    while seen.len() < many.len() {
        let frame = next(&mut frames).await.expect("frame");
        let inner: Vec<String> = serde_json::from_str(&frame[1..]).unwrap();
        seen.extend(inner);
    }
    assert_eq!(seen, many, "every message, in order");
}

#[actix_rt::test]
async fn websocket_session_ends_with_its_connection() {
    let (h, mut frames) = start(ReceiverKind::Streaming, Lifetime::Connection);
    assert_eq!(next(&mut frames).await.as_deref(), Some("o"));
    drop(frames);
    settle().await;
    assert!(!h.addr.connected());
    assert_eq!(h.events(), vec!["open", "close:Interrupted"]);
}
