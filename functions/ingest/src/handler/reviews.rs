//! `POST /reviews/slack`: the Approve and Reject buttons of review items posted to Slack
//! (`review.notify.slack`). A click is verified (Slack's `v0` signature over the raw body
//! with a signing secret a route names, within 5 minutes), read strictly
//! (`review::slack::click`), and decided by the Slack user who clicked when the item's route
//! names them, or a user group they are in, among its deciders. The decision is recorded and
//! queued as the CLI's is (`review::record`), and the message updated in place
//! (`chat.update`); a refusal is a message only the clicker sees (`chat.postEphemeral`), the
//! item still waiting. A second click changes nothing. Slack waits 3 s for the answer: each
//! call to Slack has 1 s of it.

use switchboard_core::integration::SlackReview;
use switchboard_core::principal::Principal;
use switchboard_core::review::record::{Recorded, record};
use switchboard_core::review::slack::{self, Choice, Click, SlackPost};
use switchboard_core::review::{ReviewItem, ReviewStatus};
use switchboard_shared::slack::SlackApi;

use super::*;

/// Where Slack posts the clicks (the Slack app's Interactivity Request URL).
pub const PATH: &str = "/reviews/slack";
/// The largest interaction taken (Slack's are a few KB).
const MAX_BODY: usize = 64 * 1024;
/// How long a click's signature stays good (Slack's advice: 5 minutes).
const TOLERANCE_SECS: i64 = 300;

fn answered(outcome: Outcome, reason: &'static str, said: &str) -> Answer {
    Answer {
        status: StatusCode::OK,
        body: json!({ "outcome": reason, "message": said }),
        outcome,
        reason,
        event_ids: Vec::new(),
    }
}

impl<Q, S, K, A, R> Ingest<Q, S, K, A, R>
where
    Q: Queue,
    S: IdempotencyStore,
    K: SecretStore,
    A: Archive,
    R: ReviewStore + AttemptLog,
{
    /// One click: verify, read, decide, show.
    pub(super) async fn review_click(&self, req: &Request) -> Result<Answer, Rejection> {
        let body: &[u8] = req.body().as_ref();
        if body.len() > MAX_BODY {
            return Err(Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("an interaction is at most {MAX_BODY} bytes"),
            ));
        }
        let secret = self.verify_click(req, body).await?;
        let click = slack::click(body)
            .map_err(|r| Rejection::new(StatusCode::BAD_REQUEST, r.code, r.message))?;
        let store_down = |e: PortError| {
            tracing::error!(error = %e, "reading the review item failed");
            unavailable("the review queue is unavailable; click again")
        };
        let item = self
            .ports
            .reviews
            .review(&click.item)
            .await
            .map_err(store_down)?
            .ok_or_else(|| {
                Rejection::new(
                    StatusCode::NOT_FOUND,
                    "unknown_item",
                    format!("no review item {}", click.item),
                )
            })?;
        let r = &item.request;
        let Some(route) = self.slack_route(&r.integration, &r.route, &secret) else {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "not_this_app",
                format!(
                    "{}'s route {}/{} is not decided with the Slack app that signed this click",
                    item.id, r.integration, r.route
                ),
            ));
        };
        self.decide_click(route, item, &click).await
    }

    /// The signing secret (its id) that verifies the click: any route's may.
    async fn verify_click(&self, req: &Request, body: &[u8]) -> Result<String, Rejection> {
        let secrets: std::collections::BTreeSet<&str> = self
            .slack_reviews()
            .map(|s| s.slack.signing_secret.as_str())
            .collect();
        if secrets.is_empty() {
            return Err(Rejection::new(
                StatusCode::NOT_FOUND,
                "no_slack_reviews",
                "no route posts its review items to Slack (review.notify.slack)",
            ));
        }
        let mut refused = None;
        let mut readable = Vec::new();
        for id in secrets {
            match self.ports.secrets.signing_keys(id).await {
                Ok(keys) => readable.push((id, keys)),
                Err(e) => {
                    tracing::error!(error = %e, secret = %id, "reading the Slack signing secret failed");
                    refused = Some(unavailable(
                        "the Slack signing secret could not be read; click again",
                    ));
                }
            }
        }
        let url = req.uri().to_string();
        let signed = SignedRequest {
            method: req.method().as_str(),
            url: &url,
            headers: req.headers(),
            body,
        };
        let now = Utc::now().timestamp();
        for (id, keys) in readable {
            match verify(&Scheme::Slack, &keys, &signed, now, TOLERANCE_SECS) {
                Ok(()) => return Ok(id.to_string()),
                // A secret that could not be read may be the one: the sender clicks again.
                Err(e) if refused.is_none() => {
                    refused = Some(Rejection::new(
                        StatusCode::UNAUTHORIZED,
                        e.code(),
                        e.to_string(),
                    ));
                }
                Err(_) => {}
            }
        }
        Err(refused.unwrap_or_else(|| unavailable("no signing secret could be read")))
    }

    fn slack_reviews(&self) -> impl Iterator<Item = &SlackReview> {
        self.integrations
            .iter()
            .flat_map(|i| i.slack_reviews.iter())
    }

    /// The item's route, when it is decided in Slack with the app that signed the click.
    fn slack_route(&self, integration: &str, route: &str, secret: &str) -> Option<&SlackReview> {
        self.integrations
            .get(integration)?
            .slack_reviews
            .iter()
            .find(|s| s.route == route && s.slack.signing_secret == secret)
    }

    /// Whether the Slack user may decide the item: named among its deciders, or in a user
    /// group named there (Slack says who is in it). None when Slack could not say.
    async fn slack_decider(
        &self,
        route: &SlackReview,
        item: &ReviewItem,
        user: &str,
    ) -> Option<bool> {
        if item.may_decide_in_slack(user, &[]) {
            return Some(true);
        }
        let groups = item.slack_groups();
        if groups.is_empty() {
            return Some(false);
        }
        let token = SlackApi::token(&self.ports.secrets, &route.slack)
            .await
            .ok()?;
        // Asked at once, each within its second: the click is answered inside Slack's 3 s.
        let lists = groups
            .iter()
            .map(|group| self.slack.members(&route.slack, &token, group));
        let answers = futures::future::join_all(lists).await;
        let (mut member_of, mut unknown) = (Vec::new(), false);
        for (group, answer) in groups.iter().zip(answers) {
            match answer {
                Ok(users) if users.iter().any(|u| u == user) => member_of.push(*group),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(group, error = %e, "listing a Slack user group failed");
                    unknown = true;
                }
            }
        }
        let may = item.may_decide_in_slack(user, &member_of);
        (may || !unknown).then_some(may)
    }

    /// Why a click cannot decide the item now, told to the clicker alone: decided already,
    /// expired, not a decider, or a membership Slack could not confirm.
    async fn refusal(&self, route: &SlackReview, item: &ReviewItem, user: &str) -> Option<Answer> {
        let (outcome, reason, said) = if item.status != ReviewStatus::Pending {
            (Outcome::Duplicate, "already_decided", already(item))
        } else if Utc::now() >= item.expires_at {
            let said = format!(
                "{} expired at {}: its on_expiry ({}) applies; nothing was changed",
                item.id,
                item.expires_at.to_rfc3339(),
                item.on_expiry.as_str()
            );
            (Outcome::Rejected, "expired", said)
        } else {
            match self.slack_decider(route, item, user).await {
                Some(true) => return None,
                Some(false) => {
                    tracing::warn!(item = %item.id, user, "a Slack user who is not a decider clicked");
                    let said = format!(
                        "You may not decide {}: its deciders are {}. It still waits for one of them.",
                        item.id,
                        slack::escape(&item.deciders.join(", "))
                    );
                    (Outcome::Rejected, "not_a_decider", said)
                }
                None => {
                    let said = "Slack could not say whether you are in a group of its deciders; click again in a moment.".to_string();
                    (Outcome::Failed, "membership_unknown", said)
                }
            }
        };
        Some(answered(outcome, reason, &said))
    }

    async fn decide_click(
        &self,
        route: &SlackReview,
        mut item: ReviewItem,
        click: &Click,
    ) -> Result<Answer, Rejection> {
        let post = item.slack.clone().or_else(|| click.post.clone());
        if let Some(refused) = self.refusal(route, &item, &click.user).await {
            let decided = item.status != ReviewStatus::Pending;
            let said = refused.body["message"].as_str().unwrap_or_default();
            let to = Some((click.user.as_str(), said));
            self.show(route, &item, post.as_ref(), decided, to).await;
            return Ok(refused);
        }
        let by = Principal::Slack(click.user.clone()).to_string();
        let status = match click.choice {
            Choice::Approve => ReviewStatus::Approved,
            Choice::Reject => ReviewStatus::Rejected,
        };
        item.decide(status, &by, Utc::now(), Some("in Slack".into()));
        item.version += 1;
        let recorded = record(&self.ports.reviews, &self.ports.deliveries, &item)
            .await
            .map_err(|e| {
                tracing::error!(item = %item.id, error = %e, "recording a Slack decision failed");
                unavailable("the decision could not be recorded; click again")
            })?;
        let Recorded::Written { queued } = recorded else {
            // Another decision, its expiry, or its message being recorded: look again.
            let said = format!(
                "{} changed while you clicked: nothing was changed; click again to see it as it stands",
                item.id
            );
            let to = Some((click.user.as_str(), said.as_str()));
            self.show(route, &item, post.as_ref(), false, to).await;
            return Ok(answered(Outcome::Duplicate, "changed", &said));
        };
        if let Some(Err(e)) = queued {
            tracing::warn!(item = %item.id, error = %e, "queueing the approved request failed; the item's timer sends it");
        }
        tracing::warn!(item = %item.id, by = %by, status = status.as_str(), "review decided in Slack");
        let r = &item.request;
        self.ports
            .metrics
            .review(&r.integration, &r.route, status.as_str());
        self.show(route, &item, post.as_ref(), true, None).await;
        Ok(answered(Outcome::Accepted, "decided", status.as_str()))
    }

    /// Shows the item as it stands in its message (`post`, when `update`) and says `text`
    /// to one user only, in the message's channel. Best effort: the decision stands whatever
    /// Slack answers.
    async fn show(
        &self,
        route: &SlackReview,
        item: &ReviewItem,
        post: Option<&SlackPost>,
        update: bool,
        to: Option<(&str, &str)>,
    ) {
        let Some(post) = post else {
            return;
        };
        let token = match SlackApi::token(&self.ports.secrets, &route.slack).await {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, "the Slack bot token could not be read");
                return;
            }
        };
        if update && let Err(e) = self.slack.update(&route.slack, &token, item, post).await {
            tracing::warn!(item = %item.id, error = %e, "updating the Slack message failed");
        }
        if let Some((user, text)) = to
            && let Err(e) = self
                .slack
                .ephemeral(&route.slack, &token, post, user, text)
                .await
        {
            tracing::warn!(item = %item.id, error = %e, "telling the Slack user failed");
        }
    }
}

/// What a click on a decided item is told.
fn already(item: &ReviewItem) -> String {
    let last = item
        .decisions
        .last()
        .map(|d| format!(" by {} at {}", d.by, d.at.to_rfc3339()))
        .unwrap_or_default();
    format!(
        "{} is {} already{}: nothing was changed",
        item.id,
        item.status.as_str(),
        slack::escape(&last)
    )
}
