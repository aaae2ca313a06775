//! Test support for this repository's tests, benchmarks and fixture generator (never part of the
//! shipped library): a throwaway PostgreSQL server, started from the machine's PostgreSQL 15
//! binaries, and a deterministic fixture generator for the example application.
//!
//! [`PgServer::start`] runs `initdb` into a temporary directory and starts `postgres` on a free
//! port of 127.0.0.1 with its own unix socket directory, `fsync=off` and trust authentication.
//! PostgreSQL refuses to run as root, so when the tests run as root both run as the `postgres`
//! user (the directory is chowned to it and the child drops privileges before exec, like
//! `runuser -u postgres --` would). The server stops when its [`PgServer`] is dropped; the child
//! also gets SIGINT if the test process dies (parent-death signal), so no server outlives a run.
//! [`shared`] starts one server per test binary, stopped at process exit; give each test its
//! own database with [`PgServer::create_database`].
//! [`PgServer::start_replica`] makes a streaming hot standby of a server (`pg_basebackup -R`),
//! for tests of replication lag: pause its replay with `pg_wal_replay_pause()`.
//!
//! A missing server binary is an error with a clear message, and tests fail on it: a skipped
//! PostgreSQL test would pass a build that was never checked against PostgreSQL.
//!
//! [`write_social_fixtures`] generates the example application's fixtures (users, follows,
//! posts) deterministically, at any size: the committed `fixtures/` and the benchmark's.
//!
//! Unix only: starting the server as another user and signalling it go through libc.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the server binaries are looked for, unless `XTASK_PG_BIN` says otherwise.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgServer {
    dir: PathBuf,
    /// Keeps the directory alive for an owned server; the shared one removes it by path at exit.
    _tempdir: Option<tempfile::TempDir>,
    bin: PathBuf,
    user: Option<(libc::uid_t, libc::gid_t)>,
    port: u16,
    pid: i32,
    waiter: std::sync::Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
    databases: AtomicUsize,
}

/// The uid and gid to run the server as: the `postgres` user when we are root, else ourselves.
fn server_user() -> Result<Option<(libc::uid_t, libc::gid_t)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: getpwnam takes a NUL-terminated string; the result is read at once, before any
    // other call could reuse its static buffer.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("running as root, and there is no `postgres` user to run PostgreSQL as (PostgreSQL refuses to run as root)".into());
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

fn chown(path: &Path, user: Option<(libc::uid_t, libc::gid_t)>) -> Result<(), String> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    Ok(())
}

/// A command that runs as `user`, and (for the server) gets SIGINT when its parent thread ends.
fn command(bin: &Path, user: Option<(libc::uid_t, libc::gid_t)>, die_with_parent: bool) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(bin);
    // SAFETY: the closure only calls async-signal-safe functions (setgroups, setgid, setuid,
    // prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = user
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // After setuid: changing credentials clears the parent-death signal.
            #[cfg(target_os = "linux")]
            if die_with_parent && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Removes the directories of servers that were killed with their test process (no exit
/// handler ran): an `xtask-pg-*` directory whose postmaster is gone and that is old enough not to
/// be another run's initdb in progress.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("xtask-pg-"));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if !is_ours || !old {
            continue;
        }
        let pid = std::fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .next()
                    .and_then(|l| l.trim().parse::<i32>().ok())
            });
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = pid.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if !alive {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Starts `postgres` over `data` on `port`; returns its pid and the thread that reaps it.
/// `append` keeps the log of a previous start (a restart).
fn spawn(
    bin: &Path,
    data: &Path,
    socket: &Path,
    port: u16,
    user: Option<(libc::uid_t, libc::gid_t)>,
    log_path: &Path,
    append: bool,
) -> Result<(i32, JoinHandle<()>), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log_path)
        .map_err(|e| e.to_string())?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = command(&bin.join("postgres"), user, true);
    cmd.arg("-D")
        .arg(data)
        .arg("-k")
        .arg(socket)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=100"])
        // Dynamic shared memory in files of the data directory, not `/dev/shm`: a server a
        // test kills leaves nothing behind once its directory is removed.
        .args(["-c", "dynamic_shared_memory_type=mmap"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // The child is spawned and reaped by a thread that lives exactly as long as it: the
    // parent-death signal fires when the spawning *thread* ends, not only the process.
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name(format!("postgres-{port}"))
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id() as i32));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(format!("cannot start postgres: {e}")));
            }
        })
        .map_err(|e| e.to_string())?;
    let pid = rx.recv().map_err(|e| e.to_string())??;
    Ok((pid, waiter))
}

fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl PgServer {
    /// initdb + postgres in a new temporary directory; waits until it accepts connections.
    /// The binaries come from `XTASK_PG_BIN`, else [`DEFAULT_PG_BIN`].
    pub fn start() -> Result<PgServer, String> {
        let bin = std::env::var_os("XTASK_PG_BIN")
            .map_or_else(|| PathBuf::from(DEFAULT_PG_BIN), PathBuf::from);
        PgServer::start_with(&bin)
    }

    /// [`PgServer::start`] with the binaries of `bin`.
    pub fn start_with(bin: &Path) -> Result<PgServer, String> {
        for tool in ["initdb", "postgres"] {
            if !bin.join(tool).is_file() {
                return Err(format!(
                    "PostgreSQL server binary `{}` not found: install PostgreSQL 15 (apt-get install postgresql-15) or point XTASK_PG_BIN at its bin directory",
                    bin.join(tool).display()
                ));
            }
        }
        let user = server_user()?;
        remove_stale_dirs();
        let tempdir = tempfile::Builder::new()
            .prefix("xtask-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let dir = tempdir.path().to_path_buf();
        chown(&dir, user)?;
        let data = dir.join("data");
        let socket = dir.join("socket");
        std::fs::create_dir(&socket).map_err(|e| e.to_string())?;
        chown(&socket, user)?;

        let initdb = command(&bin.join("initdb"), user, false)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !initdb.status.success() {
            return Err(format!(
                "initdb failed ({}): {}",
                initdb.status,
                String::from_utf8_lossy(&initdb.stderr).trim()
            ));
        }

        let log_path = dir.join("server.log");
        let mut last_error = String::new();
        // A free port can be taken between finding it and the server binding it: try again.
        for _ in 0..3 {
            let port = free_port()?;
            let (pid, waiter) = spawn(bin, &data, &socket, port, user, &log_path, false)?;
            let mut server = PgServer {
                dir: dir.clone(),
                _tempdir: None,
                bin: bin.to_path_buf(),
                user,
                port,
                pid,
                waiter: std::sync::Mutex::new(Some(waiter)),
                stopped: AtomicBool::new(false),
                databases: AtomicUsize::new(0),
            };
            match server.wait_ready(&log_path) {
                Ok(()) => {
                    server._tempdir = Some(tempdir);
                    return Ok(server);
                }
                Err(e) => {
                    last_error = e;
                    server.stop();
                }
            }
        }
        Err(last_error)
    }

    /// A streaming standby of this server: `pg_basebackup -R` (which writes `standby.signal` and
    /// `primary_conninfo`) into a new temporary directory, started as a hot standby on its own
    /// port. It stops when dropped. Pause its replay with `SELECT pg_wal_replay_pause()` to make
    /// it lag, `pg_wal_replay_resume()` to let it catch up.
    pub fn start_replica(&self) -> Result<PgServer, String> {
        let tool = self.bin.join("pg_basebackup");
        if !tool.is_file() {
            return Err(format!(
                "PostgreSQL client binary `{}` not found",
                tool.display()
            ));
        }
        let tempdir = tempfile::Builder::new()
            .prefix("xtask-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let dir = tempdir.path().to_path_buf();
        chown(&dir, self.user)?;
        let (data, socket) = (dir.join("data"), dir.join("socket"));
        std::fs::create_dir(&socket).map_err(|e| e.to_string())?;
        chown(&socket, self.user)?;
        let backup = command(&tool, self.user, false)
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "--no-sync", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "postgres"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run pg_basebackup: {e}"))?;
        if !backup.status.success() {
            return Err(format!(
                "pg_basebackup failed ({}): {}",
                backup.status,
                String::from_utf8_lossy(&backup.stderr).trim()
            ));
        }
        let log_path = dir.join("server.log");
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let (pid, waiter) =
                spawn(&self.bin, &data, &socket, port, self.user, &log_path, false)?;
            let mut server = PgServer {
                dir: dir.clone(),
                _tempdir: None,
                bin: self.bin.clone(),
                user: self.user,
                port,
                pid,
                waiter: std::sync::Mutex::new(Some(waiter)),
                stopped: AtomicBool::new(false),
                databases: AtomicUsize::new(0),
            };
            match server.wait_ready(&log_path) {
                Ok(()) => {
                    server._tempdir = Some(tempdir);
                    return Ok(server);
                }
                Err(e) => {
                    last_error = e;
                    server.stop();
                }
            }
        }
        Err(last_error)
    }

    fn wait_ready(&self, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if postgres::Client::connect(&self.url("postgres"), postgres::NoTls).is_ok() {
                return Ok(());
            }
            let exited = self
                .waiter
                .lock()
                .map(|w| w.as_ref().is_none_or(|h| h.is_finished()))
                .unwrap_or(true);
            if exited || Instant::now() > deadline {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!(
                    "postgres did not start on port {}: {}",
                    self.port,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory's parent (holds `data/`, `socket/`, `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A URL for database `db` as the superuser `postgres` (trust authentication, no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database with a unique name and returns its URL.
    pub fn create_database(&self, prefix: &str) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name: String = format!("{prefix}_{n}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut client = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test server on port {}: {e}", self.port));
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        self.url(&name)
    }

    /// Stops the server (fast shutdown: sessions are terminated), waits `downtime`, and starts
    /// it again on the same port and data: what a client sees of a server restart.
    pub fn restart(&mut self, downtime: Duration) -> Result<(), String> {
        self.stop();
        std::thread::sleep(downtime);
        let (data, socket, log) = (
            self.dir.join("data"),
            self.dir.join("socket"),
            self.dir.join("server.log"),
        );
        let (pid, waiter) = spawn(&self.bin, &data, &socket, self.port, self.user, &log, true)?;
        self.pid = pid;
        self.waiter = std::sync::Mutex::new(Some(waiter));
        self.stopped = AtomicBool::new(false);
        self.wait_ready(&log)
    }

    /// Fast shutdown (SIGINT), waits for the server to exit. Idempotent.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        // SAFETY: kill has no memory-safety preconditions; pid is our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGINT);
        }
        let handle = self.waiter.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                // SAFETY: as above.
                unsafe {
                    libc::kill(self.pid, libc::SIGKILL);
                }
            }
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(server) = SHARED.get() {
        server.stop();
        let _ = std::fs::remove_dir_all(&server.dir);
    }
}

/// One server for the whole test binary, started on first use and stopped when the process
/// exits. Panics (failing the test) with the reason when it cannot start.
pub fn shared() -> &'static PgServer {
    SHARED.get_or_init(|| {
        let mut server = PgServer::start()
            .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL server: {e}"));
        // The shared server is never dropped: the exit handler removes its directory instead.
        if let Some(tempdir) = server._tempdir.take() {
            let _ = tempdir.keep();
        }
        // SAFETY: stop_shared is a plain function that never unwinds across the FFI boundary
        // (every call in it ignores errors rather than panicking).
        unsafe {
            libc::atexit(stop_shared);
        }
        server
    })
}

/// Sizes of a generated fixture set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocialFixtures {
    pub users: usize,
    pub follows: usize,
    pub posts: usize,
}

/// SplitMix64: tiny, fast and the same on every platform, so generated fixtures never change
/// unless the generator does.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Skewed towards 0: a few popular users get most follows and posts, like real data.
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        let b = self.below(n);
        a * b / n.max(1)
    }
}

/// `YYYY-MM-DD HH:MM:SS` for seconds since 1970-01-01 (Howard Hinnant's civil-from-days).
fn timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Writes `users.csv`, `follows.csv` and `posts.csv` for the example schema into `dir`:
/// `users` users with sparse ids (gaps of every size, one jump past a million), about 3 follows
/// and 1.6 posts per user, skewed towards popular users, and the awkward values fixtures must
/// carry: NULL and empty display names, quotes, commas, newlines and non-ASCII text.
pub fn write_social_fixtures(
    dir: &Path,
    users: usize,
    seed: u64,
) -> std::io::Result<SocialFixtures> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng(seed);
    const START: u64 = 1_672_531_200; // 2023-01-01 00:00:00

    let mut ids = Vec::with_capacity(users);
    let mut id = 0u64;
    for i in 0..users {
        id += match rng.below(100) {
            0..=59 => 1,
            60..=89 => 2 + rng.below(5),
            _ => 10 + rng.below(90),
        };
        if i == users / 2 {
            id += 1_000_000;
        }
        ids.push(id);
    }
    let mut w = csv::Writer::from_path(dir.join("users.csv"))?;
    w.write_record(["id", "handle", "display_name", "created_at"])?;
    for (i, id) in ids.iter().enumerate() {
        let display = match rng.below(40) {
            0..=3 => "\\N".to_string(),
            4 => String::new(),
            5 => format!("Ana \"the dev\", #{id}"),
            6 => format!("Zoë Ångström {id}"),
            _ => format!("User {id}"),
        };
        let created = timestamp(START + (i as u64) * 600 + rng.below(600));
        w.write_record([id.to_string(), format!("user{id}"), display, created])?;
    }
    w.flush()?;

    let n = ids.len() as u64;
    let mut pairs = std::collections::BTreeSet::new();
    for follower in 0..n {
        let count = match rng.below(10) {
            0..=1 => 0,
            2..=7 => 1 + rng.below(4),
            _ => 4 + rng.below(8),
        };
        for _ in 0..count {
            let followee = rng.skewed(n);
            if followee != follower {
                pairs.insert((ids[follower as usize], ids[followee as usize]));
            }
        }
    }
    let mut w = csv::Writer::from_path(dir.join("follows.csv"))?;
    w.write_record(["follower_id", "followee_id", "created_at"])?;
    for (follower, followee) in &pairs {
        w.write_record([
            follower.to_string(),
            followee.to_string(),
            timestamp(START + 31_536_000 + rng.below(31_536_000)),
        ])?;
    }
    w.flush()?;

    let posts = users * 8 / 5;
    let mut w = csv::Writer::from_path(dir.join("posts.csv"))?;
    w.write_record(["id", "author_id", "body", "created_at"])?;
    let mut post_id = 1000u64;
    for i in 0..posts {
        post_id += 1 + rng.below(3);
        let author = ids[rng.skewed(n) as usize];
        let body = match i % 50 {
            0 => format!("Post {post_id}, with a comma and a \"quote\""),
            1 => format!("Post {post_id}\nsecond line"),
            2 => format!("Post {post_id}: café ☕"),
            _ => format!("Post {post_id} by user{author}"),
        };
        w.write_record([
            post_id.to_string(),
            author.to_string(),
            body,
            timestamp(START + 31_536_000 + rng.below(31_536_000)),
        ])?;
    }
    w.flush()?;
    Ok(SocialFixtures {
        users,
        follows: pairs.len(),
        posts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_709_210_096), "2024-02-29 12:34:56");
    }

    #[test]
    fn generated_fixtures_are_deterministic() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sizes = write_social_fixtures(a.path(), 300, 7).unwrap();
        assert_eq!(write_social_fixtures(b.path(), 300, 7).unwrap(), sizes);
        for file in ["users.csv", "follows.csv", "posts.csv"] {
            assert_eq!(
                std::fs::read(a.path().join(file)).unwrap(),
                std::fs::read(b.path().join(file)).unwrap(),
                "{file}"
            );
        }
        assert_eq!(sizes.users, 300);
        assert!(sizes.follows > 300, "{sizes:?}");
    }

    #[test]
    fn missing_binaries_are_a_clear_error() {
        let e = PgServer::start_with(Path::new("/nonexistent/pg/bin"))
            .err()
            .unwrap();
        assert!(
            e.starts_with("PostgreSQL server binary `/nonexistent/pg/bin/initdb` not found"),
            "{e}"
        );
    }

    #[test]
    fn a_server_starts_and_stops() {
        let server = PgServer::start().unwrap();
        let url = server.create_database("smoke");
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let row = client
            .query_one("SELECT current_setting('fsync'), current_user::text", &[])
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1)),
            ("off".into(), "postgres".into())
        );
        drop(client);
        let dir = server.dir().to_path_buf();
        drop(server);
        assert!(!dir.exists(), "the server's directory is removed");
    }
}
