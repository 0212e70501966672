//! Tests of `check.rs`.

use super::*;

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-check-{tag}-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const ORDERS: &str = r#"
source: { verify: none, allow_unsigned: true }
routes:
  - id: crm
    map: '{ "name": name, "total": $sum(items.price) }'
    contract: { type: object, required: [name] }
    deliver: { url: "https://crm.example.com/orders" }
  - id: big
    when: $sum(items.price) > 100
    map: '{ "alert": name }'
    deliver: { url: "https://chat.example.com/post" }
"#;

fn orders_dir(tag: &str, expected_crm: &str) -> PathBuf {
    let dir = tempdir(tag);
    write(&dir.join("orders.yaml"), ORDERS);
    let case = dir.join("fixtures/orders/small");
    write(
        &case.join("input.json"),
        r#"{"name": "Ada", "items": [{"price": 2}, {"price": 3}]}"#,
    );
    write(&case.join("expected/crm.json"), expected_crm);
    write(&case.join("expected/big.skip"), "");
    dir
}

#[test]
fn a_refused_address_or_plain_http_names_the_file_route_and_field() {
    let dir = tempdir("network");
    let route = |url: &str| {
        format!(
            "source:\n  verify: none\n  allow_unsigned: true\nroutes:\n  - id: out\n    map: $\n    deliver: {{ url: \"{url}\" }}\n"
        )
    };
    write(
        &dir.join("metadata.yaml"),
        &route("http://169.254.169.254/latest/meta-data"),
    );
    write(
        &dir.join("runtime.yaml"),
        &route("https://127.0.0.1:9001/2018-06-01/runtime"),
    );
    write(
        &dir.join("plain.yaml"),
        &route("http://api.example.com/hook"),
    );
    write(&dir.join("vpc.yaml"), &route("https://10.1.2.3/hook"));
    write(
        &dir.join("vpc-allowed.yaml"),
        &route("https://10.1.2.3/hook").replace(" }", ", allow_private_network: true }"),
    );
    let text = check(&dir, NetworkPolicy::DEPLOYED).render();
    for (file, says) in [
        ("metadata.yaml", "169.254.169.254 is a link-local address"),
        ("runtime.yaml", "127.0.0.1 is a loopback address"),
        ("plain.yaml", "plain http is refused"),
        ("vpc.yaml", "allow_private_network: true"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file} not reported:\n{text}"));
        assert!(line.contains("routes[0].deliver.url"), "{line}");
        assert!(line.contains(says), "{line}");
    }
    assert!(!text.contains("vpc-allowed.yaml"), "{text}");
    // The local stack allows loopback, nothing else.
    let local = check(&dir, NetworkPolicy::LOCAL).render();
    assert!(!local.contains("runtime.yaml"), "{local}");
    assert!(
        local.contains("metadata.yaml") && local.contains("plain.yaml"),
        "{local}"
    );
}

#[test]
fn the_shipped_integrations_pass_their_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../integrations");
    // example.yaml posts to the local sink: checked as `switchboard dev` runs it.
    let report = check(&dir, NetworkPolicy::LOCAL);
    assert!(report.passed(), "{}", report.render());
    assert!(report.cases.len() >= 11, "{}", report.render());
    for id in ["hubspot-contacts", "shopify-orders"] {
        assert!(report.definitions.iter().any(|d| d == id), "{id}");
    }
}

#[test]
fn a_matching_fixture_passes_and_a_changed_mapping_shows_a_diff() {
    let dir = orders_dir("match", r#"{"name": "Ada", "total": 5}"#);
    let report = check(&dir, NetworkPolicy::DEPLOYED);
    assert!(report.passed(), "{}", report.render());
    assert_eq!(
        report.cases[0].routes,
        vec![
            ("crm".to_string(), "delivered".to_string()),
            ("big".to_string(), "skipped (when_false)".to_string())
        ]
    );

    let dir = orders_dir("differs", r#"{"name": "Ada", "total": 6}"#);
    let report = check(&dir, NetworkPolicy::DEPLOYED);
    assert!(!report.passed());
    let text = report.render();
    assert!(text.contains("FAIL   orders/small"), "{text}");
    assert!(text.contains("-  \"total\": 6"), "{text}");
    assert!(text.contains("+  \"total\": 5"), "{text}");
    assert!(text.contains("1 failed"), "{text}");
}

#[test]
fn expectations_must_cover_every_route_and_name_real_ones() {
    let dir = orders_dir("cover", r#"{"name": "Ada", "total": 5}"#);
    let case = dir.join("fixtures/orders/small/expected");
    std::fs::remove_file(case.join("big.skip")).unwrap();
    write(&case.join("nope.skip"), "");
    let text = check(&dir, NetworkPolicy::DEPLOYED).render();
    assert!(text.contains("nothing for route `big`"), "{text}");
    assert!(text.contains("has no route `nope`"), "{text}");
}

#[test]
fn a_skip_or_rejection_that_does_not_happen_fails() {
    let dir = orders_dir("reject", r#"{"name": "Ada", "total": 5}"#);
    let case = dir.join("fixtures/orders/small");
    // Without a name the contract rejects the crm request; the fixture says it is delivered.
    write(&case.join("input.json"), r#"{"items": [{"price": 200}]}"#);
    let text = check(&dir, NetworkPolicy::DEPLOYED).render();
    assert!(
        text.contains("crm: a request was expected, but it was rejected: contract_violation"),
        "{text}"
    );
    assert!(
        text.contains("/: \"name\" is a required property"),
        "{text}"
    );
    assert!(text.contains("big: a skip was expected"), "{text}");
}

#[test]
fn every_broken_definition_is_listed_with_its_file_and_field() {
    let dir = tempdir("broken");
    write(
        &dir.join("a.yaml"),
        &ORDERS.replace("$sum(items.price) > 100", "$sum(items.price >"),
    );
    write(
        &dir.join("b.yaml"),
        &ORDERS.replace("{ type: object, required: [name] }", "{ type: objekt }"),
    );
    let report = check(&dir, NetworkPolicy::DEPLOYED);
    assert!(!report.passed());
    let text = report.render();
    assert!(
        text.contains("a.yaml: routes[1].when: route `big`"),
        "{text}"
    );
    assert!(
        text.contains("b.yaml: routes[0].contract: route `crm`: the schema does not compile"),
        "{text}"
    );
}

/// An ordered route's fixture may say which record and version its task carries
/// (`<route>.order.json`); a wrong one fails the case, naming both.
#[test]
fn an_order_expectation_holds_the_stamped_record_and_version() {
    let ordered = ORDERS.replace(
        "    contract: { type: object, required: [name] }\n",
        "    contract: { type: object, required: [name] }\n    ordering: { key: name, version: '$sum(items.price)' }\n",
    );
    let dir = orders_dir("order", r#"{"name": "Ada", "total": 5}"#);
    write(&dir.join("orders.yaml"), &ordered);
    let order = dir.join("fixtures/orders/small/expected/crm.order.json");
    write(&order, r#"{"key": "Ada", "version": 5}"#);
    let text = check(&dir, NetworkPolicy::LOCAL).render();
    assert!(text.contains("0 failed"), "{text}");
    write(&order, r#"{"key": "Ada", "version": 4}"#);
    let text = check(&dir, NetworkPolicy::LOCAL).render();
    assert!(text.contains("1 failed"), "{text}");
    assert!(
        text.contains(
            r#"says {"key":"Ada","version":4}, transform stamps {"key":"Ada","version":5}"#
        ),
        "{text}"
    );
}
