//! Writing a purchase over the one it was read as: the conditional write (with a revoke's
//! event in the same transaction) and the retries of a change that met a purchase written
//! meanwhile.

use crate::admin::ops::{after_purchase_write, blocking, AdminError};
use crate::proxy::State;
use crate::rights::model::{Purchase, PurchaseStatus};
use crate::webhooks::Event;

/// How often an update or a revoke reads the purchase again when it was written
/// meanwhile (by another admin call, another node, or a first play) before answering 409.
const ATTEMPTS: usize = 5;

/// Runs `change` (read, change, conditional write) until it does not meet a purchase
/// written meanwhile, at most [`ATTEMPTS`] times.
pub(super) async fn until_unchanged<T, F, Fut>(mut change: F) -> Result<T, AdminError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AdminError>>,
{
    for _ in 1..ATTEMPTS {
        match change().await {
            Err(AdminError::Changed(_)) => continue,
            other => return other,
        }
    }
    change().await
}

/// Writes `after` over `before` if the store still holds `before`, with a revoke's event
/// in the same transaction when `after` revokes it, then invalidates the decisions it
/// touches.
pub(super) async fn replace(
    state: &State,
    before: Purchase,
    after: &Purchase,
) -> Result<(), AdminError> {
    let revoked =
        before.status != PurchaseStatus::Revoked && after.status == PurchaseStatus::Revoked;
    let events = if revoked {
        state.webhooks.deliveries(&Event::Revoke(after.into()))
    } else {
        Vec::new()
    };
    let (stored, queued) = (after.clone(), events.clone());
    blocking(state, move |s| {
        s.replace_purchase(&before, &stored, &queued)
    })
    .await?;
    after_purchase_write(state, &after.account);
    state.webhooks.queued(&events);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::{until_unchanged, AdminError, ATTEMPTS};

    fn changed() -> AdminError {
        AdminError::Changed("purchase h1".into())
    }

    #[tokio::test]
    async fn a_change_that_met_a_newer_purchase_is_made_again_from_it() {
        let tries = Cell::new(0);
        let got = until_unchanged(|| async {
            tries.set(tries.get() + 1);
            if tries.get() < 3 {
                Err(changed())
            } else {
                Ok(tries.get())
            }
        })
        .await;
        assert_eq!(got.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_purchase_that_keeps_changing_is_a_conflict_after_a_few_tries() {
        let tries = Cell::new(0);
        let got: Result<(), _> = until_unchanged(|| async {
            tries.set(tries.get() + 1);
            Err(changed())
        })
        .await;
        assert!(matches!(got, Err(AdminError::Changed(_))), "{got:?}");
        assert_eq!(tries.get(), ATTEMPTS);
    }

    #[tokio::test]
    async fn other_errors_are_not_tried_again() {
        let tries = Cell::new(0);
        let got: Result<(), _> = until_unchanged(|| async {
            tries.set(tries.get() + 1);
            Err(AdminError::NotFound("buyer h1".into()))
        })
        .await;
        assert!(matches!(got, Err(AdminError::NotFound(_))), "{got:?}");
        assert_eq!(tries.get(), 1);
    }
}
