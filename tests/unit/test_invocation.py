import json

import pytest

from cnid.cni import parse_cni_args, parse_invocation, peek_version
from cnid.core import Attachment, CniCode, CnidError

CONF = {"cniVersion": "1.1.0", "name": "cnid", "type": "cnid-plugin"}


def env(**kw: str) -> dict[str, str]:
    base = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "abc123",
        "CNI_NETNS": "/var/run/netns/pod",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=test02;K8S_POD_NAME=web-0;K8S_POD_UID=u-1",
        "CNI_PATH": "/opt/cni/bin",
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def stdin(**kw: object) -> bytes:
    return json.dumps({**CONF, **kw}).encode()


def test_add_parses_pod_identity() -> None:
    inv = parse_invocation(env(), stdin(), True)
    assert inv.command == "ADD"
    assert inv.attachment == Attachment("abc123", "eth0")
    assert (inv.pod_namespace, inv.pod_name, inv.pod_uid) == ("test02", "web-0", "u-1")
    assert inv.network_name == "cnid"


def code_of(env_: dict[str, str], data: bytes) -> int:
    with pytest.raises(CnidError) as info:
        parse_invocation(env_, data, False)
    return int(info.value.code)


def test_error_codes() -> None:
    e = env()
    del e["CNI_COMMAND"]
    assert code_of(e, stdin()) == CniCode.INVALID_ENVIRONMENT
    assert code_of(env(CNI_COMMAND="FROB"), stdin()) == CniCode.INVALID_ENVIRONMENT
    assert code_of(env(CNI_CONTAINERID=""), stdin()) == CniCode.INVALID_ENVIRONMENT
    assert code_of(env(CNI_CONTAINERID="a/b"), stdin()) == CniCode.INVALID_ENVIRONMENT
    assert code_of(env(CNI_IFNAME="averyveryverylongname"), stdin()) == CniCode.INVALID_ENVIRONMENT
    assert code_of(env(CNI_NETNS=""), stdin()) == CniCode.INVALID_ENVIRONMENT
    assert code_of(env(CNI_ARGS="novalue"), stdin()) == CniCode.INVALID_ENVIRONMENT
    assert code_of(env(), b"{not json") == CniCode.DECODE_FAILURE
    assert code_of(env(), b"[1,2]") == CniCode.DECODE_FAILURE
    assert code_of(env(), stdin(cniVersion="0.2.0")) == CniCode.INCOMPATIBLE_VERSION
    assert code_of(env(), stdin(cniVersion="2.0.0")) == CniCode.INCOMPATIBLE_VERSION
    assert code_of(env(CNI_COMMAND="CHECK"), stdin(cniVersion="0.3.1")) == (
        CniCode.INCOMPATIBLE_VERSION
    )
    assert code_of(env(CNI_COMMAND="GC"), stdin(cniVersion="1.0.0")) == (
        CniCode.INCOMPATIBLE_VERSION
    )
    assert code_of(env(), json.dumps({"name": "x"}).encode()) == CniCode.INVALID_NETCONF
    assert code_of(env(), json.dumps({"cniVersion": "1.0.0"}).encode()) == CniCode.INVALID_NETCONF


def test_del_accepts_an_empty_netns() -> None:
    inv = parse_invocation(env(CNI_COMMAND="DEL", CNI_NETNS=""), stdin(), False)
    assert inv.netns == ""


def test_gc_valid_attachments() -> None:
    data = stdin(
        **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]},
    )
    inv = parse_invocation({"CNI_COMMAND": "GC"}, data, False)
    assert inv.valid_attachments() == {Attachment("a", "eth0")}
    bad = parse_invocation(
        {"CNI_COMMAND": "GC"}, stdin(**{"cni.dev/valid-attachments": [{"ifname": 1}]}), False
    )
    with pytest.raises(CnidError) as info:
        bad.valid_attachments()
    assert info.value.code == CniCode.INVALID_NETCONF


def test_status_needs_no_container() -> None:
    inv = parse_invocation({"CNI_COMMAND": "STATUS"}, stdin(), False)
    assert inv.command == "STATUS"


def test_cni_args_and_peek_version() -> None:
    assert parse_cni_args("A=1;;B=x=y") == {"A": "1", "B": "x=y"}
    assert peek_version(stdin(cniVersion="0.4.0")) == "0.4.0"
    assert peek_version(b"garbage") == "1.1.0"
    assert peek_version(stdin(cniVersion="9.9.9")) == "1.1.0"
