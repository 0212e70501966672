//! Least privilege, read off `infra/template.yaml`: no `*` action or resource, one role per
//! function with no SAM-managed policy, each function able to read only the secrets the
//! shipped definitions give it, keys by prefix, and the limits that keep a flood or a slow API
//! from reaching past its own function.

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::Value;
use switchboard_core::integration::{
    Integration, Integrations, MAX_ENRICH_TIMEOUT, QUEUE_RETENTION,
};

fn template() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The text inside a value, through CloudFormation's tags (`!Sub "..."`, `!Ref X`,
/// `!GetAtt X.Arn`).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Tagged(t) => text(&t.value),
        _ => None,
    }
}

/// A value or a list of them, as a list.
fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(s) => s.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
}

/// Every Allow statement of a role's inline policies.
fn allows(role: &Value) -> Vec<&Value> {
    list(&role["Properties"]["Policies"])
        .into_iter()
        .flat_map(|p| list(&p["PolicyDocument"]["Statement"]))
        .filter(|s| s["Effect"].as_str() == Some("Allow"))
        .collect()
}

fn resources(t: &Value) -> &serde_norway::Mapping {
    t["Resources"].as_mapping().unwrap()
}

/// Function name -> its role's resource name.
fn roles(t: &Value) -> BTreeMap<String, String> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, r)| {
            let name = name.as_str().unwrap().to_string();
            let role = text(&r["Properties"]["Role"])
                .unwrap_or_else(|| panic!("{name} has no Role of its own"));
            (name, role.trim_end_matches(".Arn").to_string())
        })
        .collect()
}

/// Which secret names a role may read: `prefix*` patterns, with `SecretsPrefix` at its default.
fn readable_secrets(t: &Value, role: &str) -> Vec<String> {
    let prefix = t["Parameters"]["SecretsPrefix"]["Default"]
        .as_str()
        .unwrap()
        .to_string();
    let role = &t["Resources"][role];
    allows(role)
        .into_iter()
        .filter(|s| {
            list(&s["Action"])
                .iter()
                .any(|a| a.as_str() == Some("secretsmanager:GetSecretValue"))
        })
        .flat_map(|s| list(&s["Resource"]))
        .map(|r| match r {
            // `!Ref SomeSecret`: that secret's name.
            Value::Tagged(tag) if tag.tag == "!Ref" => {
                let name = text(&tag.value).unwrap();
                text(&t["Resources"][name.as_str()]["Properties"]["Name"]).unwrap()
            }
            other => {
                let arn = text(other).unwrap();
                arn.split_once(":secret:").unwrap().1.to_string()
            }
        })
        .map(|p| p.replace("${SecretsPrefix}", &prefix))
        .collect()
}

fn can_read(patterns: &[String], secret: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => secret.starts_with(prefix),
        None => secret == p,
    })
}

#[test]
fn no_role_allows_any_action_or_resource_and_sam_adds_no_managed_policy() {
    let t = template();
    assert!(t["Globals"]["Function"]["Policies"].is_null());
    for (name, r) in resources(&t) {
        let name = name.as_str().unwrap();
        match r["Type"].as_str() {
            Some("AWS::Serverless::Function") => {
                assert!(
                    r["Properties"]["Policies"].is_null(),
                    "{name}: SAM's Policies bring its managed policies (Resource \"*\"): use the Role"
                );
            }
            Some("AWS::IAM::Role") => {
                assert!(
                    r["Properties"]["ManagedPolicyArns"].is_null(),
                    "{name}: managed policies"
                );
                let statements = allows(r);
                assert!(!statements.is_empty(), "{name}: no statement");
                for s in statements {
                    for action in list(&s["Action"]) {
                        let action = text(action).unwrap();
                        assert!(!action.contains('*'), "{name}: action {action}");
                    }
                    let resources = list(&s["Resource"]);
                    assert!(
                        !resources.is_empty(),
                        "{name}: a statement without Resource"
                    );
                    for resource in resources {
                        let resource = text(resource).unwrap();
                        assert_ne!(resource.trim(), "*", "{name}: Resource \"*\"");
                        assert!(!resource.ends_with(":*:*"), "{name}: {resource}");
                    }
                    // Table access is by key prefix.
                    if list(&s["Action"])
                        .iter()
                        .any(|a| text(a).is_some_and(|a| a.starts_with("dynamodb:")))
                    {
                        let keys =
                            &s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
                        assert!(
                            !list(keys).is_empty(),
                            "{name}: DynamoDB without LeadingKeys"
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether `text` matches an IAM resource pattern: `*` any run of characters (`/` too), `?`
/// any one.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// Whether a role's statements let it call `action` on the archive bucket's `key` (`None`:
/// the bucket itself): an Allow matches and no Deny does.
fn may_on_archive(role: &Value, action: &str, key: Option<&str>) -> bool {
    let statements: Vec<&Value> = list(&role["Properties"]["Policies"])
        .into_iter()
        .flat_map(|p| list(&p["PolicyDocument"]["Statement"]))
        .filter(|s| {
            list(&s["Action"])
                .iter()
                .any(|a| a.as_str() == Some(action))
        })
        .collect();
    let arn = match key {
        Some(key) => format!("${{ArchiveBucket.Arn}}/{key}"),
        None => "ArchiveBucket.Arn".to_string(),
    };
    let matches = |s: &&Value| {
        list(&s["Resource"]).iter().any(|r| {
            let r = text(r).unwrap();
            glob(r.as_bytes(), arn.as_bytes())
        })
    };
    let effect = |e: &str| {
        statements
            .iter()
            .filter(|s| s["Effect"].as_str() == Some(e))
            .any(matches)
    };
    effect("Allow") && !effect("Deny")
}

#[test]
fn the_internet_facing_function_writes_the_archive_and_can_neither_list_it_nor_write_audits_or_tasks()
 {
    let t = template();
    let roles = roles(&t);
    let ingest = &t["Resources"][roles["IngestFunction"].as_str()];
    let transform = &t["Resources"][roles["TransformFunction"].as_str()];
    assert!(may_on_archive(
        ingest,
        "s3:PutObject",
        Some("shop/2026/12/06/evt_1")
    ));
    assert!(may_on_archive(transform, "s3:PutObject", Some("warm-up")));
    assert!(!may_on_archive(ingest, "s3:PutObject", Some("warm-up")));
    assert!(!may_on_archive(
        ingest,
        "s3:PutObject",
        Some("audit/shop/2026/12/06/evt_1/triage.json")
    ));
    assert!(!may_on_archive(ingest, "s3:ListBucket", None));
    assert!(!may_on_archive(
        ingest,
        "s3:GetObject",
        Some("shop/2026/12/06/evt_1")
    ));
    // Nor forge a task for deliver to send.
    let task = Some("tasks/shop/2026/12/06/evt_1/r.json");
    assert!(!may_on_archive(ingest, "s3:PutObject", task));
    // The audit records' and large tasks' writer still may; deliver only reads the tasks.
    let audit = Some("audit/shop/2026/12/06/evt_1/triage.json");
    assert!(may_on_archive(transform, "s3:PutObject", audit));
    assert!(may_on_archive(transform, "s3:PutObject", task));
    let event = Some("shop/2026/12/06/evt_1");
    assert!(!may_on_archive(transform, "s3:PutObject", event));
    // The batch objects are transform's alone: ingest cannot write an archive line.
    let batch = Some("shop/2026/12/06/01KBXQ3J9Z8W4M5N6P7R8S9T0V.jsonl.gz");
    assert!(may_on_archive(transform, "s3:PutObject", batch));
    assert!(!may_on_archive(ingest, "s3:PutObject", batch));
    let deliver = &t["Resources"][roles["DeliverFunction"].as_str()];
    assert!(may_on_archive(deliver, "s3:GetObject", task));
    assert!(!may_on_archive(deliver, "s3:GetObject", event));
}

#[test]
fn each_function_reads_exactly_the_secrets_its_definitions_use() {
    let t = template();
    let roles = roles(&t);
    let readable = |function: &str| readable_secrets(&t, &roles[function]);
    let (ingest, transform, deliver, rotate) = (
        readable("IngestFunction"),
        readable("TransformFunction"),
        readable("DeliverFunction"),
        readable("RotateFunction"),
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../integrations");
    let shipped = Integrations::<Integration>::load_dir(&dir).unwrap();
    let mut checked = 0;
    for i in shipped.iter().filter(|i| i.id != "example") {
        let mut uses: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = &i.source.secret {
            uses.push(("ingest", s));
        }
        for step in &i.enrich {
            uses.extend(step.auth.secret().map(|s| ("transform", s)));
        }
        for r in &i.routes {
            uses.extend(r.deliver.auth.secret().map(|s| ("deliver", s)));
            uses.extend(
                r.deliver
                    .sign
                    .as_ref()
                    .map(|s| ("deliver", s.secret.as_str())),
            );
        }
        for (user, secret) in uses {
            for (function, patterns) in [
                ("ingest", &ingest),
                ("transform", &transform),
                ("deliver", &deliver),
            ] {
                assert_eq!(
                    can_read(patterns, secret),
                    function == user,
                    "{}: `{secret}` (used by {user}) readable by {function}: {patterns:?}",
                    i.id
                );
            }
            assert!(!can_read(&rotate, secret) || secret.ends_with("outbound/signing"));
            checked += 1;
        }
    }
    assert!(checked >= 7, "{checked} secrets checked");
    // The stack's own signing key: deliver signs with it, rotate rotates it, no one else.
    let signing = text(&t["Resources"]["OutboundSigningSecret"]["Properties"]["Name"])
        .unwrap()
        .replace("${SecretsPrefix}", "switchboard/");
    assert!(can_read(&deliver, &signing) && can_read(&rotate, &signing));
    assert!(!can_read(&ingest, &signing) && !can_read(&transform, &signing));
    // Approvals in Slack: deliver posts with the bot token, ingest takes the clicks (the
    // signing secret) and updates the message (the token); a destination's Slack token stays
    // deliver's alone.
    for review in [
        "switchboard/review/slack/bot-token",
        "switchboard/review/slack/signing",
    ] {
        assert!(
            can_read(&ingest, review) && can_read(&deliver, review),
            "{review}"
        );
        assert!(
            !can_read(&transform, review) && !can_read(&rotate, review),
            "{review}"
        );
    }
    assert!(!can_read(&ingest, "switchboard/outbound/slack/bot-token"));
}

#[test]
fn floods_slow_apis_and_long_schedules_stay_within_their_limits() {
    let t = template();
    let r = &t["Resources"];
    // No TRACE: lambda_runtime logs raw events there.
    let levels: Vec<&str> = list(&t["Parameters"]["LogLevel"]["AllowedValues"])
        .into_iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !levels.contains(&"TRACE") && levels.contains(&"INFO"),
        "{levels:?}"
    );
    // The queues keep messages as long as a definition's schedule may take.
    for queue in ["EventsQueue", "DeliveriesQueue"] {
        assert_eq!(
            r[queue]["Properties"]["MessageRetentionPeriod"].as_u64(),
            Some(QUEUE_RETENTION.as_secs()),
            "{queue}"
        );
    }
    // Transform outlasts its longest enrichment call with room to spare.
    let timeout = r["TransformFunction"]["Properties"]["Timeout"]
        .as_u64()
        .unwrap();
    assert!(timeout >= MAX_ENRICH_TIMEOUT.as_secs() + 5, "{timeout}");
    // A flood at ingest is throttled at the stage and cannot take every execution.
    let api = &r["WebhookApi"]["Properties"];
    assert!(!api["DefaultRouteSettings"]["ThrottlingRateLimit"].is_null());
    assert!(!api["DefaultRouteSettings"]["ThrottlingBurstLimit"].is_null());
    assert!(!api["AccessLogSettings"]["DestinationArn"].is_null());
    assert_eq!(
        text(&r["IngestFunction"]["Properties"]["Events"]["Webhook"]["Properties"]["ApiId"])
            .as_deref(),
        Some("WebhookApi")
    );
    for (function, event) in [
        ("TransformFunction", "Events"),
        ("DeliverFunction", "Deliveries"),
    ] {
        let scaling = &r[function]["Properties"]["Events"][event]["Properties"]["ScalingConfig"];
        assert!(!scaling["MaximumConcurrency"].is_null(), "{function}");
    }
    // Every function logs to its own group, kept for a while.
    for function in roles(&t).keys() {
        let group = text(&r[function.as_str()]["Properties"]["LoggingConfig"]["LogGroup"])
            .unwrap_or_else(|| panic!("{function}: no log group of its own"));
        assert!(
            !r[group.as_str()]["Properties"]["RetentionInDays"].is_null(),
            "{group}"
        );
    }
    // Secrets Manager may invoke rotate for this account's secret only.
    let permission = &r["RotatePermission"]["Properties"];
    assert!(!permission["SourceArn"].is_null() && !permission["SourceAccount"].is_null());
}

/// A runbook section's anchor, as GitHub makes it from a `## heading`.
fn anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_alarm_notifies_names_its_cause_and_links_a_runbook_section_that_exists() {
    let t = template();
    let runbooks =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbooks.md"))
            .unwrap();
    let sections = anchors(&runbooks);
    let mut alarmed_queues = Vec::new();
    let mut alarmed_functions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut linked = std::collections::BTreeSet::new();
    for (name, r) in resources(&t) {
        if r["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        let name = name.as_str().unwrap();
        let p = &r["Properties"];
        assert!(
            !list(&p["AlarmActions"]).is_empty(),
            "{name}: no AlarmActions"
        );
        assert!(!list(&p["OKActions"]).is_empty(), "{name}: no OKActions");
        let description = p["AlarmDescription"].as_str().unwrap_or_default();
        let anchor = description
            .split("docs/runbooks.md#")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: no runbook link in {description:?}"));
        assert!(
            sections.iter().any(|s| s == anchor),
            "{name} links docs/runbooks.md#{anchor}, which has no such section ({sections:?})"
        );
        assert!(description.len() > 40, "{name}: say what it means");
        linked.insert(anchor.to_string());
        let dimension = |key: &str| {
            list(&p["Dimensions"])
                .iter()
                .find(|d| d["Name"].as_str() == Some(key))
                .and_then(|d| text(&d["Value"]))
        };
        match p["MetricName"].as_str() {
            Some("ApproximateNumberOfMessagesVisible") => {
                // NotVisible reads about 1 on an empty queue: Visible > 0 it is.
                assert_eq!(p["Threshold"].as_u64(), Some(0), "{name}");
                assert_eq!(
                    p["ComparisonOperator"].as_str(),
                    Some("GreaterThanThreshold")
                );
                alarmed_queues.push(
                    dimension("QueueName")
                        .unwrap()
                        .trim_end_matches(".QueueName")
                        .to_string(),
                );
            }
            Some(metric @ ("Errors" | "Throttles")) => {
                let function = dimension("FunctionName").unwrap();
                alarmed_functions
                    .entry(function)
                    .or_default()
                    .push(metric.to_string());
            }
            _ => {}
        }
    }
    alarmed_queues.sort();
    assert_eq!(
        alarmed_queues,
        ["DeliveriesDeadLetterQueue", "EventsDeadLetterQueue"]
    );
    for function in roles(&t).keys() {
        assert_eq!(
            alarmed_functions.get(function).map(Vec::len),
            Some(2),
            "{function}: Errors and Throttles alarms"
        );
    }
    // Every section is some alarm's.
    let unlinked: Vec<_> = sections.iter().filter(|s| !linked.contains(*s)).collect();
    assert!(
        unlinked.is_empty(),
        "runbook sections no alarm links: {unlinked:?}"
    );
    assert!(!t["Resources"]["Dashboard"]["Properties"]["DashboardBody"].is_null());
}

/// `IngestEndpoint: function-url` opens ingest alone to the internet, and only through its URL:
/// the URL, and both permissions a function URL needs since October 2025, exist only with that
/// choice, target ingest, and the invoke permission holds only for calls through the URL.
/// `WebhookUrl` names the URL then; the API's otherwise.
#[test]
fn the_function_url_option_opens_only_ingest_and_only_through_its_url() {
    let t = template();
    let public: Vec<(&Value, &Value)> = resources(&t)
        .iter()
        .filter(|(_, r)| match r["Type"].as_str() {
            Some("AWS::Lambda::Url") => true,
            // Anyone's: the others name their service (Secrets Manager for rotate).
            Some("AWS::Lambda::Permission") => r["Properties"]["Principal"].as_str() == Some("*"),
            _ => false,
        })
        .collect();
    assert_eq!(
        public.len(),
        3,
        "the URL and its two permissions, nothing else public"
    );
    for (name, r) in &public {
        let name = name.as_str().unwrap();
        assert_eq!(r["Condition"].as_str(), Some("UseFunctionUrl"), "{name}");
        let props = &r["Properties"];
        let target = text(&props["TargetFunctionArn"]).or_else(|| text(&props["FunctionName"]));
        assert!(
            target.is_some_and(|t| t.starts_with("IngestFunction")),
            "{name} is ingest's"
        );
        match props["Action"].as_str() {
            None => assert_eq!(props["AuthType"].as_str(), Some("NONE"), "{name}"),
            Some("lambda:InvokeFunctionUrl") => {
                assert_eq!(
                    props["FunctionUrlAuthType"].as_str(),
                    Some("NONE"),
                    "{name}"
                )
            }
            Some("lambda:InvokeFunction") => {
                assert_eq!(
                    props["InvokedViaFunctionUrl"].as_bool(),
                    Some(true),
                    "{name}"
                )
            }
            Some(other) => panic!("{name} allows {other}"),
        }
    }
    let condition = format!("{:?}", t["Conditions"]["UseFunctionUrl"]);
    assert!(
        condition.contains("IngestEndpoint") && condition.contains("\"function-url\""),
        "{condition}"
    );
    let url = format!("{:?}", t["Outputs"]["WebhookUrl"]["Value"]);
    assert!(
        url.contains("UseFunctionUrl") && url.contains("IngestFunctionUrl.FunctionUrl"),
        "{url}"
    );
    assert!(
        url.contains("execute-api"),
        "the API's URL otherwise: {url}"
    );
}

/// Both SQS triggers gather full batches under load (`BatchingWindowSeconds`, a small default
/// that a lone event waits at most, and at least a second: more than ten messages need one):
/// transform a hundred events an invocation (one archive object), deliver ten.
#[test]
fn both_queue_triggers_gather_full_batches_within_a_small_window() {
    let t = template();
    let window = &t["Parameters"]["BatchingWindowSeconds"];
    let default = window["Default"].as_u64().unwrap();
    assert!((1..=5).contains(&default), "default {default} s");
    assert_eq!(window["MinValue"].as_u64(), Some(1));
    let triggers: Vec<&Value> = resources(&t)
        .values()
        .flat_map(|r| {
            r["Properties"]["Events"]
                .as_mapping()
                .map(|m| m.values().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .filter(|e| e["Type"].as_str() == Some("SQS"))
        .collect();
    assert_eq!(triggers.len(), 2, "transform's and deliver's");
    let mut sizes: Vec<u64> = triggers
        .iter()
        .map(|t| t["Properties"]["BatchSize"].as_u64().unwrap())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [10, 100], "deliver's, transform's");
    for trigger in triggers {
        let props = &trigger["Properties"];
        assert_eq!(
            text(&props["MaximumBatchingWindowInSeconds"]).as_deref(),
            Some("BatchingWindowSeconds"),
            "{props:?}"
        );
    }
}

/// The reviewers' policy reads the review index, reads and decides review items, forgets a
/// decided task's attempts and queues it: nothing else, and only by those keys.
#[test]
fn a_reviewer_may_read_and_decide_review_items_and_queue_them_and_nothing_more() {
    let t = template();
    let mut granted: Vec<(String, String, Vec<String>)> = allows(&t["Resources"]["ReviewerRole"])
        .into_iter()
        .flat_map(|s| {
            assert_eq!(s["Effect"].as_str(), Some("Allow"));
            let resource = text(&s["Resource"]).unwrap();
            let keys: Vec<String> =
                list(&s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
                    .into_iter()
                    .map(|k| k.as_str().unwrap().to_string())
                    .collect();
            list(&s["Action"])
                .into_iter()
                .map(move |a| {
                    (
                        a.as_str().unwrap().to_string(),
                        resource.clone(),
                        keys.clone(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    granted.sort();
    let expect = |a: &str, r: &str, k: &[&str]| {
        (
            a.to_string(),
            r.to_string(),
            k.iter().map(|s| s.to_string()).collect(),
        )
    };
    assert_eq!(
        granted,
        [
            expect(
                "dynamodb:DeleteItem",
                "IdempotencyTable.Arn",
                &["attempts#*"]
            ),
            expect("dynamodb:GetItem", "IdempotencyTable.Arn", &["review#*"]),
            expect("dynamodb:PutItem", "IdempotencyTable.Arn", &["review#*"]),
            expect(
                "dynamodb:Query",
                "${IdempotencyTable.Arn}/index/reviews",
                &["pending", "approved", "edited", "rejected", "expired"]
            ),
            expect("sqs:GetQueueUrl", "DeliveriesQueue.Arn", &[]),
            expect("sqs:SendMessage", "DeliveriesQueue.Arn", &[]),
        ]
    );
}
