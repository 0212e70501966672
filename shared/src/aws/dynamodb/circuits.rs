//! The circuits in the idempotency table (`circuit#{integration}/{route}@{destination}`): the
//! [`CircuitStore`] port, and the open and slow ones as `switchboard status` lists them.

use aws_sdk_dynamodb::types::AttributeValue;
use switchboard_core::circuit::CircuitState;
use switchboard_core::ports::{CircuitStore, PortError};

use super::{
    CIRCUIT_TTL_SECS, DynamoIdempotencyStore, EXPIRATION, FAILURES, KEY, OPEN_UNTIL, OPENED_AT,
    PROBE_FAILED_AT, PROBE_UNTIL, PROBES_FAILED, SLOW_UNTIL, aws_error, conditional, key, later, n,
    number,
};

/// A circuit as the operations commands show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OpenCircuit {
    /// The route's circuit: `{integration}/{route}@{destination}` (scheme, host, port).
    pub circuit: String,
    /// Consecutive failures counted.
    pub failures: u32,
    /// Until when it stays open (ms since the epoch).
    pub open_until_ms: i64,
    /// Since when it has been open, in this outage (ms since the epoch).
    pub opened_at_ms: Option<i64>,
    /// Probes that failed in this outage.
    pub probes_failed: u32,
}

/// A route whose destination is marked slow (`share`): held to its share of deliver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SlowRoute {
    /// The route's circuit key: `{integration}/{route}@{destination}`.
    pub circuit: String,
    /// Until when the mark holds unless a slow call renews it (ms since the epoch).
    pub slow_until_ms: i64,
}
impl DynamoIdempotencyStore {
    /// Every circuit open at `now_ms`, and every route marked slow then (one Scan of the
    /// `circuit#` items: for operators, not for the functions).
    pub async fn open_circuits(
        &self,
        now_ms: i64,
    ) -> Result<(Vec<OpenCircuit>, Vec<SlowRoute>), PortError> {
        let mut open = Vec::new();
        let mut slow = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(#id, :p) AND (#open > :now OR #slow > :now)")
                .expression_attribute_names("#id", KEY)
                .expression_attribute_names("#open", OPEN_UNTIL)
                .expression_attribute_names("#slow", SLOW_UNTIL)
                .expression_attribute_values(":p", key("circuit#".to_string()))
                .expression_attribute_values(":now", n(now_ms))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| aws_error("Scan", e))?;
            for item in out.items() {
                let Some(AttributeValue::S(id)) = item.get(KEY) else {
                    continue;
                };
                let id = id.trim_start_matches("circuit#");
                if let Some(until) = number(item, SLOW_UNTIL).filter(|u: &i64| *u > now_ms) {
                    slow.push(SlowRoute {
                        circuit: id.to_string(),
                        slow_until_ms: until,
                    });
                }
                if number(item, OPEN_UNTIL).is_none_or(|u: i64| u <= now_ms) {
                    continue;
                }
                open.push(OpenCircuit {
                    circuit: id.to_string(),
                    failures: number(item, FAILURES).unwrap_or(0),
                    open_until_ms: number(item, OPEN_UNTIL).unwrap_or(0),
                    opened_at_ms: number(item, OPENED_AT),
                    probes_failed: number(item, PROBES_FAILED).unwrap_or(0),
                });
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok((open, slow))
    }
}

impl CircuitStore for DynamoIdempotencyStore {
    async fn circuit(&self, destination: &str) -> Result<CircuitState, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, key(format!("circuit#{destination}")))
            .send()
            .await
            .map_err(|e| aws_error("GetItem", e))?;
        Ok(out
            .item()
            .map(|item| CircuitState {
                failures: number(item, FAILURES).unwrap_or(0),
                open_until_ms: number(item, OPEN_UNTIL),
                probe_until_ms: number(item, PROBE_UNTIL),
                opened_at_ms: number(item, OPENED_AT),
                probes_failed: number(item, PROBES_FAILED).unwrap_or(0),
                probe_failed_at_ms: number(item, PROBE_FAILED_AT),
                slow_until_ms: number(item, SLOW_UNTIL),
            })
            .unwrap_or_default())
    }

    async fn count_failure(&self, destination: &str) -> Result<u32, PortError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("circuit#{destination}")))
            .update_expression("ADD #f :one SET #exp = :exp")
            .expression_attribute_names("#f", FAILURES)
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":exp", later(CIRCUIT_TTL_SECS))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| aws_error("UpdateItem", e))?;
        Ok(out
            .attributes()
            .and_then(|a| number(a, FAILURES))
            .unwrap_or(1))
    }

    async fn open_circuit(
        &self,
        destination: &str,
        now_ms: i64,
        until_ms: i64,
        probe_failed: bool,
    ) -> Result<bool, PortError> {
        let opening = "SET #open = :until, #exp = :exp, #oa = if_not_exists(#oa, :now)";
        let update = if probe_failed {
            format!("{opening}, #pfa = :now ADD #pf :one REMOVE #probe")
        } else {
            format!("{opening} REMOVE #probe")
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("circuit#{destination}")))
            .update_expression(update)
            .expression_attribute_names("#open", OPEN_UNTIL)
            .expression_attribute_names("#probe", PROBE_UNTIL)
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_names("#oa", OPENED_AT)
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":exp", later(CIRCUIT_TTL_SECS));
        if probe_failed {
            request = request
                .expression_attribute_names("#pfa", PROBE_FAILED_AT)
                .expression_attribute_names("#pf", PROBES_FAILED)
                .expression_attribute_values(":one", n(1));
        } else {
            request = request.condition_expression("attribute_not_exists(#open) OR #open < :now");
        }
        conditional("UpdateItem", request.send().await)
    }

    async fn take_probe(
        &self,
        destination: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("circuit#{destination}")))
            .update_expression("SET #probe = :until")
            .condition_expression(
                "#open < :now AND (attribute_not_exists(#probe) OR #probe < :now)",
            )
            .expression_attribute_names("#open", OPEN_UNTIL)
            .expression_attribute_names("#probe", PROBE_UNTIL)
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        conditional("UpdateItem", result)
    }

    async fn mark_slow(&self, destination: &str, until_ms: i64) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("circuit#{destination}")))
            .update_expression("SET #slow = :until, #exp = :exp")
            .expression_attribute_names("#slow", SLOW_UNTIL)
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":exp", later(CIRCUIT_TTL_SECS))
            .send()
            .await
            .map_err(|e| aws_error("UpdateItem", e))?;
        Ok(())
    }

    async fn close_circuit(&self, destination: &str) -> Result<bool, PortError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("circuit#{destination}")))
            .update_expression("SET #f = :zero, #exp = :exp REMOVE #open, #probe, #oa, #pf, #pfa")
            .expression_attribute_names("#f", FAILURES)
            .expression_attribute_names("#open", OPEN_UNTIL)
            .expression_attribute_names("#probe", PROBE_UNTIL)
            .expression_attribute_names("#oa", OPENED_AT)
            .expression_attribute_names("#pf", PROBES_FAILED)
            .expression_attribute_names("#pfa", PROBE_FAILED_AT)
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":exp", later(CIRCUIT_TTL_SECS))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| aws_error("UpdateItem", e))?;
        Ok(out.attributes().is_some_and(|a| a.contains_key(OPEN_UNTIL)))
    }
}
