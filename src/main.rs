//! The only place that wires things: args → config → state → listeners → signals → drain.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use usher::admin::AdminHandler;
use usher::cli::{self, Cli, Command, ServeArgs};
use usher::config::Config;
use usher::proxy::server::{self, Drained, Handler, Limits, ProxyHandler};
use usher::proxy::State;
use usher::signal::{Control, Controls};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Ticket(command) => cli::ticket(command),
        Command::CheckConfig { file } => cli::check_config(&file),
        Command::Admin(args) => cli::admin::run(args),
        Command::Migrate(args) => cli::store::migrate(&args),
        Command::Store(command) => cli::store::run(command),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn serve(args: &ServeArgs) -> i32 {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    usher::open_files::raise_and_log();
    let config = match cli::load_config(&args.config, &args.overrides()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("usher: cannot start the runtime: {e}");
            return 1;
        }
    };
    let source = (args.config.clone(), args.overrides());
    match runtime.block_on(run(config, source)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("usher: {e:#}");
            1
        }
    }
}

async fn run(
    config: Config,
    source: (std::path::PathBuf, usher::config::Overrides),
) -> anyhow::Result<()> {
    // Installed before anything serves: a stop asked for at any moment from here on is kept.
    let mut controls = Controls::install().context("installing signal handlers")?;
    let certificate = config
        .listen
        .https
        .as_ref()
        .map(|https| usher::tls::Certificate::new(https.certified.clone()));
    let tls = match &certificate {
        Some(certificate) => Some(TlsAcceptor::from(
            usher::tls::server_config(certificate.clone()).context("listen.https")?,
        )),
        None => None,
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    // Held while serving: `usher store import` refuses to write under a running server.
    let _data_dir_lock = match &config.store {
        usher::config::StoreBackend::Sqlite => Some(
            usher::data_dir::lock::take(&config.data_dir, usher::data_dir::lock::Holder::Server)
                .with_context(|| format!("locking {}", config.data_dir.display()))?
                .with_context(|| {
                    format!(
                        "`usher store import` is writing into {}: start usher once it is done",
                        config.data_dir.display()
                    )
                })?,
        ),
        usher::config::StoreBackend::Postgres(_) => None,
    };
    let state = Arc::new(State::new(config).context("starting the gateway")?);
    let _ = state.source.set(source);
    if let Some(certificate) = certificate {
        let _ = state.certificate.set(certificate);
    }
    let config = state.config();
    // The sessions the last run kept, before the first request can need them.
    let kept_sessions = config.data_dir.join(usher::sessions::kept::FILE);
    match state.sessions.restore(
        &kept_sessions,
        (state.clock)(),
        usher::sessions::token_lifetime(&config),
    ) {
        Ok(0) => {}
        Ok(n) => tracing::info!(sessions = n, "sessions taken back from the last run"),
        Err(e) => {
            tracing::warn!(file = %kept_sessions.display(), error = %e, "could not take back the last run's sessions")
        }
    }
    // One cap over every public listener and thread; the admin listener has its own.
    let limits = Limits::new(
        config.listen.max_header_bytes,
        config.listen.max_headers,
        config.listen.max_connections,
        config.listen.idle_timeout,
    );
    let admin_limits = Limits::new(
        config.listen.max_header_bytes,
        config.listen.max_headers,
        ADMIN_CONNECTIONS,
        config.listen.idle_timeout,
    );
    let drain = config.listen.drain_timeout;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();

    let mut public_url = None;
    if let Some(addr) = config.listen.http {
        let listener = bind_public(addr, config.listen.threads)
            .await
            .with_context(|| format!("listen.http {addr}"))?;
        let local = listener.local_addr()?;
        println!("listening on http://{}", display_addr(local));
        public_url.get_or_insert(format!("http://{}", display_addr(local)));
        servers.extend(start_public(
            listener,
            None,
            ProxyHandler(state.clone()),
            limits.clone(),
            &stop_rx,
            drain,
            config.listen.threads,
        )?);
    }
    if let (Some(https), Some(acceptor)) = (&config.listen.https, tls) {
        let listener = bind_public(https.addr, config.listen.threads)
            .await
            .with_context(|| format!("listen.https {}", https.addr))?;
        let local = listener.local_addr()?;
        println!("listening on https://{}", display_addr(local));
        public_url.get_or_insert(format!("https://{}", display_addr(local)));
        servers.extend(start_public(
            listener,
            Some(acceptor),
            ProxyHandler(state.clone()),
            limits,
            &stop_rx,
            drain,
            config.listen.threads,
        )?);
    }
    if let Some(addr) = config.admin.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("admin.listen {addr}"))?;
        println!("admin on http://{}", display_addr(listener.local_addr()?));
        servers.push(start(
            listener,
            None,
            AdminHandler(state.clone()),
            admin_limits,
            &stop_rx,
            drain,
        ));
    }
    if let Some(url) = &public_url {
        let _ = state.public_url.set(url.clone());
    }
    let play = usher::demo::seed(&state)
        .await
        .context("selling the demo stream")?;
    tokio::spawn(sweep_sessions(state.clone()));
    if let Some(rights) = &state.rights {
        tokio::spawn(usher::rights::retry_stale_index(rights.clone()));
    }
    tokio::spawn(state.webhooks.clone().run());
    if let usher::config::StoreBackend::Postgres(pg) = &config.store {
        tokio::spawn(usher::fanout::listen(state.clone(), pg.clone()));
    }
    if let usher::config::SessionsBackend::Redis(redis) = &config.sessions.backend {
        let shared = usher::sessions::shared::SharedSessions::connect(
            redis,
            config.sessions.idle_timeout.as_secs(),
            usher::sessions::token_lifetime(&config),
            state.metrics.sessions_backend.clone(),
        )
        .await
        .context("sessions.redis")?;
        let shared = Arc::new(shared);
        state.sessions.share(shared.clone());
        tokio::spawn(shared.follow(state.clone()));
    }
    state.upstreams.spawn_health_checks();
    state.ready.store(true, Ordering::Release);
    if let Some(url) = play {
        println!("play: {url}");
    }
    tracing::info!(origin = ?state.config().upstream.origin, "usher is serving");

    loop {
        match controls.next().await {
            Control::Shutdown => break,
            Control::Reload => reload(&state).await,
        }
    }
    tracing::info!(drain = ?drain, "shutting down: no new connections, draining in-flight requests");
    let _ = stop_tx.send(true);
    let mut timed_out = false;
    for server in servers {
        timed_out |= server.await? == Drained::TimedOut;
    }
    if timed_out {
        tracing::warn!("drain timeout ran out; remaining connections were cut");
    }
    // Kept for the next start: a deploy keeps every viewer, past its token's expiry too.
    if let Err(e) =
        usher::data_dir::create(&config.data_dir).and_then(|()| state.sessions.save(&kept_sessions))
    {
        tracing::warn!(file = %kept_sessions.display(), error = %e, "could not keep the sessions for the next start");
    }
    if !timed_out {
        tracing::info!("drained; bye");
    }
    Ok(())
}

/// Connections the admin listener holds open at once (operators and a billing system, not
/// viewers).
const ADMIN_CONNECTIONS: usize = 256;

/// Applies a reload (recorded in the audit trail as `signal`), or logs why the new config
/// was refused (the old one keeps serving).
async fn reload(state: &State) {
    match usher::admin::audit::reload(state, &usher::admin::audit::Actor::signal()).await {
        Ok(done) if done.restart_required.is_empty() => tracing::info!("config reloaded"),
        Ok(done) => tracing::warn!(
            restart_required = ?done.restart_required,
            "config reloaded; these changed settings take effect only after a restart"
        ),
        Err(e) => {
            tracing::error!(problems = %e.to_string().replace('\n', "; "), "config reload rejected; the old config keeps serving")
        }
    }
}

/// Forgets idle sessions and keeps the active-sessions gauge current, every half idle
/// timeout. Ended sessions are kept as long as their tokens could still be presented, so a
/// replaced session is told so rather than adopted again.
async fn sweep_sessions(state: Arc<State>) {
    let config = state.config();
    let every = (config.sessions.idle_timeout / 2).max(std::time::Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        // Ended and replaced sessions are remembered as long as a token of theirs could
        // still verify, so they are refused rather than adopted again.
        let keep = usher::sessions::token_lifetime(&state.config());
        state.sessions.sweep((state.clock)(), keep);
    }
}

fn start<H: Handler>(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    limits: Limits,
    stop: &watch::Receiver<bool>,
    drain: std::time::Duration,
) -> tokio::task::JoinHandle<Drained> {
    let mut stop = stop.clone();
    let shutdown = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    tokio::spawn(server::serve(
        listener, tls, handler, limits, shutdown, drain,
    ))
}

/// Binds a public listener: for serving threads of its own (`listen.threads`), so that
/// each can bind the same address; otherwise as usual.
async fn bind_public(addr: SocketAddr, threads: usize) -> std::io::Result<tokio::net::TcpListener> {
    if threads == 0 {
        tokio::net::TcpListener::bind(addr).await
    } else {
        server::bind_shared(addr)
    }
}

/// Starts a public listener: on `threads` serving threads of its own (`listen.threads`),
/// or, with 0, on this runtime as [`start`] does. Each handle ends with how its part
/// drained.
#[allow(clippy::too_many_arguments)]
fn start_public(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    handler: ProxyHandler,
    limits: Limits,
    stop: &watch::Receiver<bool>,
    drain: std::time::Duration,
    threads: usize,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Drained>>> {
    if threads == 0 {
        return Ok(vec![start(listener, tls, handler, limits, stop, drain)]);
    }
    let outcomes = server::serve_on_threads(listener, threads, tls, handler, limits, stop, drain)
        .context("starting the serving threads")?;
    Ok(outcomes
        .into_iter()
        .map(|outcome| tokio::spawn(async move { outcome.await.unwrap_or(Drained::TimedOut) }))
        .collect())
}

/// The address as a URL host: unspecified addresses become loopback so the line is usable.
fn display_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        ip if ip.is_unspecified() => SocketAddr::new("::1".parse().expect("valid"), addr.port()),
        _ => addr,
    }
}
