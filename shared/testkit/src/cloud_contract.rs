//! The contract of the [`Cloud`] port, as one executable check that every adapter must pass.
//!
//! The workflows are written against the simulated cloud and run in production against AWS;
//! they can only trust the simulation if both behave alike. [`check_cloud_contract`] drives
//! one service instance through every call the workflows make — discover, snapshot groups,
//! polling, tagging, copies, an in-place volume swap, a database restore with the identifier
//! swap, deletes and the usual errors — and panics on the first difference from what AWS does.
//! It lives in the library (not in a test file) so the simulated cloud's tests and the AWS
//! adapter's emulator tests run literally the same assertions.
//!
//! Everything it creates carries `snapnest:service-instance-id=<service instance>`, so a test
//! can look at the cloud afterwards through its own means. It renames the database `<db>` to
//! `<db>-old` and the restored one to `<db>`, and swaps the highest-named device of the first
//! discovered instance for a new volume made from that volume's snapshot; the volume and the
//! database taken out of service keep a `snapnest:replaced-by` tag. It also makes one more
//! volume and one more database, only to delete them again.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use snapnest_core::cloud::*;

/// How long an asynchronous change (a snapshot completing, a volume attaching) may take.
const PATIENCE: Duration = Duration::from_secs(60);
/// How often a pending change is looked at again.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Known ways an emulator departs from AWS. Each flag skips exactly one assertion; the
/// default (every flag off) is AWS's behaviour and what [`check_cloud_contract`] checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmulatorGaps {
    /// `CreateSnapshots` ignores `ExcludeDataVolumeIds` (moto 5.2.5 honours only
    /// `ExcludeBootVolume`), so a group of selected volumes holds every data volume.
    pub create_snapshots_ignores_excluded_volumes: bool,
}

/// Checks that `home` and `destination` behave like AWS for the workflows; panics on a breach.
///
/// Precondition: `home` holds the service instance `service_instance_id` — exactly two
/// running instances with three attached volumes each and one available DB instance, all
/// tagged `tag_key=service_instance_id`. `destination` is another region's cloud.
pub async fn check_cloud_contract(home: &dyn Cloud, destination: &dyn Cloud, tag_key: &str, service_instance_id: &str) {
    check_cloud_contract_with(home, destination, tag_key, service_instance_id, &EmulatorGaps::default()).await
}

/// [`check_cloud_contract`], skipping the assertions an emulator is known to fail.
pub async fn check_cloud_contract_with(
    home: &dyn Cloud,
    destination: &dyn Cloud,
    tag_key: &str,
    service_instance_id: &str,
    gaps: &EmulatorGaps,
) {
    let si = service_instance_id;
    // Emulator state is shared by every test of a process: everything named here is unique.
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let backup_tags = |label: &str| -> Tags {
        [
            (tag::BACKUP_ID.to_owned(), format!("contract-{run}-{label}")),
            (tag::SERVICE_INSTANCE.to_owned(), si.to_owned()),
            (tag::EXPIRES_AT.to_owned(), "2099-12-31T00:00:00Z".to_owned()),
            (tag::MANAGED.to_owned(), "true".to_owned()),
        ]
        .into()
    };
    let restore_tags: Tags = [
        (tag::RESTORE_ID.to_owned(), format!("contract-{run}")),
        (tag::SERVICE_INSTANCE.to_owned(), si.to_owned()),
        (tag::MANAGED.to_owned(), "true".to_owned()),
    ]
    .into();
    // Well-formed ids of things that do not exist.
    let no_snapshot = format!("snap-{:017x}", 0xdead_u64);
    let no_volume = format!("vol-{:017x}", 0xdead_u64);
    let no_instance = format!("i-{:017x}", 0xdead_u64);
    let no_database = format!("nothing-{run}");

    // 1. discover: two running instances with three attached volumes each, one database.
    let inventory = ok("discover", home.discover(tag_key, si).await);
    assert_eq!(inventory.instances.len(), 2, "discover finds both instances: {inventory:?}");
    for instance in &inventory.instances {
        assert_eq!(instance.state, InstanceState::Running, "{instance:?}");
        assert!(!instance.availability_zone.is_empty(), "an instance has an AZ: {instance:?}");
        assert_eq!(instance.volumes.len(), 3, "every attached volume is found: {instance:?}");
        let devices: BTreeSet<_> = instance.volumes.iter().map(|v| v.device.as_str()).collect();
        assert_eq!(devices.len(), 3, "each volume at its own device: {instance:?}");
        assert!(instance.volumes.iter().all(|v| v.device.starts_with("/dev/") && v.size_gib > 0), "{instance:?}");
    }
    assert_eq!(inventory.databases.len(), 1, "discover finds the database: {inventory:?}");
    let db = &inventory.databases[0];
    assert!(!db.engine.is_empty() && db.status == "available", "{db:?}");
    let nobody = ok("discover nobody", home.discover(tag_key, &format!("nobody-{run}")).await);
    assert_eq!(nobody, Inventory::default(), "an unused tag value finds nothing");
    let (a, b) = (&inventory.instances[0], &inventory.instances[1]);
    // describe_instances sees the same instances, with the same volumes at the same devices.
    let asked = [a.instance_id.clone(), b.instance_id.clone(), no_instance.clone()];
    let mut described = ok("describe_instances", home.describe_instances(&asked).await);
    described.sort_by(|x, y| x.instance_id.cmp(&y.instance_id));
    let mut discovered = inventory.instances.clone();
    discovered.sort_by(|x, y| x.instance_id.cmp(&y.instance_id));
    assert_eq!(described, discovered, "describe_instances agrees with discover; the unknown id is absent");
    // describe_databases reports a database's tags.
    let seen = ok("describe_databases", home.describe_databases(std::slice::from_ref(&db.db_id)).await);
    assert!(
        matches!(seen.as_slice(), [d] if d.tags.get(tag_key).map(String::as_str) == Some(si)),
        "the database carries {tag_key}={si}: {seen:?}"
    );

    // 2. A consistent group of all of A's volumes: one snapshot per volume.
    let all_tags = backup_tags("all");
    let group =
        ok("snapshot_instance All", home.snapshot_instance(&a.instance_id, &VolumeSelection::All, &all_tags).await);
    assert_eq!(volume_set(&group), a.volumes.iter().map(|v| v.volume_id.clone()).collect(), "{group:?}");
    assert_eq!(group.iter().map(|s| &s.snapshot_id).collect::<BTreeSet<_>>().len(), 3, "distinct snapshots: {group:?}");

    // 3. A group of one selected volume (the highest device name): only that volume.
    let chosen = a.volumes.iter().max_by(|x, y| x.device.cmp(&y.device)).expect("A has volumes").clone();
    let only_tags = backup_tags("only");
    let selection = VolumeSelection::Only(vec![chosen.volume_id.clone()]);
    let only = ok("snapshot_instance Only", home.snapshot_instance(&a.instance_id, &selection, &only_tags).await);
    if gaps.create_snapshots_ignores_excluded_volumes {
        // Skipped for moto: it ignores ExcludeDataVolumeIds; the selection is at least included.
        assert!(only.iter().any(|s| s.volume_id == chosen.volume_id), "{only:?}");
        assert!(volume_set(&only).is_subset(&volume_set(&group)), "{only:?}");
    } else {
        assert_eq!(only.len(), 1, "only the selected volume: {only:?}");
        assert_eq!(only[0].volume_id, chosen.volume_id, "{only:?}");
    }

    // 4. One volume on its own.
    let volume_tags = backup_tags("volume");
    let single = ok("snapshot_volume", home.snapshot_volume(&b.volumes[1].volume_id, &volume_tags).await);
    assert_eq!(single.volume_id, b.volumes[1].volume_id);

    // 5. A DB snapshot under a chosen name; the same name again is AlreadyExists.
    let db_snapshot = format!("snapnest-contract-{run}");
    ok("snapshot_database", home.snapshot_database(&db.db_id, &db_snapshot, &backup_tags("db")).await);
    match home.snapshot_database(&db.db_id, &db_snapshot, &backup_tags("db")).await {
        Err(CloudError::AlreadyExists(id)) => assert_eq!(id, db_snapshot),
        other => panic!("a second DB snapshot of the same name must be AlreadyExists, got {other:?}"),
    }

    // 6. One describe call reports every EBS snapshot, completed, and leaves out unknown ids.
    let ebs_ids: Vec<String> = group.iter().chain(&only).chain([&single]).map(|s| s.snapshot_id.clone()).collect();
    let mut asked = ebs_ids.clone();
    asked.push(no_snapshot.clone());
    let statuses = eventually(
        "EBS snapshots complete",
        || home.describe_snapshots(&asked),
        |statuses: &Vec<SnapshotStatus>| {
            let done = ebs_ids
                .iter()
                .all(|id| statuses.iter().any(|s| s.snapshot_id == *id && s.state == SnapshotState::Completed));
            done.then(|| statuses.clone())
        },
    )
    .await;
    assert_eq!(statuses.len(), ebs_ids.len(), "each known snapshot once, the unknown one absent: {statuses:?}");
    for status in &statuses {
        assert_eq!(status.progress, 100, "{status:?}");
        assert!(status.size_bytes > 0, "{status:?}");
    }
    for started in &group {
        let volume = a.volumes.iter().find(|v| v.volume_id == started.volume_id).expect("a volume of A");
        let status = statuses.iter().find(|s| s.snapshot_id == started.snapshot_id).expect("described");
        assert_eq!(status.size_bytes, volume.size_gib << 30, "a snapshot is as large as its volume: {status:?}");
    }
    assert!(ok("describe no snapshots", home.describe_snapshots(&[]).await).is_empty());

    // 7. The DB snapshot completes; unknown DB snapshot ids are absent.
    let db_asked = [db_snapshot.clone(), no_database.clone()];
    let db_statuses = eventually(
        "DB snapshot completes",
        || home.describe_db_snapshots(&db_asked),
        |statuses: &Vec<SnapshotStatus>| {
            statuses
                .iter()
                .any(|s| s.snapshot_id == db_snapshot && s.state == SnapshotState::Completed)
                .then(|| statuses.clone())
        },
    )
    .await;
    assert_eq!(db_statuses.len(), 1, "{db_statuses:?}");
    assert!(db_statuses[0].progress == 100 && db_statuses[0].size_bytes > 0, "{db_statuses:?}");

    // 8. find_snapshots by tag finds exactly what was made with that tag, with source volumes.
    for (tags, made) in [(&all_tags, group.clone()), (&only_tags, only.clone()), (&volume_tags, vec![single.clone()])] {
        let found = ok("find_snapshots", home.find_snapshots(tag::BACKUP_ID, &tags[tag::BACKUP_ID]).await);
        assert_eq!(pairs(&found), pairs(&made), "find_snapshots by {}", tags[tag::BACKUP_ID]);
    }
    assert!(ok("find nothing", home.find_snapshots(tag::BACKUP_ID, &format!("nothing-{run}")).await).is_empty());
    // A snapshot on its own carries its source volume's tag (a group's are told apart by
    // their VolumeId, which `pairs` above compares).
    let found = ok("find by source volume", home.find_snapshots(tag::SOURCE_VOLUME, &single.volume_id).await);
    assert!(found.contains(&single), "{single:?} is tagged with its source volume: {found:?}");

    // 9. tag_snapshot replaces a tag's value: the snapshot moves to the new backup id.
    let retagged: Tags = [(tag::BACKUP_ID.to_owned(), format!("contract-{run}-retagged"))].into();
    ok("tag_snapshot", home.tag_snapshot(&group[0].snapshot_id, &retagged).await);
    let found = ok("find retagged", home.find_snapshots(tag::BACKUP_ID, &retagged[tag::BACKUP_ID]).await);
    assert_eq!(found, vec![group[0].clone()], "the retagged snapshot is found by its new tag");
    let found = ok("find after retag", home.find_snapshots(tag::BACKUP_ID, &all_tags[tag::BACKUP_ID]).await);
    assert_eq!(pairs(&found), pairs(&group[1..]), "and no longer by its old one");
    ok("tag_snapshot DB", home.tag_snapshot(&db_snapshot, &retagged).await);
    assert!(home.tag_snapshot(&no_snapshot, &retagged).await.is_err(), "tagging an unknown snapshot fails");

    // 10. Copies into the destination, made by the destination's cloud, complete there.
    let copy_tags = backup_tags("copy");
    let copy_id =
        ok("copy_snapshot", destination.copy_snapshot(home.region(), &group[1].snapshot_id, None, &copy_tags).await);
    eventually(
        "the EBS copy completes in the destination",
        || destination.describe_snapshots(std::slice::from_ref(&copy_id)),
        |statuses: &Vec<SnapshotStatus>| statuses.iter().any(|s| s.state == SnapshotState::Completed).then_some(()),
    )
    .await;
    assert!(
        ok("describe the copy at home", home.describe_snapshots(std::slice::from_ref(&copy_id)).await).is_empty(),
        "the copy lives in the destination only"
    );
    let found = ok("find the copy", destination.find_snapshots(tag::BACKUP_ID, &copy_tags[tag::BACKUP_ID]).await);
    let expected = StartedSnapshot { snapshot_id: copy_id.clone(), volume_id: group[1].volume_id.clone() };
    assert_eq!(found, vec![expected], "the copy is tagged and names the original volume");
    let copy = destination.copy_snapshot(home.region(), &no_snapshot, None, &copy_tags).await;
    assert!(matches!(copy, Err(CloudError::NotFound(_) | CloudError::Rejected { .. })), "{copy:?}");

    let db_copy = format!("{db_snapshot}-copy");
    ok(
        "copy_db_snapshot",
        destination.copy_db_snapshot(home.region(), &db_snapshot, &db_copy, None, None, &backup_tags("db-copy")).await,
    );
    eventually(
        "the DB copy completes in the destination",
        || destination.describe_db_snapshots(std::slice::from_ref(&db_copy)),
        |statuses: &Vec<SnapshotStatus>| statuses.iter().any(|s| s.state == SnapshotState::Completed).then_some(()),
    )
    .await;
    match destination.copy_db_snapshot(home.region(), &db_snapshot, &db_copy, None, None, &backup_tags("db-copy")).await
    {
        Err(CloudError::AlreadyExists(id)) => assert_eq!(id, db_copy),
        other => panic!("a second DB copy of the same name must be AlreadyExists, got {other:?}"),
    }

    // 11. In-place restore, volumes: stop A, make a volume from a snapshot in A's AZ, swap it
    // in at the same device, start A.
    ok("stop_instances", home.stop_instances(std::slice::from_ref(&a.instance_id)).await);
    wait_for_instance(home, &a.instance_id, InstanceState::Stopped, &no_instance).await;

    let source = group.iter().find(|s| s.volume_id == chosen.volume_id).expect("the chosen volume is in the group");
    let new_volume = ok(
        "create_volume",
        home.create_volume(
            &source.snapshot_id,
            &a.availability_zone,
            "contract-restore-1",
            &chosen.settings,
            &restore_tags,
        )
        .await,
    );
    let status = wait_for_volume(home, &new_volume, "available and unattached", |v| {
        v.state == VolumeState::Available && v.attachment.is_none() && !v.busy
    })
    .await;
    assert_eq!(status.volume_id, new_volume);
    assert!(has_tags(&status.tags, &restore_tags), "the new volume carries the restore's tags: {status:?}");
    let missing = ok("describe unknown volume", home.describe_volumes(std::slice::from_ref(&no_volume)).await);
    assert!(missing.is_empty(), "an unknown volume is absent: {missing:?}");

    ok("detach_volume", home.detach_volume(&a.instance_id, &chosen.volume_id).await);
    wait_for_volume(home, &chosen.volume_id, "detached", |v| {
        v.attachment.is_none() && v.state == VolumeState::Available && !v.busy
    })
    .await;
    // Once the detach has ended the device is free.
    let a_detached = described_instance(home, &a.instance_id).await;
    assert!(
        a_detached.volumes.iter().all(|v| v.device != chosen.device && v.volume_id != chosen.volume_id),
        "{} is free once {} is detached: {a_detached:?}",
        chosen.device,
        chosen.volume_id
    );
    assert_eq!(a_detached.volumes.len(), 2, "{a_detached:?}");

    // The replaced volume is tagged; untag_resource removes one key (and an absent one) only.
    let replaced: Tags = [
        (tag::REPLACED_BY.to_owned(), format!("contract-{run}")),
        (tag::KEPT_UNTIL.to_owned(), "2099-12-31T00:00:00Z".to_owned()),
    ]
    .into();
    let kept_until = [tag::KEPT_UNTIL.to_owned(), format!("snapnest:never-set-{run}")];
    ok("tag_resource volume", home.tag_resource(&chosen.volume_id, &replaced).await);
    let tagged = described_volume(home, &chosen.volume_id).await;
    assert!(has_tags(&tagged.tags, &replaced), "describe_volumes reports the tags: {tagged:?}");
    ok("untag_resource volume", home.untag_resource(&chosen.volume_id, &kept_until).await);
    let untagged = described_volume(home, &chosen.volume_id).await;
    assert_eq!(untagged.tags.get(tag::KEPT_UNTIL), None, "the key is removed: {untagged:?}");
    assert_eq!(untagged.tags.get(tag::REPLACED_BY), replaced.get(tag::REPLACED_BY), "the others stay: {untagged:?}");

    ok("attach_volume", home.attach_volume(&a.instance_id, &new_volume, &chosen.device).await);
    let wanted = Some((a.instance_id.clone(), chosen.device.clone()));
    let attached = wait_for_volume(home, &new_volume, "attached at the old device", |v| {
        v.attachment == wanted && v.state == VolumeState::InUse && !v.busy
    })
    .await;
    assert!(has_tags(&attached.tags, &restore_tags), "{attached:?}");
    let a_swapped = described_instance(home, &a.instance_id).await;
    let at_device = a_swapped.volumes.iter().find(|v| v.device == chosen.device).map(|v| v.volume_id.as_str());
    assert_eq!(
        at_device,
        Some(new_volume.as_str()),
        "describe_instances: the new volume is at {}: {a_swapped:?}",
        chosen.device
    );
    assert!(a_swapped.volumes.iter().all(|v| v.volume_id != chosen.volume_id), "{a_swapped:?}");
    assert_eq!(a_swapped.volumes.len(), 3, "{a_swapped:?}");
    let after = ok("discover after the swap", home.discover(tag_key, si).await);
    let a_after = after.instances.iter().find(|i| i.instance_id == a.instance_id).expect("A is still there");
    let at_device = a_after.volumes.iter().find(|v| v.device == chosen.device).map(|v| v.volume_id.as_str());
    assert_eq!(at_device, Some(new_volume.as_str()), "the new volume is at {}: {a_after:?}", chosen.device);
    assert_eq!(a_after.volumes.len(), 3, "{a_after:?}");

    ok("start_instances", home.start_instances(std::slice::from_ref(&a.instance_id)).await);
    wait_for_instance(home, &a.instance_id, InstanceState::Running, &no_instance).await;
    ok("stop nothing", home.stop_instances(&[]).await);

    // 12. In-place restore, database: restore to a new id, then swap the identifiers so
    // clients keep the same name.
    let restored = format!("snr-{run}");
    ok("restore_database", home.restore_database(&db_snapshot, &restored, &db.settings, &restore_tags).await);
    match home.restore_database(&db_snapshot, &restored, &db.settings, &restore_tags).await {
        Err(CloudError::AlreadyExists(id)) => assert_eq!(id, restored),
        other => panic!("restoring onto an existing id must be AlreadyExists, got {other:?}"),
    }
    wait_for_databases(home, &[&restored], &[]).await;
    let old_id = format!("{}-old", db.db_id);
    ok("rename_database original", home.rename_database(&db.db_id, &old_id).await);
    // The original name is free only once the rename has finished.
    wait_for_databases(home, &[&old_id], &[&db.db_id]).await;
    ok("rename_database restored", home.rename_database(&restored, &db.db_id).await);
    wait_for_databases(home, &[&db.db_id, &old_id], &[&restored]).await;
    let swapped =
        ok("describe_databases after the swap", home.describe_databases(&[db.db_id.clone(), old_id.clone()]).await);
    let tags_of = |id: &str| swapped.iter().find(|d| d.db_id == id).map(|d| d.tags.clone()).unwrap_or_default();
    assert!(has_tags(&tags_of(&db.db_id), &restore_tags), "the restored database carries its tags: {swapped:?}");
    assert_eq!(tags_of(&old_id).get(tag_key).map(String::as_str), Some(si), "a rename keeps the tags: {swapped:?}");
    ok("tag_resource database", home.tag_resource(&old_id, &replaced).await);
    let tagged = described_database(home, &old_id).await;
    assert!(has_tags(&tagged.tags, &replaced), "{tagged:?}");
    ok("untag_resource database", home.untag_resource(&old_id, &kept_until).await);
    let untagged = described_database(home, &old_id).await;
    assert_eq!(untagged.tags.get(tag::KEPT_UNTIL), None, "the key is removed: {untagged:?}");
    assert_eq!(untagged.tags.get(tag::REPLACED_BY), replaced.get(tag::REPLACED_BY), "the others stay: {untagged:?}");
    assert_eq!(untagged.tags.get(tag_key).map(String::as_str), Some(si), "{untagged:?}");

    // 13. Deletes: Deleted, then NotFound; the DB copy likewise.
    for started in only.iter().chain([&single]) {
        let id = &started.snapshot_id;
        assert_eq!(ok("delete_snapshot", home.delete_snapshot(id).await), DeleteOutcome::Deleted, "{id}");
        assert_eq!(ok("delete_snapshot again", home.delete_snapshot(id).await), DeleteOutcome::NotFound, "{id}");
    }
    let gone: Vec<String> = only.iter().chain([&single]).map(|s| s.snapshot_id.clone()).collect();
    eventually(
        "deleted snapshots disappear",
        || home.describe_snapshots(&gone),
        |statuses: &Vec<SnapshotStatus>| statuses.is_empty().then_some(()),
    )
    .await;
    assert_eq!(ok("delete_db_snapshot", destination.delete_db_snapshot(&db_copy).await), DeleteOutcome::Deleted);
    assert_eq!(ok("delete_db_snapshot again", destination.delete_db_snapshot(&db_copy).await), DeleteOutcome::NotFound);
    assert_eq!(ok("delete unknown", home.delete_snapshot(&no_snapshot).await), DeleteOutcome::NotFound);
    assert_eq!(ok("delete unknown DB", home.delete_db_snapshot(&no_database).await), DeleteOutcome::NotFound);

    // An attached volume is not deleted: the cloud refuses, and the volume stays where it is.
    match home.delete_volume(&new_volume).await {
        Err(CloudError::Rejected { .. }) => {}
        other => panic!("deleting an attached volume must be refused, got {other:?}"),
    }
    let still = described_volume(home, &new_volume).await;
    assert_eq!(still.attachment, wanted, "{still:?}");
    // A volume that is not attached: Deleted, gone, then NotFound.
    let doomed_volume = ok(
        "create_volume to delete",
        home.create_volume(
            &source.snapshot_id,
            &a.availability_zone,
            &format!("contract-{run}-doomed"),
            &VolumeSettings::default(),
            &restore_tags,
        )
        .await,
    );
    wait_for_volume(home, &doomed_volume, "available", |v| v.state == VolumeState::Available && !v.busy).await;
    assert_eq!(ok("delete_volume", home.delete_volume(&doomed_volume).await), DeleteOutcome::Deleted);
    eventually(
        "the deleted volume disappears",
        || home.describe_volumes(std::slice::from_ref(&doomed_volume)),
        |seen: &Vec<VolumeStatus>| seen.is_empty().then_some(()),
    )
    .await;
    assert_eq!(ok("delete_volume again", home.delete_volume(&doomed_volume).await), DeleteOutcome::NotFound);
    assert_eq!(ok("delete unknown volume", home.delete_volume(&no_volume).await), DeleteOutcome::NotFound);

    // A database: Deleted (asked again while it is being deleted, still Deleted or already
    // NotFound), gone, then NotFound.
    let doomed_db = format!("snd-{run}");
    ok(
        "restore_database to delete",
        home.restore_database(&db_snapshot, &doomed_db, &DatabaseSettings::default(), &restore_tags).await,
    );
    wait_for_databases(home, &[&doomed_db], &[]).await;
    assert_eq!(ok("delete_database", home.delete_database(&doomed_db).await), DeleteOutcome::Deleted);
    let again = ok("delete_database while deleting", home.delete_database(&doomed_db).await);
    assert!(matches!(again, DeleteOutcome::Deleted | DeleteOutcome::NotFound), "{again:?}");
    wait_for_databases(home, &[], &[&doomed_db]).await;
    assert_eq!(ok("delete_database again", home.delete_database(&doomed_db).await), DeleteOutcome::NotFound);
    assert_eq!(ok("delete unknown database", home.delete_database(&no_database).await), DeleteOutcome::NotFound);

    // 14. Errors: unknown resources are NotFound (or a rejection naming the bad parameter).
    let outcome = home.snapshot_volume(&no_volume, &volume_tags).await;
    assert!(matches!(outcome, Err(CloudError::NotFound(_) | CloudError::Rejected { .. })), "{outcome:?}");
    let outcome = home.snapshot_instance(&no_instance, &VolumeSelection::All, &all_tags).await;
    assert!(
        matches!(outcome, Err(CloudError::NotFound(_) | CloudError::InstanceReleased(_) | CloudError::Rejected { .. })),
        "{outcome:?}"
    );
    let outcome = home.snapshot_database(&no_database, &format!("{db_snapshot}-x"), &all_tags).await;
    assert!(matches!(outcome, Err(CloudError::NotFound(_) | CloudError::Rejected { .. })), "{outcome:?}");
    let outcome = home
        .create_volume(
            &no_snapshot,
            &a.availability_zone,
            "contract-missing-1",
            &VolumeSettings::default(),
            &restore_tags,
        )
        .await;
    assert!(matches!(outcome, Err(CloudError::NotFound(_) | CloudError::Rejected { .. })), "{outcome:?}");
    let outcome = home
        .restore_database(&no_database, &format!("{restored}-x"), &DatabaseSettings::default(), &restore_tags)
        .await;
    assert!(matches!(outcome, Err(CloudError::NotFound(_) | CloudError::Rejected { .. })), "{outcome:?}");
    let outcome = home.rename_database(&no_database, &format!("{no_database}-x")).await;
    assert!(matches!(outcome, Err(CloudError::NotFound(_))), "{outcome:?}");
    assert!(ok("describe unknown DB", home.describe_databases(std::slice::from_ref(&no_database)).await).is_empty());
    let outcome = home.untag_resource(&no_database, &kept_until).await;
    assert!(matches!(outcome, Err(CloudError::NotFound(_))), "{outcome:?}");
    assert!(
        ok("describe unknown instance", home.describe_instances(std::slice::from_ref(&no_instance)).await).is_empty()
    );
}

/// Panics with `what` when a call the contract expects to work fails.
fn ok<T>(what: &str, outcome: CloudResult<T>) -> T {
    outcome.unwrap_or_else(|error| panic!("{what} failed: {error:?}"))
}

/// Looks again and again until `done` accepts what `observe` sees, for up to [`PATIENCE`].
/// Throttled or transient failures count as "not yet"; any other failure is a breach.
async fn eventually<X, T, Fut>(what: &str, mut observe: impl FnMut() -> Fut, done: impl Fn(&X) -> Option<T>) -> T
where
    X: Debug,
    Fut: Future<Output = CloudResult<X>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let last = match observe().await {
            Ok(seen) => match done(&seen) {
                Some(result) => return result,
                None => format!("{seen:?}"),
            },
            Err(error) if error.is_retryable() => error.to_string(),
            Err(error) => panic!("{what}: {error:?}"),
        };
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}; last seen {last}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Waits for an instance to reach `state`; an unknown instance asked alongside stays absent.
async fn wait_for_instance(cloud: &dyn Cloud, instance_id: &str, state: InstanceState, unknown: &str) {
    let ids = [instance_id.to_owned(), unknown.to_owned()];
    eventually(
        &format!("{instance_id} {state:?}"),
        || cloud.describe_instances(&ids),
        |seen: &Vec<Instance>| {
            matches!(seen.as_slice(), [i] if i.instance_id == instance_id && i.state == state).then_some(())
        },
    )
    .await
}

/// The one instance `instance_id`, as describe_instances reports it.
async fn described_instance(cloud: &dyn Cloud, instance_id: &str) -> Instance {
    let seen = ok("describe_instances", cloud.describe_instances(&[instance_id.to_owned()]).await);
    match <[Instance; 1]>::try_from(seen) {
        Ok([instance]) if instance.instance_id == instance_id => instance,
        other => panic!("describe_instances of {instance_id} must report it alone: {other:?}"),
    }
}

/// The one volume `volume_id`, as describe_volumes reports it.
async fn described_volume(cloud: &dyn Cloud, volume_id: &str) -> VolumeStatus {
    let seen = ok("describe_volumes", cloud.describe_volumes(&[volume_id.to_owned()]).await);
    match <[VolumeStatus; 1]>::try_from(seen) {
        Ok([volume]) if volume.volume_id == volume_id => volume,
        other => panic!("describe_volumes of {volume_id} must report it alone: {other:?}"),
    }
}

/// The one database `db_id`, as describe_databases reports it.
async fn described_database(cloud: &dyn Cloud, db_id: &str) -> DatabaseStatus {
    let seen = ok("describe_databases", cloud.describe_databases(&[db_id.to_owned()]).await);
    match <[DatabaseStatus; 1]>::try_from(seen) {
        Ok([database]) if database.db_id == db_id => database,
        other => panic!("describe_databases of {db_id} must report it alone: {other:?}"),
    }
}

/// Whether `tags` holds every tag of `wanted` with its value.
fn has_tags(tags: &Tags, wanted: &Tags) -> bool {
    wanted.iter().all(|(k, v)| tags.get(k) == Some(v))
}

/// Waits for a volume to satisfy `condition`.
async fn wait_for_volume(
    cloud: &dyn Cloud,
    volume_id: &str,
    what: &str,
    condition: impl Fn(&VolumeStatus) -> bool,
) -> VolumeStatus {
    let ids = [volume_id.to_owned()];
    eventually(
        &format!("{volume_id} {what}"),
        || cloud.describe_volumes(&ids),
        |seen: &Vec<VolumeStatus>| seen.iter().find(|v| v.volume_id == volume_id && condition(v)).cloned(),
    )
    .await
}

/// Waits until every database of `available` is available and none of `absent` exists.
async fn wait_for_databases(cloud: &dyn Cloud, available: &[&str], absent: &[&str]) {
    let ids: Vec<String> = available.iter().chain(absent).map(|id| id.to_string()).collect();
    eventually(
        &format!("databases {available:?} available, {absent:?} gone"),
        || cloud.describe_databases(&ids),
        |seen: &Vec<DatabaseStatus>| {
            let up = available.iter().all(|id| seen.iter().any(|d| d.db_id == *id && d.is_available()));
            let gone = absent.iter().all(|id| seen.iter().all(|d| d.db_id != *id));
            (up && gone).then_some(())
        },
    )
    .await
}

fn volume_set(started: &[StartedSnapshot]) -> BTreeSet<String> {
    started.iter().map(|s| s.volume_id.clone()).collect()
}

fn pairs(started: &[StartedSnapshot]) -> BTreeSet<(String, String)> {
    started.iter().map(|s| (s.snapshot_id.clone(), s.volume_id.clone())).collect()
}
