//! A throwaway PostgreSQL server for one test: `initdb` in a temp dir, the server on a
//! free loopback port, stopped by PID when the test ends (or when the test process dies:
//! a watchdog shell stops it once its stdin, held by the test, closes).
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user
//! (Debian's package creates it) through `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running (or stopped) test server.
pub struct Postgres {
    /// `postgres://usher@127.0.0.1:PORT/postgres`.
    pub url: String,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Extra server options (TLS).
    options: String,
    /// The watchdog of the running server.
    server: Option<Child>,
}

/// The directory holding `initdb` and `postgres`: Debian keeps them per major version
/// under /usr/lib/postgresql, off the PATH.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin"))
                .filter(|bin| bin.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .expect("PostgreSQL is installed (scripts/test installs Debian's postgresql)")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
}

/// `program args…`, run as `postgres` when the tests run as root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Gives `path` to the server's user (as root; otherwise it is ours already).
fn fix_owner(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .arg("postgres")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// A fresh cluster, started.
    pub fn start() -> Postgres {
        Self::init(|_| String::new())
    }

    /// A fresh cluster that accepts TCP connections over TLS only, with a self-signed
    /// certificate for 127.0.0.1; the path of that certificate (the CA to trust).
    pub fn start_tls_only() -> (Postgres, PathBuf) {
        let pg = Self::init(|data| {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
            std::fs::write(data.join("server.crt"), cert.cert.pem()).unwrap();
            std::fs::write(data.join("server.key"), cert.key_pair.serialize_pem()).unwrap();
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
            for file in ["server.crt", "server.key", "pg_hba.conf"] {
                fix_owner(&data.join(file));
            }
            let status = Command::new("chmod")
                .arg("600")
                .arg(data.join("server.key"))
                .status()
                .unwrap();
            assert!(status.success());
            " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".to_owned()
        });
        let ca = pg.dir.path().join("data/server.crt");
        (pg, ca)
    }

    /// initdb, `configure` the data directory (it returns extra server options), start.
    fn init(configure: impl FnOnce(&Path) -> String) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        fix_owner(dir.path());
        let data = dir.path().join("data");
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "usher", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let options = configure(&data);
        let port = free_port();
        let mut pg = Postgres {
            url: format!("postgres://usher@127.0.0.1:{port}/postgres"),
            port,
            dir,
            bin,
            options,
            server: None,
        };
        pg.resume();
        pg
    }

    /// Starts the server again on the same data and port.
    pub fn resume(&mut self) {
        assert!(self.server.is_none(), "already running");
        let data = self.dir.path().join("data");
        // pg_ctl -w returns once the server accepts connections (or fails within -t).
        let options = format!(
            "-p {} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200{}",
            self.port,
            self.dir.path().display(),
            self.options
        );
        let out = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &options, "-w", "-t", "30", "start"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PostgreSQL did not start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        // The watchdog stops the server (fast shutdown, by the PID in postmaster.pid) as
        // soon as its stdin closes: when this handle is dropped or the test process dies.
        let script = format!(
            "read _; exec {} -D '{}' -m fast -w -t 30 stop >/dev/null",
            self.bin.join("pg_ctl").display(),
            data.display()
        );
        let watchdog = as_server_user(Path::new("/bin/sh"))
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        self.server = Some(watchdog);
    }

    /// Stops the server (fast shutdown: open sessions are cut) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut watchdog) = self.server.take() {
            drop(watchdog.stdin.take());
            watchdog.wait().unwrap();
        }
    }

    /// A new empty database `name`; its URL.
    pub fn database(&self, name: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "usher",
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc"])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://usher@127.0.0.1:{}/{name}", self.port)
    }

    /// `psql` running `statement` in database `db` (output unaligned, one row per line),
    /// to run or spawn.
    pub fn psql(&self, db: &str, statement: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "usher",
            ])
            .args(["-d", db, "-v", "ON_ERROR_STOP=1", "-Atqc", statement]);
        command
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
