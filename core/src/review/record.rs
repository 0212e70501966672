//! Carrying out a person's decision, one way for the CLI and for Slack's clicks: the decided
//! item written with one conditional write (it expects the version it was read at), then,
//! for an approval or an edit, its request queued on the deliveries queue at once, with a
//! fresh attempt history and under a message group of its own (a person's decision is not
//! queued behind a destination's backlog). Should the send fail, the decision still holds:
//! the item's timer sends it at its next wake.

use super::{ReviewItem, ReviewStatus};
use crate::envelope::{DeliveryMessage, message_group};
use crate::ports::{AttemptLog, Outgoing, PortError, Queue, ReviewStore};

/// What recording a decision did.
#[derive(Debug)]
pub enum Recorded {
    /// The item changed since it was read (another decision, its expiry): nothing written.
    Changed,
    /// Written; for an approval or an edit, whether its request was queued.
    Written {
        /// None for a rejection; the send's outcome otherwise.
        queued: Option<Result<(), PortError>>,
    },
}

/// Writes `item`, whose decision was just recorded on it (`ReviewItem::decide`, its version
/// bumped), and queues what it sends.
pub async fn record<S, Q>(
    store: &S,
    deliveries: &Q,
    item: &ReviewItem,
) -> Result<Recorded, PortError>
where
    S: ReviewStore + AttemptLog,
    Q: Queue,
{
    if !store.update_review(item).await? {
        return Ok(Recorded::Changed);
    }
    let sends = matches!(item.status, ReviewStatus::Approved | ReviewStatus::Edited);
    if !sends {
        return Ok(Recorded::Written { queued: None });
    }
    Ok(Recorded::Written {
        queued: Some(queue(store, deliveries, item).await),
    })
}

async fn queue<S: AttemptLog, Q: Queue>(
    store: &S,
    deliveries: &Q,
    item: &ReviewItem,
) -> Result<(), PortError> {
    let request = item.decided_request();
    store
        .reset_attempts(&format!("{}#{}", request.event_id, request.route))
        .await?;
    // Its own group, as a redrive's: `review:{integration}/{route}`.
    let group = message_group(&format!("review:{}/{}", request.integration, request.route));
    let body =
        serde_json::to_string(&DeliveryMessage::DeliveryV1(request)).map_err(|e| PortError {
            operation: "serialize",
            message: e.to_string(),
        })?;
    deliveries
        .send(&[Outgoing {
            body,
            group: Some(group),
        }])
        .await
}
