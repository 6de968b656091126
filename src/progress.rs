//! Progress on stderr while the fleet works: on a terminal, a bar with the count of items done
//! and, under it, one line per item in flight with its current step ("reading facts", "opening
//! the image"); nothing at all when stderr is not a terminal or with `-q`.
//!
//! Drawn by `indicatif` (a bar that redraws in place, rate-limited, cleared when done): the
//! hand-made counter it replaces printed `\r` lines even under `-q`. There is one terminal, so
//! there is one display for the whole process; log lines and terminal prompts go through
//! [`suspend`] and [`while_asking`] so that the bar never overwrites them.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// At most this many per-item lines at once (the others run without a line of their own).
const MAX_ITEM_LINES: usize = 8;

/// The process's one display; absent until [`init`] says it is wanted.
static DISPLAY: OnceLock<MultiProgress> = OnceLock::new();
/// How many prompts are on the terminal right now (the display is hidden while any is).
static ASKING: Mutex<usize> = Mutex::new(0);

/// Show progress for the rest of the process when `visible` (stderr is a terminal and the user
/// did not pass `-q`). Called once, by `main`.
pub fn init(visible: bool) {
    if visible {
        let _ = DISPLAY.set(MultiProgress::with_draw_target(
            ProgressDrawTarget::stderr_with_hz(10),
        ));
    }
}

fn display() -> Option<&'static MultiProgress> {
    DISPLAY.get()
}

/// Run `f`, which writes to stderr briefly (a log line), with the bars cleared meanwhile.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match display() {
        Some(display) => display.suspend(f),
        None => f(),
    }
}

/// Run `f`, which waits for the user at the terminal (a password prompt), with the display
/// hidden until it returns. Unlike [`suspend`], the other hosts' updates do not wait for the
/// answer: they are drawn nowhere meanwhile.
///
/// # Panics
/// Only if a thread panicked while holding the prompt count.
pub fn while_asking<R>(f: impl FnOnce() -> R) -> R {
    let Some(display) = display() else {
        return f();
    };
    {
        let mut asking = ASKING.lock().expect("prompt count");
        if *asking == 0 {
            let _ = display.clear();
            display.set_draw_target(ProgressDrawTarget::hidden());
        }
        *asking += 1;
    }
    let result = f();
    let mut asking = ASKING.lock().expect("prompt count");
    *asking -= 1;
    if *asking == 0 {
        display.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    }
    result
}

/// What a fan-out shows: a title ("planning"), or nothing.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    title: &'static str,
    shown: bool,
}

impl Progress {
    /// Progress titled `title`, shown when the process shows progress at all.
    #[must_use]
    pub fn new(title: &'static str) -> Progress {
        Progress {
            title,
            shown: display().is_some(),
        }
    }

    /// No progress (polling rounds that print their own lines, tests, the benchmark floor).
    #[must_use]
    pub fn hidden() -> Progress {
        Progress {
            title: "",
            shown: false,
        }
    }

    /// The bar for a fan-out over `total` items.
    pub(crate) fn start(self, total: usize) -> Board {
        let bar = display().filter(|_| self.shown).map(|display| {
            let bar = display.add(ProgressBar::new(total as u64));
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} {elapsed} {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(self.title);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Board {
            bar,
            state: Arc::new(BoardState {
                lines: AtomicUsize::new(0),
                failed: AtomicUsize::new(0),
            }),
        }
    }
}

struct BoardState {
    /// Item lines shown now.
    lines: AtomicUsize,
    failed: AtomicUsize,
}

/// One fan-out's bar; every item in flight may have a line under it.
#[derive(Clone)]
pub(crate) struct Board {
    bar: Option<ProgressBar>,
    state: Arc<BoardState>,
}

impl Board {
    /// Item `label` starts: its line (if there is room), until the guard is dropped.
    pub(crate) fn begin(&self, label: &str) -> Running {
        let line = self.bar.as_ref().and_then(|bar| {
            let display = display()?;
            let taken = self.state.lines.fetch_add(1, Ordering::Relaxed);
            if taken >= MAX_ITEM_LINES {
                self.state.lines.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
            let line = display.insert_after(bar, ProgressBar::new_spinner());
            line.set_style(
                ProgressStyle::with_template("  {prefix}: {msg}").expect("a valid template"),
            );
            line.set_prefix(label.to_owned());
            line.set_message("starting");
            Some(line)
        });
        Running {
            board: self.clone(),
            status: Status { line },
            ended: false,
        }
    }

    /// Clear the bar: the fan-out is over.
    pub(crate) fn finish(self) {
        if let (Some(bar), Some(display)) = (self.bar, display()) {
            bar.finish_and_clear();
            display.remove(&bar);
            let _ = display.clear();
        }
    }

    fn end(&self, status: &Status, failed: bool) {
        if let (Some(line), Some(display)) = (&status.line, display()) {
            line.finish_and_clear();
            display.remove(line);
            self.state.lines.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(bar) = &self.bar {
            if failed {
                let failed = self.state.failed.fetch_add(1, Ordering::Relaxed) + 1;
                bar.set_message(format!("({failed} failed)"));
            }
            bar.inc(1);
        }
    }
}

/// An item in flight. Dropped without [`Running::end`] (its task panicked), it counts as failed.
pub(crate) struct Running {
    board: Board,
    status: Status,
    ended: bool,
}

impl Running {
    /// The handle the item's task reports its steps through.
    pub(crate) fn status(&self) -> Status {
        self.status.clone()
    }

    pub(crate) fn end(mut self, failed: bool) {
        self.ended = true;
        self.board.end(&self.status, failed);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.ended {
            self.board.end(&self.status, true);
        }
    }
}

/// Where one item's task says what it is doing ("reading facts"); shown on its line, if any.
#[derive(Clone, Default)]
pub struct Status {
    line: Option<ProgressBar>,
}

impl Status {
    /// A status that shows nothing.
    #[must_use]
    pub fn none() -> Status {
        Status::default()
    }

    /// The item's current step.
    pub fn set(&self, step: impl Into<Cow<'static, str>>) {
        if let Some(line) = &self.line {
            line.set_message(step);
        }
    }
}
