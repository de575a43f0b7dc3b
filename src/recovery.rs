//! The recovery reader: one actor per worker through which sessions read the publication log
//! when they start, so that a burst of sessions (a staged restart moves thousands in a second)
//! costs one read of the log, not one per session.
//!
//! A session asks [`CatchUp`] with the position its client is caught up to (or none, for a new
//! session). Requests that arrive within [`GATHER`] of the first go out as one [`ReadLog`] after
//! the oldest of them; the entries are parsed and encoded once ([`Deliver`]) and shared by every
//! session of the batch, each taking those after its own position.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::broker::log::{LogRead, Position, ReadLog};
use crate::broker::BrokerError;
use crate::protocol::BackendMessage;
use crate::router::Deliver;

/// How long the first request of a batch waits for others.
const GATHER: Duration = Duration::from_millis(5);

/// Asks where the log stands and what it holds after `after`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<CatchUpAnswer, BrokerError>")]
pub struct CatchUp {
    pub after: Option<Position>,
}

/// The answer to [`CatchUp`].
#[derive(Debug, Clone)]
pub struct CatchUpAnswer {
    /// The head of the log at the read.
    pub head: Position,
    /// With an `after`: whether every logged message after it is in `entries`.
    pub recovered: bool,
    /// The logged messages of the batch's read, oldest first; the session takes those after its
    /// own position.
    pub entries: Arc<Vec<Deliver>>,
}

type Waiter = (
    Option<Position>,
    oneshot::Sender<Result<CatchUpAnswer, BrokerError>>,
);

/// The actor; see the module docs.
pub struct Recovery {
    /// The broker's log reads.
    read_log: Recipient<ReadLog>,
    waiting: Vec<Waiter>,
    /// Whether a read (or the gathering before it) is under way.
    busy: bool,
}

impl Recovery {
    pub fn new(read_log: Recipient<ReadLog>) -> Recovery {
        Recovery {
            read_log,
            waiting: Vec::new(),
            busy: false,
        }
    }

    fn read(&mut self, ctx: &mut Context<Self>) {
        let batch = std::mem::take(&mut self.waiting);
        if batch.is_empty() {
            self.busy = false;
            return;
        }
        // The oldest position of the epoch most of the batch is in (one read serves one epoch;
        // a position of another cannot be recovered whatever is read).
        let after = oldest(batch.iter().filter_map(|(after, _)| after.as_ref()));
        let read = self.read_log.send(ReadLog {
            after: after.clone(),
        });
        ctx.spawn(
            actix::fut::wrap_future(read).map(move |result, act: &mut Self, ctx| {
                let result = match result {
                    Ok(result) => result,
                    Err(e) => Err(BrokerError::Unavailable(e.to_string())),
                };
                answer(batch, after.as_ref(), result);
                act.read(ctx);
            }),
        );
    }
}

/// The smallest position among those of the most common epoch.
fn oldest<'a>(positions: impl Iterator<Item = &'a Position>) -> Option<Position> {
    let mut by_epoch: Vec<(&'a Position, usize)> = Vec::new();
    for p in positions {
        match by_epoch.iter_mut().find(|(q, _)| q.epoch == p.epoch) {
            Some((q, n)) => {
                *n += 1;
                if p.seq < q.seq {
                    *q = p;
                }
            }
            None => by_epoch.push((p, 1)),
        }
    }
    by_epoch
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| p.clone())
}

/// Answers every waiter of a batch from one read after `after`.
fn answer(batch: Vec<Waiter>, after: Option<&Position>, result: Result<LogRead, BrokerError>) {
    let read = match result {
        Ok(read) => read,
        Err(e) => {
            for (_, waiter) in batch {
                let _ = waiter.send(Err(e.clone()));
            }
            return;
        }
    };
    let head = read.head_position();
    let entries: Arc<Vec<Deliver>> = Arc::new(
        (read.entries.iter())
            .filter_map(|entry| {
                let message = BackendMessage::parse(&entry.payload).ok()?;
                let position = Position {
                    epoch: read.epoch.clone(),
                    seq: entry.seq,
                };
                (!message.from_client)
                    .then(|| Deliver::new(entry.channel.clone(), message, Some(position)))
            })
            .collect(),
    );
    // The read is complete after `after` (in its epoch): so it is for every later position.
    let complete_from = (after)
        .filter(|a| a.epoch == read.epoch && read.complete)
        .map(|a| a.seq);
    for (wanted, waiter) in batch {
        let recovered = wanted.as_ref().is_some_and(|w| {
            w.epoch == read.epoch
                && complete_from.is_some_and(|from| w.seq >= from)
                && w.seq <= read.head
        });
        let _ = waiter.send(Ok(CatchUpAnswer {
            head: head.clone(),
            recovered,
            entries: entries.clone(),
        }));
    }
}

impl Actor for Recovery {
    type Context = Context<Self>;
}

impl Handler<CatchUp> for Recovery {
    type Result = ResponseFuture<Result<CatchUpAnswer, BrokerError>>;

    fn handle(&mut self, msg: CatchUp, ctx: &mut Context<Self>) -> Self::Result {
        let (waiter, answer) = oneshot::channel();
        self.waiting.push((msg.after, waiter));
        if !self.busy {
            self.busy = true;
            ctx.run_later(GATHER, |act, ctx| act.read(ctx));
        }
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(BrokerError::Unavailable("recovery reader stopped".into())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::log::LogEntry;
    use bytes::Bytes;

    fn pos(epoch: &str, seq: u64) -> Position {
        Position {
            epoch: Arc::from(epoch),
            seq,
        }
    }

    /// A broker log that counts its reads and holds entries 1..=`head`.
    struct CountingLog {
        reads: std::rc::Rc<std::cell::Cell<usize>>,
        head: u64,
    }

    impl Actor for CountingLog {
        type Context = Context<Self>;
    }

    impl Handler<ReadLog> for CountingLog {
        type Result = Result<LogRead, BrokerError>;

        fn handle(&mut self, msg: ReadLog, _ctx: &mut Context<Self>) -> Self::Result {
            self.reads.set(self.reads.get() + 1);
            let after = msg.after.map_or(self.head, |a| a.seq);
            Ok(LogRead {
                epoch: Arc::from("a"),
                head: self.head,
                entries: (after + 1..=self.head)
                    .map(|seq| LogEntry {
                        seq,
                        channel: Arc::from("c"),
                        payload: Bytes::from_static(b"{\"data\":1}"),
                    })
                    .collect(),
                complete: true,
            })
        }
    }

    #[actix_rt::test]
    async fn a_burst_of_sessions_costs_one_read_of_the_log() {
        let reads = std::rc::Rc::new(std::cell::Cell::new(0));
        let log = CountingLog {
            reads: reads.clone(),
            head: 50,
        }
        .start();
        let recovery = Recovery::new(log.recipient()).start();
        let asks: Vec<_> = (0..1000)
            .map(|i| {
                recovery.send(CatchUp {
                    after: (i % 3 != 0).then(|| pos("a", 10 + (i % 40) as u64)),
                })
            })
            .collect();
        let answers = futures_util::future::join_all(asks).await;
        assert_eq!(reads.get(), 1, "one read for the whole burst");
        for answer in answers {
            let answer = answer.unwrap().unwrap();
            assert_eq!(answer.head, pos("a", 50));
            // The shared read starts at the oldest position asked for (10).
            assert_eq!(answer.entries.len(), 40);
        }
        // A later request is a read of its own.
        let late = recovery
            .send(CatchUp { after: None })
            .await
            .unwrap()
            .unwrap();
        assert!(!late.recovered);
        assert_eq!(reads.get(), 2);
    }

    #[test]
    fn one_read_serves_the_oldest_position_of_the_common_epoch() {
        let positions = [pos("a", 5), pos("b", 1), pos("a", 3), pos("a", 9)];
        assert_eq!(oldest(positions.iter()), Some(pos("a", 3)));
        assert_eq!(oldest([].iter()), None);
    }

    #[test]
    fn each_waiter_learns_whether_it_is_recovered() {
        let read = LogRead {
            epoch: Arc::from("a"),
            head: 5,
            entries: (4..=5)
                .map(|seq| LogEntry {
                    seq,
                    channel: Arc::from("c"),
                    payload: Bytes::from_static(b"{\"data\":1}"),
                })
                .collect(),
            complete: true,
        };
        let wanted = [
            Some(pos("a", 3)),
            Some(pos("a", 5)),
            Some(pos("b", 4)),
            None,
            Some(pos("a", 7)),
        ];
        let (batch, answers): (Vec<Waiter>, Vec<_>) = wanted
            .into_iter()
            .map(|w| {
                let (tx, rx) = oneshot::channel();
                ((w, tx), rx)
            })
            .unzip();
        answer(batch, Some(&pos("a", 3)), Ok(read));
        let got: Vec<bool> = answers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap().unwrap().recovered)
            .collect();
        assert_eq!(got, [true, true, false, false, false]);
    }
}
