//! A private, throwaway PostgreSQL cluster started from the machine's own PostgreSQL server
//! binaries: what `backfill sample --engine postgres-local` samples on.
//!
//! [`find_binaries`] looks for `initdb` and `postgres`: in the configured `postgres-bin-dir`
//! only, when there is one; else in `pg_config --bindir`, then in `/usr/lib/postgresql/*/bin`
//! (Debian and Ubuntu), newest version first.
//!
//! [`Cluster::start`] fills a new temporary directory (`xtask-sample-pg-*`, in `/dev/shm` when
//! that memory-backed filesystem has 1 GiB free, else in the temporary directory) with a fresh
//! data directory and starts `postgres` on it with durability off (`fsync`, `full_page_writes`:
//! nothing in it outlives the process; WAL only for crash recovery), no TCP listener at all
//! (`listen_addresses` empty), and its unix socket in that directory, readable by its owner
//! only; authentication is `trust`, which the socket's permissions make private. Sessions use
//! UTC, so timestamps read the same on every machine. PostgreSQL refuses to run as root: when
//! this process is root, `initdb` and the server run as the `postgres` user (the directory is
//! given to it and the child drops privileges before `exec`).
//!
//! The data directory is a copy of a template: what `initdb` made the first time these binaries
//! were used, kept in the user's cache (`$XDG_CACHE_HOME/xtask-migrate/`, else
//! `~/.cache/xtask-migrate/`) under a name derived from the binaries' path, size and
//! modification time, so an upgrade makes a new one. Copying 25 MB costs a fraction of `initdb`'s
//! second. The template is published with a rename, so a reader sees all of it or nothing; a
//! template the server cannot start from is removed and made again.
//!
//! The cluster is stopped (immediate shutdown: no shutdown checkpoint, nothing in it is kept) and
//! its directory removed when the [`Cluster`] is dropped: after success, an error, or a panic that
//! unwinds. If this process is killed instead,
//! the server gets SIGINT from the kernel (a parent-death signal, on Linux) and shuts itself
//! down; the directory left behind is removed by the next [`Cluster::start`] on the machine,
//! once the process that made it and its server are both gone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backfill::error::{Error, ErrorKind, Result};

/// The name prefix of a cluster's temporary directory.
pub const DIR_PREFIX: &str = "xtask-sample-pg-";

/// The file in a cluster's directory that names the process that made it.
const OWNER_FILE: &str = "owner.pid";

/// Where Debian and Ubuntu install each PostgreSQL version: `<root>/<version>/bin`.
pub const VERSIONS_ROOT: &str = "/usr/lib/postgresql";

/// The port number only names the socket file (`.s.PGSQL.5432`): nothing listens on TCP.
const PORT: u16 = 5432;

/// The uid and gid the server runs as, when not this process's own.
#[cfg(unix)]
pub(crate) type User = Option<(libc::uid_t, libc::gid_t)>;
#[cfg(not(unix))]
pub(crate) type User = Option<()>;

/// Whether `dir` holds the server binaries a cluster needs.
pub fn has_server_binaries(dir: &Path) -> bool {
    dir.join(exe("initdb")).is_file() && dir.join(exe("postgres")).is_file()
}

pub(crate) fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// Where the server binaries are: `configured` alone when given, else `pg_config --bindir`, else
/// the newest `/usr/lib/postgresql/*/bin`. On failure, every place looked in, for the message.
pub fn find_binaries(configured: Option<&Path>) -> std::result::Result<PathBuf, Vec<String>> {
    find_binaries_in(
        configured,
        Some(Path::new("pg_config")),
        Path::new(VERSIONS_ROOT),
    )
}

/// [`find_binaries`] with the `pg_config` program (`None`: not used) and the versions root given.
pub fn find_binaries_in(
    configured: Option<&Path>,
    pg_config: Option<&Path>,
    versions_root: &Path,
) -> std::result::Result<PathBuf, Vec<String>> {
    if let Some(dir) = configured {
        return if has_server_binaries(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(vec![dir.display().to_string()])
        };
    }
    let mut looked = Vec::new();
    if let Some(program) = pg_config {
        match Command::new(program)
            .arg("--bindir")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
        {
            Ok(output) if output.status.success() => {
                let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
                if has_server_binaries(&dir) {
                    return Ok(dir);
                }
                looked.push(format!("{} (pg_config --bindir)", dir.display()));
            }
            _ => looked.push(format!("pg_config --bindir (no {})", program.display())),
        }
    }
    // `15`, `9.6`: compared as numbers, newest first.
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(versions_root)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let key: Option<Vec<u64>> = name.split('.').map(|p| p.parse().ok()).collect();
                    key.map(|k| (k, entry.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    if let Some((_, dir)) = versions.iter().find(|(_, dir)| has_server_binaries(dir)) {
        return Ok(dir.clone());
    }
    looked.push(format!("{}/*/bin", versions_root.display()));
    Err(looked)
}

/// A running private cluster. Dropping it stops the server and removes its directory.
pub struct Cluster {
    bin: PathBuf,
    socket: PathBuf,
    version: String,
    user: User,
    pid: u32,
    waiter: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
    /// Declared last: removed after [`Drop::drop`] has stopped the server.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A new data directory (a copy of the cached template, or `initdb`), the server started on
    /// it, waited for until it accepts connections.
    pub fn start(bin: &Path) -> Result<Cluster> {
        Cluster::start_with_cache(bin, cache_root().as_deref())
    }

    /// [`Cluster::start`] with the template kept under `cache` (none: always `initdb`).
    pub fn start_with_cache(bin: &Path, cache: Option<&Path>) -> Result<Cluster> {
        for tool in ["initdb", "postgres"] {
            if !bin.join(exe(tool)).is_file() {
                return Err(Error::new(
                    ErrorKind::Database,
                    format!(
                        "PostgreSQL server binary `{}` not found",
                        bin.join(exe(tool)).display()
                    ),
                ));
            }
        }
        let user = server_user()?;
        remove_stale_dirs();
        let template = cache.and_then(|cache| template_dir(cache, bin));
        if let Some(template) = template.as_deref().filter(|t| t.is_dir()) {
            match Cluster::start_on(bin, user, Source::Template(template)) {
                Ok(cluster) => return Ok(cluster),
                // A damaged or foreign template: made again from initdb below.
                Err(_) => {
                    let _ = std::fs::remove_dir_all(template);
                }
            }
        }
        Cluster::start_on(bin, user, Source::Initdb(template.as_deref()))
    }

    fn start_on(bin: &Path, user: User, source: Source<'_>) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(cluster_parent())
            .map_err(|e| io_error("create a temporary directory", e))?;
        std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
            .map_err(|e| io_error("write to the cluster's directory", e))?;
        chown(dir.path(), user)?;
        let data = dir.path().join("data");
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket).map_err(|e| io_error("create the socket directory", e))?;
        chown(&socket, user)?;

        fill_data_dir(bin, user, &data, source)?;

        let log = dir.path().join("server.log");
        let (pid, waiter) = spawn(bin, &data, &socket, user, &log)?;
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            socket,
            version: String::new(),
            user,
            pid,
            waiter: Mutex::new(Some(waiter)),
            stopped: AtomicBool::new(false),
            dir,
        };
        // On failure the cluster is dropped here: the server stopped, the directory removed.
        cluster.version = cluster.wait_ready(&log)?;
        Ok(cluster)
    }

    /// Polls until the server accepts a connection; returns its version (`15.18`).
    fn wait_ready(&self, log: &Path) -> Result<String> {
        wait_ready(&self.url("postgres"), log, || {
            self.waiter
                .lock()
                .map(|w| w.as_ref().is_none_or(|h| h.is_finished()))
                .unwrap_or(true)
        })
    }

    /// A URL for `database` as the superuser `postgres`, over the cluster's unix socket.
    pub fn url(&self, database: &str) -> String {
        socket_url(&self.socket, database)
    }

    /// The server's version, as it reports it (`15.18`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The directory of the binaries it runs.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The cluster's directory (data, socket, log): gone once the cluster is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The operating-system user the server runs as, when not this process's (root's) own.
    pub fn runs_as_other_user(&self) -> bool {
        self.user.is_some()
    }

    /// Immediate shutdown (SIGQUIT): the data is thrown away, so no checkpoint is written. Waits
    /// for the server to exit, killing it after 20 s. Idempotent.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        signal(self.pid, Signal::Quit);
        let handle = self.waiter.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !handle.is_finished() {
                signal(self.pid, Signal::Kill);
            }
            let _ = handle.join();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        // The `dir` field is removed right after this, with everything in it.
    }
}

/// Fills the new data directory `data` from `source`: a copy of the cached template, or `initdb`
/// (then published as the template when there is a cache).
pub(crate) fn fill_data_dir(bin: &Path, user: User, data: &Path, source: Source<'_>) -> Result<()> {
    match source {
        Source::Template(template) => copy_tree(template, data, user)
            .map_err(|e| io_error("copy the cached PostgreSQL data directory", e)),
        Source::Initdb(publish) => {
            initdb(bin, data, user)?;
            if let Some(template) = publish {
                // Best effort: without a cache, every start runs initdb.
                let _ = publish_template(data, template);
            }
            Ok(())
        }
    }
}

/// Polls `url` until the server accepts a connection, for at most a minute or until `exited`
/// says the server is gone; returns its version (`15.18`), or the last lines of its `log`.
pub(crate) fn wait_ready(url: &str, log: &Path, exited: impl Fn() -> bool) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut client) = postgres::Client::connect(url, postgres::NoTls) {
            return server_version(&mut client);
        }
        if exited() || Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            return Err(Error::new(
                ErrorKind::Database,
                format!(
                    "the private PostgreSQL server did not start: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The server's version as its first word says it (`15.18`).
pub(crate) fn server_version(client: &mut postgres::Client) -> Result<String> {
    let version: String = client
        .query_one("SHOW server_version", &[])
        .map_err(|e| Error::new(ErrorKind::Database, e.to_string()))?
        .get(0);
    Ok(version
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// Memory-backed storage for clusters, when the machine has it with room to spare.
const SHM: &str = "/dev/shm";

/// The free space `/dev/shm` must have for a cluster to go there (a container's default 64 MB
/// does not: the cluster then goes to the temporary directory).
const SHM_MIN_FREE: u64 = 1 << 30;

/// Where a new cluster's directory goes: `/dev/shm` (memory-backed, where the thousands of small
/// files of a data directory are written and removed in a fraction of a disk's time; the cluster
/// is thrown away anyway) when it has at least 1 GiB free, else the temporary directory.
pub(crate) fn cluster_parent() -> PathBuf {
    let shm = Path::new(SHM);
    if free_bytes(shm).is_some_and(|free| free >= SHM_MIN_FREE) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Every place a cluster's directory may be, for the removal of those left behind.
fn cluster_parents() -> Vec<PathBuf> {
    let mut parents = vec![std::env::temp_dir()];
    if Path::new(SHM).is_dir() {
        parents.push(PathBuf::from(SHM));
    }
    parents
}

/// The space available to this user on the filesystem of `path`, if it is a writable directory.
fn free_bytes(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: access and statvfs read a NUL-terminated path; `stat` is a plain struct the
        // call fills.
        unsafe {
            if libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) != 0 {
                return None;
            }
            let mut stat: libc::statvfs = std::mem::zeroed();
            if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
                return None;
            }
            #[allow(clippy::unnecessary_cast)]
            Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Where a cluster's data directory comes from.
pub(crate) enum Source<'a> {
    /// A copy of the cached template.
    Template(&'a Path),
    /// `initdb`, then published as the template at this path, when there is a cache.
    Initdb(Option<&'a Path>),
}

/// initdb's arguments; part of the template's name, so changing them makes a new template.
const INITDB_ARGS: &[&str] = &[
    "-U",
    "postgres",
    "-A",
    "trust",
    "-E",
    "UTF8",
    "--locale=C",
    // 1 MB WAL segments instead of 16: a smaller directory to copy, nothing lost for a
    // throwaway cluster.
    "--wal-segsize=1",
    "--no-sync",
    "--no-instructions",
];

fn initdb(bin: &Path, data: &Path, user: User) -> Result<()> {
    let initdb = command(&bin.join(exe("initdb")), user)
        .arg("-D")
        .arg(data)
        .args(INITDB_ARGS)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::Database,
                format!("cannot run {}: {e}", bin.join(exe("initdb")).display()),
            )
        })?;
    if !initdb.status.success() {
        return Err(Error::new(
            ErrorKind::Database,
            format!(
                "initdb failed ({}): {}",
                initdb.status,
                String::from_utf8_lossy(&initdb.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// The user's cache directory for this tool, when the environment names one.
pub(crate) fn cache_root() -> Option<PathBuf> {
    let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(non_empty)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(non_empty)
                .map(|h| h.join(".cache"))
        })
        .map(|cache| cache.join("xtask-migrate"))
}

/// The template's path in `cache` for the binaries in `bin`: named by [`binaries_id`].
pub fn template_dir(cache: &Path, bin: &Path) -> Option<PathBuf> {
    Some(cache.join(format!("pg-template-{}", binaries_id(bin)?)))
}

/// A short digest of the binaries' path, the server binary's size and modification time, and
/// initdb's arguments: what a data directory made by them depends on (an upgrade changes it).
pub(crate) fn binaries_id(bin: &Path) -> Option<String> {
    use sha2::Digest;
    let server = std::fs::metadata(bin.join(exe("postgres"))).ok()?;
    let modified = server
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    let mut digest = sha2::Sha256::new();
    digest.update(bin.to_string_lossy().as_bytes());
    digest.update(format!(
        "\0{}\0{modified}\0{}",
        server.len(),
        INITDB_ARGS.join(" ")
    ));
    Some(
        digest.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Copies a freshly made data directory to `template`, through a temporary name and a rename:
/// a concurrent start sees the whole template or none. Another process's template, published
/// first, wins.
fn publish_template(data: &Path, template: &Path) -> std::io::Result<()> {
    let cache = template.parent().unwrap_or(template);
    std::fs::create_dir_all(cache)?;
    let staging = tempfile::Builder::new()
        .prefix(".pg-template-")
        .tempdir_in(cache)?;
    let copy = staging.path().join("data");
    copy_tree(data, &copy, None)?;
    if std::fs::rename(&copy, template).is_err() && !template.is_dir() {
        return Err(std::io::Error::other("cannot publish the template"));
    }
    Ok(())
}

/// Copies the directory tree `from` to a new directory `to`, directories owner-only (as
/// PostgreSQL requires of a data directory), everything given to `user` when there is one.
fn copy_tree(from: &Path, to: &Path, user: User) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
    }
    chown(to, user).map_err(|e| std::io::Error::other(e.to_string()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target, user)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            chown(&target, user).map_err(|e| std::io::Error::other(e.to_string()))?;
        }
    }
    Ok(())
}

/// `postgresql://postgres@<socket directory, percent-encoded>:5432/<database>`: the driver reads
/// a host that starts with `/` as a unix socket directory.
pub(crate) fn socket_url(socket: &Path, database: &str) -> String {
    let socket: String = socket
        .to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("postgresql://postgres@{socket}:{PORT}/{database}")
}

pub(crate) fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot {what}: {e}"))
}

/// The `postgres` user when this process is root (PostgreSQL refuses to run as root), else none.
#[cfg(unix)]
pub(crate) fn server_user() -> Result<User> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // SAFETY: getpwnam takes a NUL-terminated string; the record is read at once, before any
    // other call could reuse its static buffer.
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    if pw.is_null() {
        return Err(Error::new(
            ErrorKind::Database,
            "running as root, and there is no `postgres` user to run the private PostgreSQL server as (PostgreSQL refuses to run as root): create one (useradd --system postgres) or run as another user",
        ));
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

#[cfg(not(unix))]
pub(crate) fn server_user() -> Result<User> {
    Ok(None)
}

pub(crate) fn chown(path: &Path, user: User) -> Result<()> {
    #[cfg(unix)]
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| io_error(&format!("give {} to the postgres user", path.display()), e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, user);
    Ok(())
}

/// A command that runs as `user` and gets SIGINT when the thread that started it ends (Linux).
fn command(program: &Path, user: User) -> Command {
    command_tied(program, user, true)
}

/// A command that runs as `user`; `tied`: it gets SIGINT when the thread that started it ends
/// (Linux), else it runs in a session of its own (no terminal's signals, no parent's death).
fn command_tied(program: &Path, user: User, tied: bool) -> Command {
    let mut cmd = Command::new(program);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure only calls async-signal-safe functions
        // (setgroups, setgid, setuid, setsid, prctl).
        unsafe {
            cmd.pre_exec(move || {
                if let Some((uid, gid)) = user
                    && (libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                if !tied {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    return Ok(());
                }
                // After setuid: changing credentials clears the parent-death signal.
                #[cfg(target_os = "linux")]
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (user, tied);
    cmd
}

/// Starts `postgres` over `data`; returns its pid and the thread that waits for it.
fn spawn(
    bin: &Path,
    data: &Path,
    socket: &Path,
    user: User,
    log_path: &Path,
) -> Result<(u32, JoinHandle<()>)> {
    let mut cmd = server_command(bin, data, socket, user, log_path, true)?;
    // The server is started, and waited for, by a thread that lives exactly as long as it: the
    // parent-death signal fires when the starting *thread* ends, not only the process.
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("postgres-local".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .map_err(|e| io_error("start a thread", e))?;
    let pid = rx
        .recv()
        .map_err(|e| Error::new(ErrorKind::Database, e.to_string()))?
        .map_err(|e| {
            Error::new(
                ErrorKind::Database,
                format!("cannot start {}: {e}", bin.join(exe("postgres")).display()),
            )
        })?;
    Ok((pid, waiter))
}

/// Starts `postgres` over `data` in a session of its own, outliving this process; returns its
/// pid. A thread reaps it should it exit while this process runs; after that, init does.
pub(crate) fn spawn_detached(
    bin: &Path,
    data: &Path,
    socket: &Path,
    user: User,
    log_path: &Path,
) -> Result<u32> {
    let mut cmd = server_command(bin, data, socket, user, log_path, false)?;
    let mut child = cmd.spawn().map_err(|e| {
        Error::new(
            ErrorKind::Database,
            format!("cannot start {}: {e}", bin.join(exe("postgres")).display()),
        )
    })?;
    let pid = child.id();
    // Reaped if it exits while this process runs, so its pid does not linger as a zombie that
    // looks alive to whoever watches it.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(pid)
}

/// The server settings of a private cluster: a throwaway database on this machine, whose
/// contents nobody needs after a crash, and which nothing replicates or archives.
pub(crate) const SERVER_SETTINGS: &[&str] = &[
    // No TCP listener: the unix socket in the cluster's directory, owner-only.
    "listen_addresses=",
    "unix_socket_permissions=0700",
    // Durability off: nothing in the cluster outlives it.
    "fsync=off",
    "full_page_writes=off",
    // Commits wait for their WAL to be written (not synced: `fsync` is off), a write to a
    // file in memory. A commit that does not wait leaves its rows without hint bits until the
    // WAL writer comes by, so the vacuum after the fixtures' load could not mark a page
    // all-visible, and every index-only scan would visit the heap.
    "synchronous_commit=on",
    // WAL carries only what crash recovery needs (no standby, no archive, no logical
    // decoding): less to write per batch, and no WAL for what a transaction creates and fills.
    "wal_level=minimal",
    "max_wal_senders=0",
    "archive_mode=off",
    // The sample's few megabytes of WAL never trigger a checkpoint of their own; the ones
    // `CREATE DATABASE` and `DROP DATABASE` force are all there is.
    "max_wal_size=1GB",
    "checkpoint_timeout=1h",
    // The sample analyzes and vacuums what it loads itself, at the moment it matters.
    "autovacuum=off",
    // Fixture-sized tables: compiling a plan to machine code costs more than running it.
    "jit=off",
    // A command holds up to four sessions (the cluster's, the sample's, its checks', the spare
    // maker's), and several commands may share the kept-alive cluster.
    "max_connections=40",
    // Dynamic shared memory in files of the data directory instead of `/dev/shm`: a server
    // that is killed leaves nothing behind once its directory is removed.
    "dynamic_shared_memory_type=mmap",
    "timezone=UTC",
    "datestyle=iso, mdy",
];

/// A short digest of the binaries ([`binaries_id`]) and the [`SERVER_SETTINGS`]: a kept-alive
/// cluster is reused only by commands that would start it the same way.
pub(crate) fn server_id(bin: &Path) -> Option<String> {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    digest.update(binaries_id(bin)?.as_bytes());
    for setting in SERVER_SETTINGS {
        digest.update(format!("\0{setting}"));
    }
    Some(
        digest.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// The `postgres` command line of a private cluster, its output going to `log_path`.
fn server_command(
    bin: &Path,
    data: &Path,
    socket: &Path,
    user: User,
    log_path: &Path,
    tied: bool,
) -> Result<Command> {
    let log = std::fs::File::create(log_path).map_err(|e| io_error("create the server log", e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| io_error("open the server log", e))?;
    let mut cmd = command_tied(&bin.join(exe("postgres")), user, tied);
    cmd.arg("-D")
        .arg(data)
        .arg("-k")
        .arg(socket)
        .args(["-p", &PORT.to_string()])
        .args(SERVER_SETTINGS.iter().flat_map(|setting| ["-c", setting]))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    Ok(cmd)
}

enum Signal {
    Quit,
    Kill,
}

fn signal(pid: u32, signal: Signal) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        let signal = match signal {
            Signal::Quit => libc::SIGQUIT,
            Signal::Kill => libc::SIGKILL,
        };
        // SAFETY: kill has no memory-safety preconditions; pid is our own child.
        unsafe {
            libc::kill(pid, signal);
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (pid, signal);
    }
}

/// Whether process `pid` exists (a process of another user counts).
pub(crate) fn alive(pid: i64) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 only checks that the process exists.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Removes the directories of clusters whose process was killed before it could remove them:
/// the process named in `owner.pid` is gone, and so is the server of `data/postmaster.pid`. A
/// directory without `owner.pid` is another process's, just being made, unless it is an hour
/// old.
fn remove_stale_dirs() {
    for parent in cluster_parents() {
        remove_stale_dirs_in(&parent);
    }
}

/// The number on the first line of `path` (a pid file's).
pub(crate) fn first_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn remove_stale_dirs_in(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        if !ours || !path.is_dir() {
            continue;
        }
        let owner_gone = match first_number::<i64>(&path.join(OWNER_FILE)) {
            Some(owner) => !alive(owner),
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600)),
        };
        let server_gone =
            first_number::<i64>(&path.join("data/postmaster.pid")).is_none_or(|pid| !alive(pid));
        if owner_gone && server_gone {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for tool in ["initdb", "postgres"] {
            std::fs::write(dir.join(exe(tool)), "").unwrap();
        }
    }

    #[test]
    fn finds_the_newest_version_and_names_every_place_looked_in() {
        let root = tempfile::tempdir().unwrap();
        let versions = root.path().join("lib");
        for version in ["9.6", "13", "15"] {
            fake_bin(&versions.join(version).join("bin"));
        }
        std::fs::create_dir_all(versions.join("16/bin")).unwrap(); // a client-only install
        std::fs::create_dir_all(versions.join("common/bin")).unwrap();
        assert_eq!(
            find_binaries_in(None, None, &versions),
            Ok(versions.join("15/bin"))
        );
        let missing = root.path().join("no-such-pg_config");
        let empty = root.path().join("empty");
        assert_eq!(
            find_binaries_in(None, Some(&missing), &empty),
            Err(vec![
                format!("pg_config --bindir (no {})", missing.display()),
                format!("{}/*/bin", empty.display())
            ])
        );
        // A configured directory is the only place looked in.
        assert_eq!(
            find_binaries_in(Some(&empty), None, &versions),
            Err(vec![empty.display().to_string()])
        );
        assert_eq!(
            find_binaries_in(Some(&versions.join("13/bin")), None, &versions),
            Ok(versions.join("13/bin"))
        );
    }

    #[test]
    fn socket_urls_are_percent_encoded() {
        let url = socket_url(Path::new("/tmp/a b/socket"), "db");
        assert_eq!(url, "postgresql://postgres@%2Ftmp%2Fa%20b%2Fsocket:5432/db");
        let config: postgres::Config = url.parse().unwrap();
        assert_eq!(
            config.get_hosts(),
            &[postgres::config::Host::Unix(PathBuf::from(
                "/tmp/a b/socket"
            ))]
        );
        assert_eq!(config.get_dbname(), Some("db"));
    }
}
