//! A scripted HTTP backend for `[[http_topics]]` rules.
//!
//! [`Backend::start`] serves every path on 127.0.0.1 with an actix-web server; rules point at
//! `<backend>/hook`, so requests come to `/hook/<topic>`. Each request is recorded (method, raw
//! path, decoded topic, headers, JSON body) for the test to inspect,
//! and answered
//! with whatever the test's script returns for it: a JSON value, a raw status and body, or an
//! answer held back for a while (to outlast a rule's timeout).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use percent_encoding::percent_decode_str;
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::common::WAIT;

/// A request the backend received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path as sent, still percent-encoded.
    pub raw_path: String,
    /// The path after `/hook/`, percent-decoded: the topic.
    pub topic: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
}

/// How the backend answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with a JSON body.
    Json(Value),
    /// Any status, content type and body.
    Raw {
        status: u16,
        content_type: &'static str,
        body: &'static str,
    },
    /// `answer`, but only after `delay`.
    Delayed(Duration, Box<Answer>),
}

type Script = Arc<dyn Fn(&Recorded) -> Answer + Send + Sync>;

/// A running backend; stopped when dropped.
pub struct Backend {
    port: u16,
    requests: UnboundedReceiver<Recorded>,
    handle: ServerHandle,
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Sends the stop command at once; the returned future only reports completion.
        drop(self.handle.stop(false));
    }
}

impl Backend {
    /// Starts a backend answering each request with `script(request)`.
    pub fn start(script: impl Fn(&Recorded) -> Answer + Send + Sync + 'static) -> Backend {
        let script: Script = Arc::new(script);
        let (tx, requests) = unbounded_channel();
        let server = HttpServer::new(move || {
            let state = (script.clone(), tx.clone());
            App::new()
                .app_data(web::Data::new(state))
                .default_service(web::to(hook))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the test backend");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Backend {
            port,
            requests,
            handle,
        }
    }

    /// The URL for a rule: requests go to `<url>/<topic>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The next request the backend received, within [`WAIT`].
    pub async fn next_request(&mut self) -> Recorded {
        actix_rt::time::timeout(WAIT, self.requests.recv())
            .await
            .unwrap_or_else(|_| panic!("the backend got no request within {WAIT:?}"))
            .expect("the backend is running")
    }
}

type State = web::Data<(Script, UnboundedSender<Recorded>)>;

async fn hook(req: HttpRequest, body: web::Bytes, state: State) -> HttpResponse {
    let raw_path = req.uri().path().to_owned();
    let encoded = raw_path.strip_prefix("/hook/").unwrap_or_default();
    let recorded = Recorded {
        topic: percent_decode_str(encoded).decode_utf8_lossy().into_owned(),
        raw_path,
        method: req.method().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_ascii_lowercase(), value)
            })
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let (script, tx) = state.get_ref();
    let mut answer = script(&recorded);
    let _ = tx.send(recorded);
    loop {
        match answer {
            Answer::Json(value) => return HttpResponse::Ok().json(value),
            Answer::Raw {
                status,
                content_type,
                body,
            } => {
                let status = actix_web::http::StatusCode::from_u16(status)
                    .expect("the script answers with a valid status");
                return HttpResponse::build(status)
                    .content_type(content_type)
                    .body(body);
            }
            Answer::Delayed(delay, inner) => {
                actix_rt::time::sleep(delay).await;
                answer = *inner;
            }
        }
    }
}
