//! The network between Rohrpost and Redis cut under a fan-out: for a second every connection
//! through the test proxy is reset, and so is every new one; then the network is back. Redis
//! itself keeps running, with its log.
//!
//! What the clients see: their websockets stay open throughout. The server API refuses
//! publishes while it cannot reach Redis; every number it accepted — also those under way to a
//! worker when the network was cut, and those accepted before a worker had reconnected —
//! arrives at every client, exactly once, in order, and nobody is told of a loss: the log has
//! everything, so the workers catch up from it.

use std::time::Duration;

use crate::books::{Books, Expect};
use crate::fan_out::{self, STREAM};
use crate::proxy::Fault;
use crate::setup::{BrokerUnderTest, Setup};

/// Clients of the fan-out.
const CLIENTS: usize = 20;
/// How long the network is cut.
const CUT: Duration = Duration::from_secs(1);
/// Publishing after the network is back: longer than a worker's reconnect backoff.
const LEAD_OUT: Duration = Duration::from_secs(3);

#[actix_rt::test]
async fn network_cut_between_rohrpost_and_redis_loses_nothing() {
    let setup = Setup::start(BrokerUnderTest::RedisBehindProxy, String::new()).await;
    let proxy = setup.proxy();
    let run = fan_out::through(setup.main_port(), CLIENTS, LEAD_OUT, async |_| {
        proxy.set(Fault::Reset);
        actix_rt::time::sleep(CUT).await;
        proxy.set(Fault::None);
    })
    .await;
    let owed = run.published.accepted();
    let books = Books::count("network to Redis cut", &run.trackers, |_| {
        Expect::exactly(STREAM, owed.clone())
    });
    println!("{}", run.figures());
    books.assert_ok();
    assert_eq!(run.published.without_pos(), 0, "every 202 carries a pos");
}
