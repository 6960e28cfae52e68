//! The process signals `serve` acts on, listened for from the moment they are asked
//! for: made before anything slow, so that a signal during start-up (`systemctl reload`
//! right after `start`) is not handled by its default action, which ends the process.

/// One signal, listened for from the moment this is made; one received since is kept.
#[derive(Debug)]
pub struct OsSignal {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl OsSignal {
    /// SIGHUP: reload. Needs a Tokio runtime's context.
    pub fn hangup() -> OsSignal {
        #[cfg(unix)]
        return OsSignal::listen(tokio::signal::unix::SignalKind::hangup(), "SIGHUP");
        #[cfg(not(unix))]
        OsSignal {}
    }

    /// SIGTERM: stop. Needs a Tokio runtime's context.
    pub fn terminate() -> OsSignal {
        #[cfg(unix)]
        return OsSignal::listen(tokio::signal::unix::SignalKind::terminate(), "SIGTERM");
        #[cfg(not(unix))]
        OsSignal {}
    }

    #[cfg(unix)]
    fn listen(kind: tokio::signal::unix::SignalKind, name: &str) -> OsSignal {
        let signal = tokio::signal::unix::signal(kind)
            .inspect_err(|err| tracing::warn!("cannot listen for {name}: {err}"))
            .ok();
        OsSignal { signal }
    }

    /// Completes at the next signal (one received since the last call counts); never,
    /// when it cannot be listened for.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}
