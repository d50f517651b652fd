#!/usr/bin/env python3
"""Creates snapnest's DynamoDB table from its one definition (SnapnestTable in template.yaml),
wherever the AWS environment points (AWS_ENDPOINT_URL for moto, or a real account).

    .tools/venv/bin/python scripts/create-table.py <table-name>

Uses boto3 and PyYAML, both installed into .tools/venv by scripts/install-tools.sh.
"""
import os
import pathlib
import sys

import boto3
import yaml


class CloudFormationLoader(yaml.SafeLoader):
    """Reads short-form intrinsic functions (!Ref, !Sub...) as plain values."""


CloudFormationLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    name = sys.argv[1]
    template = pathlib.Path(__file__).resolve().parent.parent / "template.yaml"
    props = yaml.load(template.read_text(), Loader=CloudFormationLoader)["Resources"]["SnapnestTable"]["Properties"]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    client = boto3.client("dynamodb", region_name=region)
    client.create_table(
        TableName=name,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
        DeletionProtectionEnabled=False,
        # publish-events reads the table's stream (docs/events.md).
        StreamSpecification={"StreamEnabled": True, "StreamViewType": props["StreamSpecification"]["StreamViewType"]},
    )
    client.get_waiter("table_exists").wait(TableName=name)
    ttl = props["TimeToLiveSpecification"]
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": ttl["Enabled"]}
    )
    print(f"table {name} created from template.yaml")


if __name__ == "__main__":
    main()
