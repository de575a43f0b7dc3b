//! `rohrpost bench recovery`: the cost of a recovery burst. N sessions follow a numbered fan-out
//! published through the server API at `--rate` (default 50/s); a staged restart
//! (`POST /api/restart`) moves every one of them, each resuming with its token and its last
//! position (`since`) the moment its worker closes it with 1012.
//!
//! For every resume it measures the time from the 1012 close to the session being caught up:
//! its welcome arrived and it holds every number published before that welcome, once, in order.
//! Resumes are grouped into bursts (one per draining worker: a close more than 250 ms after the
//! previous one starts a new burst); for each burst, the time from its first close until its last session was
//! caught up. Every number is accounted for per session: received once and in order, or lost
//! after a `recovered: false` (reported), or lost silently (the run fails).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use super::client::{self, Resume, Welcome};
use super::publisher::Publisher;
use super::scenarios::Clients;
use super::soak::{restart, settle};
use super::system;
use super::{BenchArgs, BenchError};

/// Closes this far apart belong to different drains.
const BURST_GAP: Duration = Duration::from_millis(250);

/// What every follower of the run shares.
struct Shared {
    /// The highest number the server API has accepted (-1: none yet).
    published: Cell<i64>,
    /// The number being published now: a session welcomed meanwhile is owed only later ones.
    sending: Cell<i64>,
    /// Set once the last number is published: sessions end once they hold it (or at the
    /// deadline, counting what they miss as lost).
    stop: Cell<bool>,
    give_up: Cell<Option<Instant>>,
    books: RefCell<Books>,
}

/// What the followers count together.
#[derive(Default)]
struct Books {
    connected: usize,
    resumes: u64,
    recovered: u64,
    not_recovered: u64,
    delivered: u64,
    lost: u64,
    reported: u64,
    duplicates: u64,
    /// (1012 close, caught up) of every resume.
    catch_ups: Vec<(Instant, Instant)>,
    errors: u64,
}

/// One session: its position, its last number, and where a resume stands.
struct Follower {
    welcome: Welcome,
    /// Numbers up to this one are not owed (published before the session's first welcome).
    base: i64,
    last: i64,
    /// While resuming: the close, and (after the welcome) the number it must reach.
    closed_at: Option<Instant>,
    owed: Option<i64>,
}

impl Follower {
    /// Counts one message; whether the session is caught up with a resume now.
    fn take(&mut self, v: &Value, topic: &str, books: &mut Books) {
        if let Some(pos) = v["pos"].as_str() {
            self.welcome.pos = Some(pos.to_string());
        }
        if v["topic"] == "rohrpost.pos" {
            if let Some(pos) = v["data"]["pos"].as_str() {
                self.welcome.pos = Some(pos.to_string());
            }
            return;
        }
        if v["topic"] != topic {
            return;
        }
        let i = v["data"]["i"].as_i64().unwrap_or(-1);
        if i <= self.base {
            return;
        }
        if i <= self.last {
            books.duplicates += 1;
            return;
        }
        if i > self.last + 1 {
            books.lost += (i - self.last - 1) as u64;
        }
        books.delivered += 1;
        self.last = i;
    }

    fn check_caught_up(&mut self, books: &mut Books) {
        if let (Some(closed), Some(owed)) = (self.closed_at, self.owed) {
            if self.last >= owed {
                books.catch_ups.push((closed, Instant::now()));
                self.closed_at = None;
                self.owed = None;
            }
        }
    }
}

/// Follows the fan-out on one session until the run stops, resuming after every close.
async fn follow(http: awc::Client, main: String, topic: String, shared: Rc<Shared>) {
    let mut follower: Option<Follower> = None;
    loop {
        let resume = follower.as_ref().map(|f| Resume {
            token: &f.welcome.resume,
            since: f.welcome.pos.as_deref(),
        });
        let (mut conn, mut welcome) = match client::dial(&http, &main, false, resume).await {
            Ok(opened) => opened,
            Err(e) => {
                {
                    let mut books = shared.books.borrow_mut();
                    books.errors += 1;
                    if books.errors <= 5 {
                        log::warn!("recovery: connecting failed (retrying): {e}");
                    }
                }
                actix_rt::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let published = shared.published.get();
        let floor = shared.sending.get().max(published);
        let rest = std::mem::take(&mut welcome.rest);
        let mut f = match follower.take() {
            Some(mut f) => {
                let mut books = shared.books.borrow_mut();
                books.resumes += 1;
                if welcome.recovered == Some(true) {
                    books.recovered += 1;
                } else {
                    books.not_recovered += 1;
                    books.reported += (floor - f.last).max(0) as u64;
                    f.last = floor;
                }
                f.owed = Some(published);
                if welcome.pos.is_none() {
                    welcome.pos = f.welcome.pos.take();
                }
                f.welcome = welcome;
                f
            }
            None => Follower {
                welcome,
                base: floor,
                last: floor,
                closed_at: None,
                owed: None,
            },
        };
        {
            let mut books = shared.books.borrow_mut();
            books.connected += 1;
            for message in rest {
                if let Ok(v) = serde_json::from_str::<Value>(&message) {
                    f.take(&v, &topic, &mut books);
                }
            }
            f.check_caught_up(&mut books);
        }
        loop {
            if done(&shared, &f) {
                break;
            }
            let frame = tokio::select! {
                frame = conn.next() => frame,
                () = actix_rt::time::sleep(Duration::from_millis(200)) => continue,
            };
            let text = match frame {
                Some(Ok(Frame::Text(text))) => text,
                Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Binary(_))) => continue,
                _ => break,
            };
            let text = std::str::from_utf8(&text).unwrap_or("");
            if text.starts_with('c') {
                break;
            }
            if !text.starts_with("a[") {
                continue;
            }
            let mut books = shared.books.borrow_mut();
            for message in client::frame_messages(text) {
                if let Ok(v) = serde_json::from_str::<Value>(&message) {
                    f.take(&v, &topic, &mut books);
                }
            }
            f.check_caught_up(&mut books);
        }
        shared.books.borrow_mut().connected -= 1;
        if done(&shared, &f) {
            let _ = conn.send(Message::Close(None)).await;
            let published = shared.published.get();
            let mut books = shared.books.borrow_mut();
            books.lost += (published - f.last).max(0) as u64;
            return;
        }
        f.closed_at = Some(Instant::now());
        follower = Some(f);
    }
}

/// Whether a session is done: the run stopped, and it holds the last number published (or the
/// run gave up waiting).
fn done(shared: &Shared, f: &Follower) -> bool {
    shared.stop.get()
        && (f.last >= shared.published.get()
            || shared.give_up.get().is_some_and(|t| Instant::now() > t))
}

/// Percentile `q` (0..=1) of sorted milliseconds.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs the scenario; its report.
pub(super) async fn recovery(
    args: &BenchArgs,
    clients: &Clients,
    server: &[u32],
    deadline: Instant,
) -> Result<Value, BenchError> {
    if args.api_key.is_none() {
        return Err(BenchError::Usage(
            "recovery publishes and restarts through the server API: --api-key".into(),
        ));
    }
    let shared = Rc::new(Shared {
        published: Cell::new(-1),
        sending: Cell::new(-1),
        stop: Cell::new(false),
        give_up: Cell::new(None),
        books: RefCell::default(),
    });
    let http = clients.first().clone();
    let mut publisher = Publisher::new(args).await?;
    let rate = args.rate.unwrap_or(50.0).max(1.0);
    let mut tasks = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        let task = follow(
            clients.nth(i).clone(),
            args.url.clone(),
            args.topic.clone(),
            shared.clone(),
        );
        tasks.push(actix_rt::spawn(task));
        if i % args.concurrency.max(1) == 0 {
            actix_rt::task::yield_now().await;
        }
    }
    while shared.books.borrow().connected < args.sessions {
        if Instant::now() > deadline {
            return Err(BenchError::Server("sessions never all connected".into()));
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    // The numbered fan-out runs from now to the end.
    let publishing = {
        let shared = shared.clone();
        let args = args.clone();
        let http = http.clone();
        actix_rt::spawn(async move {
            let start = Instant::now();
            let mut i = 0i64;
            while !shared.stop.get() {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                actix_rt::time::sleep_until(due.into()).await;
                shared.sending.set(i);
                if publisher.publish(&http, &args, i).await {
                    shared.published.set(i);
                }
                i += 1;
            }
        })
    };
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    if !restart(&http, args).await? {
        return Err(BenchError::Server(
            "a staged restart is under way already".into(),
        ));
    }
    settle(&http, args).await;
    let rolled = started.elapsed();
    // Every session back and caught up, or the deadline.
    loop {
        let done = {
            let books = shared.books.borrow();
            books.connected == args.sessions && books.catch_ups.len() as u64 == books.resumes
        };
        if done || Instant::now() > deadline {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    shared
        .give_up
        .set(Some(Instant::now() + Duration::from_secs(30)));
    shared.stop.set(true);
    let _ = publishing.await;
    // Every session ends once it holds the last number (bounded by `give_up`).
    for task in tasks {
        let _ = actix_rt::time::timeout(Duration::from_secs(35), task).await;
    }
    let now_running = system::server_pids(&http, &args.url)
        .await
        .unwrap_or_else(|_| server.to_vec());
    let books = shared.books.borrow();
    let mut catch_ups = books.catch_ups.clone();
    catch_ups.sort_by_key(|(closed, _)| *closed);
    let mut latencies: Vec<f64> = (catch_ups.iter())
        .map(|(closed, caught)| caught.duration_since(*closed).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    // Bursts: a close more than BURST_GAP after the previous one starts a new one.
    let mut bursts: Vec<(Instant, Instant, usize)> = Vec::new();
    let mut previous: Option<Instant> = None;
    for &(closed, caught) in &catch_ups {
        let gap = previous.map_or(Duration::MAX, |p| closed.duration_since(p));
        previous = Some(closed);
        match bursts.last_mut() {
            Some((_, last, n)) if gap < BURST_GAP => {
                *last = (*last).max(caught);
                *n += 1;
            }
            _ => bursts.push((closed, caught, 1)),
        }
    }
    let bursts: Vec<Value> = (bursts.iter())
        .map(|(first, last, n)| {
            json!({"sessions": n, "all_caught_up_ms": last.duration_since(*first).as_secs_f64() * 1000.0})
        })
        .collect();
    Ok(json!({
        "scenario": "recovery",
        "sessions": args.sessions,
        "publish_rate": rate,
        "published": shared.published.get() + 1,
        "roll_seconds": rolled.as_secs_f64(),
        "resumes": books.resumes,
        "recovered": books.recovered,
        "not_recovered": books.not_recovered,
        "delivered": books.delivered,
        "lost": books.lost,
        "reported": books.reported,
        "duplicates": books.duplicates,
        "connect_errors": books.errors,
        "catch_up_ms": {
            "p50": percentile(&latencies, 0.5),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last().copied().unwrap_or(0.0),
        },
        "bursts": bursts,
        // The workers were replaced: their CPU time over the run cannot be summed from /proc.
        "server": {"rss_kib": system::rss_kib(&now_running)},
        "ok": books.lost == 0 && books.duplicates == 0 && books.resumes > 0,
    }))
}
