//! Approvals in Slack through `switchboard dev`, Slack's Web API played by a receiver on
//! 127.0.0.1: each new item is posted to the channel (escaped, with its buttons); a signed
//! click by a decider approves it (delivered once, the message updated in place with who),
//! a click by someone else is refused to them alone and the item waits, a second click changes
//! nothing, a member of a deciders' group rejects one (nothing delivered), and a forged,
//! stale or malformed click is refused with its reason.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use switchboard_cli::ops::Stack;
use switchboard_cli::ops::review;
use switchboard_core::review::{ReviewItem, ReviewStatus};
use switchboard_core::secret::SecretString;
use switchboard_core::verify::{Scheme, sign};

use crate::utils::receiver::{Received, Receiver};
use crate::utils::stack::{FAST, SIGNING_SECRET, TestStack};

const WAIT: Duration = Duration::from_secs(60);
const SLACK_SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN: &str = "xoxb-test-bot-token";
const MESSAGE_TS: &str = "1700000000.000100";
/// Another Slack app's signing secret: another integration's route decides with it.
const OTHER_APP: &str = "another-apps-signing-secret";

/// `refunds`: each event waits for a refund lead in Slack (the app signing with
/// `SECRET/{app}`).
fn definition(base: &str, slack: &str, app: &str) -> String {
    format!(
        r#"
source:
  verify: standard-webhooks
  secret: SECRET/signing
routes:
  - id: refund
    map: '{{"order": n, "note": note}}'
    review_when: "'a refund: ' & note"
    review:
      expires: 1h
      deciders: [slack:U0LEAD, slack:S0LEADS]
      notify:
        slack: {{ channel: C0REVIEWS, token: SECRET/bot, signing_secret: SECRET/{app}, api_url: '{slack}/api' }}
    deliver:
      url: {base}/refund
"#
    )
}

/// Slack's Web API as the stand-in answers it: every call `ok`, the group has one member.
fn slack_api(slack: &Receiver) {
    let ok = |extra: Value| {
        let mut answer = json!({"ok": true});
        answer
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        vec![(StatusCode::OK, Some(answer))]
    };
    slack.on(
        "/api/chat.postMessage",
        ok(json!({"channel": "C0REVIEWS", "ts": MESSAGE_TS})),
    );
    slack.on("/api/chat.update", ok(json!({})));
    slack.on("/api/chat.postEphemeral", ok(json!({})));
    // Slack takes a read method's arguments as a form, never JSON: anything else is refused.
    slack.on_body(
        "/api/usergroups.users.list",
        "usergroup=S0LEADS",
        ok(json!({"users": ["U0GROUPIE"]})),
    );
    slack.on(
        "/api/usergroups.users.list",
        vec![(
            StatusCode::OK,
            Some(json!({"ok": false, "error": "invalid_arguments"})),
        )],
    );
    slack.require_bearer("/api/", &[BOT_TOKEN]);
}

/// A click as Slack posts it: the form's `payload`, signed `v0` with `secret`, `age` seconds ago.
async fn click(test: &TestStack, secret: &str, age: i64, payload: &Value) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let url = format!("http://{}/reviews/slack", test.dev.addr);
    let ts = chrono::Utc::now().timestamp() - age;
    let headers = sign(
        &Scheme::Slack,
        &SecretString::new(secret),
        "POST",
        &url,
        body.as_bytes(),
        "-",
        ts,
    )
    .unwrap();
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What clicking `action` on `item` as `user` (signed, now) came to: the answer's outcome.
async fn pressing(test: &TestStack, user: &str, action: &str, item: &ReviewItem) -> String {
    let (status, answer) = click(test, SLACK_SIGNING, 0, &pressed(user, action, &item.id)).await;
    assert_eq!(status, 200, "{answer}");
    answer["outcome"].as_str().unwrap_or_default().to_string()
}

fn pressed(user: &str, action: &str, item: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user},
        "container": {"type": "message", "channel_id": "C0REVIEWS", "message_ts": MESSAGE_TS},
        "actions": [{"action_id": action, "block_id": "review", "value": item, "type": "button"}]
    })
}

/// The items, once `n` wait with their Slack message recorded, by order number.
async fn posted(stack: &Stack, n: usize) -> Vec<ReviewItem> {
    let started = Instant::now();
    loop {
        let mut items = review::list(stack, &[ReviewStatus::Pending]).await.unwrap();
        if items.len() == n && items.iter().all(|i| i.slack.is_some()) {
            items.sort_by_key(|i| i.request.body["order"].as_i64());
            return items;
        }
        assert!(started.elapsed() < WAIT, "{} items waiting", items.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn calls(slack: &Receiver, method: &str) -> Vec<Received> {
    slack
        .received()
        .into_iter()
        .filter(|r| r.path.ends_with(method))
        .collect()
}

/// The stack with the `refunds` integration, its destination and Slack's stand-in.
async fn start() -> (TestStack, Receiver, Receiver) {
    let (destination, slack) = (Receiver::start().await, Receiver::start().await);
    slack_api(&slack);
    let secrets = [
        ("signing", SIGNING_SECRET),
        ("bot", BOT_TOKEN),
        ("slack-signing", SLACK_SIGNING),
        ("other-app", OTHER_APP),
    ];
    let (base, api) = (&destination.base, &slack.base);
    let definitions = [
        ("refunds", definition(base, api, "slack-signing")),
        ("others", definition(base, api, "other-app")),
    ];
    let test = TestStack::with(&definitions, &secrets, FAST).await;
    (test, destination, slack)
}

/// One message per item in the channel, the customer's text in it escaped.
fn each_posted_escaped(slack: &Receiver, items: &[ReviewItem]) {
    let posts = calls(slack, "chat.postMessage");
    assert_eq!(posts.len(), 2, "one message per item");
    let first = posts
        .iter()
        .find(|p| p.body.to_string().contains(&items[0].id))
        .unwrap();
    assert_eq!(first.body["channel"], "C0REVIEWS");
    let text = first.body.to_string();
    assert!(
        !text.contains("<!channel>") && !text.contains("<https://evil"),
        "{text}"
    );
    assert!(text.contains("&lt;!channel&gt;"), "{text}");
}

/// Someone who is not a decider clicks: told so, alone; the item waits; nothing is sent.
async fn a_stranger_is_told_alone(test: &TestStack, slack: &Receiver, item: &ReviewItem) {
    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    assert_eq!(
        pressing(test, "U0STRANGER", "approve", item).await,
        "not_a_decider"
    );
    let told = calls(slack, "chat.postEphemeral");
    assert_eq!(told.len(), 1);
    assert_eq!(
        (
            told[0].body["user"].as_str(),
            told[0].body["channel"].as_str()
        ),
        (Some("U0STRANGER"), Some("C0REVIEWS"))
    );
    assert_eq!(
        review::show(&stack, &item.id).await.unwrap().status,
        ReviewStatus::Pending
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decider_approves_in_slack_a_stranger_is_refused_and_a_group_member_rejects() {
    let (test, destination, slack) = start().await;
    for (n, note) in [
        (1, "<!channel> refund me <https://evil.example|now>"),
        (2, "a second one"),
    ] {
        let body = json!({"n": n, "note": note}).to_string();
        assert_eq!(test.post_signed("refunds", body.as_bytes()).await.0, 202);
    }
    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    let items = posted(&stack, 2).await;
    each_posted_escaped(&slack, &items);

    a_stranger_is_told_alone(&test, &slack, &items[0]).await;

    // The lead approves: recorded as their Slack id, delivered once, the message updated.
    assert_eq!(
        pressing(&test, "U0LEAD", "approve", &items[0]).await,
        "decided"
    );
    let delivered = destination.wait_for(1, WAIT).await;
    assert_eq!(
        delivered[0].body,
        json!({"order": 1, "note": "<!channel> refund me <https://evil.example|now>"})
    );
    let item = review::show(&stack, &items[0].id).await.unwrap();
    assert_eq!(item.status, ReviewStatus::Approved);
    assert_eq!(item.decisions.last().unwrap().by, "slack:U0LEAD");
    let updates = calls(&slack, "chat.update");
    assert_eq!(
        (
            updates[0].body["channel"].as_str(),
            updates[0].body["ts"].as_str()
        ),
        (Some("C0REVIEWS"), Some(MESSAGE_TS))
    );
    let shown = updates[0].body.to_string();
    assert!(
        shown.contains("*Approved* by <@U0LEAD>") && !shown.contains("\"actions\""),
        "{shown}"
    );

    // A second click changes nothing.
    assert_eq!(
        pressing(&test, "U0LEAD", "reject", &items[0]).await,
        "already_decided"
    );
    assert_eq!(
        review::show(&stack, &items[0].id).await.unwrap().status,
        ReviewStatus::Approved
    );

    // A member of the deciders' group rejects the second: nothing is sent.
    assert_eq!(
        pressing(&test, "U0GROUPIE", "reject", &items[1]).await,
        "decided"
    );
    let item = review::show(&stack, &items[1].id).await.unwrap();
    assert_eq!(
        (item.status, item.decisions.last().unwrap().by.as_str()),
        (ReviewStatus::Rejected, "slack:U0GROUPIE")
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        destination.received().len(),
        1,
        "delivered once, and only the approved one"
    );
    test.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_stale_or_malformed_click_is_refused_with_its_reason() {
    let (test, destination, slack) = start().await;
    let body = json!({"n": 1, "note": "a refund"}).to_string();
    assert_eq!(test.post_signed("refunds", body.as_bytes()).await.0, 202);
    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    let item = posted(&stack, 1).await.remove(0);
    let approve = pressed("U0LEAD", "approve", &item.id);
    for (secret, age, payload, status, code) in [
        (
            "not-the-signing-secret",
            0,
            approve.clone(),
            401,
            "invalid_signature",
        ),
        (
            SLACK_SIGNING,
            600,
            approve.clone(),
            401,
            "timestamp_out_of_tolerance",
        ),
        (
            SLACK_SIGNING,
            0,
            json!({"type": "view_submission", "user": {"id": "U0LEAD"}}),
            400,
            "unsupported_interaction",
        ),
        (
            SLACK_SIGNING,
            0,
            pressed("U0LEAD", "approve", "rv_00000000000000000000"),
            404,
            "unknown_item",
        ),
        // Signed by the app of another integration's route: it cannot decide this one's.
        (OTHER_APP, 0, approve.clone(), 403, "not_this_app"),
    ] {
        let (got, answer) = click(&test, secret, age, &payload).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{answer}"
        );
    }
    assert_eq!(
        review::show(&stack, &item.id).await.unwrap().status,
        ReviewStatus::Pending
    );
    assert!(destination.received().is_empty());
    let answered = ["chat.update", "chat.postEphemeral"].map(|m| calls(&slack, m).len());
    assert_eq!(answered, [0, 0], "a refused click reaches nobody in Slack");
    test.dev.shutdown().await;
}
