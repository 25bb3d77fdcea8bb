"""Who is in the simulated organization: the generated projects, the relabelled ones, the named additions.

`build_roster` runs the `Plan` in its fixed order (so a seed keeps giving the same numbers), then renames the
line items of two cheap team projects to an embeddings model and to the model genai-prices cannot price
(amounts unchanged), and appends the named rhythm and runaway projects, which draw from generators of their
own.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from openai_cost_exporter.fake.plan import (
    DIRECTIONS,
    SPIKE_NAME,
    FakeProject,
    Plan,
    Spender,
    relabel,
    relabel_candidates,
)
from openai_cost_exporter.fake.prices import EMBEDDING_MODEL, UNPRICED_MODEL
from openai_cost_exporter.fake.traffic import FLAT, Profile, batch_profile

NIGHTLY_BATCH = "Nightly Batch"
STEADY_SEARCH = "Steady Search"
TINY_TOOL = "Tiny Tool"
AGENT_LOOP = "Agent Loop"
_RELABELLED = 2  # projects given other models: the unpriced one and the embeddings one


@dataclass(frozen=True, slots=True)
class Roster:
    """Projects, their spenders (plus the unattributed one), and the ids of the projects with a role."""

    projects: list[FakeProject]
    spenders: list[Spender]
    ids: dict[str, str]  # role ("spike", "embeddings", "unpriced", "nightly_batch", ...) -> project id


def build_roster(
    plan: Plan,
    project_count: int,
    archived_count: int | None,
    *,
    spike: bool,
    unattributed: bool,
    rhythm: bool,
    batch_peak_hour: int,
    runaway: bool,
) -> Roster:
    """Generate the organization's projects in the plan's fixed order, then the additions."""
    names = plan.names(project_count, spike)
    projects = [plan.project(i, name) for i, name in enumerate(names)]
    spike_index = names.index(SPIKE_NAME) if spike and SPIKE_NAME in names else None
    if spike and spike_index is None and projects:
        spike_index = 0  # too few projects for the named one: the default project spikes
    archived_count = project_count // 10 if archived_count is None else archived_count
    projects = plan.archive(projects, archived_count, keep={0, spike_index})
    spenders = [plan.spender(p, spike=i == spike_index) for i, p in enumerate(projects)]
    ids = {"spike": projects[spike_index].id} if spike_index is not None else {}
    ids.update(_relabel_models(projects, spenders, spike_index))
    if unattributed:
        spenders.append(plan.unattributed())
    for role, (name, model, usd, profile) in _named(rhythm, batch_peak_hour, runaway).items():
        project, spender = plan.named(name, model, usd, profile)
        projects.append(project)
        spenders.append(spender)
        ids[role] = project.id
    return Roster(projects, spenders, ids)


def _relabel_models(projects: list[FakeProject], spenders: list[Spender], spike_index: int | None) -> dict[str, str]:
    """The cheapest team project bills an unpriced model; a mid-priced one's last item becomes embeddings."""
    candidates = relabel_candidates(projects, spike_index)
    if len(candidates) < _RELABELLED:
        return {}
    cheap, middle = candidates[0], candidates[len(candidates) // 2]
    model = projects[cheap].line_items[0].rpartition(", ")[0]
    names = {f"{model}, {d}": f"{UNPRICED_MODEL}, {d}" for d in DIRECTIONS}
    projects[cheap], spenders[cheap] = relabel(projects[cheap], spenders[cheap], names)
    last = projects[middle].line_items[-1]
    names = {last: f"{EMBEDDING_MODEL}, input"}
    projects[middle], spenders[middle] = relabel(projects[middle], spenders[middle], names)
    return {"unpriced": projects[cheap].id, "embeddings": projects[middle].id}


def _named(rhythm: bool, batch_peak_hour: int, runaway: bool) -> dict[str, tuple[str, str, Decimal, Profile]]:
    named: dict[str, tuple[str, str, Decimal, Profile]] = {}
    if rhythm:
        named["nightly_batch"] = (NIGHTLY_BATCH, "gpt-4o-mini-2024-07-18", Decimal(300), batch_profile(batch_peak_hour))
        named["steady_search"] = (STEADY_SEARCH, "gpt-4.1-2025-04-14", Decimal(2000), FLAT)
        named["tiny_tool"] = (TINY_TOOL, "gpt-4o-mini-2024-07-18", Decimal(2), FLAT)
    if runaway:
        named["agent_loop"] = (AGENT_LOOP, "o3-2025-04-16", Decimal(120), FLAT)  # flat: a runaway at any hour
    return named
