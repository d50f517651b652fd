//! `template.yaml` (the AWS SAM deployment) checked against the code, so that a new
//! function, route, variable or cloud call cannot be forgotten in it:
//!
//! 1. cfn-lint passes with nothing to say;
//! 2. one function per package of `functions/`, and no other;
//! 3. every deployed variable is set on every function, and the code reads no variable
//!    that is neither deployed nor local-only;
//! 4. no IAM action has a wildcard, and every destructive action is granted only under a
//!    condition on the resource's tags;
//! 5. the HTTP API's events are exactly the routes of the HTTP functions' routers, each on
//!    the function that serves it, all authenticated;
//! 6. `cargo lambda watch`'s router (Cargo.toml) sends each route to the same function;
//! 7. every other function runs on exactly one schedule, reads a queue, or reads the table's
//!    stream (publish-events), and an HTTP function on none;
//! 8. the table streams its changes, and every failure metric the code logs has an alarm.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::{json, Map, Value};
use snapnest_e2e::http_routes;
use snapnest_e2e::moto::{repo_root, tools_bin};
use snapnest_e2e::template::load_template;

/// Actions that destroy, detach or change something snapnest did not necessarily make:
/// granted only in statements with a `Condition` on the resource's tags.
const DESTRUCTIVE_ACTIONS: &[&str] = &[
    "ec2:DeleteSnapshot",
    "ec2:DetachVolume",
    "ec2:AttachVolume",
    "ec2:StopInstances",
    "ec2:StartInstances",
    "ec2:RebootInstances",
    "ec2:TerminateInstances",
    "ec2:DeleteVolume",
    "ec2:ModifyInstanceAttribute",
    "ec2:DeleteTags",
    "rds:DeleteDBSnapshot",
    "rds:DeleteDBInstance",
    "rds:ModifyDBInstance",
    "rds:StopDBInstance",
    "rds:StartDBInstance",
    "rds:RebootDBInstance",
    "rds:RemoveTagsFromResource",
];

fn template() -> Value {
    load_template(&repo_root().join("template.yaml"))
}

fn resources(template: &Value) -> &Map<String, Value> {
    template["Resources"].as_object().expect("template.yaml has Resources")
}

/// The `AWS::Serverless::Function` resources by logical id.
fn functions(template: &Value) -> BTreeMap<String, Value> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect()
}

/// The package a function is built from (`Metadata.BuildProperties.Binary`).
fn binary_of(function: &Value) -> String {
    function["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .unwrap_or_else(|| panic!("a function without Metadata.BuildProperties.Binary: {function}"))
        .to_owned()
}

/// A function property with the SAM `Globals.Function` value merged in (maps merged,
/// the function's own keys winning), as SAM does.
fn merged_property(template: &Value, function: &Value, name: &str) -> Value {
    fn merge(global: &Value, local: &Value) -> Value {
        match (global, local) {
            (Value::Object(g), Value::Object(l)) if !is_intrinsic(g) && !is_intrinsic(l) => {
                let mut merged = g.clone();
                for (key, value) in l {
                    let combined = match g.get(key) {
                        Some(existing) => merge(existing, value),
                        None => value.clone(),
                    };
                    merged.insert(key.clone(), combined);
                }
                Value::Object(merged)
            }
            (Value::Array(g), Value::Array(l)) => Value::Array(g.iter().chain(l).cloned().collect()),
            (global, Value::Null) => global.clone(),
            (_, local) => local.clone(),
        }
    }
    merge(&template["Globals"]["Function"][name], &function["Properties"][name])
}

fn is_intrinsic(map: &Map<String, Value>) -> bool {
    map.len() == 1 && map.keys().all(|k| k == "Ref" || k == "Condition" || k.starts_with("Fn::"))
}

/// The package names of `functions/*/Cargo.toml`.
fn function_packages() -> BTreeSet<String> {
    let dir = repo_root().join("functions");
    let mut packages = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("read functions/") {
        let manifest = entry.expect("a functions/ entry").path().join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).expect("read a function's Cargo.toml");
        let parsed: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let name = parsed["package"]["name"].as_str().expect("[package] name").to_owned();
        packages.insert(name);
    }
    packages
}

#[test]
fn cfn_lint_passes_without_errors_or_warnings() {
    let template = repo_root().join("template.yaml");
    let output = Command::new(tools_bin().join("cfn-lint"))
        .arg(&template)
        .current_dir(repo_root())
        .output()
        .expect("run cfn-lint from .tools/venv");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "cfn-lint {}:\n{said}", template.display());
}

#[test]
fn every_function_package_has_exactly_one_function_and_no_other() {
    let template = template();
    let packages = function_packages();
    assert!(packages.len() >= 7, "functions/ holds the seven function packages: {packages:?}");
    let mut built: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, function) in functions(&template) {
        built.entry(binary_of(&function)).or_default().push(id.clone());
        assert_eq!(function["Metadata"]["BuildMethod"], "rust-cargolambda", "{id}: built with cargo-lambda");
        assert_eq!(function["Properties"]["CodeUri"], ".", "{id}: CodeUri is the workspace root");
        assert_eq!(merged_property(&template, &function, "Runtime"), "provided.al2023", "{id}: Runtime");
        assert_eq!(merged_property(&template, &function, "Handler"), "bootstrap", "{id}: Handler");
        assert_eq!(merged_property(&template, &function, "Architectures"), json!(["arm64"]), "{id}: Architectures");
    }
    for package in &packages {
        match built.get(package).map(Vec::as_slice) {
            Some([_]) => {}
            Some(many) => panic!("package {package} is built by more than one function: {many:?}"),
            None => panic!("package functions/{package} has no AWS::Serverless::Function in template.yaml"),
        }
    }
    for (binary, ids) in &built {
        assert!(packages.contains(binary), "{ids:?} build {binary}, which is no package in functions/");
    }
}

#[test]
fn every_deployed_variable_is_set_on_every_function_and_none_is_unlisted() {
    let template = template();
    let deployed = snapnest_lambda::config::DEPLOYED_VARIABLES;
    let local = snapnest_lambda::config::LOCAL_VARIABLES;
    let functions = functions(&template);
    assert!(!functions.is_empty());
    for (id, function) in &functions {
        let environment = merged_property(&template, function, "Environment");
        let variables = environment["Variables"].as_object().cloned().unwrap_or_default();
        for name in deployed {
            let value = variables.get(*name).unwrap_or_else(|| panic!("{id} does not set {name}"));
            assert!(!value.is_null(), "{id}: {name} is null");
        }
        for name in variables.keys() {
            assert!(!name.starts_with("AWS_"), "{id} sets {name}: AWS_* variables are Lambda's own");
            assert!(!local.contains(&name.as_str()), "{id} sets {name}, a local-only variable");
        }
        // AWS_LAMBDA_LOG_FORMAT=JSON (which the runtime reads) comes from LoggingConfig, into
        // a log group of the template that has a retention.
        let logging = merged_property(&template, function, "LoggingConfig");
        assert_eq!(logging["LogFormat"], "JSON", "{id}: LoggingConfig.LogFormat");
        let group = logging["LogGroup"]["Ref"].as_str().unwrap_or_else(|| panic!("{id}: LoggingConfig.LogGroup"));
        let group = &resources(&template)[group];
        assert_eq!(group["Type"], "AWS::Logs::LogGroup", "{id}: its log group");
        assert!(!group["Properties"]["RetentionInDays"].is_null(), "{id}: its log group has a retention");
    }

    // The variables the code reads: every complete "SNAPNEST_…" string literal in the
    // crates the functions are built from. The CLI (shared/cli) is a client of the API with
    // variables of its own (SNAPNEST_ENDPOINT, SNAPNEST_TOKEN); no function reads them.
    let root = repo_root();
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(root.join("shared")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "cli") {
            rust_files(&path, &mut sources);
        }
    }
    rust_files(&root.join("functions"), &mut sources);
    let mut found = BTreeSet::new();
    for file in &sources {
        let text = std::fs::read_to_string(file).expect("read a source file");
        for name in snapnest_literals(&text) {
            found.insert((name, file.strip_prefix(&root).unwrap_or(file).display().to_string()));
        }
    }
    assert!(found.iter().any(|(name, _)| name == "SNAPNEST_TABLE"), "the scan finds the variables the code reads");
    for (name, file) in &found {
        assert!(
            deployed.contains(&name.as_str()) || local.contains(&name.as_str()),
            "{file} reads {name}, which is in neither config::DEPLOYED_VARIABLES (set it in template.yaml) \
             nor config::LOCAL_VARIABLES"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names in string literals that are exactly a variable name: `"SNAPNEST_[A-Z0-9_]+"`.
fn snapnest_literals(text: &str) -> Vec<String> {
    const PREFIX: &str = "\"SNAPNEST_";
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let after = &rest[at + 1..];
        let len =
            after.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(after.len());
        if after[len..].starts_with('"') {
            names.push(after[..len].to_owned());
        }
        rest = &after[len..];
    }
    names
}

/// Every IAM statement in the template, with where it is: SAM function `Policies`
/// (and `Globals`), and the policy documents of `AWS::IAM::*` resources, including those
/// written as a JSON string under `Fn::Sub`.
fn iam_statements(template: &Value) -> Vec<(String, Value)> {
    let mut statements = Vec::new();
    let mut documents: Vec<(String, Value)> = Vec::new();
    fn sam_policies(documents: &mut Vec<(String, Value)>, place: String, policies: &Value) {
        let list = match policies {
            Value::Null => return,
            Value::Array(list) => list.clone(),
            other => vec![other.clone()],
        };
        for (n, policy) in list.into_iter().enumerate() {
            let place = format!("{place}.Policies[{n}]");
            assert!(
                policy.get("Statement").is_some(),
                "{place}: only inline policy documents (no managed policy names or SAM policy templates, which \
                 hide their actions): {policy}"
            );
            documents.push((place, policy));
        }
    }
    sam_policies(&mut documents, "Globals.Function".into(), &template["Globals"]["Function"]["Policies"]);
    for (id, resource) in resources(template) {
        let properties = &resource["Properties"];
        match resource["Type"].as_str().unwrap_or_default() {
            "AWS::Serverless::Function" | "AWS::Serverless::StateMachine" => {
                sam_policies(&mut documents, id.clone(), &properties["Policies"])
            }
            "AWS::IAM::Role" => {
                documents
                    .push((format!("{id}.AssumeRolePolicyDocument"), properties["AssumeRolePolicyDocument"].clone()));
                for (n, policy) in properties["Policies"].as_array().into_iter().flatten().enumerate() {
                    documents.push((format!("{id}.Policies[{n}]"), policy["PolicyDocument"].clone()));
                }
            }
            "AWS::IAM::Policy"
            | "AWS::IAM::ManagedPolicy"
            | "AWS::IAM::RolePolicy"
            | "AWS::IAM::UserPolicy"
            | "AWS::IAM::GroupPolicy" => {
                documents.push((format!("{id}.PolicyDocument"), properties["PolicyDocument"].clone()));
            }
            _ => {}
        }
    }
    for (place, document) in documents {
        let document = policy_document(&place, document);
        let list = match &document["Statement"] {
            Value::Array(list) => list.clone(),
            Value::Object(_) => vec![document["Statement"].clone()],
            other => panic!("{place}: Statement is {other}"),
        };
        for (n, statement) in list.into_iter().enumerate() {
            let sid = statement["Sid"].as_str().map(|s| format!(" ({s})")).unwrap_or_default();
            statements.push((format!("{place}.Statement[{n}]{sid}"), statement));
        }
    }
    statements
}

/// A policy document as an object; a JSON string (plain or under `Fn::Sub`, its `${…}`
/// references replaced by a placeholder) is parsed.
fn policy_document(place: &str, document: Value) -> Value {
    let text = match &document {
        Value::Object(map) if map.contains_key("Statement") => return document,
        Value::String(text) => text.clone(),
        Value::Object(map) => match map.get("Fn::Sub") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts[0].as_str().unwrap_or_default().to_owned(),
            _ => panic!("{place}: a policy document the test cannot read: {document}"),
        },
        other => panic!("{place}: a policy document the test cannot read: {other}"),
    };
    let mut substituted = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("${") {
        substituted.push_str(&rest[..at]);
        let end = rest[at..].find('}').map(|e| at + e).unwrap_or_else(|| panic!("{place}: unclosed ${{"));
        let name = &rest[at + 2..end];
        substituted.push_str(&name.strip_prefix('!').map(|n| format!("${{{n}}}")).unwrap_or_else(|| "X".into()));
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    serde_json::from_str(&substituted).unwrap_or_else(|e| panic!("{place}: the policy JSON does not parse: {e}"))
}

fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => {
            items.iter().map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string())).collect()
        }
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

#[test]
fn no_wildcard_actions_and_destructive_actions_only_on_tagged_resources() {
    let template = template();
    let statements = iam_statements(&template);
    // Every function has its own policy; the scan must see them.
    for (id, function) in functions(&template) {
        assert!(
            statements.iter().any(|(place, _)| place.starts_with(&format!("{id}.Policies"))),
            "{id} has no inline policy of its own"
        );
        assert!(function["Properties"]["Role"].is_null(), "{id}: a Role from elsewhere escapes these checks");
    }
    let mut destructive_granted = BTreeSet::new();
    for (place, statement) in &statements {
        assert!(statement.get("NotAction").is_none(), "{place}: NotAction grants everything else");
        let actions = string_list(&statement["Action"]);
        assert!(!actions.is_empty(), "{place}: a statement without Action");
        for action in &actions {
            assert!(!action.contains('*') && !action.contains('?'), "{place}: wildcard action {action}");
            assert!(action.contains(':') && !action.starts_with('{'), "{place}: not a literal action: {action}");
        }
        if statement["Effect"] != "Allow" {
            continue;
        }
        // Resource "*" only for what supports no resource-level permissions: the describes,
        // and DynamoDB's ListStreams (which the stream's event source mapping needs; it lists
        // stream ARNs, no data).
        if string_list(&statement["Resource"]).iter().any(|r| r == "*") && !place.contains("AssumeRolePolicyDocument") {
            for action in &actions {
                let verb = action.split(':').nth(1).unwrap_or_default();
                assert!(
                    verb.starts_with("Describe") || action == "dynamodb:ListStreams",
                    "{place}: {action} on Resource \"*\""
                );
            }
        }
        for action in actions.iter().filter(|a| DESTRUCTIVE_ACTIONS.contains(&a.as_str())) {
            destructive_granted.insert(action.clone());
            let condition = statement["Condition"].as_object().filter(|c| !c.is_empty());
            let condition = condition.unwrap_or_else(|| panic!("{place}: {action} without a Condition"));
            let on_tags = condition.values().filter_map(Value::as_object).flat_map(|keys| keys.keys()).any(|key| {
                key.starts_with("aws:ResourceTag/") || key.starts_with("ec2:ResourceTag/") || key.contains("-tag/")
            });
            assert!(on_tags, "{place}: {action} is conditioned, but not on the resource's tags: {statement}");
        }
    }
    // The conditions above are only worth something if the grants exist at all.
    for action in ["ec2:DeleteSnapshot", "rds:DeleteDBSnapshot", "ec2:StopInstances", "rds:ModifyDBInstance"] {
        assert!(destructive_granted.contains(action), "{action} is granted nowhere: is the scan reading the policies?");
    }
}

/// Every `HttpApi` event: (method, path) → (function logical id, event properties).
fn http_events(template: &Value) -> BTreeMap<(String, String), Vec<(String, Value)>> {
    let mut events: BTreeMap<(String, String), Vec<(String, Value)>> = BTreeMap::new();
    for (id, function) in functions(template) {
        for (name, event) in function["Properties"]["Events"].as_object().into_iter().flatten() {
            if event["Type"] != "HttpApi" {
                continue;
            }
            let properties = &event["Properties"];
            let method = properties["Method"].as_str().unwrap_or_else(|| panic!("{id}.{name}: no Method"));
            let path = properties["Path"].as_str().unwrap_or_else(|| panic!("{id}.{name}: no Path"));
            events
                .entry((method.to_ascii_uppercase(), path.to_owned()))
                .or_default()
                .push((id.clone(), properties.clone()));
        }
    }
    events
}

#[test]
fn the_http_api_has_exactly_the_routes_of_the_code_and_all_are_authenticated() {
    let template = template();
    let events = http_events(&template);
    let served_by: BTreeMap<(String, String), &str> =
        http_routes().into_iter().map(|(method, path, function)| ((method, path), function)).collect();
    let routes: BTreeSet<(String, String)> = served_by.keys().cloned().collect();
    assert!(routes.len() >= 17, "the SPEC's routes: {routes:?}");
    let functions = functions(&template);

    // The API: IAM by default; the JWT authorizer only through the AuthMode condition.
    let apis: Vec<(&String, &Value)> =
        resources(&template).iter().filter(|(_, r)| r["Type"] == "AWS::Serverless::HttpApi").collect();
    assert_eq!(apis.len(), 1, "one HTTP API");
    let (api_id, api) = apis[0];
    let auth = &api["Properties"]["Auth"];
    assert_eq!(auth["DefaultAuthorizer"], "AWS_IAM", "{api_id}: IAM authorization by default");
    assert_eq!(auth["EnableIamAuthorizer"], true, "{api_id}: the IAM authorizer is enabled");
    let jwt_or_iam = json!({ "Fn::If": ["UseJwt", [{ "SnapnestJwt": [] }], [{ "AWS_IAM": [] }]] });

    let mut problems = Vec::new();
    for ((method, path), handlers) in &events {
        match served_by.get(&(method.clone(), path.clone())) {
            None => problems.push(format!("template event {method} {path} ({}) is no function's route", handlers[0].0)),
            Some(function) => {
                for (id, _) in handlers.iter().filter(|(id, _)| binary_of(&functions[id]) != *function) {
                    problems.push(format!("{method} {path} is an event of {id}, but {function} serves it"));
                }
            }
        }
        if handlers.len() > 1 {
            problems.push(format!("{method} {path} is an event of more than one function: {handlers:?}"));
        }
        for (function, properties) in handlers {
            // Without ApiId SAM puts the event on an implicit API without our authorizers.
            if properties["ApiId"] != json!({ "Ref": api_id }) {
                problems.push(format!("{function} {method} {path}: ApiId is not !Ref {api_id}"));
            }
            let authorizer = &properties["Auth"]["Authorizer"];
            if !authorizer.is_null() && authorizer != "AWS_IAM" {
                problems.push(format!(
                    "{function} {method} {path}: Auth.Authorizer {authorizer} (anonymous or not the API's)"
                ));
            }
        }
        // The route's declaration in DefinitionBody, which picks IAM or JWT.
        let declared = &api["Properties"]["DefinitionBody"]["paths"][path][method.to_ascii_lowercase()];
        if declared["security"] != jwt_or_iam {
            problems.push(format!(
                "{method} {path}: DefinitionBody security is {}, not {jwt_or_iam}",
                declared["security"]
            ));
        }
    }
    for (method, path) in &routes {
        if !events.contains_key(&(method.clone(), path.clone())) {
            problems.push(format!("{method} {path} is a route with no HttpApi event in template.yaml"));
        }
    }
    for (path, item) in api["Properties"]["DefinitionBody"]["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m.to_ascii_uppercase()) {
            if !events.contains_key(&(method.clone(), path.clone())) {
                problems.push(format!("DefinitionBody declares {method} {path}, which no function serves"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "HTTP routes of template.yaml vs the functions' routers:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_cargo_lambda_watch_router_sends_each_route_to_the_function_of_the_template() {
    let template = template();
    let events = http_events(&template);
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("read Cargo.toml");
    let manifest: toml::Table = toml::from_str(&manifest).expect("parse Cargo.toml");
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .expect("[workspace.metadata.lambda.watch.router] in Cargo.toml");
    assert!(!router.is_empty());
    let functions = functions(&template);
    let mut checked = 0;
    let mut routed = BTreeSet::new();
    for (path, target) in router {
        // `"/path" = "function"` (every method) or `"/path" = [{ method, function }, …]`.
        let entries: Vec<(Option<String>, String)> = match target {
            toml::Value::String(function) => vec![(None, function.clone())],
            toml::Value::Array(items) => items
                .iter()
                .map(|item| {
                    let method = item.get("method").and_then(|m| m.as_str()).map(str::to_ascii_uppercase);
                    let function = item.get("function").and_then(|f| f.as_str()).expect("a router entry's function");
                    (method, function.to_owned())
                })
                .collect(),
            other => panic!("router entry {path} = {other}"),
        };
        for (method, function) in entries {
            routed.insert((method.clone().unwrap_or_else(|| "*".into()), path.clone()));
            let matching: Vec<_> = events
                .iter()
                .filter(|((m, p), _)| p == path && method.as_ref().is_none_or(|want| want == m))
                .flat_map(|(_, handlers)| handlers)
                .collect();
            assert!(
                !matching.is_empty(),
                "router {} {path} has no HttpApi event in template.yaml",
                method.as_deref().unwrap_or("*")
            );
            for (id, _) in matching {
                assert_eq!(
                    binary_of(&functions[id]),
                    function,
                    "router {} {path} runs {function}, the template's event is on {id}",
                    method.as_deref().unwrap_or("*")
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
    // …and every route of the template is served under `cargo lambda watch` too.
    for (method, path) in events.keys() {
        let served = routed.contains(&(method.clone(), path.clone())) || routed.contains(&("*".into(), path.clone()));
        assert!(served, "template.yaml's {method} {path} has no entry in Cargo.toml's cargo lambda watch router");
    }
}

/// The event source mappings of the template reading the records table's stream, by the
/// logical id of the function they invoke.
fn stream_mappings(template: &Value) -> BTreeMap<String, Value> {
    resources(template)
        .values()
        .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
        .filter(|r| r["Properties"]["EventSourceArn"] == json!({"Fn::GetAtt": ["SnapnestTable", "StreamArn"]}))
        .map(|r| {
            let function = r["Properties"]["FunctionName"]["Ref"]
                .as_str()
                .unwrap_or_else(|| panic!("a mapping's FunctionName is a !Ref: {r}"));
            (function.to_owned(), r["Properties"].clone())
        })
        .collect()
}

#[test]
fn scheduled_functions_have_one_schedule_queue_readers_a_bounded_queue_and_http_functions_none() {
    let template = template();
    let (mut scheduled, mut queue_readers, mut stream_readers) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mappings = stream_mappings(&template);
    for (id, function) in functions(&template) {
        let events: Vec<&Value> =
            function["Properties"]["Events"].as_object().into_iter().flatten().map(|(_, e)| e).collect();
        if let Some(mapping) = mappings.get(&id) {
            // The table's stream: each failed change reported (the batch goes on from it),
            // a failing batch bisected, a bounded number of retries, then the failure queue
            // (and its alarm) — never a blocked stream or a silently dropped batch.
            assert!(events.is_empty(), "{id} reads the stream and has other events too");
            assert_eq!(mapping["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]), "{id}");
            assert_eq!(mapping["BisectBatchOnFunctionError"], true, "{id}");
            let retries = mapping["MaximumRetryAttempts"].as_i64().unwrap_or(-1);
            assert!((0..=10_000).contains(&retries), "{id}: MaximumRetryAttempts {retries} (-1 is for ever)");
            assert_eq!(
                mapping["DestinationConfig"]["OnFailure"]["Destination"],
                json!({"Fn::GetAtt": ["FailedInvocationsQueue", "Arn"]}),
                "{id}: failed batches go to the failure queue"
            );
            assert_eq!(mapping["StartingPosition"], "TRIM_HORIZON", "{id}: no change between deploys is skipped");
            stream_readers.insert(binary_of(&function));
            continue;
        }
        let schedules: Vec<&Value> = events.iter().copied().filter(|e| e["Type"] == "Schedule").collect();
        if events.iter().any(|e| e["Type"] == "HttpApi") {
            assert!(schedules.is_empty(), "{id} serves HTTP routes and runs on a schedule too");
            continue;
        }
        if let [queue] = events.as_slice() {
            if queue["Type"] == "SQS" {
                // A queue's reader reports each failed message, so one failure does not
                // redeliver the batch, and has a bound on how many run at once.
                let properties = &queue["Properties"];
                assert_eq!(properties["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]), "{id}");
                let most = properties["ScalingConfig"]["MaximumConcurrency"].as_u64().unwrap_or_default();
                assert!((2..=1000).contains(&most), "{id}: MaximumConcurrency {most}");
                queue_readers.insert(binary_of(&function));
                continue;
            }
        }
        assert_eq!((schedules.len(), events.len()), (1, 1), "{id}: exactly one event, its schedule");
        let rate = schedules[0]["Properties"]["Schedule"].as_str().unwrap_or_default();
        assert!(rate.starts_with("rate(") || rate.starts_with("cron("), "{id}: schedule {rate}");
        // A failed run is redone or lands on the failure queue, never lost silently.
        let on_failure = &function["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
        assert_eq!(on_failure["Type"], "SQS", "{id}: failed runs go to the queue");
        scheduled.insert(binary_of(&function));
    }
    for expected in ["poll-status", "expire-retention", "replicate", "run-policies"] {
        assert!(scheduled.contains(expected), "{expected} is not a scheduled function: {scheduled:?}");
    }
    assert_eq!(queue_readers, BTreeSet::from(["start-backup".to_owned()]));
    assert_eq!(stream_readers, BTreeSet::from(["publish-events".to_owned()]));
}

#[test]
fn the_table_streams_its_changes_to_publish_events_which_puts_events_on_the_default_bus_only() {
    let template = template();
    let table = &resources(&template)["SnapnestTable"]["Properties"];
    assert_eq!(table["StreamSpecification"]["StreamViewType"], "NEW_AND_OLD_IMAGES", "old and new images");
    let id = functions(&template)
        .into_iter()
        .find(|(_, f)| binary_of(f) == "publish-events")
        .map(|(id, _)| id)
        .expect("publish-events in template.yaml");
    let statements: Vec<(String, Value)> = iam_statements(&template)
        .into_iter()
        .filter(|(place, _)| place.starts_with(&format!("{id}.Policies")))
        .collect();
    let granting = |action: &str| -> Vec<&Value> {
        statements.iter().map(|(_, s)| s).filter(|s| string_list(&s["Action"]).iter().any(|a| a == action)).collect()
    };
    let put = granting("events:PutEvents");
    assert_eq!(put.len(), 1, "{id}: one statement grants events:PutEvents");
    assert_eq!(
        put[0]["Resource"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"}),
        "{id}: events only on the default bus"
    );
    assert_eq!(
        put[0]["Condition"]["ForAllValues:StringEquals"]["events:source"],
        json!(["snapnest"]),
        "{id}: only snapnest's source"
    );
    for action in ["dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream"] {
        let granted = granting(action);
        assert!(
            granted.iter().all(|s| s["Resource"] == json!({"Fn::GetAtt": ["SnapnestTable", "StreamArn"]})),
            "{id}: {action} on the table's stream only: {granted:?}"
        );
        assert!(!granted.is_empty(), "{id}: {action} is not granted");
    }
    // Every deployed function gets SNAPNEST_EVENT_BUS; it names the bus the role allows.
    assert_eq!(template["Globals"]["Function"]["Environment"]["Variables"]["SNAPNEST_EVENT_BUS"], "default");
}

#[test]
fn every_failure_metric_the_code_logs_has_an_alarm_on_the_topic() {
    let template = template();
    use snapnest_core::metrics::{BACKUP_FAILED, POLICY_RUN_FAILED, REPLICATION_FAILED, RESTORE_FAILED};
    for (metric, dimension) in [
        (BACKUP_FAILED, "ServiceInstance"),
        (RESTORE_FAILED, "ServiceInstance"),
        (REPLICATION_FAILED, "ServiceInstance"),
        (POLICY_RUN_FAILED, "Policy"),
    ] {
        let query = format!("SELECT SUM({metric}) FROM SCHEMA(snapnest, {dimension})");
        let alarms: Vec<(&String, &Value)> = resources(&template)
            .iter()
            .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
            .filter(|(_, r)| {
                r["Properties"]["Metrics"].as_array().into_iter().flatten().any(|m| m["Expression"] == query)
            })
            .collect();
        assert_eq!(alarms.len(), 1, "one alarm reads {query}");
        let (id, alarm) = alarms[0];
        let properties = &alarm["Properties"];
        assert_eq!(properties["AlarmActions"], json!([{"Ref": "AlarmTopic"}]), "{id} notifies the alarm topic");
        assert_eq!(properties["Threshold"], 1, "{id}: one failure is enough");
        assert_eq!(properties["ComparisonOperator"], "GreaterThanOrEqualToThreshold", "{id}");
        assert_eq!(properties["TreatMissingData"], "notBreaching", "{id}: no failure logged is no alarm");
    }
}

#[test]
fn literal_scan_reads_only_whole_variable_names() {
    let text = r#"get("SNAPNEST_STORE") "SNAPNEST_TABLE: required" x"SNAPNEST_SIM_FAULTS""#;
    assert_eq!(snapnest_literals(text), ["SNAPNEST_STORE", "SNAPNEST_SIM_FAULTS"]);
    let sub = json!({ "Fn::Sub": r#"{"Statement": [{"Action": "a:B", "Resource": "arn:${AWS::Partition}:x:${!Literal}"}]}"# });
    assert_eq!(policy_document("p", sub)["Statement"][0]["Resource"], "arn:X:x:${Literal}");
}

#[test]
fn the_api_logs_who_called_what() {
    let template = template();
    let api =
        resources(&template).values().find(|r| r["Type"] == "AWS::Serverless::HttpApi").expect("the HTTP API").clone();
    let settings = &api["Properties"]["AccessLogSettings"];
    assert!(settings["DestinationArn"].is_object(), "access logs go to a log group of the stack: {settings}");
    let format = settings["Format"].as_str().expect("a format");
    let line: Value = serde_json::from_str(format).expect("one JSON object per request");
    for field in ["caller", "jwtSubject", "routeKey", "status", "requestId"] {
        assert!(line.get(field).is_some(), "{field} is not in the access log: {format}");
    }
}
