"""Configure EC2 instances at launch: on RunInstances, every launched instance
gets the policy's required tags it lacks and the administrator security group
when it is not in it, unless exempt or in dry run. Every outcome is an event on
aws/ec2/<instance-id>."""

import sys

import boto3
from botocore.exceptions import ClientError

import remediation as r

AUTOMATION = "ec2-launch"
PERMANENT = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed", "InvalidGroup.NotFound"}


def configure(ec2, event, policy, instance_id):
    resource = f"aws/ec2/{instance_id}"
    section = policy.get(AUTOMATION, {})
    try:
        found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        tags = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
        why = r.exempt(policy, AUTOMATION, instance_id, tags)
        if why:
            r.emit(event, "Skipped", AUTOMATION, resource, {"instance": instance_id, "reason": "exempt", "why": why})
            return 0
        missing = {k: v for k, v in section.get("required_tags", {}).items() if k not in tags}
        groups = [g["GroupId"] for g in found.get("SecurityGroups", [])]
        admin = section.get("admin_security_group")
        add_group = bool(admin) and admin not in groups
        if not missing and not add_group:
            r.emit(event, "Skipped", AUTOMATION, resource,
                   {"instance": instance_id, "reason": "already compliant", "why": "tags and security group in place"})
            return 0
        changes = []
        if missing:
            changes.append("tags " + ", ".join(f"{k}={v}" for k, v in sorted(missing.items())))
        if add_group:
            changes.append(f"security group {admin}")
        if r.dry_run(policy):
            r.emit(event, "Skipped", AUTOMATION, resource,
                   {"instance": instance_id, "reason": "dry-run", "would": "add " + " and ".join(changes)})
            return 0
        if missing:
            ec2.create_tags(Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in sorted(missing.items())])
        if add_group:
            ec2.modify_instance_attribute(InstanceId=instance_id, Groups=groups + [admin])
        r.emit(event, "Applied", AUTOMATION, resource,
               {"instance": instance_id, "action": "CreateTags/ModifyInstanceAttribute", "fixed": "added " + " and ".join(changes)})
        return 0
    except ClientError as e:
        return r.failed(event, AUTOMATION, resource, {"instance": instance_id}, e, PERMANENT)


def main():
    event = r.read_event()
    policy = r.load_policy()
    items = (event["detail"].get("responseElements") or {}).get("instancesSet", {}).get("items", [])
    ec2 = boto3.client("ec2")
    worst = 0
    for item in items:
        worst = max(worst, configure(ec2, event, policy, item["instanceId"]))
    return worst


if __name__ == "__main__":
    sys.exit(main())
