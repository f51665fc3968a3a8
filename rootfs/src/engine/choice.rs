//! Which engine runs: [`select`] resolves the kind asked for, and `auto`'s choice between the
//! namespace and the preload engine is made and worded in one place ([`AutoChoice`]), for
//! [`select`] and for a single-threaded caller's [`AutoEngine`] alike.

use std::path::PathBuf;

use super::namespace::{self, channel, probe};
use super::preload;
use super::types::{Container, Engine, EngineError, EngineKind, RunSpec};

/// What [`select`] needs besides the engine kind.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// The binary the namespace engine re-executes as its helper; `None` means the current
    /// one (`/proc/self/exe`), whose `main` calls [`super::enter_container_if_requested`].
    pub helper: Option<PathBuf>,
    /// Directory of the preload libraries (`libscar_preload-*.so`); `None` means next to the
    /// running executable (see [`preload::PreloadEngine::locate`]).
    pub preload_dir: Option<PathBuf>,
    /// What the preload engine does with a statically linked program (`SCAR_PRELOAD_STATIC`).
    pub static_policy: preload::StaticPolicy,
}

/// Resolve `kind` to an engine: `auto` takes the namespace engine when the shared probe says
/// user namespaces work here, else the preload engine; the choice and its reason are logged.
///
/// A single-threaded caller that has not probed yet skips the probe: the namespace engine's
/// direct start finds the same answer on the way (see [`namespace::direct`]), and `auto`
/// falls back to preload when it does.
pub fn select(kind: EngineKind, options: &EngineOptions) -> Result<Box<dyn Engine>, EngineError> {
    // The thread check reads /proc: not made for the preload engine, which does not need it.
    let unprobed = kind != EngineKind::Preload
        && probe::known_support().is_none()
        && namespace::direct::is_single_threaded();
    match (kind, unprobed) {
        (EngineKind::Preload, _) => {
            tracing::debug!(engine = "preload", reason = "requested", "engine selected");
            preload_engine(options, "the preload engine was requested")
        }
        (EngineKind::Namespace, true) => {
            tracing::debug!(
                engine = "namespace",
                reason = "requested",
                "engine selected"
            );
            Ok(Box::new(namespace_engine(options)))
        }
        (EngineKind::Auto, true) => Ok(Box::new(AutoEngine {
            namespace: namespace_engine(options),
            options: options.clone(),
            chosen: std::sync::OnceLock::new(),
        })),
        (EngineKind::Namespace, false) => match probe::namespace_support() {
            probe::NamespaceSupport::Available => {
                tracing::info!(
                    engine = "namespace",
                    reason = "requested",
                    "engine selected"
                );
                Ok(Box::new(namespace_engine(options)))
            }
            probe::NamespaceSupport::Unavailable(reason) => {
                Err(channel::namespace_unavailable(reason))
            }
        },
        (EngineKind::Auto, false) => {
            let choice = AutoChoice::from_probe(probe::namespace_support());
            choice.announce(false);
            choice.engine(options)
        }
    }
}

/// What `auto` resolves to, and why: the one place where that choice is made and worded, for
/// [`select`] (after the probe) and [`AutoEngine`] (after a direct start) alike.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AutoChoice {
    /// User namespaces work here.
    Namespace,
    /// They do not, for this reason: the preload engine.
    Preload(String),
}

impl AutoChoice {
    /// The choice the probe's answer (or a direct start's, recorded as the probe's) makes.
    fn from_probe(support: &probe::NamespaceSupport) -> Self {
        match support {
            probe::NamespaceSupport::Available => Self::Namespace,
            probe::NamespaceSupport::Unavailable(reason) => Self::Preload(reason.clone()),
        }
    }

    /// The choice once the namespace engine refused to start as unavailable: preload, with
    /// the reason this process recorded, if any.
    fn after_refusal(support: Option<&probe::NamespaceSupport>) -> Self {
        match support {
            Some(probe::NamespaceSupport::Unavailable(reason)) => Self::Preload(reason.clone()),
            _ => Self::Preload("user namespaces are unavailable".to_string()),
        }
    }

    /// Log the choice. `quiet`: the namespace engine, the expected choice, at debug level
    /// (`scar run` prints nothing of its own around the command's output); the fallback to
    /// preload is always worth a line.
    fn announce(&self, quiet: bool) {
        const AVAILABLE: &str = "auto: user namespaces are available";
        match self {
            Self::Namespace if quiet => {
                tracing::debug!(engine = "namespace", reason = AVAILABLE, "engine selected")
            }
            Self::Namespace => {
                tracing::info!(engine = "namespace", reason = AVAILABLE, "engine selected")
            }
            Self::Preload(reason) => tracing::info!(
                engine = "preload",
                %reason,
                "engine selected: auto, user namespaces are unavailable"
            ),
        }
    }

    /// The engine chosen.
    fn engine(&self, options: &EngineOptions) -> Result<Box<dyn Engine>, EngineError> {
        match self {
            Self::Namespace => Ok(Box::new(namespace_engine(options))),
            Self::Preload(reason) => preload_engine(options, reason),
        }
    }
}

/// `auto` for a single-threaded caller: the namespace engine's direct start, which is itself
/// the probe, and the preload engine when it finds user namespaces unavailable.
struct AutoEngine {
    namespace: namespace::NamespaceEngine,
    options: EngineOptions,
    chosen: std::sync::OnceLock<EngineKind>,
}

impl Engine for AutoEngine {
    fn kind(&self) -> EngineKind {
        self.chosen.get().copied().unwrap_or(EngineKind::Auto)
    }

    fn spawn(&self, spec: &RunSpec) -> Result<Container, EngineError> {
        // The direct start reports unavailability precisely; a caller that has meanwhile
        // started threads asks the probe first.
        let stat = namespace::direct::SelfStat::read();
        let choice = match probe::known_support() {
            Some(support) => AutoChoice::from_probe(support),
            None if stat.single_threaded => AutoChoice::Namespace,
            None => AutoChoice::from_probe(probe::namespace_support()),
        };
        let choice = match choice {
            AutoChoice::Namespace => match self.namespace.spawn_with(spec, stat) {
                Err(EngineError::NamespaceUnavailable(_)) => {
                    AutoChoice::after_refusal(probe::known_support())
                }
                started => {
                    let _ = self.chosen.set(EngineKind::Namespace);
                    AutoChoice::Namespace.announce(true);
                    return started;
                }
            },
            preload => preload,
        };
        choice.announce(true);
        let _ = self.chosen.set(EngineKind::Preload);
        choice.engine(&self.options)?.spawn(spec)
    }
}

fn namespace_engine(options: &EngineOptions) -> namespace::NamespaceEngine {
    match &options.helper {
        Some(helper) => namespace::NamespaceEngine::with_helper(helper),
        None => match super::exe::RUNNING_EXE.get() {
            Some(exe) => namespace::NamespaceEngine::with_helper(exe),
            None => namespace::NamespaceEngine::new(),
        },
    }
}

/// The single spot where the preload engine is wired in (`why` says why it is used).
fn preload_engine(options: &EngineOptions, why: &str) -> Result<Box<dyn Engine>, EngineError> {
    match preload::PreloadEngine::locate_with(options.preload_dir.as_deref()) {
        Ok(engine) => Ok(Box::new(engine.with_static_policy(options.static_policy))),
        Err(EngineError::PreloadUnavailable(e)) => {
            Err(EngineError::PreloadUnavailable(format!("{why}; and {e}")))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_the_namespace_engine_where_available_and_else_preload_with_the_reason() {
        let available = probe::NamespaceSupport::Available;
        assert_eq!(AutoChoice::from_probe(&available), AutoChoice::Namespace);
        let refused = probe::NamespaceSupport::Unavailable("uid_map: EPERM".into());
        assert_eq!(
            AutoChoice::from_probe(&refused),
            AutoChoice::Preload("uid_map: EPERM".into())
        );
        assert_eq!(
            AutoChoice::after_refusal(Some(&refused)),
            AutoChoice::Preload("uid_map: EPERM".into())
        );
        // A refusal this process has no reason for still names what is missing.
        for known in [None, Some(&available)] {
            assert_eq!(
                AutoChoice::after_refusal(known),
                AutoChoice::Preload("user namespaces are unavailable".into())
            );
        }
    }

    #[test]
    fn a_preload_choice_without_preload_libraries_says_why_preload_was_chosen() {
        let empty = tempfile::tempdir().unwrap();
        let options = EngineOptions {
            preload_dir: Some(empty.path().to_path_buf()),
            ..EngineOptions::default()
        };
        let choice = AutoChoice::Preload("uid_map: EPERM".into());
        let Err(EngineError::PreloadUnavailable(text)) = choice.engine(&options) else {
            panic!("the preload libraries are not in an empty directory")
        };
        assert!(text.starts_with("uid_map: EPERM; and "), "{text}");
        let namespace = AutoChoice::Namespace.engine(&options).unwrap();
        assert_eq!(namespace.kind(), EngineKind::Namespace);
    }
}
