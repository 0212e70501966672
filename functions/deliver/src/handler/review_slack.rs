//! Approvals in Slack, deliver's part: each new item of a route with `review.notify.slack` is
//! posted to its channel (Approve and Reject buttons; ingest takes the clicks), the message's
//! place is kept on the item, and the message is updated when the item expires. A post that
//! fails is tried again at the item's next wake: the item waits in the table whatever Slack
//! does, `review list` shows it and the ReviewWaiting alarm announces it.

use std::time::Duration;

use switchboard_shared::slack::SlackApi;

use super::*;

/// The longest one call to Slack may take (a task's review wake is not held longer).
const SLACK_TIMEOUT: Duration = Duration::from_secs(3);

impl<P: DeliverPorts> Deliver<P> {
    fn slack(&self) -> SlackApi {
        SlackApi::new(self.http.clone(), SLACK_TIMEOUT)
    }

    /// Posts a waiting item that has no message yet to its route's channel and records where
    /// the message is. Never fails the task: a failure is logged, counted and tried again at
    /// the item's next wake.
    pub(super) async fn announce(&self, route: &OutboundRoute, item: &mut ReviewItem) {
        let Some(notify) = &route.review.notify else {
            return;
        };
        if item.slack.is_some() || item.status != ReviewStatus::Pending {
            return;
        }
        let r = &item.request;
        let (integration, route_id) = (r.integration.clone(), r.route.clone());
        let posted = match SlackApi::token(self.credentials.secrets(), notify).await {
            Ok(token) => self.slack().post(notify, &token, item).await,
            Err(e) => Err(e),
        };
        let post = match posted {
            Ok(post) => post,
            Err(e) => {
                tracing::warn!(item = %item.id, route = %route_id, error = %e, "posting the review item to Slack failed; tried again at its next wake");
                self.metrics
                    .review(&integration, &route_id, "notify_failed");
                return;
            }
        };
        item.slack = Some(post);
        item.version += 1;
        match self.store.update_review(item).await {
            Ok(true) => {
                switchboard_shared::success!(item = %item.id, route = %route_id, "review item posted to Slack");
                self.metrics.review(&integration, &route_id, "notified");
            }
            // Decided while it was posted: the click's payload names the message.
            Ok(false) => {
                tracing::warn!(item = %item.id, "the item changed while it was posted to Slack")
            }
            Err(e) => {
                tracing::warn!(item = %item.id, error = %e, "recording the Slack message failed")
            }
        }
    }

    /// Shows an item's new state in its Slack message (an expiry). Best effort: logged.
    pub(super) async fn show_in_slack(&self, route: &OutboundRoute, item: &ReviewItem) {
        let (Some(notify), Some(post)) = (&route.review.notify, &item.slack) else {
            return;
        };
        let updated = match SlackApi::token(self.credentials.secrets(), notify).await {
            Ok(token) => self.slack().update(notify, &token, item, post).await,
            Err(e) => Err(e),
        };
        if let Err(e) = updated {
            tracing::warn!(item = %item.id, error = %e, "updating the review item's Slack message failed");
        }
    }
}
