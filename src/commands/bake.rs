//! `clockprov bake`: the client configuration written into the inventory's golden images.

use std::io::IsTerminal as _;

use anyhow::bail;

use crate::cli::{BakeArgs, Format};
use crate::image::bake::{self, BakeOptions, ImageResult, ImageStatus};
use crate::inventory::{ImageSpec, Inventory};
use crate::report;
use crate::value::Name;

use super::{
    EXIT_CHANGES, EXIT_ERROR, EXIT_OK, ask, limit, print_stdout, renderer_for, stdout_style,
};

pub(crate) fn run(args: &BakeArgs) -> anyhow::Result<u8> {
    let inventory = Inventory::load(&args.inventory)?;
    let renderer = renderer_for(&inventory, args.templates.clone())?;
    let images = selected_images(args, &inventory)?;
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
    // Opening a disk image boots libguestfs's appliance (about 20 s under TCG): say so on a
    // terminal, so that a quiet wait does not look like a hang.
    let progress = std::io::stderr().is_terminal();
    // Without --yes, read-only until the question is answered (bake::execute then reopens).
    let readonly = args.dry_run || !args.yes;
    let opened = bake::parallel_map(images, forks, |(name, spec)| {
        let started = std::time::Instant::now();
        let target = bake::image_target(&inventory, spec);
        tracing::info!("{name}: opening {target}");
        if progress {
            eprintln!("bake: {name}: opening {target} ...");
        }
        let result = bake::open_and_plan(
            &inventory,
            &renderer,
            name.as_str(),
            spec,
            &target,
            readonly,
            options,
        );
        if progress {
            eprintln!(
                "bake: {name}: read in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        (name.as_str(), target, started, result)
    });
    let mut planned = Vec::new();
    let mut results = Vec::new();
    for (name, target, started, result) in opened {
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(image) => {
                results.push(ImageResult::planned(&image, seconds));
                planned.push((image, started));
            }
            Err(e) => results.push(ImageResult::failed(name, &target, &e, seconds)),
        }
    }
    if args.format == Format::Text {
        print_stdout(&report::bake_plan_text(&results, stdout_style()))?;
    }
    let changes = results
        .iter()
        .filter(|r| r.status == ImageStatus::Change)
        .count();
    let go = !args.dry_run
        && changes > 0
        && (args.yes
            || ask(&format!(
                "Bake these changes into {changes} image{}?",
                if changes == 1 { "" } else { "s" }
            ))?);
    finish_images(planned, go, forks, &mut results);
    match args.format {
        Format::Text if go => print_stdout(&format!(
            "\n{}",
            report::bake_done_text(&results, stdout_style())
        ))?,
        Format::Text => {}
        Format::Json => print_stdout(&report::bake_json(&results, args.dry_run))?,
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

/// The images `--limit` selects; at least one.
fn selected_images<'i>(
    args: &BakeArgs,
    inventory: &'i Inventory,
) -> anyhow::Result<Vec<(&'i Name, &'i ImageSpec)>> {
    let names: Vec<&str> = inventory.file.images.keys().map(Name::as_str).collect();
    let limit = limit(&args.limit, &names, "image", &args.inventory)?;
    let images: Vec<_> = inventory
        .file
        .images
        .iter()
        .filter(|(name, _)| limit.selects(name.as_str()))
        .collect();
    if images.is_empty() {
        if inventory.file.images.is_empty() {
            bail!("{}: the inventory has no images", args.inventory.display());
        }
        bail!(
            "--limit {} leaves no image of {}",
            args.limit.join(","),
            args.inventory.display()
        );
    }
    Ok(images)
}

/// Bake the open images when `go`, else just close them; record the outcomes in `results`.
fn finish_images(
    planned: Vec<(bake::OpenImage, std::time::Instant)>,
    go: bool,
    forks: usize,
    results: &mut [ImageResult],
) {
    let stamp = bake::utc_stamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let finished = bake::parallel_map(planned, forks, |(image, started)| {
        let name = image.name.clone();
        let outcome = if go && image.plan.has_changes() {
            bake::execute(image, &stamp).map(Some)
        } else {
            image
                .root
                .finish()
                .map(|()| None)
                .map_err(bake::BakeError::from)
        };
        (name, started.elapsed().as_secs_f64(), outcome)
    });
    for (name, seconds, outcome) in finished {
        let Some(result) = results.iter_mut().find(|r| r.name == name) else {
            continue;
        };
        result.seconds = seconds;
        match outcome {
            Ok(Some(report)) => {
                result.status = ImageStatus::Baked;
                result.report = Some(report);
            }
            Ok(None) => {}
            Err(e) => {
                result.status = ImageStatus::Failed;
                result.error = Some(e.to_string());
            }
        }
    }
}
