//! `clockprov bake`: the client configuration written into the inventory's golden images.
//!
//! Two fan-outs over the images, on one runtime: open each image and plan (read-only with
//! `--dry-run`), then, once confirmed, bake each planned image (or just close it). Opening a
//! disk image is blocking work (a libguestfs appliance), run on the runtime's blocking threads.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::bail;

use crate::cli::{BakeArgs, Format};
use crate::fleet::{self, Item};
use crate::image::bake::{
    self, BakeOptions, BakeReport, ImageResult, ImageStatus, ImageTarget, OpenImage,
};
use crate::inventory::{ImageSpec, Inventory};
use crate::outcome::{HostError, Outcome};
use crate::progress::Progress;
use crate::render::Renderer;
use crate::report;
use crate::value::Name;

use super::{
    EXIT_CHANGES, EXIT_ERROR, EXIT_OK, ask, limit, print_stdout, renderer_for, runtime,
    stdout_style,
};

pub(crate) fn run(args: &BakeArgs) -> anyhow::Result<u8> {
    args.format.refuse_check_only("bake")?;
    let runtime = runtime()?;
    let inventory = Arc::new(Inventory::load(&args.inventory)?);
    let renderer = Arc::new(renderer_for(&inventory, args.templates.clone())?);
    let jobs = selected_images(&inventory, args)?;
    // Decide before any appliance starts: nothing is opened for writing that cannot be written.
    if !args.dry_run && !args.yes && !std::io::stdin().is_terminal() {
        bail!(
            "refusing to bake without confirmation: stdin is not a terminal; pass --yes (or --dry-run)"
        );
    }
    let options = BakeOptions {
        reset_machine_id: args.reset_machine_id,
    };
    let forks = usize::from(args.forks);
    let seconds = Arc::new(Mutex::new(vec![0.0; jobs.len()]));
    let (opened, results) = runtime.block_on(open_images(
        jobs,
        &Opening {
            inventory,
            renderer,
            // Without --yes, read-only until the question is answered (bake::execute then
            // reopens for writing).
            readonly: args.dry_run || !args.yes,
            options,
            seconds: seconds.clone(),
        },
        forks,
    ));
    if args.format == Format::Text {
        print_stdout(&report::bake_plan_text(&results, stdout_style()))?;
    }
    let changes = results
        .iter()
        .filter(|r| r.status == ImageStatus::Change)
        .count();
    let go = !args.dry_run && changes > 0 && (args.yes || confirm(changes)?);
    let results = runtime.block_on(finish_images(opened, results, go, forks, seconds));
    match args.format {
        Format::Text if go => print_stdout(&format!(
            "\n{}",
            report::bake_done_text(&results, stdout_style())
        ))?,
        Format::Text => {}
        Format::Json | Format::Prometheus | Format::Nagios => {
            print_stdout(&report::bake_json(&results, args.dry_run))?;
        }
    }
    let failed = results.iter().any(|r| r.status == ImageStatus::Failed);
    if !go && !args.dry_run && changes > 0 {
        // Saying no is a decision, not a failure.
        eprintln!("Bake cancelled; nothing was changed.");
    }
    Ok(if failed {
        EXIT_ERROR
    } else if args.detailed_exitcode && changes > 0 {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}

fn confirm(changes: usize) -> anyhow::Result<bool> {
    ask(&format!(
        "Bake these changes into {changes} image{}?",
        if changes == 1 { "" } else { "s" }
    ))
}

/// One image to open: its place in the report, its inventory entry and where it is.
struct ImageJob {
    index: usize,
    name: String,
    spec: ImageSpec,
    target: ImageTarget,
}

impl Item for ImageJob {
    fn label(&self) -> String {
        self.name.clone()
    }
}

/// The images `--limit` selects, in inventory order.
fn selected_images(inventory: &Inventory, args: &BakeArgs) -> anyhow::Result<Vec<ImageJob>> {
    let names: Vec<&str> = inventory.file.images.keys().map(Name::as_str).collect();
    let limit = limit(&args.limit, &names, "image", &args.inventory)?;
    let jobs: Vec<ImageJob> = inventory
        .file
        .images
        .iter()
        .filter(|(name, _)| limit.selects(name.as_str()))
        .enumerate()
        .map(|(index, (name, spec))| ImageJob {
            index,
            name: name.to_string(),
            spec: spec.clone(),
            target: bake::image_target(inventory, spec),
        })
        .collect();
    if jobs.is_empty() {
        if inventory.file.images.is_empty() {
            bail!("{}: the inventory has no images", args.inventory.display());
        }
        bail!(
            "--limit {} leaves no image of {}",
            args.limit.join(","),
            args.inventory.display()
        );
    }
    Ok(jobs)
}

/// What every image is opened and planned with.
struct Opening {
    inventory: Arc<Inventory>,
    renderer: Arc<Renderer>,
    readonly: bool,
    options: BakeOptions,
    /// Each image's time so far, by index (a failed image reports it too).
    seconds: Arc<Mutex<Vec<f64>>>,
}

/// An image opened and planned, waiting for the go-ahead.
struct Opened {
    index: usize,
    image: OpenImage,
    started: Instant,
}

impl Item for Opened {
    fn label(&self) -> String {
        self.image.name.clone()
    }
}

/// Record `started`'s elapsed time as image `index`'s.
fn clock_in(seconds: &Mutex<Vec<f64>>, index: usize, started: Instant) {
    if let Ok(mut seconds) = seconds.lock()
        && let Some(slot) = seconds.get_mut(index)
    {
        *slot = started.elapsed().as_secs_f64();
    }
}

fn seconds_of(seconds: &Mutex<Vec<f64>>, index: usize) -> f64 {
    seconds
        .lock()
        .ok()
        .and_then(|s| s.get(index).copied())
        .unwrap_or(0.0)
}

/// Open and plan every image, `forks` at a time; the open images, and a report row per image.
async fn open_images(
    jobs: Vec<ImageJob>,
    opening: &Opening,
    forks: usize,
) -> (Vec<Opened>, Vec<ImageResult>) {
    let names: Vec<(String, ImageTarget)> = jobs
        .iter()
        .map(|j| (j.name.clone(), j.target.clone()))
        .collect();
    let (inventory, renderer, seconds) = (
        opening.inventory.clone(),
        opening.renderer.clone(),
        opening.seconds.clone(),
    );
    let (readonly, options) = (opening.readonly, opening.options);
    let outcomes = fleet::for_each(
        jobs,
        forks,
        Progress::new("opening images"),
        move |job, status| {
            let (inventory, renderer, seconds) =
                (inventory.clone(), renderer.clone(), seconds.clone());
            async move {
                let started = Instant::now();
                tracing::info!("{}: opening {}", job.name, job.target);
                // A disk image boots libguestfs's appliance (about 20 s under TCG): say so, so
                // that a quiet wait does not look like a hang.
                status.set(format!(
                    "opening {} (a disk image starts a libguestfs appliance)",
                    job.target
                ));
                let index = job.index;
                let image = fleet::blocking(move || {
                    bake::open_and_plan(
                        &inventory,
                        &renderer,
                        &job.name,
                        &job.spec,
                        &job.target,
                        readonly,
                        options,
                    )
                    .map_err(HostError::from)
                })
                .await;
                clock_in(&seconds, index, started);
                image.map(|image| Opened {
                    index,
                    image,
                    started,
                })
            }
        },
    )
    .await;
    let mut opened = Vec::new();
    let mut results = Vec::new();
    for ((name, target), outcome) in names.into_iter().zip(outcomes) {
        let index = results.len();
        let seconds = seconds_of(&opening.seconds, index);
        match outcome {
            Outcome::Done(image) => {
                results.push(ImageResult::planned(&image.image, seconds));
                opened.push(image);
            }
            Outcome::Unreachable(error) | Outcome::Failed(error) => {
                results.push(ImageResult::failed(&name, &target, &error, seconds));
            }
        }
    }
    (opened, results)
}

/// Bake the open images when `go`, else just close them; the rows updated with what happened.
async fn finish_images(
    opened: Vec<Opened>,
    mut results: Vec<ImageResult>,
    go: bool,
    forks: usize,
    seconds: Arc<Mutex<Vec<f64>>>,
) -> Vec<ImageResult> {
    let stamp = crate::utc::Utc::from_system(std::time::SystemTime::now()).compact();
    let indices: Vec<usize> = opened.iter().map(|o| o.index).collect();
    let progress = if go {
        Progress::new("baking")
    } else {
        Progress::hidden()
    };
    let clocks = seconds.clone();
    let outcomes = fleet::for_each(opened, forks, progress, move |opened, status| {
        let (stamp, seconds) = (stamp.clone(), clocks.clone());
        async move {
            let Opened {
                index,
                image,
                started,
            } = opened;
            let bake_it = go && image.plan.has_changes();
            status.set(if bake_it { "baking" } else { "closing" });
            let outcome = fleet::blocking(move || -> Result<Option<BakeReport>, HostError> {
                if bake_it {
                    Ok(Some(bake::execute(image, &stamp)?))
                } else {
                    image
                        .root
                        .finish()
                        .map_err(|e| HostError::from(bake::BakeError::from(e)))?;
                    Ok(None)
                }
            })
            .await;
            clock_in(&seconds, index, started);
            outcome
        }
    })
    .await;
    for (index, outcome) in indices.into_iter().zip(outcomes) {
        let result = &mut results[index];
        result.seconds = seconds_of(&seconds, index);
        match outcome {
            Outcome::Done(Some(report)) => {
                result.status = ImageStatus::Baked;
                result.report = Some(report);
            }
            Outcome::Done(None) => {}
            Outcome::Unreachable(error) | Outcome::Failed(error) => {
                result.status = ImageStatus::Failed;
                result.error = Some(error.message);
                result.error_kind = Some(error.kind);
            }
        }
    }
    results
}
