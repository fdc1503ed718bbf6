"""The gate's ``Authentication-Results`` parser is authres' own grammar made linear: on every
header value, well-formed or not, it gives what ``authres.AuthenticationResultsHeader
.parse_value`` gives, results and errors alike."""

from __future__ import annotations

import authres
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.mail.gate import _authres_clauses, _plain_clauses, header_clauses, parse_authentication_results

REAL = [
    "mx.zjut.edu.cn; dkim=pass header.d=zjxx.edu.cn header.s=default header.b=abcDEF12; "
    "spf=pass (mx.zjut.edu.cn: domain of wang@zjxx.edu.cn designates 1.2.3.4 as permitted sender) "
    "smtp.mailfrom=wang@zjxx.edu.cn; dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=zjxx.edu.cn",
    "mx.zjut.edu.cn 1; none",
    'mx.zjut.edu.cn; spf=fail reason="bad \\"quoted\\" reason" smtp.mailfrom=x@y.cn',
    "mx.zjut.edu.cn (a (nested) comment); dkim=neutral (no key) header.d=qq.com; iprev=pass policy.iprev=1.2.3.4",
    "mx.zjut.edu.cn; arc=pass smtp.remote-ip=1.2.3.4; dkim=pass header.i=@163.com",
    "mx.zjut.edu.cn; dmarc=pass header.from=zjxx.edu.cn;",
    "mx.zjut.edu.cn; spf=pass smtp.mailfrom=",
    "mx.zjut.edu.cn; =pass",
    "(only a comment)",
    "",
]

TOKENS = st.sampled_from([
    "mx.zjut.edu.cn", ";", " ", "  ", "\t", "\r\n ", "=", ".", "/", "@", '"', "\\", "(", ")", "1", "none",
    "dkim", "spf", "dmarc", "arc", "iprev", "auth", "pass", "fail", "neutral", "reason", "header", "smtp",
    "policy", "d", "from", "mailfrom", "i", "zjxx.edu.cn", "wang@zjxx.edu.cn", "p=NONE", "v", "é", "中",
])


def outcome(parse, value: str) -> tuple[str, str]:
    """What a parser makes of ``value``: the header as authres writes it back, or the error."""
    try:
        header = parse(value)
        results = [(r.method, r.result, r.reason, [(p.type, p.name, p.value) for p in r.properties])
                   for r in header.results]
        return ("header", f"{header} | {header.authserv_id} | {results}")
    except Exception as exc:  # noqa: BLE001 - the errors are compared, whatever they are
        return ("error", f"{type(exc).__name__}: {exc}")


def test_real_headers_read_the_same() -> None:
    for value in REAL:
        assert outcome(parse_authentication_results, value) == outcome(
            authres.AuthenticationResultsHeader.parse_value, value), value


@settings(max_examples=400, deadline=None)
@given(st.lists(TOKENS, max_size=40).map("".join))
def test_any_header_value_reads_the_same_as_with_authres(value: str) -> None:
    assert outcome(parse_authentication_results, value) == outcome(
        authres.AuthenticationResultsHeader.parse_value, value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_any_text_reads_the_same_as_with_authres(value: str) -> None:
    assert outcome(parse_authentication_results, value) == outcome(
        authres.AuthenticationResultsHeader.parse_value, value)


# --------------------------------------------------------------------------- plain values, read without authres

def clauses(read, value: str) -> tuple[str, str]:
    """What a reader makes of ``value``: the authserv-id and clauses the gate reads, or the error."""
    try:
        return ("clauses", repr(read(value)))
    except Exception as exc:  # noqa: BLE001 - the errors are compared, whatever they are
        return ("error", f"{type(exc).__name__}: {exc}")


PLAIN_TOKENS = st.sampled_from([
    "mx.zjut.edu.cn", "MX.Zjut.edu.cn", "mx-1.zjut", ";", "; ", " ", "  ", "=", ".", "@", "-", "+", "_",
    "spf", "dkim", "dmarc", "arc", "SPF", "pass", "fail", "none", "softfail", "smtp", "header", "policy",
    "reason", "mailfrom", "from", "d", "i", "s", "b", "zjxx.edu.cn", "wang@zjxx.edu.cn", "@zjxx.edu.cn",
    "(c)", '"q"', "/1", "\t", "1",
])
PLAIN_CLAUSE = st.builds(
    lambda method, result, props: f"{method}={result}" + "".join(f" {t}.{n}={v}" for t, n, v in props),
    st.sampled_from(["spf", "dkim", "dmarc"]), st.sampled_from(["pass", "fail", "none", "neutral", "softfail"]),
    st.lists(st.tuples(st.sampled_from(["smtp", "header"]), st.sampled_from(["mailfrom", "from", "d", "i", "b"]),
                       st.sampled_from(["zjxx.edu.cn", "wang@zjxx.edu.cn", "a-b.cn", "x+y_z", "default"])),
             max_size=3))
PLAIN = st.builds(lambda sid, cls, seps, tail: sid + "".join(s + c for s, c in zip(seps, cls)) + tail,
                  st.sampled_from(["mx.zjut.edu.cn", "MX.ZJUT.EDU.CN", "other.cn"]), st.lists(PLAIN_CLAUSE, min_size=1, max_size=4),
                  st.lists(st.sampled_from(["; ", ";"]), min_size=4, max_size=4), st.sampled_from(["", " ", "\r\n", ";"]))


def test_the_benchmark_and_test_mail_headers_are_plain() -> None:
    value = ("mx.zjut.edu.cn; spf=pass smtp.mailfrom=school1.edu.cn; dkim=pass header.d=school1.edu.cn; "
             "dmarc=pass header.from=school1.edu.cn")
    assert _plain_clauses(value) == ("mx.zjut.edu.cn", [
        ("spf", "pass", (("smtp", "mailfrom", "school1.edu.cn"),)), ("dkim", "pass", (("header", "d", "school1.edu.cn"),)),
        ("dmarc", "pass", (("header", "from", "school1.edu.cn"),))])
    assert [_plain_clauses(value) is not None for value in REAL] == [False] * len(REAL)


@settings(max_examples=400, deadline=None)
@given(PLAIN)
def test_plain_values_read_without_authres_the_same_as_with_it(value: str) -> None:
    assert clauses(header_clauses, value) == clauses(_authres_clauses, value)


@settings(max_examples=400, deadline=None)
@given(st.lists(PLAIN_TOKENS, max_size=30).map("".join))
def test_any_value_near_the_plain_form_reads_the_same_as_with_authres(value: str) -> None:
    assert clauses(header_clauses, value) == clauses(_authres_clauses, value)


TRAPS = [  # authres reads "none" and "reason" as prefixes, and a type outside smtp/header/body/policy as an error
    "mx.zjut.edu.cn; none=pass", "mx.zjut.edu.cn; nonesuch=pass smtp.mailfrom=a.cn",
    "mx.zjut.edu.cn; spf=pass reasonable.x=y", "mx.zjut.edu.cn; spf=pass other.mailfrom=a.cn",
    "mx.zjut.edu.cn; spf=pass smtp.mailfrom=@a.cn", "mx.zjut.edu.cn; spf=pass smtp.mailfrom=a.cn;",
    "mx.zjut.edu.cn 1; spf=pass", "mx.zjut.edu.cn;spf=pass;dkim=fail header.d=a.cn", "mx.zjut.edu.cn ; spf=pass",
]


@pytest.mark.parametrize("value", TRAPS)
def test_values_authres_reads_its_own_way_read_the_same(value: str) -> None:
    assert clauses(header_clauses, value) == clauses(_authres_clauses, value)


def test_the_sender_check_reads_a_plain_header_without_authres_parser(monkeypatch) -> None:
    from mail_factory import make_mail
    from mailbot.mail import gate
    from mailbot.mail.message import parse_head

    def refuse(value: str) -> None:
        raise AssertionError(f"authres asked to parse {value!r}")

    monkeypatch.setattr(gate, "parse_authentication_results", refuse)
    parsed = parse_head(make_mail(sender="reg1@school1.edu.cn", extra_headers={"Authentication-Results": (
        "mx.zjut.edu.cn; spf=pass smtp.mailfrom=school1.edu.cn; dkim=pass header.d=school1.edu.cn; "
        "dmarc=pass header.from=school1.edu.cn")}))
    assert gate.sender_trust(parsed, trusted_authserv_ids=("mx.zjut.edu.cn",)) == gate.TrustVerdict(
        "accept", "ok", dmarc="pass", spf="pass", dkim="pass", aligned="dmarc")
