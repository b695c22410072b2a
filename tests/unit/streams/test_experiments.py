"""The pure half of the experiment tallies and of the decisions agent's parsing."""

from __future__ import annotations

import time

from aura.state.bandits import new_decision_id
from schemas.codec import codec
from streams.decisions import conversions_and_rewards, parse
from streams.experiments import ConversionEvent, ExposureFact, Source, attribute, fold, lua_args, split_tally
from streams.intake import RawRecord

DAY = 24 * 3600 * 1000


def src(offset, partition=0, topic="t.events.behavior"):
    return Source(topic, partition, offset)


def test_attribution_window_and_tags():
    members = {"u1": {"e1": ("B", 1000)}}
    evs = [ConversionEvent("u1", "purchase", 999, 10.0, None, None, src(1)),            # before exposure
           ConversionEvent("u1", "purchase", 2000, 10.0, None, None, src(2)),           # counts
           ConversionEvent("u1", "click", 1000 + 8 * DAY, 0.0, None, None, src(3)),      # too late
           ConversionEvent("u2", "click", 5, 0.0, "e2", "A", src(4)),                   # tagged, unknown member
           ConversionEvent("u1", "click", 3000, 0.0, "e1", "A", src(5))]                # membership wins
    facts = attribute(evs, members, 7 * DAY)
    assert [(f.experiment_id, f.variant, f.src.offset) for f in facts] == [("e1", "B", 2), ("e2", "A", 4),
                                                                           ("e1", "B", 5)]


def test_fold_skips_what_the_fences_cover_and_moves_them():
    dsrc = "t.decisions"
    exposures = [ExposureFact("e1", "A", "u1", 1, src(5, 0, dsrc)), ExposureFact("e1", "B", "u2", 1, src(9, 0, dsrc)),
                 ExposureFact("e2", "A", "u3", 1, src(3, 1, dsrc))]
    conv = attribute([ConversionEvent("u1", "purchase", 10, 5.0, None, None, src(40, 2))],
                     {"u1": {"e1": ("A", 1)}}, DAY)
    fences = {"e1": {"_off:t.decisions:0": 5}}
    deltas = fold(exposures, conv, fences)
    assert [e.user_id for e in deltas["e1"].exposures] == ["u2"]  # offset 5 already applied
    assert deltas["e1"].fences == {"_off:t.decisions:0": ("5", 9), "_off:t.events.behavior:2": ("", 40)}
    assert deltas["e2"].fences == {"_off:t.decisions:1": ("", 3)}
    args = lua_args(deltas["e1"])
    assert args[:7] == [2, "_off:t.decisions:0", "5", "9", "_off:t.events.behavior:2", "", "40"]
    assert args[7:] == [1, "u2", "B", 1, 1, "purchase", "u1", "A", "5.0"]
    # a replay of the same batch after the fences moved applies nothing
    moved = {"e1": {"_off:t.decisions:0": 9, "_off:t.events.behavior:2": 40}, "e2": {"_off:t.decisions:1": 3}}
    assert fold(exposures, conv, moved) == {}


def test_split_tally():
    tally, fences = split_tally({"A|exposed": "3", "A|revenue": "2.5", "_off:t:1": "7"})
    assert tally == {"A|exposed": 3.0, "A|revenue": 2.5} and fences == {"_off:t:1": 7}


def test_parse_mixed_batch_dead_letters_bad_decisions_and_skips_other_kinds():
    now = int(time.time() * 1000)
    exp = codec("experiment_exposure").encode({"event_id": "x1", "user_id": "u1", "experiment_id": "e1",
                                               "variant_id": "B", "event_time": now})
    did = new_decision_id("b1")
    dec = codec("bandit_decision").encode({"decision_id": did, "bandit_id": "b1", "arm": "a", "user_id": "u1",
                                           "event_time": now, "policy": "thompson"})
    bad_dec = codec("bandit_decision").encode({"decision_id": "zzz", "bandit_id": "b1", "arm": "a",
                                               "event_time": now, "policy": "thompson"})
    click = codec("behavior_event").encode({"event_id": "c1", "event_type": "click", "user_id": "u1", "item_id": "i",
                                            "event_time": now, "recommendation_id": did})
    view = codec("behavior_event").encode({"event_id": "v1", "event_type": "view", "user_id": "u1", "item_id": "i",
                                           "event_time": now})
    recs = [RawRecord("t.decisions", 0, i, b"u1", v) for i, v in enumerate([exp, dec, bad_dec, b"junk"])]
    recs += [RawRecord("t.events.behavior", 0, i, b"u1", v) for i, v in enumerate([click, view, b"junk"])]
    p = parse(recs, "t.decisions", now)
    assert [(e.experiment_id, e.variant) for e in p.exposures] == [("e1", "B")]
    assert [d.decision_id for d in p.decisions] == [did]
    assert sorted(d.reason for d in p.dead) == ["bad_decision_id", "bad_frame"]
    assert len(p.behavior) == 1  # the view neither converts nor rewards; junk is process_behavior's
    conversions, rewards = conversions_and_rewards(p.behavior)
    assert [c.event_type for c in conversions] == ["click"]
    assert [(r.bandit_id, r.decision_id) for r in rewards] == [("b1", did)]


async def test_a_reward_waits_for_its_decision_to_be_folded_then_gives_up():
    import asyncio
    from types import SimpleNamespace

    from aura.keys import RedisKeys
    from streams.bandits import RewardFact
    from streams.decisions import DecisionOwners

    stored: set[str] = set()
    keys = RedisKeys("t")

    class Pipe:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def exists(self, key: str) -> None:
            self.asked.append(key)

        async def execute(self) -> list[int]:
            return [int(k in stored) for k in self.asked]

    class Configs:
        async def get(self) -> dict[str, object]:
            return {"b1": object()}

    owners = DecisionOwners.__new__(DecisionOwners)
    owners.res = SimpleNamespace(redis=SimpleNamespace(pipeline=lambda transaction=False: Pipe()), keys=keys)
    owners.configs = Configs()
    owners.progress = asyncio.Event()
    reward = RewardFact("b1", "d1", "click", 1, src(7))

    async def decisions_agent() -> None:  # folds the decision a moment later
        await asyncio.sleep(0.05)
        owners.decisions_folded()  # an unrelated batch first
        await asyncio.sleep(0.05)
        stored.add(keys.bandit_decision("b1", "d1"))
        owners.decisions_folded()

    t0 = time.monotonic()
    await asyncio.gather(owners.await_decisions([reward], max_wait_s=5.0), decisions_agent())
    assert time.monotonic() - t0 < 2.0 and not await owners.missing_decisions([reward])
    # a decision that never comes: bounded wait, then the reward is left to become an orphan
    t0 = time.monotonic()
    await owners.await_decisions([RewardFact("b1", "never", "click", 1, src(8))], max_wait_s=0.2)
    assert 0.15 < time.monotonic() - t0 < 3.0
    # rewards of unknown bandits never wait (they are dead-lettered as unknown_bandit)
    t0 = time.monotonic()
    await owners.await_decisions([RewardFact("zz", "d", "click", 1, src(9))], max_wait_s=5.0)
    assert time.monotonic() - t0 < 1.0
