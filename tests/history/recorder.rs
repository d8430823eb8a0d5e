//! Records every call's invocation and completion: operation, arguments,
//! answer, and monotonic start/end times. A [`Lane`] is one sequential
//! client (one task); it wraps the coordinator's calls so nothing is
//! recorded by hand.
//!
//! Times are taken as tightly as the caller can (just before the call,
//! just after it returns): a late timestamp only widens a call's interval,
//! which can hide a violation but never invent one.
//!
//! A call that failed with an error the model does not describe (transport
//! errors under faults) is recorded without an answer: it may or may not
//! have taken effect. Its lane then continues as a new thread, because a
//! thread of the checker has at most one call in flight.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sandbox_coordinator::{
    Action, BeginOptions, Begun, Coordinator, DoneReason, Error, NewSandbox, Registration,
    Transition,
};

use super::model::{Op, Ret};

/// The error text of the extra attempts the recorder adds for a `begin`
/// that may have been retried after its lease ran out (not calls of their
/// own: the tally skips them).
pub const RETRY_COPY: &str = "another attempt of a retried call";

/// Whether a fault may have touched a call running from the first to the
/// second instant.
pub type FaultClock = Arc<dyn Fn(Instant, Instant) -> bool + Send + Sync>;

/// A checker thread: one sequential client, renumbered after an unknown answer.
pub type ThreadId = u32;

/// One recorded call.
#[derive(Clone, Debug)]
pub struct Entry {
    pub sandbox: String,
    pub thread: ThreadId,
    pub op: Op,
    /// `None`: unknown (an error the model does not describe); the call
    /// may or may not have taken effect.
    pub ret: Option<Ret>,
    pub invoked: Instant,
    pub returned: Instant,
    /// For `Begin`: the lease it asked for.
    pub lease: Option<Duration>,
    /// The error of an unknown answer.
    pub error: Option<String>,
    /// Which coordinator the call went through (`usize::MAX` for the
    /// entries the recorder adds: `Expire`, `Lose`).
    pub coordinator: usize,
    /// For an unknown answer: its effect, if any, happened by `returned`
    /// (the call's return plus the recorder's grace), so the checker
    /// closes it there (take effect or not, but by then). Otherwise it
    /// stays in flight to the end.
    pub settled: bool,
}

impl Entry {
    /// The in-flight `Expire` of the lease taken by call `token`, not
    /// before `not_before` (added by the recorder or the checker, never
    /// observed).
    pub fn expiry(sandbox: &str, thread: ThreadId, token: u64, not_before: Instant) -> Entry {
        Entry {
            sandbox: sandbox.to_string(),
            thread,
            op: Op::Expire { token },
            ret: None,
            invoked: not_before,
            returned: not_before,
            lease: None,
            error: None,
            coordinator: usize::MAX,
            settled: false,
        }
    }
}

#[derive(Default)]
struct Shared {
    entries: Mutex<Vec<Entry>>,
    threads: AtomicU32,
    tokens: AtomicU64,
    /// See [`Recorder::settle_unknown_within`] (ms + 1; 0: off).
    grace_ms: AtomicU64,
    /// See [`Recorder::faults_from`].
    faults: Mutex<Option<FaultClock>>,
}

/// The shared log of one run. Cheap to clone.
#[derive(Clone, Default)]
pub struct Recorder {
    shared: Arc<Shared>,
}

/// What [`Lane::begin`] hands back besides the answer: the call's token
/// (for [`Lane::die`]) and when it was invoked.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub token: u64,
    pub invoked: Instant,
    pub lease: Duration,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// A new sequential client.
    pub fn lane(&self, coordinator: usize) -> Lane {
        Lane {
            recorder: self.clone(),
            thread: self.new_thread(),
            coordinator,
        }
    }

    /// Under faults: a call whose answer is unknown took effect, if at
    /// all, no later than `grace` after it returned (the fault schedule
    /// knows how long an attempt can linger: a frozen server runs queued
    /// attempts when it thaws; a dropped or blackholed request never
    /// runs). Without it, unknown calls stay in flight to the end, which
    /// is sound but makes the checker's search much larger.
    pub fn settle_unknown_within(&self, grace: Duration) {
        self.shared
            .grace_ms
            .store(grace.as_millis() as u64 + 1, Ordering::Relaxed);
    }

    fn grace(&self) -> Option<Duration> {
        match self.shared.grace_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms - 1)),
        }
    }

    /// Tells which calls a fault may have touched (a transport error, so
    /// a retry inside the coordinator).
    pub fn faults_from(&self, clock: FaultClock) {
        *self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(clock);
    }

    fn touched(&self, invoked: Instant, returned: Instant) -> bool {
        match &*self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(clock) => clock(invoked, returned),
            None => false,
        }
    }

    pub fn new_thread(&self) -> ThreadId {
        self.shared.threads.fetch_add(1, Ordering::Relaxed)
    }

    pub fn token(&self) -> u64 {
        self.shared.tokens.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn push(&self, entry: Entry) {
        self.shared
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.shared
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn len(&self) -> usize {
        self.shared
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The lease of call `token` on `sandbox` may run out from `not_before`
    /// on (an in-flight `Expire`, its own thread).
    pub fn expire(&self, sandbox: &str, token: u64, not_before: Instant) {
        self.push(Entry::expiry(sandbox, self.new_thread(), token, not_before));
    }

    /// The coordinator's undo of begin call `token` on `sandbox`, from
    /// `not_before` on, with `reason` (an in-flight `Cancel`, its own
    /// thread).
    pub fn cancel(&self, sandbox: &str, token: u64, not_before: Instant, reason: &str) {
        self.push(Entry {
            op: Op::Cancel {
                token,
                reason: reason.to_string(),
            },
            ..Entry::expiry(sandbox, self.new_thread(), token, not_before)
        });
    }

    /// Redis lost every key some time within `[from, to]` (a restart
    /// without persistence), for each of `sandboxes`.
    pub fn lose(&self, sandboxes: &[String], from: Instant, to: Instant) {
        for sandbox in sandboxes {
            self.push(Entry {
                sandbox: sandbox.clone(),
                thread: self.new_thread(),
                op: Op::Lose,
                ret: Some(Ret::Done),
                invoked: from,
                returned: to,
                lease: None,
                error: None,
                coordinator: usize::MAX,
                settled: false,
            });
        }
    }
}

/// One sequential client of a coordinator; records each call it makes.
pub struct Lane {
    recorder: Recorder,
    thread: ThreadId,
    coordinator: usize,
}

impl Lane {
    /// Records one call of this lane (for calls made elsewhere, e.g. by
    /// a child process on this lane's behalf).
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        sandbox: &str,
        op: Op,
        ret: Option<Ret>,
        invoked: Instant,
        returned: Instant,
        lease: Option<Duration>,
        error: Option<String>,
    ) {
        let unknown = ret.is_none();
        if unknown && op == Op::Get {
            return; // a read whose answer was lost tells nothing, changes nothing
        }
        let grace = self.recorder.grace().filter(|_| unknown);
        let (returned, settled) = match grace {
            Some(g) => (returned + g, true),
            None => (returned, false),
        };
        self.recorder.push(Entry {
            sandbox: sandbox.to_string(),
            thread: self.thread,
            op,
            ret,
            invoked,
            returned,
            lease,
            error,
            coordinator: self.coordinator,
            settled,
        });
        if unknown {
            self.thread = self.recorder.new_thread();
        }
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// `begin`, recorded. The answer is handed back unchanged.
    pub async fn begin(
        &mut self,
        coord: &Coordinator,
        team: &str,
        id: &str,
        action: Action,
        opts: BeginOptions,
    ) -> (Result<Begun, Error>, Call) {
        let token = self.recorder.token();
        let lease = opts.lease;
        let invoked = Instant::now();
        let answer = coord.begin(team, id, action, opts).await;
        let returned = Instant::now();
        let (ret, error) = begin_ret(&answer);
        let unknown = ret.is_none();
        self.record(
            id,
            Op::Begin { action, token },
            ret,
            invoked,
            returned,
            Some(lease),
            error,
        );
        // A begin retried after its lease ran out can start a transition
        // per attempt (begin is idempotent through its holder id only while
        // that lease lives): an earlier attempt may have started one nobody
        // was told of, abandoned when its lease ran out. It ran before the
        // attempt that answered, so within the call.
        // A transport error arms the coordinator's guard: in the
        // background it fails, as "cancelled", whatever this call's holder
        // id holds (a transition an attempt started whose answer was lost),
        // from the call's start on; a start the replicas did not confirm
        // (`NotReplicated`), as "not replicated".
        let undone = unknown && matches!(&answer, Err(e) if e.is_retryable());
        let reason = if matches!(&answer, Err(Error::NotReplicated { .. })) {
            "not replicated"
        } else {
            "cancelled"
        };
        if undone {
            self.recorder.cancel(id, token, invoked, reason);
        }
        if returned - invoked >= lease && self.recorder.touched(invoked, returned) {
            let token = self.recorder.token();
            if undone {
                self.recorder.cancel(id, token, invoked, reason);
            }
            self.recorder.push(Entry {
                sandbox: id.to_string(),
                thread: self.recorder.new_thread(),
                op: Op::Begin { action, token },
                ret: None,
                invoked,
                returned,
                lease: Some(lease),
                error: Some(RETRY_COPY.into()),
                coordinator: self.coordinator,
                settled: true,
            });
        }
        (
            answer,
            Call {
                token,
                invoked,
                lease,
            },
        )
    }

    /// The holder's `succeed` (`failure: None`) or `fail(reason)`, recorded.
    pub async fn finish(&mut self, t: Transition, failure: Option<String>) -> Result<(), Error> {
        let id = t.id().to_string();
        let fence = t.fence();
        let (outcome, reason) = match &failure {
            None => (sandbox_coordinator::Outcome::Succeeded, String::new()),
            Some(r) => (sandbox_coordinator::Outcome::Failed, r.clone()),
        };
        let invoked = Instant::now();
        let answer = match failure {
            None => t.succeed().await,
            Some(r) => t.fail(r).await,
        };
        let returned = Instant::now();
        let (ret, error) = match &answer {
            Ok(()) => (Some(Ret::Finished), None),
            Err(Error::Fenced { .. }) => (Some(Ret::Fenced), None),
            Err(Error::NotFound { .. }) => (Some(Ret::NotFound), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.record(
            &id,
            Op::Finish {
                fence,
                outcome,
                reason,
            },
            ret,
            invoked,
            returned,
            None,
            error,
        );
        answer
    }

    /// The holder dies without finishing (no Drop, so no background
    /// `fail`): its lease runs out, at the earliest `lease` after its
    /// `begin` was invoked. The transition must have been begun without
    /// the watchdog, or the leaked watchdog would keep it alive.
    pub fn die(&mut self, t: Transition, call: Call) {
        let id = t.id().to_string();
        std::mem::forget(t);
        self.recorder
            .expire(&id, call.token, call.invoked + call.lease);
    }

    pub async fn register(
        &mut self,
        coord: &Coordinator,
        new: NewSandbox,
    ) -> Result<Registration, Error> {
        let id = new.id.clone();
        let execution = new.execution.clone();
        let invoked = Instant::now();
        let answer = coord.register(new).await;
        let returned = Instant::now();
        let (ret, error) = match &answer {
            Ok((_, Registration::Created)) => (Some(Ret::Created), None),
            Ok((_, Registration::Existing)) => (Some(Ret::Existing), None),
            Ok((_, Registration::Resumed { previous_execution })) => (
                Some(Ret::Resumed {
                    previous: previous_execution.clone(),
                }),
                None,
            ),
            Err(Error::Busy { .. }) => (Some(Ret::Busy), None),
            Err(Error::AlreadyExists { .. }) => (Some(Ret::Exists), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.record(
            &id,
            Op::Register { execution },
            ret,
            invoked,
            returned,
            None,
            error,
        );
        answer.map(|(_, how)| how)
    }

    pub async fn remove(
        &mut self,
        coord: &Coordinator,
        team: &str,
        id: &str,
    ) -> Result<bool, Error> {
        let invoked = Instant::now();
        let answer = coord.remove(team, id).await;
        let returned = Instant::now();
        let (ret, error) = match &answer {
            Ok(true) => (Some(Ret::Removed), None),
            Ok(false) => (Some(Ret::NotFound), None),
            Err(Error::Busy { .. }) => (Some(Ret::Busy), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.record(id, Op::Remove, ret, invoked, returned, None, error);
        answer
    }

    pub async fn get(
        &mut self,
        coord: &Coordinator,
        team: &str,
        id: &str,
    ) -> Result<Option<sandbox_coordinator::Sandbox>, Error> {
        let invoked = Instant::now();
        let answer = coord.get(team, id).await;
        let returned = Instant::now();
        let (ret, error) = match &answer {
            Ok(None) => (Some(Ret::NotFound), None),
            Ok(Some(sb)) => (
                Some(Ret::Record {
                    state: sb.state,
                    execution: sb.execution.clone(),
                    fence: sb.fence,
                    lease: sb.lease.as_ref().map(|l| l.fence),
                }),
                None,
            ),
            Err(e) => (None, Some(e.to_string())),
        };
        self.record(id, Op::Get, ret, invoked, returned, None, error);
        answer
    }
}

/// The model's view of a `begin` answer; `(None, error)` for an error the
/// model does not describe.
pub fn begin_ret(answer: &Result<Begun, Error>) -> (Option<Ret>, Option<String>) {
    let ret = match answer {
        Ok(Begun::Started(t)) => Ret::Started(t.fence()),
        Ok(Begun::AlreadyDone(done)) => match &done.why {
            DoneReason::Joined { fence } => Ret::Joined(*fence),
            DoneReason::Absorbed { by } => Ret::Absorbed(*by),
            DoneReason::AlreadyInState => Ret::AlreadyInState(done.state),
        },
        Err(Error::InvalidTransition { from, .. }) => Ret::Invalid(*from),
        Err(Error::TransitionFailed { fence, reason, .. }) => Ret::TransitionFailed {
            fence: *fence,
            reason: reason.clone(),
        },
        Err(Error::Abandoned { fence, reason, .. }) if reason.starts_with("outcome unknown") => {
            Ret::OutcomeUnknown(*fence)
        }
        Err(Error::Abandoned { fence, .. }) => Ret::Abandoned(*fence),
        Err(Error::NotFound { .. }) => Ret::NotFound,
        Err(Error::Timeout { .. }) => Ret::Timeout,
        Err(e) => return (None, Some(e.to_string())),
    };
    (Some(ret), None)
}
