use super::*;
use std::path::{Path, PathBuf};

use crate::network::NetworkPolicy;
use crate::verify::{Algorithm, Encoding, Scheme};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-int-{tag}-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const GOOD: &str = r#"
source:
  verify: standard-webhooks
  secret: example/signing
routes:
  - id: echo
    map: |
      { "name": name, "total": $sum(items.price) }
    deliver:
      url: http://127.0.0.1:3001/hook
      auth: { type: bearer, secret: example/token }
"#;

#[test]
fn the_documented_shape_loads_with_the_stem_as_id() {
    let dir = tempdir("good");
    let file = write(&dir, "example.yaml", GOOD);
    let i = load_file(&file).unwrap();
    assert_eq!(i.id, "example");
    assert_eq!(i.source.scheme, Scheme::StandardWebhooks);
    assert_eq!(i.source.secret.as_deref(), Some("example/signing"));
    assert!(matches!(&i.source.dedupe, Dedupe::Header(h) if h == "webhook-id"));
    assert_eq!(i.source.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(i.routes[0].id, "echo");
    assert_eq!(i.routes[0].deliver.auth.secret(), Some("example/token"));
    let all = Integrations::<Integration>::load_dir(&dir).unwrap();
    assert!(all.get("example").is_some());
}

#[test]
fn the_archives_own_prefixes_are_not_integration_ids() {
    let dir = tempdir("reserved");
    for id in ["audit", "tasks", "warm-up"] {
        let e = load_file(&write(&dir, &format!("{id}.yaml"), GOOD)).unwrap_err();
        assert_eq!(e.field, "id");
        assert!(e.message.contains("reserved"), "{e}");
    }
    assert!(load_file(&write(&dir, "auditor.yaml", GOOD)).is_ok());
}

#[test]
fn each_function_loads_its_view_of_the_same_file() {
    let dir = tempdir("views");
    write(&dir, "example.yaml", GOOD);
    let whole = Integrations::<Integration>::load_dir(&dir).unwrap();
    let inbound = Integrations::<Inbound>::load_dir(&dir).unwrap();
    let outbound = Integrations::<Outbound>::load_dir(&dir).unwrap();
    let (w, i, o) = (
        whole.get("example").unwrap(),
        inbound.get("example").unwrap(),
        outbound.get("example").unwrap(),
    );
    assert_eq!(i.source.scheme, w.source.scheme);
    assert_eq!(i.source.secret, w.source.secret);
    assert_eq!(o.routes.len(), 1);
    assert_eq!(o.routes[0].id, "echo");
    assert_eq!(o.routes[0].deliver, w.routes[0].deliver);
}

#[test]
fn a_view_refuses_unknown_keys_and_what_it_loads_but_not_what_it_skips() {
    let dir = tempdir("view-errors");
    // A mapping that does not parse is transform's to refuse; ingest and deliver skip it.
    let file = write(
        &dir,
        "m.yaml",
        &GOOD.replace("$sum(items.price) }", "$sum(items.price"),
    );
    assert_eq!(load_file(&file).unwrap_err().field, "routes[0].map");
    assert!(Inbound::from_file(&file).is_ok());
    assert!(Outbound::from_file(&file).is_ok());
    // Every view checks every key, and what it loads.
    let file = write(
        &dir,
        "k.yaml",
        &GOOD.replace("url:", "colour: red\n      url:"),
    );
    assert_eq!(
        Outbound::from_file(&file).unwrap_err().field,
        "routes[0].deliver.colour"
    );
    let file = write(&dir, "t.yaml", &format!("{GOOD}\nextra: 1\n"));
    assert_eq!(Inbound::from_file(&file).unwrap_err().field, "extra");
    let file = write(
        &dir,
        "u.yaml",
        &GOOD.replace("http://127.0.0.1:3001/hook", "not a url"),
    );
    assert_eq!(
        Outbound::from_file(&file).unwrap_err().field,
        "routes[0].deliver.url"
    );
    assert!(Inbound::from_file(&file).is_ok());
    let file = write(
        &dir,
        "v.yaml",
        &GOOD.replace("standard-webhooks", "carrier-pigeon"),
    );
    assert_eq!(
        Inbound::from_file(&file).unwrap_err().field,
        "source.verify"
    );
}

#[test]
fn map_may_name_a_file_beside_the_definition() {
    let dir = tempdir("file");
    write(&dir, "m.jsonata", "{ \"n\": name }");
    let file = write(
        &dir,
        "x.yaml",
        &GOOD.replace(
            "|\n      { \"name\": name, \"total\": $sum(items.price) }",
            "m.jsonata",
        ),
    );
    let i = load_file(&file).unwrap();
    let out = i.routes[0]
        .mapping
        .evaluate(&serde_json::json!({"name": "a"}), &[])
        .unwrap();
    assert_eq!(out, Some(serde_json::json!({"n": "a"})));
}

#[test]
fn unknown_keys_name_the_file_and_the_key() {
    let dir = tempdir("unknown");
    let file = write(
        &dir,
        "bad.yaml",
        &GOOD.replace("url:", "colour: red\n      url:"),
    );
    let e = load_file(&file).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("bad.yaml"), "{text}");
    assert!(text.contains("colour"), "{text}");
    assert_eq!(e.field, "routes[0].deliver.colour");

    let file = write(
        &dir,
        "bad2.yaml",
        &GOOD.replace("type: bearer,", "type: bearer, scope: x,"),
    );
    let text = load_file(&file).unwrap_err().to_string();
    assert!(text.contains("scope"), "{text}");

    let file = write(&dir, "bad3.yaml", &format!("{GOOD}\nextra: 1\n"));
    let text = load_file(&file).unwrap_err().to_string();
    assert!(text.contains("extra"), "{text}");
}

#[test]
fn broken_definitions_are_refused_with_the_field() {
    let dir = tempdir("broken");
    let cases = [
        (
            GOOD.replace("$sum(items.price) }", "$sum(items.price"),
            "routes[0].map",
        ),
        (
            GOOD.replace("http://127.0.0.1:3001/hook", "not a url"),
            "routes[0].deliver.url",
        ),
        (
            GOOD.replace("  secret: example/signing\n", ""),
            "source.secret",
        ),
        (
            GOOD.replace("standard-webhooks", "carrier-pigeon"),
            "source.verify",
        ),
    ];
    for (text, field) in cases {
        let file = write(&dir, "b.yaml", &text);
        let e = load_file(&file).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
}

fn with_source(dir: &Path, source: &str) -> Result<Integration, DefinitionError> {
    let routes = "routes:\n  - id: r\n    map: $\n    deliver:\n      url: https://example.com/\n";
    let file = write(dir, "s.yaml", &format!("source:\n{source}{routes}"));
    load_file(&file)
}

#[test]
fn every_scheme_and_its_options_load() {
    let dir = tempdir("schemes");
    for (verify, scheme) in [
        ("standard-webhooks", Scheme::StandardWebhooks),
        ("stripe", Scheme::Stripe),
        ("github", Scheme::Github),
        ("shopify", Scheme::Shopify),
        ("slack", Scheme::Slack),
        ("hubspot-v3", Scheme::HubspotV3),
    ] {
        let i = with_source(&dir, &format!("  verify: {verify}\n  secret: s\n")).unwrap();
        assert_eq!(i.source.scheme, scheme);
    }
    let i = with_source(
            &dir,
            "  verify: hmac\n  secret: s\n  tolerance: 2m\n  dedupe_ttl: 1d\n  max_body_bytes: 2048\n  hmac:\n    header: X-Sig\n    algorithm: sha512\n    encoding: base64\n    timestamp_header: X-Ts\n",
        )
        .unwrap();
    assert!(
        matches!(&i.source.scheme, Scheme::Hmac(h) if h.algorithm == Algorithm::Sha512 && h.encoding == Encoding::Base64)
    );
    assert_eq!(i.source.tolerance_secs, 120);
    assert_eq!(i.source.dedupe_ttl, std::time::Duration::from_secs(86_400));
    assert_eq!(i.source.max_body_bytes, 2048);
    let i = with_source(
        &dir,
        "  verify: api-key\n  header: X-Api-Key\n  secret: s\n  dedupe: header.X-Request-Id\n",
    )
    .unwrap();
    assert!(matches!(&i.source.dedupe, Dedupe::Header(h) if h == "x-request-id"));
    let i = with_source(
        &dir,
        "  verify: none\n  allow_unsigned: true\n  split: items\n  dedupe: order.id\n",
    )
    .unwrap();
    assert!(i.source.split.is_some());
    assert!(matches!(i.source.dedupe, Dedupe::Expression(_)));
    let i = with_source(&dir, "  verify: stripe\n  secret: s\n").unwrap();
    assert!(
        matches!(i.source.dedupe, Dedupe::Expression(_)),
        "Stripe's event id by default"
    );
}

#[test]
fn source_mistakes_name_the_field() {
    let dir = tempdir("source-errors");
    for (source, field) in [
        ("  verify: none\n", "source.allow_unsigned"),
        ("  verify: github\n", "source.secret"),
        (
            "  verify: github\n  secret: s\n  allow_unsigned: true\n",
            "source.allow_unsigned",
        ),
        ("  verify: hmac\n  secret: s\n", "source.hmac"),
        ("  verify: api-key\n  secret: s\n", "source.header"),
        (
            "  verify: github\n  secret: s\n  header: x\n",
            "source.header",
        ),
        (
            "  verify: github\n  secret: s\n  tolerance: soon\n",
            "source.tolerance",
        ),
        (
            "  verify: github\n  secret: s\n  split: '[}'\n",
            "source.split",
        ),
        (
            "  verify: github\n  secret: s\n  split_max: 5\n",
            "source.split_max",
        ),
        (
            "  verify: github\n  secret: s\n  split: $\n  split_max: 0\n",
            "source.split_max",
        ),
        (
            "  verify: hmac\n  secret: s\n  hmac:\n    header: x\n    algorithm: md5\n",
            "source.hmac.algorithm",
        ),
    ] {
        let e = with_source(&dir, source).unwrap_err();
        assert_eq!(e.field, field, "{source}: {e}");
    }
}

const FULL: &str = r#"
source: { verify: shopify, secret: s/signing }
enrich:
  - name: customer
    url: https://shop.example.com/admin/customers/{customer.id}.json
    auth: { type: api-key, header: X-Shopify-Access-Token, secret: s/admin }
    timeout: 2s
    on_missing: skip
routes:
  - id: to-3pl
    when: financial_status = "paid"
    map: '{ "body": { "id": id } }'
    map_request: true
    contract: { type: object, required: [id] }
    deliver:
      url: https://3pl.example.com/v1/fulfillments
      auth: { type: basic, secret: s/3pl }
"#;

#[test]
fn enrich_when_map_request_and_contracts_load() {
    let dir = tempdir("full");
    let i = load_file(&write(&dir, "shop.yaml", FULL)).unwrap();
    let step = &i.enrich[0];
    assert_eq!(step.name, "customer");
    assert_eq!(step.timeout, std::time::Duration::from_secs(2));
    assert_eq!(step.on_missing, OnMissing::Skip);
    assert_eq!(step.auth.secret(), Some("s/admin"));
    let url = step
        .url
        .render(&crate::mapping::Scope::new(
            &serde_json::json!({"customer": {"id": 42}}),
            &[],
        ))
        .unwrap();
    assert_eq!(
        url.as_str(),
        "https://shop.example.com/admin/customers/42.json"
    );
    let route = &i.routes[0];
    assert!(route.when.is_some() && route.map_request);
    let contract = route.contract.as_ref().unwrap();
    assert!(
        contract
            .violations(&serde_json::json!({"id": 1}))
            .is_empty()
    );
    assert_eq!(contract.violations(&serde_json::json!({})).len(), 1);
    assert_eq!(
        route.deliver.auth,
        Auth::Basic {
            secret: "s/3pl".into()
        }
    );

    // A contract may also be a schema file beside the definition.
    write(
        &dir,
        "schema.json",
        r#"{"type": "object", "required": ["id"]}"#,
    );
    let from_file = FULL.replace("{ type: object, required: [id] }", "schema.json");
    let i = load_file(&write(&dir, "shop2.yaml", &from_file)).unwrap();
    assert_eq!(
        i.routes[0]
            .contract
            .as_ref()
            .unwrap()
            .violations(&serde_json::json!({}))
            .len(),
        1
    );
}

#[test]
fn enrich_and_route_mistakes_name_the_field_and_the_route() {
    let dir = tempdir("full-errors");
    for (from, to, field) in [
        ("{customer.id}", "{customer.id", "enrich[0].url"),
        (
            "https://shop.example.com/",
            "https://{host}/",
            "enrich[0].url",
        ),
        ("name: customer", "name: the-customer", "enrich[0].name"),
        (
            "on_missing: skip",
            "on_missing: maybe",
            "enrich[0].on_missing",
        ),
        ("timeout: 2s", "timeout: soon", "enrich[0].timeout"),
        (
            "header: X-Shopify-Access-Token",
            "header: \"Bad Header\"",
            "enrich[0].auth",
        ),
        (
            "financial_status = \"paid\"",
            "financial_status = ",
            "routes[0].when",
        ),
        (
            "{ type: object, required: [id] }",
            "{ type: objekt }",
            "routes[0].contract",
        ),
        (
            "{ type: object, required: [id] }",
            "missing.json",
            "routes[0].contract",
        ),
        ("type: basic", "type: oauth1", "routes[0].deliver.auth.type"),
        // Longer than transform's function timeout allows.
        ("timeout: 2s", "timeout: 25s", "enrich[0].timeout"),
        // Literal addresses no stack allows: instance metadata, a private host.
        (
            "https://shop.example.com/",
            "http://169.254.169.254/",
            "enrich[0].url",
        ),
        (
            "https://3pl.example.com/v1/fulfillments",
            "https://10.0.0.7/v1/fulfillments",
            "routes[0].deliver.url",
        ),
        (
            "https://3pl.example.com/v1/fulfillments",
            "https://[::ffff:169.254.169.254]/latest",
            "routes[0].deliver.url",
        ),
        // 30 retries 12 h apart (plus jitter) outlive the queue's 14 days.
        (
            "      auth: { type: basic, secret: s/3pl }",
            "      auth: { type: basic, secret: s/3pl }\n      retry: [12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h]",
            "routes[0].deliver.retry",
        ),
        // 7 days of review between two schedules of 3.6 days (with jitter) outlive the queue;
        // either alone fits.
        (
            "      auth: { type: basic, secret: s/3pl }",
            "      auth: { type: basic, secret: s/3pl }\n      retry: [12h, 12h, 12h, 12h, 12h, 12h]\n    on_rejected: review\n    review: { expires: 7d }",
            "routes[0].review.expires",
        ),
    ] {
        let text = FULL.replace(from, to);
        assert_ne!(text, FULL, "{from}");
        let e = load_file(&write(&dir, "bad.yaml", &text)).unwrap_err();
        assert_eq!(e.field, field, "{to}: {e}");
        if field.starts_with("routes[0].") && field != "routes[0].deliver.auth.type" {
            assert!(e.message.contains("route `to-3pl`"), "{e}");
        }
    }
}

#[test]
fn a_private_destination_loads_when_the_route_opts_in() {
    let dir = tempdir("vpc");
    let text = FULL.replace(
            "      url: https://3pl.example.com/v1/fulfillments",
            "      url: http://10.0.0.7/v1/fulfillments\n      allow_private_network: true\n      allow_http: true",
        );
    let i = load_file(&write(&dir, "vpc.yaml", &text)).unwrap();
    let access = i.routes[0].deliver.access;
    assert!(access.allow_private_network && access.allow_http);
    let dir2 = tempdir("vpc-list");
    write(&dir2, "vpc.yaml", &text);
    let all: Integrations = Integrations::load_dir(&dir2).unwrap();
    assert!(all.network_errors(NetworkPolicy::DEPLOYED).is_empty());
    assert!(all.check_network(NetworkPolicy::DEPLOYED).is_ok());
    // The same route without the opt-ins: refused at load (private), and by the deployed
    // rules (plain http).
    let bare = text
        .replace("\n      allow_private_network: true", "")
        .replace("\n      allow_http: true", "");
    let e = load_file(&write(&dir, "bare.yaml", &bare)).unwrap_err();
    assert!(e.message.contains("allow_private_network"), "{e}");
}

#[test]
fn duplicate_ids_across_files_are_refused() {
    let dir = tempdir("dup");
    write(&dir, "a.yaml", &format!("id: same\n{GOOD}"));
    write(&dir, "b.yaml", &format!("id: same\n{GOOD}"));
    let e = Integrations::<Integration>::load_dir(&dir).unwrap_err();
    assert!(e.message.contains("already defined"), "{e}");
}

#[test]
fn a_success_check_is_a_preset_or_jsonata_and_retry_when_needs_it() {
    let dir = tempdir("check");
    let with = |extra: &str| {
        GOOD.replace(
            "secret: example/token }",
            &format!("secret: example/token }}\n{extra}"),
        )
    };
    let slack = load_file(&write(&dir, "a.yaml", &with("      success: slack"))).unwrap();
    let check = slack.routes[0].deliver.check.as_ref().unwrap();
    assert_eq!(check.source, "slack");
    assert!(check.retry_when.is_some(), "the preset's retry rule");
    let own = load_file(&write(&dir, "b.yaml", &with("      success: status = 201"))).unwrap();
    assert!(
        own.routes[0]
            .deliver
            .check
            .as_ref()
            .unwrap()
            .retry_when
            .is_none()
    );
    let e = load_file(&write(&dir, "c.yaml", &with("      retry_when: body.busy"))).unwrap_err();
    assert_eq!(e.field, "routes[0].deliver.retry_when", "{e}");
    assert!(e.message.contains("needs `success`"), "{e}");
    let e = load_file(&write(&dir, "d.yaml", &with("      success: 'ok ='"))).unwrap_err();
    assert!(e.field.starts_with("routes[0].deliver.success"), "{e}");
    assert!(
        load_file(&write(&dir, "e.yaml", GOOD)).unwrap().routes[0]
            .deliver
            .check
            .is_none()
    );
}

#[test]
fn review_settings_load_in_both_views_and_their_mistakes_name_the_field() {
    let dir = tempdir("review");
    let with = |extra: &str| {
        GOOD.replace(
            "secret: example/token }",
            &format!("secret: example/token }}\n{extra}"),
        )
    };
    let text = with(
        "    review_when: \"total > 1000 ? 'a large order' : false\"\n    on_rejected: review\n    review: { expires: 3d, on_expiry: deliver, deciders: [ops], alert_after: 4h }",
    );
    let file = write(&dir, "example.yaml", &text);
    let whole = load_file(&file).unwrap();
    let r = &whole.routes[0];
    assert!(r.review_when.is_some());
    assert!(r.review.on_rejected);
    assert_eq!(r.review.expires, std::time::Duration::from_secs(3 * 86400));
    assert_eq!(r.review.on_expiry, crate::review::OnExpiry::Deliver);
    assert_eq!(
        r.review.alert_after,
        std::time::Duration::from_secs(4 * 3600)
    );
    let outbound = Integrations::<Outbound>::load_dir(&dir).unwrap();
    assert_eq!(outbound.get("example").unwrap().routes[0].review, r.review);
    // Without anything that sends to review, there is nothing to wait.
    assert!(
        !load_file(&write(&dir, "example.yaml", GOOD))
            .unwrap()
            .routes[0]
            .review
            .on_rejected
    );

    for (extra, field, says) in [
        (
            "    review: { expires: 1h }",
            "review",
            "need `review_when`",
        ),
        (
            "    on_rejected: review\n    review: { expires: 8d }",
            "review.expires",
            "at most",
        ),
        (
            "    on_rejected: review\n    review: { expires: 1h, alert_after: 2h }",
            "review.alert_after",
            "before the item expires",
        ),
        (
            "    review_when: 'total >'",
            "review_when",
            "does not parse",
        ),
        ("    on_rejected: retry", "on_rejected", ""),
    ] {
        let e = load_file(&write(&dir, "example.yaml", &with(extra))).unwrap_err();
        assert!(e.field.contains(field), "{extra}: {e}");
        assert!(e.message.contains(says), "{extra}: {e}");
    }
}

/// `public_replies: true` sends what a model wrote to customers: refused while a route that
/// maps it has no `review_when` (a person sees each reply first).
#[test]
fn public_replies_are_refused_without_a_review_of_each_reply() {
    let dir = tempdir("public");
    let route = |review: &str| {
        format!(
            "settings: {{ public_replies: true }}\nsource:\n  verify: none\n  allow_unsigned: true\nroutes:\n  - id: reply\n    map: '{{\"public\": $settings.public_replies, \"body\": draft}}'\n{review}    deliver:\n      url: https://api.example.com/reply\n"
        )
    };
    let e = load_file(&write(&dir, "support.yaml", &route(""))).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("settings.public_replies") && e.contains("`reply`"),
        "{e}"
    );
    let reviewed = route("    review_when: \"'a reply to a customer'\"\n");
    assert!(load_file(&write(&dir, "support.yaml", &reviewed)).is_ok());
    let off = route("").replace("public_replies: true", "public_replies: false");
    assert!(load_file(&write(&dir, "support.yaml", &off)).is_ok());
}

/// `review.notify.slack` loads alike in the three views (ingest takes the clicks, deliver
/// posts), and its mistakes name the field.
#[test]
fn slack_approvals_load_in_every_view_and_their_mistakes_name_the_field() {
    let dir = tempdir("slack");
    let with = |notify: &str| {
        GOOD.replace(
            "secret: example/token }",
            &format!("secret: example/token }}\n    review_when: 'true'\n    review:\n{notify}"),
        )
    };
    let good = "      deciders: [slack:U0123ABC, ops]\n      notify:\n        slack: { channel: C0REVIEWS, token: s/bot, signing_secret: s/signing, api_url: 'http://127.0.0.1:9/api/' }\n";
    let file = write(&dir, "example.yaml", &with(good));
    let whole = load_file(&file).unwrap().routes[0]
        .review
        .notify
        .clone()
        .unwrap();
    assert_eq!(whole.channel, "C0REVIEWS");
    assert_eq!(whole.api_url.as_str(), "http://127.0.0.1:9/api");
    let outbound = Integrations::<Outbound>::load_dir(&dir).unwrap();
    assert_eq!(
        outbound.get("example").unwrap().routes[0].review.notify,
        Some(whole.clone())
    );
    let inbound = Integrations::<Inbound>::load_dir(&dir).unwrap();
    let reviews = &inbound.get("example").unwrap().slack_reviews;
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].slack, whole);
    let default = with(&good.replace(", api_url: 'http://127.0.0.1:9/api/'", ""));
    let notify = load_file(&write(&dir, "example.yaml", &default))
        .unwrap()
        .routes[0]
        .review
        .notify
        .clone();
    assert_eq!(notify.unwrap().api_url.as_str(), "https://slack.com/api");

    for (bad, field) in [
        (
            good.replace("C0REVIEWS", "#reviews"),
            "notify.slack.channel",
        ),
        (
            good.replace("127.0.0.1:9", "hooks.example.com"),
            "notify.slack.api_url",
        ),
        (
            good.replace("token: s/bot", "token: ' '"),
            "notify.slack.token",
        ),
        (good.replace("slack:U0123ABC, ", ""), "review.deciders"),
        (good.replace("api_url", "webhook"), "review"),
    ] {
        write(&dir, "example.yaml", &with(&bad));
        let e = Integrations::<Inbound>::load_dir(&dir).unwrap_err();
        assert!(e.field.contains(field), "{bad}: {e}");
        let e = load_file(&file).unwrap_err();
        assert!(e.field.contains(field), "{bad}: {e}");
    }
}
