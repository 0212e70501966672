//! `switchboard events` for people: a timeline of one event, a line per event. Text from
//! outside (headers, reasons, answers, bodies) is shown escaped (`shown`).

use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use switchboard_core::dead_letter::AttemptRecord;
use switchboard_core::ids::EventId;

use super::super::{paint, shown, shown_block, tinted_table};
use super::timeline::{RouteState, RouteView};
use super::{EventView, Found};

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `events show`: the timeline, or the view as JSON; not found is a failure.
pub fn show(
    found: &Found<Option<EventView>>,
    event: &EventId,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(found)?);
        return Ok(if found.events.is_some() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let Some(view) = &found.events else {
        eprintln!(
            "{event} is not in the archive for the span searched ({}; `--since` looks further back, `--integration` narrows it)",
            found.cost.said()
        );
        return Ok(ExitCode::FAILURE);
    };
    print!("{}", timeline(view));
    println!(
        "({}; {} table read(s))",
        found.cost.said(),
        found.table_reads
    );
    Ok(ExitCode::SUCCESS)
}

/// One event, a line per step.
pub fn timeline(v: &EventView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "event:     {} ({})", v.event_id, shown(&v.integration));
    let _ = writeln!(out, "received:  {}", at(v.received_at));
    for (name, value) in &v.headers {
        let _ = writeln!(out, "  {}: {}", shown(name), shown(value));
    }
    let copies = if v.lines > 1 {
        format!(" ({} lines: retried, replayed or posted twice)", v.lines)
    } else {
        String::new()
    };
    if let Some(d) = &v.duplicates {
        let _ = writeln!(
            out,
            "           posted again {} time(s), last at {} (answered as duplicates)",
            d.count,
            shown(&d.last_at)
        );
    }
    let _ = writeln!(out, "archive:   {}{copies}", shown(&v.archive_key));
    if let (Some(decided), Some(outcome)) = (v.decided_at, v.outcome) {
        let why = v
            .reason
            .as_deref()
            .map(|r| format!(": {}", shown(r)))
            .unwrap_or_default();
        let outcome = format!("{outcome:?}").to_lowercase();
        let _ = writeln!(out, "decided:   {} {outcome}{why}", at(decided));
    }
    for step in &v.steps {
        let why = step
            .reason
            .as_deref()
            .map(|r| format!(" ({})", shown(r)))
            .unwrap_or_default();
        let took = step
            .latency_ms
            .map(|ms| format!(" in {ms} ms"))
            .unwrap_or_default();
        let outcome = format!("{:?}", step.outcome).to_lowercase();
        let _ = writeln!(
            out,
            "enrich:    step {}: {outcome}{why}{took}",
            shown(&step.step)
        );
    }
    for m in &v.model_steps {
        let took = m
            .latency_ms
            .map(|ms| format!(" in {ms} ms"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "model:     step {} ({}): {}{took} ({})",
            shown(&m.step),
            shown(&m.model),
            shown(&m.outcome),
            shown(&m.audit_key)
        );
    }
    for r in &v.routes {
        let _ = write!(out, "{}", route(r));
    }
    if let Some(body) = &v.body {
        let pretty = serde_json::to_string_pretty(body).unwrap_or_default();
        let _ = writeln!(out, "body:\n{}", shown_block(&pretty));
    }
    out
}

fn attempts(out: &mut String, attempts: &[AttemptRecord]) {
    for a in attempts {
        let what = match (a.status, &a.error) {
            (Some(s), _) => format!("answered {s}"),
            (None, Some(e)) => shown(e).into_owned(),
            (None, None) => "no answer".into(),
        };
        let answer = a
            .response
            .as_deref()
            .map(|r| format!(": {}", shown(r)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "      {} {what} in {} ms{answer}",
            shown(&a.at),
            a.latency_ms
        );
    }
}

/// A route's lines.
fn route(r: &RouteView) -> String {
    let mut out = String::new();
    let state = r.state.status();
    let head = |what: String| {
        format!(
            "route {}: {} {what}\n",
            shown(&r.route),
            paint(state, tint(state))
        )
    };
    match &r.state {
        RouteState::Delivered { .. } => out.push_str(&head(delivered(&r.state))),
        RouteState::Waiting {
            attempts: tried,
            next_attempt_at,
            circuit_open_until,
        } => {
            let next = next_attempt_at
                .map(|t| format!("; next attempt at {}", at(t)))
                .unwrap_or_default();
            out.push_str(&head(format!("{} failed attempt(s){next}", tried.len())));
            if let Some(t) = circuit_open_until {
                let _ = writeln!(out, "    held: its circuit is open until {}", at(*t));
            }
            attempts(&mut out, tried);
        }
        RouteState::Queued { circuit_open_until } => {
            let held = circuit_open_until
                .map(|t| format!("; held: its circuit is open until {}", at(t)))
                .unwrap_or_default();
            out.push_str(&head(format!("(queued, not tried yet{held})")));
        }
        RouteState::Review {
            item,
            status,
            why,
            expires_at,
            decided_by,
        } => {
            let by = decided_by
                .as_deref()
                .map(|b| format!(" by {}", shown(b)))
                .unwrap_or_default();
            out.push_str(&head(format!(
                "{} {}{by}: {} (expires {}; `switchboard review show {}`)",
                shown(item),
                status.as_str(),
                shown(why),
                at(*expires_at),
                shown(item)
            )));
        }
        RouteState::DeadLettered {
            queue,
            reason,
            attempts: tried,
        } => {
            out.push_str(&head(format!(
                "in the {queue} DLQ: {} (`switchboard dlq show` with `--queue {queue}`)",
                shown(reason)
            )));
            attempts(&mut out, tried);
        }
        RouteState::Skipped { reason } => out.push_str(&head(shown(reason).into_owned())),
    }
    out
}

/// When, the status, the latency, the receive.
fn delivered(state: &RouteState) -> String {
    let RouteState::Delivered {
        at: when,
        status,
        latency_ms,
        receives,
    } = state
    else {
        return String::new();
    };
    let mut what = when.map(|t| format!("at {}", at(t))).unwrap_or_default();
    if let Some(s) = status {
        what.push_str(&format!(", {s}"));
    }
    if let Some(ms) = latency_ms {
        what.push_str(&format!(" in {ms} ms"));
    }
    if let Some(n) = receives {
        what.push_str(&format!(" (receive {n})"));
    }
    what
}

fn tint(state: &str) -> u8 {
    match state {
        "delivered" => 32,
        "failed" => 31,
        "skipped" => 2,
        _ => 33,
    }
}

/// `events list`: a line per event, then what the search read.
pub fn list(found: &Found<Vec<EventView>>, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(found)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = found
        .events
        .iter()
        .map(|v| {
            let routes: Vec<String> = v
                .routes
                .iter()
                .map(|r| format!("{}={}", r.route, r.state.status()))
                .collect();
            let fate = v
                .outcome
                .map(|o| format!("{o:?}").to_lowercase())
                .unwrap_or_default();
            vec![
                at(v.received_at),
                v.event_id.to_string(),
                fate,
                routes.join(" "),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no event matched");
    } else {
        print!(
            "{}",
            tinted_table(
                &["RECEIVED", "EVENT", "TRANSFORM", "ROUTES"],
                &rows,
                |_, _| None
            )
        );
    }
    eprintln!(
        "{} matched; {}; {} table read(s)",
        found.events.len(),
        found.cost.said(),
        found.table_reads
    );
    Ok(ExitCode::SUCCESS)
}
