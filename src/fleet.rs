//! The one fan-out engine: run a task per item (a host, an image), at most `forks` at a time,
//! and hand back every item's [`Outcome`] in the order the items came.
//!
//! Items fail independently: a task's error, or its panic, is that item's outcome and never the
//! run's; the caller decides the exit code from all of them at the end. plan, apply, check (and
//! `apply --wait-sync`), bake and the benchmark floor all fan out through [`for_each`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::inventory::Host;
use crate::outcome::{HostError, Outcome};
use crate::progress::{Progress, Status};

/// Settings that come from the command line rather than the inventory.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub forks: usize,
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    /// What one remote command may print (stdout and stderr together) before its host fails.
    pub max_output: crate::value::ByteSize,
    /// Show progress on stderr (only ever on a terminal, never with `-q`).
    pub progress: bool,
    /// The largest managed file read from a host, in bytes (`--max-file-size`).
    pub max_file_size: u64,
    /// Keep each host's facts shell for apply's transaction (apply sets it; see
    /// [`crate::ssh::sudo::Privileged::run_script_keeping_shell`]).
    pub keep_shells: bool,
    /// Close each host's connection as soon as the command is done with it
    /// ([`crate::ssh::connector::Connector::release`]), not when it exits: plan, and apply
    /// without `--wait-sync` (which reads every host again afterwards), and check.
    pub release_done: bool,
    /// The one host whose connection `release_done` leaves open: check's `--ceph` monitor, asked
    /// after the fleet is measured.
    pub keep_open: Option<String>,
}

impl RunOptions {
    /// The progress display for a fan-out titled `title`, as these options want it.
    #[must_use]
    pub fn progress(&self, title: &'static str) -> Progress {
        if self.progress {
            Progress::new(title)
        } else {
            Progress::hidden()
        }
    }
}

/// An item a fan-out works on: its name labels its progress line.
pub trait Item: Send + 'static {
    fn label(&self) -> String;
}

impl Item for Host {
    fn label(&self) -> String {
        self.name.to_string()
    }
}

impl Item for String {
    fn label(&self) -> String {
        self.clone()
    }
}

/// Run `task` on every item, at most `forks` at a time (at least one), each as its own task on
/// the runtime ([`runtime`]). The outcomes come back in the order of `items`; a task that
/// panics is its item's [`Outcome::Failed`] with [`crate::outcome::ErrorKind::Internal`].
pub async fn for_each<I, T, F, Fut>(
    items: Vec<I>,
    forks: usize,
    progress: Progress,
    task: F,
) -> Vec<Outcome<T>>
where
    I: Item,
    T: Send + 'static,
    F: Fn(I, Status) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, HostError>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(forks.max(1)));
    let task = Arc::new(task);
    let board = progress.start(items.len());
    let handles: Vec<_> = items
        .into_iter()
        .map(|item| {
            let (limit, task, board) = (limit.clone(), task.clone(), board.clone());
            let label = item.label();
            // Every log line of this item's work (connecting, authenticating, its commands)
            // carries its name: `host{name=zcloud}: ...`.
            let span = tracing::info_span!("host", name = %label);
            tokio::spawn(
                async move {
                    // The semaphore is never closed; without a permit the task just runs.
                    let _permit = limit.acquire_owned().await.ok();
                    let running = board.begin(&label);
                    let started = std::time::Instant::now();
                    let result = task(item, running.status()).await;
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    match &result {
                        Ok(_) => tracing::info!("done in {ms:.0} ms"),
                        Err(error) => tracing::info!(
                            "failed after {ms:.0} ms: {}",
                            crate::report::shown(&error.message)
                        ),
                    }
                    running.end(result.is_err());
                    result
                }
                .instrument(span),
            )
        })
        .collect();
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(match handle.await {
            Ok(result) => Outcome::of(result),
            Err(error) => Outcome::Failed(joined(error)),
        });
    }
    board.finish();
    outcomes
}

/// The async runtime every fleet command (and the benchmark floor) runs in: one thread.
///
/// The client's work per host is small beside the host's (about a millisecond of CPU, most of it
/// the SSH key exchange and ciphers), so one thread is not the limit: 1,000 hosts at
/// `--forks 64` took the same wall time on one thread as on tokio's two workers, and 4–5% less
/// CPU (no wake-ups across threads, no work stealing). Blocking work (libguestfs) still goes to
/// tokio's blocking threads through [`blocking`].
///
/// # Errors
/// The runtime could not be built (the system refused a thread or an epoll instance).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Run blocking work (libguestfs, file systems) on tokio's blocking threads; a panic in it is
/// an internal error of this item.
///
/// # Errors
/// `work`'s own error, or an internal error when it panicked.
pub async fn blocking<T, W>(work: W) -> Result<T, HostError>
where
    T: Send + 'static,
    W: FnOnce() -> Result<T, HostError> + Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(joined)?
}

fn joined(error: tokio::task::JoinError) -> HostError {
    match error.try_into_panic() {
        Ok(payload) => HostError::panicked(payload.as_ref()),
        Err(error) => HostError::new(
            crate::outcome::ErrorKind::Internal,
            format!("internal error: the task was cancelled ({error})"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::outcome::ErrorKind;

    /// The runtime the commands run in, so that these tests try the engine as it ships.
    fn shipped_runtime() -> tokio::runtime::Runtime {
        runtime().unwrap()
    }

    #[test]
    fn outcomes_come_back_in_input_order_whatever_finishes_first() {
        let items: Vec<String> = (0..20).map(|i| format!("h{i}")).collect();
        let outcomes = shipped_runtime().block_on(for_each(
            items,
            5,
            Progress::hidden(),
            |name, _status| async move {
                let n: u64 = name[1..].parse().unwrap();
                // Later items finish first.
                tokio::time::sleep(Duration::from_millis(40 - 2 * n)).await;
                Ok(name)
            },
        ));
        let names: Vec<&str> = outcomes
            .iter()
            .map(|o| o.done().unwrap().as_str())
            .collect();
        let want: Vec<String> = (0..20).map(|i| format!("h{i}")).collect();
        assert_eq!(names, want);
    }

    #[test]
    fn at_most_forks_tasks_run_at_once() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let outcomes = shipped_runtime().block_on(for_each(
            (0..12).map(|i| i.to_string()).collect(),
            3,
            Progress::hidden(),
            move |_, _| {
                let (running, most) = (r.clone(), m.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            },
        ));
        assert_eq!(outcomes.len(), 12);
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_panicking_task_fails_its_item_only() {
        let outcomes = shipped_runtime().block_on(for_each(
            vec!["ok".to_owned(), "boom".to_owned(), "refused".to_owned()],
            2,
            Progress::hidden(),
            |name, _| async move {
                match name.as_str() {
                    "boom" => panic!("byte index 1 is out of range"),
                    "refused" => Err(HostError::new(ErrorKind::AuthRefused, "refused")),
                    _ => Ok(name),
                }
            },
        ));
        assert_eq!(outcomes[0], Outcome::Done("ok".to_owned()));
        let Outcome::Failed(error) = &outcomes[1] else {
            panic!("{:?}", outcomes[1]);
        };
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(
            error.message.contains("byte index 1 is out of range"),
            "{error}"
        );
        assert!(
            matches!(&outcomes[2], Outcome::Unreachable(e) if e.kind == ErrorKind::AuthRefused)
        );
    }

    #[test]
    fn blocking_work_that_panics_is_an_internal_error() {
        let outcomes = shipped_runtime().block_on(for_each(
            vec!["image".to_owned()],
            1,
            Progress::hidden(),
            |_, _| blocking(|| -> Result<(), HostError> { panic!("guestfish reply") }),
        ));
        let Outcome::Failed(error) = &outcomes[0] else {
            panic!("{:?}", outcomes[0]);
        };
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(error.message.contains("guestfish reply"), "{error}");
    }
}
