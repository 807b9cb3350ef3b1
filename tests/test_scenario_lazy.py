"""A scenario's [[message]] tables parsed one at a time (scenario/loader.py `_split_messages`).

The loader cuts a file's text before every line that starts with `[` and parses each piece alone,
so a file of 50,000 messages never exists as one tomllib tree. Users rely on it meaning exactly
what the whole file means: for any file - valid, broken, or written to trick the cutting (a
`[[message]]` line inside a multi-line string, a `[message.x]` table, a quoted header, CRLF) -
loading gives the same scenario or the same one-line error as parsing the whole file does.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from conftest import scenario_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labsim.errors import InputError, ScenarioError
from labsim.scenario import loader
from labsim.scenario.loader import load_scenario, load_scenario_text
from labsim.topology.defaults import default_lab

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
SENDERS = sorted(loader.sender_realms(default_lab()))
TRICKS = ["[[message]]", "[[ message ]]", "[message]", "[x]", "[[expect.message]]", '"""', "'''", "# [[message]]",
          "[[message]]\nid = \"forged\"\nfrom = \"a@b\"\nto = [\"c@d\"]", "é", "\\", "\r"]


def _full(path: Path) -> Any:
    """What the whole file means: tomllib over all of it, then the same checks."""
    try:
        loaded = loader._from_data(path, loader.read_scenario_data(path))
    except InputError as exc:
        return ("error", loader._one_line(exc.where), loader._one_line(exc.problem))
    return ("ok", loaded.scenario, loaded.lab, loaded.start)


def _loaded(path: Path) -> Any:
    try:
        loaded = load_scenario(path)
    except ScenarioError as exc:
        return ("error", exc.where, exc.problem)
    return ("ok", loaded.scenario, loaded.lab, loaded.start)


text_with_tricks = st.lists(st.text(max_size=12) | st.sampled_from(TRICKS), max_size=5).map("\n".join)
messages = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=8) | st.sampled_from(["m1", "m2", "m3"]),
     "from": st.sampled_from(SENDERS) | st.sampled_from(["nobody@nowhere.test", "not an address"]),
     "to": st.lists(st.sampled_from(SENDERS) | st.just("x@partner.test"), max_size=3)},
    optional={"at": st.sampled_from(["+00:00:05", "+00:01:00", "-00:00:01", "x"]), "subject": text_with_tricks,
              "body": text_with_tricks, "size": st.integers(-5, 10**6), "extra": st.integers()},
)
good_messages = st.fixed_dictionaries(  # most of them load, so the tricks meet files that would load
    {"id": st.sampled_from(["m1", "m2", "m3", "m4", "m5"]), "from": st.sampled_from(SENDERS),
     "to": st.lists(st.sampled_from(SENDERS), min_size=1, max_size=2)},
    optional={"subject": st.sampled_from(["s", "[[message]]", "# x", '"""']), "body": text_with_tricks},
)
expectations = st.fixed_dictionaries({"id": st.sampled_from(["m1", "m2", "m3", "zz"])},
                                     optional={"fate": st.sampled_from(["delivered", "failed", "lost"])})


@st.composite
def scenario_files(draw: st.DrawFn) -> str:
    """A scenario whose [[message]] tables come between other tables, in tomli_w's spellings (with
    multi-line strings or escapes), sometimes with a line that tries to trick the cutting."""
    multiline = draw(st.booleans())
    tables = draw(st.lists(good_messages | good_messages | good_messages | messages, max_size=6))
    parts = [tomli_w.dumps({"message": [m]}, multiline_strings=multiline) for m in tables]
    for e in draw(st.lists(expectations, max_size=2)):
        parts.insert(draw(st.integers(0, len(parts))), tomli_w.dumps({"expect": {"message": [e]}}))
    for trick in draw(st.lists(st.sampled_from(TRICKS + ["[message.x]\na = 1", "message = []", '[["message"]]',
                                                         'x = """\n[[message]]\n"""', "[expect]"]), max_size=2)):
        parts.insert(draw(st.integers(0, len(parts))), trick + "\n")
    text = scenario_text("\n".join(parts))
    return text.replace("\n", "\r\n") if draw(st.booleans()) else text


@SETTINGS
@given(text=scenario_files())
def test_any_file_means_what_the_whole_file_means(tmp_path: Path, text: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8", newline="")
    assert _loaded(path) == _full(path)


@SETTINGS
@given(data=st.lists(messages, min_size=1, max_size=6), multiline=st.booleans())
def test_valid_messages_load_as_the_whole_parse_gives_them(tmp_path: Path, data: list[dict[str, Any]],
                                                           multiline: bool) -> None:
    """The files that load: the same rows, in file order, and the lazy path took them."""
    fixed = [{**m, "id": f"m{i}", "from": SENDERS[0], "to": m["to"] or [SENDERS[1]]} for i, m in enumerate(data)]
    for m in fixed:
        m.pop("extra", None)
        m.pop("at", None)
        m["size"] = abs(m.get("size", 0))
    text = scenario_text(tomli_w.dumps({"message": fixed}, multiline_strings=multiline))
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    full = _full(path)
    if full[0] == "error":  # a subject with a line break: rejected alike
        assert _loaded(path) == full
        return
    assert _loaded(path) == full
    split = loader._split_messages(text)
    assert split is not None and [r.id for r in split[1]] == [m["id"] for m in fixed]


def _many(n: int) -> str:
    rows = "".join(f'[[message]]\nid = "m{i}"\nat = "+00:00:{i % 60:02d}"\nfrom = "{SENDERS[0]}"\n'
                   f'to = ["{SENDERS[1]}"]\n\n' for i in range(n))
    return scenario_text(rows)


def test_a_big_file_is_never_parsed_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _many(400)
    parsed: list[int] = []
    real = tomllib.loads

    def loads(s: str, **kw: Any) -> dict[str, Any]:
        parsed.append(len(s))
        return real(s, **kw)

    monkeypatch.setattr(loader.tomllib, "loads", loads)
    loaded = load_scenario_text(text)
    assert [m.id for m in loaded.scenario.message] == [f"m{i}" for i in range(400)]
    assert max(parsed) < len(text) / 20  # the training text and one table at a time, never the file


def test_a_header_line_inside_a_body_is_text(tmp_path: Path) -> None:
    body = 'body = """\nhello\n[[message]]\nid = "forged"\n[x]\n"""\n'
    text = _many(2) + f'[[message]]\nid = "real"\nfrom = "{SENDERS[0]}"\nto = ["{SENDERS[1]}"]\n{body}'
    loaded = load_scenario_text(text)
    assert [m.id for m in loaded.scenario.message] == ["m0", "m1", "real"]
    assert loaded.scenario.message[2].body == "hello\n[[message]]\nid = \"forged\"\n[x]\n"
    assert loader._split_messages(text) is not None  # the cuts inside the string were joined back


def test_an_error_in_a_message_names_it_and_the_whole_parse_agrees(tmp_path: Path) -> None:
    text = _many(3).replace(f'id = "m1"\nat = "+00:00:01"\nfrom = "{SENDERS[0]}"',
                            'id = "m1"\nat = "+00:00:01"\nfrom = "no address"')
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert (exc.value.where, exc.value.problem) == (f"{path}: message[1].from", "'no address' is not an e-mail address")
    assert _full(path) == ("error", exc.value.where, exc.value.problem)


def test_a_syntax_error_names_the_line_of_the_file(tmp_path: Path) -> None:
    text = _many(5)
    lines = text.split("\n")
    bad = next(i for i, line in enumerate(lines) if line == 'id = "m3"')
    lines[bad] = 'id = "m3'
    path = tmp_path / "s.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    assert _loaded(path) == _full(path)
    assert f"line {bad + 1}" in _loaded(path)[2]


def test_a_broken_file_costs_a_bounded_number_of_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unclosed string at the top makes every cut look like one inside a string: the pieces are
    joined within a budget, then the whole file is parsed once for its error."""
    text = scenario_text('x = """\n' + "[a]\nb = 1\n" * 3000)
    parsed: list[int] = []
    real = tomllib.loads

    def loads(s: str, **kw: Any) -> dict[str, Any]:
        parsed.append(len(s))
        return real(s, **kw)

    monkeypatch.setattr(loader.tomllib, "loads", loads)
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario_text(text)
    assert sum(parsed) <= 4 * len(text) + (64 << 10)
