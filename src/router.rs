//! The topic router: one actor per worker that knows which sessions hold which patterns.
//!
//! Sessions [`Join`] with their patterns (whitelist plus their direct topic), change them with
//! [`SetPatterns`] and [`Leave`] when they end. The router keeps an index pattern → sessions and
//! one broker subscription per distinct pattern, reference-counted: subscribed when the first
//! session takes a pattern, unsubscribed when the last one drops it.
//!
//! A broker message arrives with the subscription it came in on. It is parsed and its client
//! envelope encoded once, then handed to the sessions indexed under that subscription — never a
//! scan of every session. A session holding several patterns that match the channel gets the
//! message through each subscription; it accepts it only through the smallest of them, so each
//! publish reaches each session exactly once.
//!
//! [`Join`] and [`SetPatterns`] answer once the broker has confirmed every subscription the
//! session now needs, so a session can hold its welcome (or a grant) until anything published
//! for it afterwards is sure to reach it. The router also keeps the newest log position it has
//! routed: every logged message at or before it that a session's patterns match has been handed
//! to that session, so [`ShareProgress`] can tell sessions how far they are caught up.

use std::collections::{HashMap, HashSet};

/// The router's maps are keyed by our own counters and the patterns sessions hold, so the
/// flood-resistant default hasher buys nothing here and was the largest single cost of a
/// fan-out (SipHash per session per message; BENCHMARKS.md).
type FastHash = foldhash::fast::RandomState;
use std::sync::Arc;

use actix::prelude::*;
use log::debug;

use crate::broker::log::{Confirm, Position, HEAD_CHANNEL};
use crate::broker::{Broker, BrokerMessage, LinkRestored, Subscribe, Unsubscribe};
use crate::metrics::{self, DropReason, Path};
use crate::protocol::{envelope_at, BackendMessage};
use crate::sockjs::frames::EncodedMessage;
use crate::topics::Pattern;

/// Identifies a session within its worker.
pub type SessionKey = u64;

/// A backend message for one session, shared by every session it reaches.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The channel it was published on.
    pub channel: Arc<str>,
    pub message: Arc<BackendMessage>,
    /// `{"topic": topic-or-channel, "data": ..., "pos"?}`, encoded once; `None` when there is
    /// no data.
    pub encoded: Option<EncodedMessage>,
    /// Its place in the publication log, for a logged publish.
    pub position: Option<Position>,
}

impl Deliver {
    /// Builds the shared delivery of a parsed backend message published on `channel` (at
    /// `position` in the log, if logged).
    pub fn new(channel: Arc<str>, message: BackendMessage, position: Option<Position>) -> Deliver {
        let encoded = message.data.as_ref().map(|data| {
            let topic = message.topic.as_deref().unwrap_or(&channel);
            EncodedMessage::new(&envelope_at(topic, data, position.as_ref()))
        });
        Deliver {
            channel,
            message: Arc::new(message),
            encoded,
            position,
        }
    }

    /// The topic the client sees.
    pub fn topic(&self) -> &str {
        self.message.topic.as_deref().unwrap_or(&self.channel)
    }
}

/// A session starts receiving. Answers once the broker has confirmed its subscriptions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub key: SessionKey,
    pub recipient: Recipient<Deliver>,
    /// Told when the broker has its server back, to store the session's record again.
    pub restored: Recipient<LinkRestored>,
    /// Told how far the session is caught up ([`ShareProgress`]).
    pub progress: Recipient<Progress>,
    pub patterns: Vec<Pattern>,
}

/// A session's patterns changed (whitelist updated). Answers once the broker has confirmed the
/// subscriptions they need.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPatterns {
    pub key: SessionKey,
    pub patterns: Vec<Pattern>,
}

/// Tells every session how far it is caught up (sent by the worker before a drain, and by the
/// router itself now and then).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ShareProgress;

/// To a session: every logged message at or before this position that its patterns match has
/// been handed to it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Progress(pub Position);

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub key: SessionKey,
}

/// How many sessions and subscriptions the router holds (for tests and metrics).
#[derive(Message)]
#[rtype(result = "RouterStats")]
pub struct Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct RouterStats {
    pub sessions: usize,
    pub subscriptions: usize,
}

struct Member {
    recipient: Recipient<Deliver>,
    restored: Recipient<LinkRestored>,
    progress: Recipient<Progress>,
    patterns: Vec<Pattern>,
}

/// How often, and after how many logged messages, sessions are told their progress unasked.
#[derive(Debug, Clone, Copy)]
pub struct ProgressEvery {
    pub interval: std::time::Duration,
    pub messages: u64,
}

/// The router actor of one worker.
pub struct Router {
    broker: Broker,
    members: HashMap<SessionKey, Member, FastHash>,
    index: HashMap<Pattern, HashSet<SessionKey, FastHash>, FastHash>,
    /// The newest log position routed.
    routed: Option<Position>,
    /// The position last shared with the sessions.
    shared: Option<Position>,
    progress_every: ProgressEvery,
}

impl Router {
    pub fn new(broker: Broker, progress_every: ProgressEvery) -> Self {
        Router {
            broker,
            members: HashMap::default(),
            index: HashMap::default(),
            routed: None,
            shared: None,
            progress_every,
        }
    }

    /// Answers once the broker has confirmed `patterns` (or at once while it is down).
    fn confirmed(&self, patterns: Vec<Pattern>) -> ResponseFuture<()> {
        let confirm = self.broker.confirm.send(Confirm(patterns));
        Box::pin(async move {
            if !confirm.await.unwrap_or(false) {
                debug!("subscriptions not confirmed: the broker is down");
            }
        })
    }

    fn share_progress(&mut self) {
        let Some(routed) = &self.routed else {
            return;
        };
        self.shared = Some(routed.clone());
        for member in self.members.values() {
            member.progress.do_send(Progress(routed.clone()));
        }
    }

    fn add_patterns(&mut self, key: SessionKey, patterns: &[Pattern]) {
        for p in patterns {
            let holders = self.index.entry(p.clone()).or_default();
            if holders.is_empty() {
                self.broker.subscribe.do_send(Subscribe(p.clone()));
            }
            holders.insert(key);
        }
    }

    fn remove_patterns(&mut self, key: SessionKey, patterns: &[Pattern]) {
        for p in patterns {
            if let Some(holders) = self.index.get_mut(p) {
                holders.remove(&key);
                if holders.is_empty() {
                    self.index.remove(p);
                    self.broker.unsubscribe.do_send(Unsubscribe(p.clone()));
                }
            }
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The log's head beacons tell this worker how far the log has gone, in order with what
        // it receives, even when its sessions are on quiet topics.
        if let Ok(head) = Pattern::parse(HEAD_CHANNEL, usize::MAX) {
            self.broker.subscribe.do_send(Subscribe(head));
        }
        ctx.run_interval(self.progress_every.interval, |act, _ctx| {
            if act.routed != act.shared {
                act.share_progress();
            }
        });
    }
}

impl Handler<ShareProgress> for Router {
    type Result = ();

    fn handle(&mut self, _msg: ShareProgress, _ctx: &mut Context<Self>) {
        self.share_progress();
    }
}

fn dedup(mut patterns: Vec<Pattern>) -> Vec<Pattern> {
    patterns.sort();
    patterns.dedup();
    patterns
}

impl Handler<Join> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Join, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(old) = self.members.remove(&msg.key) {
            self.remove_patterns(msg.key, &old.patterns);
        }
        let patterns = dedup(msg.patterns);
        self.add_patterns(msg.key, &patterns);
        let confirmed = self.confirmed(patterns.clone());
        self.members.insert(
            msg.key,
            Member {
                recipient: msg.recipient,
                restored: msg.restored,
                progress: msg.progress,
                patterns,
            },
        );
        confirmed
    }
}

/// The broker is back after an outage: every session stores its record again, in case the
/// server lost them (a restarted Redis without persistence), so that clients can still resume.
impl Handler<LinkRestored> for Router {
    type Result = ();

    fn handle(&mut self, msg: LinkRestored, _ctx: &mut Context<Self>) {
        log::info!(
            "broker back: {} sessions store their records again gap={}",
            self.members.len(),
            msg.gap
        );
        for member in self.members.values() {
            member.restored.do_send(msg);
        }
    }
}

impl Handler<SetPatterns> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: SetPatterns, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(member) = self.members.get_mut(&msg.key) else {
            return Box::pin(futures_util::future::ready(()));
        };
        let new = dedup(msg.patterns);
        let old = std::mem::replace(&mut member.patterns, new.clone());
        let added: Vec<Pattern> = new.iter().filter(|p| !old.contains(p)).cloned().collect();
        let removed: Vec<Pattern> = old.iter().filter(|p| !new.contains(p)).cloned().collect();
        self.add_patterns(msg.key, &added);
        self.remove_patterns(msg.key, &removed);
        self.confirmed(added)
    }
}

impl Handler<Leave> for Router {
    type Result = ();

    fn handle(&mut self, msg: Leave, _ctx: &mut Context<Self>) {
        if let Some(member) = self.members.remove(&msg.key) {
            self.remove_patterns(msg.key, &member.patterns);
        }
    }
}

impl Handler<Stats> for Router {
    type Result = RouterStats;

    fn handle(&mut self, _msg: Stats, _ctx: &mut Context<Self>) -> RouterStats {
        RouterStats {
            sessions: self.members.len(),
            subscriptions: self.index.len(),
        }
    }
}

impl Handler<BrokerMessage> for Router {
    type Result = ();

    fn handle(&mut self, msg: BrokerMessage, _ctx: &mut Context<Self>) {
        metrics::backend_message_in(Path::Broker);
        let position = msg.position.clone();
        self.route(msg);
        // Only now is this message handed to every session it is for.
        if let Some(position) = position {
            let ahead = |shared: &Position| {
                shared.epoch != position.epoch
                    || position.seq >= shared.seq + self.progress_every.messages
            };
            let share = self.shared.as_ref().is_none_or(ahead);
            self.routed = Some(position);
            if share {
                self.share_progress();
            }
        }
    }
}

impl Router {
    /// Hands a broker message to every session it is for, once each.
    fn route(&self, msg: BrokerMessage) {
        let Some(holders) = self.index.get(&msg.subscription) else {
            return;
        };
        let message = match BackendMessage::parse(&msg.payload) {
            Ok(m) if m.from_client => {
                metrics::dropped(DropReason::FromClient);
                return;
            }
            Ok(m) => m,
            Err(e) => {
                debug!("broker message dropped channel={} reason={e}", msg.channel);
                metrics::dropped(DropReason::BackendNotObject);
                return;
            }
        };
        let delivery = Deliver::new(msg.channel.clone(), message, msg.position);
        for key in holders {
            let Some(member) = self.members.get(key) else {
                continue;
            };
            // Exactly once per session: only through the smallest of its matching patterns.
            let first_match = member.patterns.iter().find(|p| p.matches(&msg.channel));
            if first_match == Some(&msg.subscription) {
                member.recipient.do_send(delivery.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::directory::{EndEntry, GetEntry, ListEntries, Put, PutEntry, TouchEntries};
    use crate::broker::{
        IsConnected, LoadSession, Publish, SharedSecret, StoreSession, Subscribe, Unsubscribe,
    };
    use bytes::Bytes;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A broker that records subscription changes.
    struct FakeBroker(Rc<RefCell<Vec<String>>>);
    impl Actor for FakeBroker {
        type Context = Context<Self>;
    }
    impl Handler<Subscribe> for FakeBroker {
        type Result = ();
        fn handle(&mut self, m: Subscribe, _: &mut Context<Self>) {
            self.0.borrow_mut().push(format!("+{}", m.0));
        }
    }
    impl Handler<Unsubscribe> for FakeBroker {
        type Result = ();
        fn handle(&mut self, m: Unsubscribe, _: &mut Context<Self>) {
            self.0.borrow_mut().push(format!("-{}", m.0));
        }
    }
    impl Handler<Publish> for FakeBroker {
        type Result = Result<(), crate::broker::BrokerError>;
        fn handle(&mut self, _: Publish, _: &mut Context<Self>) -> Self::Result {
            Ok(())
        }
    }
    impl Handler<StoreSession> for FakeBroker {
        type Result = Result<(), crate::broker::BrokerError>;
        fn handle(&mut self, _: StoreSession, _: &mut Context<Self>) -> Self::Result {
            Ok(())
        }
    }
    impl Handler<LoadSession> for FakeBroker {
        type Result = Result<Option<Bytes>, crate::broker::BrokerError>;
        fn handle(&mut self, _: LoadSession, _: &mut Context<Self>) -> Self::Result {
            Ok(None)
        }
    }
    impl Handler<SharedSecret> for FakeBroker {
        type Result = Result<String, crate::broker::BrokerError>;
        fn handle(&mut self, m: SharedSecret, _: &mut Context<Self>) -> Self::Result {
            Ok(m.proposed)
        }
    }
    impl Handler<IsConnected> for FakeBroker {
        type Result = bool;
        fn handle(&mut self, _: IsConnected, _: &mut Context<Self>) -> bool {
            true
        }
    }
    impl Handler<crate::broker::log::PublishLogged> for FakeBroker {
        type Result = Result<Position, crate::broker::BrokerError>;
        fn handle(
            &mut self,
            _: crate::broker::log::PublishLogged,
            _: &mut Context<Self>,
        ) -> Self::Result {
            Err(crate::broker::BrokerError::Server("not logged here".into()))
        }
    }
    impl Handler<crate::broker::log::ReadLog> for FakeBroker {
        type Result = Result<crate::broker::log::LogRead, crate::broker::BrokerError>;
        fn handle(
            &mut self,
            _: crate::broker::log::ReadLog,
            _: &mut Context<Self>,
        ) -> Self::Result {
            Err(crate::broker::BrokerError::Server("not logged here".into()))
        }
    }
    impl Handler<PutEntry> for FakeBroker {
        type Result = Result<Put, crate::broker::BrokerError>;
        fn handle(&mut self, _: PutEntry, _: &mut Context<Self>) -> Self::Result {
            Ok(Put::Opened)
        }
    }
    impl Handler<TouchEntries> for FakeBroker {
        type Result = Result<Vec<Arc<str>>, crate::broker::BrokerError>;
        fn handle(&mut self, _: TouchEntries, _: &mut Context<Self>) -> Self::Result {
            Ok(Vec::new())
        }
    }
    impl Handler<EndEntry> for FakeBroker {
        type Result = Result<bool, crate::broker::BrokerError>;
        fn handle(&mut self, _: EndEntry, _: &mut Context<Self>) -> Self::Result {
            Ok(false)
        }
    }
    impl Handler<ListEntries> for FakeBroker {
        type Result = Result<Vec<Bytes>, crate::broker::BrokerError>;
        fn handle(&mut self, _: ListEntries, _: &mut Context<Self>) -> Self::Result {
            Ok(Vec::new())
        }
    }
    impl Handler<GetEntry> for FakeBroker {
        type Result = Result<Option<Bytes>, crate::broker::BrokerError>;
        fn handle(&mut self, _: GetEntry, _: &mut Context<Self>) -> Self::Result {
            Ok(None)
        }
    }
    impl Handler<Confirm> for FakeBroker {
        type Result = bool;
        fn handle(&mut self, m: Confirm, _: &mut Context<Self>) -> bool {
            let names: Vec<String> = m.0.iter().map(|p| p.to_string()).collect();
            self.0.borrow_mut().push(format!("?{}", names.join(",")));
            true
        }
    }

    /// A session stand-in that records deliveries.
    struct Inbox(Rc<RefCell<Vec<String>>>);
    impl Actor for Inbox {
        type Context = Context<Self>;
    }
    impl Handler<Deliver> for Inbox {
        type Result = ();
        fn handle(&mut self, d: Deliver, _: &mut Context<Self>) {
            self.0.borrow_mut().push(d.topic().to_string());
        }
    }
    impl Handler<LinkRestored> for Inbox {
        type Result = ();
        fn handle(&mut self, _: LinkRestored, _: &mut Context<Self>) {
            self.0.borrow_mut().push("(restored)".to_string());
        }
    }
    impl Handler<Progress> for Inbox {
        type Result = ();
        fn handle(&mut self, p: Progress, _: &mut Context<Self>) {
            self.0.borrow_mut().push(format!("(at {})", p.0));
        }
    }

    fn router(broker: Broker) -> Addr<Router> {
        let every = ProgressEvery {
            interval: std::time::Duration::from_secs(3600),
            messages: 2,
        };
        Router::new(broker, every).start()
    }

    fn pat(s: &str) -> Pattern {
        Pattern::parse(s, 256).unwrap()
    }

    /// The subscription changes a fake broker saw for sessions: without the confirmations
    /// asked and the router's own subscription to the head beacons.
    fn changes(log: &Rc<RefCell<Vec<String>>>) -> Vec<String> {
        (log.borrow().iter())
            .filter(|l| !l.starts_with('?') && !l.ends_with(HEAD_CHANNEL))
            .cloned()
            .collect()
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn publish(router: &Addr<Router>, subscription: &str, channel: &str, payload: &str) {
        router.do_send(BrokerMessage {
            subscription: pat(subscription),
            channel: Arc::from(channel),
            payload: Bytes::from(payload.to_string()),
            position: None,
        });
    }

    #[actix_rt::test]
    async fn subscriptions_are_reference_counted() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let broker = Broker::of(&FakeBroker(log.clone()).start());
        let router = router(broker);
        let inbox = Inbox(Rc::default()).start();
        for key in [1, 2] {
            router.do_send(Join {
                key,
                recipient: inbox.clone().recipient(),
                restored: inbox.clone().recipient(),
                progress: inbox.clone().recipient(),
                patterns: vec![pat("a.*")],
            });
        }
        router.do_send(Leave { key: 1 });
        settle().await;
        assert_eq!(changes(&log), vec!["+a.*"]);
        router.do_send(Leave { key: 2 });
        settle().await;
        assert_eq!(changes(&log), vec!["+a.*", "-a.*"]);
        let stats = router.send(Stats).await.unwrap();
        assert_eq!(
            stats,
            RouterStats {
                sessions: 0,
                subscriptions: 0
            }
        );
    }

    #[actix_rt::test]
    async fn overlapping_patterns_deliver_once() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let broker = Broker::of(&FakeBroker(log).start());
        let router = router(broker);
        let got = Rc::new(RefCell::new(Vec::new()));
        let inbox = Inbox(got.clone()).start();
        router.do_send(Join {
            key: 1,
            recipient: inbox.clone().recipient(),
            restored: inbox.clone().recipient(),
            progress: inbox.recipient(),
            patterns: vec![pat("x.*"), pat("x.y"), pat("*")],
        });
        // The broker delivers once per matching subscription.
        for sub in ["x.*", "x.y", "*"] {
            publish(&router, sub, "x.y", r#"{"data":1}"#);
        }
        settle().await;
        assert_eq!(*got.borrow(), vec!["x.y"]);
    }

    #[actix_rt::test]
    async fn a_restored_broker_reaches_every_session_once() {
        let broker = Broker::of(&FakeBroker(Rc::default()).start());
        let router = router(broker);
        let got = Rc::new(RefCell::new(Vec::new()));
        let inbox = Inbox(got.clone()).start();
        for key in [1, 2, 3] {
            router.do_send(Join {
                key,
                recipient: inbox.clone().recipient(),
                restored: inbox.clone().recipient(),
                progress: inbox.clone().recipient(),
                patterns: vec![pat("t")],
            });
        }
        router.do_send(Leave { key: 2 });
        router.do_send(LinkRestored { gap: false });
        settle().await;
        assert_eq!(*got.borrow(), vec!["(restored)", "(restored)"]);
    }

    #[actix_rt::test]
    async fn client_messages_and_non_objects_never_reach_sessions() {
        let broker = Broker::of(&FakeBroker(Rc::default()).start());
        let router = router(broker);
        let got = Rc::new(RefCell::new(Vec::new()));
        let inbox = Inbox(got.clone()).start();
        router.do_send(Join {
            key: 1,
            recipient: inbox.clone().recipient(),
            restored: inbox.clone().recipient(),
            progress: inbox.recipient(),
            patterns: vec![pat("t")],
        });
        publish(&router, "t", "t", r#"{"data":1,"fromClient":true}"#);
        publish(&router, "t", "t", r#"[1,2]"#);
        publish(&router, "t", "t", r#"plain"#);
        publish(&router, "t", "t", r#"{"data":2,"topic":"u"}"#);
        settle().await;
        assert_eq!(*got.borrow(), vec!["u"]);
    }

    #[actix_rt::test]
    async fn changed_patterns_move_subscriptions() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let broker = Broker::of(&FakeBroker(log.clone()).start());
        let router = router(broker);
        let inbox = Inbox(Rc::default()).start();
        router.do_send(Join {
            key: 1,
            recipient: inbox.clone().recipient(),
            restored: inbox.clone().recipient(),
            progress: inbox.recipient(),
            patterns: vec![pat("anonym.*")],
        });
        router.do_send(SetPatterns {
            key: 1,
            patterns: vec![pat("anonym.*"), pat("members.*")],
        });
        router.do_send(SetPatterns {
            key: 1,
            patterns: vec![pat("members.*")],
        });
        settle().await;
        assert_eq!(changes(&log), vec!["+anonym.*", "+members.*", "-anonym.*"]);
        // Each change asked the broker to confirm what it added.
        let confirms: Vec<String> = (log.borrow().iter())
            .filter(|l| l.starts_with('?'))
            .cloned()
            .collect();
        assert_eq!(confirms, ["?anonym.*", "?members.*", "?"]);
    }

    #[actix_rt::test]
    async fn progress_is_shared_only_after_the_messages_it_covers() {
        let broker = Broker::of(&FakeBroker(Rc::default()).start());
        let router = router(broker);
        let got = Rc::new(RefCell::new(Vec::new()));
        let inbox = Inbox(got.clone()).start();
        router.do_send(Join {
            key: 1,
            recipient: inbox.clone().recipient(),
            restored: inbox.clone().recipient(),
            progress: inbox.recipient(),
            patterns: vec![pat("t")],
        });
        for seq in 1..=3 {
            router.do_send(BrokerMessage {
                subscription: pat("t"),
                channel: Arc::from("t"),
                payload: Bytes::from_static(b"{\"data\":1}"),
                position: Some(Position {
                    epoch: Arc::from("e"),
                    seq,
                }),
            });
        }
        router.do_send(ShareProgress);
        settle().await;
        // Unasked after the first and after every second one (`messages`: 2), and when asked.
        assert_eq!(
            *got.borrow(),
            ["t", "(at e:1)", "t", "t", "(at e:3)", "(at e:3)"]
        );
    }
}
