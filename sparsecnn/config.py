"""simpleNN's network configuration files, read and written without ``eval``.

simpleNN (the slides' MATLAB reference implementation) describes a network in
a text file of ``name = value;`` lines, for example
``mnist-demo-layer4.config`` (packaged: :func:`sparsecnn.datasets.path`)::

    % 4 layers: 3 convolutional layers and 1 fully-connected layer.
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

simpleNN runs ``eval`` on each line to fill a struct.  Here every line is parsed as
data: a value is an integer or a MATLAB row vector of integers (``[1,32,64]``,
``[1 32 64]`` or ``[28]``); ``%`` starts a comment; blank lines, spaces and
a missing final ``;`` are tolerated.  Every key below must be given exactly
once, and no other key is accepted.

============================  ===========  ===================================================
key                           entries      meaning (slides' symbol)
============================  ===========  ===================================================
``L``, ``LC``, ``LF``         1            layers ``L = L^C + L^F``; conv layers, full layers
``ht_input``, ``wd_input``    1            height ``a^1`` and width ``b^1`` of the input image
``ch_input``                  ``LC + 1``   ``d^1, ..., d^{L^C+1}``: input channels of each conv
                                           layer, then the output channels of the last one
``wd_pad_added``              ``LC``       padding ``p^m``
``wd_filter``                 ``LC``       filter width ``h^m``
``strides``                   ``LC``       stride ``s^m``
``wd_subimage_pool``          ``LC``       max pooling window and stride ``r^m``
``full_neurons``              ``LF``       ``n_{m+1}`` for the full layers ``m = L^C+1..L``
============================  ===========  ===================================================

Every conv layer uses ReLU then max pooling, every full layer ReLU except the
last, which is the identity.

Size limits
-----------
A few bytes of configuration (or of a model or golden file's network description)
can describe a network whose operators or ``theta`` need gigabytes.  Every loader
estimates that memory from the shapes alone (:func:`network_bytes`) and, above the
limit, raises :class:`~sparsecnn.exceptions.SizeLimitError` stating the size that
would be needed, before anything is built.  The limit is 4 GiB by default, or the
environment variable ``SPARSECNN_MAX_BYTES`` (bytes, read at import); change it
with :func:`set_limits`, or for a block with :func:`size_limits`
(``with size_limits(max_bytes=16 * 2**30): ...``).  Configuration files larger
than 1 MB, and anything but a regular file (a FIFO, ``/dev/zero``, a folder),
are refused.

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "tiny.config").write_text(
...     "L = 2;\\nLC = 1;\\nLF = 1;\\nwd_input = [8];\\nht_input = [8];\\n"
...     "ch_input = [1,4];\\nwd_pad_added = [1];\\nwd_filter = [3];\\nstrides = [1];\\n"
...     "wd_subimage_pool = [2];\\nfull_neurons = [10];\\n")
>>> simplenn_layers(folder / "tiny.config")
((8, 8, 1), [ConvLayer(d_out=4, h=3, s=1, p=1, r=2, activation='relu', pool='max'), FullLayer(n_out=10, activation=None)])
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._limits import check_network_size, get_limits, network_bytes, set_limits, size_limits
from ._safe_io import file_name, regular_file
from .exceptions import ConfigError, DataFormatError, InputTypeError
from .layers import ConvLayer, FullLayer

if TYPE_CHECKING:  # pragma: no cover
    from .network import Network

__all__ = [
    "set_limits",
    "get_limits",
    "size_limits",
    "network_bytes",
    "KEYS",
    "read_simplenn_config",
    "parse_simplenn_config",
    "layers_from_config_dict",
    "simplenn_layers",
    "to_simplenn_config",
]

# key -> (how many entries, smallest allowed value, meaning)
KEYS: dict[str, tuple[str, int, str]] = {
    "L": ("1", 1, "the number of layers L = LC + LF"),
    "LC": ("1", 0, "the number of convolutional layers L^C"),
    "LF": ("1", 1, "the number of fully-connected layers"),
    "wd_input": ("1", 1, "the width b^1 of the input image"),
    "ht_input": ("1", 1, "the height a^1 of the input image"),
    "ch_input": ("LC+1", 1, "the channels d^1..d^{LC+1}"),
    "wd_pad_added": ("LC", 0, "the padding p^m of each conv layer"),
    "wd_filter": ("LC", 1, "the filter width h^m of each conv layer"),
    "strides": ("LC", 1, "the stride s^m of each conv layer"),
    "wd_subimage_pool": ("LC", 1, "the pool width r^m of each conv layer"),
    "full_neurons": ("LF", 1, "the neurons n_{m+1} of each full layer"),
}
"""The keys of a simpleNN configuration: entries, minimum value, meaning."""

_SCALARS = ("L", "LC", "LF", "wd_input", "ht_input")
MAX_CONFIG_BYTES = 1_000_000
"""Largest configuration file read (a simpleNN configuration is a few hundred bytes)."""
_LINE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*;?\s*$")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


@dataclass(frozen=True)
class _Entry:
    values: list[int]
    line: int
    text: str


def _where(path: str, line: int | None) -> str:
    return f"{path}, line {line}" if line is not None else path


def _parse_value(key: str, raw: str, where: str) -> list[int]:
    """A scalar or a row vector of integers, or a ConfigError naming ``key``."""
    expected = f"{key} = <integer>; or {key} = [<integer>,<integer>,...];"
    text = raw.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise ConfigError(f"{where}: {key}: expected a row vector such as [1,32,64], "
                              f"got {raw!r} (missing ']')")
        inner = text[1:-1]
        if ";" in inner:
            raise ConfigError(f"{where}: {key}: expected a row vector such as [1,32,64], "
                              f"got {raw!r} (';' inside brackets makes a column vector)")
        tokens = [t for t in re.split(r"[\s,]+", inner.strip()) if t]
        if inner.strip() and (inner.strip().startswith(",") or inner.strip().endswith(",")
                              or re.search(r",\s*,", inner)):
            raise ConfigError(f"{where}: {key}: expected a row vector such as [1,32,64], "
                              f"got {raw!r} (empty entry)")
    elif text:
        tokens = [text]
    else:
        raise ConfigError(f"{where}: {key}: expected a value ({expected}), got nothing")
    values: list[int] = []
    for tok in tokens:
        if not _NUMBER.match(tok):
            raise ConfigError(f"{where}: {key}: expected numbers ({expected}), "
                              f"got the non-numeric {tok!r} in {raw!r}")
        number = float(tok)
        if not number.is_integer():
            raise ConfigError(f"{where}: {key}: expected integers, got {tok} in {raw!r}")
        values.append(int(number))
    return values


def parse_simplenn_config(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse the text of a simpleNN configuration; see :func:`read_simplenn_config`.

    Parameters
    ----------
    text : str
        The file's content.
    source : str
        Name used in error messages (the file's path).

    Examples
    --------
    >>> cfg = parse_simplenn_config(
    ...     "L = 1;\\nLC = 0;\\nLF = 1;\\nwd_input = 2;\\nht_input = 3;\\n"
    ...     "ch_input = [1];\\nwd_pad_added = [];\\nwd_filter = [];\\nstrides = [];\\n"
    ...     "wd_subimage_pool = [];\\nfull_neurons = [4];")
    >>> cfg["ht_input"], cfg["wd_input"], cfg["ch_input"], cfg["nL"]
    (3, 2, [1], 4)
    """
    if not isinstance(text, str):
        raise InputTypeError(f"{source}: the configuration must be text (str), got {type(text).__name__}")
    entries: dict[str, _Entry] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("%", 1)[0].strip()
        if not code:
            continue
        where = _where(source, number)
        match = _LINE.match(code)
        if match is None:
            raise ConfigError(f"{where}: expected a line 'name = value;' (for example 'LC = 3;'), "
                              f"got {line.strip()!r}")
        key, raw = match.group("key"), match.group("value")
        if key not in KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}; the keys of a simpleNN configuration "
                              f"are {', '.join(KEYS)}")
        if key in entries:
            raise ConfigError(f"{where}: duplicate key {key!r}, already given on line "
                              f"{entries[key].line} ({entries[key].text!r}); give each key once")
        entries[key] = _Entry(_parse_value(key, raw, where), number, line.strip())

    missing = [k for k in KEYS if k not in entries]
    if missing:
        raise ConfigError(
            f"{source}: missing key{'s' if len(missing) > 1 else ''} "
            + ", ".join(f"{k!r} ({KEYS[k][2]})" for k in missing)
        )

    def fail(key: str, message: str) -> ConfigError:
        e = entries[key]
        return ConfigError(f"{_where(source, e.line)}: {key}: {message} (line {e.text!r})")

    for key in _SCALARS:
        if len(entries[key].values) != 1:
            raise fail(key, f"expected a single integer ({KEYS[key][2]}), "
                            f"got {len(entries[key].values)} entries {entries[key].values}")
    for key, (_, minimum, meaning) in KEYS.items():
        for v in entries[key].values:
            if v < minimum:
                raise fail(key, f"expected entries >= {minimum} ({meaning}), got {v}")
    L, LC, LF = (entries[k].values[0] for k in ("L", "LC", "LF"))
    if L != LC + LF:
        raise fail("L", f"expected L = LC + LF = {LC} + {LF} = {LC + LF} "
                        f"(LC on line {entries['LC'].line}, LF on line {entries['LF'].line}), got {L}")
    sizes = {"1": 1, "LC": LC, "LC+1": LC + 1, "LF": LF}
    for key, (count, _, meaning) in KEYS.items():
        want, got = sizes[count], len(entries[key].values)
        if got != want:
            raise fail(key, f"expected {count} = {want} entr{'y' if want == 1 else 'ies'} ({meaning}), "
                            f"got {got}: {entries[key].values}")

    config: dict[str, Any] = {}
    for key in KEYS:
        values = entries[key].values
        config[key] = values[0] if key in _SCALARS else list(values)
    config["nL"] = config["full_neurons"][LF - 1]
    return config


def read_simplenn_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a simpleNN configuration file into a dict, checking every key.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict
        ``L``, ``LC``, ``LF``, ``wd_input``, ``ht_input`` as ints; ``ch_input``,
        ``wd_pad_added``, ``wd_filter``, ``strides``, ``wd_subimage_pool``,
        ``full_neurons`` as lists of ints; and ``nL = full_neurons[LF-1]``
        (the number of classes), which simpleNN's ``read_config`` adds.

    Raises
    ------
    ConfigError
        If the file cannot be read, is not a regular file (a FIFO, a device such as
        ``/dev/zero``, a folder) or is larger than ``MAX_CONFIG_BYTES``, or on an unknown, missing or duplicate
        key, a value that is not an integer or a row vector of integers, a
        value out of range, or lengths that disagree (``L != LC + LF``,
        ``len(ch_input) != LC + 1``, a per-conv-layer vector without ``LC``
        entries, ``len(full_neurons) != LF``).  The message names the file,
        the line, the key, what was expected and what was given.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "bad.config"
    >>> _ = f.write_text("L = 2;\\nLC = 1;\\nLF = 1;\\nwd_input = [8];\\nht_input = [8];\\n"
    ...     "ch_input = [1,4];\\nwd_pad_added = [1];\\nwd_filter = [3,3];\\nstrides = [1];\\n"
    ...     "wd_subimage_pool = [2];\\nfull_neurons = [10];\\n")
    >>> read_simplenn_config(f)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.ConfigError: .../bad.config, line 8: wd_filter: expected LC = 1 entry ...
    """
    name = file_name(path, "simpleNN configuration file")
    try:
        regular_file(name, "simpleNN configuration file")
    except DataFormatError as e:
        raise ConfigError(str(e)) from None
    try:
        with open(name, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{name}: cannot read the simpleNN configuration file: "
                          f"{e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: larger than {MAX_CONFIG_BYTES:,} bytes; a simpleNN configuration file is "
                          "a few lines of 'name = value;'")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: expected a text file of 'name = value;' lines, "
                          f"got bytes that are not UTF-8 text (at byte {e.start})") from None
    return parse_simplenn_config(text, source=name)


def layers_from_config_dict(config: dict[str, Any], source: str = "<config>"
                            ) -> tuple[tuple[int, int, int], list[ConvLayer | FullLayer]]:
    """The input shape ``(a^1, b^1, d^1)`` and the layers a checked configuration dict describes.

    What :meth:`sparsecnn.Network.from_simplenn_config` builds its network from.
    The memory the network would need is checked against the size limits
    (:func:`set_limits`) before anything is built.

    Raises
    ------
    SizeLimitError
        If the network would need more memory than the limit (the message,
        which starts with ``source``, states the size needed).

    Examples
    --------
    >>> cfg = parse_simplenn_config(
    ...     "L = 2;\\nLC = 1;\\nLF = 1;\\nwd_input = 6;\\nht_input = 6;\\nch_input = [1,2];\\n"
    ...     "wd_pad_added = [1];\\nwd_filter = [3];\\nstrides = [1];\\nwd_subimage_pool = [2];\\n"
    ...     "full_neurons = [3];")
    >>> shape, layers = layers_from_config_dict(cfg)
    >>> shape, layers[0]
    ((6, 6, 1), ConvLayer(d_out=2, h=3, s=1, p=1, r=2, activation='relu', pool='max'))
    """
    LC = config["LC"]
    layers: list[ConvLayer | FullLayer] = [
        ConvLayer(config["ch_input"][m + 1], h=config["wd_filter"][m], s=config["strides"][m],
                  p=config["wd_pad_added"][m], r=config["wd_subimage_pool"][m])
        for m in range(LC)
    ]
    layers += [FullLayer(n) for n in config["full_neurons"]]
    shape = (config["ht_input"], config["wd_input"], config["ch_input"][0])
    check_network_size(shape, layers, source)
    return shape, layers


def simplenn_layers(path: str | os.PathLike[str]) -> tuple[tuple[int, int, int], list[ConvLayer | FullLayer]]:
    """Read a simpleNN configuration file: the input shape and the layers (see :func:`layers_from_config_dict`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "full.config"
    >>> _ = f.write_text("L = 1; LC = 0; LF = 1; wd_input = 2; ht_input = 3; ch_input = [1];\\n"
    ...     "wd_pad_added = []; wd_filter = []; strides = []; wd_subimage_pool = [];\\n"
    ...     "full_neurons = [4];\\n".replace("; ", ";\\n"))
    >>> simplenn_layers(f)
    ((3, 2, 1), [FullLayer(n_out=4, activation=None)])
    """
    return layers_from_config_dict(read_simplenn_config(path), source=os.fspath(path))


def _vector(values: list[int]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def to_simplenn_config(net: Network) -> str:
    """The simpleNN configuration text of ``net``.

    Only networks simpleNN can express are written: ReLU and max pooling in
    every conv layer, ReLU in every full layer but the last, identity in the
    last.  Reading the text back with :func:`parse_simplenn_config` gives the
    same network.

    Raises
    ------
    ConfigError
        If ``net`` uses something simpleNN cannot express (another activation
        or pooling); the message names the layer.

    Examples
    --------
    >>> from sparsecnn import Network, ConvLayer, FullLayer
    >>> net = Network((6, 8, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(5)])
    >>> print(to_simplenn_config(net), end="")
    % simpleNN configuration written by sparsecnn
    L = 2;
    LC = 1;
    LF = 1;
    wd_input = [8];
    ht_input = [6];
    ch_input = [1,3];
    wd_pad_added = [1];
    wd_filter = [3];
    strides = [1];
    wd_subimage_pool = [2];
    full_neurons = [5];
    """
    for ly in net.conv:
        spec = ly.spec
        if spec.activation != "relu" or spec.pool != "max":
            raise ConfigError(
                f"conv layer {ly.m}: simpleNN only expresses ReLU with max pooling, "
                f"got activation {spec.activation!r} and pool {spec.pool!r}"
            )
    for fl in net.full:
        want = "identity" if fl.last else "relu"
        if fl.sigma.name != want:
            raise ConfigError(
                f"full layer {fl.m}: simpleNN uses {want!r} here "
                f"({'the last layer' if fl.last else 'a hidden full layer'}), got {fl.sigma.name!r}"
            )
    a, b, d = net.input_shape
    values: dict[str, int | list[int]] = {
        "L": net.L,
        "LC": net.LC,
        "LF": len(net.full),
        "wd_input": [b],
        "ht_input": [a],
        "ch_input": [d] + [ly.d_out for ly in net.conv],
        "wd_pad_added": [ly.spec.p for ly in net.conv],
        "wd_filter": [ly.spec.h for ly in net.conv],
        "strides": [ly.spec.s for ly in net.conv],
        "wd_subimage_pool": [ly.spec.r for ly in net.conv],
        "full_neurons": [fl.n_out for fl in net.full],
    }
    lines = ["% simpleNN configuration written by sparsecnn"]
    for key, value in values.items():
        lines.append(f"{key} = {_vector(value) if isinstance(value, list) else value};")
    return "\n".join(lines) + "\n"
