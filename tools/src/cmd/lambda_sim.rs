//! `scar lambda-sim`: run a command as AWS Lambda runs a `bootstrap` (see `crate::sim`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::sim::{self, Bind, SimError, Spec};

/// Arguments of `scar lambda-sim`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
The command runs as uid 993 with no capabilities, seccomp refusing prctl, ptrace, seccomp and \
chroot (EPERM) and openat2 (ENOSYS), user namespaces refused, on a bare read-only root: /opt \
(--layer), /var/task (--task, the working directory), /tmp, /proc, /dev, /etc, a static busybox \
in /sim/bin, and the binds given; nothing else of this machine. Needs root.

Exit status: the command's; 125 when the sandbox could not be built, 126 when the program \
cannot be executed, 127 when it is not found.

Example: scar lambda-sim --layer ./layer --task ./function -e PATH=/sim/bin -- sh -c 'id; ls /'")]
pub struct LambdaSimArgs {
    /// The layer directory (an unpacked layer zip), read-only at /opt.
    #[arg(long, value_name = "DIR")]
    layer: Option<PathBuf>,
    /// The function's code, read-only at /var/task (the working directory).
    #[arg(long, value_name = "DIR")]
    task: Option<PathBuf>,
    /// Size of /tmp in MiB (Lambda's EphemeralStorage).
    #[arg(long, value_name = "MIB", default_value_t = sim::DEFAULT_TMP_MB)]
    tmp_mb: u64,
    /// Show a host file or directory read-only at PATH (repeatable).
    #[arg(long = "ro-bind", value_name = "HOST:PATH")]
    ro_bind: Vec<OsString>,
    /// Show a host file or directory writable at PATH (repeatable; not something Lambda has:
    /// for tests that collect files).
    #[arg(long = "bind", value_name = "HOST:PATH")]
    bind: Vec<OsString>,
    /// A variable of the command's environment, which holds nothing else: NAME=value, or NAME
    /// to copy it from here. Give secrets by NAME: the sandbox's init is a fork of this
    /// process, so this command line is readable inside as /proc/1/cmdline. Repeatable.
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<OsString>,
    /// The static busybox for /sim/bin (default: /bin/busybox, else /usr/bin/busybox).
    #[arg(long, value_name = "PATH")]
    busybox: Option<PathBuf>,
    /// The program and its arguments (a program without `/` is searched in the given PATH).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Run `scar lambda-sim`.
pub fn run(args: LambdaSimArgs) -> ExitCode {
    match spec(args).and_then(|spec| sim::run(&spec)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
        Err(err) => {
            eprintln!("scar lambda-sim: {err}");
            ExitCode::from(sim::SETUP_FAILED as u8)
        }
    }
}

fn spec(args: LambdaSimArgs) -> Result<Spec, SimError> {
    let mut binds = Vec::new();
    for (texts, writable) in [(&args.ro_bind, false), (&args.bind, true)] {
        for text in texts {
            binds.push(Bind::parse(text, writable)?);
        }
    }
    let env = args
        .env
        .iter()
        .map(|entry| environment_entry(entry, |name| std::env::var_os(name)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Spec {
        layer: args.layer,
        task: args.task,
        tmp_mb: args.tmp_mb,
        binds,
        env,
        argv: args.command,
        busybox: args.busybox,
    })
}

/// `NAME=value` as given, or `NAME` completed from `lookup` (an unset NAME is an error).
fn environment_entry(
    entry: &OsString,
    lookup: impl Fn(&std::ffi::OsStr) -> Option<OsString>,
) -> Result<OsString, SimError> {
    let bytes = entry.as_bytes();
    if bytes.is_empty() || bytes[0] == b'=' {
        return Err(SimError::Env(entry.clone()));
    }
    if bytes.contains(&b'=') {
        return Ok(entry.clone());
    }
    let value = lookup(entry).ok_or_else(|| SimError::Env(entry.clone()))?;
    let mut full = entry.clone();
    full.push("=");
    full.push(value);
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_takes_its_value_from_here_and_an_unset_one_is_refused() {
        let lookup = |name: &std::ffi::OsStr| (name == "SECRET").then(|| OsString::from("s=3"));
        let got = |text: &str| environment_entry(&OsString::from(text), lookup);
        assert_eq!(got("A=1").unwrap(), "A=1");
        assert_eq!(got("A=").unwrap(), "A=");
        assert_eq!(got("SECRET").unwrap(), "SECRET=s=3");
        assert!(got("UNSET").is_err());
        assert!(got("=x").is_err());
        assert!(got("").is_err());
    }
}
