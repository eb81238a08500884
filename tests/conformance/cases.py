"""The cases and how each is judged: the verb x version matrix, GC releasing unlisted
attachments, the DEL shapes, the bad-input corpus and the leftover checks. Each case
yields one row: what the spec expects, what the plugin did, and the verdict."""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import itertools
import json
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import testbed as tb
from tests.conformance.invoke import Outcome, cni_environ, execute
from tests.conformance.profile import Profile
from tests.conformance.sandbox import Sandbox

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"
# Spec error codes the cases expect (spec section "Error").
INCOMPATIBLE_VERSION = 1
INVALID_ENVIRONMENT = 4
DECODING_FAILURE = 6
INVALID_CONFIG = 7
MIB = 1 << 20


def at_least(version: str, minimum: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    return key(version) >= key(minimum)


class SetupFailed(Exception):
    """A step before the case's own call failed; the row fails and says which."""

    def __init__(self, msg: str, detail: str = "") -> None:
        super().__init__(msg)
        self.detail = detail or msg


@dataclass(frozen=True)
class Verdict:
    ok: bool
    got: str
    detail: str = ""


@dataclass(frozen=True)
class Row:
    case: str
    expected: str
    got: str
    ok: bool
    known: str | None  # why the row is expected to fail, when it is
    detail: str

    @property
    def status(self) -> str:
        if self.known is None:
            return "PASS" if self.ok else "FAIL"
        return "XPASS" if self.ok else "XFAIL"

    @property
    def unexpected(self) -> bool:
        return self.status in ("FAIL", "XPASS")


@dataclass
class Attachment:
    """One (container, ifname) in one pod namespace, and what ADD returned."""

    container_id: str
    ifname: str
    pod: str
    netns: str
    prev: dict[str, Any] | None = None  # the chained plugin's result
    result: dict[str, Any] | None = None  # our ADD's result

    def listed(self) -> dict[str, str]:
        return {"containerID": self.container_id, "ifname": self.ifname}


@dataclass
class Runner:
    sandbox: Sandbox
    profile: Profile
    plugin: Path
    template: dict[str, Any]
    cni_path: str
    chain_template: dict[str, Any] | None = None
    expect_fail: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    # --- running it all ---------------------------------------------------------

    def run(self) -> list[Row]:
        baseline = self.sandbox.node_links()
        for version in VERSIONS:
            self.matrix(version)
        self.gc_releases()
        self.del_shapes()
        self.bad_inputs()
        self.leftovers(baseline)
        return self.rows

    def record(self, case: str, expected: str, judge: Callable[[], Verdict]) -> None:
        try:
            verdict = judge()
        except SetupFailed as exc:
            verdict = Verdict(False, f"setup failed: {exc}", exc.detail)
        known = self.expect_fail.get(case)
        self.rows.append(
            Row(case, expected, verdict.got, verdict.ok, known, verdict.detail)
        )

    # --- calling plugins --------------------------------------------------------

    def config(
        self,
        version: str,
        template: dict[str, Any] | None = None,
        *,
        prev: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The template at a version, with prevResult (when given) and extra keys."""
        config = copy.deepcopy(template if template is not None else self.template)
        config["cniVersion"] = version
        if prev is not None:
            config["prevResult"] = prev
        config.update(extra or {})
        return config

    def call(
        self,
        command: str,
        att: Attachment | None,
        config: dict[str, Any] | bytes,
        *,
        overrides: dict[str, str | None] | None = None,
        plugin: Path | None = None,
    ) -> Outcome:
        stdin = config if isinstance(config, bytes) else json.dumps(config).encode()
        env = cni_environ(
            command,
            container_id=att.container_id if att else None,
            netns=att.netns if att else None,
            ifname=att.ifname if att else None,
            cni_path=self.cni_path,
            overrides=overrides,
        )
        return execute(plugin or self.plugin, self.sandbox.node_path, env, stdin)

    def attach(self) -> Attachment:
        pod = self.sandbox.new_pod()
        cid = f"{self.sandbox.prefix}-c{next(self._ids)}"
        return Attachment(cid, "eth0", pod, str(tb.netns_path(pod)))

    def chain_plugin(self) -> Path:
        assert self.profile.chain is not None
        name = self.profile.chain.plugin
        if "/" in name:
            return Path(name)
        for directory in self.cni_path.split(":"):
            candidate = Path(directory) / name
            if candidate.is_file():
                return candidate
        raise SetupFailed(f"chained plugin {name} not found in {self.cni_path}")

    def chain_add(self, att: Attachment, version: str) -> None:
        """Run the plugin we are chained after; its result becomes our prevResult."""
        if self.chain_template is None:
            return
        out = self.call(
            "ADD",
            att,
            self.config(version, self.chain_template),
            plugin=self.chain_plugin(),
        )
        doc = out.document()
        if out.exit_code != 0 or not isinstance(doc, dict):
            raise SetupFailed(f"chained ADD@{version}: {out.summary()}", out.detail())
        att.prev = doc

    def add(self, att: Attachment, version: str) -> Outcome:
        self.chain_add(att, version)
        out = self.call("ADD", att, self.config(version, prev=att.prev))
        doc = out.document()
        if out.exit_code == 0 and isinstance(doc, dict):
            att.result = doc
        return out

    def must_add(self, att: Attachment, version: str) -> None:
        out = self.add(att, version)
        if att.result is None:
            raise SetupFailed(f"ADD@{version}: {out.summary()}", out.detail())

    def delete(self, att: Attachment, version: str, **overrides: str | None) -> Outcome:
        """DEL as a runtime sends it: with the cached result from 0.4.0 on."""
        prev = att.result if at_least(version, "0.4.0") else None
        return self.call(
            "DEL", att, self.config(version, prev=prev), overrides=overrides
        )

    def teardown(self, att: Attachment, version: str, deleted: bool = True) -> None:
        """Best effort: DEL what a failed row left, then the chained plugin's part.
        Anything still left shows in the leftover rows."""
        if not deleted and att.result is not None:
            self.delete(att, self.profile.version)
        if self.chain_template is not None and att.prev is not None:
            prev = att.prev if at_least(version, "0.4.0") else None
            self.call(
                "DEL",
                att,
                self.config(version, self.chain_template, prev=prev),
                plugin=self.chain_plugin(),
            )

    # --- the verb x version matrix ----------------------------------------------

    def matrix(self, version: str) -> None:
        new_verbs = at_least(version, "1.1.0")
        self.record(
            f"VERSION@{version}",
            f"exit 0, lists {version}",
            lambda: self.judge_version(version),
        )

        att = self.attach()
        self.record(
            f"ADD@{version}",
            f"exit 0, {version} result",
            lambda: expect_result(self.add(att, version), version),
        )

        def check() -> Outcome:
            config = self.config(version, prev=att.result)
            return self.call("CHECK", att, config)

        if at_least(version, "0.4.0"):
            self.record(f"CHECK@{version}", "exit 0", lambda: expect_ok(check()))
        else:
            self.record(
                f"CHECK@{version}",
                "error, code 1",
                lambda: expect_error(check(), {INCOMPATIBLE_VERSION}),
            )

        def status() -> Outcome:
            return self.call("STATUS", None, self.config(version))

        def gc() -> Outcome:
            listed = {VALID_ATTACHMENTS: [att.listed()]}
            return self.call("GC", None, self.config(version, extra=listed))

        for verb, call in (("STATUS", status), ("GC", gc)):
            if new_verbs:
                self.record(f"{verb}@{version}", "exit 0", judged(call, expect_ok))
            else:
                self.record(
                    f"{verb}@{version}",
                    "error, code 1 (4: unknown verb)",
                    judged(call, expect_unsupported),
                )

        deleted = [False]

        def delete() -> Verdict:
            verdict = expect_ok(self.delete(att, version))
            deleted[0] = verdict.ok
            return verdict

        self.record(f"DEL@{version}", "exit 0", delete)
        self.teardown(att, version, deleted[0])

    def judge_version(self, version: str) -> Verdict:
        out = self.call("VERSION", None, json.dumps({"cniVersion": version}).encode())
        doc = out.document()
        supported = doc.get("supportedVersions") if isinstance(doc, dict) else None
        if out.exit_code != 0 or not isinstance(supported, list):
            return Verdict(False, out.summary(), out.detail())
        ok = version in supported and all(isinstance(v, str) for v in supported)
        got = f"exit 0, lists {', '.join(map(str, supported))}"
        return Verdict(ok, got, out.detail())

    def gc_releases(self) -> None:
        """GC keeps the attachments it is given and releases the others: afterwards
        CHECK passes for a listed attachment and fails for an unlisted one."""
        version = "1.1.0"
        keep, drop = self.attach(), self.attach()

        def judge() -> Verdict:
            self.must_add(keep, version)
            self.must_add(drop, version)
            listed = {VALID_ATTACHMENTS: [keep.listed()]}
            gc = self.call("GC", None, self.config(version, extra=listed))
            if gc.exit_code != 0:
                raise SetupFailed(f"GC: {gc.summary()}", gc.detail())
            kept = self.call("CHECK", keep, self.config(version, prev=keep.result))
            gone = self.call("CHECK", drop, self.config(version, prev=drop.result))
            ok = kept.exit_code == 0 and gone.exit_code != 0
            got = f"listed: {kept.summary(30)}; unlisted: {gone.summary(30)}"
            detail = f"CHECK listed: {kept.detail()}\nCHECK unlisted: {gone.detail()}"
            return Verdict(ok, got, detail)

        try:
            self.record(
                f"GC-releases@{version}", "CHECK listed 0, unlisted != 0", judge
            )
        finally:
            for att in (keep, drop):
                self.teardown(att, version, deleted=False)

    # --- DEL in every shape a runtime sends it ----------------------------------

    def del_shapes(self) -> None:
        version = self.profile.version

        def unknown_container() -> Verdict:
            return expect_ok(self.call("DEL", self.attach(), self.config(version)))

        self.record("DEL-unknown-container", "exit 0", unknown_container)

        not_a_netns = self.sandbox.state_dir / "runner" / "not-a-netns"
        not_a_netns.parent.mkdir(exist_ok=True)
        not_a_netns.write_text("")
        shapes: dict[str, dict[str, str | None]] = {
            "DEL-netns-empty": {"CNI_NETNS": ""},
            "DEL-netns-missing": {"CNI_NETNS": None},
            "DEL-netns-gone": {},
            "DEL-netns-not-a-netns": {"CNI_NETNS": str(not_a_netns)},
        }
        for case, overrides in shapes.items():
            self.del_once(case, version, overrides)

        # One attachment deleted three times: without prevResult (the runtime lost
        # its cache), then as a retry with it, then again without.
        att = self.attach()

        def first() -> Outcome:
            return self.call("DEL", att, self.config(version))

        def retry() -> Outcome:
            return self.delete(att, version)

        def no_prev() -> Verdict:
            self.must_add(att, version)
            return expect_ok(first())

        self.record("DEL-no-prevResult", "exit 0", no_prev)
        self.record("DEL-second", "exit 0", lambda: expect_ok(retry()))
        self.record("DEL-third", "exit 0", lambda: expect_ok(first()))
        self.teardown(att, version)

    def del_once(
        self, case: str, version: str, overrides: dict[str, str | None]
    ) -> None:
        att = self.attach()
        deleted = [False]

        def judge() -> Verdict:
            self.must_add(att, version)
            if case == "DEL-netns-gone":
                self.sandbox.remove_pod(att.pod)
            verdict = expect_ok(self.delete(att, version, **overrides))
            deleted[0] = verdict.ok
            return verdict

        self.record(case, "exit 0", judge)
        self.teardown(att, version, deleted[0])

    # --- the bad-input corpus ---------------------------------------------------

    def bad_inputs(self) -> None:
        version = self.profile.version
        chained = self.attach()
        setup_error: tuple[str, str] | tuple[()] = ()
        try:
            self.chain_add(chained, version)
        except SetupFailed as exc:
            setup_error = (str(exc), exc.detail)

        for bad in bad_input_corpus(self.profile):

            def judge(bad: BadInput = bad) -> Verdict:
                if setup_error:
                    raise SetupFailed(*setup_error)
                att = self.attach()
                config = self.config(version, prev=chained.prev)
                stdin = bad.stdin(config)
                out = self.call(bad.command, att, stdin, overrides=bad.env)
                if out.exit_code == 0 and bad.command == "ADD":
                    # Accepted: undo it with the same environment and a sane config.
                    undo = {**bad.env, "CNI_COMMAND": "DEL"}
                    self.call("DEL", att, self.config(version), overrides=undo)
                return expect_error(out, bad.codes)

            codes = " or ".join(str(c) for c in sorted(bad.codes))
            self.record(bad.case, f"error, code {codes}", judge)
        self.teardown(chained, version)

    # --- what is left afterwards ------------------------------------------------

    def leftovers(self, baseline: set[str]) -> None:
        def links() -> Verdict:
            new = self.sandbox.node_links() - baseline
            leaked = sorted(new - self.profile.shared_links)
            shared = sorted(new & self.profile.shared_links)
            got = ", ".join(leaked) or "none"
            if shared:
                got += f" (shared, allowed: {', '.join(shared)})"
            return Verdict(not leaked, got, "\n".join(leaked))

        self.record("leftover-node-links", "none", links)
        self.record("leftover-state", "none", self.judge_state)

    def judge_state(self) -> Verdict:
        state = self.sandbox.state_dir
        leaked = []
        for path in sorted(state.rglob("*")):
            rel = str(path.relative_to(state))
            if rel.split("/")[0] in ("runner", "bpffs") or not path.is_file():
                continue
            if not any(fnmatch.fnmatch(rel, pat) for pat in self.profile.state_allow):
                leaked.append(f"file {rel}")
        for probe in self.profile.probes:
            db = state / probe.sqlite
            if db.exists():
                with contextlib.closing(sqlite3.connect(db)) as conn:
                    rows = conn.execute(probe.query).fetchall()
                leaked += [f"{probe.sqlite} row {tuple(row)}" for row in rows]
        for name in self.profile.empty_maps:
            leaked += [f"map {name} entry {e}" for e in self.map_entries(name)]
        got = "; ".join(leaked) or "none"
        return Verdict(not leaked, got, "\n".join(leaked))

    def map_entries(self, name: str) -> list[str]:
        pin = self.sandbox.bpffs() / name
        if not pin.exists():
            return ["(not pinned: is the profile's emptyMaps right?)"]
        proc = subprocess.run(
            ["bpftool", "-j", "map", "dump", "pinned", str(pin)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            return [f"(bpftool failed: {proc.stderr.strip()})"]
        return [render_key(e.get("key")) for e in json.loads(proc.stdout or "[]")]


def render_key(key: Any) -> str:
    """A 4-byte key (bpftool prints hex strings) as an IPv4 address, else as JSON."""
    if isinstance(key, list) and len(key) == 4:
        with contextlib.suppress(TypeError, ValueError):
            return ".".join(str(int(b, 16)) for b in key)
    return json.dumps(key)


# --- judging outcomes -----------------------------------------------------------


def expect_ok(out: Outcome) -> Verdict:
    return Verdict(out.exit_code == 0, out.summary(), out.detail())


def judged(
    call: Callable[[], Outcome], expect: Callable[[Outcome], Verdict]
) -> Callable[[], Verdict]:
    return lambda: expect(call())


def expect_unsupported(out: Outcome) -> Verdict:
    """A verb the version does not have: code 1, or 4 from a plugin that does not
    know the verb at all."""
    return expect_error(out, {INCOMPATIBLE_VERSION, INVALID_ENVIRONMENT})


def expect_error(out: Outcome, codes: set[int]) -> Verdict:
    """Failed, with exactly one JSON error object on stdout carrying one of codes."""
    err = out.error()
    ok = out.exit_code != 0 and err is not None and err["code"] in codes
    return Verdict(ok, out.summary(), out.detail())


def expect_result(out: Outcome, version: str) -> Verdict:
    if out.exit_code != 0:
        return Verdict(False, out.summary(), out.detail())
    problems = result_problems(out.document(), version)
    if problems:
        return Verdict(False, f"exit 0, {problems[0]}", out.detail())
    ips = out.document().get("ips", [])
    return Verdict(True, f"exit 0, {version} result, {len(ips)} ip", out.detail())


def result_problems(doc: Any, version: str) -> list[str]:
    """How a result differs from the shape of the version it claims (spec section
    "Success"; 1.0.0 dropped the "version" key of each IP)."""
    if not isinstance(doc, dict):
        return ["stdout is not one JSON object"]
    problems = []
    if doc.get("cniVersion") != version:
        problems.append(f"cniVersion {doc.get('cniVersion')!r}, asked for {version}")
    interfaces = doc.get("interfaces", [])
    if not isinstance(interfaces, list) or not all(
        isinstance(i, dict) and isinstance(i.get("name"), str) for i in interfaces
    ):
        problems.append("interfaces is not a list of objects with a name")
        interfaces = []
    ips = doc.get("ips", [])
    if not isinstance(ips, list):
        return [*problems, "ips is not a list"]
    for n, ip in enumerate(ips):
        if not isinstance(ip, dict) or not isinstance(ip.get("address"), str):
            problems.append(f"ips[{n}] has no address")
            continue
        if at_least(version, "1.0.0") and "version" in ip:
            problems.append(f"ips[{n}] carries version, removed in 1.0.0")
        if not at_least(version, "1.0.0") and ip.get("version") not in ("4", "6"):
            problems.append(f'ips[{n}] lacks version "4"/"6"')
        index = ip.get("interface")
        if index is not None and not (
            isinstance(index, int) and 0 <= index < len(interfaces)
        ):
            problems.append(f"ips[{n}].interface {index!r} names no interface")
    return problems


# --- the bad-input corpus -------------------------------------------------------


@dataclass(frozen=True)
class BadInput:
    case: str
    codes: set[int]
    stdin: Callable[[dict[str, Any]], bytes]
    env: dict[str, str | None] = field(default_factory=dict)
    command: str = "ADD"


def as_json(config: dict[str, Any]) -> bytes:
    return json.dumps(config).encode()


def changed(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    """The config with keys set (or removed, for None)."""

    def render(config: dict[str, Any]) -> bytes:
        for key, value in changes.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        return as_json(config)

    return render


def bad_input_corpus(profile: Profile) -> list[BadInput]:
    def wrong_type(config: dict[str, Any]) -> bytes:
        if profile.wrong_type is None:
            raise SetupFailed("the profile names no wrongType field")
        tb.set_path(
            config, profile.wrong_type.path.split("."), profile.wrong_type.value
        )
        return as_json(config)

    def truncated(config: dict[str, Any]) -> bytes:
        text = as_json(config)
        return text[: len(text) // 2]

    env = INVALID_ENVIRONMENT
    return [
        BadInput("bad-json", {DECODING_FAILURE}, truncated),
        BadInput("wrong-type", {INVALID_CONFIG}, wrong_type),
        BadInput("missing-type", {INVALID_CONFIG}, changed(type=None)),
        BadInput("missing-name", {INVALID_CONFIG}, changed(name=None)),
        BadInput("name-illegal", {INVALID_CONFIG}, changed(name="bad net/../x")),
        BadInput(
            "unknown-version", {INCOMPATIBLE_VERSION}, changed(cniVersion="9.9.9")
        ),
        BadInput(
            "stdin-over-1MiB",
            {DECODING_FAILURE, INVALID_CONFIG},
            changed(padding="x" * MIB),
        ),
        BadInput(
            "cid-traversal", {env}, as_json, {"CNI_CONTAINERID": "../../etc/passwd"}
        ),
        BadInput("cid-300-chars", {env}, as_json, {"CNI_CONTAINERID": "c" * 300}),
        BadInput(
            "cid-non-ascii", {env}, as_json, {"CNI_CONTAINERID": "ctr-\u00e9\u4e2d"}
        ),
        BadInput("ifname-16-chars", {env}, as_json, {"CNI_IFNAME": "eth0123456789abc"}),
        BadInput("ifname-slash", {env}, as_json, {"CNI_IFNAME": "eth/0"}),
        BadInput("ifname-dotdot", {env}, as_json, {"CNI_IFNAME": ".."}),
        BadInput("cni-path-empty", {env}, as_json, {"CNI_PATH": ""}),
        BadInput("unknown-command", {env}, as_json, {"CNI_COMMAND": "FROB"}, "FROB"),
    ]
