"""The template registry's rules (proxpipe.domain.registry): lineage, children revoked with their base, channels
that refuse what is not active, restore, and a VMID the cluster gives again."""

import pytest

from proxpipe.base.errors import PipelineError
from proxpipe.domain import registry


def built(vmid, base=None, stage="build", at="2026-01-01T00:00:00+0000"):
    return {"vmid": vmid, "stage": stage, "environment": "lab", "base": base, "built_by": "ann", "built_at": at}


@pytest.fixture
def data():
    found = registry.empty()
    registry.record_build(found, built(9100, base=9000))
    registry.record_build(found, built(9101, base=9100, stage="docker", at="2026-01-02T00:00:00+0000"))
    registry.record_build(found, built(9102, base=9101, stage="app", at="2026-01-03T00:00:00+0000"))
    return found


def test_a_template_built_from_one_of_ours_is_its_child(data):
    assert registry.entry(data, 9100).get("parent") is None  # 9000 is no template of the registry
    assert registry.entry(data, 9101)["parent"] == 9100 and registry.entry(data, 9102)["parent"] == 9101
    assert [e["vmid"] for e in registry.newest_first(data)] == [9102, 9101, 9100]


def test_revoking_a_template_revokes_its_children_and_restoring_lifts_them_all(data):
    assert registry.revoke(data, 9100, "openssl", "bob", "t") == [9100, 9101, 9102]
    assert registry.entry(data, 9102)["revoked"] == {"reason": "openssl", "by": "bob", "at": "t", "via": 9100}
    assert registry.refusal(data, 9101).startswith("template 9101 is revoked with its base 9100 by bob (openssl)")
    assert registry.revoke(data, 9101, "again", "bob", "t") == []  # already revoked
    assert registry.restore(data, 9100) == [9100, 9101, 9102]
    assert registry.refusal(data, 9102) is None
    with pytest.raises(PipelineError, match="template 9100 is active, not revoked"):
        registry.restore(data, 9100)


def test_a_child_built_from_a_revoked_base_is_revoked_from_the_start(data):
    registry.revoke(data, 9101, "kernel", "bob", "t")
    registry.record_build(data, built(9103, base=9101, stage="app", at="2026-01-04T00:00:00+0000"))
    assert registry.entry(data, 9103)["status"] == registry.REVOKED


def test_a_channel_moves_only_to_an_active_template_of_the_registry_and_keeps_its_past(data):
    assert registry.move_channel(data, "staging", 9100, "ann", "t1") is None
    assert registry.move_channel(data, "staging", 9102, "bob", "t2", "tested") == 9100
    assert data["channels"]["staging"]["history"][0]["vmid"] == 9100
    registry.revoke(data, 9102, "bad", "bob", "t3")
    with pytest.raises(PipelineError, match="channel prod may not point at template 9102: it is revoked"):
        registry.move_channel(data, "prod", 9102, "ann", "t4")
    with pytest.raises(PipelineError, match="template 9555 is not in the template registry"):
        registry.move_channel(data, "prod", 9555, "ann", "t4")
    assert registry.pointed(data) == {9102}  # retention keeps it, revoked or not
    assert "the newest active template of stage app" not in registry.refusal(data, 9102)
    assert registry.refusal(data, 9102).endswith("build one, or `doit restore-template` this one")


def test_the_refusal_names_the_newest_active_template_on_the_channel(data):
    registry.move_channel(data, "dev", 9101, "ann", "t1")
    registry.move_channel(data, "dev", 9100, "ann", "t2")
    registry.revoke(data, 9101, "bad", "bob", "t3")
    assert registry.refusal(data, 9101).endswith("the newest active template on channel dev is 9100")


def test_a_deleted_template_stays_when_the_cluster_gives_its_vmid_again(data):
    registry.mark_deleted(data, 9102, "2026-02-01")
    registry.record_build(data, built(9102, stage="app", at="2026-03-01T00:00:00+0000"))
    statuses = sorted((e["vmid"], e["status"]) for e in data["templates"].values())
    assert statuses == [(9100, "active"), (9101, "active"), (9102, "active"), (9102, "deleted")]
    assert registry.entry(data, 9102)["built_at"].startswith("2026-03-01")
