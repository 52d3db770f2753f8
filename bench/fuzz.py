"""Seeded fuzzing of what cnid decodes from its peers: CNI frames from the
plugin, control requests from cnictl (and control answers on cnictl's
side), the CNI network configuration on stdin, the EVPN UPDATEs a peer sends.

``python -m bench fuzz [--inputs N] [--seed S] [--target T]`` runs a
million inputs per target on demand; the unit tier runs 10,000 of each
(tests/unit/test_fuzz.py). An input that breaks a property is printed
(hex) and written to ``--out``; add it to tests/fixtures/fuzz/ so the unit
tier replays it for good.

Properties:

* CNI frames: ``payload_length`` and ``decode_cni_request`` raise nothing
  but ProtocolError; a decoded request gives ``parse_invocation`` nothing
  to raise but a CnidError with a CNI code.
* Control: ``ControlServer.answer`` never raises, and every frame it makes
  is within MAX_FRAME and decodes as a CtlResponse; cnictl's reassembly
  raises nothing but ProtocolError.
* stdin: ``parse_invocation`` raises nothing but CnidError; ``peek_version``
  never raises.
* EVPN UPDATEs (mutations of the kinds FRR and GoBGP send: lengths,
  truncations, unknown types): ``cnid.bgp.decode_update_bytes`` raises nothing, its line
  decodes as its bytes, a malformed attribute leaves no route announced
  (RFC 7606 treat-as-withdraw), and it follows the framing of whatever the
  extension inside ExaBGP hands over as bytes.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import trio

from cnid.cni import parse_invocation, peek_version
from cnid.core import (
    HEADER,
    MAX_FRAME,
    CniCode,
    CnidError,
    CniRequest,
    CtlAnswer,
    CtlRequest,
    CtlResponse,
    ProtocolError,
    ctl_answer_frames,
    decode_cni_request,
    decode_ctl_response,
    frame,
    payload_length,
)

NETCONFS = [
    b'{"cniVersion":"1.0.0","name":"fabric","type":"cnid-plugin"}',
    b'{"cniVersion":"1.1.0","name":"fabric","type":"cnid-plugin",'
    b'"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}',
    b'{"cniVersion":"0.4.0","name":"n","prevResult":{"interfaces":[{"name":"eth0"}],'
    b'"ips":[{"address":"10.244.0.5/24","gateway":"10.244.0.1","interface":0}]}}',
    b'{"cniVersion":"0.3.1","name":"n","ipam":{},"dns":{"nameservers":["10.96.0.10"]}}',
]
ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "0123456789abcdef",
    "CNI_IFNAME": "eth0",
    "CNI_NETNS": "/var/run/netns/cni-1234",
    "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
    "CNI_PATH": "/opt/cni/bin",
}
COMMANDS = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "", "add", "ADD\n"]
CTL_COMMANDS = ["status", "pods", "ipam", "evpn-routes", "bgp-summary", "vrf-routes", "nope"]
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xC0, 0xC1, 0xC4, 0xDC, 0xDD, 0xDE, 0xDF, 0x90, 0x80]


def fixtures_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "fuzz"


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """One to four random edits: bit flips, interesting bytes, insertions,
    deletions, duplications, truncation, splices with another seed."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            i = min(pos, len(buf) - 1)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice(INTERESTING)
        elif op == 2:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 4 and buf:
            chunk = buf[pos : pos + rng.randint(1, 32)]
            buf[pos:pos] = chunk * rng.randint(1, 64)
        elif op == 5:
            del buf[pos:]
        elif op == 6:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
        else:
            buf[pos:pos] = rng.choice([b"[" * 200, b"{", b'"', b"\\u0000", b"\x00", b"\n"])
    return bytes(buf)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63 - 1, -(2**63), rng.randint(-1000, 1000)])
    if kind == 3:
        return rng.random() * 1e6
    if kind == 4:
        return (
            "".join(chr(rng.randrange(0x20000)) for _ in range(rng.randint(0, 12)))
            .encode("utf-8", "surrogatepass")
            .decode("utf-8", "replace")
        )
    if kind == 5:
        return rng.randbytes(rng.randint(0, 12))
    if kind == 6:
        return rng.choice(["1.0.0", "1.1.0", "0.3.1", "ADD", "eth0", "", "status"])
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        str(random_value(rng, depth + 1)): random_value(rng, depth + 1)
        for _ in range(rng.randint(0, 4))
    }


# ------------------------------------------------------------------ targets


def cni_frame_inputs(rng: random.Random) -> Iterator[bytes]:
    seeds = [
        frame(CniRequest(1, dict(ENV, CNI_COMMAND=c), s, c == "ADD"))
        for c in ("ADD", "DEL", "CHECK")
        for s in NETCONFS
    ]
    while True:
        if rng.random() < 0.1:
            structure = [1, random_value(rng), random_value(rng), random_value(rng)]
            payload = msgspec.msgpack.encode(structure[: rng.randint(0, 5)])
            yield HEADER.pack(len(payload)) + payload
        else:
            yield mutate(rng, rng.choice(seeds), seeds)


def check_cni_frame(data: bytes) -> None:
    try:
        length = payload_length(data[: HEADER.size])
        request = decode_cni_request(data[HEADER.size : HEADER.size + length])
    except ProtocolError:
        return
    _check_invocation(dict(request.env), request.stdin, request.has_netns)


def _check_invocation(env: dict[str, str], stdin: bytes, has_netns: bool) -> None:
    peek_version(stdin)
    try:
        parse_invocation(env, stdin, has_netns)
    except CnidError as exc:
        CniCode(exc.code)  # a code the CNI boundary can report


def stdin_inputs(rng: random.Random) -> Iterator[tuple[dict[str, str], bytes]]:
    while True:
        env = dict(ENV, CNI_COMMAND=rng.choice(COMMANDS))
        if rng.random() < 0.2:
            key = rng.choice(list(env))
            env[key] = mutate(rng, env[key].encode(), [b"x"]).decode("utf-8", "replace")
        if rng.random() < 0.15:
            stdin = msgspec.json.encode(random_value(rng))
        else:
            stdin = mutate(rng, rng.choice(NETCONFS), NETCONFS)
        yield env, stdin


def check_stdin(case: tuple[dict[str, str], bytes]) -> None:
    _check_invocation(case[0], case[1], True)


def ctl_inputs(rng: random.Random) -> Iterator[bytes]:
    seeds = [
        msgspec.msgpack.encode(CtlRequest(v, c, a))
        for v in (1, 2)
        for c in CTL_COMMANDS
        for a in ({}, {"all": "true", "allocations": "true"}, {"type": "2", "vni": "100"})
    ]
    answers = [f for d in ([1, 2], {"a": [1] * 10}, "x" * 100) for f in ctl_answer_frames(2, d)]
    while True:
        r = rng.random()
        if r < 0.1:
            yield msgspec.msgpack.encode(random_value(rng))
        elif r < 0.25:
            yield b"A" + mutate(rng, rng.choice(answers), answers)  # cnictl's side
        else:
            yield mutate(rng, rng.choice(seeds), seeds)


def control_server(state: str) -> Any:
    from cnid.core import DomainRegistry, Journal, Metrics, Readiness
    from cnid.daemon import ControlServer, DefaultDomainConfig
    from cnid.ipam import AddressPool, MemoryStore

    return ControlServer(
        node="fuzz",
        readiness=Readiness(),
        journal=Journal(state),
        pool=AddressPool(MemoryStore(), "fuzz"),
        domains=DomainRegistry(DefaultDomainConfig().domain()),
        metrics=Metrics(),
    )


async def check_ctl(server: Any, data: bytes) -> None:
    if data[:1] == b"A":  # a daemon's answer frame, as cnictl reads it
        answer = CtlAnswer(limit=1 << 20)
        try:
            length = payload_length(data[1 : 1 + HEADER.size])
            answer.add(decode_ctl_response(data[1 + HEADER.size : 1 + HEADER.size + length]))
        except ProtocolError:
            pass
        return
    for out in await server.answer(data):
        assert len(out) <= HEADER.size + MAX_FRAME
        response = decode_ctl_response(out[HEADER.size :])
        assert isinstance(response, CtlResponse)


# ------------------------------------------------------------------ drivers


# ---------------------------------------------------------- EVPN UPDATEs


def _attribute(flags: int, code: int, value: bytes) -> bytes:
    if flags & 0x10:
        return bytes((flags, code)) + len(value).to_bytes(2, "big") + value
    return bytes((flags, code, len(value))) + value


def _evpn_body(attributes: bytes, nexthop: bytes, nlris: list[str], withdrawn: list[str]) -> bytes:
    family = b"\x00\x19\x46"  # AFI 25, SAFI 70
    if nlris:
        reach = family + bytes((len(nexthop),)) + nexthop + b"\0"
        attributes += _attribute(0x90, 14, reach + b"".join(bytes.fromhex(n) for n in nlris))
    if withdrawn:
        attributes += _attribute(0x90, 15, family + b"".join(bytes.fromhex(n) for n in withdrawn))
    return b"\0\0" + len(attributes).to_bytes(2, "big") + attributes


def evpn_seeds() -> list[bytes]:
    """UPDATE bodies of the kinds FRR and GoBGP send (NLRIs from the
    captures in tests/fixtures/evpn/)."""
    base = (
        _attribute(0x40, 1, b"\0")
        + _attribute(0x40, 2, bytes.fromhex("0202") + bytes.fromhex("0000fded0000fde9"))
        + _attribute(0x80, 4, bytes(4))
        + _attribute(0x40, 5, (100).to_bytes(4, "big"))
        + _attribute(0x80, 9, bytes((10, 99, 0, 3)))
        + _attribute(0x80, 10, bytes((10, 99, 0, 1)))
    )
    communities = _attribute(
        0xC0,
        16,
        bytes.fromhex("0002fde800000064030c00000000000806037ad2c35da5050600000000000003"),
    )
    pmsi = _attribute(0xC0, 22, bytes.fromhex("0006000640") + bytes((10, 99, 0, 3)))
    mac = "022100010A630003000200000000000000000000000000003002000000020100000064"
    mac_ip = "022500010A6300030002000000000000000000000000000030020000000201200A636415000064"
    mac_ip2 = mac_ip[:-6] + "000064001092"  # two labels
    mac_ip2 = "02" + "28" + mac_ip2[4:]
    imet = "031100010A63000300020000000020" + "0A630003"
    prefix = "052200010A63000300010000000000000000000000000000180A63E60000000000001388"
    hop4, hop6 = bytes((10, 99, 0, 3)), bytes.fromhex("fe80000000000000000000fffe000001")
    return [
        _evpn_body(base + communities, hop4, [mac, mac_ip, mac_ip2], []),
        _evpn_body(base + communities + pmsi, hop4, [imet], []),
        _evpn_body(base + communities, hop6, [prefix, prefix], []),
        _evpn_body(b"", b"", [], [mac_ip, prefix, imet]),
        _evpn_body(base + pmsi, hop4, [imet, "0903616263"], [mac]),
    ]


def _mutate_attribute(rng: random.Random, body: bytes) -> bytes:
    """One attribute of a well-formed body mutated, the lengths around it
    made right again: past the framing, into the attributes and NLRIs."""
    attributes: list[tuple[int, int, bytes]] = []
    i = 4
    while i < len(body):
        flags, code = body[i], body[i + 1]
        if flags & 0x10:
            start, length = i + 4, int.from_bytes(body[i + 2 : i + 4], "big")
        else:
            start, length = i + 3, body[i + 2]
        attributes.append((flags, code, body[start : start + length]))
        i = start + length
    k = rng.randrange(len(attributes))
    flags, code, value = attributes[k]
    value = mutate(rng, value, [v for _, _, v in attributes])[:0xFFFF]
    if len(value) > 255:
        flags |= 0x10
    attributes[k] = (flags, code, value)
    if rng.random() < 0.1:
        attributes.append(attributes[k])  # twice
    out = b"".join(_attribute(f, c, v) for f, c, v in attributes)[:0xFFFF]
    return b"\0\0" + len(out).to_bytes(2, "big") + out


def evpn_inputs(rng: random.Random) -> Iterator[tuple[bytes, bool]]:
    seeds = evpn_seeds()
    while True:
        data = rng.choice(seeds)
        dice = rng.random()
        if dice < 0.45:
            data = mutate(rng, data, seeds)
        elif dice < 0.9:
            data = _mutate_attribute(rng, data)
        yield data, rng.random() < 0.9


def check_evpn(case: tuple[bytes, bool]) -> None:
    """The decoder raises nothing; a malformed attribute withdraws what
    the UPDATE announces (RFC 7606); what the extension inside ExaBGP hands
    over as bytes (its framing checked) has framing the decoder follows."""
    from cnid.bgp import UpdateEvent, decode_line, decode_update_bytes, raw_line
    from cnid.bgp._extension import evpn_parts

    body, asn4 = case
    event = decode_update_bytes("10.0.0.1", body, asn4)
    if not isinstance(event, UpdateEvent):
        raise AssertionError("not an UpdateEvent")
    if decode_line(raw_line("10.0.0.1", body, asn4)) != event:
        raise AssertionError("the line decodes otherwise than the bytes")
    reasons = [reason for reason, _ in event.skipped]
    if any(r.startswith("undecodable") for r in reasons):
        raise AssertionError(f"the decoder failed: {reasons}")
    if any(r.startswith("malformed attribute") for r in reasons) and event.announced:
        raise AssertionError("a malformed attribute, and routes announced all the same")
    if evpn_parts(body) is not None and any(r.startswith("malformed UPDATE") for r in reasons):
        raise AssertionError(f"framing the extension hands over, refused: {reasons}")


class Finding(msgspec.Struct):
    target: str
    data: bytes
    error: str


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


_SYNC_TARGETS: dict[str, tuple[Callable[[random.Random], Iterator[Any]], Callable[[Any], None]]] = {
    "cni-frame": (cni_frame_inputs, check_cni_frame),
    "stdin": (stdin_inputs, check_stdin),
    "evpn-update": (evpn_inputs, check_evpn),
}


def fuzz_sync(target: str, n: int, seed: int, stop_after: int = 10) -> list[Finding]:
    rng = random.Random(seed)
    findings: list[Finding] = []
    make, check = _SYNC_TARGETS[target]
    for case in itertools.islice(make(rng), n):
        try:
            check(case)
        except Exception as exc:
            data = case if isinstance(case, bytes) else msgspec.json.encode(case)
            findings.append(Finding(target, data, _describe(exc)))
            if len(findings) >= stop_after:
                break
    return findings


def fuzz_ctl(n: int, seed: int, stop_after: int = 10) -> list[Finding]:
    rng = random.Random(seed)
    findings: list[Finding] = []

    async def run() -> None:
        with tempfile.TemporaryDirectory(prefix="cnid-fuzz-") as state:
            await loop(control_server(state))

    async def loop(server: Any) -> None:
        for _, data in zip(range(n), ctl_inputs(rng), strict=False):
            try:
                await check_ctl(server, data)
            except Exception as exc:
                findings.append(Finding("control", data, _describe(exc)))
                if len(findings) >= stop_after:
                    return

    trio.run(run)
    return findings


def fuzz(target: str, n: int, seed: int) -> list[Finding]:
    if target == "control":
        return fuzz_ctl(n, seed)
    return fuzz_sync(target, n, seed)


TARGETS = ("cni-frame", "control", "stdin", "evpn-update")


def replay(path: Path) -> None:
    """Replay one fixture (``<target>-<name>.bin``): raises when its
    property is broken again."""
    target = path.name.split("-", 1)[0]
    data = path.read_bytes()
    if target == "cni":
        check_cni_frame(data)
    elif target == "stdin":
        env, stdin = msgspec.json.decode(data, type=tuple[dict[str, str], bytes])
        check_stdin((env, stdin))
    elif target == "evpn":
        body, asn4 = msgspec.json.decode(data, type=tuple[bytes, bool])
        check_evpn((body, asn4))
    elif target == "control":

        async def run() -> None:
            with tempfile.TemporaryDirectory(prefix="cnid-fuzz-") as state:
                await check_ctl(control_server(state), data)

        trio.run(run)
    else:
        raise ValueError(f"{path.name}: unknown target {target!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fuzz")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--target", choices=TARGETS, action="append")
    parser.add_argument("--out", default="bench/results/fuzz", help="where findings go")
    args = parser.parse_args(argv)
    total = 0
    for target in args.target or TARGETS:
        start = time.perf_counter()
        findings = fuzz(target, args.inputs, args.seed)
        took = time.perf_counter() - start
        print(
            f"{target}: {args.inputs} inputs, seed {args.seed}, {took:.1f}s, "
            f"{len(findings)} findings"
        )
        out = Path(args.out)
        for i, f in enumerate(findings):
            out.mkdir(parents=True, exist_ok=True)
            name = out / f"{target.split('-')[0]}-{args.seed}-{i}.bin"
            name.write_bytes(f.data)
            print(f"  {name}: {f.error}")
        total += len(findings)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
