"""Drives fleetbus's AWS API with boto3, as an SDK user would: every action, its
paging and its errors. Run by crates/cli/tests/serve/aws_api.rs with the server's
endpoint and keys in the environment; prints one "ok <step>" line per step and
exits non-zero at the first surprise."""

import datetime
import json
import os
import sys
import time

import boto3
import botocore.config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["FLEETBUS_ENDPOINT"]
KEY, SECRET = os.environ["FLEETBUS_KEY"], os.environ["FLEETBUS_SECRET"]
TOKEN_KEY, TOKEN = os.environ["FLEETBUS_TOKEN_KEY"], os.environ["FLEETBUS_SESSION_TOKEN"]


def client(key=KEY, token=None):
    return boto3.client(
        "events",
        endpoint_url=ENDPOINT,
        region_name="local",
        aws_access_key_id=key,
        aws_secret_access_key=SECRET,
        aws_session_token=token,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def step(name):
    print("ok", name, flush=True)


def refused(code, fn, **kwargs):
    try:
        fn(**kwargs)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"{fn.__name__}: expected {code}, got {got}: {e}"
        return e.response["Error"]["Message"]
    raise AssertionError(f"{fn.__name__} {kwargs} was not refused")


ev = client()
start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)

r = ev.put_events(Entries=[{"Source": "boto3.test", "DetailType": "Lost", "Detail": json.dumps({"serial": "C02BOTO"})}])
assert r["FailedEntryCount"] == 0 and r["Entries"][0]["EventId"], r
step("PutEvents")

event = json.dumps({"id": "1", "account": "000000000000", "source": "boto3.test", "time": "2026-12-04T00:00:00Z",
                    "region": "local", "resources": [], "detail-type": "Lost", "detail": {}})
assert ev.test_event_pattern(EventPattern='{"source": ["boto3.test"]}', Event=event)["Result"] is True
refused("InvalidEventPatternException", ev.test_event_pattern, EventPattern='{"source": "x"}', Event=event)
step("TestEventPattern")

assert [b["Name"] for b in ev.list_event_buses()["EventBuses"]] == ["default"]
assert ev.describe_event_bus(Name="default")["Arn"] == "arn:aws:events:local:000000000000:event-bus/default"
step("ListEventBuses DescribeEventBus")

arn = ev.list_targets_by_rule(Rule="to-api")["Targets"][0]["Arn"]
made = ev.put_rule(Name="boto-lost", EventPattern='{"source": ["boto3.test"]}', Description="from boto3")
assert made["RuleArn"] == "arn:aws:events:local:000000000000:rule/boto-lost", made
assert ev.describe_rule(Name="boto-lost")["Description"] == "from boto3"
refused("ManagedRuleException", ev.put_rule, Name="to-api", EventPattern="{}")
refused("ValidationException", ev.put_rule, Name="no-pattern")
step("PutRule DescribeRule")

put = ev.put_targets(Rule="boto-lost", Targets=[{"Id": "t1", "Arn": arn, "InputPath": "$.detail"}])
assert put["FailedEntryCount"] == 0, put
assert ev.list_targets_by_rule(Rule="boto-lost")["Targets"] == [{"Id": "t1", "Arn": arn, "InputPath": "$.detail"}]
assert ev.list_rule_names_by_target(TargetArn=arn)["RuleNames"] == ["to-api", "boto-lost"]
step("PutTargets ListTargetsByRule ListRuleNamesByTarget")

names, token = [], None
while True:
    page = ev.list_rules(Limit=1, **({"NextToken": token} if token else {}))
    names += [r["Name"] for r in page["Rules"]]
    token = page.get("NextToken")
    if not token:
        break
assert names == ["all", "outcomes", "to-api", "boto-lost"], names
assert [r["Name"] for r in ev.list_rules(NamePrefix="boto")["Rules"]] == ["boto-lost"]
refused("ValidationException", ev.list_rules, NextToken="not-a-token")
step("ListRules paging")

ev.disable_rule(Name="boto-lost")
assert ev.describe_rule(Name="boto-lost")["State"] == "DISABLED"
ev.enable_rule(Name="boto-lost")
assert ev.describe_rule(Name="boto-lost")["State"] == "ENABLED"
step("DisableRule EnableRule")

refused("ValidationException", ev.delete_rule, Name="boto-lost")
ev.remove_targets(Rule="boto-lost", Ids=["t1"])
ev.delete_rule(Name="boto-lost")
refused("ResourceNotFoundException", ev.describe_rule, Name="boto-lost")
step("RemoveTargets DeleteRule")

archives = ev.list_archives()["Archives"]
assert archives[0]["ArchiveName"] == "default", archives
archive_arn = ev.describe_archive(ArchiveName="default")["ArchiveArn"]
step("ListArchives DescribeArchive")

time.sleep(1.1)
end = datetime.datetime.now(datetime.timezone.utc)
started = ev.start_replay(
    ReplayName="boto-replay", EventSourceArn=archive_arn, EventStartTime=start, EventEndTime=end,
    Destination={"Arn": "arn:aws:events:local:000000000000:event-bus/default",
                 "FilterArns": ["arn:aws:events:local:000000000000:rule/all"]})
assert started["ReplayArn"].endswith(":replay/boto-replay"), started
for _ in range(100):
    described = ev.describe_replay(ReplayName="boto-replay")
    if described["State"] == "COMPLETED":
        break
    time.sleep(0.1)
assert described["State"] == "COMPLETED", described
assert isinstance(described["EventStartTime"], datetime.datetime)
assert [r["ReplayName"] for r in ev.list_replays(State="COMPLETED")["Replays"]] == ["boto-replay"]
assert "COMPLETED" in refused("IllegalStatusException", ev.cancel_replay, ReplayName="boto-replay")
refused("ResourceNotFoundException", ev.describe_replay, ReplayName="nope")
step("StartReplay DescribeReplay ListReplays CancelReplay")

# Temporary credentials: the key's session token, carried and signed.
assert client(TOKEN_KEY, TOKEN).list_event_buses()["EventBuses"]
refused("UnrecognizedClientException", client(TOKEN_KEY, "not-the-token").list_event_buses)
refused("UnrecognizedClientException", client(TOKEN_KEY).list_event_buses)
refused("UnrecognizedClientException", client(KEY, TOKEN).list_event_buses)
step("X-Amz-Security-Token")

refused("UnrecognizedClientException", client("AKIANOTAKEYWEKNOW000").list_rules)
step("errors")
sys.exit(0)
