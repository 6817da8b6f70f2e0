//! Control inputs, as one enum: the ways to ask usher to stop or to reload.

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGTERM or SIGINT: stop accepting, finish in-flight requests within the drain
    /// timeout, exit.
    Shutdown,
    /// SIGHUP (or the admin `POST /reload`): re-read the config file; token settings,
    /// access rules and routes change without a restart, a bad file changes nothing.
    Reload,
}

/// Waits for the next control input from the operating system.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub async fn next() -> std::io::Result<Control> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::select! {
        _ = term.recv() => Ok(Control::Shutdown),
        _ = int.recv() => Ok(Control::Shutdown),
        _ = hup.recv() => Ok(Control::Reload),
    }
}
