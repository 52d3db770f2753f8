from pathlib import Path

from cnid.core import Attachment, Journal, PodRecord


def rec(cid: str, state: str = "pending") -> PodRecord:
    return PodRecord(
        container_id=cid,
        ifname="eth0",
        state=state,  # type: ignore[arg-type]
        network_name="cnid",
        netns="/run/netns/x",
        domain="vrf-42",
        vrf=42,
        host_ifname=f"cn{cid}",
        address="10.244.0.2",
    )


def test_records_survive_a_reload(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    assert j.load() == []
    j.put(rec("a"))
    j.put(rec("b", "ready"))
    j.delete(Attachment("a", "eth0"))
    again = Journal(tmp_path)
    assert again.load() == []
    assert [r.container_id for r in again.all()] == ["b"]
    got = again.get(Attachment("b", "eth0"))
    assert got is not None and got.state == "ready" and got.created > 0


def test_corrupt_record_is_moved_aside_and_reported(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.load()
    j.put(rec("a"))
    (tmp_path / "attachments" / "cnbad.json").write_text("{broken")
    (tmp_path / "attachments" / "cnx.tmp").write_text("half")
    again = Journal(tmp_path)
    problems = again.load()
    assert len(problems) == 1 and "cnbad.json" in problems[0]
    assert (tmp_path / "attachments" / "cnbad.corrupt").exists()
    assert not (tmp_path / "attachments" / "cnx.tmp").exists()
    assert [r.container_id for r in again.all()] == ["a"]
