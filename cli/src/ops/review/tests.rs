//! `review`'s rules on its own: what a person is shown.

use super::*;

/// Against AWS `--by` names nobody: the decider is the caller, an assumed role its role,
/// whatever its session is called; both names are kept as a note.
#[test]
fn against_aws_the_caller_decides_and_by_and_the_session_are_notes() {
    let forged = "arn:aws:sts::123456789012:assumed-role/intern/support-lead";
    let (who, note) = caller(forged, Some("support-lead"), false).unwrap();
    assert_eq!(who.to_string(), "arn:aws:iam::123456789012:role/intern");
    assert_eq!(
        note.as_deref(),
        Some("session support-lead; for support-lead")
    );
    assert!(!who.is("support-lead", "123456789012"));
    assert!(caller("arn:aws:sts::123456789012:user/moto", None, false).is_err());
    // Only the emulator's answer is kept as a local name.
    let (local, _) = caller("arn:aws:sts::123456789012:user/moto", None, true).unwrap();
    assert_eq!(
        local.to_string(),
        "local:arn:aws:sts::123456789012:user/moto"
    );
}

/// What a destination answered, a customer's text in the request, a header and a note are
/// shown as text: nothing reaches the terminal as a control or bidirectional character.
#[test]
fn an_items_text_from_outside_is_shown_escaped() {
    use switchboard_core::envelope::DeliveryV1;
    use switchboard_core::review::{ReviewPolicy, Why};
    let mut task = DeliveryV1::of(
        switchboard_core::ids::EventId::derived("e1"),
        "3pl",
        "to-shopify",
        serde_json::json!({"note": "hi\u{1b}[31m\u{2067}"}),
    );
    task.headers.insert("x-note".into(), "a\rb".into());
    let why = Why {
        reason: "rejected_by_destination".into(),
        message: "refused\u{1b}]0;x\u{7}".into(),
        answer: Some("\u{202e}gnp.exe".into()),
    };
    let mut item = ReviewItem::new(&task, &ReviewPolicy::default(), why, chrono::Utc::now());
    item.decide(
        ReviewStatus::Rejected,
        "local:ops",
        chrono::Utc::now(),
        Some("\u{1b}[2J".into()),
    );
    let out = render_show(&item);
    for c in ['\u{1b}', '\r', '\u{202e}', '\u{2067}', '\u{7}'] {
        assert!(!out.contains(c), "{c:?} in {out:?}");
    }
    assert!(out.contains("refused\\u{1b}]0;x\\u{7}"), "{out}");
    let list = render_list(&[item], chrono::Utc::now());
    assert!(!list.contains("\u{1b}]0;x"), "{list:?}");
}

#[test]
fn only_a_loopback_endpoint_is_the_local_emulator() {
    assert!(is_loopback("http://127.0.0.1:4566"));
    assert!(is_loopback("http://localhost:4566/"));
    assert!(is_loopback("http://[::1]:4566"));
    assert!(!is_loopback("https://sqs.us-east-1.amazonaws.com"));
    assert!(!is_loopback("http://127.0.0.1.example.com"));
}
