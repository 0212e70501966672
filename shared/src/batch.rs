//! What the SQS-triggered functions (transform, deliver) share about a batch.

/// The receive count SQS reports for a message (1 when it does not say).
pub fn receive_count(attributes: &std::collections::HashMap<String, String>) -> u32 {
    attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(1)
}
