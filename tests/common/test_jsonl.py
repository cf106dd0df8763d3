import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lovr_common.jsonl import (
    ARROW_BLOCK_BYTES,
    JsonlError,
    JsonlWriter,
    ReadStats,
    cut_torn_tail,
    read_jsonl,
    read_jsonl_arrow,
    read_jsonl_numbered,
    write_jsonl_atomic,
)

SCHEMA = pa.schema([("id", pa.string()), ("cap", pa.string())])


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


def strict_rows(path) -> list[dict]:
    """What the strict reader gives, as `read_jsonl_arrow` gives it: the schema's fields (null where absent)."""
    return [
        {name: record.get(name) for name in SCHEMA.names}
        for _, record in read_jsonl_numbered(path, tolerate_torn_tail=False)
    ]


def test_arrow_read_equals_the_strict_reader(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [
        r'{"id": "a", "cap": "caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \n\t", "n": 1, "x": [1, 2.5], "o": {"k": null}}',
        '{"cap": "é中😀 raw", "id": "-b", "n": -0.0, "x": [], "o": {"k": true}}',
        '{"id": "c", "cap": "", "big": 123456789012345678901234567890, "NaN": "a string is no number"}',
        '{"id": null, "cap": "no id: null, as an absent field"}',
        "{}",
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())  # a byte order mark, no final line end
    table = read_jsonl_arrow(path, SCHEMA)
    assert table is not None and table.schema == SCHEMA
    assert table.to_pylist() == strict_rows(path)


def test_arrow_read_spans_its_blocks_as_the_strict_reader_does(tmp_path):
    # The file is read in blocks of B = ARROW_BLOCK_BYTES bytes. Block 1 ends with a line end, a two-byte character
    # straddles blocks 2 and 3, and block 4 opens with a line end: the checks carry over from block to block.
    block = ARROW_BLOCK_BYTES

    def line(size: int, tail: bytes = b"") -> bytes:
        """A line of `size` bytes, line end included, whose caption ends with `tail`."""
        head, end = b'{"id": "x", "cap": "', b'"}\n'
        return head + b"a" * (size - len(head) - len(tail) - len(end)) + tail + end

    e_acute = "\u00e9".encode()
    lines = [line(block), line(block // 2), line(block // 2 + 4, e_acute), line(block - 3), line(100)]
    data = b"".join(lines)
    assert data[block - 1 : block + 1] == b"\n{" and data[2 * block - 1 : 2 * block + 1] == e_acute
    assert data[3 * block - 1 : 3 * block + 1] == b"}\n"
    path = tmp_path / "a.jsonl"
    path.write_bytes(data)
    table = read_jsonl_arrow(path, SCHEMA)
    assert table is not None and table.to_pylist() == strict_rows(path)


@pytest.mark.parametrize(
    "content",
    [
        b'{"id": "a"} {"id": "b"}\n',  # two objects on one line: the strict reader refuses it
        b'{"id":\n"a"}\n',  # one object over two lines: refused
        b'{"id": "a"}\n\n{"id": "b"}\n',  # a blank line: skipped by the strict reader; pyarrow does not tell
        b'{"id": "a"}\r\n{"id": "b"}\r\n',  # \r\n line ends: taken by both, but pyarrow also splits lines at \r
        b' {"id": "a"}\n',  # whitespace around an object
        b'{"id": "a", "other": "\xff"}\n',  # not UTF-8, in a field outside the schema
        b'{"id": "a", "n": Inf}\n',  # pyarrow takes Inf, -Inf and -NaN, which json refuses
        b'{"id": "a", "n": -Inf}\n',
        b'{"id": "a", "n": [-NaN]}\n',
        b'{"id": "a", "n": NaN}\n',  # both take NaN; not vouched for all the same
        b'{"id": "a", "n": 1e400}\n',  # json takes it (inf), pyarrow refuses
        b'{"id": "a\\ud800"}\n',  # a lone surrogate escape: json takes it, pyarrow refuses
        b'{"id": "a", "n": 1, "n": 2}\n',  # a key twice, outside the schema: both refuse
        b'{"id": "a", "o": [{"k": 1, "k": 2}]}\n',  # ... and deep inside a value
        b'{"id": "a", "id": "b"}\n',
        b'{"id": 1}\n',  # not a string
        b"[1, 2]\n",  # not an object
        b"",
        b"\n",
        b'\xef\xbb\xbf\xef\xbb\xbf{"id": "a"}\n',  # a second byte order mark: refused
        b'{"id": "a"}\n\x00{"id": "b"}\n',  # a NUL byte: refused
        b'{"id": "a", "deep": ' + b"[" * 65 + b"]" * 65 + b"}\n",  # json recurses per level; pyarrow does not
    ],
)
def test_arrow_read_leaves_to_the_strict_reader_what_pyarrow_reads_otherwise(tmp_path, content):
    path = tmp_path / "a.jsonl"
    path.write_bytes(content)
    assert read_jsonl_arrow(path, SCHEMA) is None


def test_arrow_read_of_a_line_longer_than_a_block_equals_the_strict_reader(tmp_path):
    path = tmp_path / "a.jsonl"  # no line end in the first block read: the checks wait for the next
    line = json.dumps({"id": "a", "cap": "\u00e9" * (ARROW_BLOCK_BYTES * 3 // 4)}, ensure_ascii=False)  # 1.5 blocks
    path.write_text(line + '\n{"id": "b"}\n', encoding="utf-8")
    table = read_jsonl_arrow(path, SCHEMA)
    assert table is not None and table.to_pylist() == strict_rows(path)


@pytest.mark.parametrize(
    ("text", "utf8"),
    [
        (b"\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", True),  # 2, 3 and 4 bytes; U+10FFFF
        (b"\xc0\xaf", False),  # an overlong "/"
        (b"\xe0\x80\xaf", False),
        (b"\xed\xa0\x80", False),  # an encoded surrogate
        (b"\xf4\x90\x80\x80", False),  # beyond U+10FFFF
        (b"\xe4\xb8", False),  # cut short
        (b"\x80", False),  # a lone continuation byte
    ],
)
@pytest.mark.parametrize("field", ["cap", "other"])
def test_arrow_read_checks_utf8_as_python_decodes_it(tmp_path, text, utf8, field):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": "a", "' + field.encode() + b'": "' + text + b'"}\n')
    table = read_jsonl_arrow(path, SCHEMA)
    if utf8:
        assert table.to_pylist() == strict_rows(path)
    else:
        assert table is None
        with pytest.raises(JsonlError, match="utf-8"):
            strict_rows(path)


# Pieces of JSON Lines, well formed or not, that lines are assembled from.
FRAGMENTS = [
    b'{"id": "a", "cap": "x"}',
    b'{"cap": "\xc3\xa9", "id": "b", "n": [1, {"k": null}]}',
    b'{"id": "c", "cap": "y", "f": 1.5}',
    b"{}",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"',
    b"\\",
    b" ",
    b"\t",
    b"\r",
    b"\n",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xef\xbb\xbf",
    b"NaN",
    b"-Inf",
    b"Infinity",
    b"1e400",
    b"\\ud800",
    b'"id"',
    b'"cap"',
    b'"n"',
    b"0",
    b"-",
    b"null",
    b"true",
]


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(FRAGMENTS), max_size=12),
    lines=st.lists(st.sampled_from(FRAGMENTS[:4]), max_size=3),
)
def test_arrow_read_vouches_only_for_what_the_strict_reader_reads_alike(tmp_path_factory, pieces, lines):
    path = tmp_path_factory.mktemp("fuzz") / "a.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n" + b"".join(pieces))
    table = read_jsonl_arrow(path, SCHEMA)
    if table is not None:
        assert table.to_pylist() == strict_rows(path)  # the strict reader takes the file, and reads the same
