"""The awsQuery reader on forms no SDK sends: what a client can put in a form must come back as parameters
or as CloudWatch's error, never as a fault of the server's, and cost no more than the form's size.
(The protocols as boto3 speaks them: test_cloudwatch_protocols.py.)"""

from __future__ import annotations

import tracemalloc
from typing import Any

from moorage.api.cloudwatch.query import AwsQuery
from moorage.api.cloudwatch.wire import Request
from moorage.api.spec import load_service

FORM = {b"content-type": b"application/x-www-form-urlencoded"}


def _params(body: str) -> dict[str, Any]:
    query = AwsQuery()
    request = Request(b"POST", b"/", FORM, body.encode())
    return query.params(query.operation(load_service("cloudwatch"), request), request)


def test_list_entries_numbered_with_other_digits_are_no_entries() -> None:
    # "²" is a digit to str.isdigit but not to int(): it names no list entry
    body = "Action=DescribeAlarms&Version=2010-08-01&AlarmNames.member.%C2%B2=a&AlarmNames.member.1=b"
    assert _params(body) == {"AlarmNames": ["b"]}


def test_a_name_of_many_parts_costs_memory_in_proportion_to_its_length() -> None:
    deep = ".".join(["ab"] * 6_000)  # 18 KB; every prefix of it indexed would be ~54 MB
    body = f"Action=DescribeAlarms&Version=2010-08-01&{deep}=x&MaxRecords=5"
    tracemalloc.start()
    try:
        params = _params(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert params == {"MaxRecords": 5}
    assert peak < 2 * 1024 * 1024
