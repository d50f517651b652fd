//! The launch of one instance by a clone or a disaster recovery, as part of the restore
//! machine (pure): register an image from the instance's root and data snapshots, launch
//! the instance from it, deregister the image once the instance is launched (or the launch
//! ended: an image left registered would hold the point's snapshots past their expiry).
//!
//! Every call is idempotent: the image is registered under a name of the restore's own
//! (a second registration finds the first), the instance launched with a client token.
//! The volume items of the instance follow its launch.

use crate::cloud::{tag, ImageDevice, ImageSpec, ImageState, InstanceState, Tags};
use crate::model::{LaunchStep, RestoreRecord, RestoreStep};
use crate::status::ItemStatus;

use super::machine::{volume_token, Command, Observation};
use super::plan::launch_devices;

/// The image of one launch: unique to the restore and the instance.
pub fn image_name(record: &RestoreRecord, instance_id: &str) -> String {
    format!("snapnest-{}-{instance_id}", record.restore_id)
}

/// Tags of the image, the instance and its volumes: snapnest's, and the instance it clones.
/// Not the service-instance tag: a clone is not part of the service instance.
pub fn launch_tags(record: &RestoreRecord, instance_id: &str) -> Tags {
    Tags::from([
        (tag::RESTORE_ID.to_owned(), record.restore_id.to_string()),
        (tag::SERVICE_INSTANCE.to_owned(), record.service_instance_id.clone()),
        (tag::BACKUP_ID.to_owned(), record.backup_id.to_string()),
        (tag::CLONE_OF.to_owned(), instance_id.to_owned()),
        (tag::MANAGED.to_owned(), "true".to_owned()),
    ])
}

fn image_spec(record: &RestoreRecord, l: usize) -> ImageSpec {
    let launch = &record.instances[l];
    let settings = &launch.settings;
    ImageSpec {
        name: image_name(record, &launch.instance_id),
        architecture: settings.architecture.clone(),
        root_device_name: settings.root_device_name.clone().unwrap_or_default(),
        ena_support: settings.ena_support,
        boot_mode: settings.boot_mode.clone(),
        devices: launch_devices(record, launch)
            .into_iter()
            .map(|item| ImageDevice {
                device: item.device.clone().unwrap_or_default(),
                snapshot_id: item.snapshot_id.clone().unwrap_or_default(),
                settings: item.volume_settings.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

fn run_instance(record: &RestoreRecord, l: usize, image_id: String) -> Command {
    let launch = &record.instances[l];
    Command::RunInstance {
        launch: l,
        image_id,
        settings: launch.settings.clone(),
        // The image's devices again: RunInstances makes the volumes as they say (type, IOPS,
        // and the encryption key, which RegisterImage cannot take).
        devices: image_spec(record, l).devices,
        client_token: volume_token(record, &launch.instance_id),
        tags: launch_tags(record, &launch.instance_id),
    }
}

/// The items of a launch: its instance's volumes.
fn items_of(record: &RestoreRecord, l: usize) -> Vec<usize> {
    let instance_id = record.instances[l].instance_id.as_str();
    let launched: Vec<&str> =
        launch_devices(record, &record.instances[l]).into_iter().map(|i| i.resource_id.as_str()).collect();
    (0..record.items.len())
        .filter(|&n| {
            record.items[n].instance_id.as_deref() == Some(instance_id)
                && launched.contains(&record.items[n].resource_id.as_str())
        })
        .collect()
}

/// Whether an item's volume is launched with an instance (and follows it).
pub fn is_launched(record: &RestoreRecord, n: usize) -> bool {
    let item = &record.items[n];
    item.kind == crate::model::ResourceKind::Volume
        && record.instances.iter().any(|l| item.instance_id.as_deref() == Some(l.instance_id.as_str()))
}

/// The launch ended without an instance: it and its volumes' items fail with the cause.
pub fn fail(record: &mut RestoreRecord, l: usize, cause: String) {
    let instance_id = record.instances[l].instance_id.clone();
    let launch = &mut record.instances[l];
    launch.status = ItemStatus::Failed;
    launch.error = Some(cause.clone());
    for n in items_of(record, l) {
        record.items[n].fail(format!("instance {instance_id}: {cause}"));
    }
}

/// Moves one launch on as far as `observed` allows; returns the calls to make now.
pub fn step(record: &mut RestoreRecord, l: usize, observed: &Observation) -> Vec<Command> {
    let mut commands = Vec::new();
    let name = image_name(record, &record.instances[l].instance_id);
    // What an earlier run made but could not write down (it died, or a cancel won the save)
    // is found by its name or tag, never made again.
    let launch = &mut record.instances[l];
    if launch.image_id.is_none() {
        if let Some(Some(found)) = observed.images_named.get(&name) {
            launch.image_id = Some(found.image_id.clone());
        }
    }
    if launch.new_instance_id.is_none() && launch.step == LaunchStep::Launching {
        launch.new_instance_id = observed.launched.get(&launch.instance_id).cloned();
    }
    let launch = &record.instances[l];
    match launch.image_id.clone() {
        Some(image_id) if !launch.image_released => {
            let served = launch.new_instance_id.is_some() || launch.status.is_terminal();
            let found_by_name = matches!(observed.images_named.get(&name), Some(Some(f)) if f.image_id == image_id);
            if served && (observed.images.contains_key(&image_id) || found_by_name) {
                commands.push(Command::DeregisterImage { launch: l, image_id });
            } else if served {
                record.instances[l].image_released = true;
            }
        }
        // Ended before its registration's answer came: released once its name is known free.
        None if launch.status.is_terminal() && matches!(observed.images_named.get(&name), Some(None)) => {
            record.instances[l].image_released = true;
        }
        _ => {}
    }
    let launch = &record.instances[l];
    if launch.status.is_terminal() {
        return commands;
    }
    match (launch.step, launch.image_id.clone(), launch.new_instance_id.clone()) {
        (LaunchStep::NotStarted, _, _) | (LaunchStep::RegisteringImage, None, _) => {
            let launch = &mut record.instances[l];
            launch.step = LaunchStep::RegisteringImage;
            launch.status = ItemStatus::Running;
            for n in items_of(record, l) {
                record.items[n].status = ItemStatus::Running;
                record.items[n].step = RestoreStep::Creating;
            }
            commands.push(Command::RegisterImage {
                launch: l,
                spec: image_spec(record, l),
                tags: launch_tags(record, &record.instances[l].instance_id),
            });
        }
        (LaunchStep::RegisteringImage, Some(image_id), _) => match observed.images.get(&image_id) {
            Some(image) if image.state == ImageState::Available => {
                record.instances[l].step = LaunchStep::Launching;
                commands.push(run_instance(record, l, image_id));
            }
            Some(image) if image.state == ImageState::Failed => {
                let why = image.reason.clone().unwrap_or_else(|| "no reason given".into());
                fail(record, l, format!("image {image_id} could not be registered: {why}"));
            }
            // Pending, or not visible yet right after the registration.
            _ => {}
        },
        // The launch was asked for and its answer lost: the client token answers the same instance.
        (LaunchStep::Launching, Some(image_id), None) => commands.push(run_instance(record, l, image_id)),
        (LaunchStep::Launching, _, Some(new_id)) => match observed.instances.get(&new_id).map(|i| i.state) {
            Some(InstanceState::Running) => {
                let at_device = |device: &Option<String>| {
                    observed.instances.get(&new_id).and_then(|i| {
                        i.volumes.iter().find(|v| Some(&v.device) == device.as_ref()).map(|v| v.volume_id.clone())
                    })
                };
                for n in items_of(record, l) {
                    let item = &mut record.items[n];
                    item.new_resource_id = at_device(&item.device);
                    item.step = RestoreStep::Done;
                    item.status = ItemStatus::Succeeded;
                }
                let launch = &mut record.instances[l];
                launch.step = LaunchStep::Done;
                launch.status = ItemStatus::Succeeded;
            }
            Some(InstanceState::Pending) | None => {}
            Some(state) => {
                fail(record, l, format!("instance {new_id} is {state:?} right after its launch"));
            }
        },
        (LaunchStep::Launching, None, None) => {
            fail(record, l, "no image to launch from".into());
            record.instances[l].image_released = true;
        }
        (LaunchStep::Done, _, _) => {}
    }
    commands
}

/// A launch's part of a cancel: what did not end is cancelled, with its volumes' items; an
/// image still registered is deregistered by the next steps.
pub fn cancel(record: &mut RestoreRecord) {
    for launch in record.instances.iter_mut().filter(|l| !l.status.is_terminal()) {
        launch.status = ItemStatus::Cancelled;
    }
}
