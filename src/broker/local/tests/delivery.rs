//! Publish and subscribe: what is delivered, to whom, tagged how, in which order.

use super::*;

#[actix_rt::test]
async fn exact_and_wildcard_subscriptions_receive_what_they_match() {
    let dir = SocketDir::new();
    let _server = dir.serve().await;
    let mut h = Harness::connected(&dir.path()).await;
    let _ = Broker::of(&h.broker);
    let news = h.subscribe("news").await;
    let chat = h.subscribe("chat.*").await;
    h.publish("chat", "no dot, no match").await;
    h.publish("newsy", "no match either").await;
    h.publish("chat.a.b", "deep").await;
    h.publish("news", "hello").await;
    h.expect(&chat, "chat.a.b", "deep").await;
    h.expect(&news, "news", "hello").await;
}

#[actix_rt::test]
async fn glob_characters_other_than_star_are_literal() {
    let dir = SocketDir::new();
    let _server = dir.serve().await;
    let mut h = Harness::connected(&dir.path()).await;
    let question = h.subscribe("a?b").await;
    let brackets = h.subscribe("a[bc]").await;
    let brackets_glob = h.subscribe("c[de]*").await;
    let backslash = h.subscribe("e\\*").await;
    for miss in ["axb", "ab", "ac", "a[b]", "cd", "cdz", "e*"] {
        h.publish(miss, "miss").await;
    }
    let hits = [
        (&question, "a?b"),
        (&brackets, "a[bc]"),
        (&brackets_glob, "c[de]z"),
        (&backslash, "e\\z"),
    ];
    for (_, hit) in hits {
        h.publish(hit, "hit").await;
    }
    for (subscription, hit) in hits {
        h.expect(subscription, hit, "hit").await;
    }
}

/// A literal subscription (a session's direct topic) matches its own text only, `*` included,
/// across the wire; a wildcard of the same text still matches as a wildcard.
#[actix_rt::test]
async fn literal_subscriptions_match_only_their_own_text() {
    let dir = SocketDir::new();
    let _server = dir.serve().await;
    let mut h = Harness::connected(&dir.path()).await;
    let literal = Pattern::literal("rohrpost.client.a*", DEFAULT_MAX_TOPIC_LEN).unwrap();
    h.broker.do_send(Subscribe(literal.clone()));
    h.settle().await;
    h.publish("rohrpost.client.abc", "another session's").await;
    h.publish("rohrpost.client.a*", "its own").await;
    h.expect(&literal, "rohrpost.client.a*", "its own").await;
    let wildcard = h.subscribe("rohrpost.client.a*").await;
    h.publish("rohrpost.client.abc", "for the wildcard").await;
    h.expect(&wildcard, "rohrpost.client.abc", "for the wildcard")
        .await;
}

#[actix_rt::test]
async fn overlapping_subscriptions_deliver_once_per_subscription() {
    let dir = SocketDir::new();
    let _server = dir.serve().await;
    let mut h = Harness::connected(&dir.path()).await;
    let any = h.subscribe("x.*").await;
    let exact = h.subscribe("x.y").await;
    h.subscribe("x.y").await;
    h.publish("x.y", "both").await;
    h.publish("x.z", "only the wildcard").await;
    let (first, second) = (h.next().await, h.next().await);
    let mut via = [first.subscription.clone(), second.subscription.clone()];
    via.sort();
    let mut expected = [any.clone(), exact.clone()];
    expected.sort();
    assert_eq!(via, expected);
    for msg in [first, second] {
        assert_eq!((&*msg.channel, &msg.payload[..]), ("x.y", &b"both"[..]));
    }
    h.expect(&any, "x.z", "only the wildcard").await;
}

#[actix_rt::test]
async fn every_subscribed_client_receives() {
    let dir = SocketDir::new();
    let _server = dir.serve().await;
    let mut one = Harness::connected(&dir.path()).await;
    let mut other = Harness::connected(&dir.path()).await;
    let lobby = one.subscribe("room.*").await;
    other.subscribe("room.*").await;
    one.publish("room.lobby", "for everyone").await;
    one.expect(&lobby, "room.lobby", "for everyone").await;
    other.expect(&lobby, "room.lobby", "for everyone").await;
}

#[actix_rt::test]
async fn unsubscribe_stops_delivery() {
    let dir = SocketDir::new();
    let _server = dir.serve().await;
    let mut h = Harness::connected(&dir.path()).await;
    let exact = h.subscribe("room").await;
    let glob = h.subscribe("rooms.*").await;
    h.publish("room", "1").await;
    h.publish("rooms.x", "2").await;
    h.expect(&exact, "room", "1").await;
    h.expect(&glob, "rooms.x", "2").await;

    h.unsubscribe(&exact).await;
    h.unsubscribe(&glob).await;
    h.unsubscribe(&glob).await;
    h.publish("room", "3").await;
    h.publish("rooms.x", "4").await;
    let control = h.subscribe("control").await;
    h.publish("control", "5").await;
    h.expect(&control, "control", "5").await;
}

#[actix_rt::test]
async fn a_thousand_publishes_arrive_in_order() {
    let dir = SocketDir::new();
    let server = dir.serve().await;
    let mut h = Harness::connected(&dir.path()).await;
    let publisher = Harness::connected(&dir.path()).await;
    let seq = h.subscribe("seq").await;
    for i in 0..500 {
        publisher.publish("seq", &i.to_string()).await;
    }
    for i in 500..1000 {
        let delivered = server.publish("seq", Bytes::from(i.to_string())).await;
        assert_eq!(delivered, Ok(1));
    }
    for i in 0..1000 {
        h.expect(&seq, "seq", &i.to_string()).await;
    }
}

#[actix_rt::test]
async fn supervisor_publishes_through_the_handle() {
    let dir = SocketDir::new();
    let server = dir.serve().await;
    let mut h = Harness::connected(&dir.path()).await;
    let alerts = h.subscribe("alerts.*").await;
    let exact = h.subscribe("alerts.fire").await;
    let payload = Bytes::from_static(b"{\"level\":\"high\"}");
    assert_eq!(server.publish("alerts.fire", payload).await, Ok(2));
    assert_eq!(server.publish("nobody.listens", Bytes::new()).await, Ok(0));
    let mut via = [h.next().await.subscription, h.next().await.subscription];
    via.sort();
    assert_eq!(via, [alerts, exact]);
}

#[actix_rt::test]
async fn binary_payloads_round_trip() {
    let dir = SocketDir::new();
    let _server = dir.serve().await;
    let mut h = Harness::connected(&dir.path()).await;
    h.subscribe("bin").await;
    let payload: Vec<u8> = (0..=255u8).rev().chain([0, 0, b'"']).collect();
    h.try_publish("bin", &payload).await.unwrap();
    assert_eq!(&h.next().await.payload[..], &payload[..]);
    let record = Bytes::from(payload);
    h.store("bin", record.clone(), PROMPTLY).await.unwrap();
    assert_eq!(h.load("bin").await, Ok(Some(record)));
}
