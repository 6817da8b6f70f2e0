//! `usher admin …` as an operator runs it: the real binary, off the runtime thread (the
//! test's servers live on it), bounded in time, with no admin variables from the
//! environment.

use std::process::Command;
use std::time::Duration;

use super::admin::HasAdmin;
use super::{usher_bin, ADMIN_TOKEN};

/// What one `usher admin` run did.
#[derive(Debug)]
pub struct CliRun {
    /// Its exit code.
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl CliRun {
    /// Its stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Exit 0; its stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:?}");
        &self.stdout
    }

    /// Exit 1 with nothing on stdout and one line on stderr; that line.
    pub fn failed(&self) -> &str {
        assert_eq!(self.code, Some(1), "{self:?}");
        assert_eq!(self.stdout, "", "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:?}");
        self.stderr.trim_end()
    }
}

/// `usher admin --url URL [--token TOKEN]`.
pub fn admin_command(url: &str, token: Option<&str>) -> Command {
    let mut command = Command::new(usher_bin());
    command
        .arg("admin")
        .arg("--url")
        .arg(url)
        .env_remove("USHER_ADMIN_URL")
        .env_remove("USHER_ADMIN_TOKEN");
    if let Some(token) = token {
        command.arg("--token").arg(token);
    }
    command
}

/// Runs `command` with `args`, within 60 s.
pub async fn run_cli(mut command: Command, args: &[&str]) -> CliRun {
    command.args(args);
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || command.output().expect("usher admin runs")),
    )
    .await
    .expect("usher admin finishes within 60 s")
    .unwrap();
    CliRun {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `usher admin ARGS` against `usher` with the test credential.
pub async fn usher_admin(usher: &impl HasAdmin, args: &[&str]) -> CliRun {
    run_cli(admin_command(usher.admin_url(), Some(ADMIN_TOKEN)), args).await
}
