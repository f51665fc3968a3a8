//! Starting a program inside the image: resolve it, follow `#!` lines, read the ELF `PT_INTERP`,
//! and build the command line of the image's own loader with this library preloaded.
//!
//! Memory comes from `mmap`, never `malloc`: `execve` may be called in a `vfork` child.

use core::ffi::c_char;

use crate::config;
use crate::path::{self, Located, PATH_MAX, PathBuf, cstr, locate};
use crate::sys::{self, AT_FDCWD, Errno};

/// How deep `#!` interpreters may nest (Linux allows 4 as well).
const MAX_SHEBANG: usize = 4;
/// Bytes of a `#!` line the kernel reads.
const SHEBANG_MAX: usize = 256;
/// Most `SCAR_PRELOAD_LIBC_ENV` lines re-added to a child's environment.
const MAX_LIBC_ENV: usize = 8;

#[cfg(target_arch = "x86_64")]
const EM_NATIVE: u16 = 62;
#[cfg(target_arch = "aarch64")]
const EM_NATIVE: u16 = 183;
const PT_INTERP: u32 = 3;

/// A prepared `execve`: pointers into one anonymous mapping, released on drop (when the exec
/// did not happen).
pub struct Launch {
    mem: *mut u8,
    len: usize,
    /// The file to execute (host path).
    pub path: *const c_char,
    /// Its argument vector.
    pub argv: *const *const c_char,
    /// Its environment.
    pub envp: *const *const c_char,
}

impl Drop for Launch {
    fn drop(&mut self) {
        sys::munmap(self.mem, self.len);
    }
}

/// A bump allocator over the launch mapping.
struct Arena {
    base: *mut u8,
    len: usize,
    used: usize,
}

impl Arena {
    fn bytes(&mut self, parts: &[&[u8]]) -> Result<*const c_char, Errno> {
        let n: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
        if self.used + n > self.len {
            return Err(sys::E2BIG);
        }
        // SAFETY: `used + n <= len` bytes of the mapping are ours.
        let start = unsafe { self.base.add(self.used) };
        let mut off = 0;
        for p in parts {
            // SAFETY: within the checked range.
            unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), start.add(off), p.len()) };
            off += p.len();
        }
        // SAFETY: the last byte of the range.
        unsafe { *start.add(off) = 0 };
        self.used += n;
        Ok(start.cast())
    }

    fn pointers(&mut self, n: usize) -> Result<*mut *const c_char, Errno> {
        self.used = self.used.next_multiple_of(8);
        let bytes = n * core::mem::size_of::<usize>();
        if self.used + bytes > self.len {
            return Err(sys::E2BIG);
        }
        // SAFETY: aligned, within the mapping.
        let p = unsafe { self.base.add(self.used) }.cast::<*const c_char>();
        self.used += bytes;
        Ok(p)
    }
}

/// Count the entries of a NULL-terminated vector (null counts as empty).
pub fn count(v: *const *const c_char) -> usize {
    if v.is_null() {
        return 0;
    }
    let mut n = 0;
    // SAFETY: NULL-terminated per the exec contract.
    while !unsafe { *v.add(n) }.is_null() {
        n += 1;
    }
    n
}

/// A program found: its container path as given, and the host file.
struct Program {
    host: PathBuf,
}

/// Resolve a container path to the host file to execute.
fn find(file: &[u8]) -> Result<Program, Errno> {
    let mut host = PathBuf::new();
    match locate(AT_FDCWD, file, true, false, &mut host)? {
        Located::Pass => host.set(file)?,
        Located::Host => {}
    }
    // execve's own answer for a file that is not executable.
    sys::faccessat(AT_FDCWD, host.as_ptr(), 1)?;
    Ok(Program { host })
}

/// `execvp`-style search of `PATH` (from the current environment) inside the image.
fn search(file: &[u8], cpath: &mut PathBuf) -> Result<Program, Errno> {
    let dirs: &[u8] = getenv(b"PATH").unwrap_or(b"/bin:/usr/bin");
    let mut last = sys::ENOENT;
    for dir in dirs.split(|&b| b == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        if cpath.set(dir).is_err() || cpath.push(b"/").is_err() || cpath.push(file).is_err() {
            continue;
        }
        match find(cpath.as_bytes()) {
            Ok(p) => return Ok(p),
            Err(sys::EACCES) => last = sys::EACCES,
            Err(_) => {}
        }
    }
    Err(last)
}

/// `true` when one of the first `n` entries of `envp` starts with `prefix` (`NAME=`).
fn has_var(envp: *const *const c_char, n: usize, prefix: &[u8]) -> bool {
    (0..n).any(|k| {
        // SAFETY: k < n entries of a NULL-terminated vector, each a C string.
        let s = unsafe { cstr((*envp.add(k)).cast()) };
        s.starts_with(prefix)
    })
}

/// A variable of the process environment (`environ`), as bytes.
pub fn getenv(name: &[u8]) -> Option<&'static [u8]> {
    unsafe extern "C" {
        static environ: *const *const u8;
    }
    // SAFETY: reading the libc global; the strings outlive the call.
    let env = unsafe { environ };
    if env.is_null() {
        return None;
    }
    let mut i = 0;
    loop {
        // SAFETY: NULL-terminated environment array.
        let e = unsafe { *env.add(i) };
        if e.is_null() {
            return None;
        }
        // SAFETY: a C string.
        let s = unsafe { cstr(e) };
        if s.len() > name.len() && s.starts_with(name) && s[name.len()] == b'=' {
            return Some(&s[name.len() + 1..]);
        }
        i += 1;
    }
}

/// What the first bytes of a file say (the large variant lives on the stack only briefly).
#[allow(clippy::large_enum_variant)]
enum Kind {
    /// `#!interp [arg]`.
    Script {
        interp: [u8; SHEBANG_MAX],
        ilen: usize,
        arg: [u8; SHEBANG_MAX],
        alen: usize,
    },
    /// A dynamic ELF of our machine, with its loader (container path).
    Dynamic { interp: PathBuf },
    /// A static ELF of our machine: it runs without this library and sees the host's paths.
    Static,
    /// Anything the kernel runs by itself: static ELF, foreign machine.
    Direct,
}

fn inspect(host: &PathBuf) -> Result<Kind, Errno> {
    let fd = sys::openat(AT_FDCWD, host.as_ptr(), sys::O_RDONLY | sys::O_CLOEXEC, 0)?;
    let r = inspect_fd(fd);
    sys::close(fd);
    r
}

fn inspect_fd(fd: i32) -> Result<Kind, Errno> {
    let mut head = [0u8; SHEBANG_MAX];
    let n = sys::pread(fd, &mut head, 0)?;
    let head = &head[..n];
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
        let line = trim(line);
        let split = line
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(line.len());
        let (i, a) = (&line[..split], trim(&line[split..]));
        if i.is_empty() {
            return Err(sys::ENOEXEC);
        }
        let mut k = Kind::Script {
            interp: [0; SHEBANG_MAX],
            ilen: i.len(),
            arg: [0; SHEBANG_MAX],
            alen: a.len(),
        };
        if let Kind::Script { interp, arg, .. } = &mut k {
            interp[..i.len()].copy_from_slice(i);
            arg[..a.len()].copy_from_slice(a);
        }
        return Ok(k);
    }
    if n < 64 || &head[..4] != b"\x7fELF" {
        return Err(sys::ENOEXEC);
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
    if head[4] != 2 || head[5] != 1 || u16_at(18) != EM_NATIVE {
        return Ok(Kind::Direct);
    }
    let phoff = u64::from_le_bytes(head[32..40].try_into().map_err(|_| sys::ENOEXEC)?);
    let (phentsize, phnum) = (u16_at(54) as usize, u16_at(56) as usize);
    if phentsize < 56 || phnum > 512 {
        return Err(sys::ENOEXEC);
    }
    let mut ph = [0u8; 64];
    for i in 0..phnum {
        let got = sys::pread(fd, &mut ph[..56], phoff + (i * phentsize) as u64)?;
        if got < 56 {
            return Err(sys::ENOEXEC);
        }
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) != PT_INTERP {
            continue;
        }
        let off = u64::from_le_bytes(ph[8..16].try_into().map_err(|_| sys::ENOEXEC)?);
        let size = u64::from_le_bytes(ph[32..40].try_into().map_err(|_| sys::ENOEXEC)?) as usize;
        let mut buf = [0u8; PATH_MAX];
        if size == 0 || size >= PATH_MAX {
            return Err(sys::ENOEXEC);
        }
        let got = sys::pread(fd, &mut buf[..size], off)?;
        let s = &buf[..got];
        let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
        let mut interp = PathBuf::new();
        interp.set(s)?;
        return Ok(Kind::Dynamic { interp });
    }
    Ok(Kind::Static)
}

/// Append `verdict<TAB>exe` to the engine's report file (best effort: a run without a report
/// file, or a full disk, must not stop the program).
fn report_static(report: &[u8], verdict: &[u8], exe: &[u8]) {
    if report.is_empty() {
        return;
    }
    // The config stores each value NUL-terminated: `report` is a C string.
    let Ok(fd) = sys::openat(
        AT_FDCWD,
        report.as_ptr(),
        sys::O_WRONLY | sys::O_APPEND | sys::O_CLOEXEC,
        0,
    ) else {
        return;
    };
    let mut line = [0u8; PATH_MAX + 16];
    let parts: [&[u8]; 4] = [verdict, b"\t", exe, b"\n"];
    let mut n = 0;
    for p in parts {
        let take = p.len().min(line.len() - n);
        line[n..n + take].copy_from_slice(&p[..take]);
        n += take;
    }
    // O_APPEND: one write of a short line is not interleaved with another process's.
    let _ = sys::write(fd, &line[..n]);
    sys::close(fd);
}

/// Tell the program's stderr why it was refused, naming the program and the variable.
fn say_refused(exe: &[u8]) {
    let parts: [&[u8]; 3] = [
        b"scar: ",
        exe,
        b": statically linked programs cannot be confined to the image; SCAR_PRELOAD_STATIC=refuse forbids running it (set SCAR_PRELOAD_STATIC=warn to allow it)\n",
    ];
    for p in parts {
        let _ = sys::write(2, p);
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let s = &s[s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len())..];
    &s[..s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t' && b != b'\r')
        .map_or(0, |p| p + 1)]
}

/// Build the launch of `path` with `argv` and `envp` (`search`: `execvp` semantics).
pub fn prepare(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    search_path: bool,
) -> Result<Launch, Errno> {
    if path.is_null() {
        return Err(sys::EFAULT);
    }
    // SAFETY: a C string per the exec contract.
    let file = unsafe { cstr(path.cast()) };
    if file.is_empty() {
        return Err(sys::ENOENT);
    }
    let mut cpath = PathBuf::new();
    let mut prog = if search_path && !file.contains(&b'/') {
        search(file, &mut cpath)?
    } else {
        cpath.set(file)?;
        find(file)?
    };
    // The argument prefix `#!` lines add, innermost first: (interp, arg, script) per level.
    let mut scripts: [(PathBuf, [u8; SHEBANG_MAX], usize, PathBuf); MAX_SHEBANG] =
        core::array::from_fn(|_| (PathBuf::new(), [0; SHEBANG_MAX], 0, PathBuf::new()));
    let mut depth = 0;
    let kind = loop {
        let kind = match inspect(&prog.host) {
            // execvp's rule: a file without `#!` that is not a binary is a shell script.
            Err(sys::ENOEXEC) if search_path && depth == 0 => {
                let mut k = Kind::Script {
                    interp: [0; SHEBANG_MAX],
                    ilen: 7,
                    arg: [0; SHEBANG_MAX],
                    alen: 0,
                };
                if let Kind::Script { interp, .. } = &mut k {
                    interp[..7].copy_from_slice(b"/bin/sh");
                }
                k
            }
            r => r?,
        };
        let Kind::Script {
            interp,
            ilen,
            arg,
            alen,
        } = kind
        else {
            break kind;
        };
        if depth == MAX_SHEBANG {
            return Err(sys::ELOOP);
        }
        let level = &mut scripts[depth];
        level.0.set(&interp[..ilen])?;
        level.1 = arg;
        level.2 = alen;
        level.3.set(cpath.as_bytes())?;
        depth += 1;
        cpath.set(&interp[..ilen])?;
        prog = find(&interp[..ilen])?;
    };
    let argc = count(argv);
    let envc = count(envp);
    let cfg = config::get();
    let mut exe = PathBuf::new();
    if !path::to_container(prog.host.as_bytes(), &mut exe)? {
        exe.set(prog.host.as_bytes())?;
    }
    if matches!(kind, Kind::Static) {
        if cfg.refuse_static {
            report_static(cfg.report, b"refused", exe.as_bytes());
            say_refused(exe.as_bytes());
            return Err(sys::EACCES);
        }
        report_static(cfg.report, b"ran", exe.as_bytes());
    }
    // argv[0] the program sees: the interpreter as named by the outermost `#!`, else the caller's.
    let argv0: &[u8] = if depth > 0 {
        scripts[depth - 1].0.as_bytes()
    } else if argc > 0 {
        // SAFETY: argv[0] is a C string.
        unsafe { cstr((*argv).cast()) }
    } else {
        cpath.as_bytes()
    };
    let mut loader = PathBuf::new();
    let dynamic = match &kind {
        Kind::Dynamic { interp } => {
            let mut abs = PathBuf::new();
            path::normalize(interp.as_bytes(), &mut abs)?;
            path::locate_abs(abs.as_bytes(), true, false, &mut loader)?;
            true
        }
        _ => false,
    };
    // Size: pointers for argv and envp plus every string we write.
    let strings = 4 * PATH_MAX
        + cfg.root.len()
        + cfg.binds_raw.len()
        + cfg.library_path.len()
        + cfg.lib.len()
        + cfg.audit.len()
        + 2 * cfg.libc_env.len()
        + exe.as_bytes().len()
        + argv0.len()
        + depth * (3 * PATH_MAX + SHEBANG_MAX);
    let len = ((argc + envc + 2 * depth + 24) * 8 + strings).next_multiple_of(4096);
    let mem = sys::mmap_anon(len)?;
    let mut launch = Launch {
        mem,
        len,
        path: core::ptr::null(),
        argv: core::ptr::null(),
        envp: core::ptr::null(),
    };
    let mut a = Arena {
        base: mem,
        len,
        used: 0,
    };

    let nargs = argc.max(1) + 2 * depth + 6;
    let out_argv = a.pointers(nargs + 1)?;
    let mut i = 0;
    let mut put = |p: *const c_char| {
        // SAFETY: i < nargs + 1 by construction of `nargs`.
        unsafe { *out_argv.add(i) = p };
        i += 1;
    };
    let host_prog = a.bytes(&[prog.host.as_bytes()])?;
    if dynamic {
        launch.path = a.bytes(&[loader.as_bytes()])?;
        put(launch.path);
        if !cfg.library_path.is_empty() {
            put(a.bytes(&[b"--library-path"])?);
            put(a.bytes(&[cfg.library_path])?);
        }
        if !cfg.musl {
            // The host's /etc/ld.so.cache must not bring host libraries in.
            put(a.bytes(&[b"--inhibit-cache"])?);
        }
        put(host_prog);
    } else {
        launch.path = host_prog;
        put(a.bytes(&[argv0])?);
    }
    // Outermost interpreter's argument and script first, then inner levels, then the caller's
    // arguments after argv[0].
    for level in scripts[..depth].iter().rev() {
        if level.2 > 0 {
            put(a.bytes(&[&level.1[..level.2]])?);
        }
        put(a.bytes(&[level.3.as_bytes()])?);
    }
    for k in 1..argc {
        // SAFETY: k < argc.
        put(unsafe { *argv.add(k) });
    }
    put(core::ptr::null());
    launch.argv = out_argv.cast_const();

    let out_env = a.pointers(envc + config::MAX_FORWARD + MAX_LIBC_ENV + 6)?;
    let mut j = 0;
    for k in 0..envc {
        // SAFETY: k < envc.
        let e = unsafe { *envp.add(k) };
        // SAFETY: a C string.
        let s = unsafe { cstr(e.cast()) };
        if s.starts_with(b"SCAR_PRELOAD_")
            || s.starts_with(b"LD_PRELOAD=")
            || s.starts_with(b"LD_AUDIT=")
        {
            continue;
        }
        // SAFETY: j < envc + MAX_FORWARD + MAX_LIBC_ENV + 6.
        unsafe { *out_env.add(j) = e };
        j += 1;
    }
    // glibc images: the loader's audit module maps the libraries it opens itself (also after
    // `env -i`, which dropped the caller's copy).
    let audit: &[u8] = if cfg.musl { b"" } else { cfg.audit };
    let ours: [(&[u8], &[u8]); 4] = [
        (b"SCAR_PRELOAD_EXE=", exe.as_bytes()),
        (b"SCAR_PRELOAD_ARGV0=", argv0),
        (b"LD_PRELOAD=", cfg.lib),
        (b"LD_AUDIT=", audit),
    ];
    for entry in &cfg.forward[..cfg.nforward] {
        // SAFETY: j < envc + MAX_FORWARD + MAX_LIBC_ENV + 6 (the pointer array's size).
        unsafe { *out_env.add(j) = entry.as_ptr().cast() };
        j += 1;
    }
    // The image's gconv, locale and zoneinfo settings, for a child whose environment lost them.
    for line in cfg
        .libc_env
        .split(|&b| b == b'\n')
        .filter(|l| l.contains(&b'='))
        .take(MAX_LIBC_ENV)
    {
        // The filter above guarantees an `=`.
        let eq = line.iter().position(|&b| b == b'=').unwrap_or(0);
        if has_var(envp, envc, &line[..=eq]) {
            continue;
        }
        let s = a.bytes(&[line])?;
        // SAFETY: j < envc + MAX_FORWARD + MAX_LIBC_ENV + 6.
        unsafe { *out_env.add(j) = s };
        j += 1;
    }
    for (name, value) in ours.iter().filter(|(_, v)| !v.is_empty()) {
        let s = a.bytes(&[name, value])?;
        // SAFETY: j < envc + MAX_FORWARD + MAX_LIBC_ENV + 6.
        unsafe { *out_env.add(j) = s };
        j += 1;
    }
    // SAFETY: as above.
    unsafe { *out_env.add(j) = core::ptr::null() };
    launch.envp = out_env.cast_const();
    Ok(launch)
}
