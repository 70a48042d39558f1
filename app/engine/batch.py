"""A claimed batch's evaluation: the webhook queries of each (entity type, visibility) group are
merged and run once for the group's entities (app.engine.compiled; graphql-core for what does not
compile, and for everything when compiled queries are off), and each (webhook, entity) gets its
outcome — an encoded payload, the budget it breached, or a payload its filter did not match.

Groups run concurrently, each at its own pace. An entity's outcomes are ready once every group it
belongs to has finished, so the entities of the groups that finished can go on (`wait_ready`)
while a slow group — one owner's costly query, bounded by its evaluation budget — holds back only
the entities it is about: that owner's own, and whatever else its visibility admits."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.engine.compiled import evaluate_group
from app.evaluation.compile import CompiledQuery, QueryError, compile_query
from app.evaluation.execute import Breach, Budgets, Encoded, encode_within, evaluate_many
from app.policy import ids
from app.policy.filters import Condition, FilterError, entity_root, matches, parse
from app.store.pending import SubscribedWebhook
from app.types import Action, EntityType, Visibility

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (entity type, entity id)
EventKey = tuple[int, str, int]  # (webhook id, entity type, entity id)
GroupKey = tuple[EntityType, int | None]  # (entity type, the owner whose visibility it runs with)


@dataclass(frozen=True, slots=True)
class Filtered:
    """A payload the webhook's filter did not match: recorded SKIPPED ('filtered'), never sent."""

    encoded: Encoded


Outcome = Encoded | Breach | Filtered


@dataclass(frozen=True, slots=True)
class Due:
    """An entity the evaluator claimed, as it was when claimed."""

    entity_type: EntityType
    entity_id: int
    action: Action
    seller_id: int | None
    last_change_at: datetime
    version: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Due:
        """A claimed `pending_entities` row (`pending.claim_due`)."""
        return cls(EntityType(row["entity_type"]), row["entity_id"], Action(row["action"]), row["seller_id"],
                   row["last_change_at"], row["version"])

    @property
    def key(self) -> Key:
        return self.entity_type.value, self.entity_id

    @property
    def global_id(self) -> str:
        return ids.encode(self.entity_type.graphql_name, self.entity_id)


async def _some_then_stragglers(tasks: list[asyncio.Task[Any]], straggler_s: float, first_s: float | None) -> None:
    """Until one of `tasks` finished (at most `first_s`, if given) and then the others, up to
    `straggler_s` more; at once when there are none."""
    if tasks:
        done, running = await asyncio.wait(tasks, timeout=first_s, return_when=asyncio.FIRST_COMPLETED)
        if done and running:
            await asyncio.wait(running, timeout=straggler_s)


@functools.lru_cache(maxsize=1024)
def _condition(text: str) -> Condition | None:
    """A stored filter, parsed once per process. Stored filters were checked when registered;
    one that no longer parses (None) lets every payload through, and says so in the log."""
    try:
        return parse(text)
    except FilterError as exc:
        log.error("a stored filter no longer parses; delivering every payload: %s", exc)
        return None


@dataclass
class _Group:
    members: list[Due]  # the entities any of its webhooks wants, in claim order
    by_query: dict[CompiledQuery, list[SubscribedWebhook]]  # webhooks sharing a query share its run
    task: asyncio.Task[dict[CompiledQuery, list[Any]]] | None = None


class Batch:
    """The evaluation of one claim, started on construction: one task per group."""

    def __init__(
        self,
        due: Sequence[Due],
        webhooks: Sequence[SubscribedWebhook],
        *,
        pool: asyncpg.Pool,
        schema: Any,
        make_context: Callable[..., Any],
        settings: Any,
        budgets: Budgets,
    ) -> None:
        self.due = list(due)
        self._budgets = budgets
        self._groups: dict[GroupKey, _Group] = {}
        self._wanted: dict[int, list[Due]] = {}  # webhook id → the entities it gets an outcome for
        self._hooks: dict[int, SubscribedWebhook] = {}
        self._of_entity: dict[Key, list[GroupKey]] = defaultdict(list)
        self._encoded: dict[int, Encoded | Breach] = {}  # shared payload objects: encoded and hashed once
        self._taken: set[Key] = set()
        entities: dict[GroupKey, dict[Key, Due]] = defaultdict(dict)
        for hook in webhooks:
            entity_type = EntityType(hook.entity_type)
            compiled = compile_query(schema, hook.query, entity_type)
            if isinstance(compiled, QueryError):  # stored queries were validated; a schema change may break one
                log.error("webhook %s: its query no longer compiles: %s", hook.id, compiled.message)
                continue
            visibility = Visibility(hook.seller_id)
            mine = [
                d for d in self.due
                if d.entity_type is entity_type and d.action.value in hook.events and visibility.may_see(d.seller_id)
            ]
            if mine:
                key = (entity_type, hook.seller_id)
                group = self._groups.setdefault(key, _Group([], {}))
                group.by_query.setdefault(compiled, []).append(hook)
                entities[key].update((d.key, d) for d in mine)
                self._wanted[hook.id] = mine
                self._hooks[hook.id] = hook
        # One context (one set of DataLoaders) per visibility: groups find rows in the loaders' caches.
        contexts: dict[int | None, Any] = {}
        for key, group in self._groups.items():
            group.members = list(entities[key].values())
            for d in group.members:
                self._of_entity[d.key].append(key)
            seller = key[1]
            if seller not in contexts:
                contexts[seller] = make_context(pool, Visibility(seller), settings)
            queries = list(group.by_query)
            # Each group breaches alone: its outcomes say so, and the others' are unaffected.
            # Compiled (HOOKQL_COMPILED_QUERIES): one statement per group; what does not compile,
            # and everything when the setting is off, through graphql-core. Equal payloads either way.
            run = (
                evaluate_group(pool, schema, contexts[seller], queries, [d.entity_id for d in group.members],
                               [d.global_id for d in group.members], seller, budgets)
                if settings.compiled_queries
                else evaluate_many(schema, contexts[seller], queries, [d.global_id for d in group.members], budgets)
            )
            group.task = asyncio.ensure_future(run)

    @property
    def events(self) -> int:
        """Outcomes this batch produces: one per (webhook, entity it wants)."""
        return sum(len(v) for v in self._wanted.values())

    @property
    def executions(self) -> int:
        """Group runs per entity, summed: the evaluation work, in entity × group."""
        return sum(len(g.members) for g in self._groups.values())

    @property
    def finished(self) -> bool:
        return all(g.task is None or g.task.done() for g in self._groups.values())

    def _tasks(self) -> list[asyncio.Task[Any]]:
        return [g.task for g in self._groups.values() if g.task is not None]

    async def wait_ready(self, straggler_s: float, first_s: float) -> list[Due]:
        """Wait for every group, but no longer than `straggler_s` after the first one finished,
        nor than `first_s` for the first one; then take the entities whose groups have all
        finished (none, when none did), and raise the first group's error if one failed
        (`as_ready` hands over the rest, group by group)."""
        await _some_then_stragglers(self._tasks(), straggler_s, first_s)
        return self._take()

    async def as_ready(self, straggler_s: float) -> AsyncIterator[list[Due]]:
        """The entities not taken yet, in turns as their groups finish: after each running group
        that finishes and up to `straggler_s` for the others, those whose groups have all finished
        (raising the first group's error if one failed), until every entity is taken."""
        while not self.finished or self.untaken():
            await _some_then_stragglers([t for t in self._tasks() if not t.done()], straggler_s, None)
            yield self._take()

    def _take(self) -> list[Due]:
        for task in self._tasks():
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        ready = [
            d for d in self.due
            if d.key not in self._taken and all(self._group_done(k) for k in self._of_entity.get(d.key, ()))
        ]
        self._taken.update(d.key for d in ready)
        return ready

    def _group_done(self, key: GroupKey) -> bool:
        task = self._groups[key].task
        return task is None or task.done()

    def cancel(self) -> None:
        for task in self._tasks():
            task.cancel()

    def untaken(self) -> list[Due]:
        """The entities not taken yet: those whose groups are still running (or have just finished)."""
        return [d for d in self.due if d.key not in self._taken]

    def owners_waiting(self) -> set[int]:
        """The owners (the entities' sellers, 0 for none) of the entities not taken yet."""
        return {d.seller_id or 0 for d in self.untaken()}

    def outcomes(self, entities: Sequence[Due]) -> dict[EventKey, Outcome]:
        """Each (webhook, entity) outcome for these entities, whose groups have all finished.
        Webhooks sharing a query share one payload object: encoded, measured and hashed once."""
        wanted_keys = {d.key for d in entities}
        out: dict[EventKey, Outcome] = {}
        for group in self._groups.values():
            if not any(d.key in wanted_keys for d in group.members):
                continue
            assert group.task is not None and group.task.done()
            results = group.task.result()
            for compiled, hooks in group.by_query.items():
                by_entity = dict(zip((d.key for d in group.members), results[compiled], strict=True))
                root = entity_root(compiled.entity_type.graphql_name)
                for hook in hooks:
                    condition = _condition(hook.filter) if hook.filter else None
                    for d in self._wanted[hook.id]:
                        if d.key not in wanted_keys:
                            continue
                        outcome = by_entity[d.key]
                        if isinstance(outcome, Breach):
                            out[(hook.id, *d.key)] = outcome
                            continue
                        if id(outcome) not in self._encoded:
                            self._encoded[id(outcome)] = encode_within(outcome, self._budgets.payload_bytes)
                        result = self._encoded[id(outcome)]
                        # Filtered after evaluation and its budgets, before skip-identical (the enqueue).
                        if condition is not None and isinstance(result, Encoded) and not matches(
                            condition, outcome, root
                        ):
                            out[(hook.id, *d.key)] = Filtered(result)
                        else:
                            out[(hook.id, *d.key)] = result
        return out
