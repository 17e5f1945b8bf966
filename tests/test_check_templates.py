"""`check` compiles and renders every template the configuration can use — built-in ones
and the operator's overrides, in every inbox language, for every message kind — and
names the file, the line and the fix of each problem (exit 2, one line each, no traceback)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.conftest import EXAMPLE, example_text

Cli = Callable[..., Result]


def config_with_templates(tmp_path: Path, files: dict[str, str], *, language: str = "en",
                          directory: Path | None = None) -> Path:  # fmt: skip
    """The example configuration with a templates directory holding `files`."""
    templates = directory or tmp_path / "templates"
    if directory is None:
        templates.mkdir(exist_ok=True)
    for name, text in files.items():
        (templates / name).parent.mkdir(parents=True, exist_ok=True)
        (templates / name).write_text(text, encoding="utf-8")
    text = example_text().replace('# templates = "/etc/sla-gateway/templates"',
                                  f'templates = "{templates}"')  # fmt: skip
    text = text.replace('language = "en" ', f'language = "{language}" ')
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def errors(result: Result) -> list[str]:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert all(line.startswith("error: ") for line in lines), lines
    return lines


def test_the_example_config_and_its_built_in_templates_pass(run_cli: Cli) -> None:
    result = run_cli("--config", str(EXAMPLE), "check")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("language", ["en", "de", "fr", "es", "nl"])
def test_every_built_in_language_passes(run_cli: Cli, tmp_path: Path, language: str) -> None:
    path = config_with_templates(tmp_path, {}, language=language)
    result = run_cli("--config", str(path), "check")
    assert result.exit_code == 0, result.output


def test_a_syntax_error_in_an_override_names_file_and_line(run_cli: Cli, tmp_path: Path) -> None:
    path = config_with_templates(
        tmp_path, {"ack.txt.j2": "Hello {{ customer_name }},\n\nyour reference: {{ reference }\n"}
    )
    lines = errors(run_cli("--config", str(path), "check"))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {tmp_path / 'templates' / 'ack.txt.j2'}:3: template syntax error")
    assert "fix the Jinja2 syntax" in lines[0]


def test_a_language_override_is_checked_in_its_language(run_cli: Cli, tmp_path: Path) -> None:
    broken = {"de/ack.subject.j2": "Ihre Nachricht {% if reference %}[{{ reference }}]\n"}
    path = config_with_templates(tmp_path, broken, language="de")
    lines = errors(run_cli("--config", str(path), "check"))
    assert len(lines) == 1, lines
    assert f"{tmp_path / 'templates' / 'de' / 'ack.subject.j2'}:" in lines[0]


def test_an_undefined_variable_is_named_with_what_is_available(run_cli: Cli, tmp_path: Path) -> None:
    path = config_with_templates(tmp_path, {"breach.txt.j2": "Hello,\n\n{{ foo.bar.baz }}\n"})
    lines = errors(run_cli("--config", str(path), "check"))
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"error: {tmp_path / 'templates' / 'breach.txt.j2'}:3: 'foo' is undefined")
    assert "breach notice" in line and "check the spelling" in line and "new_due" in line


def test_a_value_empty_for_some_mail_is_found(run_cli: Cli, tmp_path: Path) -> None:
    """`due_sender` is only there when the customer's Date is in another offset."""
    path = config_with_templates(
        tmp_path, {"ack.txt.j2": "Hello,\n\nyour time: {{ due_sender.time }}\n"}
    )
    lines = errors(run_cli("--config", str(path), "check"))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {tmp_path / 'templates' / 'ack.txt.j2'}:3: ")
    assert "{% if value %}" in lines[0]


def test_a_filter_that_raises_is_named(run_cli: Cli, tmp_path: Path) -> None:
    files = {
        "ack.html.j2": "<p>{{ reference }}</p>\n<p>{{ subject | dur }}</p>\n",  # dur wants seconds
        "policy.md.j2": "# Promise\n\n{{ (priorities | length) // 0 }}\n",
    }
    path = config_with_templates(tmp_path, files)
    lines = errors(run_cli("--config", str(path), "check"))
    assert len(lines) == 2, lines
    ack, policy = sorted(lines)
    assert ack.startswith(f"error: {tmp_path / 'templates' / 'ack.html.j2'}:2: TypeError")
    assert policy.startswith(f"error: {tmp_path / 'templates' / 'policy.md.j2'}:3: ZeroDivisionError")
    assert "policy page" in policy


def test_every_problem_is_reported_at_once(run_cli: Cli, tmp_path: Path) -> None:
    files = {"ack.txt.j2": "{% for x in %}\n", "digest.txt.j2": "{{ data.nothing_here }}\n",
             "de/breach.subject.j2": "{{ }}\n"}  # fmt: skip
    lines = errors(run_cli("--config", str(config_with_templates(tmp_path, files)), "check"))
    names = sorted(line.removeprefix("error: ").split(":")[0] for line in lines)
    templates = tmp_path / "templates"
    assert names == sorted(str(templates / n) for n in ("ack.txt.j2", "de/breach.subject.j2", "digest.txt.j2"))


def test_a_missing_templates_directory_is_one_clear_line(run_cli: Cli, tmp_path: Path) -> None:
    path = config_with_templates(tmp_path, {}, directory=tmp_path / "not-there")
    lines = errors(run_cli("--config", str(path), "check"))
    assert lines == [
        f'error: {path}: templates: directory "{tmp_path / "not-there"}" does not exist; '
        "create it (`sla-gateway init` writes one with copies of the built-in templates) "
        "or remove the key to use the built-in ones"
    ]


def test_a_fine_override_passes(run_cli: Cli, tmp_path: Path) -> None:
    files = {"ack.txt.j2": "Hello{% if customer_name %} {{ customer_name }}{% endif %},\n"
                           "we answer by {{ due }}{% if due_sender %} ({{ due_sender.time }}){% endif %}.\n"}  # fmt: skip
    result = run_cli("--config", str(config_with_templates(tmp_path, files)), "check")
    assert result.exit_code == 0, result.output
