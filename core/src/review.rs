//! The human review queue: a route may hold an event for a person instead of delivering it
//! (its `review_when` said so, or the destination refused it and the route says
//! `on_rejected: review`). The pending item keeps the mapped request, why it waits, who may
//! decide and when it expires; a person approves, edits or rejects it, and every decision is
//! recorded with who and when.
//!
//! The item's timer is its delivery task, held on the deliveries queue's visibility: deliver
//! creates the item (once per event and route), then looks at it again at each wake (until it
//! expires, when it is overdue, at most every 12 h). A decision takes effect at once (the CLI
//! queues the decided request) and at the next wake at the latest, so a lost send loses
//! nothing. The rules here are pure: the caller passes the time.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::principal::Principal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::envelope::DeliveryV1;

pub mod record;
pub mod slack;

/// How long an item waits for a decision when its route sets no `review.expires`.
pub const DEFAULT_EXPIRES: Duration = Duration::from_secs(24 * 3600);
/// The longest an item may wait: the deliveries queue keeps its timer 14 days, and every wake
/// is a receive of it.
pub const MAX_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);
/// When a waiting item raises the overdue alarm when its route sets no `review.alert_after`.
pub const DEFAULT_ALERT_AFTER: Duration = Duration::from_secs(3600);
/// How long a decided or expired item is kept (its audit trail) after its expiry.
pub const KEPT_AFTER_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest the timer sleeps between two looks: inside SQS's 12 h visibility limit.
pub const MAX_SLEEP: Duration = Duration::from_secs(11 * 3600);

/// A route's review settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewPolicy {
    /// A permanent refusal by the destination (`rejected_by_destination`, a 4xx) waits in
    /// review instead of going to the DLQ.
    pub on_rejected: bool,
    /// How long an item waits for a decision.
    pub expires: Duration,
    /// What happens to an item nobody decided in time.
    pub on_expiry: OnExpiry,
    /// Who may decide, exactly (`principal::Principal::is`): an IAM user or role ARN, a role
    /// name in the stack's account, or a Slack user or group id (`slack:U…`); anyone with
    /// access to the table when empty.
    pub deciders: Vec<String>,
    /// An item waiting this long raises the `ReviewOverdue` alarm.
    pub alert_after: Duration,
    /// Where each new item is posted for people to decide (Slack), if anywhere.
    pub notify: Option<slack::SlackNotify>,
}

impl Default for ReviewPolicy {
    fn default() -> Self {
        Self {
            on_rejected: false,
            expires: DEFAULT_EXPIRES,
            on_expiry: OnExpiry::DeadLetter,
            deciders: Vec::new(),
            alert_after: DEFAULT_ALERT_AFTER,
            notify: None,
        }
    }
}

/// What happens to an item nobody decided in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    /// The kept request is delivered as it is.
    Deliver,
    /// Nothing is delivered; the item records that it expired.
    Drop,
    /// The task goes to the deliveries DLQ with reason `review_expired`.
    DeadLetter,
}

impl OnExpiry {
    /// As definitions and tables write it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnExpiry::Deliver => "deliver",
            OnExpiry::Drop => "drop",
            OnExpiry::DeadLetter => "dead_letter",
        }
    }
}

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Waiting for a person.
    Pending,
    /// Approved: the kept request is delivered.
    Approved,
    /// Edited and approved: the edited body is delivered.
    Edited,
    /// Rejected: nothing is delivered.
    Rejected,
    /// Nobody decided in time: its `on_expiry` applied.
    Expired,
}

impl ReviewStatus {
    /// Every status, pending first.
    pub const ALL: [ReviewStatus; 5] = [
        ReviewStatus::Pending,
        ReviewStatus::Approved,
        ReviewStatus::Edited,
        ReviewStatus::Rejected,
        ReviewStatus::Expired,
    ];

    /// As the table and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Edited => "edited",
            ReviewStatus::Rejected => "rejected",
            ReviewStatus::Expired => "expired",
        }
    }
}

/// One decision on an item: who, when, what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `approve`, `edit`, `reject`, `expire`.
    pub action: String,
    /// The verified principal (`principal::Principal`'s form: an IAM ARN, `slack:U…`,
    /// `local:NAME` under the emulator), or `switchboard` for an expiry.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The rejection's reason, the edit's file, the expiry's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The hash ([`request_hash`]) of the request this decision lets deliver send (an
    /// approval, an edit, an expiry): deliver sends a task marked `reviewed` only when its
    /// request has this hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
}

/// The hash of a mapped request as a review item keeps it: its event, integration, route,
/// method, path, headers and body (not where it is archived, nor its review marks).
pub fn request_hash(task: &DeliveryV1) -> String {
    let canonical = serde_json::json!([
        task.event_id,
        task.integration,
        task.route,
        task.method,
        task.path,
        task.headers,
        task.body,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Why an item waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Why {
    /// `review_when`, `rejected_by_destination`, `permanent_failure`.
    pub reason: String,
    /// In words (what `review_when` yielded when it was text, what the destination said).
    pub message: String,
    /// The first 1 KB of the destination's answer, when it refused the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// A pending (or decided) item of the review queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// `rv_` and 20 hex digits, derived from the event and route: the same event and route is
    /// one item.
    pub id: String,
    /// Bumped by every write; a write expects the version it read.
    pub version: u32,
    /// Where it stands.
    pub status: ReviewStatus,
    /// Why it waits.
    pub why: Why,
    /// The mapped request, as transform made it (method, path, headers, body).
    pub request: DeliveryV1,
    /// The body a person edited, delivered instead of the kept one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<serde_json::Value>,
    /// Who may decide (empty: anyone with access).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deciders: Vec<String>,
    /// When it started waiting.
    pub created_at: DateTime<Utc>,
    /// When `on_expiry` applies.
    pub expires_at: DateTime<Utc>,
    /// What happens then.
    pub on_expiry: OnExpiry,
    /// When it is overdue (the alarm).
    pub alert_at: DateTime<Utc>,
    /// Whether the overdue alarm has been raised for it.
    #[serde(default)]
    pub alerted: bool,
    /// Every decision, oldest first.
    #[serde(default)]
    pub decisions: Vec<Decision>,
    /// Its message in Slack, once posted (`review.notify.slack`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<slack::SlackPost>,
}

/// What the timer does at a wake.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Still pending: look again after this long; `overdue` the first time it is past its
    /// `alert_at` (raise the alarm, note it).
    Wait {
        /// How long the timer sleeps.
        sleep: Duration,
        /// Raise the overdue alarm now.
        overdue: bool,
    },
    /// Deliver this request (approved, edited, or expired with `on_expiry: deliver`).
    Send(Box<DeliveryV1>),
    /// Nothing more to do (rejected, or expired and dropped).
    Done,
    /// Expired with `on_expiry: dead_letter`: to the DLQ with reason `review_expired`.
    DeadLetter,
    /// Pending past its expiry: record the expiry, then apply `on_expiry`.
    Expire,
}

impl ReviewItem {
    /// The item id of a task: its event, route and request ([`request_hash`]), so the same
    /// request of an event's route is one item, and a different one (a changed mapping, a
    /// replay after a fix) a new review.
    pub fn id_of(task: &DeliveryV1) -> String {
        let digest = Sha256::digest(
            format!("{}#{}#{}", task.event_id, task.route, request_hash(task)).as_bytes(),
        );
        format!("rv_{}", &hex::encode(digest)[..20])
    }

    /// Whether this item lets deliver send `task`, marked as reviewed by it: it was approved,
    /// edited, or expired to be delivered, and the decision recorded this very request.
    pub fn authorizes(&self, task: &DeliveryV1) -> bool {
        let sends = match self.status {
            ReviewStatus::Approved | ReviewStatus::Edited => true,
            ReviewStatus::Expired => self.on_expiry == OnExpiry::Deliver,
            ReviewStatus::Pending | ReviewStatus::Rejected => false,
        };
        let recorded = self
            .decisions
            .last()
            .and_then(|d| d.request_hash.as_deref());
        sends
            && task.reviewed.as_deref() == Some(self.id.as_str())
            && recorded == Some(request_hash(task).as_str())
    }

    /// Opens an expired item again for the route's span (its letter redriven: a person decides
    /// now; it is never sent by the redrive itself).
    pub fn reopen(&mut self, policy: &ReviewPolicy, now: DateTime<Utc>) {
        let after = |d: Duration| now + chrono::Duration::from_std(d).unwrap_or_default();
        self.status = ReviewStatus::Pending;
        self.created_at = now;
        self.expires_at = after(policy.expires);
        self.alert_at = after(policy.alert_after.min(policy.expires));
        self.alerted = false;
        // Its old message says it expired: a new one with its buttons is posted.
        self.slack = None;
        self.decisions.push(Decision {
            action: "reopen".into(),
            by: "switchboard".into(),
            at: now,
            note: Some("its letter was redriven".into()),
            request_hash: None,
        });
    }

    /// A new pending item for a task.
    pub fn new(task: &DeliveryV1, policy: &ReviewPolicy, why: Why, now: DateTime<Utc>) -> Self {
        let after = |d: Duration| now + chrono::Duration::from_std(d).unwrap_or_default();
        let mut request = task.clone();
        request.review = None;
        Self {
            id: Self::id_of(task),
            version: 1,
            status: ReviewStatus::Pending,
            why,
            request,
            edited: None,
            deciders: policy.deciders.clone(),
            created_at: now,
            expires_at: after(policy.expires),
            on_expiry: policy.on_expiry,
            alert_at: after(policy.alert_after.min(policy.expires)),
            alerted: false,
            decisions: Vec::new(),
            slack: None,
        }
    }

    /// The request a decision sends: the kept one (or its edited body), marked as reviewed so
    /// deliver does not hold it again.
    pub fn decided_request(&self) -> DeliveryV1 {
        let mut request = self.request.clone();
        if let Some(body) = &self.edited {
            request.body = body.clone();
        }
        request.review = None;
        request.reviewed = Some(self.id.clone());
        request
    }

    /// When DynamoDB's TTL may delete it: a while after its expiry, so the audit trail stays.
    pub fn ttl(&self) -> i64 {
        self.expires_at.timestamp() + KEPT_AFTER_EXPIRY.as_secs() as i64
    }

    /// Whether the verified principal `who` may decide, the stack being in `stack_account`.
    pub fn may_decide(&self, who: &Principal, stack_account: &str) -> bool {
        self.deciders.is_empty() || self.deciders.iter().any(|d| who.is(d, stack_account))
    }

    /// The Slack user groups among its deciders (`slack:S…`): whether a Slack user is one of
    /// them is Slack's to say (`usergroups.users.list`).
    pub fn slack_groups(&self) -> Vec<&str> {
        self.deciders
            .iter()
            .filter_map(|d| d.trim().strip_prefix("slack:"))
            .filter(|id| slack::is_id(id, &['S']))
            .collect()
    }

    /// Whether the Slack user `user` may decide: named among the deciders, or a member of a
    /// group named there (`member_of`: the groups Slack says they belong to). An item with no
    /// deciders is never decided in Slack (anyone in a channel is not anyone with access).
    pub fn may_decide_in_slack(&self, user: &str, member_of: &[&str]) -> bool {
        let named = |id: &str| {
            self.deciders
                .iter()
                .any(|d| d.trim() == format!("slack:{id}"))
        };
        named(user) || member_of.iter().any(|g| named(g))
    }

    /// Records a decision on a pending item: its new status, who, when, a note.
    pub fn decide(
        &mut self,
        status: ReviewStatus,
        by: &str,
        now: DateTime<Utc>,
        note: Option<String>,
    ) {
        let action = match status {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Approved => "approve",
            ReviewStatus::Edited => "edit",
            ReviewStatus::Rejected => "reject",
            ReviewStatus::Expired => "expire",
        };
        self.status = status;
        let sends = matches!(
            status,
            ReviewStatus::Approved | ReviewStatus::Edited | ReviewStatus::Expired
        );
        let request_hash = sends.then(|| request_hash(&self.decided_request()));
        self.decisions.push(Decision {
            action: action.into(),
            by: by.into(),
            at: now,
            note,
            request_hash,
        });
    }

    /// What the timer does at a wake at `now`.
    pub fn next(&self, now: DateTime<Utc>) -> Next {
        match self.status {
            ReviewStatus::Approved | ReviewStatus::Edited => {
                Next::Send(Box::new(self.decided_request()))
            }
            ReviewStatus::Rejected => Next::Done,
            ReviewStatus::Expired => match self.on_expiry {
                OnExpiry::Deliver => Next::Send(Box::new(self.decided_request())),
                OnExpiry::Drop => Next::Done,
                OnExpiry::DeadLetter => Next::DeadLetter,
            },
            ReviewStatus::Pending if now >= self.expires_at => Next::Expire,
            ReviewStatus::Pending => {
                let overdue = !self.alerted && now >= self.alert_at;
                let until = |t: DateTime<Utc>| (t - now).to_std().unwrap_or_default();
                let mut sleep = until(self.expires_at).min(MAX_SLEEP);
                if !self.alerted && !overdue {
                    sleep = sleep.min(until(self.alert_at));
                }
                Next::Wait {
                    sleep: sleep.max(Duration::from_secs(1)),
                    overdue,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EventId;

    fn task() -> DeliveryV1 {
        DeliveryV1 {
            event_id: EventId::derived("e1"),
            integration: "3pl".into(),
            route: "to-shopify".into(),
            body: serde_json::json!({"a": 1}),
            method: None,
            path: None,
            headers: Default::default(),
            received_at: None,
            review: Some("address rejected".into()),
            reviewed: None,
            archived: None,
            order: None,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn item(policy: &ReviewPolicy) -> ReviewItem {
        let why = Why {
            reason: "review_when".into(),
            message: "address rejected".into(),
            answer: None,
        };
        ReviewItem::new(&task(), policy, why, at(0))
    }

    #[test]
    fn one_request_of_an_event_and_route_is_one_item_id() {
        let a = ReviewItem::id_of(&task());
        let mut again = task();
        again.review = None;
        again.archived = Some("elsewhere".into());
        assert_eq!(
            a,
            ReviewItem::id_of(&again),
            "marks and archive do not count"
        );
        let mut other_route = task();
        other_route.route = "s".into();
        let mut other_body = task();
        other_body.body = serde_json::json!({"a": 2});
        assert_ne!(a, ReviewItem::id_of(&other_route));
        assert_ne!(
            a,
            ReviewItem::id_of(&other_body),
            "a different request is a new review"
        );
        assert_eq!(a.len(), 23);
        assert!(a.starts_with("rv_"));
    }

    #[test]
    fn only_the_decided_request_of_an_approved_item_is_authorized() {
        let mut it = item(&ReviewPolicy::default());
        let approved = |it: &ReviewItem| it.decided_request();
        assert!(!it.authorizes(&approved(&it)), "pending");
        it.decide(ReviewStatus::Approved, "local:ops", at(1), None);
        let sent = approved(&it);
        assert!(it.authorizes(&sent));
        let mut forged = sent.clone();
        forged.body = serde_json::json!({"a": "something else"});
        assert!(!it.authorizes(&forged), "another body");
        let mut elsewhere = sent.clone();
        elsewhere.reviewed = Some("rv_00000000000000000000".into());
        assert!(!it.authorizes(&elsewhere), "another item");
        let mut rejected = item(&ReviewPolicy::default());
        rejected.decide(ReviewStatus::Rejected, "local:ops", at(1), None);
        assert!(!rejected.authorizes(&approved(&rejected)));
        // An edit authorizes the edited body, not the kept one.
        let mut edited = item(&ReviewPolicy::default());
        let kept = approved(&edited);
        edited.edited = Some(serde_json::json!({"a": 9}));
        edited.decide(ReviewStatus::Edited, "local:ops", at(1), None);
        assert!(edited.authorizes(&approved(&edited)));
        assert!(!edited.authorizes(&kept));
    }

    #[test]
    fn a_pending_item_sleeps_until_it_is_overdue_then_until_it_expires() {
        let policy = ReviewPolicy {
            expires: Duration::from_secs(100),
            alert_after: Duration::from_secs(30),
            ..ReviewPolicy::default()
        };
        let mut it = item(&policy);
        assert_eq!(
            it.next(at(10)),
            Next::Wait {
                sleep: Duration::from_secs(20),
                overdue: false
            }
        );
        assert_eq!(
            it.next(at(31)),
            Next::Wait {
                sleep: Duration::from_secs(69),
                overdue: true
            }
        );
        it.alerted = true;
        assert_eq!(
            it.next(at(40)),
            Next::Wait {
                sleep: Duration::from_secs(60),
                overdue: false
            }
        );
        assert_eq!(it.next(at(100)), Next::Expire);
    }

    #[test]
    fn a_long_wait_sleeps_within_the_visibility_limit() {
        let policy = ReviewPolicy {
            expires: MAX_EXPIRES,
            alert_after: MAX_EXPIRES,
            ..ReviewPolicy::default()
        };
        assert_eq!(
            item(&policy).next(at(0)),
            Next::Wait {
                sleep: MAX_SLEEP,
                overdue: false
            }
        );
    }

    #[test]
    fn each_decision_and_expiry_policy_has_its_next_step() {
        let policy = ReviewPolicy::default();
        let mut it = item(&policy);
        it.decide(ReviewStatus::Approved, "ops", at(5), None);
        let Next::Send(sent) = it.next(at(6)) else {
            panic!("approved sends")
        };
        assert_eq!(sent.body, serde_json::json!({"a": 1}));
        assert_eq!(sent.review, None);
        assert_eq!(sent.reviewed.as_deref(), Some(it.id.as_str()));

        let mut it = item(&policy);
        it.edited = Some(serde_json::json!({"a": 2}));
        it.decide(ReviewStatus::Edited, "ops", at(5), Some("fix.json".into()));
        let Next::Send(sent) = it.next(at(6)) else {
            panic!("edited sends")
        };
        assert_eq!(sent.body, serde_json::json!({"a": 2}));
        assert_eq!(it.decisions[0].action, "edit");

        let mut it = item(&policy);
        it.decide(ReviewStatus::Rejected, "ops", at(5), Some("fraud".into()));
        assert_eq!(it.next(at(6)), Next::Done);

        for (on_expiry, next) in [
            (OnExpiry::Drop, Next::Done),
            (OnExpiry::DeadLetter, Next::DeadLetter),
        ] {
            let mut it = item(&ReviewPolicy {
                on_expiry,
                ..policy.clone()
            });
            it.decide(ReviewStatus::Expired, "switchboard", at(5), None);
            assert_eq!(it.next(at(6)), next);
        }
        let mut it = item(&ReviewPolicy {
            on_expiry: OnExpiry::Deliver,
            ..policy
        });
        it.decide(ReviewStatus::Expired, "switchboard", at(5), None);
        assert!(matches!(it.next(at(6)), Next::Send(_)));
    }

    #[test]
    fn deciders_are_exact_principals_never_a_session_name() {
        let arn = |a: &str| Principal::from_arn(a).unwrap();
        let account = "123456789012";
        let mut it = item(&ReviewPolicy::default());
        assert!(it.may_decide(&Principal::Local("anyone".into()), account));
        it.deciders = vec!["support-lead".into(), "ops".into()];
        assert!(it.may_decide(
            &arn("arn:aws:sts::123456789012:assumed-role/ops/alice"),
            account
        ));
        // A user called like a decider role, a session named like one, another account's
        // role of that name: none of them.
        for who in [
            "arn:aws:iam::123456789012:user/support-lead",
            "arn:aws:sts::123456789012:assumed-role/intern/support-lead",
            "arn:aws:sts::999999999999:assumed-role/ops/alice",
        ] {
            assert!(!it.may_decide(&arn(who), account), "{who}");
        }
        assert!(!it.may_decide(&Principal::Local("mallory".into()), account));
    }
}
