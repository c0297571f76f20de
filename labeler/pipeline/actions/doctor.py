"""What `labeler doctor` checks about actions, where they are configured: that the policy publishes nothing
descriptive about matches in child-safety banks, that the PDS we take content down on accepts our password, and
that the Altitude deployment review items go to answers (and its proxy accepts our token).

A label is public: anyone can page through `queryLabels?uriPatterns=*` or replay `subscribeLabels?cursor=0`. A
descriptive value (`csam-hash-match`) on a post is therefore a public list of where matched abuse imagery is.
"""

from __future__ import annotations

import httpx

from labeler.config import ConfigError, Settings
from labeler.declaration import DEFAULT_LABEL, load_declaration
from labeler.identity.doctor import Finding
from labeler.pipeline.actions.altitude.api import AltitudeApi, AltitudeError
from labeler.pipeline.actions.config import (
    ActionsConfig,
    AltitudeConfig,
    TakedownConfig,
    check_policy,
    load_actions,
)
from labeler.pipeline.actions.xrpc_call import XrpcFailure, xrpc
from labeler.pipeline.policy import Policy, load_policy

_PROBE_DID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"  # any DID: the answer to a wrong password comes before the lookup
_PROBE_CASE = "0" * 24  # an ObjectId no case has: Altitude answers 404, its proxy 401/403 first
_SAFE_FIX = (
    'for child-safety banks use labels = ["!hide"] with label_distance = -1 (nothing public before a person '
    "confirms), or remove the rule to get the child-safety default"
)


async def action_findings(settings: Settings, http: httpx.AsyncClient) -> list[Finding]:
    try:
        config = load_actions(settings.extra)
        declaration = load_declaration(settings)
        default = declaration.definitions[0].identifier if declaration.definitions else str(DEFAULT_LABEL["identifier"])
        policy = load_policy(
            settings.extra,
            default,
            child_safety_banks=config.child_safety_banks,
            takedown=config.takedown is not None,
            report=config.report is not None,
        )
        check_policy(policy, config)
    except ConfigError as exc:
        return [Finding("actions", "fail", str(exc), "fix labeler.toml")]
    findings = [child_safety_finding(policy, config)] if config.child_safety_banks else []
    if config.takedown is not None:
        findings.append(await takedown_finding(config.takedown, http))
    if config.altitude is not None:
        findings.append(await altitude_finding(config.altitude))
    return findings


def child_safety_finding(policy: Policy, config: ActionsConfig) -> Finding:
    """Warn when a rule would publish a descriptive label about a match in a child-safety bank."""
    banks = config.child_safety_banks
    problems = [
        f"rule {rule.name!r} publishes {', '.join(rule.descriptive_labels())} for bank {bank}"
        for bank in banks
        for rule in policy.rules_for(bank)
        if rule.descriptive_labels()
    ]
    if problems:
        return Finding(
            "child-safety", "warn", "; ".join(problems) + ": a public index of where the images are", _SAFE_FIX
        )
    return Finding("child-safety", "ok", f"no descriptive public label for {', '.join(banks)}")


async def takedown_finding(config: TakedownConfig, http: httpx.AsyncClient) -> Finding:
    """Ask the PDS's admin API something harmless: a wrong password is refused before anything is looked up."""
    try:
        await xrpc(
            http,
            "GET",
            config.pds_url,
            "com.atproto.admin.getSubjectStatus",
            params={"did": _PROBE_DID},
            auth=httpx.BasicAuth("admin", config.admin_password),
        )
    except XrpcFailure as failure:
        if failure.status in (401, 403):
            return Finding(
                "takedown", "fail", f"{config.pds_url} refuses the admin password", "fix admin_password_file"
            )
        if failure.status is None or failure.status >= 500:
            return Finding("takedown", "warn", f"cannot reach the admin API: {failure.detail}", "check pds_url")
    return Finding("takedown", "ok", f"{config.pds_url} accepts the admin password")


async def altitude_finding(config: AltitudeConfig) -> Finding:
    """Read a case that does not exist: a 404 is Altitude itself answering past its proxy."""
    api = AltitudeApi(config.url, config.token, timeout=config.timeout, max_image_bytes=0)
    try:
        await api.latest_review(_PROBE_CASE)
    except AltitudeError as exc:
        if exc.code == "http-404":
            return Finding("altitude", "ok", f"{config.url} answers Altitude's case API")
        if exc.code in ("http-401", "http-403"):
            return Finding("altitude", "fail", f"{config.url} refuses our token ({exc.code})", "fix token_file")
        return Finding("altitude", "warn", f"cannot reach Altitude: {exc}", "check [actions.altitude] url")
    finally:
        await api.aclose()
    return Finding("altitude", "warn", f"{config.url} has a case {_PROBE_CASE}: is it Altitude?", "check the url")
