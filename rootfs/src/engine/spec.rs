//! Building a [`RunSpec`] from an image's config: the rules the bootstrap and `scar run` share
//! (the command from Entrypoint/Cmd or a script, the environment merge, the working directory,
//! the user, the bound directories), with what differs between them as options.

use std::path::{Path, PathBuf};

use crate::image::ImageConfig;

use super::types::{Mount, RunSpec, Stdio};

/// PATH when the image sets none (Docker's default; `scar run` fills it in).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a [`RunSpec`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Neither a script, nor arguments, nor the image's Entrypoint or Cmd name a program.
    #[error("the image has no Entrypoint or Cmd and no command was given")]
    NoCommand,
}

/// What the container runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Command {
    /// Entrypoint + Cmd.
    #[default]
    Image,
    /// Entrypoint + these arguments (Docker's rule: they replace Cmd, the Entrypoint stays);
    /// empty arguments keep Cmd.
    Args(Vec<String>),
    /// `/bin/sh <script>`, the image's Entrypoint and Cmd ignored.
    Script(PathBuf),
}

/// A [`RunSpec`] in the making; see [`RunSpec::builder`].
#[derive(Clone, Debug)]
pub struct RunSpecBuilder<'a> {
    root: PathBuf,
    image: &'a ImageConfig,
    command: Command,
    env: Vec<(String, String)>,
    workdir: Option<String>,
    mounts: Vec<Mount>,
    scratch: PathBuf,
    stdio: [Stdio; 3],
}

impl RunSpec {
    /// Start a spec for a run of the image whose root filesystem is `root` and whose config is
    /// `image`, with `scratch` as the engine's per-run directory (see [`RunSpec::scratch`]):
    /// its Entrypoint + Cmd, its `Env` (entries without `=` or without a name are dropped, as
    /// Docker does), its `WorkingDir` (else `/`) and `User`, no mounts, the caller's standard
    /// streams.
    pub fn builder(root: PathBuf, image: &ImageConfig, scratch: PathBuf) -> RunSpecBuilder<'_> {
        let mut builder = RunSpecBuilder {
            root,
            image,
            command: Command::Image,
            env: Vec::with_capacity(image.env.len() + 16),
            workdir: None,
            mounts: Vec::new(),
            scratch,
            stdio: [Stdio::Inherit; 3],
        };
        for entry in &image.env {
            if let Some((name, value)) = entry.split_once('=')
                && !name.is_empty()
            {
                builder.set(name, value);
            }
        }
        builder
    }
}

impl RunSpecBuilder<'_> {
    /// Run Entrypoint + `args` (an empty `args` keeps the image's Cmd).
    pub fn args(mut self, args: &[String]) -> Self {
        self.command = Command::Args(args.to_vec());
        self
    }

    /// Run `script` (a path inside the container) with the image's `/bin/sh`; the caller binds
    /// the directory holding it.
    pub fn script(mut self, script: impl Into<PathBuf>) -> Self {
        self.command = Command::Script(script.into());
        self
    }

    /// Set `name` to `value`, replacing an earlier value (of the image or of an earlier call)
    /// in place, so that the order stays the image's.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.set(name, value);
        self
    }

    /// [`env`](Self::env) for each pair, in order.
    pub fn envs<'v>(mut self, vars: impl IntoIterator<Item = (&'v str, &'v str)>) -> Self {
        for (name, value) in vars {
            self.set(name, value);
        }
        self
    }

    /// Set `name` to `value` at the end only when nothing set it (Docker's PATH and HOME).
    pub fn env_default(mut self, name: &str, value: &str) -> Self {
        if self.get(name).is_none() {
            self.env.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// The value `name` has so far.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Work in `dir` instead of the image's `WorkingDir`.
    pub fn workdir(mut self, dir: Option<String>) -> Self {
        self.workdir = dir;
        self
    }

    /// Bind `mount`.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Bind each of `mounts`, in order.
    pub fn mounts(mut self, mounts: impl IntoIterator<Item = Mount>) -> Self {
        self.mounts.extend(mounts);
        self
    }

    /// Bind the host directory `dir` at the same path inside the container (the bootstrap's
    /// request directories, which the script finds through the environment).
    pub fn bind_same(self, dir: &Path, read_only: bool) -> Self {
        self.mount(Mount {
            host: dir.to_owned(),
            container: dir.to_owned(),
            read_only,
        })
    }

    /// Standard input, output and error.
    pub fn stdio(mut self, stdin: Stdio, stdout: Stdio, stderr: Stdio) -> Self {
        self.stdio = [stdin, stdout, stderr];
        self
    }

    /// The spec; [`SpecError::NoCommand`] when nothing names a program.
    pub fn build(self) -> Result<RunSpec, SpecError> {
        let argv = match self.command {
            Command::Script(script) => {
                vec!["/bin/sh".to_owned(), script.to_string_lossy().into_owned()]
            }
            Command::Image => self
                .image
                .entrypoint
                .iter()
                .chain(&self.image.cmd)
                .cloned()
                .collect(),
            Command::Args(args) => {
                let tail = if args.is_empty() {
                    &self.image.cmd
                } else {
                    &args
                };
                self.image.entrypoint.iter().chain(tail).cloned().collect()
            }
        };
        if argv.is_empty() {
            return Err(SpecError::NoCommand);
        }
        let [stdin, stdout, stderr] = self.stdio;
        Ok(RunSpec {
            root: self.root,
            argv,
            env: self.env,
            workdir: self
                .workdir
                .or_else(|| self.image.working_dir.clone())
                .unwrap_or_else(|| "/".to_owned()),
            user: self.image.user.clone(),
            mounts: self.mounts,
            scratch: self.scratch,
            stdin,
            stdout,
            stderr,
        })
    }

    fn set(&mut self, name: &str, value: &str) {
        match self.env.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => value.clone_into(&mut slot.1),
            None => self.env.push((name.to_owned(), value.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str], env: &[&str]) -> ImageConfig {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        ImageConfig {
            env: strings(env),
            entrypoint: strings(entrypoint),
            cmd: strings(cmd),
            working_dir: None,
            user: None,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_image_command_is_entrypoint_then_cmd() {
        let config = image(&["/entry", "-x"], &["default"], &[]);
        let spec = RunSpec::builder("/r".into(), &config, "/s".into())
            .build()
            .unwrap();
        assert_eq!(spec.argv, strings(&["/entry", "-x", "default"]));
    }

    #[test]
    fn arguments_replace_cmd_and_keep_the_entrypoint_and_none_keep_cmd() {
        let config = image(&["/entry"], &["default"], &[]);
        let mine = RunSpec::builder("/r".into(), &config, "/s".into())
            .args(&strings(&["mine", "too"]))
            .build()
            .unwrap();
        assert_eq!(mine.argv, strings(&["/entry", "mine", "too"]));
        let none = RunSpec::builder("/r".into(), &config, "/s".into())
            .args(&[])
            .build()
            .unwrap();
        assert_eq!(none.argv, strings(&["/entry", "default"]));
    }

    #[test]
    fn a_script_runs_with_the_images_shell_whatever_the_entrypoint() {
        let config = image(&["/entry"], &["default"], &[]);
        let spec = RunSpec::builder("/r".into(), &config, "/s".into())
            .script("/tmp/r1/.scar/script.sh")
            .build()
            .unwrap();
        assert_eq!(spec.argv, strings(&["/bin/sh", "/tmp/r1/.scar/script.sh"]));
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let config = image(&[], &[], &[]);
        let built = RunSpec::builder("/r".into(), &config, "/s".into()).build();
        assert_eq!(built.err(), Some(SpecError::NoCommand));
        let with_args = RunSpec::builder("/r".into(), &config, "/s".into())
            .args(&strings(&["id"]))
            .build()
            .unwrap();
        assert_eq!(with_args.argv, strings(&["id"]));
    }

    #[test]
    fn later_values_replace_earlier_ones_in_place_and_nameless_image_entries_are_dropped() {
        let config = image(
            &["/e"],
            &[],
            &["A=1", "NOVALUE", "=x", "PATH=/bin", "B=2=3"],
        );
        let spec = RunSpec::builder("/r".into(), &config, "/s".into())
            .env("A", "9")
            .envs([("C", "3"), ("B", "4")])
            .env_default("PATH", DEFAULT_PATH)
            .env_default("HOME", "/root")
            .build()
            .unwrap();
        assert_eq!(
            spec.env,
            pairs(&[
                ("A", "9"),
                ("PATH", "/bin"),
                ("B", "4"),
                ("C", "3"),
                ("HOME", "/root")
            ])
        );
    }

    #[test]
    fn workdir_is_the_callers_then_the_images_then_root_and_user_is_the_images() {
        let mut config = image(&["/e"], &[], &[]);
        let bare = RunSpec::builder("/r".into(), &config, "/s".into())
            .build()
            .unwrap();
        assert_eq!((bare.workdir.as_str(), bare.user), ("/", None));
        config.working_dir = Some("/app".into());
        config.user = Some("1000:1000".into());
        let from_image = RunSpec::builder("/r".into(), &config, "/s".into())
            .build()
            .unwrap();
        assert_eq!(from_image.workdir, "/app");
        assert_eq!(from_image.user.as_deref(), Some("1000:1000"));
        let chosen = RunSpec::builder("/r".into(), &config, "/s".into())
            .workdir(Some("/work".into()))
            .build()
            .unwrap();
        assert_eq!(chosen.workdir, "/work");
    }

    #[test]
    fn mounts_scratch_and_streams_are_as_given() {
        let config = image(&["/e"], &[], &[]);
        let volume = Mount {
            host: "/data".into(),
            container: "/in".into(),
            read_only: true,
        };
        let spec = RunSpec::builder("/root-of-image".into(), &config, "/tmp/r1/scratch".into())
            .bind_same(Path::new("/tmp/r1/input"), false)
            .mounts([volume.clone()])
            .stdio(Stdio::Null, Stdio::Piped, Stdio::Piped)
            .build()
            .unwrap();
        assert_eq!(spec.root, PathBuf::from("/root-of-image"));
        assert_eq!(
            spec.mounts,
            [
                Mount {
                    host: "/tmp/r1/input".into(),
                    container: "/tmp/r1/input".into(),
                    read_only: false,
                },
                volume
            ]
        );
        assert_eq!(spec.scratch, PathBuf::from("/tmp/r1/scratch"));
        assert_eq!(
            (spec.stdin, spec.stdout, spec.stderr),
            (Stdio::Null, Stdio::Piped, Stdio::Piped)
        );
        let defaults = RunSpec::builder("/r".into(), &config, "/s".into())
            .build()
            .unwrap();
        assert_eq!(defaults.stdin, Stdio::Inherit);
    }
}
