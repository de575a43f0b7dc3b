//! The hook the tests point `hooks.events_url` at: an HTTP server of the test's own that
//! records every batch of session events POSTed to it, and can refuse the first few.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::Value;

/// What the hook has been sent.
#[derive(Default)]
struct Received {
    /// Every event of every accepted batch, in the order they came.
    events: Mutex<Vec<Value>>,
    /// POSTs answered (accepted or refused).
    posts: AtomicUsize,
    /// POSTs still to refuse with 503.
    refuse: AtomicUsize,
}

/// A running hook; stopped when dropped.
pub struct Sink {
    pub port: u16,
    received: Arc<Received>,
    server: actix_web::dev::ServerHandle,
}

impl Sink {
    /// Starts a hook that answers the first `refuse` POSTs with 503, the rest with 204.
    pub fn start(refuse: usize) -> Sink {
        let received = Arc::new(Received {
            refuse: AtomicUsize::new(refuse),
            ..Received::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the hook");
        let port = listener.local_addr().expect("its address").port();
        let state = web::Data::from(received.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::JsonConfig::default().limit(1 << 24))
                .route("/events", web::post().to(take))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Sink {
            port,
            received,
            server: handle,
        }
    }

    /// The `hooks.events_url` of this hook.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/events", self.port)
    }

    /// Every event accepted so far.
    pub fn events(&self) -> Vec<Value> {
        self.received.events.lock().expect("events").clone()
    }

    /// POSTs answered so far.
    pub fn posts(&self) -> usize {
        self.received.posts.load(Ordering::SeqCst)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let stop = self.server.stop(false);
        actix_rt::spawn(stop);
    }
}

async fn take(body: web::Json<Value>, received: web::Data<Received>) -> HttpResponse {
    received.posts.fetch_add(1, Ordering::SeqCst);
    let refused = received
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refused {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let Some(events) = body["events"].as_array() else {
        return HttpResponse::BadRequest().body("no events array");
    };
    received
        .events
        .lock()
        .expect("events")
        .extend(events.iter().cloned());
    HttpResponse::NoContent().finish()
}
