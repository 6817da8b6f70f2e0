//! The command line, and the commands that need no server (`ticket`, `check-config`);
//! `admin` talks to a running server, see [`admin`].
//! Scripts outside the repo rely on this contract; the README documents it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, Overrides};
use crate::net::IpPrefix;
use crate::rights::model::DeviceClass;
use crate::ticket::{self, Claims, Kind};

pub mod admin;
pub mod formats;
pub mod store;

/// Exit status for a config that cannot be used (EX_USAGE-like, as sysexits' EX_CONFIG is 78
/// but operators' scripts already expect 64 from usher).
pub const EXIT_CONFIG: i32 = 64;

/// usher: an edge streaming gateway with pay-per-view access control for HLS.
#[derive(Debug, Parser)]
#[command(name = "usher", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Issue or inspect tickets.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Validate a config file: exit 0, or print each problem by key and exit 64.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Manage products, media, buyers and accounts through a running usher's admin API.
    Admin(admin::AdminArgs),
    /// Bring the configured store's schema up to date (serve does it on start too).
    Migrate(store::MigrateArgs),
    /// Export or import every record of the configured store (JSON lines).
    #[command(subcommand)]
    Store(store::StoreCommand),
}

/// `usher serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Public HTTP listener, overriding `listen.http` (port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<String>,
    /// Upstream: an http(s):// base URL or a local directory, overriding `upstream.origin`.
    #[arg(long)]
    pub origin: Option<String>,
    /// Admin listener, overriding `admin.listen` (port 0 picks a free port; "off" disables).
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Directory of the embedded database, overriding `store.data_dir`.
    #[arg(long)]
    pub data_dir: Option<String>,
}

impl ServeArgs {
    /// The command-line overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            origin: self.origin.clone(),
            admin_listen: self.admin_listen.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

/// `usher ticket …`.
#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Print one new ticket (or foreign token) on stdout, nothing else.
    Issue {
        /// The config file (for the signing key and default lifetime).
        #[arg(long)]
        config: PathBuf,
        /// usher (default), akamai, secure_link or media_cdn.
        #[arg(long, default_value = "usher")]
        format: String,
        /// Subject: the buyer or account (required for usher; Akamai id, Media CDN
        /// SessionID).
        #[arg(long)]
        sub: Option<String>,
        /// Path prefix the ticket opens, e.g. /events/final/ (foreign formats: a prefix
        /// ending in /, a glob with *, or one exact path).
        #[arg(long)]
        scope: String,
        /// Bind the ticket to this device id (usher only).
        #[arg(long)]
        device: Option<String>,
        /// Bind the ticket to this client address or prefix (203.0.113.0/24; Media CDN:
        /// comma-separated ranges).
        #[arg(long)]
        ip: Option<String>,
        /// Lifetime, e.g. 2h (default: token.ticket_ttl, or the format's ttl).
        #[arg(long)]
        ttl: Option<String>,
        /// The device class the ticket plays as, whatever the client's class header says:
        /// ott, iptv or hybrid (usher only; default: the header, else
        /// rights.default_device_class).
        #[arg(long)]
        class: Option<String>,
    },
    /// Show a credential's fields and whether it verifies now, and why not.
    Inspect {
        /// The config file (for the keys).
        #[arg(long)]
        config: PathBuf,
        /// usher, akamai, secure_link or media_cdn (default: guessed from the shape).
        #[arg(long)]
        format: Option<String>,
        /// Foreign formats: the path (or scheme://host/path URL) it is used for.
        #[arg(long)]
        path: Option<String>,
        /// Foreign formats: the client address it is used from (default 127.0.0.1).
        #[arg(long)]
        ip: Option<String>,
        /// Media CDN: a request header, `Name: value` (repeatable).
        #[arg(long)]
        header: Vec<String>,
        /// The ticket, session token or foreign token (a secure link as md5=…&expires=…).
        ticket: String,
    },
}

/// Loads a config or prints its problems and returns the exit status.
///
/// # Errors
/// The exit status to use, after printing the problems on stderr.
pub fn load_config(path: &std::path::Path, overrides: &Overrides) -> Result<Config, i32> {
    config::load(path, overrides).map_err(|e| {
        eprintln!("usher: config {} is not usable:", path.display());
        for line in e.to_string().lines() {
            eprintln!("  {line}");
        }
        EXIT_CONFIG
    })
}

fn format_arg(text: &str) -> Result<config::foreign::Format, i32> {
    config::foreign::Format::parse(text).ok_or_else(|| {
        eprintln!("usher: --format \"{text}\": use usher, akamai, secure_link or media_cdn");
        2
    })
}

/// Runs `usher ticket …`, returning the exit status.
pub fn ticket(command: TicketCommand) -> i32 {
    use config::foreign::Format;
    match command {
        TicketCommand::Issue {
            config,
            format,
            sub,
            scope,
            device,
            ip,
            ttl,
            class,
        } => {
            let format = match format_arg(&format) {
                Ok(f) => f,
                Err(code) => return code,
            };
            let config = match load_config(&config, &Overrides::default()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let issued = match format {
                Format::Usher => {
                    let sub = sub.ok_or_else(|| "--sub: required for usher tickets".to_owned());
                    sub.and_then(|sub| {
                        let class = class
                            .map(|text| {
                                DeviceClass::parse(&text)
                                    .ok_or(format!("--class \"{text}\": use ott, iptv or hybrid"))
                            })
                            .transpose()?;
                        let ticket = issue(&config, sub, scope, device, ip, ttl.as_deref())?;
                        match class {
                            None => Ok(ticket),
                            Some(class) => with_class(&config, &ticket, class),
                        }
                    })
                }
                foreign if device.is_some() => Err(format!(
                    "--device: {} tokens are not bound to a device",
                    foreign.as_str()
                )),
                foreign if class.is_some() => Err(format!(
                    "--class: {} tokens carry no device class",
                    foreign.as_str()
                )),
                foreign => ttl
                    .as_deref()
                    .map(|t| config::duration::parse(t).map_err(|e| format!("--ttl {e}")))
                    .transpose()
                    .and_then(|ttl| {
                        let request = formats::IssueRequest {
                            sub,
                            scope,
                            ip,
                            ttl,
                        };
                        formats::issue(&config, foreign, &request, crate::clock::unix_now())
                    }),
            };
            match issued {
                Ok(ticket) => {
                    println!("{ticket}");
                    0
                }
                Err(why) => {
                    eprintln!("usher: {why}");
                    2
                }
            }
        }
        TicketCommand::Inspect {
            config,
            format,
            path,
            ip,
            header,
            ticket,
        } => {
            let ticket = ticket.trim();
            let format = match format.as_deref().map(format_arg) {
                Some(Ok(f)) => f,
                Some(Err(code)) => return code,
                None => formats::detect(ticket),
            };
            let ip = match ip.as_deref().unwrap_or("127.0.0.1").parse() {
                Ok(ip) => ip,
                Err(_) => {
                    eprintln!("usher: --ip: not an address");
                    return 2;
                }
            };
            let config = match load_config(&config, &Overrides::default()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match format {
                Format::Usher => inspect(&config, ticket),
                foreign => {
                    let request = formats::InspectRequest {
                        path,
                        ip,
                        headers: header,
                    };
                    formats::inspect(&config, foreign, ticket, &request, crate::clock::unix_now())
                }
            }
        }
    }
}

/// Signs a ticket from command-line values.
///
/// # Errors
/// A message for a bad scope, address prefix or lifetime.
pub fn issue(
    config: &Config,
    sub: String,
    scope: String,
    device: Option<String>,
    ip: Option<String>,
    ttl: Option<&str>,
) -> Result<String, String> {
    if !scope.starts_with('/') {
        return Err(format!("--scope \"{scope}\": a path prefix starts with /"));
    }
    if sub.is_empty() || sub.starts_with('~') {
        return Err(
            "--sub: must not be empty or start with ~ (kept for usher's own use)".to_owned(),
        );
    }
    let ttl = match ttl {
        Some(text) => config::duration::parse(text).map_err(|e| format!("--ttl {e}"))?,
        None => config.token.ticket_ttl,
    };
    let ip = ip
        .map(|text| text.parse::<IpPrefix>().map_err(|e| format!("--ip {e}")))
        .transpose()?;
    let now = crate::clock::unix_now();
    let claims = Claims {
        sub,
        scope,
        nbf: now,
        exp: now + ttl.as_secs().max(1),
        dev: device.map(|d| crate::device::hash_id(&d, None)),
        ip,
        sid: None,
        cap: 0,
        allow: Vec::new(),
        cls: None,
    };
    Ok(ticket::sign(&config.token.keys, Kind::Ticket, &claims))
}

/// `ticket`, signed again with the device class `class` added.
fn with_class(config: &Config, ticket: &str, class: DeviceClass) -> Result<String, String> {
    let (kind, mut claims) =
        ticket::verify_signature(&config.token.keys, ticket).map_err(|e| e.to_string())?;
    claims.cls = Some(class);
    Ok(ticket::sign(&config.token.keys, kind, &claims))
}

fn inspect(config: &Config, raw: &str) -> i32 {
    let raw = raw.trim();
    let (kind, kid, claims) = match ticket::decode_unverified(raw) {
        Ok(decoded) => decoded,
        Err(e) => {
            println!("verifies: no ({}: {e})", e.reason());
            return 1;
        }
    };
    println!("kind:       {}", kind.as_str());
    println!("key id:     {kid}");
    println!("subject:    {}", claims.sub);
    println!("scope:      {}", claims.scope);
    if claims.nbf > 0 {
        println!("not before: {}", time(claims.nbf));
    }
    println!("expires:    {}", time(claims.exp));
    println!("device:     {}", claims.dev.as_deref().unwrap_or("(any)"));
    match claims.ip {
        Some(ip) => println!("ip:         {ip}"),
        None => println!("ip:         (any)"),
    }
    if let Some(sid) = &claims.sid {
        println!("session:    {sid}");
    }
    if let Some(class) = claims.cls {
        println!("class:      {}", class.as_str());
    }
    let skew = config.token.clock_skew.as_secs();
    match ticket::verify(&config.token.keys, raw, crate::clock::unix_now(), skew) {
        Ok(_) => {
            println!("verifies:   yes");
            0
        }
        Err(e) => {
            println!("verifies:   no ({}: {e})", e.reason());
            1
        }
    }
}

/// `unix` as an HTTP date, with the number and how far from now it is; past the year 9999
/// (a crafted token's, say), which an HTTP date cannot write, the number alone.
fn time(unix: u64) -> String {
    /// 9999-12-31T23:59:59Z, the last second an HTTP date can name.
    const LAST_HTTP_DATE: u64 = 253_402_300_799;
    let at = UNIX_EPOCH + Duration::from_secs(unix.min(LAST_HTTP_DATE));
    if unix > LAST_HTTP_DATE {
        return format!("after the year 9999 ({unix})");
    }
    let relative = match at.duration_since(SystemTime::now()) {
        Ok(ahead) => format!("in {}s", ahead.as_secs()),
        Err(e) => format!("{}s ago", e.duration().as_secs()),
    };
    format!("{} ({unix}, {relative})", httpdate::fmt_http_date(at))
}

/// Runs `usher check-config`, returning the exit status.
pub fn check_config(file: &std::path::Path) -> i32 {
    match load_config(file, &Overrides::default()) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("{}: warning: {warning}", file.display());
            }
            println!("{}: ok", file.display());
            0
        }
        Err(code) => code,
    }
}
