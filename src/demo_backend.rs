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
//! State (who is online, who is in which room) lives in memory; sessions that go away without
//! leaving stay listed until a user of the same name logs in again.
//!
//! Clients resend a message they saw no acknowledgement for (after a reconnect) with the same
//! id, so delivery is at least once: a repeated `messageId` of a session is answered with 204
//! and has no effect (the answer to the first one reaches the client through the log).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use actix_web::{web, App, HttpResponse, HttpServer};
use log::{info, warn};
use serde::Deserialize;
use serde_json::{json, Value};

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

/// How many message ids are remembered to drop repeats (the newest).
const SEEN_IDS: usize = 10_000;

/// The newest message ids seen, per session.
#[derive(Default)]
struct Seen {
    order: std::collections::VecDeque<(String, String)>,
    ids: std::collections::HashSet<(String, String)>,
}

impl Seen {
    /// Whether `(session, id)` is new; remembers it.
    fn first(&mut self, session: &str, id: &str) -> bool {
        let key = (session.to_owned(), id.to_owned());
        if !self.ids.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN_IDS {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

/// Who is online and where.
#[derive(Default)]
struct Chat {
    /// name → session id
    users: HashMap<String, String>,
    /// room → session id → name
    rooms: BTreeMap<String, BTreeMap<String, String>>,
}

struct Demo {
    chat: Mutex<Chat>,
    seen: Mutex<Seen>,
    api: String,
    key: String,
}

thread_local! {
    /// The server API client of this thread (awc clients stay on their thread).
    static CLIENT: awc::Client = awc::Client::default();
}

/// The rooms every user starts in and may join.
const LOBBY: &str = "lobby";

fn valid_name(name: &str) -> bool {
    let len = name.chars().count();
    (1..=24).contains(&len)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

fn valid_room(room: &str) -> bool {
    (1..=20).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn fail(message: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"topic": "chat.fail", "data": {"message": message}}))
}

impl Demo {
    /// Publishes through Rohrpost's server API; failures are logged (the chat goes on).
    async fn api(&self, path: &str, body: Value) {
        let url = format!("{}{}", self.api, path);
        let request = CLIENT.with(|c| {
            c.post(&url)
                .insert_header(("Authorization", format!("Bearer {}", self.key)))
        });
        let sent = request.send_json(&body).await;
        match sent {
            Ok(res) if res.status().is_success() => {}
            Ok(res) => warn!("demo backend: {url} answered {}", res.status()),
            Err(e) => warn!("demo backend: {url} failed: {e}"),
        }
    }

    fn users_of(&self, room: &str) -> Vec<String> {
        let chat = self.chat.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = chat
            .rooms
            .get(room)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    async fn broadcast_users(&self, room: &str) {
        let users = self.users_of(room);
        self.api(
            "/api/publish",
            json!({"topic": format!("chat.room.{room}"), "data": {"type": "users", "room": room, "users": users}}),
        )
        .await;
    }
}

async fn message(
    topic: web::Path<String>,
    body: web::Json<ClientMessage>,
    demo: web::Data<Demo>,
) -> HttpResponse {
    let msg = body.into_inner();
    if let Some(id) = &msg.message_id {
        let first = demo
            .seen
            .lock()
            .map(|mut seen| seen.first(&msg.session_id, id))
            .unwrap_or(true);
        if !first {
            info!(
                "demo repeated message dropped session={} id={id}",
                msg.session_id
            );
            return HttpResponse::NoContent().finish();
        }
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

async fn login(demo: &Demo, msg: &ClientMessage) -> HttpResponse {
    let name = msg.data["name"].as_str().unwrap_or("").trim().to_owned();
    if !valid_name(&name) {
        return fail("a name is 1 to 24 letters, digits, - or _");
    }
    {
        let mut chat = demo.chat.lock().unwrap_or_else(|e| e.into_inner());
        if chat.users.get(&name).is_some_and(|s| *s != msg.session_id) {
            return fail("that name is taken");
        }
        chat.users.insert(name.clone(), msg.session_id.clone());
        chat.rooms
            .entry(LOBBY.into())
            .or_default()
            .insert(msg.session_id.clone(), name.clone());
    }
    info!("demo backend: login name={name:?}");
    demo.broadcast_users(LOBBY).await;
    // A page reloaded into a resumed session learns the rooms it is still in.
    let member_of: Vec<String> = demo
        .chat
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rooms
        .iter()
        .filter(|(_, members)| members.contains_key(&msg.session_id))
        .map(|(room, _)| room.clone())
        .collect();
    let rooms: Vec<Value> = member_of
        .into_iter()
        .map(|room| json!({"room": room, "users": demo.users_of(&room)}))
        .collect();
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
    demo.chat
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rooms
        .entry(room.clone())
        .or_default()
        .insert(msg.session_id.clone(), name.to_owned());
    demo.broadcast_users(&room).await;
    HttpResponse::Ok().json(json!({
        "add": [format!("chat.room.{room}")],
        "topic": "chat.joined",
        "data": {"room": room, "users": demo.users_of(&room)},
    }))
}

async fn leave(demo: &Demo, msg: &ClientMessage) -> HttpResponse {
    let room = msg.data["room"].as_str().unwrap_or("").to_owned();
    if let Some(members) = demo
        .chat
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rooms
        .get_mut(&room)
    {
        members.remove(&msg.session_id);
    }
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
    let member = demo
        .chat
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rooms
        .get(room)
        .is_some_and(|m| m.contains_key(&msg.session_id));
    if !member {
        return fail("join the room first");
    }
    demo.api(
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
    let session = demo
        .chat
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .users
        .get(to)
        .cloned();
    let Some(session) = session else {
        return fail("no such user");
    };
    let data = json!({"from": name, "to": to, "text": text});
    demo.api(
        &format!("/api/sessions/{session}"),
        json!({"topic": "chat.dm", "data": data}),
    )
    .await;
    // The sender sees its own message too.
    HttpResponse::Ok().json(json!({"topic": "chat.dm", "data": data}))
}

/// Runs the demo backend on `listen` until stopped; it calls the server API at `api` with `key`.
pub async fn run(listen: String, api: String, key: String) -> anyhow::Result<()> {
    let demo = web::Data::new(Demo {
        chat: Mutex::default(),
        seen: Mutex::default(),
        api: api.trim_end_matches('/').to_owned(),
        key,
    });
    info!("demo backend listening addr={listen} api={api}");
    HttpServer::new(move || {
        App::new()
            .app_data(demo.clone())
            .route("/rohrpost/{topic}", web::post().to(message))
    })
    .workers(1)
    .bind(listen)?
    .run()
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_rooms() {
        assert!(valid_name("Ada_Lovelace"));
        assert!(!valid_name("ada lovelace"));
        assert!(!valid_name("<script>"));
        assert!(valid_room("lobby"));
        assert!(!valid_room("Lobby"));
        assert!(!valid_room("a.b"));
    }

    #[test]
    fn repeated_message_ids_of_a_session_are_dropped_and_old_ones_forgotten() {
        let mut seen = Seen::default();
        assert!(seen.first("s1", "m1"));
        assert!(!seen.first("s1", "m1"));
        assert!(seen.first("s2", "m1"));
        for i in 0..SEEN_IDS {
            seen.first("s3", &i.to_string());
        }
        assert!(
            seen.first("s1", "m1"),
            "forgotten after SEEN_IDS newer ones"
        );
        assert_eq!(seen.order.len(), SEEN_IDS);
    }
}
