//! The demo chat's backend (`rohrpost demo-backend`): an example of a Rohrpost backend.
//!
//! It never holds a connection to a browser. Rohrpost POSTs it the client messages of the
//! `chat.*` topics (an `[[http_topics]]` rule); it answers each one like a message on that
//! session's direct topic (granting patterns with `add`, setting `sessionData`, replying with
//! `data`), and it reaches other sessions through the server API: `POST /api/publish` broadcasts
//! to a room (every session whose whitelist matches `chat.room.<room>`), `POST /api/sessions/{id}`
//! sends a direct message.
//!
//! Topics (client → backend): `chat.login {name}`, `chat.join {room}`, `chat.leave {room}`,
//! `chat.say {room, text}`, `chat.dm {to, text}`. Replies and broadcasts (backend → client):
//! `chat.login.ok`, `chat.joined`, `chat.left`, `chat.fail`, `chat.dm` and, on
//! `chat.room.<room>`, `{type: "message" | "users", ...}`.
//!
//! Who is online and in which room lives in memory ([`chat::Chat`]). The backend learns that a user
//! has gone from Rohrpost's session events (`hooks.events_url`, here `POST /events`): a
//! `session.closed` — the page called `close()`, the session was kicked, or its connection went
//! away and was not resumed within `sessions.resume_grace` — takes the session out of every room,
//! tells those rooms their new user list and frees its name. A staged restart or a short network
//! cut sends no event (the session goes on, resumed), so no list changes. A `session.opened` of a
//! session that already has a name (Rohrpost lists a live session again whose directory entry it
//! had lost, after closing it) puts it back in the rooms its whitelist grants. Events can be lost
//! (Rohrpost gives up on a batch after `hooks.events_attempts`), so where it matters the server API
//! has the last word: a name held by a session Rohrpost no longer knows is free, and a direct
//! message to such a session says that its addressee has left.
//!
//! Delivery is at least once, both ways in: clients resend a message they saw no
//! acknowledgement for (after a reconnect) with the same id, and an event batch can be POSTed
//! again after a failover. A repeated `messageId` of a session, or a repeated `rohrpostPos` of an
//! event, is answered with 204 and has no effect ([`recent::Recent`]).

mod chat;
mod recent;
#[cfg(test)]
mod tests;

use std::sync::{Mutex, MutexGuard};

use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpResponse, HttpServer};
use log::{info, warn};
use serde::Deserialize;
use serde_json::{json, Value};

use chat::{valid_name, valid_room, Chat, LOBBY};
use recent::Recent;

/// What Rohrpost POSTs for a client message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientMessage {
    data: Value,
    session_id: String,
    #[serde(default)]
    session_data: Value,
    #[serde(default)]
    message_id: Option<String>,
}

/// What Rohrpost POSTs to `hooks.events_url`: 1 to 100 session events, in order.
#[derive(Debug, Deserialize)]
struct EventBatch {
    events: Vec<SessionEvent>,
}

/// One session event; the fields this backend uses (there are more: `worker`, `created`,
/// `time`, `detail`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionEvent {
    event: EventKind,
    session_id: String,
    /// What the backend set (`{"name"}` once logged in).
    #[serde(default)]
    session_data: Value,
    /// The session's patterns (`chat.room.<room>` for each room it is in).
    #[serde(default)]
    whitelist: Vec<String>,
    /// Why a session closed: `closed` (the client said bye), `kicked`, `expired`.
    #[serde(default)]
    reason: Option<String>,
    /// The event's unique position in Rohrpost's log: a repeat has the same one.
    #[serde(default)]
    rohrpost_pos: Option<String>,
}

/// What happened to the session. Each session has one `session.opened` and, later, exactly one
/// `session.closed`.
#[derive(Debug, Deserialize, PartialEq)]
enum EventKind {
    #[serde(rename = "session.opened")]
    Opened,
    #[serde(rename = "session.closed")]
    Closed,
    /// An event kind newer than this backend: ignored.
    #[serde(other)]
    Other,
}

/// How many message ids and event positions are remembered to drop repeats (the newest).
const SEEN: usize = 10_000;

/// The largest event batch accepted (100 events with their session data).
const EVENTS_LIMIT: usize = 1 << 20;

struct Demo {
    chat: Mutex<Chat>,
    /// (session id, message id) of the newest client messages.
    messages: Mutex<Recent<(String, String)>>,
    /// `rohrpostPos` of the newest session events.
    events: Mutex<Recent<String>>,
    api: String,
    key: String,
}

thread_local! {
    /// The server API client of this thread (awc clients stay on their thread).
    static CLIENT: awc::Client = awc::Client::default();
}

/// Locks `mutex`; a panic elsewhere while holding it leaves plain data, still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn fail(message: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"topic": "chat.fail", "data": {"message": message}}))
}

impl Demo {
    fn new(api: &str, key: String) -> web::Data<Demo> {
        web::Data::new(Demo {
            chat: Mutex::default(),
            messages: Mutex::new(Recent::new(SEEN)),
            events: Mutex::new(Recent::new(SEEN)),
            api: api.trim_end_matches('/').to_owned(),
            key,
        })
    }

    fn chat(&self) -> MutexGuard<'_, Chat> {
        lock(&self.chat)
    }

    /// A server API request to `url`, with the API key.
    fn request(&self, method: Method, url: &str) -> awc::ClientRequest {
        CLIENT.with(|c| {
            c.request(method, url)
                .insert_header(("Authorization", format!("Bearer {}", self.key)))
        })
    }

    /// POSTs `body` to the server API; answers its status, or `None` when it could not be
    /// reached. Failures are logged (the chat goes on).
    async fn post(&self, path: &str, body: Value) -> Option<StatusCode> {
        let url = format!("{}{}", self.api, path);
        match self.request(Method::POST, &url).send_json(&body).await {
            Ok(res) if res.status().is_success() => Some(res.status()),
            Ok(res) => {
                warn!("demo backend: {url} answered {}", res.status());
                Some(res.status())
            }
            Err(e) => {
                warn!("demo backend: {url} failed: {e}");
                None
            }
        }
    }

    /// Whether Rohrpost says that `session` no longer exists (`GET /api/sessions/{id}` is 404):
    /// it has ended, even if its `session.closed` has not arrived (or was lost).
    async fn is_gone(&self, session: &str) -> bool {
        let url = format!("{}/api/sessions/{session}", self.api);
        match self.request(Method::GET, &url).send().await {
            Ok(res) => res.status() == StatusCode::NOT_FOUND,
            Err(e) => {
                warn!("demo backend: {url} failed: {e}");
                false
            }
        }
    }

    /// Tells `room` its user list.
    async fn broadcast_users(&self, room: &str) {
        let users = self.chat().users_of(room);
        self.post(
            "/api/publish",
            json!({"topic": format!("chat.room.{room}"), "data": {"type": "users", "room": room, "users": users}}),
        )
        .await;
    }

    /// Lists a named session again, in the rooms its whitelist grants ([`Chat::reopen`]).
    async fn reopen(&self, event: &SessionEvent) {
        let Some(name) = event.session_data["name"].as_str() else {
            return;
        };
        let rooms: Vec<&str> = (event.whitelist.iter())
            .filter_map(|pattern| pattern.strip_prefix("chat.room."))
            .filter(|room| valid_room(room))
            .collect();
        if !self.chat().reopen(&event.session_id, name, &rooms) {
            return;
        }
        info!(
            "demo session listed again session={} name={name:?}",
            event.session_id
        );
        self.broadcast_users(LOBBY).await;
        for room in rooms.into_iter().filter(|room| *room != LOBBY) {
            self.broadcast_users(room).await;
        }
    }

    /// Forgets `session` (it has ended) and tells each room it was in the new user list.
    async fn depart(&self, session: &str) {
        let rooms = self.chat().depart(session);
        for room in rooms {
            self.broadcast_users(&room).await;
        }
    }
}

/// `POST /rohrpost/{topic}`: a client message on a `chat.*` topic.
async fn message(
    topic: web::Path<String>,
    body: web::Json<ClientMessage>,
    demo: web::Data<Demo>,
) -> HttpResponse {
    let msg = body.into_inner();
    if let Some(id) = &msg.message_id {
        if !lock(&demo.messages).first((msg.session_id.clone(), id.clone())) {
            info!(
                "demo repeated message dropped session={} id={id}",
                msg.session_id
            );
            return HttpResponse::NoContent().finish();
        }
    }
    if demo.chat().has_ended(&msg.session_id) {
        // Sent just before the session ended, and overtaken by its session.closed.
        info!(
            "demo message of an ended session dropped session={}",
            msg.session_id
        );
        return HttpResponse::NoContent().finish();
    }
    let name = msg.session_data["name"].as_str().map(str::to_owned);
    match (topic.as_str(), name) {
        ("chat.login", _) => login(&demo, &msg).await,
        (_, None) => fail("log in first"),
        ("chat.join", Some(name)) => join(&demo, &msg, &name).await,
        ("chat.leave", Some(_)) => leave(&demo, &msg).await,
        ("chat.say", Some(name)) => say(&demo, &msg, &name).await,
        ("chat.dm", Some(name)) => direct(&demo, &msg, &name).await,
        _ => HttpResponse::NoContent().finish(),
    }
}

/// `POST /events`: Rohrpost's session events. A 2xx answer acknowledges the whole batch;
/// anything else would make Rohrpost send it again.
async fn events(batch: web::Json<EventBatch>, demo: web::Data<Demo>) -> HttpResponse {
    for event in batch.into_inner().events {
        if let Some(pos) = &event.rohrpost_pos {
            if !lock(&demo.events).first(pos.clone()) {
                info!("demo repeated event dropped pos={pos}");
                continue;
            }
        }
        match event.event {
            EventKind::Closed => {
                info!(
                    "demo session closed session={} reason={}",
                    event.session_id,
                    event.reason.as_deref().unwrap_or("?")
                );
                demo.depart(&event.session_id).await;
            }
            // A new session has no name yet (it logs in after its welcome); one with a name
            // is a live session Rohrpost lists again after having closed it.
            EventKind::Opened => demo.reopen(&event).await,
            EventKind::Other => {}
        }
    }
    HttpResponse::NoContent().finish()
}

async fn login(demo: &Demo, msg: &ClientMessage) -> HttpResponse {
    let name = msg.data["name"].as_str().unwrap_or("").trim().to_owned();
    if !valid_name(&name) {
        return fail("a name is 1 to 24 letters, digits, - or _");
    }
    let mut taken = demo.chat().login(&msg.session_id, &name);
    if let Err(holder) = &taken {
        // Its holder may have ended without its session.closed having reached us.
        if demo.is_gone(holder).await {
            demo.depart(holder).await;
            taken = demo.chat().login(&msg.session_id, &name);
        }
    }
    if taken.is_err() {
        return fail("that name is taken");
    }
    info!("demo backend: login name={name:?}");
    demo.broadcast_users(LOBBY).await;
    // A page reloaded into a resumed session learns the rooms it is still in.
    let rooms: Vec<Value> = {
        let chat = demo.chat();
        chat.rooms_of(&msg.session_id)
            .into_iter()
            .map(|room| json!({"users": chat.users_of(&room), "room": room}))
            .collect()
    };
    HttpResponse::Ok().json(json!({
        "add": ["chat.join", "chat.leave", "chat.say", "chat.dm", format!("chat.room.{LOBBY}")],
        "sessionData": {"name": name},
        "topic": "chat.login.ok",
        "data": {"name": name, "rooms": rooms},
    }))
}

async fn join(demo: &Demo, msg: &ClientMessage, name: &str) -> HttpResponse {
    let room = msg.data["room"].as_str().unwrap_or("").to_owned();
    if !valid_room(&room) {
        return fail("a room name is 1 to 20 of a-z, 0-9 and -");
    }
    demo.chat().join(&msg.session_id, name, &room);
    demo.broadcast_users(&room).await;
    HttpResponse::Ok().json(json!({
        "add": [format!("chat.room.{room}")],
        "topic": "chat.joined",
        "data": {"room": room, "users": demo.chat().users_of(&room)},
    }))
}

async fn leave(demo: &Demo, msg: &ClientMessage) -> HttpResponse {
    let room = msg.data["room"].as_str().unwrap_or("").to_owned();
    demo.chat().leave(&msg.session_id, &room);
    demo.broadcast_users(&room).await;
    HttpResponse::Ok().json(json!({
        "remove": [format!("chat.room.{room}")],
        "topic": "chat.left",
        "data": {"room": room},
    }))
}

async fn say(demo: &Demo, msg: &ClientMessage, name: &str) -> HttpResponse {
    let room = msg.data["room"].as_str().unwrap_or("");
    let text = msg.data["text"].as_str().unwrap_or("");
    if text.is_empty() || text.chars().count() > 2000 {
        return fail("a message is 1 to 2000 characters");
    }
    if !demo.chat().is_member(&msg.session_id, room) {
        return fail("join the room first");
    }
    demo.post(
        "/api/publish",
        json!({"topic": format!("chat.room.{room}"),
               "data": {"type": "message", "room": room, "from": name, "text": text}}),
    )
    .await;
    HttpResponse::NoContent().finish()
}

async fn direct(demo: &Demo, msg: &ClientMessage, name: &str) -> HttpResponse {
    let to = msg.data["to"].as_str().unwrap_or("");
    let text = msg.data["text"].as_str().unwrap_or("");
    let Some(session) = demo.chat().session_of(to) else {
        return fail(&format!("{to} is not online"));
    };
    let data = json!({"from": name, "to": to, "text": text});
    let sent = demo
        .post(
            &format!("/api/sessions/{session}"),
            json!({"topic": "chat.dm", "data": data}),
        )
        .await;
    if sent == Some(StatusCode::NOT_FOUND) {
        // The session has ended; its session.closed has not reached us (or was lost).
        demo.depart(&session).await;
        return fail(&format!("{to} has left"));
    }
    // The sender sees its own message too.
    HttpResponse::Ok().json(json!({"topic": "chat.dm", "data": data}))
}

/// The backend's routes: client messages from `[[http_topics]]`, session events from
/// `hooks.events_url`.
fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/rohrpost/{topic}", web::post().to(message))
        .service(
            web::resource("/events")
                .app_data(web::JsonConfig::default().limit(EVENTS_LIMIT))
                .route(web::post().to(events)),
        );
}

/// Runs the demo backend on `listen` until stopped; it calls the server API at `api` with `key`.
pub async fn run(listen: String, api: String, key: String) -> anyhow::Result<()> {
    let demo = Demo::new(&api, key);
    info!("demo backend listening addr={listen} api={api}");
    HttpServer::new(move || App::new().app_data(demo.clone()).configure(routes))
        .workers(1)
        .bind(listen)?
        .run()
        .await?;
    Ok(())
}
