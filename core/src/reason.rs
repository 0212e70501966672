//! The vocabulary of failure: why an event or a delivery was dead-lettered. One type, written
//! by transform and deliver into the dead letters' `reason` attribute, counted in the metrics,
//! logged, and read back by `switchboard dlq` (whose `--reason` accepts exactly these).

use std::fmt;

/// Why a message was dead-lettered.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The mapped body breaks the route's contract.
    ContractViolation,
    /// The mapping raised an error, timed out or panicked.
    MappingError,
    /// The route's `when` raised an error.
    WhenError,
    /// A `map_request` result is not a valid request.
    InvalidRequest,
    /// An enrichment answered 404 and its step says `on_missing: fail`.
    EnrichNotFound,
    /// An enrichment answered another 4xx.
    EnrichFailed,
    /// An enrichment URL could not be filled.
    EnrichUrl,
    /// An enrichment answer is not JSON, or too long.
    EnrichInvalidResponse,
    /// An enrichment API refused the credential read afresh.
    EnrichUnauthorized,
    /// An enrichment API still failing on the queue's last receive.
    EnrichUnavailable,
    /// The deliveries queue still failing on the last receive.
    QueueUnavailable,
    /// The archive still failing on the last receive.
    ArchiveUnavailable,
    /// The archived body of a large event cannot be read as an event.
    ArchiveUnreadable,
    /// The message names an integration that is not deployed.
    UnknownIntegration,
    /// The message names a route that is not deployed.
    UnknownRoute,
    /// The message is not a Switchboard message.
    MalformedMessage,
    /// The destination refused it for good (a 4xx other than 408/425/429, or a 3xx).
    PermanentFailure,
    /// The destination stayed down through the retry schedule.
    RetriesExhausted,
    /// The destination's circuit stayed open as long as the retry schedule.
    CircuitOpen,
    /// The route's credential secret is malformed.
    AuthMisconfigured,
    /// The network guard refused the destination (or the token endpoint).
    NetworkRefused,
    /// SQS's redrive policy moved it after maxReceiveCount receives: no function settled it.
    RedrivePolicy,
    /// The destination answered 2xx, but its answer fails the route's `success` check (and
    /// `retry_when` does not call it worth another try).
    RejectedByDestination,
    /// The route held it for review and nobody decided before it expired (`on_expiry:
    /// dead_letter`).
    ReviewExpired,
    /// A task marked as decided by a person whose review item does not exist, was not
    /// approved or edited, or decided another request: not sent.
    ReviewMismatch,
    /// A model step's model declined to answer.
    ModelRefused,
    /// A model step's answer is not the record asked for (not JSON, cut off, against the
    /// step's schema).
    ModelInvalidAnswer,
    /// A model API is out of quota or over a spend limit: not retried.
    ModelQuota,
    /// A model API stayed rate limited, overloaded or down through the step's budget.
    ModelUnavailable,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 29] = [
        Reason::ContractViolation,
        Reason::MappingError,
        Reason::WhenError,
        Reason::InvalidRequest,
        Reason::EnrichNotFound,
        Reason::EnrichFailed,
        Reason::EnrichUrl,
        Reason::EnrichInvalidResponse,
        Reason::EnrichUnauthorized,
        Reason::EnrichUnavailable,
        Reason::QueueUnavailable,
        Reason::ArchiveUnavailable,
        Reason::ArchiveUnreadable,
        Reason::UnknownIntegration,
        Reason::UnknownRoute,
        Reason::MalformedMessage,
        Reason::PermanentFailure,
        Reason::RetriesExhausted,
        Reason::CircuitOpen,
        Reason::AuthMisconfigured,
        Reason::NetworkRefused,
        Reason::RedrivePolicy,
        Reason::RejectedByDestination,
        Reason::ReviewExpired,
        Reason::ReviewMismatch,
        Reason::ModelRefused,
        Reason::ModelInvalidAnswer,
        Reason::ModelQuota,
        Reason::ModelUnavailable,
    ];

    /// The stable code (`contract_violation`): attributes, metrics, logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ContractViolation => "contract_violation",
            Reason::MappingError => "mapping_error",
            Reason::WhenError => "when_error",
            Reason::InvalidRequest => "invalid_request",
            Reason::EnrichNotFound => "enrich_not_found",
            Reason::EnrichFailed => "enrich_failed",
            Reason::EnrichUrl => "enrich_url",
            Reason::EnrichInvalidResponse => "enrich_invalid_response",
            Reason::EnrichUnauthorized => "enrich_unauthorized",
            Reason::EnrichUnavailable => "enrich_unavailable",
            Reason::QueueUnavailable => "queue_unavailable",
            Reason::ArchiveUnavailable => "archive_unavailable",
            Reason::ArchiveUnreadable => "archive_unreadable",
            Reason::UnknownIntegration => "unknown_integration",
            Reason::UnknownRoute => "unknown_route",
            Reason::MalformedMessage => "malformed_message",
            Reason::PermanentFailure => "permanent_failure",
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::CircuitOpen => "circuit_open",
            Reason::AuthMisconfigured => "auth_misconfigured",
            Reason::NetworkRefused => "network_refused",
            Reason::RedrivePolicy => "redrive_policy",
            Reason::RejectedByDestination => "rejected_by_destination",
            Reason::ReviewExpired => "review_expired",
            Reason::ReviewMismatch => "review_mismatch",
            Reason::ModelRefused => "model_refused",
            Reason::ModelInvalidAnswer => "model_invalid_answer",
            Reason::ModelQuota => "model_quota",
            Reason::ModelUnavailable => "model_unavailable",
        }
    }
}

impl AsRef<str> for Reason {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                format!("`{s}` is not a reason; one of: {}", known.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_code_and_serde() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        let codes: std::collections::BTreeSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(codes.len(), Reason::ALL.len(), "codes are unique");
        assert!(
            "bogus"
                .parse::<Reason>()
                .unwrap_err()
                .contains("contract_violation")
        );
    }
}
