//! Request loops as pure code: what a request does next, decided without
//! I/O (the sans-I/O style of quinn-proto). This module holds the
//! vocabulary — a [`Call`] to make, what it brought back ([`Input`]), what
//! to do [`Next`] — and `step` the begin and wait_idle loops; the
//! loops only perform what they answer (`wait::Io`).

pub(crate) mod admin;
pub(crate) mod begin;
pub(crate) mod end;
pub(crate) mod fleet;
pub(crate) mod register;
pub(crate) mod reserve;
pub(crate) mod slots;
pub(crate) mod step;
pub(crate) mod wait;

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::lifecycle::{Action, Outcome};
use crate::ops::begin::Decided;
use crate::ops::settle::Settled;
use crate::redis::Replication;
use crate::sandbox::{Done, Sandbox};

/// A script to run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Call {
    /// `begin_<action>.lua` with this request's holder id.
    Begin,
    /// `inspect.lua`.
    Inspect,
    /// `settle.lua` in check mode for transition `fence` of `holder`.
    Settle { fence: u64, holder: String },
}

/// What woke a sleeping request (the driver's notices, or its timer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Woke {
    Ended {
        fence: u64,
        outcome: Outcome,
        reason: String,
    },
    Changed,
    /// Notices may have been lost.
    Resubscribed,
    /// The instant of the `SleepUntil` came.
    Timer,
}

/// What the last [`Next`] brought back.
#[derive(Debug)]
pub(crate) enum Input {
    Start,
    Begun(Result<(Decided, Replication), Error>),
    Settled(Result<Settled, Error>),
    /// The record, boxed as the answer `Idle` carries it.
    Inspected(Result<Option<Box<Sandbox>>, Error>),
    Subscribed,
    Woke(Woke),
}

/// A request's successful answer.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Begin: this call holds transition `fence`.
    Started {
        fence: u64,
        lease: Duration,
        execution: String,
    },
    /// Begin: nothing to start.
    Done(Done),
    /// wait_idle: the record with nothing in flight.
    Idle(Box<Sandbox>),
}

/// What to do next. Matched at once, never stored: boxing the answer
/// would only add an allocation to every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Next {
    Call(Call),
    /// Register for the sandbox's notices (bounded wait until subscribed).
    Subscribe,
    /// Sleep until then, or until a notice; report [`Woke`].
    SleepUntil(Instant),
    Answer(Result<Answer, Error>),
}

/// Which loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Mode {
    Begin(Action),
    Idle,
}
