//! Ingest's pure stages, between verification and the writes: a request's events (`split`),
//! each event's dedupe key and what the archive keeps of it, and the answer for what was
//! accepted. No port, no clock.

use http::StatusCode;
use serde_json::json;
use switchboard_core::ids::EventId;
use switchboard_core::integration::Inbound;

use super::{Accepted, Answer, Outcome};
use crate::request::{Json, Rejection, dedupe_id, dedupe_key};

/// One event of a request, before it is accepted.
pub(super) struct Pending<'a> {
    /// Its dedupe key (`ingest#{integration}#{provider id}`).
    pub(super) key: String,
    /// Its JSON.
    pub(super) json: Json<'a>,
    /// What the archive keeps as the event's JSON, when it is not the raw body parsed.
    pub(super) archived: Option<serde_json::Value>,
}

/// The request's events: the body itself, or what the integration's `split` makes of it.
pub(super) fn split_events<'a>(
    source: &switchboard_core::integration::Source,
    decoded: Json<'a>,
    value: Option<serde_json::Value>,
) -> Result<Vec<(Json<'a>, Option<serde_json::Value>)>, Rejection> {
    let events = match (&source.split, value) {
        (Some(m), Some(v)) => match m.evaluate(&v, &[]) {
            Ok(None) => Vec::new(),
            Ok(Some(serde_json::Value::Array(items))) if items.len() > source.split_max => {
                // Refused whole and at once: a sender's huge batch cannot keep ingest working
                // until API Gateway gives up.
                return Err(Rejection::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_events",
                    format!(
                        "the body splits into {} events; this integration accepts at most {} per request",
                        items.len(),
                        source.split_max
                    ),
                ));
            }
            Ok(Some(serde_json::Value::Array(items))) => items
                .into_iter()
                .map(|item| (Json::from_value(&item), Some(item)))
                .collect(),
            Ok(Some(one)) => vec![(Json::from_value(&one), Some(one))],
            Err(e) => {
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_payload",
                    format!("the integration's split expression failed on this body: {e}"),
                ));
            }
        },
        (_, value) => vec![(decoded, value)],
    };
    if events.is_empty() {
        return Err(Rejection::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_events",
            "the integration's split expression found no events in this body; nothing was accepted",
        ));
    }
    Ok(events)
}

/// Each event with its dedupe key; the archive keeps the event's JSON beside the raw bytes
/// only when it is not simply those bytes parsed (`archive_json`: a split or a form).
pub(super) fn pending<'a>(
    integration: &Inbound,
    headers: &http::HeaderMap,
    body: &[u8],
    events: Vec<(Json<'a>, Option<serde_json::Value>)>,
    archive_json: bool,
) -> Vec<Pending<'a>> {
    let split = integration.source.split.is_some();
    events
        .into_iter()
        .enumerate()
        .map(|(i, (json, value))| {
            let own_body = if split {
                json.raw().get().as_bytes().to_vec()
            } else {
                body.to_vec()
            };
            let provider_id = dedupe_id(
                &integration.source.dedupe,
                headers,
                value.as_ref(),
                &own_body,
                split.then_some(i),
            );
            Pending {
                key: dedupe_key(&integration.id, &provider_id),
                json,
                archived: if archive_json { value } else { None },
            }
        })
        .collect()
}

/// The answer for what was accepted: 202 (200 when every event was a duplicate), one event's
/// id, or with `split` every event's.
pub(super) fn answer(accepted: &[Accepted], split: bool) -> Answer {
    let event_ids: Vec<EventId> = accepted.iter().map(|a| a.event_id.clone()).collect();
    let all_duplicates = !accepted.is_empty() && accepted.iter().all(|a| a.duplicate);
    let (status, outcome) = if all_duplicates {
        (StatusCode::OK, Outcome::Duplicate)
    } else {
        (StatusCode::ACCEPTED, Outcome::Accepted)
    };
    let body = match (split, accepted) {
        (false, [one]) if one.duplicate => {
            json!({ "event_id": one.event_id, "duplicate": true })
        }
        (false, [one]) => json!({ "event_id": one.event_id }),
        _ => json!({
            "events": accepted
                .iter()
                .map(|a| json!({ "event_id": a.event_id, "duplicate": a.duplicate }))
                .collect::<Vec<_>>()
        }),
    };
    Answer {
        status,
        body,
        outcome,
        reason: "none",
        event_ids,
    }
}
