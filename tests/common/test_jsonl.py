import json

import pytest

from lovr_common.jsonl import JsonlError, JsonlWriter, ReadStats, cut_torn_tail, read_jsonl, write_jsonl_atomic


def test_round_trip_keeps_unicode(tmp_path):
    path = tmp_path / "a.jsonl"
    records = [{"id": "x", "cap": "café ☕"}, {"id": "-y", "cap": ""}]
    assert write_jsonl_atomic(path, records) == 2
    assert list(read_jsonl(path)) == records
    assert "café" in path.read_text(encoding="utf-8")


def test_torn_last_line_is_dropped_and_cut_before_append(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "cap": "half a li')
    stats = ReadStats()
    assert list(read_jsonl(path, stats=stats)) == [{"id": "a"}]
    assert stats.torn_tail
    with JsonlWriter(path) as writer:
        writer.write({"id": "c"})
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "c"}\n'


def test_last_line_without_newline_that_parses_is_kept(tmp_path):
    # Hand-written release files often lack the final newline: a complete object is not a torn write.
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}')
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "c"}\n[1, 2]\n')
    with pytest.raises(JsonlError, match=r"a\.jsonl:2: malformed"):
        list(read_jsonl(path))
    stats = ReadStats()
    assert [r["id"] for r in read_jsonl(path, skip_malformed=True, stats=stats)] == ["a", "c"]
    # line 2 is not JSON, line 4 is JSON but not an object
    assert [m.split(": ")[0].rsplit(":", 1)[1] for m in stats.skipped] == ["2", "4"]


def test_non_utf8_line_is_reported(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "\xff"}\n')
    with pytest.raises(JsonlError, match=r":2: malformed"):
        list(read_jsonl(path))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", b""),
        (b"abc", b""),
        (b"a\nb", b"a\n"),
        (b"a\n", b"a\n"),
        (b"x" * 70000 + b"\n" + b"y" * 70000, b"x" * 70000 + b"\n"),
    ],
)
def test_cut_torn_tail(tmp_path, content, expected):
    path = tmp_path / "a.jsonl"
    path.write_bytes(content)
    cut_torn_tail(path)
    assert path.read_bytes() == expected


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl_atomic(path, [{"id": "old"}])

    def broken():
        yield {"id": "new"}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, broken())
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"id": "old"}]
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]


def test_a_byte_order_mark_opening_the_file_is_skipped_and_nowhere_else(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a"}\r\n{"id": "b"}\r\n')  # as a Windows editor saves it
    assert list(read_jsonl(path, tolerate_torn_tail=False)) == [{"id": "a"}, {"id": "b"}]
    path.write_bytes(b'{"id": "a"}\n\xef\xbb\xbf{"id": "b"}\n')
    with pytest.raises(JsonlError, match=r"a\.jsonl:2: malformed .*BOM"):
        list(read_jsonl(path))


def test_a_key_twice_in_one_object_is_malformed_naming_file_line_and_key(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "meta": {"cap": "x", "cap": "y"}}\n')  # json.loads keeps "y"
    with pytest.raises(JsonlError, match=r"a\.jsonl:2: malformed JSON Lines record \(key 'cap' appears twice"):
        list(read_jsonl(path))
    stats = ReadStats()
    assert list(read_jsonl(path, skip_malformed=True, stats=stats)) == [{"id": "a"}]
    assert "key 'cap' appears twice" in stats.skipped[0]
