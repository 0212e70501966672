use super::*;
use crate::envelope::DeliveryV1;
use crate::ids::EventId;
use crate::review::{ReviewPolicy, Why};

fn item(deciders: &[&str], why: &str, body: Value) -> ReviewItem {
    let task = DeliveryV1 {
        event_id: EventId::derived("e1"),
        integration: "support".into(),
        route: "reply".into(),
        body,
        method: None,
        path: None,
        headers: Default::default(),
        received_at: None,
        review: Some(why.into()),
        reviewed: None,
        archived: None,
        order: None,
    };
    let policy = ReviewPolicy {
        deciders: deciders.iter().map(|d| d.to_string()).collect(),
        ..ReviewPolicy::default()
    };
    let why = Why {
        reason: "review_when".into(),
        message: why.into(),
        answer: None,
    };
    ReviewItem::new(
        &task,
        &policy,
        why,
        DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    )
}

fn form(payload: &Value) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes()
}

fn clicked(user: &str, action: &str, value: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": "ada"},
        "team": {"id": "T0001"},
        "container": {"type": "message", "channel_id": "C0REVIEWS", "message_ts": "1700000000.000100"},
        "actions": [{"action_id": action, "block_id": "review", "value": value, "type": "button"}]
    })
}

#[test]
fn a_customers_text_cannot_mention_ping_or_link_in_the_channel() {
    let hostile = "<!channel> refund me <@U0BOSS> <https://evil.example|your bank> & more";
    let i = item(
        &["slack:U0123ABC"],
        hostile,
        json!({"subject": hostile, "n": 7}),
    );
    let text = post_message(&i, "C0REVIEWS").to_string();
    for forbidden in ["<!channel>", "<@U0BOSS>", "<https://evil"] {
        assert!(
            !text.contains(forbidden),
            "{forbidden} reached the message: {text}"
        );
    }
    assert!(text.contains("&lt;!channel&gt; refund me"), "{text}");
    assert!(text.contains("&amp; more"), "{text}");
}

/// Every text object is taken as written: Slack links no bare URL and parses no `@here` in
/// it; and text that escaping makes longer still fits its block.
#[test]
fn text_is_verbatim_and_escaping_cannot_push_a_block_past_its_limit() {
    let loud = format!("@here see https://evil.example {}", "&".repeat(2000));
    let i = item(&["slack:U0123ABC"], &loud, json!({"note": loud}));
    let message = post_message(&i, "C0REVIEWS");
    assert_eq!(
        (message["parse"].as_str(), message["link_names"].as_bool()),
        (Some("none"), Some(false))
    );
    let mut texts = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(o) if o.get("type") == Some(&json!("mrkdwn")) => out.push(v),
            Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&message["blocks"], &mut texts);
    assert!(texts.len() >= 4);
    for t in texts {
        assert_eq!(t["verbatim"], true, "{t}");
        let text = t["text"].as_str().unwrap();
        assert!(
            text.chars().count() <= 2000,
            "{} characters",
            text.chars().count()
        );
        assert!(
            !text.contains("&amp…") && !text.contains("&am…"),
            "an entity cut in two"
        );
    }
}

#[test]
fn a_waiting_item_has_its_buttons_and_a_decided_one_says_who_and_when() {
    let mut i = item(
        &["slack:U0123ABC", "slack:S0456DEF"],
        "a large order",
        json!({"order": 7}),
    );
    let waiting = post_message(&i, "C0REVIEWS");
    let actions: Vec<&Value> = waiting["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .collect();
    assert_eq!(actions.len(), 1);
    let ids: Vec<(&str, &str)> = actions[0]["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["action_id"].as_str().unwrap(),
                b["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(ids, [(APPROVE, i.id.as_str()), (REJECT, i.id.as_str())]);
    let text = waiting.to_string();
    assert!(
        text.contains("<@U0123ABC>") && text.contains("<!subteam^S0456DEF>"),
        "{text}"
    );
    assert!(text.contains("*order*\\n7"), "{text}");

    i.decide(
        ReviewStatus::Approved,
        "slack:U0123ABC",
        DateTime::from_timestamp(1_800_000_060, 0).unwrap(),
        None,
    );
    let post = SlackPost {
        channel: "C0REVIEWS".into(),
        ts: "1.2".into(),
    };
    let decided = update_message(&i, &post);
    assert_eq!(
        (decided["channel"].as_str(), decided["ts"].as_str()),
        (Some("C0REVIEWS"), Some("1.2"))
    );
    let text = decided.to_string();
    assert!(
        !text.contains("\"actions\""),
        "a decided item keeps no buttons: {text}"
    );
    assert!(
        text.contains("*Approved* by <@U0123ABC> at <!date^1800000060^"),
        "{text}"
    );
}

#[test]
fn a_click_reads_the_user_the_choice_the_item_and_the_message() {
    let id = "rv_0123456789abcdef0123";
    let c = click(&form(&clicked("U0123ABC", "approve", id))).unwrap();
    assert_eq!(
        c,
        Click {
            user: "U0123ABC".into(),
            choice: Choice::Approve,
            item: id.into(),
            post: Some(SlackPost {
                channel: "C0REVIEWS".into(),
                ts: "1700000000.000100".into()
            }),
        }
    );
    assert_eq!(
        click(&form(&clicked("W0ENT", "reject", id)))
            .unwrap()
            .choice,
        Choice::Reject
    );
}

#[test]
fn anything_but_a_clean_click_is_refused_with_its_reason() {
    let id = "rv_0123456789abcdef0123";
    let code = |body: &[u8]| click(body).unwrap_err().code;
    assert_eq!(code(b"text=hello"), "invalid_payload");
    assert_eq!(code(b"payload=%7Bnot%20json"), "invalid_payload");
    let mut submission = clicked("U0123ABC", "approve", id);
    submission["type"] = "view_submission".into();
    assert_eq!(code(&form(&submission)), "unsupported_interaction");
    assert_eq!(
        code(&form(&clicked("U0123ABC", "delete", id))),
        "unsupported_interaction"
    );
    for user in ["<!channel>", "U0123ABC>", "u0123abc", ""] {
        assert_eq!(
            code(&form(&clicked(user, "approve", id))),
            "invalid_payload",
            "{user}"
        );
    }
    for value in [
        "rv_x",
        "rv_0123456789abcdef0123 ",
        "../rv_0123456789abcdef0123",
    ] {
        assert_eq!(
            code(&form(&clicked("U0123ABC", "approve", value))),
            "invalid_payload",
            "{value}"
        );
    }
    let mut two = clicked("U0123ABC", "approve", id);
    two["actions"] = json!([two["actions"][0], two["actions"][0]]);
    assert_eq!(code(&form(&two)), "unsupported_interaction");
    // A message it cannot name is no message: the item's own post is used.
    let mut odd = clicked("U0123ABC", "approve", id);
    odd["container"]["channel_id"] = "<#C1>".into();
    assert_eq!(click(&form(&odd)).unwrap().post, None);
}

#[test]
fn in_slack_only_the_named_users_and_the_members_of_named_groups_decide() {
    let i = item(
        &["slack:U0123ABC", "slack:S0456DEF", "support-lead"],
        "why",
        json!({}),
    );
    assert!(i.may_decide_in_slack("U0123ABC", &[]));
    assert!(i.may_decide_in_slack("U0OTHER", &["S0456DEF"]));
    assert!(!i.may_decide_in_slack("U0OTHER", &[]));
    assert!(!i.may_decide_in_slack("U0OTHER", &["S0ELSE"]));
    assert!(
        !i.may_decide_in_slack("support-lead", &[]),
        "an IAM name is not a Slack user"
    );
    assert_eq!(i.slack_groups(), ["S0456DEF"]);
    assert!(!item(&[], "why", json!({})).may_decide_in_slack("U0123ABC", &[]));
}
