//! Every key the loader accepts is in `docs/integrations.md`: a key that ships undocumented
//! fails this test. The keys are read from the loader itself (serde's answer to an unknown key
//! lists the ones each section takes), so a new field cannot slip past.

use serde::de::DeserializeOwned;
use serde_json::json;

use super::file::{
    CircuitFile, DeliverFile, EnrichFile, IntegrationFile, ModelFile, NotifyFile, OrderingFile,
    ReviewFile, RouteFile, SignFile, SlackFile,
};
use super::source::{HmacFile, SourceFile};
use super::{Auth, RateLimits};

/// The keys `T` accepts, from its refusal of an unknown one (with `extra` beside it: an
/// internally tagged enum's tag).
fn keys<T: DeserializeOwned + std::fmt::Debug>(extra: serde_json::Value) -> Vec<String> {
    let mut value = extra;
    value["zz_not_a_key"] = json!(1);
    let error = serde_json::from_value::<T>(value).unwrap_err().to_string();
    let Some((_, expected)) = error.split_once("expected") else {
        panic!("not an unknown-key refusal: {error}");
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_key_the_loader_accepts_is_documented() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/integrations.md"
    ))
    .unwrap();
    let sections: Vec<(&str, Vec<String>)> = vec![
        ("The file", keys::<IntegrationFile>(json!({}))),
        ("`source`", keys::<SourceFile>(json!({}))),
        ("`source.hmac`", keys::<HmacFile>(json!({}))),
        ("`enrich[]`", keys::<EnrichFile>(json!({}))),
        ("`enrich[].model`", keys::<ModelFile>(json!({}))),
        ("`routes[]`", keys::<RouteFile>(json!({}))),
        ("`routes[].review`", keys::<ReviewFile>(json!({}))),
        ("`routes[].review.notify`", keys::<NotifyFile>(json!({}))),
        (
            "`routes[].review.notify.slack`",
            keys::<SlackFile>(json!({})),
        ),
        ("`routes[].ordering`", keys::<OrderingFile>(json!({}))),
        ("`deliver`", keys::<DeliverFile>(json!({}))),
        ("`deliver.sign`", keys::<SignFile>(json!({}))),
        ("`deliver.circuit`", keys::<CircuitFile>(json!({}))),
        ("`limits`", keys::<RateLimits>(json!({}))),
        ("auth: api-key", keys::<Auth>(json!({"type": "api-key"}))),
        ("auth: bearer", keys::<Auth>(json!({"type": "bearer"}))),
    ];
    let reference = &doc[doc
        .find("## Reference: every key")
        .expect("the reference section")..];
    let tables: Vec<&str> = reference.split("\n### ").skip(1).collect();
    let table = |title: &str| -> &str {
        tables
            .iter()
            .find(|t| t.lines().next().is_some_and(|l| l.contains(title)))
            .unwrap_or_else(|| panic!("no reference table for {title}"))
    };
    let mut missing = Vec::new();
    for (section, keys) in &sections {
        assert!(
            keys.len() > 1 || section.starts_with("auth") || section.ends_with("notify`"),
            "{section}: {keys:?}"
        );
        let title = section
            .trim_start_matches("auth: ")
            .split(':')
            .next()
            .unwrap_or(section);
        let title = if section.starts_with("auth") {
            "`auth`"
        } else {
            title
        };
        let rows = table(title);
        for key in keys {
            if !rows.contains(&format!("| `{key}` |")) {
                missing.push(format!("{section}: {key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys the loader accepts but docs/integrations.md's reference does not name: {missing:?}"
    );
    // The test reads what it claims to.
    let deliver = sections.iter().find(|(s, _)| *s == "`deliver`");
    assert!(
        deliver.is_some_and(|(_, keys)| keys.contains(&"retry_when".to_string())),
        "{sections:?}"
    );
}
