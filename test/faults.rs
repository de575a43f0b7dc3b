//! Fault injection against the real binary: a Redis that goes away, a flaky network between
//! Rohrpost and Redis, HTTP backends that misbehave, a worker killed mid fan-out.

mod common;
