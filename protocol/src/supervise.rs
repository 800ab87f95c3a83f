//! Supervised background work, the same way in every process.
//!
//! A process is its long-running tasks (HTTP server, outbox relay, consumer,
//! …); each handles its own transient failures (reconnecting with backoff) and
//! runs until shutdown. A task that ends any other way — it returned an
//! error it cannot get past, it returned for no reason, or it panicked —
//! leaves a process that looks alive but no longer does its job (a relay that
//! died leaves a dispatcher that accepts scans and publishes none). So the
//! first such end marks the process unready (`/readyz` names the task), stops
//! the other tasks and makes [`Supervisor::wait_until`] return the failure,
//! which `main` turns into a non-zero exit for the orchestrator to restart.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// The first task that ended while the process was meant to be running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("background task `{task}` stopped: {reason}")]
pub struct TaskFailure {
    /// The name the task was spawned with.
    pub task: &'static str,
    /// Why: its error, its panic message, or that it returned on its own.
    pub reason: String,
}

impl TaskFailure {
    /// The stable problem code readiness answers with once a task failed.
    pub const PROBLEM_CODE: &'static str = "task_failed";

    /// What a readiness probe may say in public: the task, not the reason
    /// (an error's text can name hosts, users and vhosts; it is in the log).
    pub fn public_detail(&self) -> String {
        format!(
            "background task `{}` stopped; this process is shutting down to be restarted",
            self.task
        )
    }
}

/// Whether a supervised task has failed; cheap to clone into readiness handlers.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<OnceLock<TaskFailure>>);

impl Health {
    /// The task failure that made this process unready, if any.
    pub fn failure(&self) -> Option<&TaskFailure> {
        self.0.get()
    }

    /// Records `failure` unless one is recorded already; true if it was first.
    fn record(&self, failure: TaskFailure) -> bool {
        self.0.set(failure).is_ok()
    }
}

/// Runs named tasks and watches them.
pub struct Supervisor {
    tasks: JoinSet<Result<(), String>>,
    names: HashMap<Id, &'static str>,
    shutdown: CancellationToken,
    drain_limit: Duration,
    health: Health,
}

impl Supervisor {
    /// Tasks stop when `shutdown` fires (the supervisor fires it on the first
    /// failure). `drain_limit` bounds how long stopping may take: tasks bound
    /// their own shutdown (a grace period, a request timeout), so this only
    /// catches one that ignores it, which would keep a failed process alive.
    pub fn new(shutdown: CancellationToken, drain_limit: Duration) -> Self {
        Supervisor {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            shutdown,
            drain_limit,
            health: Health::default(),
        }
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Spawns `task` under `name`. It must run until shutdown; returning
    /// `Ok` earlier counts as a failure too.
    pub fn spawn<F, E>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let handle = self
            .tasks
            .spawn(async move { task.await.map_err(|error| error.to_string()) });
        self.names.insert(handle.id(), name);
    }

    /// Waits until every task has stopped: after `stop` resolves (a signal),
    /// or after the first failure. Returns that failure, if there was one.
    pub async fn wait_until(mut self, stop: impl Future<Output = ()>) -> Result<(), TaskFailure> {
        tokio::pin!(stop);
        let mut stop_requested = false;
        let mut drain_deadline = None;
        loop {
            if drain_deadline.is_none() && self.shutdown.is_cancelled() {
                drain_deadline = Some(tokio::time::Instant::now() + self.drain_limit);
            }
            let joined = tokio::select! {
                _ = &mut stop, if !stop_requested => {
                    stop_requested = true;
                    tracing::info!("stop requested; stopping background tasks");
                    self.shutdown.cancel();
                    continue;
                }
                _ = self.shutdown.cancelled(), if drain_deadline.is_none() => continue,
                _ = tokio::time::sleep_until(drain_deadline.unwrap_or_else(tokio::time::Instant::now)), if drain_deadline.is_some() => {
                    let stuck: Vec<_> = self.names.values().copied().collect();
                    tracing::error!(?stuck, limit = ?self.drain_limit, "tasks did not stop in time; aborting them");
                    self.tasks.abort_all();
                    // Aborted tasks end as cancelled; nothing more to learn from them.
                    while self.tasks.join_next().await.is_some() {}
                    break;
                }
                joined = self.tasks.join_next_with_id() => joined,
            };
            let Some(joined) = joined else { break };
            let (name, outcome) = self.identify(joined);
            match outcome {
                Ok(()) if self.shutdown.is_cancelled() => {
                    tracing::debug!(task = name, "task stopped");
                }
                Ok(()) => self.fail(name, "it returned while the process was running".into()),
                Err(reason) => self.fail(name, reason),
            }
        }
        match self.health.failure() {
            Some(failure) => Err(failure.clone()),
            None => Ok(()),
        }
    }

    /// Waits until every task has stopped, with no signal of its own:
    /// `shutdown` fired by the caller, or a failure.
    pub async fn wait(self) -> Result<(), TaskFailure> {
        self.wait_until(std::future::pending()).await
    }

    fn identify(
        &mut self,
        joined: Result<(Id, Result<(), String>), JoinError>,
    ) -> (&'static str, Result<(), String>) {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, outcome),
            Err(error) => {
                let id = error.id();
                let reason = if error.is_panic() {
                    format!("panicked: {}", panic_message(&*error.into_panic()))
                } else {
                    "cancelled".to_string()
                };
                (id, Err(reason))
            }
        };
        let name = self.names.remove(&id).unwrap_or("unnamed");
        (name, outcome)
    }

    /// The first failure makes the process unready and stops everything else.
    fn fail(&mut self, task: &'static str, reason: String) {
        let failure = TaskFailure { task, reason };
        if self.health.record(failure.clone()) {
            tracing::error!(task, reason = %failure.reason, "background task stopped; unready, stopping the process");
        } else {
            tracing::error!(task, reason = %failure.reason, "another background task stopped while stopping");
        }
        self.shutdown.cancel();
    }
}

/// The message a panic was raised with, when it was a string.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that behaves: runs until shutdown.
    async fn until_shutdown(shutdown: CancellationToken) -> Result<(), String> {
        shutdown.cancelled().await;
        Ok(())
    }

    fn supervisor() -> (Supervisor, CancellationToken) {
        let shutdown = CancellationToken::new();
        (
            Supervisor::new(shutdown.clone(), Duration::from_secs(5)),
            shutdown,
        )
    }

    #[tokio::test]
    async fn a_stop_signal_stops_every_task_cleanly() {
        let (mut supervisor, shutdown) = supervisor();
        supervisor.spawn("relay", until_shutdown(shutdown.clone()));
        supervisor.spawn("server", until_shutdown(shutdown.clone()));
        let health = supervisor.health();
        assert_eq!(supervisor.wait_until(async {}).await, Ok(()));
        assert!(shutdown.is_cancelled());
        assert_eq!(health.failure(), None);
    }

    #[tokio::test]
    async fn a_task_error_makes_the_process_unready_and_stops_the_others() {
        let (mut supervisor, shutdown) = supervisor();
        let (fail, failing) = tokio::sync::oneshot::channel::<()>();
        supervisor.spawn("server", until_shutdown(shutdown.clone()));
        supervisor.spawn("relay", async move {
            let _ = failing.await;
            Err("access refused")
        });
        let health = supervisor.health();
        assert_eq!(health.failure(), None, "ready while every task runs");
        fail.send(()).unwrap();
        let failure = supervisor
            .wait_until(std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(
            failure,
            TaskFailure {
                task: "relay",
                reason: "access refused".into()
            }
        );
        assert_eq!(health.failure(), Some(&failure));
        assert!(shutdown.is_cancelled(), "the other tasks were told to stop");
        assert!(!failure.public_detail().contains("refused"));
        assert!(failure.public_detail().contains("`relay`"));
    }

    #[tokio::test]
    async fn a_panic_is_a_failure_with_its_message() {
        let (mut supervisor, shutdown) = supervisor();
        supervisor.spawn("server", until_shutdown(shutdown.clone()));
        supervisor.spawn("dead-letter watcher", async {
            if true {
                panic!("index out of bounds");
            }
            Ok::<(), String>(())
        });
        let failure = supervisor.wait().await.unwrap_err();
        assert_eq!(failure.task, "dead-letter watcher");
        assert_eq!(failure.reason, "panicked: index out of bounds");
    }

    #[tokio::test]
    async fn a_task_that_returns_on_its_own_is_a_failure() {
        let (mut supervisor, shutdown) = supervisor();
        supervisor.spawn("server", until_shutdown(shutdown.clone()));
        supervisor.spawn("consumer", async { Ok::<(), String>(()) });
        let failure = supervisor.wait().await.unwrap_err();
        assert_eq!(failure.task, "consumer");
        assert!(failure.reason.contains("returned"), "{}", failure.reason);
    }

    #[tokio::test]
    async fn an_error_while_stopping_still_counts() {
        let (mut supervisor, shutdown) = supervisor();
        let stopping = shutdown.clone();
        supervisor.spawn("server", async move {
            stopping.cancelled().await;
            Err("could not drain")
        });
        let failure = supervisor.wait_until(async {}).await.unwrap_err();
        assert_eq!(failure.task, "server");
    }

    #[tokio::test]
    async fn a_task_that_ignores_shutdown_is_aborted_after_the_drain_limit() {
        let shutdown = CancellationToken::new();
        let mut supervisor = Supervisor::new(shutdown, Duration::from_millis(50));
        supervisor.spawn("stubborn", async {
            std::future::pending::<()>().await;
            Ok::<(), String>(())
        });
        supervisor.spawn("relay", async { Err("broker gone for good") });
        // Without the abort this would hang: the timeout turns that into a failure.
        let failure = tokio::time::timeout(Duration::from_secs(60), supervisor.wait())
            .await
            .expect("the stubborn task was aborted")
            .unwrap_err();
        assert_eq!(
            failure.task, "relay",
            "the first failure is the one reported"
        );
    }
}
