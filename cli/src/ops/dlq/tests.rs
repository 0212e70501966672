//! `dlq`'s rules on its own: what a person is shown.

use super::*;

/// A destination's answer, a reason and an event id written to attack the terminal are
/// shown as text: no escape sequence, carriage return or bidirectional override reaches it.
#[test]
fn a_letters_text_from_outside_is_shown_escaped() {
    let letter = DeadLetterRecord {
        message_id: "m".into(),
        event_id: "evt_1\u{1b}[2J".into(),
        integration: "shop".into(),
        route: Some("wms".into()),
        reason: "permanent_failure".into(),
        message: "refused\r\u{202e}gnp.exe".into(),
        last_status: Some(400),
        attempts: 1,
        failed_at: "2026-12-07T00:00:00Z".into(),
        history: Some(
            serde_json::json!([{"receive": 1, "at": "2026-12-07T00:00:00Z", "status": 400,
                "latency_ms": 3, "response": "\u{1b}]0;owned\u{7}"}])
            .to_string(),
        ),
        body: String::new(),
    };
    let out = render_show(std::slice::from_ref(&letter));
    for c in ['\u{1b}', '\r', '\u{202e}', '\u{7}'] {
        assert!(!out.contains(c), "{c:?} in {out:?}");
    }
    assert!(out.contains("refused\\u{d}\\u{202e}gnp.exe"), "{out}");
    assert!(out.contains("\\u{1b}]0;owned\\u{7}"), "{out}");
    let list = render_list(&[letter]);
    assert!(!list.contains("\u{1b}[2J"), "{list:?}");
}
