//! `--target nchan`: the same client against nginx with the nchan module, for a side-by-side
//! figure of what one connection costs. test/bench/nchan/nginx.conf is the server this expects,
//! with three locations under `--url`:
//! - `/sub/{topic}`: a subscriber; a session is a plain websocket there, every text frame one
//!   message (no `/connect`, no SockJS framing, no hello).
//! - `/pub/{topic}`: the HTTP publisher; the fan-out POSTs each message as the body, the same
//!   `{"topic": …, "data": {"t": µs, "i": …}}` a Rohrpost session receives.
//! - `/pubsub/{topic}`: a websocket that publishes what it sends on the topic (and listens on a
//!   channel nothing is published to): the inbound sessions; a subscriber on `/sub/{topic}`
//!   counts what arrives.
//!
//! Only `idle`, `fanout` and `inbound` have an nchan counterpart; the rest measure Rohrpost's
//! own features (HTTP topics, resumes, staged restarts, presence).

use super::client::Gateway;
use super::{BenchArgs, BenchError, Scenario, Target};

/// Which of nchan's locations a websocket opens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// `/sub/{topic}`: receives what is published on the topic.
    Subscriber,
    /// `/pubsub/{topic}`: what it sends is published on the topic.
    Publisher,
}

/// Where a run's sessions open: Rohrpost's main port, or the nchan `location` for them.
pub fn gateway(args: &BenchArgs, location: Location) -> Gateway {
    match args.target {
        Target::Rohrpost => Gateway::Rohrpost {
            main: args.url.clone(),
            legacy: args.legacy,
        },
        Target::Nchan => Gateway::Raw {
            url: websocket_url(&args.url, location, &args.topic),
        },
    }
}

/// The websocket URL of a location for `topic`, under nginx's base URL.
pub fn websocket_url(base: &str, location: Location, topic: &str) -> String {
    let path = match location {
        Location::Subscriber => "sub",
        Location::Publisher => "pubsub",
    };
    let base = base.trim_end_matches('/').replacen("http", "ws", 1);
    format!("{base}/{path}/{topic}")
}

/// The HTTP publisher's URL for `topic`.
pub fn publisher_url(base: &str, topic: &str) -> String {
    format!("{}/pub/{topic}", base.trim_end_matches('/'))
}

/// Refuses what has no nchan counterpart, saying why, before anything is opened.
pub fn check(args: &BenchArgs) -> Result<(), BenchError> {
    if args.target != Target::Nchan {
        return Ok(());
    }
    if !matches!(
        args.scenario,
        Scenario::Idle | Scenario::Fanout | Scenario::Inbound
    ) {
        return Err(BenchError::Usage(format!(
            "`{:?}` measures a Rohrpost feature that nchan has no counterpart of; with --target \
             nchan run idle, fanout or inbound",
            args.scenario
        )));
    }
    let rohrpost_only = [
        (args.legacy, "--legacy"),
        (args.redis.is_some(), "--redis"),
        (args.local_broker.is_some(), "--local-broker"),
        (args.stalled > 0, "--stalled"),
    ];
    if let Some((_, flag)) = rohrpost_only.iter().find(|(given, _)| *given) {
        return Err(BenchError::Usage(format!(
            "{flag} is Rohrpost's; with --target nchan the fan-out publishes through nchan's \
             HTTP publisher and inbound counts on its subscriber location"
        )));
    }
    if !args.url.starts_with("http://") {
        return Err(BenchError::Usage(format!(
            "--url {}: the nchan template serves plain http://",
            args.url
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(line: &str) -> BenchArgs {
        let argv = std::iter::once("bench").chain(line.split_whitespace());
        Cli::try_parse_from(argv).unwrap().bench
    }

    #[test]
    fn idle_fanout_and_inbound_run_against_nchan() {
        for scenario in ["idle", "fanout --rate 10", "inbound -k 5"] {
            let line = format!("{scenario} --target nchan --url http://127.0.0.1:4600");
            assert!(check(&args(&line)).is_ok(), "{line}");
        }
    }

    #[test]
    fn rohrpost_only_scenarios_are_refused_for_nchan() {
        for scenario in ["http", "soak", "recovery", "presence"] {
            let e = check(&args(&format!("{scenario} --target nchan")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("no counterpart"), "{scenario}: {e}");
        }
    }

    #[test]
    fn rohrpost_only_flags_are_refused_for_nchan() {
        for flag in ["--legacy", "--redis redis://127.0.0.1/", "--stalled 1"] {
            let e = check(&args(&format!("fanout --target nchan {flag}")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("is Rohrpost's"), "{flag}: {e}");
        }
        assert!(check(&args("fanout --legacy")).is_ok());
    }

    #[test]
    fn sessions_open_where_the_target_is() {
        let nchan = gateway(&args("idle --target nchan"), Location::Subscriber);
        assert!(matches!(nchan, Gateway::Raw { url } if url.ends_with("/sub/anonym.bench")));
        let rohrpost = gateway(&args("idle --legacy"), Location::Subscriber);
        assert!(matches!(rohrpost, Gateway::Rohrpost { legacy: true, .. }));
    }

    #[test]
    fn locations_are_under_the_base_url() {
        let base = "http://127.0.0.1:4600/";
        assert_eq!(
            websocket_url(base, Location::Subscriber, "anonym.bench"),
            "ws://127.0.0.1:4600/sub/anonym.bench"
        );
        assert_eq!(
            websocket_url(base, Location::Publisher, "anonym.bench"),
            "ws://127.0.0.1:4600/pubsub/anonym.bench"
        );
        assert_eq!(
            publisher_url(base, "anonym.bench"),
            "http://127.0.0.1:4600/pub/anonym.bench"
        );
    }
}
