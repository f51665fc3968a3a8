//! `scar cache`: list, remove and collect garbage in the image cache.

use std::process::ExitCode;
use std::time::SystemTime;

use scar_rootfs::cache::Cache;
use scar_rootfs::reference::ImageRef;

use super::pull::CacheArgs;

/// Subcommands of `scar cache`.
#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// List cached images, least recently used first.
    Ls {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Remove a cached image (by reference, or by ChainID or a prefix of it).
    Rm {
        /// The image.
        image: String,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Remove crash leftovers and dangling references, and evict down to the cap.
    Gc {
        #[command(flatten)]
        cache: CacheArgs,
    },
}

/// Run `scar cache`.
pub fn run(command: CacheCommand) -> ExitCode {
    let result = match command {
        CacheCommand::Ls { cache } => ls(&cache),
        CacheCommand::Rm { image, cache } => rm(&cache, &image),
        CacheCommand::Gc { cache } => gc(&cache),
    };
    match result {
        Ok(code) => code,
        Err(err) => super::fail(err.as_ref()),
    }
}

type Outcome = Result<ExitCode, Box<dyn std::error::Error>>;

fn ls(args: &CacheArgs) -> Outcome {
    let cache = Cache::open(&args.dir())?;
    let _lock = cache.lock(false)?;
    let refs = cache.refs()?;
    println!(
        "{:<14} {:>10} {:>8} {:>12}  REFERENCES",
        "CHAIN ID", "SIZE", "LAYERS", "LAST USED"
    );
    for image in cache.images()? {
        let r = &image.record;
        let mut names: Vec<&str> = refs
            .iter()
            .filter(|x| x.chain_id == r.chain_id)
            .map(|x| x.reference.as_str())
            .collect();
        if names.is_empty() {
            names.push(&r.reference);
        }
        println!(
            "{:<14} {:>10} {:>8} {:>12}  {}",
            &r.chain_id.hex()[..12],
            format!("{:.1} MiB", r.size as f64 / (1024.0 * 1024.0)),
            r.layers,
            ago(image.last_used),
            names.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn rm(args: &CacheArgs, image: &str) -> Outcome {
    let dir = args.dir();
    let cache = Cache::open(&dir)?;
    let _lock = cache.lock(true)?;
    let wanted = image.trim_start_matches("sha256:");
    let mut chain = None;
    if let Ok(r) = image.parse::<ImageRef>()
        && let Some(record) = cache.read_ref(&r.to_string())?
    {
        chain = Some(record.chain_id);
    }
    if chain.is_none() && wanted.len() >= 4 {
        let found: Vec<_> = cache
            .images()?
            .into_iter()
            .filter(|i| i.record.chain_id.hex().starts_with(wanted) || i.record.reference == image)
            .map(|i| i.record.chain_id)
            .collect();
        if found.len() > 1 {
            eprintln!(
                "scar: `{image}` matches {} images: give more of the ChainID",
                found.len()
            );
            return Ok(ExitCode::FAILURE);
        }
        chain = found.into_iter().next();
    }
    let Some(chain) = chain else {
        eprintln!(
            "scar: `{image}` is not in the cache at {} (see `scar cache ls`)",
            dir.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    cache.remove_image(&chain)?;
    println!("removed {chain}");
    Ok(ExitCode::SUCCESS)
}

fn gc(args: &CacheArgs) -> Outcome {
    let cache = Cache::open(&args.dir())?;
    let _lock = cache.lock(true)?;
    let removed = cache.collect_garbage()?;
    let trimmed = match args.max_bytes() {
        Some(cap) => cache.trim(cap)?,
        None => Default::default(),
    };
    println!(
        "removed {removed} leftovers, evicted {} images; {:.1} MiB cached",
        trimmed.evicted,
        cache.usage()? as f64 / (1024.0 * 1024.0)
    );
    for image in &trimmed.in_use {
        println!("kept {image}: a running container uses it (run gc again once it ends)");
    }
    Ok(ExitCode::SUCCESS)
}

fn ago(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs());
    match secs {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}
