//! `usher migrate` and `usher store export|import`: the store named by a config file,
//! worked on without a running server.
//!
//! Output contract: `migrate` prints `schema version N` and exits 0; `export` writes JSON
//! lines to the file or stdout and prints the counts to stderr; `import` reads JSON lines
//! from the file or stdin and prints the counts. Exit 64 for an unusable config, 1 for a
//! store or file failure.

use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::load_config;
use crate::config::{Config, Overrides, StoreBackend};
use crate::metrics::Metrics;
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

fn open(
    config: &std::path::Path,
    data_dir: &Option<String>,
) -> Result<std::sync::Arc<dyn crate::rights::store::Store>, i32> {
    let config = load(config, data_dir)?;
    crate::proxy::open_store(&config, &Metrics::new())
        .map(|opened| opened.store)
        .map_err(|e| {
            eprintln!("usher: {e:#}");
            1
        })
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

/// Runs `usher store export` or `usher store import`.
pub fn run(command: StoreCommand) -> i32 {
    let result = match &command {
        StoreCommand::Export(args) => {
            let store = match open(&args.config, &args.data_dir) {
                Ok(store) => store,
                Err(code) => return code,
            };
            match &args.file {
                Some(path) => std::fs::File::create(path)
                    .map_err(transfer::TransferError::from)
                    .and_then(|f| transfer::export(store.as_ref(), &mut BufWriter::new(f))),
                None => transfer::export(store.as_ref(), &mut BufWriter::new(std::io::stdout())),
            }
            .map(|n| report("exported", &n))
        }
        StoreCommand::Import(args) => {
            let store = match open(&args.config, &args.data_dir) {
                Ok(store) => store,
                Err(code) => return code,
            };
            match &args.file {
                Some(path) => std::fs::File::open(path)
                    .map_err(transfer::TransferError::from)
                    .and_then(|f| transfer::import(store.as_ref(), BufReader::new(f))),
                None => transfer::import(store.as_ref(), std::io::stdin().lock()),
            }
            .map(|n| report("imported", &n))
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("usher: {e}");
            1
        }
    }
}
