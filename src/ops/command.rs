//! A script call as a value: a [`Command`] says which script, its KEYS and
//! ARGV, whether it writes, how it is retried and routed, and how its reply
//! reads; [`invoke`] is the one place that sends it — routing, the retry
//! loop ([`Retry`]), the replica wait (a write's `WAIT`, in
//! `redis::eval`) and the typed reply.

use crate::error::Error;
use crate::ops::{Env, Reply, run};
use crate::redis::{Replication, Route};
use crate::retry::Retry;
use crate::scripts::Script;

/// One script call, with everything [`invoke`] needs to send it.
pub(crate) trait Command {
    /// The script's reply, typed.
    type Reply;

    /// Whether the script writes (sent to the primary, then `WAIT`ed for
    /// when `wait_for_replicas` is set).
    const WRITE: bool;

    /// The script to run.
    fn script<'e>(&self, env: &'e Env) -> &'e Script;

    /// Its KEYS, in the order of the script's header.
    fn keys(&self) -> Vec<String>;

    /// Its ARGV, in the order of the script's header.
    fn args(&self) -> Vec<String>;

    /// When a transport failure is retried.
    fn retry(&self) -> Retry;

    /// Which connection carries it (any, by default).
    fn route(&self) -> Route {
        Route::default()
    }

    /// The reply, typed; the refusals every script shares are errors.
    fn parse(&self, env: &Env, reply: Reply) -> Result<Self::Reply, Error>;
}

/// What [`invoke`] brought back.
#[derive(Debug)]
pub(crate) struct Invoked<R> {
    pub reply: R,
    pub replication: Replication,
    /// An attempt before the answered one failed in transport: its effect
    /// (if it reached Redis) is unknown.
    pub retried: bool,
}

/// Sends `command`, retried by its policy, and types its reply.
pub(crate) async fn invoke<C: Command>(env: &Env, command: &C) -> Result<Invoked<C::Reply>, Error> {
    let script = command.script(env);
    let (keys, args) = (command.keys(), command.args());
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (reply, replication, retried) = run(
        env,
        script,
        &keys,
        &args,
        C::WRITE,
        command.retry(),
        command.route(),
    )
    .await?;
    Ok(Invoked {
        reply: command.parse(env, reply)?,
        replication,
        retried,
    })
}
