//! The container image's command, run the way the image runs it: the Dockerfile's `CMD`,
//! with its paths laid out under a temporary root (the config copied where `/etc/usher` is
//! and not writable by usher, the demo where `/usr/share/usher/demo` is, and the folders the
//! Dockerfile gives the usher user with `install -d -o usher`, the binary where
//! `/usr/local/bin/usher` is), as an unprivileged user.
//! Docker is not needed: the test checks what the image's user can and cannot write.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::*;

const DOCKERFILE: &str = include_str!("../Dockerfile");

/// The Dockerfile's instructions, continuation lines joined.
fn instructions() -> Vec<String> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in DOCKERFILE.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
}

/// `CMD [...]`: the arguments the image gives `usher`.
fn image_command() -> Vec<String> {
    let cmd = instructions()
        .into_iter()
        .find_map(|i| i.strip_prefix("CMD ").map(str::to_owned))
        .expect("the Dockerfile has a CMD");
    serde_json::from_str(&cmd).expect("CMD is in exec form (a JSON array)")
}

/// The folders `RUN … install -d -o usher … PATH` makes for the usher user.
fn folders_for_usher() -> Vec<String> {
    let mut folders = Vec::new();
    for instruction in instructions().iter().filter(|i| i.starts_with("RUN ")) {
        for step in instruction.split("&&") {
            let words: Vec<&str> = step.split_whitespace().collect();
            if words.first() == Some(&"install")
                && words.contains(&"-d")
                && words.windows(2).any(|w| w == ["-o", "usher"])
            {
                folders.push(words.last().unwrap().to_string());
            }
        }
    }
    folders
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `path` inside the image, as a place under `root`.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The image's user: `nobody` when the tests run as root (as CI does), else the tests' own
/// user, for whom a folder of mode 555 is as unwritable as root's /etc is to usher.
const NOBODY: u32 = 65534;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_images_command_serves_the_demo_as_an_unprivileged_user() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    // COPY config/ /etc/usher/ and COPY demo/ /usr/share/usher/demo/, owned by root.
    let etc = under(root, "/etc/usher");
    copy_tree(&repo.join("config"), &etc);
    copy_tree(&repo.join("demo"), &under(root, "/usr/share/usher/demo"));
    let folders = folders_for_usher();
    assert!(
        !folders.is_empty(),
        "the image makes a folder for usher's data"
    );
    for folder in &folders {
        let place = under(root, folder);
        std::fs::create_dir_all(&place).unwrap();
        std::fs::set_permissions(&place, std::fs::Permissions::from_mode(0o700)).unwrap();
        if is_root() {
            std::os::unix::fs::chown(&place, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    // /etc is not the image user's to write in (given back at the end, pass or fail, so
    // the temporary folder can go).
    let _writable_again = ReadOnly::make(under(root, "/etc"));

    let mut args = Vec::new();
    let mut given = image_command().into_iter();
    while let Some(arg) = given.next() {
        if arg == "--listen" {
            // The image binds every interface; the test stays on loopback.
            given.next();
            args.push(arg);
            args.push("127.0.0.1:0".to_owned());
        } else if arg.starts_with('/') {
            args.push(under(root, &arg).to_str().unwrap().to_owned());
        } else {
            args.push(arg);
        }
    }
    args.extend(["--admin-listen".to_owned(), "127.0.0.1:0".to_owned()]);
    // COPY --from=builder /out/usher /usr/local/bin/usher: the image's user must be able to
    // run it wherever the checkout lives (a home folder of mode 700, say).
    let binary = under(root, "/usr/local/bin/usher");
    std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
    if std::fs::hard_link(usher_bin(), &binary).is_err() {
        std::fs::copy(usher_bin(), &binary).unwrap();
    }
    let mut command = Command::new(&binary);
    if is_root() {
        command.uid(NOBODY).gid(NOBODY);
    }
    let mut child = Running(
        command
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("usher starts"),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut play = None;
    let mut lines = Vec::new();
    while play.is_none() {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr);
            panic!("usher exited during start-up: {lines:?} {stderr}");
        }
        play = line.trim().strip_prefix("play: ").map(str::to_owned);
        lines.push(line);
    }
    let play = play.unwrap();

    let reply = get(&play, &[]).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.body.starts_with(b"#EXTM3U"));

    // The embedded database and the admin token are in the image's data folder, the
    // user's; nothing was written beside the config.
    let data = folders
        .iter()
        .map(|f| under(root, f))
        .find(|f| f.join("usher.db").exists())
        .expect("the database is in a folder the image made for usher");
    let token = std::fs::metadata(data.join("admin.token")).unwrap();
    if is_root() {
        assert_eq!(token.uid(), NOBODY);
    }
    assert_eq!(token.mode() & 0o777, 0o600);
    assert!(!under(root, "/etc/data").exists());
}

/// A folder at mode 555 until dropped, then 755 again.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn make(path: PathBuf) -> Self {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).unwrap();
        Self(path)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}
