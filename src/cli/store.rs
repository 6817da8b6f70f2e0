//! `usher migrate` and `usher store export|import`: the store named by a config file,
//! worked on without a running server.
//!
//! Output contract: `migrate` prints `schema version N` and exits 0; `export` writes JSON
//! lines to the file or stdout and prints the counts to stderr; `import` reads JSON lines
//! from the file or stdin and prints the counts. Exit 64 for an unusable config, 1 for a
//! store or file failure.

use std::io::Write as _;
use std::io::{BufRead, BufReader, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::load_config;
use crate::config::{Config, Overrides, StoreBackend};
use crate::data_dir::lock;
use crate::metrics::Metrics;
use crate::rights::postgres::PostgresStore;
use crate::rights::sqlite::SqliteStore;
use crate::rights::transfer::{self, Counts};

/// `usher store`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Write every record of the configured store as JSON lines.
    Export(TransferArgs),
    /// Read JSON lines from `usher store export` into the configured (empty) store.
    Import(TransferArgs),
}

/// The config whose `[store]` is used, and the file (stdin/stdout when omitted).
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// The config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Directory of the embedded database, overriding `store.data_dir`.
    #[arg(long)]
    pub data_dir: Option<String>,
    /// The JSON-lines file (default: stdout for export, stdin for import).
    #[arg(long)]
    pub file: Option<PathBuf>,
}

/// `usher migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Directory of the embedded database, overriding `store.data_dir`.
    #[arg(long)]
    pub data_dir: Option<String>,
}

fn load(config: &std::path::Path, data_dir: &Option<String>) -> Result<Config, i32> {
    let overrides = Overrides {
        data_dir: data_dir.clone(),
        ..Overrides::default()
    };
    load_config(config, &overrides)
}

/// Applies the schema migrations of the configured store (as `serve` does on start).
pub fn migrate(args: &MigrateArgs) -> i32 {
    let config = match load(&args.config, &args.data_dir) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let version = match &config.store {
        StoreBackend::Sqlite => crate::rights::sqlite::SqliteStore::open(&config.data_dir)
            .and_then(|s| s.schema_version()),
        StoreBackend::Postgres(pg) => {
            crate::rights::postgres::PostgresStore::connect(pg, Metrics::new().store)
                .and_then(|s| s.schema_version())
        }
    };
    match version {
        Ok(version) => {
            println!("schema version {version}");
            0
        }
        Err(e) => {
            eprintln!("usher: {e}");
            1
        }
    }
}

fn report(verb: &str, n: &Counts) {
    eprintln!(
        "{verb} {} products, {} media, {} links, {} accounts, {} purchases, {} device bindings, \
         {} idempotency keys, {} audit entries, {} webhook deliveries",
        n.products,
        n.media,
        n.links,
        n.accounts,
        n.purchases,
        n.bindings,
        n.sale_keys,
        n.audit,
        n.webhooks
    );
}

/// The folder, inside the data directory, of the copy an export of the embedded database
/// reads (gone when the export ends).
const EXPORT_SNAPSHOT: &str = "export-snapshot";

/// Exports the store of `args` into its file or stdout. The file is written beside its
/// place, created new and 0600 (it holds every ticket), and renamed over it once whole:
/// the target never holds part of an export, and a file that was there (its mode, its
/// owner, a reader that holds it open) never receives a ticket. A symbolic link is
/// followed (the file it names is replaced, the link stays); a target that is not a
/// regular file (`/dev/stdout`, a FIFO) is written to as it is. The embedded database is
/// read from a copy made at the start, and PostgreSQL in one read-only snapshot
/// transaction ([`crate::rights::postgres::PostgresStore::snapshot`]), so a server that goes on selling or revoking
/// meanwhile cannot make a record appear twice or not at all. Errors are printed; the exit
/// code comes back.
fn export(args: &TransferArgs) -> Result<Counts, i32> {
    let config = load(&args.config, &args.data_dir)?;
    let Some(given) = &args.file else {
        let mut out = BufWriter::new(std::io::stdout());
        return export_to(&config, &mut out);
    };
    let unusable = |e: std::io::Error| failed(&format!("{}: {e}", given.display()));
    let is_link = std::fs::symlink_metadata(given).is_ok_and(|m| m.file_type().is_symlink());
    let path = &if is_link {
        std::fs::canonicalize(given).map_err(unusable)?
    } else {
        given.clone()
    };
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let stream = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(unusable)?;
        let mut out = BufWriter::new(stream);
        let counts = export_to(&config, &mut out)?;
        out.flush().map_err(unusable)?;
        return Ok(counts);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part = path.with_file_name(format!(".{name}.{}.part", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&part)
        .map_err(|e| failed(&format!("{}: {e}", part.display())))?;
    let mut out = BufWriter::new(file);
    let exported = export_to(&config, &mut out).and_then(|counts| {
        out.flush()
            .and_then(|()| out.get_ref().sync_all())
            .and_then(|()| std::fs::rename(&part, path))
            .map_err(|e| failed(&format!("{}: {e}", path.display())))?;
        Ok(counts)
    });
    if exported.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    exported
}

/// Prints `e` as usher's error; the exit code.
fn failed(e: &dyn std::fmt::Display) -> i32 {
    eprintln!("usher: {e}");
    1
}

/// Writes the export of `config`'s store to `out`.
fn export_to(config: &crate::config::Config, out: &mut impl std::io::Write) -> Result<Counts, i32> {
    match &config.store {
        StoreBackend::Sqlite => {
            let db = config.data_dir.join("usher.db");
            if !db.exists() {
                return Err(failed(&format!(
                    "no database at {}: check --data-dir or store.data_dir",
                    db.display()
                )));
            }
            let source = SqliteStore::open(&config.data_dir).map_err(|e| failed(&e))?;
            let dir = config
                .data_dir
                .join(format!("{EXPORT_SNAPSHOT}-{}", std::process::id()));
            let exported = source
                .snapshot_into(&dir)
                .map_err(|e| failed(&e))
                .and_then(|copy| transfer::export(&copy, out).map_err(|e| failed(&e)));
            let _ = std::fs::remove_dir_all(&dir);
            exported
        }
        StoreBackend::Postgres(pg) => {
            let snapshot =
                crate::rights::postgres::PostgresStore::snapshot(pg, Metrics::new().store)
                    .map_err(|e| failed(&e))?;
            transfer::export(&snapshot, out).map_err(|e| failed(&e))
        }
    }
}

/// Imports the file (or stdin) of `args` into its store, in one transaction that commits
/// once the file proved whole: a failure (a bad line, a file cut short, a refused write, a
/// lost connection, the process killed) leaves the store as it was. Errors are printed;
/// the exit code comes back.
fn import(args: &TransferArgs) -> Result<Counts, i32> {
    let config = load(&args.config, &args.data_dir)?;
    // Nothing serves from the embedded database while it is written: a server would not
    // see the records until a restart.
    let _alone = match &config.store {
        StoreBackend::Sqlite => Some(
            lock::take(&config.data_dir, lock::Holder::Import)
                .map_err(|e| failed(&format!("locking {}: {e}", config.data_dir.display())))?
                .ok_or_else(|| {
                    failed(&format!(
                        "a usher is serving from {}: stop it before importing",
                        config.data_dir.display()
                    ))
                })?,
        ),
        StoreBackend::Postgres(_) => None,
    };
    let refused = |e: transfer::TransferError| {
        failed(&format!(
            "{e}; nothing was imported (the store is as it was)"
        ))
    };
    // An input that cannot be read is named (a mistyped path, a folder).
    let unread = |e: std::io::Error| match &args.file {
        Some(path) => failed(&format!(
            "{}: {e}; nothing was imported (the store is as it was)",
            path.display()
        )),
        None => refused(transfer::TransferError::from(e)),
    };
    let mut input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(BufReader::new(std::fs::File::open(path).map_err(unread)?)),
        None => Box::new(std::io::stdin().lock()),
    };
    // The transaction begins once the input has begun: a PostgreSQL transaction idle for
    // three store.postgres.timeouts is ended by the server, and the writer of a pipe
    // (`usher store export` copying its database, ssh asking for a password) may take
    // longer than that before its first line.
    input.fill_buf().map_err(unread)?;
    match &config.store {
        StoreBackend::Sqlite => {
            let store = SqliteStore::importing(&config.data_dir).map_err(|e| {
                failed(&format!(
                    "data directory {}: {e}",
                    config.data_dir.display()
                ))
            })?;
            let counts = transfer::import(&store, input).map_err(refused)?;
            store.commit_import().map_err(|e| failed(&e))?;
            Ok(counts)
        }
        StoreBackend::Postgres(pg) => {
            let store =
                PostgresStore::importing(pg, Metrics::new().store).map_err(|e| failed(&e))?;
            let counts = transfer::import(&store, input).map_err(refused)?;
            store.commit_import().map_err(|e| failed(&e))?;
            Ok(counts)
        }
    }
}

/// Runs `usher store export` or `usher store import`.
pub fn run(command: StoreCommand) -> i32 {
    let (verb, result) = match &command {
        StoreCommand::Export(args) => ("exported", export(args)),
        StoreCommand::Import(args) => ("imported", import(args)),
    };
    match result {
        Ok(n) => {
            report(verb, &n);
            0
        }
        Err(code) => code,
    }
}
