"""What the three fleetbus compliance automations share: reading the event
fleetbus hands a handler on stdin, the policy (exemptions, dry run), and the
`Remediation Applied` / `Remediation Skipped` / `Remediation Failed` events they
print on stdout, one JSON envelope per line, which fleetbus puts on the bus
(`emit_events: true`) and so on the resource's timeline.

Credentials and region come from the usual AWS places (the handler's HOME
~/.aws, or AWS_* variables in the target's `env:`); AWS_ENDPOINT_URL points the
SDK at another endpoint (a test emulator)."""

import json
import os
import sys

SOURCE = "fleetbus.remediation"
HERE = os.path.dirname(os.path.abspath(__file__))


def read_event():
    """The CloudTrail event as EventBridge delivers it (fleetbus's payload)."""
    return json.load(sys.stdin)


def load_policy():
    """`policy.json` beside the handlers, or the file REMEDIATION_POLICY names."""
    path = os.environ.get("REMEDIATION_POLICY") or os.path.join(HERE, "policy.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def dry_run(policy):
    """DRY_RUN=1 in the target's env, or "dry_run": true in the policy."""
    return os.environ.get("DRY_RUN") == "1" or bool(policy.get("dry_run"))


def exempt(policy, automation, resource_id, tags):
    """Why a resource is exempt from `automation`, or None: listed by id, or
    carrying one of the exempt tags (key=value) of the policy."""
    section = policy.get(automation, {})
    if resource_id in section.get("exempt_resources", []):
        return f"{resource_id} is listed in exempt_resources"
    for want in policy.get("exempt_tags", []) + section.get("exempt_tags", []):
        key, _, value = want.partition("=")
        if tags.get(key) == value:
            return f"tagged {key}={value}"
    return None


def who(event):
    identity = event.get("detail", {}).get("userIdentity", {})
    return identity.get("arn") or identity.get("principalId") or "unknown"


def emit(event, outcome, automation, resource, detail):
    """Prints one remediation event for fleetbus, caused by `event`."""
    body = {
        "automation": automation,
        "trigger": event.get("detail", {}).get("eventName"),
        "trigger_event_id": event.get("id"),
        "actor": who(event),
        "account": event.get("account"),
        "region": event.get("region"),
    }
    body.update(detail)
    print(json.dumps({
        "source": SOURCE,
        "detail-type": f"Remediation {outcome}",
        "resources": [resource],
        "detail": body,
    }), flush=True)


def failed(event, automation, resource, detail, error, permanent):
    """Reports an AWS error: a permanent one (the resource is gone, or not ours)
    as a Remediation Failed event (exit 0: retrying cannot help); another on
    stderr with exit 1, so fleetbus retries the delivery."""
    code = error.response["Error"]["Code"]
    if code in permanent:
        emit(event, "Failed", automation, resource, dict(detail, error=code, message=str(error)))
        return 0
    print(f"{automation} on {resource} failed: {error}", file=sys.stderr)
    return 1
