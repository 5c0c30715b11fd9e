"""simpleNN configuration files: parsing, the network they describe, every error, the writer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparsecnn import ArchitectureError, ConfigError, ConvLayer, FullLayer, Network
from sparsecnn.config import (
    KEYS,
    parse_simplenn_config,
    read_simplenn_config,
    to_simplenn_config,
)

GOOD = """\
% The symbols are followed by "Newton methods for Convolutional Neural Networks".
% For this example, 4 layers include 3 convolutional layers and 1 fully-connected layer.

L = 4;
LC = 3;
LF = 1;
wd_input = [28];
ht_input = [28];
ch_input = [1,32,64,64];
wd_pad_added = [2,1,1];
wd_filter = [5,3,3];
strides = [1,1,1];
wd_subimage_pool = [2,2,2];
full_neurons = [10];
"""

EXPECTED = {
    "L": 4, "LC": 3, "LF": 1, "wd_input": 28, "ht_input": 28,
    "ch_input": [1, 32, 64, 64], "wd_pad_added": [2, 1, 1], "wd_filter": [5, 3, 3],
    "strides": [1, 1, 1], "wd_subimage_pool": [2, 2, 2], "full_neurons": [10], "nL": 10,
}


def write(tmp_path: Path, text: str, name: str = "net.config") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def replace_line(key: str, new: str | None, text: str = GOOD) -> str:
    """GOOD with the line of ``key`` replaced by ``new`` (``None``: removed)."""
    lines = text.splitlines()
    out = []
    for line in lines:
        if re.match(rf"^{key}\s*=", line):
            if new is not None:
                out.append(new)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def line_of(key: str, text: str = GOOD) -> int:
    for k, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^{key}\s*=", line):
            return k
    raise AssertionError(key)


# ------------------------------------------------------------------ the shared example
def test_shared_example_parses(shared_data: Path) -> None:
    cfg = read_simplenn_config(shared_data / "mnist-demo-layer4.config")
    assert cfg == EXPECTED


def test_shared_example_network(shared_data: Path) -> None:
    net = Network.from_simplenn_config(shared_data / "mnist-demo-layer4.config")
    assert net.input_shape == (28, 28, 1)
    assert [ly.spec for ly in net.layers] == [
        ConvLayer(32, h=5, s=1, p=2, r=2),
        ConvLayer(64, h=3, s=1, p=1, r=2),
        ConvLayer(64, h=3, s=1, p=1, r=2),
        FullLayer(10),
    ]
    # 28 -pad 2, conv 5-> 28 -pool-> 14 -pad 1, conv 3-> 14 -> 7 -> 7 -> 3
    assert [(ly.a, ly.a_pad, ly.a_conv, ly.a_out) for ly in net.conv] == [
        (28, 32, 28, 14), (14, 16, 14, 7), (7, 9, 7, 3)]
    assert [(ly.b, ly.b_conv, ly.b_out) for ly in net.conv] == [(28, 28, 14), (14, 14, 7), (7, 7, 3)]
    assert [ly.W_shape for ly in net.layers] == [(32, 25), (64, 288), (64, 576), (10, 576)]
    assert net.full[0].n_in == 64 * 3 * 3
    assert net.full[0].sigma.name == "identity"
    assert all(ly.sigma.name == "relu" for ly in net.conv)
    assert net.n_params == 32 * 26 + 64 * 289 + 64 * 577 + 10 * 577
    assert net.n_L == 10


def test_shared_example_round_trip(shared_data: Path, tmp_path: Path) -> None:
    original = (shared_data / "mnist-demo-layer4.config").read_text()
    net = Network.from_simplenn_config(shared_data / "mnist-demo-layer4.config")
    written = to_simplenn_config(net)
    code = [ln for ln in original.splitlines() if ln.strip() and not ln.startswith("%")]
    assert [ln for ln in written.splitlines() if not ln.startswith("%")] == code
    again = Network.from_simplenn_config(write(tmp_path, written))
    assert repr(again) == repr(net)


def test_file_and_dict_give_the_same_network(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert repr(Network.from_simplenn_config(path)) == repr(Network.from_config_dict(read_simplenn_config(path)))
    assert read_simplenn_config(str(path)) == EXPECTED


# ------------------------------------------------------------------ tolerated syntax
def test_whitespace_comments_and_spaces_tolerated(tmp_path: Path) -> None:
    text = (
        "  % leading comment\n\n"
        "L=4 ;   % trailing comment\n"
        "\tLC = 3\n"                     # no semicolon, tab
        "LF   =   1;\n"
        "wd_input = 28;\n"               # scalar instead of [28]
        "ht_input = [ 28 ];\n"
        "ch_input = [1 32, 64 ,64];\n"   # spaces and commas
        "wd_pad_added = [2,1,1];\r\n"    # CRLF
        "wd_filter = [5.0,3,3];\n"       # integer-valued float
        "strides = [1,1,1];\n"
        "wd_subimage_pool = [2,2,2];\n"
        "full_neurons = [1e1];\n"
        "   \n"
    )
    assert read_simplenn_config(write(tmp_path, text)) == EXPECTED


def test_rectangular_input(tmp_path: Path) -> None:
    text = replace_line("wd_input", "wd_input = [20];", replace_line("ht_input", "ht_input = [12];"))
    net = Network.from_simplenn_config(write(tmp_path, text))
    assert net.input_shape == (12, 20, 1)     # (a, b, d) = (ht_input, wd_input, ch_input(1))
    assert [(ly.a_out, ly.b_out) for ly in net.conv] == [(6, 10), (3, 5), (1, 2)]
    written = to_simplenn_config(net)
    assert "wd_input = [20];" in written and "ht_input = [12];" in written


def test_no_conv_layers_and_several_full_layers(tmp_path: Path) -> None:
    text = ("L = 2;\nLC = 0;\nLF = 2;\nwd_input = [3];\nht_input = [2];\nch_input = [2];\n"
            "wd_pad_added = [];\nwd_filter = [];\nstrides = [];\nwd_subimage_pool = [];\n"
            "full_neurons = [7,4];\n")
    net = Network.from_simplenn_config(write(tmp_path, text))
    assert net.input_shape == (2, 3, 2) and net.LC == 0
    assert [fl.W_shape for fl in net.full] == [(7, 12), (4, 7)]
    assert [fl.sigma.name for fl in net.full] == ["relu", "identity"]
    assert read_simplenn_config(write(tmp_path, to_simplenn_config(net), "again.config"))["nL"] == 4


@pytest.mark.parametrize("layers", [
    [ConvLayer(3, h=3, s=2, p=1, r=1), ConvLayer(5, h=2, r=2), FullLayer(6), FullLayer(4)],
    [ConvLayer(2, h=1), FullLayer(3)],
    [FullLayer(9), FullLayer(2), FullLayer(2)],
])
def test_writer_round_trip(tmp_path: Path, layers: list[ConvLayer | FullLayer]) -> None:
    net = Network((9, 7, 2), layers)
    again = Network.from_simplenn_config(write(tmp_path, to_simplenn_config(net)))
    assert repr(again) == repr(net)
    assert again.n_params == net.n_params


@pytest.mark.parametrize("net, where", [
    (Network((6, 6, 1), [ConvLayer(2, h=3, activation="tanh"), FullLayer(3)]), "conv layer 1"),
    (Network((6, 6, 1), [FullLayer(4, activation="sigmoid"), FullLayer(3)]), "full layer 1"),
    (Network((6, 6, 1), [FullLayer(4), FullLayer(3, activation="relu")]), "full layer 2"),
])
def test_writer_rejects_what_simplenn_cannot_express(net: Network, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        to_simplenn_config(net)


# ------------------------------------------------------------------ errors
def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_simplenn_config(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_unknown_key(tmp_path: Path) -> None:
    text = GOOD + "momentum = [0.9];\n"
    message = error(tmp_path, text)
    assert "unknown key 'momentum'" in message
    assert f"line {len(GOOD.splitlines()) + 1}" in message
    for key in KEYS:
        assert key in message                       # lists the known keys


def test_unknown_key_case_sensitive(tmp_path: Path) -> None:
    message = error(tmp_path, replace_line("LC", "lc = 3;"))
    assert "unknown key 'lc'" in message


@pytest.mark.parametrize("key", list(KEYS))
def test_missing_key(tmp_path: Path, key: str) -> None:
    message = error(tmp_path, replace_line(key, None))
    assert f"missing key '{key}'" in message


def test_several_missing_keys_named(tmp_path: Path) -> None:
    message = error(tmp_path, replace_line("strides", None, replace_line("L", None)))
    assert "'L'" in message and "'strides'" in message


def test_duplicate_key(tmp_path: Path) -> None:
    text = GOOD + "wd_filter = [3,3,3];\n"
    message = error(tmp_path, text)
    assert "duplicate key 'wd_filter'" in message
    assert f"line {line_of('wd_filter')}" in message
    assert f"line {len(GOOD.splitlines()) + 1}" in message


@pytest.mark.parametrize("key, value, what", [
    ("ch_input", "[1,32,a,64]", "non-numeric 'a'"),
    ("LC", "three", "non-numeric 'three'"),
    ("wd_filter", "[5,3,'3']", "non-numeric"),
    ("strides", "[1,1,1", "missing ']'"),
    ("strides", "[1;1;1]", "column vector"),
    ("strides", "[1,,1]", "empty entry"),
    ("L", "", "got nothing"),
    ("LF", "1; L = 4", "non-numeric"),
    ("full_neurons", "[nan]", "non-numeric 'nan'"),
    ("wd_pad_added", "[2,1,inf]", "non-numeric 'inf'"),
    ("wd_filter", "[5,3,3.5]", "expected integers, got 3.5"),
    ("wd_input", "[28.25]", "expected integers"),
    ("full_neurons", "[1e400]", "expected integers"),
])
def test_bad_values(tmp_path: Path, key: str, value: str, what: str) -> None:
    message = error(tmp_path, replace_line(key, f"{key} = {value};"))
    assert f"line {line_of(key)}" in message
    assert f"{key}:" in message
    assert what in message


@pytest.mark.parametrize("key, value, what", [
    ("wd_filter", "[5,0,3]", "expected entries >= 1"),
    ("wd_pad_added", "[2,-1,1]", "expected entries >= 0"),
    ("ch_input", "[1,32,0,64]", "expected entries >= 1"),
    ("LF", "0", "expected entries >= 1"),
    ("ht_input", "[28,28]", "expected a single integer"),
    ("L", "[4,4]", "expected a single integer"),
])
def test_values_out_of_range(tmp_path: Path, key: str, value: str, what: str) -> None:
    message = error(tmp_path, replace_line(key, f"{key} = {value};"))
    assert f"line {line_of(key)}: {key}:" in message
    assert what in message


@pytest.mark.parametrize("key, value, expected", [
    ("ch_input", "[1,32,64]", "expected LC+1 = 4 entries"),
    ("ch_input", "[1,32,64,64,64]", "expected LC+1 = 4 entries"),
    ("wd_pad_added", "[2,1]", "expected LC = 3 entries"),
    ("wd_filter", "[5,3,3,3]", "expected LC = 3 entries"),
    ("strides", "[1]", "expected LC = 3 entries"),
    ("wd_subimage_pool", "[]", "expected LC = 3 entries"),
    ("full_neurons", "[100,10]", "expected LF = 1 entry"),
])
def test_inconsistent_lengths(tmp_path: Path, key: str, value: str, expected: str) -> None:
    message = error(tmp_path, replace_line(key, f"{key} = {value};"))
    assert f"line {line_of(key)}: {key}:" in message
    assert expected in message
    assert "got" in message


def test_L_not_LC_plus_LF(tmp_path: Path) -> None:
    message = error(tmp_path, replace_line("L", "L = 5;"))
    assert f"line {line_of('L')}: L:" in message
    assert "expected L = LC + LF = 3 + 1 = 4" in message and "got 5" in message


def test_not_an_assignment(tmp_path: Path) -> None:
    message = error(tmp_path, GOOD + "net_config.L = 4;\n")
    assert "expected a line 'name = value;'" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_simplenn_config(tmp_path / "absent.config")
    with pytest.raises(ConfigError, match="absent.config"):
        Network.from_simplenn_config(tmp_path / "absent.config")


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.config"
    path.write_bytes(b"\x80\x04\x95\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_simplenn_config(path)


def test_no_eval(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    text = GOOD + f"L = __import__('pathlib').Path({str(marker)!r}).touch();\n"
    with pytest.raises(ConfigError):
        read_simplenn_config(write(tmp_path, text))
    assert not marker.exists()


def test_empty_image_names_file_and_layer(tmp_path: Path) -> None:
    text = replace_line("wd_filter", "wd_filter = [5,3,13];")
    path = write(tmp_path, text)
    with pytest.raises(ArchitectureError) as info:
        Network.from_simplenn_config(path)
    assert str(path) in str(info.value) and "conv layer 3" in str(info.value)


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="<string>: missing keys"):
        parse_simplenn_config("")


def test_byte_order_mark_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.config"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert read_simplenn_config(path) == EXPECTED


def test_special_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file \\(a character device\\)"):
        read_simplenn_config("/dev/zero")
    with pytest.raises(ConfigError, match="not a regular file \\(a folder\\)"):
        read_simplenn_config(tmp_path)
    big = tmp_path / "big.config"
    big.write_text(GOOD + "%" + "x" * 1_000_000 + "\n")
    with pytest.raises(ConfigError, match="larger than 1,000,000 bytes"):
        read_simplenn_config(big)
