//! The admin credential usher makes for itself when none is configured.

use anyhow::Context;

/// The admin credential kept in `<data_dir>/admin.token` when none is configured: made
/// once (32 random bytes, hex), readable by the owner only, the same after a restart. A
/// kept file that others may read is made owner-only (with a warning).
///
/// # Errors
/// When the file cannot be read, made or written, or its mode cannot be set.
pub fn generated(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join("admin.token");
    let owner_only = || std::fs::Permissions::from_mode(0o600);
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_owned();
        if token.len() >= 16 {
            let mode = std::fs::metadata(&path).map_or(0, |m| m.permissions().mode());
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&path, owner_only()).with_context(|| {
                    format!("making {} readable by its owner only", path.display())
                })?;
                tracing::warn!(file = %path.display(), mode = format_args!("{:o}", mode & 0o777), "the admin token file was readable by others; made it owner-only");
            }
            return Ok(token);
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // With a shared store nothing else creates the directory.
    crate::data_dir::create(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    // The mode above applies to a new file only; one rewritten keeps its own.
    file.set_permissions(owner_only())?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    tracing::info!(file = %path.display(), "no admin.token configured; generated one (read it from this file)");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::generated;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_kept_token_others_could_read_is_made_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.token");
        std::fs::write(&file, "kept-token-0123456789\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(generated(dir.path()).unwrap(), "kept-token-0123456789");
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_short_token_is_replaced_by_one_only_the_owner_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.token");
        std::fs::write(&file, "short").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let token = generated(dir.path()).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            generated(dir.path()).unwrap(),
            token,
            "the same after a restart"
        );
    }
}
