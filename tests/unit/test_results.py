from cnid.cni import render_error, render_result
from cnid.core import PodResult, ResultInterface, ResultIP, ResultRoute, UnknownContainer

RESULT = PodResult(
    interfaces=(
        ResultInterface(name="cn0123456789abc", mac="aa:bb:cc:dd:ee:01", mtu=1450),
        ResultInterface(name="eth0", mac="aa:bb:cc:dd:ee:02", sandbox="/run/netns/p", mtu=1450),
    ),
    ips=(ResultIP(address="10.244.0.2/32", gateway="10.244.0.1", interface=1),),
    routes=(ResultRoute(dst="0.0.0.0/0", gw="10.244.0.1"),),
)


def test_1_1_0_has_interface_mtu() -> None:
    out = render_result(RESULT, "1.1.0")
    assert out["cniVersion"] == "1.1.0"
    assert out["interfaces"][1] == {
        "name": "eth0",
        "mac": "aa:bb:cc:dd:ee:02",
        "mtu": 1450,
        "sandbox": "/run/netns/p",
    }
    assert out["ips"] == [{"address": "10.244.0.2/32", "gateway": "10.244.0.1", "interface": 1}]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}]


def test_1_0_0_drops_mtu() -> None:
    out = render_result(RESULT, "1.0.0")
    assert all("mtu" not in i for i in out["interfaces"])
    assert "version" not in out["ips"][0]


def test_0_4_0_and_0_3_1_carry_ip_version() -> None:
    for v in ("0.4.0", "0.3.1", "0.3.0"):
        out = render_result(RESULT, v)
        assert out["cniVersion"] == v
        assert out["ips"][0]["version"] == "4"


def test_ipv6_version() -> None:
    r = PodResult(interfaces=(), ips=(ResultIP("fd00::2/128", "fd00::1", 1),))
    assert render_result(r, "0.4.0")["ips"][0]["version"] == "6"


def test_error_shape() -> None:
    out = render_error(UnknownContainer("gone", details="x"), "0.4.0")
    assert out == {"cniVersion": "0.4.0", "code": 3, "msg": "gone", "details": "x"}
