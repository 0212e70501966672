//! Approvals in Slack: where a route's items are posted (`review.notify.slack`), the Block
//! Kit messages that show an item (Approve and Reject buttons while it waits; who decided and
//! when once it is decided), and the button click Slack posts back (`block_actions`), read
//! strictly. Every text from outside (why, the request's fields, notes) is escaped (`&`, `<`,
//! `>`): no mention, channel ping or link reaches the channel from a customer. The rules are
//! pure; the calls are `switchboard_shared::slack`'s.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::{ReviewItem, ReviewStatus};

/// Slack's Web API when a route names none.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";
/// The button that approves.
pub const APPROVE: &str = "approve";
/// The button that rejects.
pub const REJECT: &str = "reject";
/// How many of the request's fields a message shows (Slack takes at most 10 in a section).
const FIELDS: usize = 10;
/// The longest a field's value is shown.
const FIELD_CHARS: usize = 150;
/// The longest why is shown (a section takes 3,000 characters).
const WHY_CHARS: usize = 1500;

/// Where a route's items are posted and decided (`review.notify.slack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackNotify {
    /// The channel id (`C0REVIEWS`).
    pub channel: String,
    /// The secret holding the bot token (`chat:write`; `usergroups:read` when a decider is a
    /// user group).
    pub token: String,
    /// The secret holding the app's signing secret: the button clicks are verified with it.
    pub signing_secret: String,
    /// Slack's Web API (`https://slack.com/api`).
    pub api_url: Url,
}

/// Where an item's message is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackPost {
    /// The channel id.
    pub channel: String,
    /// The message's `ts`.
    pub ts: String,
}

/// Text from outside, safe in Slack's `mrkdwn`: `&`, `<` and `>` escaped, so it cannot
/// mention, ping a channel or link.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A `mrkdwn` text object taken as written (`verbatim`: Slack links no bare URL and parses
/// no `@here` or name in it; what is not escaped here is ours).
fn mrkdwn(text: impl Into<String>) -> Value {
    json!({"type": "mrkdwn", "text": text.into(), "verbatim": true})
}

/// Text from outside, escaped, then cut to `max` characters without splitting an entity
/// (`&amp;`): escaping may grow it, and Slack refuses a block past its limit.
pub fn escaped(text: &str, max: usize) -> String {
    let escaped = escape(text);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let mut kept: String = escaped.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = kept.rfind('&')
        && !kept[amp..].contains(';')
    {
        kept.truncate(amp);
    }
    format!("{kept}…")
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    format!("{}…", text.chars().take(max - 1).collect::<String>())
}

/// A time as Slack shows it in each reader's zone (the RFC 3339 text where it cannot).
fn date(at: DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        at.timestamp(),
        at.to_rfc3339()
    )
}

/// A verified principal as a message names it: a Slack user as a mention, anyone else as
/// code.
fn principal(by: &str) -> String {
    match by.strip_prefix("slack:") {
        Some(id) if is_id(id, &['U', 'W']) => format!("<@{id}>"),
        Some(id) if is_id(id, &['S']) => format!("<!subteam^{id}>"),
        _ => format!("`{}`", escape(by).replace('`', "'")),
    }
}

/// Whether `id` is a Slack id: one of `kinds`, then capitals and digits.
pub fn is_id(id: &str, kinds: &[char]) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| kinds.contains(&c))
        && id.len() >= 3
        && id.len() <= 32
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// The request's key fields: its body's first top-level values that are text, numbers or
/// booleans, escaped and cut short.
fn fields(item: &ReviewItem) -> Vec<Value> {
    let body = item.edited.as_ref().unwrap_or(&item.request.body);
    let Some(object) = body.as_object() else {
        let text = body.to_string();
        return vec![mrkdwn(format!("*body*\n{}", escaped(&text, FIELD_CHARS)))];
    };
    object
        .iter()
        .filter_map(|(name, value)| {
            let shown = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            let text = format!("*{}*\n{}", escaped(name, 50), escaped(&shown, FIELD_CHARS));
            Some(mrkdwn(text))
        })
        .take(FIELDS)
        .collect()
}

/// The blocks every message of an item has: the route, why, the key fields, who may decide
/// and when it expires.
fn about(item: &ReviewItem) -> Vec<Value> {
    let r = &item.request;
    let mut why = format!("*Why:* {}", escaped(&item.why.message, WHY_CHARS));
    if let Some(answer) = &item.why.answer {
        why.push_str(&format!(
            "\n*The destination answered:* {}",
            escaped(answer, 300)
        ));
    }
    let deciders = if item.deciders.is_empty() {
        "anyone with access".to_string()
    } else {
        item.deciders
            .iter()
            .map(|d| principal(d))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text",
            "text": cut(&format!("Review: {}/{}", r.integration, r.route), 150)}}),
        json!({"type": "section", "text": mrkdwn(why)}),
    ];
    let fields = fields(item);
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    let context = format!(
        "Item `{}` · event `{}` · may decide: {deciders} · expires {} (then {})",
        item.id,
        r.event_id,
        date(item.expires_at),
        item.on_expiry.as_str()
    );
    blocks.push(json!({"type": "context", "elements": [mrkdwn(context)]}));
    blocks
}

/// The fallback text of a message (notifications, screen readers).
fn summary(item: &ReviewItem) -> String {
    let r = &item.request;
    format!(
        "Review {} ({}/{}): {} {}",
        item.id,
        r.integration,
        r.route,
        escaped(&item.why.message, 200),
        item.status.as_str()
    )
}

/// The blocks of an item as it stands: its buttons while it waits, who decided and when
/// once it is decided.
pub fn blocks(item: &ReviewItem) -> Vec<Value> {
    let mut blocks = about(item);
    if item.status == ReviewStatus::Pending {
        let button = |action: &str, label: &str, style: &str| {
            json!({"type": "button", "action_id": action, "style": style, "value": item.id,
                "text": {"type": "plain_text", "text": label}})
        };
        let mut reject = button(REJECT, "Reject", "danger");
        reject["confirm"] = json!({
            "title": {"type": "plain_text", "text": "Reject?"},
            "text": mrkdwn("Nothing is delivered; the rejection is recorded with your name."),
            "confirm": {"type": "plain_text", "text": "Reject"},
            "deny": {"type": "plain_text", "text": "Cancel"}
        });
        blocks.push(json!({"type": "actions", "block_id": "review",
            "elements": [button(APPROVE, "Approve", "primary"), reject]}));
        blocks.push(json!({"type": "context", "elements": [mrkdwn(format!(
            "To change the request before it goes: `switchboard review edit {} --file body.json`",
            item.id
        ))]}));
        return blocks;
    }
    let outcome = match item.status {
        ReviewStatus::Approved => "Approved",
        ReviewStatus::Edited => "Edited and approved",
        ReviewStatus::Rejected => "Rejected",
        ReviewStatus::Expired => "Expired",
        ReviewStatus::Pending => "Waiting",
    };
    let line = match item.decisions.last() {
        Some(d) if d.by == "switchboard" => format!(
            "*{outcome}* at {} with nobody's decision (on_expiry: {})",
            date(d.at),
            item.on_expiry.as_str()
        ),
        Some(d) => {
            let note = d
                .note
                .as_deref()
                .map(|n| format!(": {}", escaped(n, 300)))
                .unwrap_or_default();
            format!(
                "*{outcome}* by {} at {}{note}",
                principal(&d.by),
                date(d.at)
            )
        }
        None => format!("*{outcome}*"),
    };
    blocks.push(json!({"type": "section", "text": mrkdwn(line)}));
    blocks
}

/// `chat.postMessage`'s body: the item, waiting, in `channel`.
pub fn post_message(item: &ReviewItem, channel: &str) -> Value {
    json!({"channel": channel, "text": summary(item), "blocks": blocks(item),
        "parse": "none", "link_names": false, "unfurl_links": false, "unfurl_media": false})
}

/// `chat.update`'s body: the item's message, as the item now stands.
pub fn update_message(item: &ReviewItem, post: &SlackPost) -> Value {
    json!({"channel": post.channel, "ts": post.ts, "text": summary(item), "blocks": blocks(item),
        "parse": "none", "link_names": false})
}

/// What a person chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Approve: the kept request is delivered.
    Approve,
    /// Reject: nothing is delivered.
    Reject,
}

/// A click on an item's button, as Slack's signed `block_actions` payload says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    /// The Slack user who clicked (`U…`/`W…`).
    pub user: String,
    /// Approve or reject.
    pub choice: Choice,
    /// The item (`rv_…`).
    pub item: String,
    /// Where the clicked message is, when the payload says.
    pub post: Option<SlackPost>,
}

/// Why an interaction is refused: a code and words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// `invalid_payload`, `unsupported_interaction`.
    pub code: &'static str,
    /// In words, without the payload.
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: Option<Id>,
    #[serde(default)]
    actions: Vec<Action>,
    container: Option<Container>,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
struct Action {
    action_id: String,
    value: Option<String>,
}

#[derive(Deserialize)]
struct Container {
    channel_id: Option<String>,
    message_ts: Option<String>,
}

/// Reads an interaction request's body (`application/x-www-form-urlencoded`, its JSON in
/// `payload`): a `block_actions` click of Approve or Reject on an item, by a user. Anything
/// else is refused with why; every id is checked for its form before it is used.
pub fn click(body: &[u8]) -> Result<Click, Refused> {
    let payload = url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| {
            refused(
                "invalid_payload",
                "an interaction carries its JSON in the form field `payload`",
            )
        })?;
    let payload: Payload = serde_json::from_str(&payload).map_err(|e| {
        refused(
            "invalid_payload",
            format!("the payload is not an interaction: {e}"),
        )
    })?;
    if payload.kind != "block_actions" {
        return Err(refused(
            "unsupported_interaction",
            format!(
                "only block_actions are taken here, not `{}`",
                cut(&payload.kind, 40)
            ),
        ));
    }
    let user = payload
        .user
        .map(|u| u.id)
        .filter(|u| is_id(u, &['U', 'W']))
        .ok_or_else(|| refused("invalid_payload", "the interaction names no Slack user"))?;
    let [action] = payload.actions.as_slice() else {
        return Err(refused("unsupported_interaction", "one action at a time"));
    };
    let choice = match action.action_id.as_str() {
        APPROVE => Choice::Approve,
        REJECT => Choice::Reject,
        _ => {
            return Err(refused(
                "unsupported_interaction",
                "the action is neither approve nor reject",
            ));
        }
    };
    let item = action
        .value
        .clone()
        .filter(|v| is_item_id(v))
        .ok_or_else(|| refused("invalid_payload", "the action names no review item"))?;
    let post = payload.container.and_then(|c| {
        let channel = c.channel_id.filter(|c| is_id(c, &['C', 'G', 'D']))?;
        let ts = c.message_ts.filter(|t| is_ts(t))?;
        Some(SlackPost { channel, ts })
    });
    Ok(Click {
        user,
        choice,
        item,
        post,
    })
}

/// `rv_` and 20 hex digits.
pub fn is_item_id(id: &str) -> bool {
    id.strip_prefix("rv_")
        .is_some_and(|h| h.len() == 20 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A message `ts`: digits, a dot, digits.
pub fn is_ts(ts: &str) -> bool {
    ts.len() <= 32
        && ts.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests;
