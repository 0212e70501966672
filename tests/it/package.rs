//! What a deploy uploads: the template's functions are the binaries `make package` builds, for
//! the architecture and runtime it builds them for, with the profile that keeps the panic nets
//! working; the integrations layer holds the shipped definitions and nothing local.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;
use switchboard_core::integration::{Integration, Integrations};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("infra/template.yaml")).expect("template");
    serde_norway::from_str(&text).expect("the template is YAML")
}

/// The Makefile's `FUNCTIONS = ...`: what `make package` builds.
fn packaged_functions() -> BTreeSet<String> {
    let makefile = std::fs::read_to_string(root().join("Makefile")).expect("Makefile");
    let line = makefile
        .lines()
        .find_map(|l| l.strip_prefix("FUNCTIONS = "))
        .expect("the Makefile lists FUNCTIONS");
    line.split_whitespace().map(String::from).collect()
}

/// Every binary target of the workspace, as cargo (and so cargo-lambda) sees them.
fn workspace_binaries() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(String::from))
        .collect()
}

#[test]
fn every_template_function_is_a_binary_make_package_builds_for_arm64() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    let binaries = workspace_binaries();
    let mut deployed = BTreeSet::new();
    for (name, resource) in template["Resources"].as_mapping().expect("Resources") {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap_or_default();
        let props = &resource["Properties"];
        let prop = |key: &str| {
            let own = &props[key];
            if own.is_null() {
                globals[key].clone()
            } else {
                own.clone()
            }
        };
        assert_eq!(
            resource["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}: sam build must build it with cargo-lambda"
        );
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: BuildProperties.Binary is missing"))
            .to_string();
        assert!(
            binaries.contains(&binary),
            "{name}: binary `{binary}` is not a binary of the workspace ({binaries:?})"
        );
        assert_eq!(
            prop("Handler").as_str(),
            Some("bootstrap"),
            "{name}: Handler"
        );
        assert_eq!(
            prop("Runtime").as_str(),
            Some("provided.al2023"),
            "{name}: Runtime"
        );
        let arch: Vec<String> = prop("Architectures")
            .as_sequence()
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            arch,
            ["arm64"],
            "{name}: Architectures (make package builds aarch64)"
        );
        deployed.insert(binary);
    }
    assert_eq!(
        deployed,
        packaged_functions(),
        "the template's functions and the Makefile's FUNCTIONS (what make package builds) differ"
    );
}

#[test]
fn release_binaries_unwind_on_panic() {
    // cargo-lambda builds with panic = "abort" unless the profile says otherwise.
    let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let release: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "[profile.release]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .map(str::trim)
        .collect();
    assert!(
        release.contains(&r#"panic = "unwind""#),
        "[profile.release] must say panic = \"unwind\": {release:?}"
    );
}

#[test]
fn the_integrations_layer_holds_the_shipped_definitions_and_nothing_local() {
    let template = template();
    let layer = &template["Resources"]["IntegrationsLayer"];
    assert_eq!(layer["Metadata"]["BuildMethod"].as_str(), Some("makefile"));
    let content = root().join("infra").join(
        layer["Properties"]["ContentUri"]
            .as_str()
            .expect("ContentUri"),
    );
    // What sam build does: run the recipe in (a copy of) ContentUri with ARTIFACTS_DIR set.
    let artifacts = std::env::temp_dir().join(format!("sb-layer-{}", ulid::Ulid::new()));
    let status = Command::new("make")
        .arg("--quiet")
        .arg("build-IntegrationsLayer")
        .arg(format!("ARTIFACTS_DIR={}", artifacts.display()))
        .current_dir(&content)
        .status()
        .expect("make runs");
    assert!(status.success());
    let layer = Integrations::<Integration>::load_dir(&artifacts)
        .unwrap_or_else(|e| panic!("the layer's definitions do not load: {e}"));
    let ids: Vec<&str> = layer.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "3pl-shipments",
            "hubspot-contacts",
            "shopify-orders",
            "support-tickets"
        ]
    );
    // What deploys passes the deployed network rules (https, no refused address).
    let refused = layer.network_errors(switchboard_core::network::NetworkPolicy::DEPLOYED);
    assert!(refused.is_empty(), "{refused:?}");
    assert!(!artifacts.join("example.yaml").exists());
    assert!(!artifacts.join("fixtures").exists());
    let _ = std::fs::remove_dir_all(&artifacts);
}

/// The domain crate is pure: Cargo, not a comment, keeps the AWS SDK, Lambda and the HTTP
/// client out of it (and so out of every rule's unit tests).
#[test]
fn the_core_crate_depends_on_no_aws_lambda_or_http_client_crate() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "switchboard-core",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains("jsonata-core"), "{crates:?}");
    let outside: Vec<&&str> = crates
        .iter()
        .filter(|c| {
            [
                "aws-",
                "aws_",
                "lambda",
                "reqwest",
                "hyper",
                "rustls",
                "switchboard-shared",
            ]
            .iter()
            .any(|p| c.starts_with(p))
        })
        .collect();
    assert!(
        outside.is_empty(),
        "switchboard-core depends on {outside:?}"
    );
}
