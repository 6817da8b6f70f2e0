//! Folders usher makes for what it keeps on disk: the embedded database, the generated
//! admin token, the shield's unnamed body files. Purchases, accounts and device bindings
//! are nobody else's business on a shared host, so what usher makes only its own user may
//! open.

pub mod lock;

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Makes `path` and any missing parents with mode 0700 (before the umask). A folder that
/// exists keeps its permissions: an operator who made it chose them.
///
/// # Errors
/// When a folder cannot be made (permissions, a file in the way, a read-only filesystem).
pub fn create(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn what_usher_makes_only_its_user_may_open_and_what_exists_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("a/b");
        create(&made).unwrap();
        assert_eq!(mode(&made), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);

        let existing = dir.path().join("shared");
        std::fs::create_dir(&existing).unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o750)).unwrap();
        create(&existing).unwrap();
        assert_eq!(mode(&existing), 0o750);

        std::fs::write(dir.path().join("file"), b"").unwrap();
        assert!(create(&dir.path().join("file")).is_err());
    }
}
