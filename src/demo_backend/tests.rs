//! The demo backend's handlers driven as Rohrpost drives them (client messages and event
//! batches), against a stand-in for the server API that records every call.

use std::collections::HashSet;
use std::sync::Arc;

use actix_http::Request;
use actix_web::dev::{ServerHandle, Service, ServiceResponse};
use actix_web::test::{call_service, init_service, read_body, TestRequest};
use actix_web::HttpRequest;

use super::*;

/// A stand-in for Rohrpost's server API: records every call (path and JSON body) and answers
/// 404 for `/api/sessions/{id}` of the sessions in `gone` (Rohrpost no longer knows them).
struct FakeApi {
    base: String,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    handle: ServerHandle,
}

impl FakeApi {
    fn start(gone: &[&str]) -> FakeApi {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let gone: Arc<HashSet<String>> = Arc::new(gone.iter().map(|s| s.to_string()).collect());
        let seen = calls.clone();
        let server = HttpServer::new(move || {
            let seen = seen.clone();
            let gone = gone.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                lock(&seen).push((req.path().to_owned(), body));
                let session = req.path().strip_prefix("/api/sessions/").unwrap_or("");
                let known = !gone.contains(session);
                async move {
                    match known {
                        true => HttpResponse::Ok().json(json!({})),
                        false => HttpResponse::NotFound().finish(),
                    }
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        FakeApi {
            base: format!("http://127.0.0.1:{port}"),
            calls,
            handle,
        }
    }

    /// The user lists published since the last call, as (room, users).
    fn user_lists(&self) -> Vec<(String, Vec<String>)> {
        lock(&self.calls)
            .drain(..)
            .filter(|(path, body)| path == "/api/publish" && body["data"]["type"] == "users")
            .map(|(_, body)| {
                let users = body["data"]["users"].as_array().unwrap().iter();
                (
                    body["data"]["room"].as_str().unwrap().to_owned(),
                    users.map(|u| u.as_str().unwrap().to_owned()).collect(),
                )
            })
            .collect()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// The demo backend's app, talking to `api`.
async fn backend(
    api: &FakeApi,
) -> (
    web::Data<Demo>,
    impl Service<Request, Response = ServiceResponse, Error = actix_web::Error>,
) {
    let demo = Demo::new(&api.base, "test-key".into());
    let app = init_service(App::new().app_data(demo.clone()).configure(routes)).await;
    (demo, app)
}

/// What Rohrpost POSTs for `session` (logged in as `name`, if any) on `topic`.
fn client_message(topic: &str, session: &str, name: Option<&str>, data: Value) -> TestRequest {
    let session_data = name.map_or(Value::Null, |name| json!({"name": name}));
    TestRequest::post()
        .uri(&format!("/rohrpost/{topic}"))
        .set_json(json!({"data": data, "sessionId": session, "sessionData": session_data}))
}

/// A batch of one `session.closed` of `session`, at `pos` in Rohrpost's log.
fn closed(session: &str, pos: &str) -> TestRequest {
    TestRequest::post()
        .uri("/events")
        .set_json(json!({"events": [{
            "event": "session.closed", "sessionId": session, "sessionData": {}, "whitelist": [],
            "worker": 0, "created": 1_700_000_000, "time": 1_700_000_000_000_u64,
            "reason": "expired", "rohrpostPos": pos,
        }]}))
}

/// Sends `request` to `app`; answers the status and the JSON body (null for none).
async fn send(
    app: &impl Service<Request, Response = ServiceResponse, Error = actix_web::Error>,
    request: TestRequest,
) -> (StatusCode, Value) {
    let res = call_service(app, request.to_request()).await;
    let status = res.status();
    let body = read_body(res).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[test]
fn an_event_batch_parses_with_the_fields_the_backend_uses() {
    let batch: EventBatch = serde_json::from_value(json!({"events": [
        {"event": "session.opened", "sessionId": "s1", "sessionData": null, "whitelist": [],
         "worker": 1, "created": 1_700_000_000, "time": 1_700_000_000_000_u64,
         "rohrpostPos": "0000abcd00000:41"},
        {"event": "session.closed", "sessionId": "s1", "sessionData": {"name": "ada"},
         "reason": "expired", "rohrpostPos": "0000abcd00000:42"},
        {"event": "session.renamed", "sessionId": "s1"},
    ]}))
    .unwrap();
    let kinds: Vec<&EventKind> = batch.events.iter().map(|e| &e.event).collect();
    assert_eq!(
        kinds,
        [&EventKind::Opened, &EventKind::Closed, &EventKind::Other]
    );
    assert_eq!(batch.events[1].reason.as_deref(), Some("expired"));
    assert_eq!(
        batch.events[1].rohrpost_pos.as_deref(),
        Some("0000abcd00000:42")
    );
    assert_eq!(batch.events[2].rohrpost_pos, None);
}

#[actix_rt::test]
async fn a_closed_session_leaves_every_room_and_each_is_told_its_new_list() {
    let api = FakeApi::start(&[]);
    let (demo, app) = backend(&api).await;
    send(
        &app,
        client_message("chat.login", "s1", None, json!({"name": "ada"})),
    )
    .await;
    send(
        &app,
        client_message("chat.login", "s2", None, json!({"name": "bob"})),
    )
    .await;
    let (_, joined) = send(
        &app,
        client_message("chat.join", "s1", Some("ada"), json!({"room": "rust"})),
    )
    .await;
    assert_eq!(joined["data"]["users"], json!(["ada"]));
    api.user_lists();

    let (status, _) = send(&app, closed("s1", "p:1")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "the batch is acknowledged");
    assert_eq!(
        api.user_lists(),
        [
            ("lobby".to_owned(), vec!["bob".to_owned()]),
            ("rust".to_owned(), vec![])
        ]
    );
    assert_eq!(demo.chat().session_of("ada"), None);
}

#[actix_rt::test]
async fn the_name_of_a_closed_session_is_free_again() {
    let api = FakeApi::start(&[]);
    let (_, app) = backend(&api).await;
    send(
        &app,
        client_message("chat.login", "s1", None, json!({"name": "ada"})),
    )
    .await;
    let (_, taken) = send(
        &app,
        client_message("chat.login", "s2", None, json!({"name": "ada"})),
    )
    .await;
    assert_eq!(taken["topic"], "chat.fail");
    assert_eq!(taken["data"]["message"], "that name is taken");

    send(&app, closed("s1", "p:1")).await;
    let (_, ok) = send(
        &app,
        client_message("chat.login", "s2", None, json!({"name": "ada"})),
    )
    .await;
    assert_eq!(ok["topic"], "chat.login.ok");
    assert_eq!(ok["sessionData"], json!({"name": "ada"}));
}

#[actix_rt::test]
async fn an_event_at_a_position_already_handled_is_dropped() {
    let api = FakeApi::start(&[]);
    let (demo, app) = backend(&api).await;
    send(
        &app,
        client_message("chat.login", "s1", None, json!({"name": "ada"})),
    )
    .await;
    send(&app, closed("s1", "p:1")).await;
    send(
        &app,
        client_message("chat.login", "s2", None, json!({"name": "ada"})),
    )
    .await;
    api.user_lists();

    // Only the position tells a repeat: this one says s2 closed, but p:1 was handled.
    let (status, _) = send(&app, closed("s2", "p:1")).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a repeat is acknowledged too"
    );
    assert_eq!(demo.chat().session_of("ada").as_deref(), Some("s2"));
    assert_eq!(api.user_lists(), []);
}

#[actix_rt::test]
async fn a_session_opened_again_with_a_name_is_listed_again_in_its_rooms() {
    let api = FakeApi::start(&[]);
    let (demo, app) = backend(&api).await;
    send(
        &app,
        client_message("chat.login", "s1", None, json!({"name": "ada"})),
    )
    .await;
    send(&app, closed("s1", "p:1")).await;
    api.user_lists();
    let opened = json!({"events": [{
        "event": "session.opened", "sessionId": "s1", "sessionData": {"name": "ada"},
        "whitelist": ["chat.login", "chat.room.lobby", "chat.room.rust"], "rohrpostPos": "p:2",
    }]});
    let (status, _) = send(&app, TestRequest::post().uri("/events").set_json(opened)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.user_lists(),
        [
            ("lobby".to_owned(), vec!["ada".to_owned()]),
            ("rust".to_owned(), vec!["ada".to_owned()])
        ]
    );
    assert!(!demo.chat().has_ended("s1"), "its messages count again");
}

#[actix_rt::test]
async fn a_new_session_without_a_name_is_not_listed() {
    let api = FakeApi::start(&[]);
    let (demo, app) = backend(&api).await;
    let opened = json!({"events": [{
        "event": "session.opened", "sessionId": "s1", "sessionData": null,
        "whitelist": ["chat.login"], "rohrpostPos": "p:1",
    }]});
    send(&app, TestRequest::post().uri("/events").set_json(opened)).await;
    assert_eq!(demo.chat().users_of(LOBBY), Vec::<String>::new());
    assert_eq!(api.user_lists(), []);
}

#[actix_rt::test]
async fn a_message_of_an_ended_session_changes_nothing() {
    let api = FakeApi::start(&[]);
    let (demo, app) = backend(&api).await;
    send(
        &app,
        client_message("chat.login", "s1", None, json!({"name": "ada"})),
    )
    .await;
    send(&app, closed("s1", "p:1")).await;
    let (status, _) = send(
        &app,
        client_message("chat.join", "s1", Some("ada"), json!({"room": "rust"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(
        &app,
        client_message("chat.login", "s1", None, json!({"name": "ada"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(demo.chat().users_of("rust"), Vec::<String>::new());
    assert_eq!(demo.chat().session_of("ada"), None);
}

#[actix_rt::test]
async fn a_direct_message_to_a_name_not_online_says_so() {
    let api = FakeApi::start(&[]);
    let (_, app) = backend(&api).await;
    send(
        &app,
        client_message("chat.login", "s1", None, json!({"name": "ada"})),
    )
    .await;
    send(
        &app,
        client_message("chat.login", "s2", None, json!({"name": "bob"})),
    )
    .await;
    send(&app, closed("s1", "p:1")).await;
    let (_, answer) = send(
        &app,
        client_message(
            "chat.dm",
            "s2",
            Some("bob"),
            json!({"to": "ada", "text": "hi"}),
        ),
    )
    .await;
    assert_eq!(answer["topic"], "chat.fail");
    assert_eq!(answer["data"]["message"], "ada is not online");
}

#[actix_rt::test]
async fn a_direct_message_to_a_session_the_server_no_longer_knows_says_it_has_left() {
    let api = FakeApi::start(&["s1"]); // s1 ended, and its session.closed never came
    let (demo, app) = backend(&api).await;
    send(
        &app,
        client_message("chat.login", "s1", None, json!({"name": "ada"})),
    )
    .await;
    send(
        &app,
        client_message("chat.login", "s2", None, json!({"name": "bob"})),
    )
    .await;
    api.user_lists();
    let (_, answer) = send(
        &app,
        client_message(
            "chat.dm",
            "s2",
            Some("bob"),
            json!({"to": "ada", "text": "hi"}),
        ),
    )
    .await;
    assert_eq!(answer["topic"], "chat.fail");
    assert_eq!(answer["data"]["message"], "ada has left");
    assert_eq!(
        api.user_lists(),
        [("lobby".to_owned(), vec!["bob".to_owned()])]
    );
    assert_eq!(demo.chat().session_of("ada"), None);
}

#[actix_rt::test]
async fn a_name_held_by_a_session_the_server_no_longer_knows_is_free() {
    let api = FakeApi::start(&["s1"]);
    let (_, app) = backend(&api).await;
    send(
        &app,
        client_message("chat.login", "s1", None, json!({"name": "ada"})),
    )
    .await;
    let (_, ok) = send(
        &app,
        client_message("chat.login", "s2", None, json!({"name": "ada"})),
    )
    .await;
    assert_eq!(ok["topic"], "chat.login.ok");
}

#[actix_rt::test]
async fn a_name_held_by_a_live_session_stays_taken() {
    let api = FakeApi::start(&[]);
    let (_, app) = backend(&api).await;
    send(
        &app,
        client_message("chat.login", "s1", None, json!({"name": "ada"})),
    )
    .await;
    let (_, taken) = send(
        &app,
        client_message("chat.login", "s2", None, json!({"name": "ada"})),
    )
    .await;
    assert_eq!(taken["data"]["message"], "that name is taken");
    assert!(
        lock(&api.calls)
            .iter()
            .any(|(path, _)| path == "/api/sessions/s1"),
        "the server API was asked whether s1 still exists"
    );
}
