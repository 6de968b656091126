//! The fleet: work on every selected host concurrently (bounded), gather facts, plan, apply.
//!
//! Hosts fail independently: each host ends with a plan or an error, and the caller decides the
//! exit code from all of them at the end.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::host::apply::{ApplyReport, apply_host};
use crate::host::facts;
use crate::inventory::Host;
use crate::plan::{HostPlan, plan};
use crate::render::{RenderInputs, Renderer};
use crate::ssh::connector::Connector;
use crate::ssh::sudo::{BecomeError, Privileged};

/// Settings that come from the command line rather than the inventory.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub forks: usize,
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    /// Show a progress line on stderr (only ever on a terminal).
    pub progress: bool,
}

/// How a host's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostStatus {
    Change,
    Unchanged,
    Unreachable,
    Failed,
}

/// One host's result: its plan, and what apply did, or why it could not.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub name: String,
    pub address: String,
    pub role: String,
    pub os: Option<String>,
    pub status: HostStatus,
    pub error: Option<String>,
    pub plan: Option<HostPlan>,
    pub apply: Option<ApplyReport>,
}
/// A one-line progress counter on stderr, shown only on a terminal.
struct Progress {
    label: &'static str,
    total: usize,
    done: AtomicUsize,
    enabled: bool,
}

impl Progress {
    fn new(label: &'static str, total: usize, wanted: bool) -> Progress {
        let enabled = wanted && total > 1 && std::io::stderr().is_terminal();
        Progress {
            label,
            total,
            done: AtomicUsize::new(0),
            enabled,
        }
    }

    fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{} {done}/{} hosts", self.label, self.total);
            if done == self.total {
                let _ = write!(err, "\r\x1b[K");
            }
            let _ = err.flush();
        }
    }
}

/// Connect to `hosts`, read their facts, render and plan each, `options.forks` at a time.
///
/// # Panics
/// Only if a host's task panics (a bug).
pub async fn plan_hosts(
    connector: Arc<Connector>,
    renderer: Arc<Renderer>,
    hosts: Vec<Host>,
    options: &RunOptions,
) -> Vec<HostResult> {
    let limit = Arc::new(Semaphore::new(options.forks.max(1)));
    let progress = Arc::new(Progress::new("planning", hosts.len(), options.progress));
    let mut tasks = Vec::with_capacity(hosts.len());
    for host in hosts {
        let (connector, renderer, limit, progress) = (
            connector.clone(),
            renderer.clone(),
            limit.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore open");
            let result = plan_one(&connector, &renderer, &host).await;
            progress.tick();
            result
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("planning task panicked"));
    }
    results
}

async fn plan_one(connector: &Connector, renderer: &Renderer, host: &Host) -> HostResult {
    let mut result = HostResult {
        name: host.name.to_string(),
        address: host.address.to_string(),
        role: host.role.to_string(),
        os: None,
        status: HostStatus::Failed,
        error: None,
        plan: None,
        apply: None,
    };
    let session = match connector.session(host.name.as_str()).await {
        Ok(session) => session,
        Err(e) => {
            result.status = HostStatus::Unreachable;
            result.error = Some(e);
            return result;
        }
    };
    let daemon = if host.is_server() {
        crate::daemon::Daemon::Chrony
    } else {
        crate::daemon::Daemon::Timesyncd
    };
    let root = Privileged {
        session: &session,
        privilege: connector.privilege(host.name.as_str()),
    };
    let facts = match root
        .run(&facts::script(&[daemon.config_path()], &[daemon.unit()]))
        .await
    {
        Ok(out) => facts::parse(&out.stdout_text()).map_err(|e| {
            let stderr = out.stderr_text();
            if stderr.is_empty() {
                format!("reading facts: {e}")
            } else {
                format!("reading facts: {e}: {stderr}")
            }
        }),
        Err(BecomeError::Ssh(e)) => Err(format!("reading facts: {e}")),
        // sudo's refusals say what they are about.
        Err(e) => Err(e.to_string()),
    };
    let facts = match facts {
        Ok(facts) => facts,
        Err(e) => {
            result.error = Some(e);
            return result;
        }
    };
    result.os = Some(facts.os.pretty_name.clone());
    let inputs = RenderInputs {
        os_id: &facts.os.id,
        version: facts.version_for(daemon),
    };
    let planned = renderer
        .render(host, inputs)
        .map_err(|e| e.to_string())
        .and_then(|desired| plan(host.name.as_str(), &desired, &facts).map_err(|e| e.to_string()));
    match planned {
        Ok(plan) => {
            result.status = if plan.has_changes() {
                HostStatus::Change
            } else {
                HostStatus::Unchanged
            };
            result.plan = Some(plan);
        }
        Err(e) => result.error = Some(e),
    }
    result
}

/// Apply every planned change, `options.forks` hosts at a time, over the connections opened
/// for planning. Hosts without changes are left alone.
///
/// # Panics
/// Only if a host's task panics (a bug).
pub async fn apply_hosts(
    connector: Arc<Connector>,
    results: Vec<HostResult>,
    options: &RunOptions,
) -> Vec<HostResult> {
    let limit = Arc::new(Semaphore::new(options.forks.max(1)));
    let to_apply = results
        .iter()
        .filter(|r| r.status == HostStatus::Change)
        .count();
    let progress = Arc::new(Progress::new("applying", to_apply, options.progress));
    let mut tasks = Vec::with_capacity(results.len());
    for mut result in results {
        let (connector, limit, progress) = (connector.clone(), limit.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            if result.status != HostStatus::Change {
                return result;
            }
            let _permit = limit.acquire_owned().await.expect("semaphore open");
            let plan = result.plan.as_ref().expect("a changing host has a plan");
            match connector.session(&result.name).await {
                Ok(session) => match apply_host(
                    &Privileged {
                        session: &session,
                        privilege: connector.privilege(&result.name),
                    },
                    plan,
                )
                .await
                {
                    Ok(report) => result.apply = Some(report),
                    Err(e) => {
                        result.status = HostStatus::Failed;
                        result.error = Some(e.to_string());
                    }
                },
                Err(e) => {
                    result.status = HostStatus::Unreachable;
                    result.error = Some(e);
                }
            }
            progress.tick();
            result
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("apply task panicked"));
    }
    out
}

/// Counts of hosts by status, for summaries and exit codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub change: usize,
    pub unchanged: usize,
    pub unreachable: usize,
    pub failed: usize,
}

impl Summary {
    #[must_use]
    pub fn of(results: &[HostResult]) -> Summary {
        let mut summary = Summary::default();
        for r in results {
            match r.status {
                HostStatus::Change => summary.change += 1,
                HostStatus::Unchanged => summary.unchanged += 1,
                HostStatus::Unreachable => summary.unreachable += 1,
                HostStatus::Failed => summary.failed += 1,
            }
        }
        summary
    }

    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.unreachable + self.failed > 0
    }
}
