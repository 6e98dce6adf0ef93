//! Readiness (`/_status`): whether the service can do its work now — its store readable and
//! writable — as a load balancer or an orchestrator asks before sending it requests.

use std::time::Duration;

use super::App;

/// A store that has not answered the check by then is not ready.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

impl App {
    /// `Err(reason)` when the store cannot be read or written now, or does not answer within
    /// [`READINESS_TIMEOUT`]. The reason names no patient (it is the store's own complaint:
    /// disk full, server unreachable…).
    pub async fn readiness(&self) -> Result<(), String> {
        match tokio::time::timeout(READINESS_TIMEOUT, self.store.readiness()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the store did not answer within {} seconds",
                READINESS_TIMEOUT.as_secs()
            )),
        }
    }
}
