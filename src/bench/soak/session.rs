//! One soak session: a task that keeps one client connected for the whole run, the way the
//! browser library does. When the server closes it (a staged restart's `c[1012,…]`), it fetches
//! `/connect` again and resumes with its token; on the controller's [`Order`]s it leaves (and
//! comes back as a new session), reconnects resuming, or sends a round trip on the HTTP topic.
//! Everything it sees is counted into the run's [`Totals`].
//!
//! Fan-out loss is counted per logical client, across its resumes: the publisher numbers its
//! messages, and a session must receive every number whose publishing started after its first
//! welcome, each once and in order, up to the last one published when the run stops. A resume
//! carries the last position the client saw (`since`); when the welcome says `recovered: true`
//! the new connection owes every number after the last one received, when it says `false` (or a
//! `rohrpost.pos` notice says `recovered: false`) the client was told, and the numbers it then
//! misses are counted as reported, not lost.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use awc::error::WsProtocolError;
use awc::ws::{Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::bench::client::{self, Welcome};
use crate::bench::now_us;

/// Failed connection attempts in a row after which a session gives up (about 5 minutes).
const MAX_FAILURES: u32 = 60;
/// Resume failures and unexpected closes logged in detail (the rest are only counted).
const LOGGED: u64 = 5;

/// What the controller tells a session to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Close, and come back as a new session.
    Leave,
    /// Close, and come back resuming this session.
    Reconnect,
    /// Send one message on the HTTP topic; the backend answers it.
    Http,
    /// The run is over: count what never arrived, close, end.
    Stop,
}

/// What all sessions of a run count together.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Totals {
    /// Sessions connected now.
    pub connected: u64,
    /// New sessions welcomed (`resumed: false`, no token given).
    pub connects: u64,
    /// Resumes answered with `resumed: true`, the same session id and the whitelist it had.
    pub resumes_ok: u64,
    /// Resumes answered otherwise.
    pub resumes_failed: u64,
    /// Connection attempts that failed (`/connect`, the websocket or the handshake).
    pub connect_errors: u64,
    /// Connections the server closed with 1012 (Service Restart), and with anything else.
    pub restart_closes: u64,
    pub other_closes: u64,
    /// Leave and Reconnect orders carried out.
    pub left: u64,
    pub reconnected: u64,
    /// Whitelist grants (`/api/sessions/{id}` with `add`) confirmed by the session, and refused.
    pub grants: u64,
    pub grant_errors: u64,
    pub fanout_delivered: u64,
    pub fanout_lost: u64,
    pub fanout_duplicates: u64,
    /// Resumes whose welcome said `recovered: true`, and `false`.
    pub recovered: u64,
    pub not_recovered: u64,
    /// `rohrpost.pos` notices saying messages were lost, and the numbers missed after the
    /// client was told (by either).
    pub gaps_reported: u64,
    pub fanout_reported: u64,
    pub http_sent: u64,
    pub http_ok: u64,
    /// `backend_*` errors, and answers still missing when the run stopped.
    pub http_errors: u64,
    /// Round trips whose session was left before the answer (churn); those of a session that
    /// resumes are answered where it resumed.
    pub http_interrupted: u64,
    /// Other `rohrpost.error` messages.
    pub other_errors: u64,
}

/// What the sessions of a run share.
pub struct Shared {
    /// The main port's base URL.
    pub url: String,
    pub api_key: Option<String>,
    /// The fan-out topic and the HTTP topic.
    pub topic: String,
    pub http_topic: String,
    /// The highest fan-out number the server API has accepted (-1: none yet).
    pub published: Cell<i64>,
    /// The fan-out number being published now: a connection welcomed while it is in flight is
    /// owed only the ones after it.
    pub sending: Cell<i64>,
    pub totals: RefCell<Totals>,
}

/// How one connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Leave,
    Reconnect,
    /// The server closed it, or the connection broke: reconnect resuming.
    Closed,
    Stop,
}

/// Runs session `index` until it is told to stop (or cannot connect for [`MAX_FAILURES`] tries).
pub async fn run(
    index: usize,
    http: awc::Client,
    shared: Rc<Shared>,
    mut orders: UnboundedReceiver<Order>,
) {
    // The session to resume, with the whitelist and position it had, and the highest fan-out
    // number this logical client received.
    let mut resume: Option<(Welcome, i64, u64)> = None;
    let mut failures = 0;
    loop {
        let token = resume.as_ref().map(|(w, _, _)| client::Resume {
            token: &w.resume,
            since: w.pos.as_deref(),
        });
        let (conn, welcome) = match client::dial(&http, &shared.url, false, token).await {
            Ok(opened) => opened,
            Err(e) => {
                failures += 1;
                shared.totals.borrow_mut().connect_errors += 1;
                if failures == 1 || failures == MAX_FAILURES {
                    log::warn!("soak session={index} connect failed attempt={failures}: {e}");
                }
                if failures >= MAX_FAILURES || stop_requested(&mut orders) {
                    return;
                }
                actix_rt::time::sleep(Duration::from_millis(100 * u64::from(failures.min(50))))
                    .await;
                continue;
            }
        };
        failures = 0;
        let floor = shared.sending.get().max(shared.published.get());
        let mut pending_http = 0;
        let (mut welcome, carried) = match resume.take() {
            Some((before, last, pending)) => {
                // Answers to round trips of the last connection come through the log here.
                pending_http = pending;
                let mut welcome = check_resume(index, &before, welcome, &shared);
                // Position notices and messages since the welcome moved it on; keep the newest.
                if welcome.pos.is_none() {
                    welcome.pos = before.pos;
                }
                let mut totals = shared.totals.borrow_mut();
                if welcome.recovered == Some(true) {
                    totals.recovered += 1;
                    (welcome, Some(last))
                } else {
                    // Told: what was published while it was away is not owed to it.
                    totals.not_recovered += 1;
                    totals.fanout_reported += (floor - last).max(0) as u64;
                    (welcome, None)
                }
            }
            None => {
                shared.totals.borrow_mut().connects += 1;
                grant(index, &http, &shared, &welcome.session);
                (welcome, None)
            }
        };
        let rest = std::mem::take(&mut welcome.rest);
        let mut link = Link::new(welcome, floor, carried);
        link.pending_http = pending_http;
        for message in rest {
            if let Ok(v) = serde_json::from_str::<Value>(&message) {
                link.take(&v, &shared);
            }
        }
        let end = link.serve(conn, &mut orders, &shared).await;
        match end {
            End::Leave => {}
            End::Reconnect | End::Closed => {
                resume = Some((link.welcome, link.last, link.pending_http))
            }
            End::Stop => return,
        }
    }
}

/// Whether a Stop order waits (other orders are dropped: the session is not connected).
fn stop_requested(orders: &mut UnboundedReceiver<Order>) -> bool {
    let mut stop = false;
    while let Ok(order) = orders.try_recv() {
        stop |= order == Order::Stop;
    }
    stop
}

/// Counts a resume as good when the server gave back the same session with (at least) the
/// whitelist it had; the welcome to continue with.
fn check_resume(index: usize, before: &Welcome, after: Welcome, shared: &Shared) -> Welcome {
    let whitelist_back = before.whitelist.iter().all(|p| after.whitelist.contains(p));
    let mut totals = shared.totals.borrow_mut();
    if after.resumed && after.session == before.session && whitelist_back {
        totals.resumes_ok += 1;
    } else {
        totals.resumes_failed += 1;
        if totals.resumes_failed <= LOGGED {
            log::warn!(
                "soak session={index} resume failed: resumed={} same_id={} whitelist before={:?} \
                 after={:?}",
                after.resumed,
                after.session == before.session,
                before.whitelist,
                after.whitelist
            );
        }
    }
    after
}

/// Grants a new session a pattern of its own through the server API; the session counts the
/// grant when the direct message confirming it arrives, and must get it back when it resumes.
fn grant(index: usize, http: &awc::Client, shared: &Rc<Shared>, session: &str) {
    let Some(key) = shared.api_key.clone() else {
        return;
    };
    let pattern = format!("soak.s{index}");
    let request = http
        .post(format!("{}/api/sessions/{session}", shared.url))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&json!({"add": [pattern], "data": {"granted": pattern}}));
    let shared = shared.clone();
    actix_rt::spawn(async move {
        if !request.await.is_ok_and(|r| r.status().is_success()) {
            shared.totals.borrow_mut().grant_errors += 1;
        }
    });
}

/// One connection of a session.
struct Link {
    /// The welcome, its whitelist completed by the grants confirmed since.
    welcome: Welcome,
    /// The first fan-out number this connection must receive.
    first: i64,
    /// The highest fan-out number received.
    last: i64,
    /// Round trips sent and not answered yet.
    pending_http: u64,
    /// A notice said messages were lost: the next gap was reported.
    told: bool,
}

impl Link {
    /// A connection welcomed while `published` was the newest number published; `carried`, the
    /// last number its logical client received, when the resume recovered everything after it.
    fn new(welcome: Welcome, published: i64, carried: Option<i64>) -> Link {
        let last = carried.unwrap_or(published);
        Link {
            welcome,
            first: last + 1,
            last,
            pending_http: 0,
            told: false,
        }
    }

    /// Reads frames and carries out orders until the connection ends.
    async fn serve<C>(
        &mut self,
        mut conn: C,
        orders: &mut UnboundedReceiver<Order>,
        shared: &Shared,
    ) -> End
    where
        C: Stream<Item = Result<Frame, WsProtocolError>>
            + Sink<Message, Error = WsProtocolError>
            + Unpin,
    {
        shared.totals.borrow_mut().connected += 1;
        let end = loop {
            tokio::select! {
                frame = conn.next() => match frame {
                    Some(Ok(Frame::Text(text))) => {
                        if let Some(end) = self.read(&text, shared) {
                            break end;
                        }
                    }
                    Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => {
                        self.closed_by_server(None, shared);
                        break End::Closed;
                    }
                    Some(Ok(_)) => {}
                },
                order = orders.recv() => match order {
                    Some(Order::Http) => {
                        let envelope = json!({"topic": shared.http_topic, "data": {"t": now_us()}});
                        let frame = serde_json::to_string(&[envelope.to_string()]).unwrap_or_default();
                        if conn.send(Message::Text(frame.into())).await.is_err() {
                            self.closed_by_server(None, shared);
                            break End::Closed;
                        }
                        self.pending_http += 1;
                        shared.totals.borrow_mut().http_sent += 1;
                    }
                    Some(Order::Leave) => break End::Leave,
                    Some(Order::Reconnect) => break End::Reconnect,
                    Some(Order::Stop) | None => break End::Stop,
                },
            }
        };
        self.account(end, shared);
        if end != End::Closed {
            let _ =
                actix_rt::time::timeout(Duration::from_secs(2), conn.send(Message::Close(None)))
                    .await;
        }
        end
    }

    /// Counts how the connection ended: what was still owed to it, or what it interrupted.
    fn account(&self, end: End, shared: &Shared) {
        let mut totals = shared.totals.borrow_mut();
        totals.connected -= 1;
        match end {
            End::Stop => {
                // The run's wind-down is over: whatever has not arrived is lost.
                let published = shared.published.get();
                if published > self.last {
                    totals.fanout_lost += (published - self.last) as u64;
                    log::warn!(
                        "soak session={} worker={} lost fan-out {}..{} at the end",
                        self.welcome.session,
                        self.welcome.worker,
                        self.last + 1,
                        published
                    );
                }
                totals.http_errors += self.pending_http;
            }
            End::Leave => totals.left += 1,
            End::Reconnect => totals.reconnected += 1,
            End::Closed => {}
        }
        if end == End::Leave {
            // A new session follows: answers to this one's round trips cannot reach it.
            totals.http_interrupted += self.pending_http;
        }
    }

    /// Takes in one text frame; the end of the connection if the server closed it.
    fn read(&mut self, text: &[u8], shared: &Shared) -> Option<End> {
        let text = std::str::from_utf8(text).unwrap_or("");
        if let Some(close) = text.strip_prefix('c') {
            let (code, reason): (u16, String) = serde_json::from_str(close).unwrap_or_default();
            self.closed_by_server(Some((code, &reason)), shared);
            return Some(End::Closed);
        }
        if !text.starts_with("a[") {
            return None;
        }
        for message in client::frame_messages(text) {
            let Ok(v) = serde_json::from_str::<Value>(&message) else {
                continue;
            };
            self.take(&v, shared);
        }
        None
    }

    /// Counts one message.
    fn take(&mut self, v: &Value, shared: &Shared) {
        let mut totals = shared.totals.borrow_mut();
        let data = &v["data"];
        if let Some(pos) = v["pos"].as_str() {
            self.welcome.pos = Some(pos.to_string());
        }
        if v["topic"] == "rohrpost.pos" {
            if let Some(pos) = data["pos"].as_str() {
                self.welcome.pos = Some(pos.to_string());
            }
            if data["recovered"] == false {
                totals.gaps_reported += 1;
                self.told = true;
            }
            return;
        }
        if v["topic"] == shared.topic.as_str() {
            let i = data["i"].as_i64().unwrap_or(-1);
            if i < self.first {
                // Warm-up, or accepted before this connection's welcome: not owed to it.
            } else if i <= self.last {
                totals.fanout_duplicates += 1;
            } else {
                if i > self.last + 1 && std::mem::take(&mut self.told) {
                    totals.fanout_reported += (i - self.last - 1) as u64;
                } else if i > self.last + 1 {
                    totals.fanout_lost += (i - self.last - 1) as u64;
                    if totals.fanout_lost <= LOGGED {
                        log::warn!(
                            "soak session={} worker={} lost fan-out {}..{} (connection's first {})",
                            self.welcome.session,
                            self.welcome.worker,
                            self.last + 1,
                            i - 1,
                            self.first
                        );
                    }
                }
                totals.fanout_delivered += 1;
                self.last = i;
            }
        } else if v["topic"] == "rohrpost.error" {
            let code = data["code"].as_str().unwrap_or("");
            if code.starts_with("backend_") && self.pending_http > 0 {
                self.pending_http -= 1;
                totals.http_errors += 1;
            } else {
                totals.other_errors += 1;
            }
            if totals.http_errors + totals.other_errors <= LOGGED {
                log::warn!("soak session={} error: {data}", self.welcome.session);
            }
        } else if let Some(pattern) = data["granted"].as_str() {
            self.welcome.whitelist.push(pattern.to_string());
            totals.grants += 1;
        } else if data.get("t").is_some() && self.pending_http > 0 {
            self.pending_http -= 1;
            totals.http_ok += 1;
        }
    }

    fn closed_by_server(&self, close: Option<(u16, &str)>, shared: &Shared) {
        let mut totals = shared.totals.borrow_mut();
        if matches!(close, Some((1012, _))) {
            totals.restart_closes += 1;
            return;
        }
        totals.other_closes += 1;
        if totals.other_closes <= LOGGED {
            log::warn!(
                "soak session={} worker={} closed by the server: {close:?}",
                self.welcome.session,
                self.welcome.worker
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Link, Shared, Welcome};
    use serde_json::json;

    fn shared() -> Shared {
        Shared {
            url: String::new(),
            api_key: None,
            topic: "anonym.soak".into(),
            http_topic: "anonym.http".into(),
            published: std::cell::Cell::new(4),
            sending: std::cell::Cell::new(4),
            totals: Default::default(),
        }
    }

    fn fanout(i: i64) -> serde_json::Value {
        json!({"topic": "anonym.soak", "data": {"t": 1, "i": i}})
    }

    #[test]
    fn a_connection_owes_every_number_after_its_welcome_and_counts_gaps_and_repeats() {
        let shared = shared();
        let mut link = Link::new(Welcome::default(), shared.published.get(), None);
        for i in [3, 5, 6, 8, 8] {
            link.take(&fanout(i), &shared);
        }
        let t = shared.totals.borrow();
        // 3 was accepted before the welcome: not owed; 7 is missing; the second 8 repeats.
        assert_eq!(
            (t.fanout_delivered, t.fanout_lost, t.fanout_duplicates),
            (3, 1, 1)
        );
    }

    #[test]
    fn a_recovered_resume_owes_everything_after_the_last_number_and_a_told_gap_is_reported() {
        let shared = shared();
        // The client had 2; 3 and 4 were published while it was away, then recovered.
        let mut link = Link::new(Welcome::default(), shared.published.get(), Some(2));
        for i in [3, 4, 5] {
            link.take(&fanout(i), &shared);
        }
        link.take(
            &json!({"topic": "rohrpost.pos", "data": {"pos": "e:9", "recovered": false}}),
            &shared,
        );
        link.take(&fanout(8), &shared);
        link.take(&fanout(10), &shared);
        let t = shared.totals.borrow();
        assert_eq!(
            (
                t.fanout_delivered,
                t.fanout_lost,
                t.fanout_reported,
                t.gaps_reported
            ),
            (5, 1, 2, 1)
        );
        assert_eq!(link.welcome.pos.as_deref(), Some("e:9"));
    }

    #[test]
    fn http_answers_and_backend_errors_settle_pending_round_trips_and_grants_extend_the_whitelist()
    {
        let shared = shared();
        let mut link = Link::new(Welcome::default(), -1, None);
        link.pending_http = 2;
        link.take(
            &json!({"topic": "rohrpost.client.x", "data": {"t": 7}}),
            &shared,
        );
        link.take(
            &json!({"topic": "rohrpost.error", "data": {"code": "backend_timeout"}}),
            &shared,
        );
        link.take(
            &json!({"topic": "rohrpost.client.x", "data": {"granted": "soak.s1"}}),
            &shared,
        );
        let t = shared.totals.borrow();
        assert_eq!((t.http_ok, t.http_errors, t.grants), (1, 1, 1));
        assert_eq!(link.pending_http, 0);
        assert_eq!(link.welcome.whitelist, ["soak.s1"]);
    }
}
