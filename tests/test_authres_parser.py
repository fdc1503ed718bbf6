"""The gate's ``Authentication-Results`` parser is authres' own grammar made linear: on every
header value, well-formed or not, it gives what ``authres.AuthenticationResultsHeader
.parse_value`` gives, results and errors alike."""

from __future__ import annotations

import authres
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.mail.gate import parse_authentication_results

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
