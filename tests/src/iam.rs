//! What AWS authorises for each port call, the functions' roles as `template.yaml` deploys
//! them, and a real IAM policy evaluator (`@cloud-copilot/iam-simulate`, driven by
//! `tests/iam/evaluate.mjs`) to decide each request. Used by `tests/tests/iam_policy.rs`.
//!
//! Resource types and condition keys follow the Service Authorization Reference:
//! EC2 https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html,
//! RDS https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonrds.html,
//! DynamoDB https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html,
//! KMS https://docs.aws.amazon.com/service-authorization/latest/reference/list_awskeymanagementservice.html.
//! The evaluator checks every request against the same reference (its iam-data package):
//! an action that does not exist, or a resource ARN of a type the action is not authorised
//! on, is an error, not a denial.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde::Serialize;
use serde_json::{json, Map, Value};
use snapnest_core::cloud::Tags;

use crate::recording_cloud::{BusCall, CloudCall, QueueCall, StoreCall};

pub const ACCOUNT: &str = "123456789012";
pub const PARTITION: &str = "aws";
pub const HOME: &str = "us-east-1";
pub const STACK: &str = "snapnest";
/// The name CloudFormation gives the table (fixed for the test).
pub const TABLE: &str = "snapnest-SnapnestTable-TEST";
pub const TAG_KEY: &str = "service-instance-id";

/// The customer-managed keys the test deploys with (`KmsKeyArns`): the simulated cloud's
/// key of `si-demo`'s encrypted volumes, and the replicas' key in the destination region
/// (`alias/snapnest-replicas` there, see [`key_arn`]).
pub fn kms_key_arns() -> Vec<String> {
    vec![
        format!("arn:{PARTITION}:kms:{HOME}:{ACCOUNT}:key/si-demo"),
        format!("arn:{PARTITION}:kms:us-west-2:{ACCOUNT}:key/snapnest-replicas"),
    ]
}

/// One request IAM decides: an action on one resource, with its condition context.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct IamRequest {
    pub function: String,
    pub action: String,
    pub resource: String,
    pub context: BTreeMap<String, ContextValue>,
    /// The port method (or `negative control`) it comes from.
    #[serde(skip)]
    pub origin: String,
    /// The resource no longer existed when the call was made (a snapshot deleted behind
    /// snapnest's back): there are no tags for a condition to read.
    #[serde(skip)]
    pub gone: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum ContextValue {
    One(String),
    Many(Vec<String>),
}

impl IamRequest {
    /// Deletes, detaches, stops, modifications and tag removals: allowed only under a
    /// condition on the resource.
    pub fn is_destructive(&self) -> bool {
        let (service, name) = self.action.split_once(':').unwrap_or(("", &self.action));
        matches!(service, "ec2" | "rds")
            && ["Delete", "Deregister", "Terminate", "Detach", "Modify", "Stop", "RemoveTags"]
                .iter()
                .any(|verb| name.starts_with(verb))
    }

    /// The same request on the resource with no tags at all.
    pub fn untagged(&self) -> IamRequest {
        let mut stripped = self.clone();
        stripped.context.retain(|key, _| !key.starts_with("aws:ResourceTag/"));
        stripped
    }

    pub fn describe(&self) -> String {
        format!(
            "{} {} on {} ({}) context {}",
            self.function,
            self.action,
            self.resource,
            self.origin,
            serde_json::to_string(&self.context).unwrap_or_default()
        )
    }
}

// ---------------------------------------------------------------------------------------
// ARNs

fn ec2_arn(region: &str, kind: &str, id: &str) -> String {
    // Snapshots and images have no account in their ARN.
    let account = if matches!(kind, "snapshot" | "image") { "" } else { ACCOUNT };
    format!("arn:{PARTITION}:ec2:{region}:{account}:{kind}/{id}")
}

fn rds_arn(region: &str, kind: &str, id: &str) -> String {
    format!("arn:{PARTITION}:rds:{region}:{ACCOUNT}:{kind}:{id}")
}

pub fn table_arn() -> String {
    format!("arn:{PARTITION}:dynamodb:{HOME}:{ACCOUNT}:table/{TABLE}")
}

/// A key ARN, or an alias as the test resolves it: `alias/NAME` in a region is the key
/// `key/NAME` there.
pub fn key_arn(region: &str, key: &str) -> String {
    match key.strip_prefix("alias/") {
        Some(name) => format!("arn:{PARTITION}:kms:{region}:{ACCOUNT}:key/{name}"),
        None => key.to_owned(),
    }
}

/// EC2 ids have a fixed shape (the AWS adapter tells them from RDS names the same way).
fn ec2_kind(id: &str) -> Option<&'static str> {
    let (prefix, rest) = id.split_once('-')?;
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    match prefix {
        "i" => Some("instance"),
        "vol" => Some("volume"),
        "snap" => Some("snapshot"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Condition context

type Context = BTreeMap<String, ContextValue>;

fn one(value: impl Into<String>) -> ContextValue {
    ContextValue::One(value.into())
}

/// `aws:RequestTag/k` for each tag sent and `aws:TagKeys` listing them.
fn request_tags(tags: &Tags) -> Context {
    let mut context: Context = tags.iter().map(|(k, v)| (format!("aws:RequestTag/{k}"), one(v.clone()))).collect();
    if !tags.is_empty() {
        context.insert("aws:TagKeys".into(), ContextValue::Many(tags.keys().cloned().collect()));
    }
    context
}

/// `aws:ResourceTag/k` for each tag the resource carries.
fn resource_tags(tags: Option<&Tags>) -> Context {
    tags.into_iter().flatten().map(|(k, v)| (format!("aws:ResourceTag/{k}"), one(v.clone()))).collect()
}

fn merged(mut a: Context, b: Context) -> Context {
    a.extend(b);
    a
}

/// Builds the requests of one recorded call.
struct Requests<'a> {
    call: &'a CloudCall,
    out: Vec<IamRequest>,
}

impl<'a> Requests<'a> {
    fn arg(&self, name: &str) -> Vec<String> {
        self.call.args.get(name).cloned().unwrap_or_default()
    }

    fn first(&self, name: &str) -> String {
        self.arg(name).into_iter().next().unwrap_or_else(|| format!("new-{name}"))
    }

    fn tags_of(&self, id: &str) -> Option<&'a Tags> {
        self.call.resource_tags.get(id)
    }

    fn push(&mut self, action: &str, resource: String, context: Context) {
        self.out.push(IamRequest {
            function: self.call.function.clone(),
            action: action.into(),
            resource,
            context,
            origin: self.call.method.into(),
            gone: false,
        });
    }

    /// An action on an existing resource: its tags are in the context.
    fn on(&mut self, action: &str, resource: String, id: &str) {
        let context = resource_tags(self.tags_of(id));
        self.push(action, resource, context);
        if self.tags_of(id).is_none() {
            self.out.last_mut().expect("just pushed").gone = true;
        }
    }

    /// Describe and list calls: EC2's support no resource-level permissions, and the RDS
    /// ones snapnest makes list with filters, not one identifier.
    fn describe(&mut self, action: &str) {
        self.push(action, "*".into(), Context::new());
    }

    /// Tags on create: EC2 authorises them as `ec2:CreateTags` on the new resource with
    /// `ec2:CreateAction` (EC2 User Guide, "Grant permission to tag resources during
    /// creation", https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html).
    fn ec2_tags_on_create(&mut self, create_action: &str, resource: String) {
        if self.call.tags.is_empty() && create_action != "CreateSnapshots" {
            return;
        }
        let mut context = request_tags(&self.call.tags);
        context.insert("ec2:CreateAction".into(), one(create_action));
        self.push("ec2:CreateTags", resource, context);
    }

    /// KMS calls the service makes with the caller's permissions for a customer-managed
    /// key (EBS User Guide, "How Amazon EBS uses AWS KMS": CreateGrant, Decrypt,
    /// DescribeKey, GenerateDataKeyWithoutPlaintext, ReEncrypt; RDS User Guide, "Key
    /// management": CreateGrant, DescribeKey), each through the service
    /// (`kms:ViaService`, https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html).
    fn kms(&mut self, service: &str, key: &str, region_of_key: &str) {
        let arn = key_arn(region_of_key, key);
        let key_region = arn.split(':').nth(3).unwrap_or(region_of_key).to_owned();
        let via = format!("{service}.{key_region}.amazonaws.com");
        let actions: &[&str] = if service == "rds" {
            &["kms:CreateGrant", "kms:DescribeKey"]
        } else {
            &[
                "kms:CreateGrant",
                "kms:Decrypt",
                "kms:DescribeKey",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
            ]
        };
        for action in actions {
            let mut context: Context =
                [("kms:ViaService".into(), one(via.clone())), ("kms:CallerAccount".into(), one(ACCOUNT))].into();
            if *action == "kms:CreateGrant" {
                context.insert("kms:GrantIsForAWSResource".into(), one("true"));
            }
            self.push(action, arn.clone(), context);
        }
    }
}

/// The IAM requests of a `Cloud` port call as the AWS adapter (`shared/aws/src/cloud.rs`)
/// makes it: every API call of the method, each on every resource AWS authorises it on.
/// `None` for a method this table does not know: the test fails on it, so a new port
/// method cannot go unchecked.
pub fn cloud_requests(call: &CloudCall) -> Option<Vec<IamRequest>> {
    let region = call.region.clone();
    let mut r = Requests { call, out: Vec::new() };
    let request = request_tags(&call.tags);
    match call.method {
        // DescribeInstances with a tag filter, DescribeVolumes of the attached volumes,
        // DescribeDBInstances (read for their tags).
        "discover" => {
            r.describe("ec2:DescribeInstances");
            r.describe("ec2:DescribeVolumes");
            r.describe("rds:DescribeDBInstances");
        }
        // DescribeInstances, then CreateSnapshots: instance*, volume*, snapshot* (SAR,
        // "CreateSnapshots"), its tags as CreateTags with CreateAction; then each snapshot
        // is tagged with its source volume (CreateTags on a snapshot carrying the backup's
        // tags already).
        "snapshot_instance" => {
            r.describe("ec2:DescribeInstances");
            let instance = r.first("instance");
            let context = merged(resource_tags(r.tags_of(&instance)), request.clone());
            r.push("ec2:CreateSnapshots", ec2_arn(&region, "instance", &instance), context);
            for volume in r.arg("volume") {
                let context = merged(resource_tags(r.tags_of(&volume)), request.clone());
                r.push("ec2:CreateSnapshots", ec2_arn(&region, "volume", &volume), context);
            }
            let created = r.arg("created");
            let snapshots = if created.is_empty() { vec!["snap-0".to_owned()] } else { created };
            // Every tag on creation: no CreateTags afterwards.
            for snapshot in &snapshots {
                r.push("ec2:CreateSnapshots", ec2_arn(&region, "snapshot", snapshot), request.clone());
                r.ec2_tags_on_create("CreateSnapshots", ec2_arn(&region, "snapshot", snapshot));
            }
        }
        // CreateSnapshot: volume*, snapshot* (SAR), tags (with the source volume's) on create.
        "snapshot_volume" => {
            let volume = r.first("volume");
            let mut tags = call.tags.clone();
            tags.insert(snapnest_core::cloud::tag::SOURCE_VOLUME.into(), volume.clone());
            let request = request_tags(&tags);
            let context = merged(resource_tags(r.tags_of(&volume)), request.clone());
            r.push("ec2:CreateSnapshot", ec2_arn(&region, "volume", &volume), context);
            let snapshot = r.first("created");
            r.push("ec2:CreateSnapshot", ec2_arn(&region, "snapshot", &snapshot), request.clone());
            let mut context = request;
            context.insert("ec2:CreateAction".into(), one("CreateSnapshot"));
            r.push("ec2:CreateTags", ec2_arn(&region, "snapshot", &snapshot), context);
        }
        // CreateDBSnapshot: db*, snapshot* (SAR); tags on create are also
        // rds:AddTagsToResource on the new snapshot (RDS User Guide, "Grant permission to tag
        // Amazon RDS resources during creation").
        "snapshot_database" => {
            let db = r.first("db");
            let target = r.first("target");
            let context = merged(resource_tags(r.tags_of(&db)), request.clone());
            r.push("rds:CreateDBSnapshot", rds_arn(&region, "db", &db), context);
            r.push("rds:CreateDBSnapshot", rds_arn(&region, "snapshot", &target), request.clone());
            r.push("rds:AddTagsToResource", rds_arn(&region, "snapshot", &target), request.clone());
        }
        "describe_snapshots" | "describe_snapshots_tagged" | "find_snapshots" => r.describe("ec2:DescribeSnapshots"),
        "describe_db_snapshots" => r.describe("rds:DescribeDBSnapshots"),
        // DeleteSnapshot: snapshot* (SAR).
        "delete_snapshot" => {
            let snapshot = r.first("snapshot");
            r.on("ec2:DeleteSnapshot", ec2_arn(&region, "snapshot", &snapshot), &snapshot);
        }
        // DeleteDBSnapshot: snapshot* (SAR).
        "delete_db_snapshot" => {
            let snapshot = r.first("db_snapshot");
            r.on("rds:DeleteDBSnapshot", rds_arn(&region, "snapshot", &snapshot), &snapshot);
        }
        // EBS: CreateTags on the snapshot; RDS: DescribeDBSnapshots for its ARN, then
        // AddTagsToResource on it.
        "tag_snapshot" => {
            let snapshot = r.first("snapshot");
            let existing = resource_tags(r.tags_of(&snapshot));
            if ec2_kind(&snapshot).is_some() {
                r.push("ec2:CreateTags", ec2_arn(&region, "snapshot", &snapshot), merged(existing, request));
            } else {
                r.describe("rds:DescribeDBSnapshots");
                r.push("rds:AddTagsToResource", rds_arn(&region, "snapshot", &snapshot), merged(existing, request));
            }
        }
        // DescribeSnapshots of the source in its region, then CopySnapshot in this
        // (the destination) region, authorised on the source and the new snapshot
        // (snapshot*), tags as CreateTags with CreateAction=CopySnapshot; the source's key
        // and the destination's key through EC2.
        "copy_snapshot" => {
            let source_region = r.first("source_region");
            let source = r.first("source");
            r.describe("ec2:DescribeSnapshots");
            let mut tags = call.tags.clone();
            tags.entry(snapnest_core::cloud::tag::SOURCE_VOLUME.into()).or_insert_with(|| "vol-0".into());
            let request = request_tags(&tags);
            let context = merged(resource_tags(r.tags_of(&source)), request.clone());
            r.push("ec2:CopySnapshot", ec2_arn(&source_region, "snapshot", &source), context);
            let copy = r.first("created");
            r.push("ec2:CopySnapshot", ec2_arn(&region, "snapshot", &copy), request.clone());
            let mut context = request;
            context.insert("ec2:CreateAction".into(), one("CopySnapshot"));
            r.push("ec2:CreateTags", ec2_arn(&region, "snapshot", &copy), context);
            if let Some(source_key) = r.arg("source_key").first() {
                r.kms("ec2", source_key, &source_region);
            }
            if let Some(key) = r.arg("kms_key").first() {
                r.kms("ec2", key, &region);
            }
        }
        // DescribeDBSnapshots in the source region (the source's ARN), then CopyDBSnapshot
        // (snapshot*) with its tags (AddTagsToResource on the copy) and the destination key
        // through RDS.
        "copy_db_snapshot" => {
            let source_region = r.first("source_region");
            let source = r.first("source");
            let target = r.first("target");
            r.describe("rds:DescribeDBSnapshots");
            let context = merged(resource_tags(r.tags_of(&source)), request.clone());
            r.push("rds:CopyDBSnapshot", rds_arn(&source_region, "snapshot", &source), context);
            r.push("rds:CopyDBSnapshot", rds_arn(&region, "snapshot", &target), request.clone());
            // The option group named for the copy is not a resource of CopyDBSnapshot (SAR:
            // snapshot only; rds:CopyOptionGroup is a condition key).
            r.push("rds:AddTagsToResource", rds_arn(&region, "snapshot", &target), request);
            for key in call.kms_keys.clone() {
                r.kms("rds", &key, &region);
            }
        }
        // StopInstances / StartInstances: instance* (SAR); a refusal is explained with
        // DescribeInstances.
        "stop_instances" | "start_instances" => {
            let action = if call.method == "stop_instances" { "ec2:StopInstances" } else { "ec2:StartInstances" };
            for instance in r.arg("instance") {
                r.on(action, ec2_arn(&region, "instance", &instance), &instance);
            }
            if !call.succeeded {
                r.describe("ec2:DescribeInstances");
            }
        }
        "describe_instances" => {
            r.describe("ec2:DescribeInstances");
            r.describe("ec2:DescribeVolumes");
        }
        // CreateVolume: volume*, snapshot (SAR), tags as CreateTags with
        // CreateAction=CreateVolume, the key through EC2.
        "create_volume" => {
            let snapshot = r.first("snapshot");
            let volume = r.first("created");
            r.push("ec2:CreateVolume", ec2_arn(&region, "volume", &volume), request.clone());
            let context = merged(resource_tags(r.tags_of(&snapshot)), request.clone());
            r.push("ec2:CreateVolume", ec2_arn(&region, "snapshot", &snapshot), context);
            r.ec2_tags_on_create("CreateVolume", ec2_arn(&region, "volume", &volume));
            for key in call.kms_keys.clone() {
                r.kms("ec2", &key, &region);
            }
        }
        "describe_volumes" => r.describe("ec2:DescribeVolumes"),
        // DetachVolume: instance, volume* (SAR); AttachVolume: instance*, volume*.
        "detach_volume" | "attach_volume" => {
            let action = if call.method == "detach_volume" { "ec2:DetachVolume" } else { "ec2:AttachVolume" };
            let (instance, volume) = (r.first("instance"), r.first("volume"));
            r.on(action, ec2_arn(&region, "instance", &instance), &instance);
            r.on(action, ec2_arn(&region, "volume", &volume), &volume);
        }
        // ModifyInstanceAttribute (BlockDeviceMappings): instance* (SAR).
        "set_delete_on_termination" => {
            let instance = r.first("instance");
            r.on("ec2:ModifyInstanceAttribute", ec2_arn(&region, "instance", &instance), &instance);
        }
        // DeleteVolume: volume* (SAR).
        "delete_volume" => {
            let volume = r.first("volume");
            r.on("ec2:DeleteVolume", ec2_arn(&region, "volume", &volume), &volume);
        }
        // EC2: CreateTags / DeleteTags on the resource (aws:TagKeys, aws:ResourceTag); RDS:
        // DescribeDBInstances for the ARN, then AddTagsToResource / RemoveTagsFromResource.
        "tag_resource" | "untag_resource" => {
            let id = r.first("resource");
            let existing = resource_tags(r.tags_of(&id));
            let sent = if call.method == "tag_resource" {
                request
            } else {
                let keys = r.arg("keys");
                [("aws:TagKeys".to_owned(), ContextValue::Many(keys))].into()
            };
            match ec2_kind(&id) {
                Some(kind) => {
                    let action = if call.method == "tag_resource" { "ec2:CreateTags" } else { "ec2:DeleteTags" };
                    r.push(action, ec2_arn(&region, kind, &id), merged(existing, sent));
                }
                None => {
                    r.describe("rds:DescribeDBInstances");
                    let action = if call.method == "tag_resource" {
                        "rds:AddTagsToResource"
                    } else {
                        "rds:RemoveTagsFromResource"
                    };
                    r.push(action, rds_arn(&region, "db", &id), merged(existing, sent));
                }
            }
        }
        // RestoreDBInstanceFromDBSnapshot: db*, og*, pg*, subgrp*, snapshot (SAR); without a
        // group's name RDS uses the default one, which is what is authorised then. Tags
        // on create: AddTagsToResource on the new database.
        "restore_database" => {
            let snapshot = r.first("db_snapshot");
            let db = r.first("new_db");
            r.push("rds:RestoreDBInstanceFromDBSnapshot", rds_arn(&region, "db", &db), request.clone());
            let context = merged(resource_tags(r.tags_of(&snapshot)), request.clone());
            r.push("rds:RestoreDBInstanceFromDBSnapshot", rds_arn(&region, "snapshot", &snapshot), context);
            for (kind, name, default) in [
                ("subgrp", "subnet_group", "default"),
                ("og", "option_group", "default:mysql-8-0"),
                ("pg", "parameter_group", "default.mysql8.0"),
            ] {
                let group = r.arg(name).into_iter().next().unwrap_or_else(|| default.to_owned());
                r.push("rds:RestoreDBInstanceFromDBSnapshot", rds_arn(&region, kind, &group), request.clone());
            }
            if !call.tags.is_empty() {
                r.push("rds:AddTagsToResource", rds_arn(&region, "db", &db), request);
            }
        }
        "describe_databases" => r.describe("rds:DescribeDBInstances"),
        // ModifyDBInstance: db* (SAR), for a rename (NewDBInstanceIdentifier) as for
        // DeletionProtection.
        "rename_database" | "set_deletion_protection" => {
            let db = r.first("db");
            r.on("rds:ModifyDBInstance", rds_arn(&region, "db", &db), &db);
        }
        // DeleteDBInstance: db* (SAR); a database already deleting is checked with
        // DescribeDBInstances.
        "delete_database" => {
            let db = r.first("db");
            r.on("rds:DeleteDBInstance", rds_arn(&region, "db", &db), &db);
            r.describe("rds:DescribeDBInstances");
        }
        // Launching instances from a point (args as the recorder names them: `snapshot`, the
        // image's devices; `image`; `subnet`, `security_group`, `key_pair`,
        // `instance_profile`; `created`). RegisterImage: image*, snapshot (SAR); tags on
        // create as CreateTags with CreateAction=RegisterImage.
        "register_image" => {
            let image = r.first("created");
            r.push("ec2:RegisterImage", ec2_arn(&region, "image", &image), request.clone());
            for snapshot in r.arg("snapshot") {
                let context = merged(resource_tags(r.tags_of(&snapshot)), request.clone());
                r.push("ec2:RegisterImage", ec2_arn(&region, "snapshot", &snapshot), context);
            }
            r.ec2_tags_on_create("RegisterImage", ec2_arn(&region, "image", &image));
        }
        "describe_images" | "find_image" => r.describe("ec2:DescribeImages"),
        // ListChangedBlocks: snapshot* (SAR, Amazon EBS direct APIs), both snapshots.
        "changed_bytes" => {
            for snapshot in r.arg("snapshot") {
                r.on("ebs:ListChangedBlocks", ec2_arn(&region, "snapshot", &snapshot), &snapshot);
            }
        }
        "find_instances" => r.describe("ec2:DescribeInstances"),
        // DeregisterImage: image* (SAR).
        "deregister_image" => {
            let image = r.first("image");
            r.on("ec2:DeregisterImage", ec2_arn(&region, "image", &image), &image);
        }
        // RunInstances: image*, instance*, network-interface*, security-group*, subnet*,
        // volume, key-pair (SAR); the new instance's and volumes' tags as CreateTags with
        // CreateAction=RunInstances; the instance profile's role passed to EC2
        // (iam:PassRole with iam:PassedToService, IAM User Guide, "Grant a user permissions
        // to pass a role to an AWS service"; the test's instance profiles hold the role of
        // their own name).
        "run_instance" => {
            let image = r.first("image");
            let instance = r.first("created");
            let context = merged(resource_tags(r.tags_of(&image)), request.clone());
            r.push("ec2:RunInstances", ec2_arn(&region, "image", &image), context);
            r.push("ec2:RunInstances", ec2_arn(&region, "instance", &instance), request.clone());
            r.push("ec2:RunInstances", ec2_arn(&region, "network-interface", "eni-0"), request.clone());
            r.push("ec2:RunInstances", ec2_arn(&region, "volume", "vol-0"), request.clone());
            for (arg, kind) in [("subnet", "subnet"), ("security_group", "security-group"), ("key_pair", "key-pair")] {
                for id in r.arg(arg) {
                    r.on("ec2:RunInstances", ec2_arn(&region, kind, &id), &id);
                }
            }
            r.ec2_tags_on_create("RunInstances", ec2_arn(&region, "instance", &instance));
            r.ec2_tags_on_create("RunInstances", ec2_arn(&region, "volume", "vol-0"));
            for profile in r.arg("instance_profile") {
                let role = profile.rsplit('/').next().unwrap_or_default().to_owned();
                let context: Context = [("iam:PassedToService".into(), one("ec2.amazonaws.com"))].into();
                r.push("iam:PassRole", format!("arn:{PARTITION}:iam::{ACCOUNT}:role/{role}"), context);
            }
        }
        _ => return None,
    }
    Some(r.out)
}

/// The DynamoDB requests of a `Store` port call as the DynamoDB store
/// (`shared/aws/src/dynamodb.rs`) makes it. A transaction (`TransactWriteItems`) is
/// authorised as the actions of its items (DynamoDB Developer Guide, "Using IAM with
/// DynamoDB transactions",
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html):
/// snapnest's hold puts and deletes. An index query is authorised on the index's ARN.
/// `None` for a method this table does not know.
pub fn store_requests(call: &StoreCall) -> Option<Vec<IamRequest>> {
    let table = table_arn();
    let index = |name: &str| format!("{table}/index/{name}");
    let actions: Vec<(&str, String)> = match call.method {
        // A transaction of the token, lock, document and row puts; rows beyond it batched
        // ahead (and batch-deleted when the insert fails); a blocker read back.
        "insert_with_rows" => vec![
            ("dynamodb:PutItem", table.clone()),
            ("dynamodb:BatchWriteItem", table.clone()),
            ("dynamodb:GetItem", table.clone()),
        ],
        // The stored version read, then a transaction of puts and a lock release (delete);
        // rows beyond it put one by one ahead.
        "update_with_rows" => vec![
            ("dynamodb:GetItem", table.clone()),
            ("dynamodb:PutItem", table.clone()),
            ("dynamodb:DeleteItem", table.clone()),
        ],
        "get_rows" => vec![("dynamodb:Query", table.clone())],
        "get" => vec![("dynamodb:GetItem", table.clone())],
        "list_owned" => vec![("dynamodb:Query", index("by-owner")), ("dynamodb:BatchGetItem", table.clone())],
        "list_collection" => {
            vec![("dynamodb:Query", index("by-collection")), ("dynamodb:BatchGetItem", table.clone())]
        }
        // Read, a transaction deleting the document and its lock, then its rows (a query
        // and batch deletes).
        "delete" => vec![
            ("dynamodb:GetItem", table.clone()),
            ("dynamodb:DeleteItem", table.clone()),
            ("dynamodb:Query", table.clone()),
            ("dynamodb:BatchWriteItem", table.clone()),
        ],
        "acquire_lock" => vec![("dynamodb:PutItem", table.clone()), ("dynamodb:GetItem", table.clone())],
        "release_lock" => vec![("dynamodb:DeleteItem", table.clone())],
        "list_active" => vec![("dynamodb:Query", index("active")), ("dynamodb:BatchGetItem", table.clone())],
        "list_due" => vec![("dynamodb:Query", index("due")), ("dynamodb:BatchGetItem", table.clone())],
        _ => return None,
    };
    Some(
        actions
            .into_iter()
            .map(|(action, resource)| IamRequest {
                function: call.function.clone(),
                action: action.into(),
                resource,
                context: Context::new(),
                origin: call.method.into(),
                gone: false,
            })
            .collect(),
    )
}

/// The start queue (template.yaml `StartQueue`).
pub fn start_queue_arn() -> String {
    format!("arn:{PARTITION}:sqs:{HOME}:{ACCOUNT}:snapnest-StartQueue")
}

/// What AWS authorises for a message sent to the work queue: `sqs:SendMessage` on the queue
/// (SQS API Reference, SendMessage; Service Authorization Reference, Amazon SQS: resource
/// type `queue`).
pub fn queue_requests(call: &QueueCall) -> Vec<IamRequest> {
    vec![IamRequest {
        function: call.function.clone(),
        action: "sqs:SendMessage".into(),
        resource: start_queue_arn(),
        context: Context::new(),
        origin: "WorkQueue::send".into(),
        gone: false,
    }]
}

/// The account's default event bus, the one publish-events puts events on.
pub fn default_bus_arn() -> String {
    format!("arn:{PARTITION}:events:{HOME}:{ACCOUNT}:event-bus/default")
}

/// The table's stream (template.yaml `SnapnestTable.StreamArn`; the label is fixed for the test).
pub fn stream_arn() -> String {
    format!("{}/stream/2026-11-01T00:00:00.000", table_arn())
}

/// The failure queue (template.yaml `FailedInvocationsQueue`).
pub fn failure_queue_arn() -> String {
    format!("arn:{PARTITION}:sqs:{HOME}:{ACCOUNT}:snapnest-FailedInvocationsQueue")
}

/// What AWS authorises for a publish to the event bus: `events:PutEvents` on the default bus
/// for each event, with its source and detail-type (EventBridge User Guide, "Using IAM policy
/// conditions in Amazon EventBridge": `events:source`, `events:detail-type`; Service
/// Authorization Reference, Amazon EventBridge: resource type `event-bus`).
pub fn bus_requests(call: &BusCall) -> Vec<IamRequest> {
    call.detail_types
        .iter()
        .map(|detail_type| IamRequest {
            function: call.function.clone(),
            action: "events:PutEvents".into(),
            resource: default_bus_arn(),
            // Both keys are multivalued: one value per entry of the request.
            context: [
                ("events:source".to_owned(), ContextValue::Many(vec![snapnest_core::events::SOURCE.to_owned()])),
                ("events:detail-type".to_owned(), ContextValue::Many(vec![(*detail_type).to_owned()])),
            ]
            .into(),
            origin: "EventBus::publish".into(),
            gone: false,
        })
        .collect()
}

/// What Lambda does with a stream reader's role (Lambda Developer Guide, "Process DynamoDB
/// records with Lambda", execution role permissions: DescribeStream, GetShardIterator,
/// GetRecords, ListStreams on the stream; and the event source mapping's on-failure
/// destination, "Retaining discarded batches": sqs:SendMessage on the queue), none of which
/// goes through snapnest's code.
pub fn stream_reader_requests(function: &str) -> Vec<IamRequest> {
    let request = |action: &str, resource: String| IamRequest {
        function: function.into(),
        action: action.into(),
        resource,
        context: Context::new(),
        origin: "event source mapping".into(),
        gone: false,
    };
    vec![
        request("dynamodb:DescribeStream", stream_arn()),
        request("dynamodb:GetShardIterator", stream_arn()),
        request("dynamodb:GetRecords", stream_arn()),
        // No resource-level permission (Service Authorization Reference, Amazon DynamoDB).
        request("dynamodb:ListStreams", "*".into()),
        request("sqs:SendMessage", failure_queue_arn()),
    ]
}

// ---------------------------------------------------------------------------------------
// The roles of template.yaml

/// Parameter values the template is resolved with.
pub fn parameters() -> BTreeMap<String, Value> {
    [
        ("TagKey", json!(TAG_KEY)),
        ("DestinationRegion", json!("us-west-2")),
        ("DefaultRetentionDays", json!("7")),
        ("KeepReplacedDays", json!("7")),
        ("ReplicaKmsKeys", json!("us-west-2=alias/snapnest-replicas")),
        ("KmsKeyArns", json!(kms_key_arns())),
        ("Admins", json!("")),
        ("AuthMode", json!("IAM")),
        ("JwtIssuer", json!("")),
        ("JwtAudience", json!([""])),
        ("LogRetentionDays", json!("30")),
        ("AlarmEmail", json!("")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The template's intrinsic functions, resolved with fixed values for the stack.
pub struct Resolver<'a> {
    template: &'a Value,
    parameters: BTreeMap<String, Value>,
}

impl<'a> Resolver<'a> {
    pub fn new(template: &'a Value, parameters: BTreeMap<String, Value>) -> Self {
        Self { template, parameters }
    }

    fn reference(&self, name: &str) -> Value {
        match name {
            "AWS::Region" => json!(HOME),
            "AWS::AccountId" => json!(ACCOUNT),
            "AWS::Partition" => json!(PARTITION),
            "AWS::StackName" => json!(STACK),
            "AWS::URLSuffix" => json!("amazonaws.com"),
            "SnapnestTable" => json!(TABLE),
            other => match self.parameters.get(other) {
                Some(value) => value.clone(),
                // Another resource: its logical id stands for its physical name.
                None if self.template["Resources"].get(other).is_some() => json!(format!("{STACK}-{other}")),
                None => panic!("template.yaml refers to {other}, which is neither a parameter nor a resource"),
            },
        }
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Value {
        match (resource, attribute) {
            ("SnapnestTable", "Arn") => json!(table_arn()),
            ("SnapnestTable", "StreamArn") => json!(stream_arn()),
            ("StartQueue", "Arn") => json!(start_queue_arn()),
            ("FailedInvocationsQueue", "Arn") => json!(failure_queue_arn()),
            (resource, attribute) => json!(format!("arn:{PARTITION}:test:{HOME}:{ACCOUNT}:{resource}/{attribute}")),
        }
    }

    fn substitute(&self, text: &str, variables: &Map<String, Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').expect("a closed ${...} in a !Sub");
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else {
                let value = match variables.get(name) {
                    Some(value) => self.resolve(value),
                    None => match name.split_once('.') {
                        Some((resource, attribute)) if !name.starts_with("AWS::") => {
                            self.attribute(resource, attribute)
                        }
                        _ => self.reference(name),
                    },
                };
                match value {
                    Value::String(s) => out.push_str(&s),
                    other => panic!("!Sub of ${{{name}}}: {other} is not a string"),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    pub fn condition(&self, name: &str) -> bool {
        match self.resolve(&self.template["Conditions"][name]) {
            Value::Bool(b) => b,
            other => panic!("condition {name} resolved to {other}"),
        }
    }

    /// `value` with every intrinsic function resolved; `AWS::NoValue` drops the entry.
    pub fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::Array(items) => Value::Array(
                items.iter().map(|item| self.resolve(item)).filter(|v| *v != json!({"AWS::NoValue": true})).collect(),
            ),
            Value::Object(map) if map.len() == 1 => {
                let (function, argument) = map.iter().next().expect("one entry");
                match function.as_str() {
                    "Ref" if argument == "AWS::NoValue" => json!({"AWS::NoValue": true}),
                    "Ref" => self.reference(argument.as_str().expect("a name")),
                    "Fn::GetAtt" => {
                        let path = argument.as_array().expect("[resource, attribute]");
                        self.attribute(path[0].as_str().unwrap_or_default(), path[1].as_str().unwrap_or_default())
                    }
                    "Fn::Sub" => match argument {
                        Value::String(text) => json!(self.substitute(text, &Map::new())),
                        Value::Array(parts) => {
                            let variables = parts[1].as_object().cloned().unwrap_or_default();
                            json!(self.substitute(parts[0].as_str().expect("a !Sub string"), &variables))
                        }
                        other => panic!("!Sub of {other}"),
                    },
                    "Fn::Join" => {
                        let parts = argument.as_array().expect("[separator, list]");
                        let separator = parts[0].as_str().unwrap_or_default();
                        let list = self.resolve(&parts[1]);
                        let items: Vec<String> = list
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|v| v.as_str().unwrap_or_default().to_owned())
                            .collect();
                        json!(items.join(separator))
                    }
                    "Fn::Equals" => {
                        let parts = argument.as_array().expect("[a, b]");
                        json!(self.resolve(&parts[0]) == self.resolve(&parts[1]))
                    }
                    "Fn::Not" => json!(!self.resolve(&argument[0]).as_bool().expect("a condition")),
                    "Fn::And" => {
                        json!(argument.as_array().into_iter().flatten().all(|c| self.resolve(c) == json!(true)))
                    }
                    "Fn::Or" => {
                        json!(argument.as_array().into_iter().flatten().any(|c| self.resolve(c) == json!(true)))
                    }
                    "Condition" => json!(self.condition(argument.as_str().expect("a condition name"))),
                    "Fn::If" => {
                        let parts = argument.as_array().expect("[condition, then, else]");
                        let chosen = if self.condition(parts[0].as_str().expect("a condition name")) {
                            &parts[1]
                        } else {
                            &parts[2]
                        };
                        self.resolve(chosen)
                    }
                    _ => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.resolve(v))).collect()),
                }
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .filter(|(_, v)| *v != json!({"AWS::NoValue": true}))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Every function's role as deployed: the function's binary (its package in `functions/`)
/// and the policy documents of its role — its SAM `Policies` and every `AWS::IAM::Policy`
/// attached to the role SAM makes for it (`<logical id>Role`), conditions resolved.
pub fn role_policies(template: &Value, parameters: BTreeMap<String, Value>) -> BTreeMap<String, Vec<Value>> {
    let resolver = Resolver::new(template, parameters);
    let resources = template["Resources"].as_object().expect("Resources");
    let mut roles = BTreeMap::new();
    let mut role_of = BTreeMap::new();
    for (id, resource) in resources {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str().expect("a binary").to_owned();
        let mut documents = Vec::new();
        for policy in resource["Properties"]["Policies"].as_array().into_iter().flatten() {
            // A SAM policy template or a managed policy's name would grant what this test
            // cannot see: only inline documents are allowed.
            assert!(
                policy.get("Statement").is_some(),
                "{id}: a Policies entry that is not a policy document ({policy}); the IAM test reads documents only"
            );
            documents.push(resolver.resolve(policy));
        }
        role_of.insert(format!("{id}Role"), binary.clone());
        roles.insert(binary, documents);
    }
    for (id, resource) in resources {
        if resource["Type"] != "AWS::IAM::Policy" {
            continue;
        }
        if let Some(condition) = resource["Condition"].as_str() {
            if !resolver.condition(condition) {
                continue;
            }
        }
        let document = match resolver.resolve(&resource["Properties"]["PolicyDocument"]) {
            Value::String(text) => {
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{id}: PolicyDocument is not JSON: {e}"))
            }
            other => other,
        };
        for role in resource["Properties"]["Roles"].as_array().into_iter().flatten() {
            let name = role["Ref"].as_str().unwrap_or_else(|| panic!("{id}: a role that is not a !Ref: {role}"));
            let binary = role_of.get(name).unwrap_or_else(|| panic!("{id}: {name} is no function's role"));
            roles.get_mut(binary).expect("the function").push(document.clone());
        }
    }
    roles
}

// ---------------------------------------------------------------------------------------
// The evaluator

/// What the evaluator decided of one request.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Decision {
    /// `Allowed`, `ImplicitlyDenied` or `ExplicitlyDenied`.
    pub result: String,
    /// Validation errors (an unknown action, a resource type the action does not take).
    pub errors: Option<Value>,
    /// Context keys the action and resource type do not take (left out of the evaluation).
    #[serde(default)]
    pub ignored: Vec<String>,
}

/// The default key policy (KMS Developer Guide, "Default key policy"): the account's IAM
/// policies decide who uses the key.
pub fn default_key_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "Enable IAM policies",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:{PARTITION}:iam::{ACCOUNT}:root")},
            "Action": "kms:*",
            "Resource": "*"
        }]
    })
}

/// Evaluates `requests` against the roles with `tests/iam/evaluate.mjs`, in order.
pub fn evaluate(repo: &Path, roles: &BTreeMap<String, Vec<Value>>, requests: &[IamRequest]) -> Vec<Decision> {
    let dir = repo.join("tests").join("iam");
    assert!(
        dir.join("node_modules").join("@cloud-copilot").join("iam-simulate").exists(),
        "the IAM evaluator is not installed: run scripts/install-tools.sh (npm ci in tests/iam)"
    );
    let input = json!({
        "account": ACCOUNT,
        "roles": roles,
        "keyPolicy": default_key_policy(),
        "requests": requests,
    });
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), serde_json::to_vec(&input).expect("JSON")).expect("write the requests");
    let output = Command::new("node")
        .arg(dir.join("evaluate.mjs"))
        .arg(file.path())
        .current_dir(&dir)
        .output()
        .expect("run node tests/iam/evaluate.mjs");
    assert!(output.status.success(), "the evaluator failed: {}", String::from_utf8_lossy(&output.stderr));
    let decisions: Vec<Decision> = serde_json::from_slice(&output.stdout).expect("the evaluator's JSON answer");
    assert_eq!(decisions.len(), requests.len(), "one decision per request");
    decisions
}

/// Requests that differ only in resource ids, told apart by action, resource pattern and
/// context with ids left out: what is evaluated once for all of them.
pub fn distinct(requests: Vec<IamRequest>) -> Vec<IamRequest> {
    let mut seen = BTreeSet::new();
    requests
        .into_iter()
        .filter(|r| {
            let key = (r.function.clone(), r.action.clone(), r.resource.clone(), r.context.clone(), r.gone);
            seen.insert(key)
        })
        .collect()
}
