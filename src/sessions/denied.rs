//! Why a session start is refused, or a session ended.

/// Why a session was refused or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionDenied {
    /// Starting it would exceed a concurrent-session or -device limit (policy `refuse`).
    #[error("concurrent stream limit reached")]
    ConcurrencyLimit,
    /// A newer session replaced this one (policy `replace_oldest`).
    #[error("session replaced by a newer one")]
    Replaced,
    /// The operator ended it.
    #[error("session ended by the operator")]
    Ended,
    /// Every activation of the purchase is used by other devices.
    #[error("activation limit reached")]
    ActivationLimit,
    /// The purchase is limited to a number of devices, and the request names none.
    #[error("the request names no device")]
    DeviceRequired,
    /// The shared session store cannot be reached and `sessions.on_backend_error = "deny"`.
    #[error("the shared session store cannot be reached")]
    Unavailable,
}

impl SessionDenied {
    /// The machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            SessionDenied::ConcurrencyLimit => "concurrency_limit",
            SessionDenied::Replaced => "session_replaced",
            SessionDenied::Ended => "session_ended",
            SessionDenied::ActivationLimit => "activation_limit",
            SessionDenied::DeviceRequired => "device_required",
            SessionDenied::Unavailable => "sessions_unavailable",
        }
    }
}
