//! Sessions the server closes on its own are counted in `/metrics` by reason: here a client that
//! floods past its token bucket (`limits.burst`) is closed with 1008 and counted as `rate_limit`.

use serde_json::json;

use crate::client::{Client, Event};
use crate::common::WAIT;
use crate::main_port::{wait_counter, worker_ws_url};
use crate::process::{Options, Supervisor};

#[actix_rt::test]
async fn a_flooding_client_is_closed_with_1008_and_counted() {
    let (sup, port) = Supervisor::start_one(Options {
        extra_config: "[limits]\nmessages_per_second = 1\nburst = 5\n".into(),
        ..Options::default()
    })
    .await;
    let (mut flooder, _) = Client::new_session(&worker_ws_url(port)).await;
    let (mut bystander, _) = Client::new_session(&worker_ws_url(port)).await;

    // 5 pass, the next 5 are refused with rate_limited, and one more ends the session.
    let mut refused = 0;
    let mut closed = None;
    for i in 0..20 {
        if flooder.publish("anonym.flood", json!(i)).await.is_err() {
            break;
        }
    }
    while let Some(event) = flooder.next_event(WAIT).await {
        match event {
            Event::Message { topic, data } if topic == "rohrpost.error" => {
                assert_eq!(data["code"], "rate_limited", "{data}");
                refused += 1;
            }
            Event::Closed(code) => {
                closed = code;
                break;
            }
            Event::Message { .. } => {}
        }
    }
    assert_eq!(closed, Some(1008), "closed for the flood");
    assert!(refused >= 5, "refusals before the close: {refused}");
    wait_counter(&sup, "rohrpost_forced_closes_total", "rate_limit", 1).await;
    wait_counter(&sup, "rohrpost_forced_closes_total", "slow_consumer", 0).await;

    // Nobody else was touched.
    bystander
        .publish("anonym.calm", json!("still here"))
        .await
        .expect("the bystander's session is open");
    bystander.close().await;
}
