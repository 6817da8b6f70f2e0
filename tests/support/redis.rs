//! A throwaway Redis server for one test: no persistence (or only what [`Redis::save`]
//! writes), a free loopback port, stopped (SIGKILL, as a crash) when the handle is dropped
//! or by [`Redis::kill`], and stalled (SIGSTOP: connections stay open, nothing answers) by
//! [`Redis::stall`] until [`Redis::unstall`].

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running (or killed) test server.
pub struct Redis {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    server: Option<Child>,
    /// Where [`Redis::save`] writes the data a restart loads (`None`: nowhere).
    dir: Option<tempfile::TempDir>,
}

impl Redis {
    /// A fresh server, started.
    pub fn start() -> Redis {
        Self::launch(None)
    }

    /// A fresh server that starts again with what [`Redis::save`] last wrote.
    pub fn start_keeping() -> Redis {
        Self::launch(Some(tempfile::tempdir().unwrap()))
    }

    fn launch(dir: Option<tempfile::TempDir>) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            server: None,
            dir,
        };
        redis.resume();
        redis
    }

    /// Starts a server again on the same port, empty (nothing was persisted), or with what
    /// [`Redis::save`] last wrote.
    pub fn resume(&mut self) {
        assert!(self.server.is_none(), "already running");
        let mut command = Command::new("redis-server");
        if let Some(dir) = &self.dir {
            command.arg("--dir").arg(dir.path());
        }
        let mut server = command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server runs (scripts/test installs Debian's redis-server)");
        // It says when it is ready; read up to that line.
        let mut out = BufReader::new(server.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "redis-server exited");
            if line.contains("Ready to accept connections") {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        self.server = Some(server);
    }

    /// Writes the data to disk now (`SAVE`), for the next [`Redis::resume`] to load.
    pub fn save(&self) {
        assert!(self.dir.is_some(), "started with Redis::start_keeping");
        assert_eq!(self.cli(&["SAVE"]), "OK");
    }

    /// Runs one command with `redis-cli` (as an operator would); its answer, trimmed.
    pub fn cli(&self, command: &[&str]) -> String {
        let answer = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(command)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&answer.stdout).trim().to_owned()
    }

    /// Stops the server answering without closing anything (SIGSTOP), as a Redis held up
    /// by the machine it runs on: calls wait, connections stay open.
    pub fn stall(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a [`Redis::stall`]ed server go on (SIGCONT): it answers what waited.
    pub fn unstall(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let server = self.server.as_ref().expect("running");
        let pid = libc::pid_t::try_from(server.id()).unwrap();
        // SAFETY: kill(2) with a child's pid; it touches no memory of ours.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal {signal}");
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
