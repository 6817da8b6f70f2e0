//! Control inputs, as one enum: the ways to ask usher to stop or to reload.

use tokio::signal::unix::{signal, Signal, SignalKind};

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

/// The signals usher listens for, installed once for the life of the process: a signal
/// that arrives while usher is busy (a reload in progress) waits for the next call to
/// [`Controls::next`] instead of being lost.
#[derive(Debug)]
pub struct Controls {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Controls {
    /// Installs the handlers.
    ///
    /// # Errors
    /// When the signal handlers cannot be installed.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next control input from the operating system.
    pub async fn next(&mut self) -> Control {
        // `biased`: a stop asked for during a reload wins over a reload asked for since.
        tokio::select! {
            biased;
            _ = self.term.recv() => Control::Shutdown,
            _ = self.int.recv() => Control::Shutdown,
            _ = self.hup.recv() => Control::Reload,
        }
    }
}
