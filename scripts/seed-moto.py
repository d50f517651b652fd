#!/usr/bin/env python3
"""Seeds an AWS emulator (moto) with a service instance for snapnest to back up: running EC2
instances, each with its root volume and two data volumes (/dev/sdf 50 GiB, /dev/sdg
100 GiB), and one MySQL DB instance, all tagged service-instance-id=<id>.

    .tools/venv/bin/python scripts/seed-moto.py si-demo [--instances 2] [--tag-key service-instance-id]

It talks to wherever the AWS environment points (AWS_ENDPOINT_URL, AWS_REGION) and refuses
an endpoint that is not on this machine, so it never creates resources in a real account.
Running it again for the same id changes nothing. Uses boto3, installed into .tools/venv
with moto by scripts/install-tools.sh.
"""
import argparse
import os
import sys
from urllib.parse import urlparse

import boto3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service_instance_id")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--tag-key", default="service-instance-id")
    args = parser.parse_args()

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if urlparse(endpoint).hostname not in ("127.0.0.1", "localhost"):
        sys.exit(f"AWS_ENDPOINT_URL is {endpoint or 'not set'}: this script only seeds an emulator on this machine")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    ec2 = boto3.client("ec2", region_name=region)
    rds = boto3.client("rds", region_name=region)
    si, key = args.service_instance_id, args.tag_key
    tag = [{"Key": key, "Value": si}]

    existing = ec2.describe_instances(
        Filters=[{"Name": f"tag:{key}", "Values": [si]}, {"Name": "instance-state-name", "Values": ["running"]}]
    )
    instance_ids = [i["InstanceId"] for r in existing["Reservations"] for i in r["Instances"]]
    if not instance_ids:
        for _ in range(args.instances):
            instance = ec2.run_instances(
                ImageId="ami-1e749f67",
                InstanceType="t3.micro",
                MinCount=1,
                MaxCount=1,
                TagSpecifications=[{"ResourceType": "instance", "Tags": tag + [{"Key": "Name", "Value": si}]}],
            )["Instances"][0]
            zone = instance["Placement"]["AvailabilityZone"]
            for device, size in (("/dev/sdf", 50), ("/dev/sdg", 100)):
                volume = ec2.create_volume(AvailabilityZone=zone, Size=size)
                ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=instance["InstanceId"], Device=device)
            instance_ids.append(instance["InstanceId"])

    db_id = f"{si}-mysql"
    try:
        rds.describe_db_instances(DBInstanceIdentifier=db_id)
    except rds.exceptions.DBInstanceNotFoundFault:
        rds.create_db_instance(
            DBInstanceIdentifier=db_id,
            Engine="mysql",
            DBInstanceClass="db.t3.micro",
            AllocatedStorage=20,
            MasterUsername="admin",
            MasterUserPassword="seeded-password-1",
            Tags=tag,
        )
    print(f"{si} in {region}: instances {', '.join(instance_ids)} (3 volumes each), database {db_id}")


if __name__ == "__main__":
    main()
