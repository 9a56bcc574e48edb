"""The indexed store: contents, deltas and index consistency under every kind of mutation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.cache.store import Store, default_key, same_version


def obj(name: str, namespace: str | None = "ns", rv: str | None = "1", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if namespace is not None:
        meta["namespace"] = namespace
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"metadata": meta}


def by_app(o: dict[str, Any]) -> Iterable[str]:
    app = o["metadata"].get("labels", {}).get("app")
    return [app] if app else []


def secret_refs(o: dict[str, Any]) -> Iterable[str]:
    """A multi-valued indexer, like "secrets referenced by this pod"."""
    refs: list[str] = o.get("refs", [])
    return refs


def test_default_key() -> None:
    assert default_key(obj("a")) == "ns/a"
    assert default_key(obj("node-1", namespace=None)) == "node-1"
    with pytest.raises(ValueError, match="name"):
        default_key({"metadata": {}})


def test_basic_reads_and_writes() -> None:
    store = Store()
    assert store.upsert(obj("a")) is None
    first = store.get("ns/a")
    assert first is not None
    newer = obj("a", rv="2")
    assert store.upsert(newer) == first
    assert store.get("ns/a") == newer
    store.upsert(obj("b"))
    assert sorted(store.keys()) == ["ns/a", "ns/b"]
    assert len(store) == 2 and "ns/b" in store and "ns/c" not in store
    assert {default_key(o) for o in store.list()} == {"ns/a", "ns/b"}
    assert store.delete("ns/b") is not None
    assert store.delete(obj("b")) is None
    assert store.delete(newer) == newer
    assert len(store) == 0


def test_reads_are_copies_so_callers_cannot_corrupt_the_cache() -> None:
    store = Store(indexers={"app": by_app})
    original = obj("a", app="web")
    store.upsert(original)
    original["metadata"]["labels"]["app"] = "changed-after-upsert"
    got = store.get("ns/a")
    assert got is not None and got["metadata"]["labels"]["app"] == "web"
    got["metadata"]["labels"]["app"] = "changed-by-a-reader"
    for listed in (store.list(), store.by_index("app", "web")):
        assert [o["metadata"]["labels"]["app"] for o in listed] == ["web"]


def test_custom_key_function() -> None:
    store = Store(key_fn=lambda o: o["metadata"]["uid"])
    store.upsert({"metadata": {"name": "a", "uid": "u1"}})
    assert store.get("u1") is not None


def test_indexes_follow_updates_and_deletes() -> None:
    store = Store(indexers={"app": by_app})
    store.upsert(obj("a", app="web"))
    store.upsert(obj("b", app="web"))
    store.upsert(obj("c", app="db"))
    assert store.index_keys("app", "web") == {"ns/a", "ns/b"}

    store.upsert(obj("a", rv="2", app="db"))  # moves between values
    assert store.index_keys("app", "web") == {"ns/b"}
    assert {default_key(o) for o in store.by_index("app", "db")} == {"ns/a", "ns/c"}

    store.upsert(obj("b", rv="2"))  # loses its value entirely
    assert store.index_keys("app", "web") == set()
    assert store.by_index("app", "web") == []

    store.delete("ns/c")
    assert store.index_keys("app", "db") == {"ns/a"}


def test_index_keys_is_a_copy_and_unknown_index_is_an_error() -> None:
    store = Store(indexers={"app": by_app})
    store.upsert(obj("a", app="web"))
    keys = store.index_keys("app", "web")
    keys.add("intruder")
    assert store.index_keys("app", "web") == {"ns/a"}
    with pytest.raises(KeyError):
        store.by_index("nope", "web")


def test_multi_valued_indexes() -> None:
    store = Store(indexers={"secret": secret_refs})
    store.upsert({**obj("p1"), "refs": ["s1", "s2"]})
    store.upsert({**obj("p2"), "refs": ["s2"]})
    assert store.index_keys("secret", "s2") == {"ns/p1", "ns/p2"}
    store.upsert({**obj("p1", rv="2"), "refs": ["s3"]})
    assert store.index_keys("secret", "s1") == set()
    assert store.index_keys("secret", "s2") == {"ns/p2"}
    assert store.index_keys("secret", "s3") == {"ns/p1"}


def test_add_indexer_covers_existing_objects() -> None:
    store = Store()
    store.upsert(obj("a", app="web"))
    store.add_indexer("app", by_app)
    assert store.index_keys("app", "web") == {"ns/a"}
    with pytest.raises(ValueError, match="already exists"):
        store.add_indexer("app", by_app)


def test_a_raising_indexer_leaves_the_store_untouched() -> None:
    def picky(o: dict[str, Any]) -> Iterable[str]:
        if o["metadata"].get("labels", {}).get("app") == "bad":
            raise RuntimeError("boom")
        return by_app(o)

    store = Store(indexers={"app": by_app, "picky": picky})
    good = obj("a", app="web")
    store.upsert(good)
    with pytest.raises(RuntimeError):
        store.upsert(obj("a", rv="2", app="bad"))
    assert store.get("ns/a") == good
    assert store.index_keys("app", "web") == {"ns/a"}
    assert store.index_keys("app", "bad") == set()


def test_replace_reports_exact_deltas() -> None:
    store = Store(indexers={"app": by_app})
    same, changed, gone = obj("same", rv="5"), obj("changed", rv="5"), obj("gone", rv="5", app="x")
    store.replace([same, changed, gone])

    same_again, changed_new, added = obj("same", rv="5"), obj("changed", rv="6"), obj("added", rv="7")
    deltas = store.replace([same_again, changed_new, added])

    assert deltas == [(changed, changed_new), (None, added), (gone, None)]
    assert sorted(store.keys()) == ["ns/added", "ns/changed", "ns/same"]
    assert store.index_keys("app", "x") == set()
    assert store.replace([same_again, changed_new, added]) == []


def test_first_replace_adds_everything() -> None:
    store = Store()
    a, b = obj("a"), obj("b")
    assert store.replace([a, b]) == [(None, a), (None, b)]


def test_versions_are_compared_for_equality_only() -> None:
    # "10" < "9" as strings and 10 > 9 as numbers: neither ordering may matter, only (in)equality.
    assert not same_version(obj("a", rv="10"), obj("a", rv="9"))
    assert same_version(obj("a", rv="10"), obj("a", rv="10"))
    # Without resourceVersions the whole objects are compared.
    assert same_version(obj("a", rv=None, app="x"), obj("a", rv=None, app="x"))
    assert not same_version(obj("a", rv=None, app="x"), obj("a", rv=None, app="y"))


# --- property: whatever the sequence of operations, indexes equal a recomputation from scratch.

names = st.sampled_from(["a", "b", "c", "d"])
apps = st.lists(st.sampled_from(["web", "db", "cache"]), max_size=2)
ops: st.SearchStrategy[list[tuple[Any, Any, Any]]] = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), names, apps),
        st.tuples(st.just("delete"), names, st.just([])),
        st.tuples(st.just("replace"), st.lists(st.tuples(names, apps), max_size=4), st.just([])),
    ),
    max_size=30,
)


def refs_obj(name: str, refs: list[str], rv: int) -> dict[str, Any]:
    return {**obj(name, rv=str(rv)), "refs": refs}


@settings(max_examples=200, deadline=None)
@given(ops)
def test_indexes_always_match_contents(operations: list[tuple[Any, Any, Any]]) -> None:
    store = Store(indexers={"secret": secret_refs})
    model: dict[str, dict[str, Any]] = {}
    for rv, (op, arg, refs) in enumerate(operations, start=1):
        if op == "upsert":
            o = refs_obj(arg, refs, rv)
            assert store.upsert(o) == model.get(f"ns/{arg}")
            model[f"ns/{arg}"] = o
        elif op == "delete":
            assert store.delete(f"ns/{arg}") == model.pop(f"ns/{arg}", None)
        else:
            fresh = {f"ns/{n}": refs_obj(n, r, rv) for n, r in arg}
            deltas = store.replace(list(fresh.values()))
            removed = {default_key(old) for old, new in deltas if new is None and old is not None}
            assert removed == set(model) - set(fresh)
            model = fresh
        assert {k: store.get(k) for k in store} == model
        for value in ("web", "db", "cache"):
            expected = {k for k, o in model.items() if value in o["refs"]}
            assert store.index_keys("secret", value) == expected
