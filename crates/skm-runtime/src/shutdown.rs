//! Graceful shutdown: one trigger, any number of waiters.

use tokio::sync::watch;

/// Fires the shutdown. Dropping every trigger also counts as shutdown.
#[derive(Clone, Debug)]
pub struct ShutdownTrigger {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

/// Waits for the shutdown.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A new trigger and its waiter.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx: std::sync::Arc::new(tx) }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Starts the shutdown.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// Completes once shutdown has started.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }
}

/// A shutdown fired by SIGTERM or Ctrl-C (SIGINT). Must be called inside a
/// tokio runtime.
pub fn on_signals() -> (ShutdownTrigger, Shutdown) {
    let (trigger, shutdown) = channel();
    let fire = trigger.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, shutting down"),
            _ = terminate => tracing::info!("SIGTERM received, shutting down"),
        }
        fire.trigger();
    });
    (trigger, shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_wakes_waiters() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.is_triggered());
        let waiter = tokio::spawn({
            let s = shutdown.clone();
            async move { s.wait().await }
        });
        trigger.trigger();
        waiter.await.unwrap();
        assert!(shutdown.is_triggered());
    }
}
