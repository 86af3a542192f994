"""A model folder as an attacker hands it over: downloaded from the internet, or sitting in a
shared models folder that discovery reads at every start-up.

What each test holds to: a hostile folder costs bounded memory and time (big files are sparse
here, so the tests stay fast while the files claim gigabytes), nothing is written outside the
models folder, no code from the folder runs (`torch.export.load` itself unpickles, loads shared
libraries and evaluates strings from an archive, so a marker file that hostile code would create
must stay absent), the refusal is one line naming the file and the problem, and no half-written
model folder is left behind. Each attack goes through `models check` (`check_folder`), `models
add` (`add_model`) and discovery (`ModelRegistry`) where it applies.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import shutil
import threading
import time
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from model_folders import regression_folder, text_folder
from torch import nn

from engine.models import ModelRegistry, check_folder, packaging
from engine.models.check import MAX_ARTIFACT_BYTES, ArchiveRefused, load_program, vet_archive
from engine.models.examples import MAX_LINES_READ, stored_examples
from engine.models.manifest import MAX_MANIFEST_BYTES, read_manifest
from engine.models.packaging import MAX_DATA_FILE_BYTES, AddResult, PackagingError, add_model

posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and /etc are POSIX")
MB = 1 << 20


@pytest.fixture(autouse=True)
def _no_env_models_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERDECK_MODELS_DIR", raising=False)


# Helpers ------------------------------------------------------------------------------------


def _edit_manifest(folder: Path, **changes: Any) -> None:
    path = folder / "model.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(changes)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def _one_line(message: str, *parts: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    for part in parts:
        assert part in message, (part, message)


def _check_says(folder: Path, *parts: str) -> None:
    check = check_folder(folder)
    assert not check.ok
    _one_line("; ".join(check.problems), *parts)


def _add_refused(source: Path, models: Path, *parts: str, **options: Any) -> None:
    """`models add` refuses `source` in one line and leaves the models folder as it was: no
    model, no hidden staging folder."""
    with pytest.raises(PackagingError) as info:
        add_model(source, models, **options)
    _one_line(str(info.value), *parts)
    assert not models.exists() or list(models.iterdir()) == []


def _discovery_skips(models: Path, *parts: str) -> None:
    """Start-up (discover, then load and check every model: `load_all`) skips the one folder
    in `models`, saying so. The built-ins are left out: they are not under attack."""
    registry = ModelRegistry()
    registry.add_folder_tree(models)
    registry.load_all()
    assert registry.names() == [] and registry.problems, registry.problems
    assert all(
        line.startswith(f"{models / registry.broken[0].folder.name}: ")
        for line in registry.problems
    )
    _one_line("; ".join(registry.problems), *parts)


def _refused_everywhere(tmp_path: Path, source: Path, *parts: str) -> None:
    """check, add and start-up each refuse `source` with the same words. Its parent, which
    holds only it, stands for a shared models folder (`source` is not copied into one: copying
    a FIFO blocks, copying a sparse file writes it out)."""
    assert [p.name for p in source.parent.iterdir()] == [source.name]
    _check_says(source, *parts)
    _add_refused(source, tmp_path / "models", *parts)
    _discovery_skips(source.parent, *parts)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@contextlib.contextmanager
def _python_peak() -> Iterator[list[int]]:
    """The most memory Python held at once within the block (what reading a file whole, or a
    line of it, shows), in the one-item list yielded."""
    peak = [0]
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


class _Marker:
    """Pickles to a call of `exec` that creates `path`: code that must never run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return exec, (f"open({str(self.path)!r}, 'w').close()",)


def _marker_pickle(path: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(_Marker(path), buffer)
    return buffer.getvalue()


def _rewrite(folder: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """The folder's model.pt2 rewritten member by member (`change` edits the dict)."""
    path = folder / "model.pt2"
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    change(members)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a duplicate name, when that is the attack
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name.removesuffix("#twice"), data)
    return path


def _key(members: dict[str, bytes], suffix: str) -> str:
    return next(name for name in members if name.endswith(suffix))


def _edit_graph(members: dict[str, bytes], edit: Callable[[dict[str, Any]], None]) -> None:
    key = _key(members, "models/model.json")
    program = json.loads(members[key])
    edit(program)
    members[key] = json.dumps(program).encode()


# Links, FIFOs and devices -------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("target", ["/dev/zero", "/etc/passwd", "secret"])
def test_an_artifact_linked_out_of_its_folder_is_not_read(tmp_path: Path, target: str) -> None:
    """Before: a link to /dev/zero read as "missing model.pt2"; one to /etc/passwd (or any file
    of the user's) was copied into the models folder before the check refused it."""
    secret = tmp_path / "secret"
    secret.write_text("the user's own file", encoding="utf-8")
    source = regression_folder(tmp_path / "src" / "temperature")
    (source / "model.pt2").unlink()
    (source / "model.pt2").symlink_to(secret if target == "secret" else target)
    _refused_everywhere(tmp_path, source, "model.pt2: a link to a file outside the model's folder")


@posix_only
def test_a_tokenizer_linked_to_dev_urandom_is_refused_at_once(tmp_path: Path) -> None:
    """Before: discovery read it until memory ran out (4.6 GB in 20 s, still reading)."""
    models = tmp_path / "src"
    folder = text_folder(models / "review")
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to("/dev/urandom")
    started = time.perf_counter()
    _discovery_skips(models, "tokenizer.json: a link to a file outside the model's folder")
    assert time.perf_counter() - started < 2


@posix_only
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["model.pt2", "tokenizer.json", "examples.jsonl", "heldout.csv"])
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, name: str) -> None:
    """Before: a FIFO tokenizer.json blocked check and start-up for good; a FIFO model.pt2 read
    as "missing"; a FIFO examples.jsonl was silently skipped."""
    source = text_folder(tmp_path / "src" / "review")
    (source / name).unlink(missing_ok=True)
    os.mkfifo(source / name)
    _refused_everywhere(tmp_path, source, f"{name}: not a regular file")


@posix_only
def test_a_held_out_file_linked_to_a_secret_is_not_copied(tmp_path: Path) -> None:
    """Its rows would even pass as examples (the input has a default): before, the secret was
    copied into the models folder as the model's held-out file."""
    secret = tmp_path / "secret.csv"
    secret.write_text("celsius,token\n1,hunter2\n", encoding="utf-8")
    source = regression_folder(tmp_path / "src" / "temperature")
    _edit_manifest(source, inputs=[{"name": "celsius", "type": "float", "default": 0.0}])
    (source / "heldout.csv").symlink_to(secret)
    _add_refused(
        source, tmp_path / "models", "heldout.csv: a link to a file outside the model's folder"
    )


@posix_only
def test_links_within_the_folder_and_a_linked_folder_still_add(tmp_path: Path) -> None:
    source = regression_folder(tmp_path / "src" / "temperature")
    (source / "model.pt2").rename(source / "weights.pt2")
    (source / "model.pt2").symlink_to("weights.pt2")
    linked = tmp_path / "latest"
    linked.symlink_to(source, target_is_directory=True)
    result = add_model(linked, tmp_path / "models")
    copied = result.folder / "model.pt2"
    assert copied.is_file() and not copied.is_symlink()  # the file itself, not a link
    assert sorted(p.name for p in result.folder.iterdir()) == ["model.json", "model.pt2"]


# Sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "name", "size", "words"),
    [
        (regression_folder, "model.json", MAX_MANIFEST_BYTES + 1, "model.json: larger than 4 MiB"),
        (text_folder, "tokenizer.json", 2 << 30, "tokenizer.json: larger than 64 MiB"),
        (regression_folder, "model.pt2", MAX_ARTIFACT_BYTES + 1, "larger than 2048 MiB"),
    ],
)
def test_an_oversized_file_is_refused_unread(
    tmp_path: Path, make: Callable[[Path], Path], name: str, size: int, words: str
) -> None:
    """Sparse files, so only their size is big. Before: a 2 GB model.json or tokenizer.json was
    read whole (2.1 GB and 5 s each), a 2 GB model.pt2 copied whole into the models folder."""
    source = make(tmp_path / "src" / "m")
    os.truncate(source / name, size)
    started = time.perf_counter()
    with _python_peak() as peak:
        _check_says(source, words)
    assert peak[0] < 20 * MB
    _refused_everywhere(tmp_path, source, words)
    assert time.perf_counter() - started < 2


def test_an_archive_that_is_no_zip_is_not_copied(tmp_path: Path) -> None:
    """Under the size limit but no zip at all: refused before 1 GB is copied."""
    source = regression_folder(tmp_path / "src" / "temperature")
    os.truncate(source / "model.pt2", 1 << 30)
    started = time.perf_counter()
    _add_refused(source, tmp_path / "models", "model.pt2: not a torch.export archive")
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("name", ["examples.jsonl", "heldout.csv", "heldout.jsonl"])
def test_a_2_gb_line_is_refused_in_bounded_memory(tmp_path: Path, name: str) -> None:
    """Before: a 2 GB examples.jsonl with no newline was read as one line (4.3 GB, 11 s)."""
    folder = regression_folder(tmp_path / "m")
    (folder / name).write_bytes(b"")
    os.truncate(folder / name, 2 << 30)
    check = check_folder(folder)
    assert check.problems == [f"{name}: line 1 is longer than 32 MiB"]
    assert check.manifest is not None
    with _python_peak() as peak:
        stored_examples(check.manifest, folder)
    assert peak[0] < 80 * MB


def test_a_million_blank_lines_are_not_all_read(tmp_path: Path) -> None:
    """Before: 50 million newlines took 4.5 s to skip; now reading stops after MAX_LINES_READ
    lines, so an example after them is not found."""
    folder = regression_folder(tmp_path / "m")
    (folder / "examples.jsonl").write_bytes(b"\n" * 1_000_000 + b'{"celsius": 1}\n')
    started = time.perf_counter()
    check = check_folder(folder)
    assert check.ok and check.examples == 0
    assert time.perf_counter() - started < 2
    assert MAX_LINES_READ < 1_000_000


def test_a_big_examples_file_is_not_copied(tmp_path: Path) -> None:
    source = regression_folder(tmp_path / "src" / "temperature")
    (source / "examples.jsonl").write_bytes(b'{"celsius": 1}\n')
    os.truncate(source / "examples.jsonl", MAX_DATA_FILE_BYTES + 1)
    _add_refused(source, tmp_path / "models", "examples.jsonl: larger than 256 MiB")


def test_a_deeply_nested_manifest_is_refused(tmp_path: Path) -> None:
    folder = regression_folder(tmp_path / "src" / "temperature")
    (folder / "model.json").write_text(
        '{"name": "x", "metrics": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8"
    )
    _refused_everywhere(tmp_path, folder, "model.json: Invalid JSON: recursion limit exceeded")


def _many_inputs(manifest: dict[str, Any]) -> None:
    manifest["inputs"] = [{"name": f"f{i}", "type": "float"} for i in range(100_000)]


def _many_labels(manifest: dict[str, Any]) -> None:
    manifest.update(task="tabular-classification", outputs=[])
    manifest["labels"] = [f"l{i}" for i in range(100_001)]


def _many_choices(manifest: dict[str, Any]) -> None:
    choices = [f"c{i}" for i in range(100_000)]
    manifest["inputs"] = [{"name": "e", "type": "enum", "choices": choices}]


def _huge_image(manifest: dict[str, Any]) -> None:
    manifest.update(task="image-classification", outputs=[], labels=["a", "b"])
    manifest["inputs"] = [{"name": "image", "type": "image", "shape": [100_000, 100_000]}]


def _huge_resize(manifest: dict[str, Any]) -> None:
    _huge_image(manifest)
    manifest["inputs"][0]["shape"] = [8, 8]
    manifest["preprocessing"] = {"image": {"size": [100_000, 8]}}


def _long_text(manifest: dict[str, Any]) -> None:
    manifest.update(task="text-classification", outputs=[], labels=["a", "b"])
    manifest["inputs"] = [{"name": "text", "type": "text", "max_length": 10**9}]


def _many_tokens(manifest: dict[str, Any]) -> None:
    manifest.update(task="text-classification", outputs=[], labels=["a", "b"])
    manifest["inputs"] = [{"name": "text", "type": "text"}]
    manifest["preprocessing"] = {"text": {"max_tokens": 10**9}}


def _short_mean(manifest: dict[str, Any]) -> None:
    manifest["preprocessing"] = {"mean": [0.0, 1.0], "std": [1.0]}


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_many_inputs, "model.json inputs: List should have at most 1024 items"),
        (_many_labels, "model.json labels: List should have at most 100000 items"),
        (_many_choices, "model.json inputs.0.choices: List should have at most 10000 items"),
        (_huge_image, "inputs.0.shape.0: Input should be less than or equal to 2048"),
        (_huge_resize, "preprocessing.image.size.0: Input should be less than or equal to 2048"),
        (_long_text, "inputs.0.max_length: Input should be less than or equal to 100000"),
        (_many_tokens, "preprocessing.text.max_tokens: Input should be less than or equal to"),
        (_short_mean, "preprocessing mean and std need 1 values each"),
    ],
)
def test_a_manifest_s_lists_and_sizes_are_bounded(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], words: str
) -> None:
    """Before: 100,000 inputs took 16 s to read (the input class), at every start-up; a
    100000x100000 image made the engine's probe rows ask for 240 GB."""
    folder = regression_folder(tmp_path / "src" / "m")
    manifest = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    edit(manifest)
    (folder / "model.json").write_text(json.dumps(manifest), encoding="utf-8")
    started = time.perf_counter()
    _discovery_skips(tmp_path / "src", words)
    assert time.perf_counter() - started < 1.5


# Names and paths in the manifest ------------------------------------------------------------

NOT_NAMES = ["..", ".hidden", "a" * 65, "tempеrature", "a/b", "x\n", ""]


@pytest.mark.parametrize("name", NOT_NAMES)
def test_a_manifest_name_that_is_no_folder_name_is_refused(tmp_path: Path, name: str) -> None:
    """A name is a folder's name and part of URLs: one component, not hidden, ASCII (the
    Cyrillic 'е' in "tempеrature" would pass for another model's name)."""
    source = regression_folder(tmp_path / "src" / "temperature")
    _edit_manifest(source, name=name)
    _refused_everywhere(tmp_path, source, "model.json name: ")


@pytest.mark.parametrize("name", NOT_NAMES)
def test_a_name_option_that_is_no_folder_name_is_refused(tmp_path: Path, name: str) -> None:
    source = regression_folder(tmp_path / "src" / "temperature")
    _add_refused(source, tmp_path / "models", "--name/--version name: ", name=name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("artifact", "../../x.pt2"),
        ("artifact", "/etc/passwd"),
        ("artifact", "sub/model.pt2"),
        ("artifact", ".model.pt2"),
        ("tokenizer", "../other/tokenizer.json"),
        ("tokenizer", "/tmp/tokenizer.json"),
        ("tokenizer", "sub/tokenizer.json"),
    ],
)
def test_a_manifest_names_no_file_outside_its_folder(
    tmp_path: Path, field: str, value: str
) -> None:
    """Before: `artifact: "../../x.pt2"` passed the check (it read the file two folders up)
    and `models add` wrote x.pt2 outside the models folder; an absolute path was read as is."""
    deep = tmp_path / "deep"
    source = text_folder(tmp_path / "src" / "review")
    shutil.copy(source / "model.pt2", tmp_path / "x.pt2")  # what "../../x.pt2" reaches
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    shutil.copy(source / "tokenizer.json", sub / "tokenizer.json")
    (source / "sub").symlink_to(sub, target_is_directory=True)  # a linked subfolder
    manifest = json.loads((source / "model.json").read_text(encoding="utf-8"))
    if field == "artifact":
        manifest["artifact"] = value
    else:
        manifest["preprocessing"]["text"]["tokenizer"] = value
    (source / "model.json").write_text(json.dumps(manifest), encoding="utf-8")
    where = "artifact" if field == "artifact" else "preprocessing.text.tokenizer"
    words = f"model.json {where}: {value!r}: a file name in the model's folder"
    _check_says(source, words)
    _add_refused(source, deep / "models", words)
    assert _files(deep) == {"models"}


def test_a_python_manifest_names_no_tokenizer_outside_its_folder(tmp_path: Path) -> None:
    source = tmp_path / "src" / "words.py"
    source.parent.mkdir()
    source.write_text(
        "MANIFEST = {'name': 'words', 'version': '1', 'task': 'text-classification',\n"
        "            'inputs': [{'name': 'text', 'type': 'text'}], 'labels': ['a', 'b'],\n"
        "            'preprocessing': {'text': {'tokenizer': '../tokenizer.json'}}}\n"
        "EXAMPLES = [{'text': 'good'}]\n"
        "def build():\n"
        "    raise AssertionError('not reached')\n",
        encoding="utf-8",
    )
    _add_refused(
        source,
        tmp_path / "models",
        "words.py: MANIFEST preprocessing.text.tokenizer: '../tokenizer.json': a file name",
    )


# Hostile archives ---------------------------------------------------------------------------


def test_a_torch_save_pickle_is_refused_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    source = regression_folder(tmp_path / "src" / "temperature")
    torch.save({"weight": _Marker(marker)}, source / "model.pt2")
    _refused_everywhere(tmp_path, source, "model.pt2: a torch.save file (pickled tensors)")
    assert not marker.exists()


def test_sample_inputs_that_run_code_are_refused(tmp_path: Path) -> None:
    """Every archive holds its sample inputs as a torch.save pickle, which torch.export.load
    reads with weights_only=True and, when that fails, with full pickle. Before: `models check`
    ran the pickle's code (and the check could pass)."""
    marker = tmp_path / "ran"
    source = regression_folder(tmp_path / "src" / "temperature")

    def evil_inputs(members: dict[str, bytes]) -> None:
        members[_key(members, "data/sample_inputs/model.pt")] = _marker_pickle(marker)

    _rewrite(source, evil_inputs)
    _refused_everywhere(
        tmp_path, source, "data/sample_inputs/model.pt would call __builtin__.exec when unpickled"
    )
    assert not marker.exists()


def test_a_symbolic_shape_that_runs_code_is_refused(tmp_path: Path) -> None:
    """The graph's shape expressions go to sympy.sympify, an eval. Before: the code ran on
    `models check`, which then passed."""
    marker = tmp_path / "ran"
    source = regression_folder(tmp_path / "src" / "temperature")

    def evil_shape(members: dict[str, bytes]) -> None:
        key = _key(members, "models/model.json")
        text = members[key].decode()
        symbol = "Symbol('s"
        at = text.index(symbol)
        payload = f"(__import__('pathlib').Path(r'{marker}').touch() or 0) + "
        members[key] = (text[:at] + payload + text[at:]).encode()

    _rewrite(source, evil_shape)
    _refused_everywhere(tmp_path, source, "has a symbolic shape that is not a plain expression")
    assert not marker.exists()


def _read_a_file(secret: Path) -> Callable[[dict[str, Any]], None]:
    """A graph edit: the program returns the first 16 bytes of `secret` (aten.from_file)."""

    def edit(program: dict[str, Any]) -> None:
        graph = program["graph_module"]["graph"]
        meta = copy.deepcopy(graph["tensor_values"]["x"])
        meta.update(dtype=1, sizes=[{"as_int": 16}], strides=[{"as_int": 1}])  # uint8 [16]
        graph["tensor_values"]["stolen"] = meta
        arguments = [
            ("filename", {"as_string": str(secret)}, 1),
            ("shared", {"as_bool": False}, 1),
            ("size", {"as_int": 16}, 1),
            ("dtype", {"as_scalar_type": 1}, 2),
        ]
        graph["nodes"].insert(
            0,
            {
                "target": "torch.ops.aten.from_file.default",
                "inputs": [{"name": n, "arg": a, "kind": k} for n, a, k in arguments],
                "outputs": [{"as_tensor": {"name": "stolen"}}],
                "metadata": {},
                "is_hop_single_tensor_return": None,
                "name": "stolen",
            },
        )
        graph["outputs"] = [{"as_tensor": {"name": "stolen"}}]
        output = program["graph_module"]["signature"]["output_specs"][0]["user_output"]
        output["arg"]["as_tensor"]["name"] = "stolen"

    return edit


def test_a_graph_that_reads_a_file_is_refused(tmp_path: Path) -> None:
    """aten.from_file reads any file into a tensor, and writes it with shared=True: before, a
    served model could return the server's files as predictions, or overwrite them."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-DATA-1234", encoding="utf-8")
    source = regression_folder(tmp_path / "src" / "temperature")
    _rewrite(source, lambda members: _edit_graph(members, _read_a_file(secret)))
    words = "models/model.json calls torch.ops.aten.from_file.default"
    _refused_everywhere(tmp_path, source, words, "(it reads or writes files)")
    with pytest.raises(ArchiveRefused, match="from_file"):
        load_program(source, "model.pt2")


def _pickled_weight(marker: Path) -> Callable[[dict[str, bytes]], None]:
    def change(members: dict[str, bytes]) -> None:
        key = _key(members, "data/weights/model_weights_config.json")
        config = json.loads(members[key])
        entry = config["config"]["linear.weight"]
        entry["use_pickle"] = True
        members[key] = json.dumps(config).encode()
        members[_key(members, "data/weights/" + entry["path_name"])] = _marker_pickle(marker)

    return change


def _custom_object(marker: Path) -> Callable[[dict[str, bytes]], None]:
    def change(members: dict[str, bytes]) -> None:
        key = _key(members, "data/constants/model_constants_config.json")
        entry = {"path_name": "tensor_0", "is_param": False, "use_pickle": True}
        members[key] = json.dumps({"config": {"obj": entry}}).encode()
        members[key.replace("model_constants_config.json", "tensor_0")] = _marker_pickle(marker)

    return change


def _compiled_code(marker: Path) -> Callable[[dict[str, bytes]], None]:
    def change(members: dict[str, bytes]) -> None:
        root = next(iter(members)).split("/")[0]
        members[f"{root}/data/aotinductor/model/model.so"] = b"\x7fELF not really"

    return change


def _legacy_weights(marker: Path) -> Callable[[dict[str, bytes]], None]:
    def change(members: dict[str, bytes]) -> None:
        root = next(iter(members)).split("/")[0]
        members[f"{root}/data/weights/model.pt"] = _marker_pickle(marker)

    return change


def _old_format(marker: Path) -> Callable[[dict[str, bytes]], None]:
    def change(members: dict[str, bytes]) -> None:
        members.clear()
        members["version"] = b"8.0"
        members["serialized_exported_program.json"] = b"{}"
        for name in ("state_dict", "constants", "example_inputs"):
            members[f"serialized_{name}.pt"] = _marker_pickle(marker)

    return change


def _traversal(marker: Path) -> Callable[[dict[str, bytes]], None]:
    def change(members: dict[str, bytes]) -> None:
        members["../../escape.txt"] = b"x"
        members[str(marker)] = b"x"  # an absolute name

    return change


def _guard_code(marker: Path) -> Callable[[dict[str, bytes]], None]:
    """`guards_code` becomes a Python function (exec) that runs on every call. Before: the
    check ran it, and passed."""

    def edit(program: dict[str, Any]) -> None:
        program["guards_code"] = [f"__import__('pathlib').Path(r'{marker}').touch() or True"]

    return lambda members: _edit_graph(members, edit)


def _huge_power(marker: Path) -> Callable[[dict[str, bytes]], None]:
    """A shape sympy computes when it parses it: 10**99999999999 would never finish."""

    def change(members: dict[str, bytes]) -> None:
        key = _key(members, "models/model.json")
        text = members[key].decode()
        at = text.index("Symbol('s")
        power = "Pow(Integer(10), Integer(99999999999)) + "
        members[key] = (text[:at] + power + text[at:]).encode()

    return change


def _twice(marker: Path) -> Callable[[dict[str, bytes]], None]:
    """A name twice: Python's zipfile reads the last copy, another reader may read the first."""

    def change(members: dict[str, bytes]) -> None:
        key = _key(members, "models/model.json")
        members[key + "#twice"] = members[key]

    return change


@pytest.mark.parametrize(
    ("attack", "words"),
    [
        (_pickled_weight, "'linear.weight' is stored pickled or as an object"),
        (_custom_object, "'obj' is stored pickled or as an object"),
        (_compiled_code, "data/aotinductor/model/model.so', which is not part of a torch.export"),
        (_legacy_weights, "data/weights/model.pt', which is not part of a torch.export"),
        (_old_format, "the archive holds 'version', which torch would not write"),
        (_traversal, "the archive holds '../../escape.txt', which torch would not write"),
        (_twice, "models/model.json', which torch would not write"),
        (_guard_code, "has guard code that is not a plain check of input sizes"),
        (_huge_power, "has a symbolic shape that is not a plain expression"),
    ],
)
def test_an_archive_with_what_torch_would_unpickle_or_run_is_refused(
    tmp_path: Path, attack: Callable[[Path], Callable[[dict[str, bytes]], None]], words: str
) -> None:
    """torch.export.load unpickles weights and constants flagged use_pickle, legacy `.pt`
    members and the old format's files (each with a fallback to full pickle), dlopens
    AOTInductor libraries, and `.module()` execs the program's guards: none of it reaches
    torch. Nothing is extracted anywhere either."""
    marker = tmp_path / "ran"
    source = regression_folder(tmp_path / "src" / "temperature")
    _rewrite(source, attack(marker))
    before = _files(tmp_path)
    _refused_everywhere(tmp_path, source, words)
    assert not marker.exists()
    assert _files(tmp_path) - before == {"models"}  # the empty models folder, nothing else
    assert not (tmp_path.parent / "escape.txt").exists()


def test_a_zip_bomb_is_refused_uninflated(tmp_path: Path) -> None:
    """Before: a 1 MB archive whose sample inputs inflate to 1 GB cost 3 GB and 9 s to refuse.
    A member's size is read from the directory and refused before it is inflated."""
    source = regression_folder(tmp_path / "src" / "temperature")
    path = source / "model.pt2"
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, bytes(64 * MB) if name.endswith("model.pt") else data)
    assert path.stat().st_size < MB
    with _python_peak() as peak:
        _check_says(source, "unpack to 64", "(a zip bomb?)")
    assert peak[0] < 20 * MB
    _refused_everywhere(tmp_path, source, "(a zip bomb?)")


def test_a_zip_read_differently_by_two_readers_is_refused(tmp_path: Path) -> None:
    """Data between the directory and the end record: Python's zipfile takes it for a prefix
    and shifts every offset, torch's reader trusts the recorded offset. The two would read two
    different archives, so the vetted one might not be the loaded one."""
    source = regression_folder(tmp_path / "src" / "temperature")
    path = source / "model.pt2"
    data = path.read_bytes()
    path.write_bytes(b"\0" * 64 + data)  # every recorded offset now 64 bytes off
    with path.open("rb") as fh, pytest.raises(ArchiveRefused, match="not a zip file"):
        vet_archive(fh)
    _add_refused(source, tmp_path / "models", "model.pt2: not a torch.export archive")


class _NoGrad(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.scale = torch.tensor([1.0, 2.0, 3.0, 4.0])  # a lifted constant, not a weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = self.linear(x * self.scale)
        out: torch.Tensor = torch.cond(y.sum() > 0, lambda a: a + 1, lambda a: a - 1, (y,))
        return out


class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.LayerNorm(4),
            nn.GELU(),
            nn.Linear(4, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x.reshape(-1, 1, 2, 2))
        return out


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(4, 2, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layer(x.reshape(-1, 1, 4)).mean(1)
        return out


@pytest.mark.parametrize("module", [_NoGrad, _Conv, _Attention])
def test_common_models_pass_the_vetting(tmp_path: Path, module: type[nn.Module]) -> None:
    """The vetting refuses what torch.export.save does not write for a plain program, so
    programs with constants, higher-order ops, convolutions and attention load as before."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        module().eval(), (torch.randn(3, 4),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, str(tmp_path / "model.pt2"))
    with (tmp_path / "model.pt2").open("rb") as fh:
        vet_archive(fh)
    loaded = load_program(tmp_path, "model.pt2").module()
    x = torch.randn(5, 4)
    torch.testing.assert_close(loaded(x), program.module()(x))


# Tokenizers ---------------------------------------------------------------------------------


def test_a_tokenizer_pattern_that_backtracks_fails_its_example_not_the_process(
    tmp_path: Path,
) -> None:
    """A Split pattern that backtracks hits Oniguruma's retry limit and the library panics: a
    BaseException, which before escaped every `except Exception` on the predict path."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    folder = text_folder(tmp_path / "review")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"(a|a)+$"), behavior="isolated")
    tokenizer.save(str(folder / "tokenizer.json"))
    examples = [{"text": "good"}, {"text": "a" * 40 + "b"}]
    text = "".join(json.dumps(example) + "\n" for example in examples)
    (folder / "examples.jsonl").write_text(text, encoding="utf-8")
    started = time.perf_counter()
    check = check_folder(folder)
    assert check.problems == [
        "examples.jsonl line 2: the tokenizer failed on this text (PanicException)"
    ]
    assert time.perf_counter() - started < 2


# The models folder --------------------------------------------------------------------------


def test_a_crashed_add_s_hidden_folder_is_skipped_and_the_name_still_adds(tmp_path: Path) -> None:
    source = regression_folder(tmp_path / "src" / "temperature")
    models = tmp_path / "models"
    shutil.copytree(source, models / ".adding-temperature-k2j4h1")  # whole, but never moved in
    (models / ".adding-temperature-x9").mkdir()  # half-written
    (models / ".adding-temperature-x9" / "model.json").write_text("{", encoding="utf-8")
    registry = ModelRegistry.discover(models)
    assert registry.get("temperature") is None
    assert not [line for line in registry.problems if line.startswith(str(models))]
    result = add_model(source, models)
    assert result.folder == models / "temperature"
    assert ModelRegistry.discover(models).get("temperature") is not None


def test_two_adds_of_one_name_leave_one_whole_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both are staged and checked at once, then race to move in: one wins, the other is told
    the name is taken, and the folder is all one source's. Before: the second load at once
    failed inside torch ("_CURRENT_DESERIALIZER is already set") and was called no archive."""
    sources = {}
    for celsius in (1, 2):
        source = regression_folder(tmp_path / f"src{celsius}" / "temperature")
        (source / "examples.jsonl").write_text(f'{{"celsius": {celsius}}}\n', encoding="utf-8")
        sources[celsius] = source
    models = tmp_path / "models"
    real_check = check_folder  # what packaging calls it by
    both_checked = threading.Barrier(2, timeout=60)

    def check_then_wait(folder: Path) -> Any:
        result = real_check(folder)
        both_checked.wait()
        return result

    monkeypatch.setattr(packaging, "check_folder", check_then_wait)
    results: dict[int, AddResult | Exception] = {}

    def add(celsius: int) -> None:
        try:
            results[celsius] = add_model(sources[celsius], models)
        except PackagingError as exc:
            results[celsius] = exc

    threads = [threading.Thread(target=add, args=(celsius,)) for celsius in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    won = [c for c, r in results.items() if isinstance(r, AddResult)]
    lost = [r for r in results.values() if isinstance(r, PackagingError)]
    assert len(won) == 1 and len(lost) == 1, results
    _one_line(str(lost[0]), "a model named 'temperature' is already in")
    assert sorted(p.name for p in models.iterdir()) == ["temperature"]
    for name in ("model.pt2", "examples.jsonl"):  # model.json is written anew
        written = (models / "temperature" / name).read_bytes()
        assert written == (sources[won[0]] / name).read_bytes()


@posix_only
def test_removing_a_linked_model_keeps_what_the_links_point_at(tmp_path: Path) -> None:
    from engine.cli.models import _remove

    elsewhere = regression_folder(tmp_path / "elsewhere" / "temperature")
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me", encoding="utf-8")
    models = tmp_path / "models"
    models.mkdir()
    (models / "temperature").symlink_to(elsewhere, target_is_directory=True)
    own = regression_folder(models / "own", name="own")
    (own / "notes.txt").symlink_to(precious)
    before = _files(elsewhere)
    for name in ("temperature", "own"):
        assert _remove(argparse.Namespace(name=name, models_dir=str(models))) == 0
    assert _files(elsewhere) == before
    assert precious.read_text(encoding="utf-8") == "keep me"
    registry = ModelRegistry.discover(models)
    assert registry.get("temperature") is None and registry.get("own") is None
    assert list(models.iterdir()) == []  # no hidden link left behind


def test_read_manifest_refuses_what_open_folder_refuses(tmp_path: Path) -> None:
    folder = regression_folder(tmp_path / "m")
    os.truncate(folder / "model.json", MAX_MANIFEST_BYTES + 1)
    with pytest.raises(ValueError, match=r"model\.json: larger than 4 MiB"):
        read_manifest(folder)
