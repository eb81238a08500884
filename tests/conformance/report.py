"""The table a run prints: one row per case, a summary, and the outputs behind the
rows that did not pass."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tests.conformance.cases import Row

COLUMNS = (("case", 24), ("expected", 32), ("got", 62))
STATUSES = ("PASS", "FAIL", "XFAIL", "XPASS")


@dataclass(frozen=True)
class Report:
    plugin: str
    rows: tuple[Row, ...]
    unknown_expectations: tuple[str, ...] = ()  # expect-fail names matching no row

    @property
    def unexpected(self) -> list[Row]:
        return [row for row in self.rows if row.unexpected]

    @property
    def ok(self) -> bool:
        return not self.unexpected and not self.unknown_expectations

    def summary(self) -> str:
        counts = Counter(row.status for row in self.rows)
        parts = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
        verdict = "ok" if self.ok else "NOT OK"
        return f"{self.plugin}: {len(self.rows)} cases: {parts}: {verdict}"

    def table(self) -> str:
        lines = [fit_row([name for name, _ in COLUMNS] + ["result"])]
        lines += [
            fit_row([row.case, row.expected, row.got, row.status]) for row in self.rows
        ]
        return "\n".join(lines)

    def render(self, verbose: bool = False) -> str:
        """The table, the summary, why each XFAIL is expected, and the full output
        of every FAIL and XPASS (of XFAIL too when verbose)."""
        out = [self.table(), "", self.summary()]
        known = [row for row in self.rows if row.known is not None]
        if known:
            out += ["", "expected failures (from the profile or --expect-fail):"]
            out += [f"  {row.case} [{row.status}]: {row.known}" for row in known]
        for name in self.unknown_expectations:
            out.append(f"  {name}: expected to fail, but no such case")
        shown = [
            row
            for row in self.rows
            if row.unexpected or (verbose and row.status == "XFAIL")
        ]
        for row in shown:
            out += ["", f"--- {row.case} [{row.status}]", row.detail or row.got]
        return "\n".join(out)


def fit_row(cells: list[str]) -> str:
    parts = []
    for cell, (_, width) in zip(cells, COLUMNS, strict=False):
        text = " ".join(cell.split())
        if len(text) > width:
            text = text[: width - 3] + "..."
        parts.append(text.ljust(width))
    return " ".join([*parts, cells[-1]]).rstrip()
