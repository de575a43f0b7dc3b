//! The [`LocalBroker`]'s session directory handlers: each a request to the server.

use std::sync::Arc;

use actix::prelude::*;

use crate::broker::ttl_ms;
use bytes::Bytes;

use super::handlers::unexpected;
use super::{check_sizes, LocalBroker};
use crate::broker::directory::{EndEntry, GetEntry, ListEntries, Put, PutEntry, TouchEntries};
use crate::broker::local::wire::{PutOutcome, Request, Response};
use crate::broker::BrokerError;

impl Handler<PutEntry> for LocalBroker {
    type Result = ResponseFuture<Result<Put, BrokerError>>;

    fn handle(&mut self, msg: PutEntry, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = check_sizes(&msg.id, &msg.entry) {
            return Box::pin(futures_util::future::ready(Err(e)));
        }
        let (session, lease_ms, open) = (msg.id.to_string(), ttl_ms(msg.lease), msg.open);
        let put = move |id| Request::PutEntry {
            id,
            session,
            lease_ms,
            open,
        };
        let answer = self.run("put entry", put, msg.entry, ctx);
        Box::pin(async move {
            match answer.await? {
                (Response::Put { outcome, .. }, _) => Ok(match outcome {
                    PutOutcome::Opened => Put::Opened,
                    PutOutcome::Refreshed => Put::Refreshed,
                    PutOutcome::Gone => Put::Gone,
                }),
                (other, _) => Err(unexpected("put entry", &other)),
            }
        })
    }
}

impl Handler<TouchEntries> for LocalBroker {
    type Result = ResponseFuture<Result<Vec<Arc<str>>, BrokerError>>;

    fn handle(&mut self, msg: TouchEntries, ctx: &mut Context<Self>) -> Self::Result {
        let sessions = msg.ids.iter().map(|id| id.to_string()).collect();
        let lease_ms = ttl_ms(msg.lease);
        let touch = move |id| Request::TouchEntries {
            id,
            sessions,
            lease_ms,
        };
        let answer = self.run("touch entries", touch, Bytes::new(), ctx);
        Box::pin(async move {
            match answer.await? {
                (Response::Gone { sessions, .. }, _) => {
                    Ok(sessions.into_iter().map(Arc::from).collect())
                }
                (other, _) => Err(unexpected("touch entries", &other)),
            }
        })
    }
}

impl Handler<EndEntry> for LocalBroker {
    type Result = ResponseFuture<Result<bool, BrokerError>>;

    fn handle(&mut self, msg: EndEntry, ctx: &mut Context<Self>) -> Self::Result {
        let (session, closing) = (msg.id.to_string(), msg.closing);
        let end = move |id| Request::EndEntry {
            id,
            session,
            closing,
        };
        let answer = self.run("end entry", end, Bytes::new(), ctx);
        Box::pin(async move {
            match answer.await? {
                (Response::Ended { ended, .. }, _) => Ok(ended),
                (other, _) => Err(unexpected("end entry", &other)),
            }
        })
    }
}

impl Handler<ListEntries> for LocalBroker {
    type Result = ResponseFuture<Result<Vec<Bytes>, BrokerError>>;

    fn handle(&mut self, _msg: ListEntries, ctx: &mut Context<Self>) -> Self::Result {
        let answer = self.run(
            "list entries",
            |id| Request::ListEntries { id },
            Bytes::new(),
            ctx,
        );
        Box::pin(async move {
            match answer.await? {
                (Response::Entries { lengths, .. }, mut body) => {
                    let mut entries = Vec::with_capacity(lengths.len());
                    for len in lengths {
                        if len > body.len() {
                            return Err(BrokerError::Server("entries shorter than listed".into()));
                        }
                        entries.push(body.split_to(len));
                    }
                    Ok(entries)
                }
                (other, _) => Err(unexpected("list entries", &other)),
            }
        })
    }
}

impl Handler<GetEntry> for LocalBroker {
    type Result = ResponseFuture<Result<Option<Bytes>, BrokerError>>;

    fn handle(&mut self, msg: GetEntry, ctx: &mut Context<Self>) -> Self::Result {
        let session = msg.id.to_string();
        let get = move |id| Request::GetEntry { id, session };
        let answer = self.run("get entry", get, Bytes::new(), ctx);
        Box::pin(async move {
            match answer.await? {
                (Response::Record { found: true, .. }, entry) => Ok(Some(entry)),
                (Response::Record { found: false, .. }, _) => Ok(None),
                (other, _) => Err(unexpected("get entry", &other)),
            }
        })
    }
}
