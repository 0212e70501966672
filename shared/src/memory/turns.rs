//! The memory table's turns of ordered keys (`OrderStore`): who holds a key's turn and until
//! when, its last delivered version, and the changes waiting for it, as the DynamoDB adapter
//! keeps them.

use std::collections::HashMap;

use switchboard_core::ports::{OrderStore, PortError, Turn};

use super::{MemoryTable, lock};

/// An ordered key's turn (its holder and until when), its last delivered version, and the
/// changes waiting for it (their versions and until when they wait).
pub(super) type KeyTurn = (
    Option<(String, i64)>,
    Option<serde_json::Value>,
    HashMap<String, (serde_json::Value, i64)>,
);

impl OrderStore for MemoryTable {
    async fn take_turn(
        &self,
        key: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Turn, PortError> {
        let mut turns = lock(&self.turns);
        let (turn, last, waiting) = turns.entry(key.to_string()).or_default();
        match turn {
            Some((h, until)) if h != holder && *until >= now_ms => {
                Ok(Turn::Taken { until_ms: *until })
            }
            _ => {
                *turn = Some((holder.to_string(), until_ms));
                waiting.remove(holder);
                let waiting = waiting
                    .values()
                    .filter(|(_, until)| *until >= now_ms)
                    .map(|(v, _)| v.clone())
                    .collect();
                Ok(Turn::Mine {
                    last: last.clone(),
                    waiting,
                })
            }
        }
    }

    async fn wait_turn(
        &self,
        key: &str,
        holder: &str,
        version: &serde_json::Value,
        expires_ms: i64,
    ) -> Result<(), PortError> {
        let mut turns = lock(&self.turns);
        let (_, _, waiting) = turns.entry(key.to_string()).or_default();
        waiting.insert(holder.to_string(), (version.clone(), expires_ms));
        Ok(())
    }

    async fn end_turn(
        &self,
        key: &str,
        holder: &str,
        delivered: Option<&serde_json::Value>,
    ) -> Result<(), PortError> {
        let mut turns = lock(&self.turns);
        let (turn, last, _) = turns.entry(key.to_string()).or_default();
        if turn.as_ref().is_some_and(|(h, _)| h == holder) {
            *turn = None;
            if let Some(v) = delivered {
                *last = Some(v.clone());
            }
        }
        Ok(())
    }
}
