use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use serde_json::json;

use super::connect_hook::{decide, ConnectInfo, ConnectRequest, HookAnswer};
use super::*;
use crate::config::HooksConfig;
use crate::http_backend::{HttpBackendError, Reply};
use crate::sockjs::Opening;

fn reply(status: u16, body: &'static str) -> Result<Reply, HttpBackendError> {
    Ok(Reply {
        status,
        body: Bytes::from_static(body.as_bytes()),
    })
}

fn with_hook(on_error: ConnectOnError, required: bool) -> Auth {
    let hooks = HooksConfig {
        connect_url: Some("http://127.0.0.1:9/connect".into()),
        connect_timeout: Duration::from_secs(1),
        connect_on_error: on_error,
        events_url: None,
        events_timeout: Duration::from_secs(1),
        events_attempts: 1,
    };
    Auth {
        tokens: None,
        hook: ConnectHook::from_config(&hooks),
        required,
    }
}

#[test]
fn a_2xx_answer_admits_with_its_add_remove_and_session_data_only() {
    assert_eq!(
        decide(reply(200, "")),
        HookAnswer::Admitted(BackendMessage::default())
    );
    assert_eq!(
        decide(reply(204, " \n")),
        HookAnswer::Admitted(BackendMessage::default())
    );
    let answer = decide(reply(
        200,
        r#"{"add": ["chat.*"], "remove": ["anonym.*"], "sessionData": {"user": "ada"}, "data": "hi", "topic": "x"}"#,
    ));
    let HookAnswer::Admitted(grant) = answer else {
        panic!("admitted: {answer:?}");
    };
    assert_eq!(grant.add, vec!["chat.*"]);
    assert_eq!(grant.remove, vec!["anonym.*"]);
    assert_eq!(grant.session_data, Some(json!({"user": "ada"})));
    assert_eq!(
        (grant.data, grant.topic),
        (None, None),
        "data is not delivered"
    );
    for unusable in ["[1]", "yes", r#"{"add": "chat.*"}"#] {
        assert!(
            matches!(decide(reply(200, unusable)), HookAnswer::Failed(_)),
            "{unusable}"
        );
    }
}

#[test]
fn a_4xx_answer_refuses_with_the_hooks_code_and_reason() {
    let refused = |status, body| match decide(reply(status, body)) {
        HookAnswer::Refused(r) => (r.code, r.reason),
        other => panic!("refused: {other:?}"),
    };
    assert_eq!(
        refused(403, r#"{"code": 4403, "reason": "Not logged in"}"#),
        (4403, "Not logged in".to_string())
    );
    assert_eq!(refused(401, ""), (4003, "Forbidden".to_string()));
    assert_eq!(refused(404, "not json"), (4003, "Forbidden".to_string()));
    assert_eq!(refused(302, ""), (4003, "Forbidden".to_string()));
    // Codes with a meaning of their own, or outside the application range, are replaced.
    for code in [4000, 4001, 4004, 1000, 3000, 5000, 70000] {
        let body: &'static str = Box::leak(format!(r#"{{"code": {code}}}"#).into_boxed_str());
        assert_eq!(refused(403, body).0, 4003, "code {code}");
    }
    let error = match decide(reply(403, r#"{"reason": "Banned"}"#)) {
        HookAnswer::Refused(r) => r.error,
        other => panic!("refused: {other:?}"),
    };
    assert_eq!(error.code, ErrorCode::Unauthorized);
    assert_eq!(error.message, "refused: Banned");
}

#[test]
fn a_hook_reason_is_cut_to_what_a_close_frame_holds() {
    let long = "ü".repeat(100); // 200 bytes
    let refusal = Refusal::by_hook(Some(4403), Some(&long));
    assert!(refusal.reason.len() <= MAX_REASON_BYTES);
    assert_eq!(refusal.reason, "ü".repeat(61));
    assert_eq!(Refusal::by_hook(None, Some("  ")).reason, "Forbidden");
}

#[test]
fn a_5xx_a_timeout_or_no_connection_is_a_failure() {
    assert!(matches!(decide(reply(500, "")), HookAnswer::Failed(_)));
    assert!(matches!(decide(reply(503, "{}")), HookAnswer::Failed(_)));
    let timeout = Err(HttpBackendError::Timeout(Duration::from_secs(1)));
    assert!(matches!(decide(timeout), HookAnswer::Failed(_)));
    let refused = Err(HttpBackendError::Unavailable("connection refused".into()));
    assert!(matches!(decide(refused), HookAnswer::Failed(_)));
}

#[test]
fn connect_on_error_decides_a_failure_and_required_still_wants_a_token() {
    let failed = || HookAnswer::Failed("timeout".into());
    let unavailable = Err(Refusal::unavailable());
    let refuse = with_hook(ConnectOnError::Refuse, false);
    assert_eq!(refuse.after_hook(failed(), true), unavailable);
    let allow = with_hook(ConnectOnError::Allow, false);
    assert_eq!(allow.after_hook(failed(), false), Ok(None));
    let allow_required = with_hook(ConnectOnError::Allow, true);
    assert_eq!(allow_required.after_hook(failed(), false), unavailable);
    assert_eq!(allow_required.after_hook(failed(), true), Ok(None));
    // A hook's own verdict is never overruled by the policy.
    let refusal = Refusal::by_hook(Some(4403), Some("no"));
    assert_eq!(
        allow.after_hook(HookAnswer::Refused(refusal.clone()), true),
        Err(refusal)
    );
    let grant = BackendMessage {
        add: vec!["chat.*".into()],
        ..BackendMessage::default()
    };
    assert_eq!(
        allow_required.after_hook(HookAnswer::Admitted(grant.clone()), false),
        Ok(Some(grant))
    );
    assert_eq!(Refusal::unavailable().code, 1013);
    assert_eq!(
        Refusal::unavailable().error.code,
        ErrorCode::AuthUnavailable
    );
}

#[test]
fn without_a_hook_required_means_a_valid_token() {
    let auth = Auth {
        tokens: None,
        hook: None,
        required: true,
    };
    assert!(auth.is_on());
    assert_eq!(auth.without_hook(false), Err(Refusal::required()));
    assert_eq!(auth.without_hook(true), Ok(()));
    let off = Auth {
        tokens: None,
        hook: None,
        required: false,
    };
    assert!(!off.is_on());
    assert_eq!(
        off.check_token(Some("anything")),
        Ok(None),
        "nothing to verify with"
    );
}

#[test]
fn token_refusals_say_the_level_and_close_with_4003() {
    let expired = Refusal::token(token::TokenError::Expired);
    assert_eq!(
        (expired.code, expired.reason.as_str()),
        (4003, "Token expired")
    );
    assert_eq!(expired.error.code, ErrorCode::Unauthorized);
    assert_eq!(expired.error.message, "token expired");
    let audience = Refusal::token(token::TokenError::Audience);
    assert_eq!(audience.reason, "Token has the wrong audience");
    assert_eq!(Refusal::required().code, FORBIDDEN.0);
}

#[test]
fn the_hook_sees_four_headers_the_query_and_the_address() {
    let mut headers = HeaderMap::new();
    let mut add = |name: &'static str, value: &'static str| {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    add("cookie", "a=1");
    add("cookie", "b=2");
    add("origin", "https://app.example");
    add("user-agent", "test/1");
    add("authorization", "Bearer xyz");
    add("x-forwarded-for", "10.0.0.1");
    add("sec-websocket-key", "abc");
    let opening = Opening {
        address: Some("192.0.2.7".parse().unwrap()),
        headers,
        query: "room=lobby&x=1".into(),
    };
    let info = ConnectInfo::of(&opening);
    let request = ConnectRequest::new("s1", true, &info, Some("a.b.c"));
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({
            "sessionId": "s1",
            "resume": true,
            "address": "192.0.2.7",
            "headers": {
                "Cookie": "a=1; b=2",
                "Origin": "https://app.example",
                "User-Agent": "test/1",
                "Authorization": "Bearer xyz",
            },
            "query": "room=lobby&x=1",
            "token": "a.b.c",
        })
    );
    let bare = ConnectInfo::of(&Opening::default());
    let request = ConnectRequest::new("s2", false, &bare, None);
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({"sessionId": "s2", "resume": false, "address": null, "headers": {}, "query": ""})
    );
}
