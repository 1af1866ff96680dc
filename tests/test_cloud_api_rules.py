"""The clouds' API rules, as a table, checked against every resource the real program registers.

Mocks accept any value; AWS and Azure refuse a description with the wrong character, a name one
character too long, the 11th tag of an S3 object. Each rule below names the page (or provider
source or issue) it comes from, and carries a resource that breaks it: a test feeds that to the
rule, so no rule passes because it cannot fail, and another makes sure every rule meets at least
one resource of the program, so none passes because it never looks.

The program is evaluated the ways a user runs it: the dev stack (create mode, both test VMs),
PSK mode, bring-your-own networks (the prod example), one disk image file, and the longest names
the config accepts (a 20-character prefix, a resource group of 83 characters plus ``-images``).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from cross_cloud_vpn.lab_cloud import Evaluation, Registration, evaluate
from cross_cloud_vpn.openbsd.platform import instance_type_problem
from cross_cloud_vpn.program import build
from cross_cloud_vpn.stack_file import read_stack_file
from tests.conftest import DEV_STACK, PSK, REPO
from tests.test_disk_image import make_disk
from tests.test_image_file_config import with_image_file

P = "cross-cloud-vpn:"
SECRET_KEYS = {P + "sshPrivateKey", P + "psk"}

#: Pulumi auto-names a resource whose name the program leaves open: the logical name and a random
#: suffix (pulumi-aws: "-" and 7 characters), https://www.pulumi.com/docs/iac/concepts/resources/names/
AUTONAME_SUFFIX = "-abcdef0"


@dataclass(frozen=True)
class Facts:
    """What a rule needs to know besides the resource itself."""

    aws_default_tags: Mapping[str, str]
    """The AWS provider's ``default_tags``: the provider adds them to every resource it tags."""


@dataclass(frozen=True)
class Rule:
    name: str
    source: str
    """Where the rule comes from: an API reference page, the provider's source or an issue."""
    types: frozenset[str]
    check: Callable[[Registration, Facts], list[str]]
    """The problems of one resource of ``types`` (none: it keeps the rule)."""
    violation: Registration
    """A resource that breaks the rule: the rule must flag it."""


def fake(typ: str, name: str = "x", **inputs: Any) -> Registration:
    """A resource as the lab cloud records it, with only the inputs a rule looks at."""
    return Registration(urn=f"urn:pulumi:test::cross-cloud-vpn::{typ}::{name}", type=typ, name=name,
                        parent="", custom=True, dependencies=[], property_dependencies={},
                        secret_inputs=set(), inputs=inputs)


def _at(inputs: Mapping[str, Any], path: str) -> Any:
    value: Any = inputs
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def text_rule(path: str, max_len: int, allowed: str | None = None, min_len: int = 0) -> Callable[
        [Registration, Facts], list[str]]:
    """A description's length and, with ``allowed`` (a regex character class body), its characters."""

    def check(reg: Registration, _: Facts) -> list[str]:
        value = _at(reg.inputs, path)
        if value is None:
            return []
        problems = []
        if not min_len <= len(value) <= max_len:
            problems.append(f"{path} {value!r} has {len(value)} characters, not {min_len}-{max_len}")
        bad = sorted(set(re.sub(f"[{allowed}]", "", value))) if allowed is not None else []
        if bad:
            problems.append(f"{path} {value!r} has characters the API refuses: {bad}")
        return problems

    return check


def name_rule(path: str, min_len: int, max_len: int, pattern: str | None = None,
              autonamed: bool = True) -> Callable[[Registration, Facts], list[str]]:
    """The name the cloud gets: the input at ``path``, or (``autonamed``) Pulumi's auto-name."""

    def check(reg: Registration, facts: Facts) -> list[str]:
        value = _at(reg.inputs, path)
        if value is None:
            if not autonamed:
                return []
            value = reg.name + AUTONAME_SUFFIX
        problems = []
        if not min_len <= len(value) <= max_len:
            problems.append(f"name {value!r} ({path}) has {len(value)} characters, not {min_len}-{max_len}")
        if pattern is not None and not re.fullmatch(pattern, value):
            problems.append(f"name {value!r} ({path}) does not match {pattern}")
        return problems

    return check


def tag_count_rule(limit: int, default_tags: bool) -> Callable[[Registration, Facts], list[str]]:
    """At most ``limit`` tags, the provider's default tags counted (AWS adds them itself)."""

    def check(reg: Registration, facts: Facts) -> list[str]:
        tags = {**(facts.aws_default_tags if default_tags else {}), **(reg.inputs.get("tags") or {})}
        return [f"{len(tags)} tags (default tags included), more than {limit}"] if len(tags) > limit else []

    return check


def aws_tag_lengths(reg: Registration, facts: Facts) -> list[str]:
    tags = {**facts.aws_default_tags, **(reg.inputs.get("tags") or {})}
    return [f"tag {k!r}: key over 128 or value over 256 characters"
            for k, v in tags.items() if len(k) > 128 or len(v) > 256]


def encrypted_volumes(reg: Registration, _: Facts) -> list[str]:
    """AWSGuard's encrypted-volumes: the root block device and every EBS block device encrypted."""
    root = reg.inputs.get("rootBlockDevice")
    problems = [] if root and root.get("encrypted") else ["root block device not encrypted"]
    problems += [f"EBS block device {d.get('deviceName')} not encrypted"
                 for d in reg.inputs.get("ebsBlockDevices") or [] if not d.get("encrypted")]
    return problems


def openbsd_instance_family(reg: Registration, _: Facts) -> list[str]:
    """The OpenBSD gateway (not the Linux test VM) runs on a type whose network OpenBSD drives."""
    if not reg.name.endswith("-gateway"):
        return []
    problem = instance_type_problem(str(reg.inputs.get("instanceType")))
    return [f"instanceType {reg.inputs.get('instanceType')!r}: {problem}"] if problem else []


def imds_hop_limit(reg: Registration, _: Facts) -> list[str]:
    """Where IMDSv1 stays on (no token required), token answers must not leave the instance."""
    options = reg.inputs.get("metadataOptions") or {}
    if options.get("httpTokens") == "required" or options.get("httpPutResponseHopLimit") == 1:
        return []
    return [f"httpTokens {options.get('httpTokens')!r} with a hop limit of "
            f"{options.get('httpPutResponseHopLimit')!r}, not 1"]


EC2_TEXT = r"a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*"
SG_RULE_TYPES = frozenset({
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "aws:ec2/securityGroupRule:SecurityGroupRule",
})
AWS_TAGGED = frozenset({
    "aws:ec2/vpc:Vpc", "aws:ec2/internetGateway:InternetGateway", "aws:ec2/subnet:Subnet",
    "aws:ec2/routeTable:RouteTable", "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/keyPair:KeyPair",
    "aws:ec2/instance:Instance", "aws:ec2/eip:Eip", "aws:s3/bucket:Bucket", "aws:iam/role:Role",
    "aws:ebs/snapshotImport:SnapshotImport", "aws:ec2/ami:Ami", *SG_RULE_TYPES,
})
S3_OBJECTS = frozenset({"aws:s3/bucketObjectv2:BucketObjectv2", "aws:s3/bucketObject:BucketObject"})
AZ = "azure-native:"
AZURE_TAGGED = frozenset(f"{AZ}{t}" for t in (
    "resources:ResourceGroup", "network:VirtualNetwork", "network:NetworkSecurityGroup",
    "network:RouteTable", "network:PublicIPAddress", "network:NetworkInterface",
    "compute:VirtualMachine", "storage:StorageAccount", "compute:Image"))
#: "Naming rules and restrictions for Azure resources", the source of every Azure name rule below.
AZURE_NAMES = "https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules"


def azure_name(kind: str, key: str, min_len: int, max_len: int, pattern: str | None = None) -> Rule:
    """One row of Microsoft's naming-rules page; the violation is one character too long."""
    return Rule(f"azure {kind} name {min_len}-{max_len}", f"{AZURE_NAMES} ({kind})",
                frozenset({AZ + kind}), name_rule(key, min_len, max_len, pattern),
                fake(AZ + kind, **{key: "a" * (max_len + 1)}))


RULES: list[Rule] = [
    # --- descriptions ---------------------------------------------------------------------------
    Rule("ec2 security group description",
         # "Constraints: Up to 255 characters in length. Valid characters: a-z, A-Z, 0-9, spaces,
         # and ._-:/()#,@[]+=&;{}!$*"
         "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html",
         frozenset({"aws:ec2/securityGroup:SecurityGroup"}), text_rule("description", 255, EC2_TEXT),
         fake("aws:ec2/securityGroup:SecurityGroup", description="anything from both sites' networks")),
    Rule("ec2 security group rule description",
         # AuthorizeSecurityGroupIngress/Egress take the rule's description in IpRange: the same
         # characters, up to 255.
         "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_IpRange.html",
         SG_RULE_TYPES, text_rule("description", 255, EC2_TEXT),
         fake("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", description="x" * 256)),
    Rule("azure nsg rule description",
         # SecurityRule.properties.description: "A description for this rule. Restricted to 140 chars."
         "https://learn.microsoft.com/rest/api/virtualnetwork/security-rules/create-or-update",
         frozenset({AZ + "network:SecurityRule"}), text_rule("description", 140),
         fake(AZ + "network:SecurityRule", description="x" * 141)),
    Rule("ami description",
         # RegisterImage Description: "Constraints: Up to 255 characters".
         "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RegisterImage.html",
         frozenset({"aws:ec2/ami:Ami"}), text_rule("description", 255),
         fake("aws:ec2/ami:Ami", name="openbsd", description="x" * 256)),
    Rule("iam role description",
         # CreateRole Description: up to 1000 characters of [\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF].
         "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html",
         frozenset({"aws:iam/role:Role"}), text_rule("description", 1000, "\t\n\r\x20-\x7e\xa1-\xff"),
         fake("aws:iam/role:Role", name="vmimport", description="role \u2013 with an en dash")),
    # --- names ----------------------------------------------------------------------------------
    Rule("ec2 key pair name",
         # ImportKeyPair KeyName: "A unique name for the key pair." Up to 255 ASCII characters.
         "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ImportKeyPair.html",
         frozenset({"aws:ec2/keyPair:KeyPair"}), name_rule("keyName", 1, 255),
         fake("aws:ec2/keyPair:KeyPair", "k" * 250)),
    Rule("ec2 security group name",
         # CreateSecurityGroup GroupName: up to 255 characters, the description's characters.
         "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html",
         frozenset({"aws:ec2/securityGroup:SecurityGroup"}), name_rule("name", 1, 255, f"[{EC2_TEXT}]+"),
         fake("aws:ec2/securityGroup:SecurityGroup", name="site's gateway")),
    Rule("iam role name",
         # CreateRole RoleName: length 1-64, pattern [\w+=,.@-]+.
         "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html",
         frozenset({"aws:iam/role:Role"}), name_rule("name", 1, 64, r"[\w+=,.@-]+"),
         fake("aws:iam/role:Role", "r" * 57)),
    Rule("s3 bucket name",
         # 3-63 characters: lowercase letters, digits, dots and hyphens, a letter or digit at each end.
         "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html",
         frozenset({"aws:s3/bucket:Bucket"}), name_rule("bucket", 3, 63, r"[a-z0-9][a-z0-9.-]*[a-z0-9]"),
         fake("aws:s3/bucket:Bucket", "CCVPN-images")),
    Rule("ami name",
         # RegisterImage Name: "3-128 alphanumeric characters, parentheses (()), square brackets
         # ([]), spaces ( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or
         # underscores(_)".
         "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RegisterImage.html",
         frozenset({"aws:ec2/ami:Ami"}), name_rule("name", 3, 128, r"[a-zA-Z0-9()\[\] ./\-'@_]+"),
         fake("aws:ec2/ami:Ami", name="openbsd:7.6")),
    azure_name("resources:ResourceGroup", "resourceGroupName", 1, 90, r"[-\w.()]*[-\w()]"),
    azure_name("network:VirtualNetwork", "virtualNetworkName", 2, 64),
    azure_name("network:Subnet", "subnetName", 1, 80),
    azure_name("network:NetworkSecurityGroup", "networkSecurityGroupName", 1, 80),
    azure_name("network:SecurityRule", "securityRuleName", 1, 80),
    azure_name("network:RouteTable", "routeTableName", 1, 80),
    azure_name("network:Route", "routeName", 1, 80),
    azure_name("network:PublicIPAddress", "publicIpAddressName", 1, 80),
    azure_name("network:NetworkInterface", "networkInterfaceName", 1, 80),
    azure_name("compute:VirtualMachine", "vmName", 1, 64),
    Rule("azure linux computer name",
         # Microsoft.Compute virtualMachines: "Linux VMs: 1-64" for the host (computer) name.
         f"{AZURE_NAMES} (compute:VirtualMachine)",
         frozenset({AZ + "compute:VirtualMachine"}),
         name_rule("osProfile.computerName", 1, 64, autonamed=False),
         fake(AZ + "compute:VirtualMachine", osProfile={"computerName": "c" * 65})),
    azure_name("storage:StorageAccount", "accountName", 3, 24, "[a-z0-9]+"),
    azure_name("storage:BlobContainer", "containerName", 3, 63, r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*"),
    azure_name("compute:Image", "imageName", 1, 80),
    # --- tags -----------------------------------------------------------------------------------
    Rule("aws tags per resource",
         # "Maximum number of tags per resource: 50"; the provider's default_tags are sent too
         # (pulumi-aws merges them into tagsAll).
         "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions",
         AWS_TAGGED, tag_count_rule(50, default_tags=True),
         fake("aws:ec2/vpc:Vpc", tags={f"t{i}": "x" for i in range(45)})),
    Rule("aws tag key and value lengths",
         # Key: 128 Unicode characters; value: 256 (the Name tag too).
         "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions",
         AWS_TAGGED | S3_OBJECTS, aws_tag_lengths,
         fake("aws:ec2/instance:Instance", tags={"Name": "n" * 257})),
    Rule("s3 object tags",
         # "You can associate up to 10 tags with an object."
         "https://docs.aws.amazon.com/AmazonS3/latest/userguide/tagging-managing.html",
         S3_OBJECTS, tag_count_rule(10, default_tags=True),
         fake("aws:s3/bucketObjectv2:BucketObjectv2", tags={f"t{i}": "x" for i in range(5)})),
    Rule("azure tags per resource",
         # "Each resource, resource group, and subscription can have a maximum of 50 tag name-value pairs."
         "https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations",
         AZURE_TAGGED, tag_count_rule(50, default_tags=False),
         fake(AZ + "network:VirtualNetwork", tags={f"t{i}": "x" for i in range(51)})),
    # --- machines -------------------------------------------------------------------------------
    Rule("ec2 volumes encrypted",
         # Pulumi's AWSGuard policy pack, encrypted-volumes: the root block device and every EBS
         # block device of an instance are encrypted.
         "https://github.com/pulumi/pulumi-policy-aws/blob/master/src/compute.ts",
         frozenset({"aws:ec2/instance:Instance"}), encrypted_volumes,
         fake("aws:ec2/instance:Instance", rootBlockDevice={"volumeType": "gp3"})),
    Rule("ec2 imds hop limit with imdsv1",
         # The PUT response hop limit; 1 keeps token answers on the instance.
         "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-options.html",
         frozenset({"aws:ec2/instance:Instance"}), imds_hop_limit,
         fake("aws:ec2/instance:Instance", metadataOptions={"httpTokens": "optional"})),
    # --- instance families -----------------------------------------------------------------------
    Rule("openbsd gateway on a xen-based instance family",
         # "All Nitro-based instances use ENA"; OpenBSD has no ENA driver, its xnf(4) switches a
         # Xen instance's interfaces to Netfront. The Debian test VM may use any family.
         "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/enhanced-networking.html, "
         "https://man.openbsd.org/xnf.4",
         frozenset({"aws:ec2/instance:Instance"}), openbsd_instance_family,
         fake("aws:ec2/instance:Instance", name="ccvpn-dev-aws-gateway", instanceType="t3.small")),
]

#: The AWS provider's default tags for the violations: the tag-count rules must count them.
VIOLATION_FACTS = Facts(aws_default_tags={f"default{i}": "x" for i in range(6)})


def facts_of(ev: Evaluation) -> Facts:
    tags: dict[str, str] = {}
    for provider in ev.by_type("pulumi:providers:aws"):
        raw = provider.inputs.get("defaultTags")
        tags.update((json.loads(raw) if isinstance(raw, str) else raw or {}).get("tags") or {})
    return Facts(aws_default_tags=tags)


def problems_of(ev: Evaluation) -> Iterator[str]:
    facts = facts_of(ev)
    for reg in ev.resources:
        for rule in RULES:
            if reg.type in rule.types:
                yield from (f"{reg.urn}: {rule.name}: {p} ({rule.source})" for p in rule.check(reg, facts))


# --- the program's evaluations ----------------------------------------------------------------

def _with(values: dict[str, str], key: str, **changes: Any) -> dict[str, str]:
    obj = json.loads(values[P + key])
    obj.update(changes)
    return {**values, P + key: json.dumps(obj)}


def _dev(keys: tuple[str, str]) -> dict[str, str]:
    values = read_stack_file(DEV_STACK)
    values[P + "sshPublicKey"], values[P + "sshPrivateKey"] = keys
    return values


MODES = ("dev", "psk", "byo", "image_file", "longest_names")


@pytest.fixture(scope="module")
def evaluations(ssh_keypair: tuple[str, str], iked_public_keys: dict[str, str],
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Evaluation]:
    """Each mode's evaluation, made once for the module."""
    folder = tmp_path_factory.mktemp("rules")
    dev = _dev(ssh_keypair)
    prod = {**read_stack_file(REPO / "Pulumi.prod.example.yaml"),
            P + "sshPublicKey": ssh_keypair[0], P + "sshPrivateKey": ssh_keypair[1]}
    configs: dict[str, tuple[dict[str, str], str]] = {
        "dev": (dev, "dev"),
        "psk": ({**_with(dev, "tunnel", authMode="psk"), P + "psk": PSK}, "dev"),
        "byo": (prod, "prod"),
    }
    if shutil.which("qemu-img"):
        image = with_image_file(dev, make_disk(folder / "openbsd.raw"))
        configs["image_file"] = (image, "dev")
        longest = _with(image, "azure", resourceGroupName="g" * 83)
        longest[P + "prefix"] = "abcdefghijklmnopqrst"
        longest[P + "tags"] = json.dumps({f"owner{i}": "x" * 256 for i in range(7)})
        configs["longest_names"] = (longest, "dev")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder / "cache"))
        return {mode: evaluate(build, values, SECRET_KEYS, stack=stack, public_keys=iked_public_keys)
                for mode, (values, stack) in configs.items()}


@pytest.mark.parametrize("mode", MODES)
def test_every_registered_resource_keeps_every_cloud_api_rule(
    evaluations: dict[str, Evaluation], mode: str
) -> None:
    if mode not in evaluations:
        pytest.skip("needs qemu-img (qemu-utils) for the image file")
    ev = evaluations[mode]
    assert len(ev.resources) > 20, f"{mode}: the program registered only {len(ev.resources)} resources"
    problems = list(problems_of(ev))
    assert not problems, f"{mode}: {len(problems)} broken cloud API rules:\n" + "\n".join(problems)


def test_every_rule_meets_a_resource_of_the_program(evaluations: dict[str, Evaluation]) -> None:
    if len(evaluations) < len(MODES):
        pytest.skip("needs qemu-img (qemu-utils) for the image file")
    types = {r.type for ev in evaluations.values() for r in ev.resources}
    idle = [rule.name for rule in RULES if not rule.types & types]
    assert not idle, f"rules that no resource of the program meets (a type misspelt?): {idle}"


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name.replace(" ", "_"))
def test_each_rule_flags_a_resource_that_breaks_it(rule: Rule) -> None:
    assert rule.violation.type in rule.types
    assert rule.check(rule.violation, VIOLATION_FACTS), f"{rule.name} lets its own violation through"


def test_aws_tag_counts_include_the_providers_default_tags() -> None:
    """45 own tags pass alone; the provider's 6 default tags make 51."""
    (rule,) = [r for r in RULES if r.name == "aws tags per resource"]
    assert not rule.check(rule.violation, Facts(aws_default_tags={}))
    assert rule.check(rule.violation, VIOLATION_FACTS)


def test_the_providers_default_tags_are_read_from_the_program(evaluations: dict[str, Evaluation]) -> None:
    assert facts_of(evaluations["dev"]).aws_default_tags.keys() >= {"project", "stack", "owner"}


def test_the_longest_accepted_names_are_what_the_longest_names_mode_registers(
    evaluations: dict[str, Evaluation],
) -> None:
    """The mode must really reach the limits the config allows, or it proves nothing."""
    if "longest_names" not in evaluations:
        pytest.skip("needs qemu-img (qemu-utils) for the image file")
    groups = {r.inputs["resourceGroupName"] for r in evaluations["longest_names"].by_type(
        AZ + "resources:ResourceGroup")}
    assert f"{'g' * 83}-images" in groups and len(f"{'g' * 83}-images") == 90
