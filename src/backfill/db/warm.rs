//! A private PostgreSQL cluster kept running between commands: what `postgres-local` samples on
//! while `sample-keep-alive` (default 10 minutes) has not run out since the last command.
//!
//! Starting a cluster costs a copy of the template and the server's start, about a tenth of a
//! second, and stopping it another few hundredths: on a small sample that is the largest part
//! of the wall time, paid again by every command of the edit-sample loop. So the first command
//! starts the cluster detached (in a session of its own, not tied to the command), and the next
//! ones find it, each in a fresh database of its own, until nobody has used it for the
//! keep-alive time; then it stops and its directory is removed.
//!
//! Where: `<parent>/xtask-migrate-<uid>/warm-<server>/`, with `<parent>` the memory-backed
//! `/dev/shm` when it has room, else the temporary directory (as for a per-command cluster),
//! `<uid>` this user's, `<server>` a digest of the binaries and the server settings
//! ([`cluster::server_id`]), so two users, two PostgreSQL installations, or two versions of
//! this tool that start the server differently never share a cluster. The per-user directory
//! is owner-only (when run as root: owned by the `postgres` user the server runs as), and a
//! directory of that name owned by anyone else is not used.
//!
//! Who uses it, and who stops it, is decided by one lock, `warm-<server>.lock` beside the
//! cluster's directory (`flock(2)`, released by the kernel however a process ends): every
//! command holds it shared while it uses the cluster; starting, restarting or stopping the
//! cluster holds it exclusively. A watcher (a small `sh` loop, in a session of its own, using
//! `flock(1)` of util-linux) counts the seconds the lock was free and no command touched
//! `last-use`; past the keep-alive it takes the lock exclusively, stops the server (fast
//! shutdown: nothing in the cluster is kept) and removes the directory. A command that arrives
//! then waits for the lock and starts a new cluster. The watcher also removes the directory if
//! the server dies, and exits once its cluster's directory is gone.
//!
//! A machine without `flock(1)`, a keep-alive of 0, or a place the user cannot safely own
//! gets a per-command cluster ([`super::cluster::Cluster`]) instead: same engine, no reuse.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cluster::{self, Source};
use crate::backfill::error::{Error, ErrorKind, Result};

/// The keep-alive when the configuration says nothing: long enough to span the edits between
/// two samples, short enough that a forgotten server does not hold memory for the day.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(600);

/// The file in the cluster's directory whose first line is the server's pid, written once the
/// server accepts connections: a directory without it is not (or no longer) a usable cluster.
const READY_FILE: &str = "ready";

/// Touched by every command when it is done with the cluster: the watcher's idle clock.
const LAST_USE_FILE: &str = "last-use";

/// The watcher, written into the cluster's directory as `watcher.sh` and run as
/// `sh watcher.sh watch LOCK DIR KEEP_ALIVE_SECONDS PID`. Every second: if the server is gone,
/// it removes the directory under the exclusive lock; if a command touched `last-use` since the
/// last look, or holds the lock, the idle count starts again; once the count reaches the
/// keep-alive, it stops the server under the exclusive lock (SIGINT: fast shutdown) and removes
/// the directory. `stop` (`sh watcher.sh stop DIR PID`) only acts while `ready` still names
/// that server: a cluster started in its place is not touched. It exits when its cluster is
/// replaced (the command that replaced it stopped the server), or, stopping the server, when
/// the directory was removed from under it.
const WATCHER: &str = r#"if [ "$1" = stop ]; then
    dir=$2 pid=$3
    [ "$(head -n 1 "$dir/ready" 2>/dev/null)" = "$pid" ] || exit 0
    kill -INT "$pid" 2>/dev/null
    n=0
    while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
    kill -KILL "$pid" 2>/dev/null
    rm -rf "$dir"
    exit 0
fi
lock=$2 dir=$3 keep=$4 pid=$5
self=$dir/watcher.sh
touch "$dir/seen"
idle=0
while sleep 1; do
    if [ ! -f "$dir/ready" ]; then
        # The directory was removed under the server: stop it, nothing else will.
        kill -INT "$pid" 2>/dev/null
        exit 0
    fi
    [ "$(head -n 1 "$dir/ready" 2>/dev/null)" = "$pid" ] || exit 0
    if ! kill -0 "$pid" 2>/dev/null; then
        exec flock -x "$lock" sh "$self" stop "$dir" "$pid"
    fi
    if [ "$dir/last-use" -nt "$dir/seen" ]; then
        touch "$dir/seen"
        idle=0
        continue
    fi
    if flock -n -x "$lock" true; then idle=$((idle + 1)); else idle=0; fi
    if [ "$idle" -ge "$keep" ] && flock -n -x "$lock" sh "$self" stop "$dir" "$pid"; then
        exit 0
    fi
done
"#;

/// The kept-alive cluster, held (shared lock) for as long as this value lives.
pub struct WarmCluster {
    /// Holds the shared lock; closing it releases the lock.
    _lock: File,
    dir: PathBuf,
    socket: PathBuf,
    version: String,
    bin: PathBuf,
    /// Whether this command started the cluster (else an earlier command did).
    started: bool,
    keep_alive: Duration,
    /// The connection that found the cluster running, for the command to go on with.
    client: Option<postgres::Client>,
}

impl WarmCluster {
    /// The kept-alive cluster of the binaries in `bin`: the running one, or one started now and
    /// kept for `keep_alive` after its last use. `None` when this machine cannot keep one (no
    /// `flock(1)`, no place this user safely owns): the caller starts a per-command cluster.
    pub fn acquire(bin: &Path, keep_alive: Duration) -> Result<Option<WarmCluster>> {
        let Some(place) = Place::new(&cluster::cluster_parent(), bin)? else {
            return Ok(None);
        };
        place.acquire(bin, keep_alive).map(Some)
    }

    /// [`WarmCluster::acquire`] under `parent` instead of the default place.
    pub fn acquire_in(parent: &Path, bin: &Path, keep_alive: Duration) -> Result<WarmCluster> {
        let place = Place::new(parent, bin)?.ok_or_else(|| {
            Error::new(
                ErrorKind::Database,
                format!(
                    "cannot keep a PostgreSQL cluster alive under {}",
                    parent.display()
                ),
            )
        })?;
        place.acquire(bin, keep_alive)
    }

    /// A URL for `database` as the superuser `postgres`, over the cluster's unix socket.
    pub fn url(&self, database: &str) -> String {
        cluster::socket_url(&self.socket, database)
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The cluster's directory (data, socket, log, watcher).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this command started the cluster.
    pub fn started(&self) -> bool {
        self.started
    }

    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// The connection to the `postgres` database that found the cluster running (none when
    /// this command started it), taken once.
    pub fn take_client(&mut self) -> Option<postgres::Client> {
        self.client.take()
    }

    /// The server's pid, as `ready` names it.
    pub fn server_pid(&self) -> Option<u32> {
        read_pid(&self.dir.join(READY_FILE))
    }
}

impl Drop for WarmCluster {
    /// Restarts the watcher's idle clock; the shared lock goes with the file.
    fn drop(&mut self) {
        let _ = File::create(self.dir.join(LAST_USE_FILE));
    }
}

/// Where the kept-alive cluster of some binaries lives, and its lock.
struct Place {
    dir: PathBuf,
    lock: PathBuf,
    user: cluster::User,
}

impl Place {
    /// The place under `parent` for the binaries in `bin`; `None` when `flock(1)` is missing or
    /// the per-user directory is not safely ours.
    fn new(parent: &Path, bin: &Path) -> Result<Option<Place>> {
        if !has_flock() {
            return Ok(None);
        }
        let Some(id) = cluster::server_id(bin) else {
            return Ok(None);
        };
        let user = cluster::server_user()?;
        let Some(base) = user_dir(parent, user) else {
            return Ok(None);
        };
        Ok(Some(Place {
            dir: base.join(format!("warm-{id}")),
            lock: base.join(format!("warm-{id}.lock")),
            user,
        }))
    }

    fn acquire(&self, bin: &Path, keep_alive: Duration) -> Result<WarmCluster> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| cluster::io_error(&format!("open {}", self.lock.display()), e))?;
        lock(&file, Lock::Shared)?;
        if let Some((version, client)) = self.running() {
            return Ok(self.held(file, bin, version, Some(client), keep_alive));
        }
        // Start it, or restart it, alone.
        lock(&file, Lock::Exclusive)?;
        if let Some((version, client)) = self.running() {
            lock(&file, Lock::Shared)?;
            return Ok(self.held(file, bin, version, Some(client), keep_alive));
        }
        let version = self.start(bin, keep_alive)?;
        // Touched before the lock is shared: the watcher's clock starts after this command.
        let _ = File::create(self.dir.join(LAST_USE_FILE));
        lock(&file, Lock::Shared)?;
        Ok(self.held(file, bin, version, None, keep_alive))
    }

    fn held(
        &self,
        lock: File,
        bin: &Path,
        version: String,
        client: Option<postgres::Client>,
        keep_alive: Duration,
    ) -> WarmCluster {
        WarmCluster {
            _lock: lock,
            socket: self.dir.join("socket"),
            dir: self.dir.clone(),
            version,
            bin: bin.to_path_buf(),
            started: client.is_none(),
            keep_alive,
            client,
        }
    }

    /// The running cluster's version and a connection to its `postgres` database, when its
    /// server is up and answers.
    fn running(&self) -> Option<(String, postgres::Client)> {
        let pid = read_pid(&self.dir.join(READY_FILE))?;
        if !cluster::alive(i64::from(pid)) {
            return None;
        }
        let url = cluster::socket_url(&self.dir.join("socket"), "postgres");
        let mut config: postgres::Config = url.parse().ok()?;
        config.connect_timeout(Duration::from_secs(5));
        let mut client = config.connect(postgres::NoTls).ok()?;
        Some((cluster::server_version(&mut client).ok()?, client))
    }

    /// Under the exclusive lock: removes what a previous cluster left (stopping its server if
    /// it still runs), then starts a new one from the template, detached, with its watcher.
    fn start(&self, bin: &Path, keep_alive: Duration) -> Result<String> {
        if let Some(pid) = read_pid(&self.dir.join("data/postmaster.pid")) {
            stop(pid);
        }
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .map_err(|e| cluster::io_error(&format!("remove {}", self.dir.display()), e))?;
        }
        let template = cluster::cache_root().and_then(|cache| cluster::template_dir(&cache, bin));
        if let Some(template) = template.as_deref().filter(|t| t.is_dir()) {
            match self.start_from(bin, Source::Template(template), keep_alive) {
                Ok(version) => return Ok(version),
                // A damaged or foreign template: made again from initdb below.
                Err(_) => {
                    let _ = std::fs::remove_dir_all(template);
                }
            }
        }
        self.start_from(bin, Source::Initdb(template.as_deref()), keep_alive)
    }

    fn start_from(&self, bin: &Path, source: Source<'_>, keep_alive: Duration) -> Result<String> {
        let fail = |e: Error| {
            if let Some(pid) = read_pid(&self.dir.join("data/postmaster.pid")) {
                stop(pid);
            }
            let _ = std::fs::remove_dir_all(&self.dir);
            e
        };
        let made = (|| -> Result<(u32, String)> {
            make_private_dir(&self.dir, self.user)?;
            let socket = self.dir.join("socket");
            make_private_dir(&socket, self.user)?;
            let data = self.dir.join("data");
            cluster::fill_data_dir(bin, self.user, &data, source)?;
            let log = self.dir.join("server.log");
            let pid = cluster::spawn_detached(bin, &data, &socket, self.user, &log)?;
            let url = cluster::socket_url(&socket, "postgres");
            let version = cluster::wait_ready(&url, &log, || !cluster::alive(i64::from(pid)))?;
            Ok((pid, version))
        })();
        let (pid, version) = made.map_err(fail)?;
        let watcher = self.dir.join("watcher.sh");
        let written = std::fs::write(&watcher, WATCHER)
            .and_then(|()| std::fs::write(self.dir.join(READY_FILE), format!("{pid}\n")));
        if let Err(e) = written {
            return Err(fail(cluster::io_error("write the cluster's watcher", e)));
        }
        if let Err(e) = spawn_watcher(&watcher, &self.lock, &self.dir, keep_alive, pid) {
            return Err(fail(e));
        }
        Ok(version)
    }
}

/// Starts the watcher in a session of its own, its output discarded.
fn spawn_watcher(
    script: &Path,
    lock: &Path,
    dir: &Path,
    keep_alive: Duration,
    pid: u32,
) -> Result<()> {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg(script)
        .arg("watch")
        .arg(lock)
        .arg(dir)
        .arg(keep_alive.as_secs().max(1).to_string())
        .arg(pid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
        .map(drop)
        .map_err(|e| cluster::io_error("start the cluster's watcher (sh)", e))
}

/// Whether `flock(1)` is on the PATH (looked for, not run: this is on every command's path).
fn has_flock() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("flock").is_file()))
}

/// `<parent>/xtask-migrate-<uid>`, made owner-only (owned by the server's user when there is
/// one); `None` when it exists and is not a directory owned that way (a symlink, another
/// user's).
fn user_dir(parent: &Path, user: cluster::User) -> Option<PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let base = parent.join(format!("xtask-migrate-{uid}"));
        // Made private under another name and renamed into place, so a command starting at the
        // same moment sees no directory or a finished one, never one still being restricted.
        if std::fs::symlink_metadata(&base).is_err() {
            static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let staging = parent.join(format!(".xtask-migrate-{uid}.{}.{n}", std::process::id()));
            if make_private_dir(&staging, user).is_ok() && std::fs::rename(&staging, &base).is_err()
            {
                let _ = std::fs::remove_dir(&staging);
            }
        }
        let meta = std::fs::symlink_metadata(&base).ok()?;
        let owner = user.map_or(uid, |(server, _)| server);
        (meta.is_dir() && meta.uid() == owner && meta.mode() & 0o077 == 0).then_some(base)
    }
    #[cfg(not(unix))]
    {
        let _ = (parent, user);
        None
    }
}

/// Creates `dir` owner-only and gives it to `user` when there is one.
fn make_private_dir(dir: &Path, user: cluster::User) -> Result<()> {
    std::fs::create_dir(dir)
        .map_err(|e| cluster::io_error(&format!("create {}", dir.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| cluster::io_error(&format!("restrict {}", dir.display()), e))?;
    }
    cluster::chown(dir, user)
}

/// The pid on the first line of `path`.
fn read_pid(path: &Path) -> Option<u32> {
    cluster::first_number(path)
}

/// Stops the server `pid` (fast shutdown), killing it if it has not gone within 20 seconds.
fn stop(pid: u32) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while cluster::alive(i64::from(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if cluster::alive(i64::from(pid)) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

enum Lock {
    Shared,
    Exclusive,
}

/// Takes (or converts to) the lock on `file`, waiting for it.
fn lock(file: &File, kind: Lock) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let operation = match kind {
            Lock::Shared => libc::LOCK_SH,
            Lock::Exclusive => libc::LOCK_EX,
        };
        loop {
            // SAFETY: flock on an open descriptor has no memory-safety preconditions.
            if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(cluster::io_error("lock the kept-alive cluster", e));
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, kind);
        Ok(())
    }
}
